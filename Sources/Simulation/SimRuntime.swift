import TandemCore

/// The runtime every protocol simulation is built on.
///
/// It owns what a deterministic run needs whatever the protocol:
/// - virtual time: `now`, an `Instant`; every delay is a `Duration`;
/// - one event queue and its run loop (`run(for:)`, `run(until:limit:)`); events due at the
///   same instant fire in the order they were scheduled;
/// - one seeded generator, `rng`: every random choice of a run, the protocol's included, is
///   drawn from it, so a run is a pure function of its seed (and its script);
/// - the network: per-link delay, jitter, loss and duplication, partitions and cut links;
/// - node lives: a crash or a restart begins a new life, and an event addressed to a node's
///   earlier life is dropped (its packets, timers and disk writes die with the process);
/// - random fault injection (`runWithFaults`): crashes and restarts through the protocol's
///   hooks, partitions and heals, bursts of loss.
///
/// A protocol simulation supplies its event type and the handler that drives its core with
/// each event (how the core is fed and how its output is carried out), what a crash and a
/// restart do to its node, and its invariant checks.
final class SimRuntime<Event> {
    private(set) var now: Instant
    var rng: SeededGenerator
    var network: SimNetwork
    /// Events taken off the queue, including those dropped as addressed to an ended life.
    private(set) var eventsProcessed = 0

    private struct Scheduled {
        var event: Event
        /// The node and life the event belongs to; nil for events that always fire.
        var address: (node: Int, life: Int)?
    }

    private var queue = EventQueue<Scheduled>()
    private var lives: [Int: Int] = [:]

    init(seed: UInt64, network: SimNetworkConfig, start: Instant = Instant(nanoseconds: 1_000_000_000)) {
        rng = SeededGenerator(seed: seed)
        self.network = SimNetwork(config: network)
        now = start
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Lives

    func life(of node: Int) -> Int { lives[node, default: 0] }

    /// Called when node `node` crashes or boots: what was addressed to its previous life is dropped.
    func newLife(_ node: Int) { lives[node, default: 0] += 1 }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Scheduling

    /// Fires `event` at `at`; if it is addressed to a node (`to`), only while that node is in
    /// `life` (by default, the one it is in now).
    func schedule(_ event: Event, at: Instant, to node: Int? = nil, life: Int? = nil) {
        queue.push(at, Scheduled(event: event, address: node.map { ($0, life ?? self.life(of: $0)) }))
    }

    func schedule(_ event: Event, after delay: Duration, to node: Int? = nil, life: Int? = nil) {
        schedule(event, at: now + delay, to: node, life: life)
    }

    /// A message from node `from` to node `to` (in `life`, by default its current one) over the
    /// network: lost if the link is cut or by the link's loss rate, else delivered after the
    /// link's delay, and perhaps a second time.
    func send(_ event: Event, from: Int, to: Int, life: Int? = nil) {
        guard network.canReach(from, to) else { return }
        let link = network.config(from: from, to: to)
        guard !rng.chance(link.lossRate) else { return }
        schedule(event, after: delay(from: from, to: to), to: to, life: life)
        if rng.chance(link.duplicateRate) { schedule(event, after: delay(from: from, to: to), to: to, life: life) }
    }

    /// One trip's delay on the link from `from` to `to` (for messages that are never lost, like
    /// a stream's; `send` draws its own).
    func delay(from: Int, to: Int) -> Duration {
        let link = network.config(from: from, to: to)
        return link.latency + random(below: link.jitter, unit: link.unit)
    }

    /// Uniform in `0..<d`, in whole `unit`s; zero when `d` is less than one unit.
    func random(below d: Duration, unit: Duration = .nanoseconds(1)) -> Duration {
        let n = d.nanoseconds / unit.nanoseconds
        return unit * Int(n > 0 ? rng.next() % UInt64(n) : 0)
    }

    /// Uniform in `r`, in whole `unit`s.
    func random(in r: ClosedRange<Duration>, unit: Duration = .nanoseconds(1)) -> Duration {
        r.lowerBound + random(below: r.upperBound - r.lowerBound + unit, unit: unit)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Running

    /// Runs until virtual time `now + duration`, handing each live event to `handle`.
    func run(for duration: Duration, _ handle: (Event) -> Void) {
        _ = run(until: { false }, limit: duration, handle)
    }

    /// Runs until `condition` holds (checked first and after every event) or `limit` passes;
    /// returns the virtual time it took, or nil.
    func run(until condition: () -> Bool, limit: Duration, _ handle: (Event) -> Void) -> Duration? {
        let start = now
        let end = now + limit
        if condition() { return .zero }
        while let (at, _) = queue.peek(), at <= end {
            let (_, scheduled) = queue.pop()!
            now = at
            eventsProcessed += 1
            if let (node, life) = scheduled.address, life != self.life(of: node) {
                // Addressed to a life that has ended. (The condition is still checked: it may
                // depend on the time alone.)
            } else {
                handle(scheduled.event)
            }
            if condition() { return now - start }
        }
        now = end
        return nil
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Faults

    /// Random faults among `nodes` nodes for `duration`, one every 20–200 ms: crashes and
    /// restarts (the protocol's hooks), a node isolated, the cluster split in half, heals,
    /// bursts of loss and duplication, and otherwise the protocol's own fault on a node (`other`).
    func runWithFaults(
        for duration: Duration, nodes: Int, _ handle: (Event) -> Void,
        crash: (Int) -> Void, restart: (Int) -> Void, other: (Int) -> Void
    ) {
        let end = now + duration
        while now < end {
            run(for: .milliseconds(20 + Int64(rng.next() % 180)), handle)
            let i = Int(rng.next() % UInt64(nodes))
            switch rng.next() % 100 {
            case 0..<20: crash(i)
            case 20..<45: restart(i)
            case 45..<55: network.partition([[i]])
            case 55..<62:
                var shuffled = Array(0..<nodes)
                shuffled.shuffle(using: &rng)
                network.partition([Array(shuffled.prefix(nodes / 2))])
            case 62..<75: network.heal()
            case 75..<85:
                network.config.lossRate = [0, 0.02, 0.1, 0.3][Int(rng.next() % 4)]
                network.config.duplicateRate = [0, 0.05][Int(rng.next() % 2)]
            default: other(i)
            }
        }
    }
}

/// How one link behaves (and, as `SimNetwork.config`, every link not configured on its own).
public struct SimNetworkConfig: Sendable {
    /// One-way delay: `latency` plus a uniform draw from `0..<jitter` (jitter reorders packets).
    public var latency: Duration
    public var jitter: Duration
    /// Probability that a message is dropped.
    public var lossRate: Double
    /// Probability that a message is delivered twice.
    public var duplicateRate: Double
    /// Jitter is drawn in whole units of this (a shell with a millisecond timer uses 1 ms).
    public var unit: Duration

    public init(
        latency: Duration = .microseconds(500), jitter: Duration = .microseconds(500),
        lossRate: Double = 0, duplicateRate: Double = 0, unit: Duration = .nanoseconds(1)
    ) {
        self.latency = latency
        self.jitter = jitter
        self.lossRate = lossRate
        self.duplicateRate = duplicateRate
        self.unit = unit
    }
}

/// The simulated network between nodes `0..<n`: how each link behaves, and which links are cut.
public struct SimNetwork: Sendable {
    public struct Link: Hashable, Sendable {
        public var from: Int
        public var to: Int
        public init(from: Int, to: Int) {
            self.from = from
            self.to = to
        }
    }

    /// Every link's behaviour, unless it has its own in `links`.
    public var config: SimNetworkConfig
    public var links: [Link: SimNetworkConfig] = [:]
    /// Partition group per node (absent: group 0); nodes in different groups cannot reach each other.
    private var group: [Int: Int] = [:]
    /// Links cut one way, on top of the partition.
    private var cutLinks: Set<Link> = []

    public init(config: SimNetworkConfig) { self.config = config }

    public func config(from: Int, to: Int) -> SimNetworkConfig { links[Link(from: from, to: to)] ?? config }

    public func canReach(_ from: Int, _ to: Int) -> Bool {
        group[from, default: 0] == group[to, default: 0] && !cutLinks.contains(Link(from: from, to: to))
    }

    /// Splits the nodes into groups that cannot reach each other; unlisted nodes join group 0.
    public mutating func partition(_ groups: [[Int]]) {
        group = [:]
        for (g, members) in groups.enumerated() { for i in members { group[i] = g } }
    }

    /// Cuts the link from `from` to `to` only (the other way still works) until `heal()`.
    public mutating func cut(from: Int, to: Int) { cutLinks.insert(Link(from: from, to: to)) }

    /// Ends every partition and cut (link behaviour stays as configured).
    public mutating func heal() {
        group = [:]
        cutLinks = []
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
