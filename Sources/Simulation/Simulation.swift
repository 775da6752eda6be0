import Membership
import TandemCore

/// A deterministic simulation of many membership cores, on the shared `SimRuntime`.
///
/// Nodes exchange encoded datagrams (so the codec and its size limit are exercised on every
/// message) through the runtime's network (delay, jitter, loss, duplication, partitions); push-
/// pulls go over "TCP" (never lost, failing after `tcpTimeout` when the peer is unreachable);
/// nodes can crash and restart on their persisted incarnation. Observers record every status
/// change so tests can check invariants over the whole run. A failing seed replays exactly.
public final class MembershipSimulation {
    public struct Node {
        public let name: String
        public let address: String
        public var instance: MembershipInstance?
        public var persistedIncarnation: UInt64 = 0
        var scheduledTick: Instant?
        public var isUp: Bool { instance != nil }
    }

    /// One status change as seen by one node.
    public struct Observation: Sendable {
        public let at: Instant
        public let observer: String
        public let subject: String
        public let status: MemberStatus
        public let incarnation: UInt64
        /// Whether the subject was actually running (not crashed) when it was declared.
        public let subjectWasUp: Bool
    }

    /// Events addressed to a node's life (the runtime drops them when it ends), except a push-
    /// pull request: one to a crashed node still fails at the sender after `tcpTimeout`.
    private enum Event {
        case tick(node: Int)
        case datagram(to: Int, from: String, bytes: [UInt8])
        case pushPullRequest(to: Int, life: Int, from: Int, fromLife: Int, message: PushPullMessage)
        case pushPullResponse(to: Int, from: String, message: PushPullMessage, join: Bool)
        case pushPullFailed(to: Int, target: String, join: Bool)
    }

    public let settings: MembershipSettings
    /// How long a TCP push-pull to an unreachable peer takes to fail.
    public var tcpTimeout: Duration = .seconds(1)
    public private(set) var nodes: [Node] = []
    public private(set) var observations: [Observation] = []
    public private(set) var datagramsSent = 0
    public private(set) var bytesSent = 0

    private let runtime: SimRuntime<Event>
    private var indexByAddress: [String: Int] = [:]
    /// Nodes that are stalled (SIGSTOP, a long pause) until the given time: everything that
    /// reaches them waits, in order, as a kernel's socket buffer holds datagrams for a stopped
    /// process, and their timers fire late.
    private var stalledUntil: [Int: Instant] = [:]

    public init(seed: UInt64, settings: MembershipSettings, network: SimNetworkConfig = SimNetworkConfig()) {
        self.runtime = SimRuntime(seed: seed, network: network)
        self.settings = settings
    }

    public var now: Instant { runtime.now }
    public var eventsProcessed: Int { runtime.eventsProcessed }
    /// Every link's behaviour (loss, delay); change it mid-run to change the network.
    public var network: SimNetworkConfig {
        get { runtime.network.config }
        set { runtime.network.config = newValue }
    }

    public static func address(_ i: Int) -> String { "10.0.\(i / 250).\(i % 250 + 1):7946" }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Script

    /// Adds `count` nodes, each joining through node 0.
    public func addNodes(_ count: Int, region: (Int) -> String = { "region-\($0 % 3)" }) {
        for _ in 0..<count {
            let i = nodes.count
            let name = "n\(i)"
            let address = MembershipSimulation.address(i)
            nodes.append(Node(name: name, address: address, instance: nil))
            indexByAddress[address] = i
            boot(i, region: region(i))
        }
    }

    private func boot(_ i: Int, region: String? = nil) {
        let incarnation = nodes[i].persistedIncarnation + 1
        nodes[i].persistedIncarnation = incarnation
        runtime.newLife(i)
        var instance = MembershipInstance(
            settings: settings, name: nodes[i].name, address: nodes[i].address,
            meta: MemberMeta(region: region ?? "region-\(i % 3)", api: "api-\(i)"),
            incarnation: incarnation, seed: runtime.rng.next(), now: now)
        let seeds = i == 0 ? [] : [nodes[0].address]
        let directives = instance.join(seeds: seeds, now: now)
        nodes[i].instance = instance
        nodes[i].scheduledTick = nil
        carryOut(directives, from: i)
    }

    /// Stops a node at once: its queued packets are lost, its memory is gone.
    public func crash(_ i: Int) {
        nodes[i].instance = nil
        runtime.newLife(i)
    }

    /// Restarts a crashed node on its "data dir" (its persisted incarnation).
    public func restart(_ i: Int) {
        precondition(!nodes[i].isUp, "restart of a running node \(nodes[i].name)")
        boot(i)
    }

    /// Stalls node `i` for `duration`: it handles nothing until then, then everything at once.
    public func stall(_ i: Int, for duration: Duration) {
        stalledUntil[i] = max(stalledUntil[i] ?? now, now + duration)
    }

    public func isStalled(_ i: Int) -> Bool { (stalledUntil[i].map { now < $0 }) ?? false }

    public func leave(_ i: Int) {
        guard nodes[i].isUp else { return }
        carryOut(nodes[i].instance!.leave(now: now), from: i)
    }

    /// Splits the nodes into groups that cannot reach each other; unlisted nodes join group 0.
    public func partition(_ groups: [[Int]]) { runtime.network.partition(groups) }

    public func heal() { runtime.network.heal() }

    /// Gives the link from `from` to `to` its own behaviour (nil: back to `network`'s).
    public func setLink(from: Int, to: Int, _ config: SimNetworkConfig?) {
        runtime.network.links[SimNetwork.Link(from: from, to: to)] = config
    }

    public func canReach(_ a: Int, _ b: Int) -> Bool { runtime.network.canReach(a, b) }

    /// Runs until virtual time `now + duration`.
    public func run(for duration: Duration) { runtime.run(for: duration, handle) }

    /// Runs until `condition` holds (checked after every event) or `limit` passes; returns
    /// the virtual time it took, or nil.
    public func run(until condition: (MembershipSimulation) -> Bool, limit: Duration) -> Duration? {
        runtime.run(until: { condition(self) }, limit: limit, handle)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Views and invariants

    /// What node `observer` thinks of node `subject`'s status.
    public func status(of subject: Int, seenBy observer: Int) -> MemberStatus? {
        guard let instance = nodes[observer].instance else { return nil }
        if subject == observer { return instance.myself.status }
        return instance.members[nodes[subject].name]?.status
    }

    /// True when every running node sees every running node alive and every stopped node as
    /// dead or left (or has forgotten it).
    public func viewsAgree(stopped: Set<Int> = []) -> Bool {
        for o in nodes.indices where nodes[o].isUp {
            for s in nodes.indices where s != o {
                let st = status(of: s, seenBy: o)
                if nodes[s].isUp && !stopped.contains(s) {
                    if st != .alive { return false }
                } else if st == .alive || st == .suspect {
                    return false
                }
            }
        }
        return true
    }

    /// Deaths declared about nodes that were running at the time (in a network with no partition
    /// these are false positives).
    public var deathsOfRunningNodes: [Observation] {
        observations.filter { $0.status == .dead && $0.subjectWasUp }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Engine

    private func handle(_ event: Event) {
        if let i = target(of: event), let until = stalledUntil[i] {
            if now < until {
                if case .tick = event {
                    // The timer fires when the process runs again.
                    guard nodes[i].isUp, nodes[i].scheduledTick == now else { return }
                    nodes[i].scheduledTick = until
                    runtime.schedule(.tick(node: i), at: until, to: i)
                } else {
                    runtime.schedule(event, at: until, to: i)
                }
                return
            }
            stalledUntil[i] = nil
        }
        switch event {
        case .tick(let i):
            guard nodes[i].isUp, nodes[i].scheduledTick == now else { return }
            nodes[i].scheduledTick = nil
            // Mutate in place (`!`), never a copy: copying a core would copy all its tables.
            carryOut(nodes[i].instance!.onTick(now: now), from: i)

        case .datagram(let i, let from, let bytes):
            guard nodes[i].isUp else { return }
            guard let packet = try? Packet.decode(bytes) else {
                preconditionFailure("simulation produced an undecodable packet (\(bytes.count) bytes)")
            }
            carryOut(nodes[i].instance!.onPacket(packet, from: from, now: now), from: i)

        case .pushPullRequest(let i, let life, let from, let fromLife, let message):
            guard runtime.life(of: i) == life, nodes[i].isUp, canReach(i, from) else {
                runtime.schedule(
                    .pushPullFailed(to: from, target: nodes[i].address, join: message.join),
                    after: tcpTimeout, to: from, life: fromLife)
                return
            }
            let (reply, directives) = nodes[i].instance!.onPushPullRequest(message, from: nodes[from].address, now: now)
            carryOut(directives, from: i)
            runtime.schedule(
                .pushPullResponse(to: from, from: nodes[i].address, message: reply, join: message.join),
                after: runtime.delay(from: i, to: from), to: from, life: fromLife)

        case .pushPullResponse(let i, let from, let message, let join):
            guard nodes[i].isUp else { return }
            carryOut(nodes[i].instance!.onPushPullResponse(message, from: from, join: join, now: now), from: i)

        case .pushPullFailed(let i, let target, let join):
            guard nodes[i].isUp else { return }
            carryOut(nodes[i].instance!.onPushPullFailed(to: target, join: join, now: now), from: i)
        }
    }

    private func target(of event: Event) -> Int? {
        switch event {
        case .tick(let i), .datagram(let i, _, _), .pushPullRequest(let i, _, _, _, _), .pushPullResponse(let i, _, _, _),
            .pushPullFailed(let i, _, _):
            i
        }
    }

    private func carryOut(_ directives: [MembershipDirective], from i: Int) {
        for d in directives {
            switch d {
            case .send(let to, let packet):
                let bytes = packet.encode()
                precondition(bytes.count <= Packet.maxSize, "packet of \(bytes.count) bytes from \(nodes[i].name)")
                datagramsSent += 1
                bytesSent += bytes.count
                guard let j = indexByAddress[to] else { continue }
                runtime.send(.datagram(to: j, from: nodes[i].address, bytes: bytes), from: i, to: j)
            case .pushPull(let to, let join):
                let message = nodes[i].instance!.pushPullMessage(join: join)
                guard let j = indexByAddress[to], canReach(i, j), nodes[j].isUp else {
                    runtime.schedule(.pushPullFailed(to: i, target: to, join: join), after: tcpTimeout, to: i)
                    continue
                }
                runtime.schedule(
                    .pushPullRequest(to: j, life: runtime.life(of: j), from: i, fromLife: runtime.life(of: i), message: message),
                    after: runtime.delay(from: i, to: j))
            case .persistIncarnation(let inc):
                nodes[i].persistedIncarnation = max(nodes[i].persistedIncarnation, inc)
            case .memberChanged(let state, _):
                let subjectUp = indexByAddress[state.address].map { nodes[$0].isUp } ?? false
                observations.append(
                    Observation(
                        at: now, observer: nodes[i].name, subject: state.name,
                        status: state.status, incarnation: state.incarnation,
                        subjectWasUp: subjectUp))
            }
        }
        if nodes[i].isUp {
            let next = max(nodes[i].instance!.nextDeadline, now)
            if nodes[i].scheduledTick.map({ next < $0 }) ?? true {
                nodes[i].scheduledTick = next
                runtime.schedule(.tick(node: i), at: next, to: i)
            }
        }
    }
}
