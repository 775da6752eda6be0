import GlobalTable
import TandemCore

/// A deterministic simulation of global-table replication: N `TableNode` cores on one virtual
/// clock, driven the way the shell drives them (each `TableReady`: store, then reply, then
/// send; periodic anti-entropy, stability reports and compaction), over a network with delay,
/// reordering, loss and partitions, with crashes that lose whatever was not yet committed,
/// and (if configured) commits the disk refuses. Clients write random operations on random nodes; the run records every delta
/// issued and which ones were acknowledged, so a test can check the final replicas against
/// the merge they must equal. A run is a pure function of its seed.
public final class TableSimulation {
    public struct Config: Sendable {
        public var nodes = 3
        public var keys = 12
        public var latencyMs: ClosedRange<UInt64> = 1...15
        public var lossRate = 0.05
        public var commitDelayMs: ClosedRange<UInt64> = 1...4
        public var requestTimeoutMs: UInt64 = 300
        public var clockSkewMs: ClosedRange<UInt64> = 0...40
        public var antiEntropyMs: UInt64 = 200
        public var stabilityMs: UInt64 = 100
        public var compactionMs: UInt64 = 50
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
        case item(String, ItemKey)
        case stability
    }

    struct Node {
        var core: TableNode?
        var generation = 0
        var disk: [DiskKey: [UInt8]] = [:]
        /// A ready's writes are being stored (the next ready waits for the outcome).
        var storing = false
        var pumpScheduled = false
        /// By ticket: what to do with the reply.
        var waiting: [UInt64: (TandemError?, [UInt8]?) -> Void] = [:]
        var awaiting: [UInt64: TableNode.Request] = [:]
        var skewMs: UInt64 = 0
    }

    enum Event {
        case request(to: Int, generation: Int, from: Int, fromGeneration: Int, TableNode.Request)
        case response(to: Int, generation: Int, id: UInt64, payload: [UInt8]?)
        case timeout(node: Int, generation: Int, id: UInt64)
        case commit(node: Int, generation: Int, TableReady)
        case pump(node: Int, generation: Int)
        case antiEntropy(node: Int, generation: Int)
        case stability(node: Int, generation: Int)
        case compaction(node: Int, generation: Int)
    }

    public static let table = "agents"
    public let config: Config
    public private(set) var nowMs: UInt64 = 1_000_000
    public private(set) var writes: [Write] = []
    public private(set) var messages = 0
    var nodes: [Node] = []
    var rng: SeededGenerator
    private var queue = EventQueue<Event>()
    /// Partition group per node: nodes in different groups cannot reach each other.
    public private(set) var group: [Int]

    public init(seed: UInt64, config: Config = Config()) {
        self.config = config
        rng = SeededGenerator(seed: seed)
        group = Array(repeating: 0, count: config.nodes)
        for i in 0..<config.nodes {
            var n = Node()
            n.skewMs = draw(config.clockSkewMs)
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
            if i > 0 { nodes[i].core!.load(catalogEntry: entry, name: TableSimulation.table) }
            for w in writes { store(i, w) }
        }
    }

    public static func id(_ i: Int) -> String { "n\(i)" }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Script

    public var isUp: [Bool] { nodes.map { $0.core != nil } }

    public func core(_ i: Int) -> TableNode? { nodes[i].core }

    public func crash(_ i: Int) {
        nodes[i].core = nil
        nodes[i].generation += 1
        nodes[i].storing = false  // the commit under way: lost
        nodes[i].pumpScheduled = false
        nodes[i].waiting = [:]
        nodes[i].awaiting = [:]
    }

    /// Starts (or restarts) a node from what its disk holds.
    public func start(_ i: Int) {
        guard nodes[i].core == nil else { return }
        let core = TableNode(id: TableSimulation.id(i), settings: config.core)
        var catalog: [(String, [UInt8])] = [], items: [(String, ItemKey, [UInt8])] = []
        for (k, v) in nodes[i].disk {
            switch k {
            case .catalog(let name): catalog.append((name, v))
            case .item(let t, let key): items.append((t, key, v))
            case .stability: try? core.load(stability: v)
            }
        }
        for (name, v) in catalog.sorted(by: { $0.0 < $1.0 }) {
            if let e = try? TableSyncCodec.decodeDeltas(v).catalog[name] { core.load(catalogEntry: e, name: name) }
        }
        for (t, key, v) in items.sorted(by: { $0.1 < $1.1 }) { core.load(table: t, key: key, state: try! ItemCodec.decode(v)) }
        nodes[i].core = core
        let g = nodes[i].generation
        queue.push(at(draw(0...config.antiEntropyMs)), .antiEntropy(node: i, generation: g))
        queue.push(at(draw(0...config.stabilityMs)), .stability(node: i, generation: g))
        queue.push(at(config.compactionMs), .compaction(node: i, generation: g))
    }

    public func partition(_ groups: [[Int]]) {
        for (g, members) in groups.enumerated() { for i in members { group[i] = g } }
    }

    public func heal() { group = Array(repeating: 0, count: config.nodes) }

    /// A client on node `i` makes one random write (if the node is up).
    public func clientWrite(on i: Int) {
        guard let core = nodes[i].core, let replica = core.replicas[TableSimulation.table] else { return }
        syncMembers(i)
        let key = ItemKey(partition: .string("k\(rng.next() % UInt64(config.keys))"))
        var state = replica.state(key) ?? ItemState()
        let t = core.now(wallMs: wall(i))
        let elements: [SetElement] = ["billing", "voice", "chat"].map { .string($0) }
        let delta: ItemState?
        let city = DocumentPath("profile", ["address", "city"])
        switch rng.next() % 14 {
        case 10: delta = state.set(city, .string("c\(rng.next() % 3)"), at: t)
        case 11: delta = state.remove(city, at: t)
        case 12: delta = state.set("profile", .map(["tier": .string("gold")]), at: t)
        case 13: delta = state.add(DocumentPath("profile", ["visits"]), DecimalNumber(1), at: t)
        case 0: delta = state.put(["id": .string("x"), "status": .string("s\(rng.next() % 4)")], at: t)
        case 1: delta = state.delete(at: t)
        case 2: delta = state.set("status", .string("s\(rng.next() % 4)"), at: t)
        case 3: delta = state.remove("status", at: t)
        case 4, 5: delta = state.add("handled", DecimalNumber(Int(rng.next() % 5) - 1), at: t)
        case 6: delta = state.addToSet("skills", [elements[Int(rng.next() % 3)]], at: t)
        case 7: delta = state.removeFromSet("skills", [elements[Int(rng.next() % 3)]], at: t)
        case 8: delta = state.set("skills", .stringSet(["voice"]), at: t)
        default: delta = state.set("note", .number(DecimalNumber(Int(rng.next() % 100))), at: t)
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
        var state = replica.state(key) ?? ItemState()
        write(i, key, state.delete(at: core.now(wallMs: wall(i))))
    }

    /// Runs the simulation for `ms` of virtual time.
    public func run(forMs ms: UInt64) {
        let end = nowMs + ms
        while let (t, _) = queue.peek(), t.nanoseconds <= end * 1_000_000 {
            let (_, e) = queue.pop()!
            nowMs = t.nanoseconds / 1_000_000
            handle(e)
        }
        nowMs = end
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: The shell, as the node runs it

    private func at(_ delayMs: UInt64) -> Instant { Instant(nanoseconds: (nowMs + delayMs) * 1_000_000) }

    private func draw(_ r: ClosedRange<UInt64>) -> UInt64 { r.lowerBound + rng.next() % (r.upperBound - r.lowerBound + 1) }

    private func wall(_ i: Int) -> UInt64 { nowMs + nodes[i].skewMs }

    private func reachable(_ a: Int, _ b: Int) -> Bool { group[a] == group[b] && nodes[b].core != nil }

    /// Membership as a node would see it (detection is immediate here; SWIM's own timing is
    /// the membership simulation's business).
    private func syncMembers(_ i: Int) {
        let view = (0..<config.nodes).filter { $0 != i }.map { (id: TableSimulation.id($0), live: reachable(i, $0)) }
        nodes[i].core?.membersChanged(view, wallMs: wall(i))
    }

    /// Takes the core's output at the next event, so inputs of one moment go together.
    private func schedulePump(_ i: Int, afterMs delay: UInt64 = 0) {
        guard !nodes[i].pumpScheduled || delay > 0 else { return }
        if delay == 0 { nodes[i].pumpScheduled = true }
        queue.push(at(delay), .pump(node: i, generation: nodes[i].generation))
    }

    /// The shell's loop: each ready's writes are stored (after a commit delay), then its
    /// replies answered, then its messages sent; one commit at a time.
    private func pump(_ i: Int) {
        while !nodes[i].storing, let core = nodes[i].core, let rd = core.ready(wallMs: wall(i)) {
            if rd.writes.isEmpty {
                deliver(i, rd, nil)
                continue
            }
            nodes[i].storing = true
            queue.push(at(draw(config.commitDelayMs)), .commit(node: i, generation: nodes[i].generation, rd))
        }
    }

    private func deliver(_ i: Int, _ rd: TableReady, _ error: TandemError?) {
        nodes[i].core!.stored(error)
        for r in rd.replies { nodes[i].waiting.removeValue(forKey: r.ticket)?(error ?? r.error, r.payload) }
        send(i, rd.messages)
    }

    private func send(_ i: Int, _ requests: [TableNode.Request]) {
        for r in requests {
            messages += 1
            nodes[i].awaiting[r.id] = r
            let to = Int(r.to.dropFirst())!
            queue.push(at(config.requestTimeoutMs), .timeout(node: i, generation: nodes[i].generation, id: r.id))
            guard reachable(i, to), !rng.chance(config.lossRate) else { continue }
            queue.push(at(draw(config.latencyMs)), .request(to: to, generation: nodes[to].generation, from: i,
                                                              fromGeneration: nodes[i].generation, r))
        }
    }

    private func handle(_ e: Event) {
        switch e {
        case .request(let to, let g, let from, let fromG, let r):
            guard nodes[to].generation == g, let core = nodes[to].core else { return }
            syncMembers(to)
            let ticket = core.receive(kind: r.kind, payload: r.payload, wallMs: wall(to))
            nodes[to].waiting[ticket] = { [unowned self] error, reply in
                guard error == nil, let reply, self.reachable(to, from), !self.rng.chance(self.config.lossRate) else { return }
                self.queue.push(self.at(self.draw(self.config.latencyMs)), .response(to: from, generation: fromG, id: r.id, payload: reply))
            }
            schedulePump(to)
        case .response(let i, let g, let id, let payload):
            answer(i, g, id, payload)
        case .timeout(let i, let g, let id):
            answer(i, g, id, nil)
        case .commit(let i, let g, let rd):
            guard nodes[i].generation == g else { return }
            nodes[i].storing = false
            // A refused commit stores nothing of the batch (LMDB aborts the transaction).
            let error = rng.chance(config.storeFailureRate) ? TandemError(.diskFailed, "simulated fsync failure") : nil
            if error == nil { for w in rd.writes { store(i, w) } }
            syncMembers(i)
            deliver(i, rd, error)
            pump(i)
        case .pump(let i, let g):
            guard nodes[i].generation == g, nodes[i].core != nil else { return }
            nodes[i].pumpScheduled = false
            syncMembers(i)
            pump(i)
        case .antiEntropy(let i, let g):
            guard nodes[i].generation == g, let core = nodes[i].core else { return }
            syncMembers(i)
            core.startAntiEntropy(wallMs: wall(i)) { Int(self.rng.next() % UInt64($0)) }
            schedulePump(i)
            queue.push(at(config.antiEntropyMs), .antiEntropy(node: i, generation: g))
        case .stability(let i, let g):
            guard nodes[i].generation == g, let core = nodes[i].core else { return }
            syncMembers(i)
            core.updateStability(wallMs: wall(i))
            core.stabilityRound(wallMs: wall(i))
            schedulePump(i)
            queue.push(at(config.stabilityMs), .stability(node: i, generation: g))
        case .compaction(let i, let g):
            guard nodes[i].generation == g, let core = nodes[i].core else { return }
            core.compactionStep()
            schedulePump(i)
            queue.push(at(config.compactionMs), .compaction(node: i, generation: g))
        }
    }

    private func answer(_ i: Int, _ g: Int, _ id: UInt64, _ payload: [UInt8]?) {
        guard nodes[i].generation == g, let core = nodes[i].core, nodes[i].awaiting.removeValue(forKey: id) != nil else { return }
        syncMembers(i)
        core.responded(to: id, payload: payload, wallMs: wall(i))
        schedulePump(i)
        // A failed batch waits out the core's retry delay before its stream goes again.
        if payload == nil { schedulePump(i, afterMs: config.core.retryDelayMs) }
    }

    private func store(_ i: Int, _ w: TableNode.StoreWrite) {
        switch w {
        case .catalog(let name, let entry): nodes[i].disk[.catalog(name)] = TableSyncCodec.encode(deltas: [], catalog: [name: entry])
        case .item(let t, let key, let state): nodes[i].disk[.item(t, key)] = state
        case .stability(let bytes): nodes[i].disk[.stability] = bytes
        }
    }
}
