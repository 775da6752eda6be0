import StreamLog
import TandemCore

/// A hand-driven Raft group for scenario tests: persistence is synchronous, messages wait in
/// `inFlight` until `deliver` (so a test can drop, hold or cut links), and time only moves when
/// a test moves it.
final class RaftTestCluster {
    var nodes: [NodeID: RaftNode] = [:]
    var storages: [NodeID: MemoryLogStorage] = [:]
    var hardStates: [NodeID: HardState] = [:]
    var applied: [NodeID: [LogEntry]] = [:]
    var inFlight: [RaftOutgoing] = []
    /// Nodes cut off from everyone (messages to and from them are dropped).
    var isolated: Set<NodeID> = []
    /// Messages for which this returns true are dropped.
    var dropIf: (RaftOutgoing, NodeID) -> Bool = { _, _ in false }
    /// Lets a test tamper with messages in flight (an adversarial network).
    var rewrite: (RaftOutgoing) -> RaftOutgoing = { $0 }
    var now = Instant(nanoseconds: 1_000_000_000)
    let settings: RaftSettings
    private var seed: UInt64 = 1

    static let testSettings = RaftSettings(electionTimeout: .seconds(1), heartbeatInterval: .milliseconds(100))

    init(
        voters: [NodeID], witnesses: [NodeID] = [], settings: RaftSettings = RaftTestCluster.testSettings,
        logs: [NodeID: [UInt64]] = [:], terms: [NodeID: UInt64] = [:]
    ) {
        self.settings = settings
        let config = RaftConfiguration(voters: voters, witnesses: witnesses)
        for id in voters + witnesses {
            // `logs` gives each node's log as a list of terms (index 1, 2, …), Figure-7 style.
            let storage = MemoryLogStorage()
            let entryTerms = logs[id] ?? []
            storage.append(
                entryTerms.enumerated().map {
                    LogEntry(index: UInt64($0.offset + 1), term: $0.element, data: Array("\(id)-\($0.offset + 1)".utf8))
                })
            storage.sync()
            add(id, configuration: config, storage: storage, hardState: HardState(term: terms[id] ?? entryTerms.last ?? 0))
        }
    }

    func add(
        _ id: NodeID, configuration: RaftConfiguration, storage: MemoryLogStorage = MemoryLogStorage(), hardState: HardState = HardState()
    ) {
        seed += 1
        storages[id] = storage
        hardStates[id] = hardState
        applied[id] = []
        nodes[id] = RaftNode(
            id: id, configuration: configuration, hardState: hardState, storage: storage,
            settings: settings, seed: seed, now: now)
    }

    subscript(_ id: NodeID) -> RaftNode { nodes[id]! }

    /// The shell loop with an instant disk: persist, report, send everything, apply.
    func process(_ id: NodeID) {
        let node = nodes[id]!
        while node.hasReady {
            let rd = node.ready()
            if let r = rd.resetLog { storages[id]!.reset(after: r) }
            storages[id]!.append(rd.entries)
            storages[id]!.sync()
            if let hs = rd.hardState { hardStates[id] = hs }
            if let p = rd.persistedPosition { node.appended(through: p, now: now) }
            for m in rd.messages + rd.messagesAfterPersist { send(m, from: id) }
            applied[id]!.append(contentsOf: rd.committedEntries)
        }
    }

    private func send(_ m: RaftOutgoing, from: NodeID) {
        guard !isolated.contains(from), !isolated.contains(m.to), nodes[m.to] != nil, !dropIf(m, from) else { return }
        inFlight.append(rewrite(m))
    }

    /// Delivers everything in flight, and what that causes, until the network is quiet.
    func stabilize(limit: Int = 10_000) {
        for id in nodes.keys.sorted() { process(id) }
        var steps = 0
        while !inFlight.isEmpty {
            let batch = inFlight
            inFlight = []
            for m in batch where !isolated.contains(m.to) && !isolated.contains(m.message.from) {
                nodes[m.to]!.step(m.message, now: now)
                process(m.to)
            }
            steps += 1
            precondition(steps < limit, "cluster did not stabilize")
        }
    }

    /// Moves time forward, ticking every node at each of its deadlines on the way (in
    /// `step`-sized increments), delivering messages after each.
    func advance(_ duration: Duration, step: Duration = .milliseconds(10)) {
        let end = now + duration
        while now < end {
            now = now + step
            for id in nodes.keys.sorted() where nodes[id]!.nextDeadline <= now {
                nodes[id]!.tick(now: now)
                process(id)
            }
            stabilize()
        }
    }

    /// Makes `id` campaign now (as if its election timer fired) and runs the election.
    func elect(_ id: NodeID) {
        now = max(now, nodes[id]!.nextDeadline)
        nodes[id]!.tick(now: now)
        process(id)
        stabilize()
    }

    var leaders: [NodeID] { nodes.keys.sorted().filter { nodes[$0]!.role == .leader } }

    /// Terms of a node's log from index 1 (or its first index) through its last.
    func terms(_ id: NodeID) -> [UInt64] {
        let n = nodes[id]!
        guard n.lastIndex >= n.firstIndex else { return [] }
        return (n.firstIndex...n.lastIndex).map { (try? n.term(at: $0))! }  // memory storage: reads do not fail
    }

    func propose(_ id: NodeID, _ text: String) throws(RaftError) {
        try nodes[id]!.propose([Array(text.utf8)], timestamp: 0, now: now)
        process(id)
    }

    func appliedRecords(_ id: NodeID) -> [String] {
        applied[id]!.filter { $0.kind == .record }.map { String(decoding: $0.data, as: UTF8.self) }
    }
}
