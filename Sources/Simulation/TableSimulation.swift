import GlobalTable
import TandemCore

/// A deterministic simulation of global-table replication on the shared `SimRuntime`: N
/// `TableNode` cores driven the way the shell drives them (each `TableReady`: store, then
/// reply, then send; periodic anti-entropy, stability reports and compaction), over the
/// runtime's network (delay, reordering, loss, partitions), with crashes that lose whatever was
/// not yet committed, and (if configured) commits the disk refuses. Clients write random operations on random nodes; the run records every delta
/// issued and which ones were acknowledged, so a test can check the final replicas against
/// the merge they must equal. A run is a pure function of its seed.
public final class TableSimulation {
    public struct Config: Sendable {
        public var nodes = 3
        public var keys = 12
        /// Every link: 1–15 ms one way (whole ms), 5% loss.
        public var network = SimNetworkConfig(
            latency: .milliseconds(1), jitter: .milliseconds(15), lossRate: 0.05, unit: TableSimulation.ms)
        public var commitDelay: ClosedRange<Duration> = .milliseconds(1) ... .milliseconds(4)
        public var requestTimeout: Duration = .milliseconds(300)
        /// How far each node's wall clock is ahead of virtual time.
        public var clockSkew: ClosedRange<Duration> = .zero ... .milliseconds(40)
        public var antiEntropyInterval: Duration = .milliseconds(200)
        public var stabilityInterval: Duration = .milliseconds(100)
        public var compactionInterval: Duration = .milliseconds(50)
        /// The chance that a commit fails (the disk refuses it; nothing of it is stored).
        public var storeFailureRate = 0.0
        public var core = TableNode.Settings()
        public init() {}
    }

    /// One write a client made, and whether it was acknowledged.
    public struct Write: Sendable {
        public var node: Int
        public var key: ItemKey
        public var delta: ItemState
        public var acknowledged = false
        /// Its commit failed (or one it was made on top of): it must appear nowhere.
        public var failed = false
    }

    enum DiskKey: Hashable {
        case catalog(String)
        case stability
    }

    struct Node {
        var core: TableNode?
        /// What survives a crash: catalog and stability records, and the items.
        var disk: [DiskKey: [UInt8]] = [:]
        let items = MemoryItemStore()
        /// A ready's writes are being stored (the next ready waits for the outcome).
        var storing = false
        var pumpScheduled = false
        /// By ticket: what to do with the reply.
        var waiting: [UInt64: (TandemError?, [UInt8]?) -> Void] = [:]
        var awaiting: [UInt64: TableNode.Request] = [:]
        var skew: Duration = .zero
    }

    /// Every event is addressed to a node's life (the runtime drops it when that life ends).
    enum Event {
        case request(to: Int, from: Int, fromLife: Int, TableNode.Request)
        /// The answer to request `id`; nil when it timed out.
        case response(to: Int, id: UInt64, payload: [UInt8]?)
        case commit(node: Int, TableReady)
        case pump(node: Int)
        case antiEntropy(node: Int)
        case stability(node: Int)
        case compaction(node: Int)
    }

    public static let table = "agents"
    /// The table's shell keeps time in whole milliseconds (its cores take wall time in ms), so
    /// every delay here is drawn in whole ms.
    static let ms = Duration.milliseconds(1)
    public let config: Config
    public private(set) var writes: [Write] = []
    public private(set) var messages = 0
    var nodes: [Node] = []
    private let runtime: SimRuntime<Event>

    public init(seed: UInt64, config: Config = Config()) {
        self.config = config
        // Wall clocks start far from zero, as real ones do (the table is created at 1 ms).
        runtime = SimRuntime(seed: seed, network: config.network, start: Instant(nanoseconds: 1_000 * 1_000_000_000))
        for i in 0..<config.nodes {
            var n = Node()
            n.skew = runtime.random(in: config.clockSkew, unit: Self.ms)
            nodes.append(n)
            start(i)
        }
        // The table exists everywhere, durably, before the clients start (creating it is not
        // under test here).
        _ = try! nodes[0].core!.createTable(TableSimulation.table, schema: KeySchema(partitionKey: "id"), wallMs: 1)!
        let writes = nodes[0].core!.ready(wallMs: 1)!.writes
        nodes[0].core!.stored(nil)
        let entry = nodes[0].core!.catalog[TableSimulation.table]!
        for i in 0..<config.nodes {
            for w in writes { store(i, w) }
            if i > 0 { try! nodes[i].core!.load(catalogEntry: entry, name: TableSimulation.table) }
        }
    }

    public static func id(_ i: Int) -> NodeID { "n\(i)" }

    public var now: Instant { runtime.now }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Script

    public var isUp: [Bool] { nodes.map { $0.core != nil } }

    public func core(_ i: Int) -> TableNode? { nodes[i].core }

    public func crash(_ i: Int) {
        nodes[i].core = nil
        runtime.newLife(i)
        nodes[i].storing = false  // the commit under way: lost
        nodes[i].pumpScheduled = false
        nodes[i].waiting = [:]
        nodes[i].awaiting = [:]
    }

    /// Starts (or restarts) a node from what its disk holds.
    public func start(_ i: Int) {
        guard nodes[i].core == nil else { return }
        runtime.newLife(i)
        let core = TableNode(id: TableSimulation.id(i), store: nodes[i].items, settings: config.core)
        var catalog: [(String, [UInt8])] = []
        for (k, v) in nodes[i].disk {
            switch k {
            case .catalog(let name): catalog.append((name, v))
            case .stability: try? core.load(stability: v)
            }
        }
        for (name, v) in catalog.sorted(by: { $0.0 < $1.0 }) {
            if let e = try? TableSyncCodec.decodeDeltas(v).catalog[name] { try! core.load(catalogEntry: e, name: name) }
        }
        nodes[i].core = core
        runtime.schedule(.antiEntropy(node: i), after: runtime.random(in: .zero...config.antiEntropyInterval, unit: Self.ms), to: i)
        runtime.schedule(.stability(node: i), after: runtime.random(in: .zero...config.stabilityInterval, unit: Self.ms), to: i)
        runtime.schedule(.compaction(node: i), after: config.compactionInterval, to: i)
    }

    /// Splits the nodes into groups that cannot reach each other; unlisted nodes join group 0.
    public func partition(_ groups: [[Int]]) { runtime.network.partition(groups) }

    public func heal() { runtime.network.heal() }

    /// A client on node `i` makes one random write (if the node is up).
    public func clientWrite(on i: Int) {
        guard let core = nodes[i].core, let replica = core.replicas[TableSimulation.table] else { return }
        syncMembers(i)
        let key = ItemKey(partition: .string("k\(runtime.rng.next() % UInt64(config.keys))"))
        var state = try! replica.state(key) ?? ItemState()
        let t = core.now(wallMs: wall(i))
        let elements: [SetElement] = ["billing", "voice", "chat"].map { .string($0) }
        let delta: ItemState?
        let city = DocumentPath("profile", ["address", "city"])
        switch runtime.rng.next() % 14 {
        case 10: delta = state.set(city, .string("c\(runtime.rng.next() % 3)"), at: t)
        case 11: delta = state.remove(city, at: t)
        case 12: delta = state.set("profile", .map(["tier": .string("gold")]), at: t)
        case 13: delta = state.add(DocumentPath("profile", ["visits"]), DecimalNumber(1), at: t)
        case 0: delta = state.put(["id": .string("x"), "status": .string("s\(runtime.rng.next() % 4)")], at: t)
        case 1: delta = state.delete(at: t)
        case 2: delta = state.set("status", .string("s\(runtime.rng.next() % 4)"), at: t)
        case 3: delta = state.remove("status", at: t)
        case 4, 5: delta = state.add("handled", DecimalNumber(Int(runtime.rng.next() % 5) - 1), at: t)
        case 6: delta = state.addToSet("skills", [elements[Int(runtime.rng.next() % 3)]], at: t)
        case 7: delta = state.removeFromSet("skills", [elements[Int(runtime.rng.next() % 3)]], at: t)
        case 8: delta = state.set("skills", .stringSet(["voice"]), at: t)
        default: delta = state.set("note", .number(DecimalNumber(Int(runtime.rng.next() % 100))), at: t)
        }
        guard let delta else { return }
        write(i, key, delta)
    }

    /// Writes through the core; the reply marks it acknowledged or failed.
    private func write(_ i: Int, _ key: ItemKey, _ delta: ItemState) {
        let index = writes.count
        writes.append(Write(node: i, key: key, delta: delta))
        let ticket = try! nodes[i].core!.write([(TableSimulation.table, key, delta)])
        nodes[i].waiting[ticket] = { [unowned self] error, _ in
            if error == nil { self.writes[index].acknowledged = true } else { self.writes[index].failed = true }
        }
        schedulePump(i)
    }

    /// A client deletes one item on node `i`.
    public func deleteOn(_ i: Int, _ key: ItemKey) {
        guard let core = nodes[i].core, let replica = core.replicas[TableSimulation.table] else { return }
        syncMembers(i)
        var state = try! replica.state(key) ?? ItemState()
        write(i, key, state.delete(at: core.now(wallMs: wall(i))))
    }

    public func run(for duration: Duration) { runtime.run(for: duration, handle) }

    // ==== ------------------------------------------------------------------------------------
    // MARK: The shell, as the node runs it

    /// Node `i`'s wall clock, in the milliseconds the core takes.
    private func wall(_ i: Int) -> UInt64 { (now + nodes[i].skew).nanoseconds / 1_000_000 }

    private func reachable(_ a: Int, _ b: Int) -> Bool { runtime.network.canReach(a, b) && nodes[b].core != nil }

    /// Membership as a node would see it (detection is immediate here; SWIM's own timing is
    /// the membership simulation's business).
    private func syncMembers(_ i: Int) {
        let view = (0..<config.nodes).filter { $0 != i }.map { (id: TableSimulation.id($0), live: reachable(i, $0)) }
        nodes[i].core?.membersChanged(view, wallMs: wall(i))
    }

    /// Takes the core's output at the next event, so inputs of one moment go together.
    private func schedulePump(_ i: Int, after delay: Duration = .zero) {
        guard !nodes[i].pumpScheduled || delay > .zero else { return }
        if delay == .zero { nodes[i].pumpScheduled = true }
        runtime.schedule(.pump(node: i), after: delay, to: i)
    }

    /// The shell's loop (as `Tables.pump`): each ready's messages are sent at once, its writes
    /// stored (after a commit delay), then its replies answered; one commit at a time.
    private func pump(_ i: Int) {
        while !nodes[i].storing, let core = nodes[i].core, let rd = core.ready(wallMs: wall(i)) {
            send(i, rd.messages)
            if rd.writes.isEmpty {
                deliver(i, rd, nil)
                continue
            }
            nodes[i].storing = true
            runtime.schedule(.commit(node: i, rd), after: runtime.random(in: config.commitDelay, unit: Self.ms), to: i)
        }
    }

    private func deliver(_ i: Int, _ rd: TableReady, _ error: TandemError?) {
        nodes[i].core!.stored(error)
        for r in rd.replies { nodes[i].waiting.removeValue(forKey: r.ticket)?(error ?? r.error, r.payload) }
    }

    private func send(_ i: Int, _ requests: [TableNode.Request]) {
        for r in requests {
            messages += 1
            nodes[i].awaiting[r.id] = r
            let to = Int(r.to.rawValue.dropFirst())!
            runtime.schedule(.response(to: i, id: r.id, payload: nil), after: config.requestTimeout, to: i)
            guard nodes[to].core != nil else { continue }
            runtime.send(.request(to: to, from: i, fromLife: runtime.life(of: i), r), from: i, to: to)
        }
    }

    private func handle(_ e: Event) {
        switch e {
        case .request(let to, let from, let fromLife, let r):
            guard let core = nodes[to].core else { return }
            syncMembers(to)
            let ticket = core.receive(kind: r.kind, payload: r.payload, wallMs: wall(to))
            nodes[to].waiting[ticket] = { [unowned self] error, reply in
                guard error == nil, let reply, self.nodes[from].core != nil else { return }
                self.runtime.send(.response(to: from, id: r.id, payload: reply), from: to, to: from, life: fromLife)
            }
            schedulePump(to)
        case .response(let i, let id, let payload):
            guard let core = nodes[i].core, nodes[i].awaiting.removeValue(forKey: id) != nil else { return }
            syncMembers(i)
            core.responded(to: id, payload: payload, wallMs: wall(i))
            schedulePump(i)
            // A failed batch waits out the core's retry delay before its stream goes again.
            if payload == nil { schedulePump(i, after: .milliseconds(Int64(config.core.retryDelayMs))) }
        case .commit(let i, let rd):
            nodes[i].storing = false
            // A refused commit stores nothing of the batch (LMDB aborts the transaction).
            let error = runtime.rng.chance(config.storeFailureRate) ? TandemError(.diskFailed, "simulated fsync failure") : nil
            if error == nil { for w in rd.writes { store(i, w) } }
            syncMembers(i)
            deliver(i, rd, error)
            pump(i)
        case .pump(let i):
            guard nodes[i].core != nil else { return }
            nodes[i].pumpScheduled = false
            syncMembers(i)
            pump(i)
        case .antiEntropy(let i):
            guard let core = nodes[i].core else { return }
            syncMembers(i)
            core.startAntiEntropy(wallMs: wall(i)) { Int(self.runtime.rng.next() % UInt64($0)) }
            schedulePump(i)
            runtime.schedule(.antiEntropy(node: i), after: config.antiEntropyInterval, to: i)
        case .stability(let i):
            guard let core = nodes[i].core else { return }
            syncMembers(i)
            core.updateStability(wallMs: wall(i))
            core.stabilityRound(wallMs: wall(i))
            schedulePump(i)
            runtime.schedule(.stability(node: i), after: config.stabilityInterval, to: i)
        case .compaction(let i):
            guard let core = nodes[i].core else { return }
            core.compactionStep()
            schedulePump(i)
            runtime.schedule(.compaction(node: i), after: config.compactionInterval, to: i)
        }
    }

    private func store(_ i: Int, _ w: TableNode.StoreWrite) {
        switch w {
        case .catalog(let name, let entry): nodes[i].disk[.catalog(name)] = TableSyncCodec.encode(deltas: [], catalog: [name: entry])
        case .stability(let bytes): nodes[i].disk[.stability] = bytes
        case .item, .summary, .dropTable, .change, .index: nodes[i].items.apply([w])
        }
    }
}
