import StreamLog
import TandemCore

/// Faults and load of a Raft simulation. Every choice is drawn from the simulation's seeded
/// generator, so a run is a pure function of (seed, config).
public struct RaftSimConfig: Sendable {
    public var nodes = 3
    public var settings: RaftSettings = .fast
    /// Every link's behaviour at the start (`runWithFaults` changes loss and duplication).
    public var network = SimNetworkConfig(latency: .milliseconds(1), jitter: .milliseconds(3))
    /// An fsync completes `fsyncLatency` plus up to `fsyncJitter` after it starts, in order.
    public var fsyncLatency: Duration = .milliseconds(1)
    public var fsyncJitter: Duration = .milliseconds(4)
    /// How often the client proposes (1–3 records, on a random node, forwarded to its leader).
    public var proposalInterval: Duration = .milliseconds(15)
    /// `runWithFaults` also makes a node's log reads fail now and then (`failReads`), in half
    /// of its protocol-specific faults (the other half: retention trims). Off by default, so
    /// the runs of existing seeds stay what they were.
    public var readFaults = false
    public init() {}
}

/// A deterministic simulation of one Raft group on the shared `SimRuntime`: N `RaftNode`s on
/// `MemoryLogStorage`, the runtime's clock and lossy reordering network, disks whose fsyncs
/// complete later, and crashes that lose whatever was not synced. Each node runs the shell loop a real node runs
/// (ready → write + send → apply → on fsync: appended + send the rest).
///
/// Invariants are checked as the run goes; the first violations are kept in `violations`:
/// election safety, log matching, leader completeness, state machine safety, and for the
/// client: no record applied that was not proposed, none applied twice, and every
/// acknowledged record at its index on every replica that has committed that index.
///
/// Proposals made on a follower travel to the leader it knows like a forwarded put, and are
/// acknowledged twice over, as the node does it: by the leader when it applies them, and by the
/// forwarding follower when it applies its own record (which, with the follower commit rule,
/// may come before the leader has counted a majority). Both must name the same index.
public final class RaftSimulation {
    final class Node {
        let id: NodeID
        let storage = MemoryLogStorage()
        var durableHardState = HardState()
        var core: RaftNode?
        var scheduledTick: Instant?
        var lastWriteDone = Instant.zero
        init(id: NodeID) { self.id = id }
    }

    private struct Write {
        var hardState: HardState?
        var position: LogPosition?
        var messages: [RaftOutgoing]
    }

    /// Events for a node are addressed to its life (the runtime drops them when it ends).
    private enum Event {
        case tick(node: Int)
        case deliver(to: Int, bytes: [UInt8])
        case writeDone(node: Int, Write)
        case propose
        /// A proposal forwarded by a follower (in its life `fromLife`) arrives at the node it
        /// took for the leader.
        case forward(from: Int, fromLife: Int, to: Int)
    }

    private struct LogKey: Hashable {
        var index: UInt64
        var term: UInt64
    }

    private struct EntryFacts: Equatable {
        var kind: LogEntry.Kind
        var dataHash: UInt64
        var prevTerm: UInt64?
    }

    private struct Proposal {
        var node: Int
        var life: Int
        var index: UInt64
        var term: UInt64
    }

    public let config: RaftSimConfig
    public private(set) var violations: [String] = []
    public private(set) var messagesSent = 0
    /// Records the client was told are committed: payload → index.
    public private(set) var acknowledged: [String: UInt64] = [:]
    public private(set) var proposedCount = 0
    /// Acknowledgements by the follower that forwarded the proposal, and how many of those
    /// came while that term's leader had not yet committed the record.
    public private(set) var acknowledgedByForwarder = 0
    public private(set) var acknowledgedBeforeLeaderCommit = 0
    /// Nodes stopped because a log read failed and their core halted.
    public private(set) var readFailureStops = 0

    let nodes: [Node]
    private let runtime: SimRuntime<Event>
    private let configuration: RaftConfiguration

    private var leaderOfTerm: [UInt64: NodeID] = [:]
    private var entryFacts: [LogKey: EntryFacts] = [:]
    /// What was applied at each index, by anyone (index → term, kind, data hash).
    private var applied: [UInt64: (term: UInt64, facts: EntryFacts, payload: String?)] = [:]
    private var appliedMax: UInt64 = 0
    private var indexOfPayload: [String: UInt64] = [:]
    private var proposals: [String: Proposal] = [:]
    /// Proposals that came through a follower: payload → that follower and its life.
    private var forwardedBy: [String: (node: Int, life: Int)] = [:]
    private var nextPayload = 0

    public init(seed: UInt64, config: RaftSimConfig = RaftSimConfig()) {
        self.config = config
        self.runtime = SimRuntime(seed: seed, network: config.network)
        let ids = (0..<config.nodes).map { NodeID("r\($0)") }
        self.configuration = RaftConfiguration(voters: ids)
        self.nodes = ids.map { Node(id: $0) }
        for i in nodes.indices { boot(i) }
        runtime.schedule(.propose, after: config.proposalInterval)
    }

    public var now: Instant { runtime.now }
    public var eventsProcessed: Int { runtime.eventsProcessed }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Script

    public func crash(_ i: Int) {
        guard nodes[i].core != nil else { return }
        nodes[i].core = nil
        runtime.newLife(i)
        nodes[i].storage.dropUnsynced()
        nodes[i].scheduledTick = nil
    }

    public func restart(_ i: Int) {
        guard nodes[i].core == nil else { return }
        boot(i)
    }

    public func isUp(_ i: Int) -> Bool { nodes[i].core != nil }

    /// Node `i`'s log reads fail from now on, until it restarts: its core halts at its next
    /// read, and the shell loop stops it as a real node's shell stops the replica (a crash:
    /// what was not synced is gone, as a reopen cuts it). A restart finds a working disk.
    public func failReads(_ i: Int) {
        guard nodes[i].core != nil else { return }
        nodes[i].storage.readsFail = true
    }

    /// Splits nodes into groups that cannot reach each other; unlisted nodes join group 0.
    public func partition(_ groups: [[Int]]) { runtime.network.partition(groups) }

    public func heal() { runtime.network.heal() }

    /// Retention on node `i`: drops applied, synced entries, keeping the last `keep`.
    public func trim(_ i: Int, keep: UInt64) {
        guard let core = nodes[i].core else { return }
        let limit = min(core.appliedIndex, core.persistedIndex, nodes[i].storage.syncedIndex)
        guard limit > keep else { return }
        nodes[i].storage.trim(before: limit - keep + 1)
    }

    public func run(for duration: Duration) { runtime.run(for: duration, handle) }

    /// Runs until `condition` holds or `limit` passes; the virtual time it took, or nil.
    public func run(until condition: (RaftSimulation) -> Bool, limit: Duration) -> Duration? {
        runtime.run(until: { condition(self) }, limit: limit, handle)
    }

    /// The runtime's random faults for `duration` (crashes, restarts, partitions, heals, loss
    /// bursts); Raft's own, in their place now and then: retention trims, and failing log
    /// reads if `config.readFaults`.
    public func runWithFaults(for duration: Duration) {
        runtime.runWithFaults(for: duration, nodes: nodes.count, handle, crash: crash, restart: restart) { i in
            if config.readFaults && runtime.rng.next() % 2 == 0 {
                failReads(i)
            } else {
                trim(i, keep: runtime.rng.next() % 20)
            }
        }
    }

    /// Ends every fault: heal, no loss, every node up.
    public func quiesce() {
        heal()
        runtime.network.config.lossRate = 0
        runtime.network.config.duplicateRate = 0
        for i in nodes.indices { restart(i) }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Views

    public var leaders: [Int] { nodes.indices.filter { nodes[$0].core?.role == .leader } }

    public func core(_ i: Int) -> RaftNode? { nodes[i].core }

    /// A leader that every running node follows, with an entry of its own term committed.
    public var hasStableLeader: Bool {
        guard let l = leaders.first, leaders.count == 1, let core = nodes[l].core else { return false }
        guard inspect(nodes[l], { try core.term(at: core.commitIndex) }) == core.term else { return false }
        return nodes.allSatisfy { $0.core == nil || $0.core!.leader == core.id }
    }

    /// Proposes one marker record on the leader; nil if there is none.
    public func proposeMarker() -> String? {
        guard let l = leaders.first else { return nil }
        return propose(on: l)
    }

    public func isAcknowledgedEverywhere(_ payload: String) -> Bool {
        guard let index = acknowledged[payload] else { return false }
        return nodes.allSatisfy { $0.core == nil || $0.core!.appliedIndex >= index }
    }

    /// The linearizable-append check over the current replicas: every acknowledged record is
    /// at its index on every replica that has committed that index (and not trimmed it).
    public func checkAcknowledgedRecords() {
        for (payload, index) in acknowledged.sorted(by: { $0.value < $1.value }) {
            for n in nodes {
                guard let core = n.core, core.commitIndex >= index, index >= core.firstIndex else { continue }
                let e = inspect(n) { try core.entries(from: index, to: index).first }
                if e.map({ String(decoding: $0.data, as: UTF8.self) }) != payload {
                    violate("acknowledged \(payload) at \(index) but \(n.id) holds \(String(describing: e))")
                }
            }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Engine

    private func boot(_ i: Int) {
        let n = nodes[i]
        runtime.newLife(i)
        n.storage.readsFail = false
        let restored = n.storage.lastConfiguration()
        n.core = RaftNode(
            id: n.id, configuration: restored?.configuration ?? configuration,
            configurationIndex: restored?.index ?? 0, hardState: n.durableHardState,
            storage: n.storage, settings: config.settings, seed: runtime.rng.next(), now: now)
        n.lastWriteDone = now
        n.scheduledTick = nil
        drive(i)
    }

    private func handle(_ event: Event) {
        switch event {
        case .tick(let i):
            guard let core = nodes[i].core, nodes[i].scheduledTick == now else { return }
            nodes[i].scheduledTick = nil
            core.tick(now: now)
            drive(i)

        case .deliver(let i, let bytes):
            guard let core = nodes[i].core else { return }
            guard let message = try? RaftMessage.decode(bytes) else {
                preconditionFailure("simulation produced an undecodable raft message (\(bytes.count) bytes)")
            }
            core.step(message, now: now)
            drive(i)

        case .writeDone(let i, let write):
            guard let core = nodes[i].core else { return }
            nodes[i].storage.sync()
            if let hs = write.hardState { nodes[i].durableHardState = hs }
            if let p = write.position { core.appended(through: p, now: now) }
            for m in write.messages { send(m, from: i) }
            drive(i)

        case .propose:
            runtime.schedule(.propose, after: config.proposalInterval)
            let i = Int(runtime.rng.next() % UInt64(nodes.count))
            guard let core = nodes[i].core else { return }
            guard core.role == .leader else {
                // Forward to the leader it knows, as the API would, over the same lossy network.
                guard let hint = core.leader, let j = nodes.firstIndex(where: { $0.id == hint }) else { return }
                runtime.send(.forward(from: i, fromLife: runtime.life(of: i), to: j), from: i, to: j)
                return
            }
            _ = propose(on: i)

        case .forward(let i, let fromLife, let j):
            guard nodes[j].core?.role == .leader else { return }
            _ = propose(on: j, forwardedBy: (i, fromLife))
        }
    }

    @discardableResult
    private func propose(on i: Int, forwardedBy origin: (node: Int, life: Int)? = nil) -> String? {
        guard let core = nodes[i].core else { return nil }
        let count = 1 + Int(runtime.rng.next() % 3)
        let payloads = (0..<count).map { _ -> String in
            nextPayload += 1
            return "p\(nextPayload)"
        }
        guard let range = try? core.propose(payloads.map { Array($0.utf8) }, timestamp: now.nanoseconds / 1_000_000, now: now) else {
            drive(i)  // a read that failed in there halted the core: the loop stops the node
            return nil
        }
        proposedCount += count
        for (k, p) in payloads.enumerated() {
            proposals[p] = Proposal(node: i, life: runtime.life(of: i), index: range.lowerBound + UInt64(k), term: core.term)
            if let origin { forwardedBy[p] = origin }
        }
        drive(i)
        return payloads.last
    }

    /// The shell loop of one node.
    private func drive(_ i: Int) {
        let n = nodes[i]
        guard let core = n.core else { return }
        var rounds = 0
        while core.hasReady {
            rounds += 1
            precondition(rounds < 1000, "\(n.id): ready() never drains")
            let rd = core.ready()
            if rd.storageFailure != nil {
                // Nothing in this ready may be acted on (the rule atop Raft.swift).
                readFailureStops += 1
                crash(i)
                return
            }
            if let soft = rd.softState, soft.role == .leader { becameLeader(i, core) }
            for e in rd.entries { checkLogMatching(e, i, core) }
            if let r = rd.resetLog { n.storage.reset(after: r) }
            n.storage.append(rd.entries)
            for m in rd.messages { send(m, from: i) }
            for e in rd.committedEntries { apply(e, at: i) }
            let fsync = rd.mustPersist ? config.fsyncLatency + runtime.random(below: config.fsyncJitter) : .zero
            let done = max(now + fsync, n.lastWriteDone)
            n.lastWriteDone = done
            runtime.schedule(
                .writeDone(node: i, Write(hardState: rd.hardState, position: rd.persistedPosition, messages: rd.messagesAfterPersist)),
                at: done, to: i)
        }
        let next = max(core.nextDeadline, now)
        if n.scheduledTick.map({ next < $0 }) ?? true {
            n.scheduledTick = next
            runtime.schedule(.tick(node: i), at: next, to: i)
        }
    }

    private func send(_ m: RaftOutgoing, from i: Int) {
        let bytes = m.message.encode()
        messagesSent += 1
        guard let j = nodes.firstIndex(where: { $0.id == m.to }) else { return }
        runtime.send(.deliver(to: j, bytes: bytes), from: i, to: j)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Invariants

    /// What a node's log holds, for the invariant checks, whatever fault its reads have.
    private func inspect<T>(_ n: Node, _ read: () throws -> T) -> T {
        let failing = n.storage.readsFail
        n.storage.readsFail = false
        defer { n.storage.readsFail = failing }
        do {
            return try read()
        } catch {
            preconditionFailure("\(n.id): memory log read failed with no fault set: \(error)")
        }
    }

    private func violate(_ what: String) {
        if violations.count < 20 { violations.append("t=\(now): \(what)") }
    }

    /// Election safety: at most one leader per term. Leader completeness: the new leader's log
    /// holds every entry anyone has applied (that it has not trimmed).
    private func becameLeader(_ i: Int, _ core: RaftNode) {
        if let other = leaderOfTerm[core.term], other != core.id {
            violate("two leaders in term \(core.term): \(other) and \(core.id)")
        }
        leaderOfTerm[core.term] = core.id
        guard appliedMax >= core.firstIndex else { return }
        for index in core.firstIndex...appliedMax {
            guard let a = applied[index] else { continue }
            let held = inspect(nodes[i]) { try core.term(at: index) }
            if held != a.term {
                violate("leader \(core.id) of term \(core.term) lacks committed \(index)@\(a.term) (has \(String(describing: held)))")
                return
            }
        }
    }

    /// Log matching, inductively: one (index, term) always names the same entry, preceded by
    /// the same term — so two logs agreeing on an entry agree on everything before it.
    private func checkLogMatching(_ e: LogEntry, _ i: Int, _ core: RaftNode) {
        let facts = EntryFacts(kind: e.kind, dataHash: stableHash64(e.data), prevTerm: inspect(nodes[i]) { try core.term(at: e.index - 1) })
        let key = LogKey(index: e.index, term: e.term)
        if let known = entryFacts[key] {
            if known != facts { violate("log matching: \(e.index)@\(e.term) differs on \(core.id): \(known) vs \(facts)") }
        } else {
            entryFacts[key] = facts
        }
    }

    /// State machine safety, and the client's view of records.
    private func apply(_ e: LogEntry, at i: Int) {
        let facts = EntryFacts(kind: e.kind, dataHash: stableHash64(e.data), prevTerm: nil)
        let payload = e.kind == .record ? String(decoding: e.data, as: UTF8.self) : nil
        if let a = applied[e.index] {
            if a.term != e.term || a.facts != facts {
                violate(
                    "\(nodes[i].id) applied \(e.index)@\(e.term) \(payload ?? "\(e.kind)") where \(a.term) \(a.payload ?? "") was applied")
                return
            }
        } else {
            applied[e.index] = (e.term, facts, payload)
            appliedMax = max(appliedMax, e.index)
            if let payload {
                if proposals[payload] == nil { violate("applied \(payload) at \(e.index), which nobody proposed") }
                if let earlier = indexOfPayload[payload], earlier != e.index {
                    violate("\(payload) applied at \(earlier) and again at \(e.index)")
                }
                indexOfPayload[payload] = e.index
            }
        }
        guard let payload, let proposal = proposals[payload] else { return }
        // The proposing leader, still in the same life, applying its own entry: the client hears "committed".
        if proposal.node == i, proposal.life == runtime.life(of: i), proposal.index == e.index, proposal.term == e.term {
            acknowledge(payload, at: e.index, by: i)
        }
        // The follower that forwarded it, still in the same life, applying its own record
        // (it recognises it by the record's id, as a node does by the put's tag).
        if let origin = forwardedBy[payload], origin.node == i, origin.life == runtime.life(of: i) {
            acknowledge(payload, at: e.index, by: i)
            acknowledgedByForwarder += 1
            if let l = leaderOfTerm[e.term].flatMap({ id in nodes.firstIndex { $0.id == id } }),
                let leader = nodes[l].core, leader.term == e.term, leader.role == .leader, leader.commitIndex < e.index
            {
                acknowledgedBeforeLeaderCommit += 1
            }
        }
    }

    /// The client hears "committed at `index`": it must never hear another index for it.
    private func acknowledge(_ payload: String, at index: UInt64, by i: Int) {
        if let earlier = acknowledged[payload], earlier != index {
            violate("\(payload) acknowledged at \(earlier) and by \(nodes[i].id) at \(index)")
        }
        acknowledged[payload] = index
    }
}
