import Membership
import TandemCore

/// The simulated network's faults. Every choice is drawn from the simulation's seeded
/// generator, so a run is a pure function of (seed, config, script).
public struct SimNetworkConfig: Sendable {
    /// One-way delay: `latency` plus a uniform draw from `0..<jitter` (jitter reorders packets).
    public var latency: Duration = .microseconds(500)
    public var jitter: Duration = .microseconds(500)
    /// Probability that a datagram is dropped, on every link.
    public var lossRate: Double = 0
    /// Probability that a datagram is delivered twice.
    public var duplicateRate: Double = 0
    /// How long a TCP push-pull to an unreachable peer takes to fail.
    public var tcpTimeout: Duration = .seconds(1)

    public init() {}
}

/// A deterministic simulation of many membership cores on one virtual clock.
///
/// Nodes exchange encoded datagrams (so the codec and its size limit are exercised on every
/// message) through a network with delay, jitter, loss, duplication and partitions; nodes can
/// crash and restart on their persisted incarnation. Observers record every status change so
/// tests can check invariants over the whole run. A failing seed replays exactly.
public final class MembershipSimulation {
    public struct Node {
        public let name: String
        public let address: String
        public var instance: MembershipInstance?
        public var persistedIncarnation: UInt64 = 0
        var scheduledTick: Instant?
        var generation = 0
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

    private enum Event {
        case tick(node: Int, generation: Int)
        case datagram(to: Int, generation: Int, from: String, bytes: [UInt8])
        case pushPullRequest(to: Int, generation: Int, from: Int, fromGeneration: Int, message: PushPullMessage)
        case pushPullResponse(to: Int, generation: Int, from: String, message: PushPullMessage, join: Bool)
        case pushPullFailed(to: Int, generation: Int, target: String, join: Bool)
    }

    public let settings: MembershipSettings
    public var network: SimNetworkConfig
    public private(set) var nodes: [Node] = []
    public private(set) var now: Instant = Instant(nanoseconds: 1_000_000_000)
    public private(set) var observations: [Observation] = []
    public private(set) var datagramsSent = 0
    public private(set) var bytesSent = 0
    public private(set) var eventsProcessed = 0

    private var rng: SeededGenerator
    private var queue = EventQueue<Event>()
    private var indexByAddress: [String: Int] = [:]
    /// Partition group per node; nodes in different groups cannot reach each other.
    private var group: [Int] = []

    public init(seed: UInt64, settings: MembershipSettings, network: SimNetworkConfig = SimNetworkConfig()) {
        self.rng = SeededGenerator(seed: seed)
        self.settings = settings
        self.network = network
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
            group.append(0)
            boot(i, region: region(i))
        }
    }

    private func boot(_ i: Int, region: String? = nil) {
        let incarnation = nodes[i].persistedIncarnation + 1
        nodes[i].persistedIncarnation = incarnation
        nodes[i].generation += 1
        var instance = MembershipInstance(
            settings: settings, name: nodes[i].name, address: nodes[i].address,
            meta: MemberMeta(region: region ?? "region-\(i % 3)", api: "api-\(i)"),
            incarnation: incarnation, seed: rng.next(), now: now)
        let seeds = i == 0 ? [] : [nodes[0].address]
        let directives = instance.join(seeds: seeds, now: now)
        nodes[i].instance = instance
        nodes[i].scheduledTick = nil
        carryOut(directives, from: i)
    }

    /// Stops a node at once: its queued packets are lost, its memory is gone.
    public func crash(_ i: Int) {
        nodes[i].instance = nil
        nodes[i].generation += 1
    }

    /// Restarts a crashed node on its "data dir" (its persisted incarnation).
    public func restart(_ i: Int) {
        precondition(!nodes[i].isUp, "restart of a running node \(nodes[i].name)")
        boot(i)
    }

    public func leave(_ i: Int) {
        guard nodes[i].isUp else { return }
        carryOut(nodes[i].instance!.leave(now: now), from: i)
    }

    /// Splits the nodes into groups that cannot reach each other; unlisted nodes join group 0.
    public func partition(_ groups: [[Int]]) {
        group = Array(repeating: 0, count: nodes.count)
        for (g, members) in groups.enumerated() { for i in members { group[i] = g } }
    }

    public func heal() { group = Array(repeating: 0, count: nodes.count) }

    public func canReach(_ a: Int, _ b: Int) -> Bool { group[a] == group[b] }

    /// Runs until virtual time `end`.
    public func run(for duration: Duration) {
        let end = now + duration
        while let (at, event) = queue.peek(), at <= end {
            _ = queue.pop()
            now = at
            eventsProcessed += 1
            handle(event)
        }
        now = end
    }

    /// Runs until `condition` holds (checked after every event) or `limit` passes; returns
    /// the virtual time it took, or nil.
    public func run(until condition: (MembershipSimulation) -> Bool, limit: Duration) -> Duration? {
        let start = now
        let end = now + limit
        if condition(self) { return .zero }
        while let (at, event) = queue.peek(), at <= end {
            _ = queue.pop()
            now = at
            eventsProcessed += 1
            handle(event)
            if condition(self) { return now - start }
        }
        now = end
        return nil
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
        switch event {
        case .tick(let i, let generation):
            guard nodes[i].generation == generation, nodes[i].isUp, nodes[i].scheduledTick == now else { return }
            nodes[i].scheduledTick = nil
            // Mutate in place (`!`), never a copy: copying a core would copy all its tables.
            carryOut(nodes[i].instance!.onTick(now: now), from: i)

        case .datagram(let i, let generation, let from, let bytes):
            guard nodes[i].generation == generation, nodes[i].isUp else { return }
            guard let packet = try? Packet.decode(bytes) else {
                preconditionFailure("simulation produced an undecodable packet (\(bytes.count) bytes)")
            }
            carryOut(nodes[i].instance!.onPacket(packet, from: from, now: now), from: i)

        case .pushPullRequest(let i, let generation, let from, let fromGeneration, let message):
            guard nodes[i].generation == generation, nodes[i].isUp, canReach(i, from) else {
                queue.push(now + network.tcpTimeout, .pushPullFailed(to: from, generation: fromGeneration,
                                                                     target: nodes[i].address, join: message.join))
                return
            }
            let (reply, directives) = nodes[i].instance!.onPushPullRequest(message, from: nodes[from].address, now: now)
            carryOut(directives, from: i)
            queue.push(now + delay(), .pushPullResponse(to: from, generation: fromGeneration, from: nodes[i].address,
                                                         message: reply, join: message.join))

        case .pushPullResponse(let i, let generation, let from, let message, let join):
            guard nodes[i].generation == generation, nodes[i].isUp else { return }
            carryOut(nodes[i].instance!.onPushPullResponse(message, from: from, join: join, now: now), from: i)

        case .pushPullFailed(let i, let generation, let target, let join):
            guard nodes[i].generation == generation, nodes[i].isUp else { return }
            carryOut(nodes[i].instance!.onPushPullFailed(to: target, join: join, now: now), from: i)
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
                guard let j = indexByAddress[to], canReach(i, j), !rng.chance(network.lossRate) else { continue }
                queue.push(now + delay(), .datagram(to: j, generation: nodes[j].generation, from: nodes[i].address, bytes: bytes))
                if rng.chance(network.duplicateRate) {
                    queue.push(now + delay(), .datagram(to: j, generation: nodes[j].generation, from: nodes[i].address, bytes: bytes))
                }
            case .pushPull(let to, let join):
                let message = nodes[i].instance!.pushPullMessage(join: join)
                guard let j = indexByAddress[to], canReach(i, j), nodes[j].isUp else {
                    queue.push(now + network.tcpTimeout, .pushPullFailed(to: i, generation: nodes[i].generation, target: to, join: join))
                    continue
                }
                queue.push(now + delay(), .pushPullRequest(to: j, generation: nodes[j].generation, from: i,
                                                           fromGeneration: nodes[i].generation, message: message))
            case .persistIncarnation(let inc):
                nodes[i].persistedIncarnation = max(nodes[i].persistedIncarnation, inc)
            case .memberChanged(let state, _):
                let subjectUp = indexByAddress[state.address].map { nodes[$0].isUp } ?? false
                observations.append(Observation(at: now, observer: nodes[i].name, subject: state.name,
                                                status: state.status, incarnation: state.incarnation,
                                                subjectWasUp: subjectUp))
            }
        }
        if nodes[i].isUp {
            let next = max(nodes[i].instance!.nextDeadline, now)
            if nodes[i].scheduledTick.map({ next < $0 }) ?? true {
                nodes[i].scheduledTick = next
                queue.push(next, .tick(node: i, generation: nodes[i].generation))
            }
        }
    }

    private func delay() -> Duration {
        let jitter = network.jitter.nanoseconds
        return network.latency + .nanoseconds(jitter > 0 ? Int64(rng.next() % UInt64(jitter)) : 0)
    }
}

/// A binary min-heap of timed events; ties keep insertion order (so runs are deterministic).
struct EventQueue<Element> {
    private struct Entry {
        var at: Instant
        var order: UInt64
        var element: Element
    }
    private var heap: [Entry] = []
    private var counter: UInt64 = 0

    var count: Int { heap.count }

    mutating func push(_ at: Instant, _ element: Element) {
        counter += 1
        heap.append(Entry(at: at, order: counter, element: element))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    func peek() -> (Instant, Element)? { heap.first.map { ($0.at, $0.element) } }

    mutating func pop() -> (Instant, Element)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && less(l, m) { m = l }
            if r < heap.count && less(r, m) { m = r }
            if m == i { break }
            heap.swapAt(i, m)
            i = m
        }
        return (top.at, top.element)
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        heap[a].at != heap[b].at ? heap[a].at < heap[b].at : heap[a].order < heap[b].order
    }
}
