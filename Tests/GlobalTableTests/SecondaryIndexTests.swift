@testable import GlobalTable
import TandemCore
import Testing

/// Secondary indexes in the table core: an index is a function of the visible items (sparse,
/// projected), kept in the commit of the item changes it follows from, built over existing items
/// by a resumable backfill, and equal on every replica once the items are.
@Suite struct SecondaryIndexTests {
    static let table = "agents"
    static let schema = KeySchema(partitionKey: "pk", sortKey: "sk", sortKeyType: "N")
    let wall: UInt64 = 5_000_000

    static let byStatus = IndexDefinition(
        name: "by-status", local: false, schema: KeySchema(partitionKey: "status", sortKey: "ts", sortKeyType: "N"),
        projection: .keysOnly, id: 11)
    static let byQueue = IndexDefinition(
        name: "by-queue", local: false, schema: KeySchema(partitionKey: "queue"), projection: .include(["status"]), id: 12)
    static let local = IndexDefinition(
        name: "by-ts", local: true, schema: KeySchema(partitionKey: "pk", sortKey: "ts", sortKeyType: "N"), projection: .all, id: 13)
    static let all = [byStatus, byQueue, local]

    func key(_ p: Int, _ s: Int) -> ItemKey { ItemKey(partition: .string("p\(p)"), sort: .number(DecimalNumber(s))) }

    /// A core holding the table, over its own store.
    func node(_ id: String, store: MemoryItemStore = MemoryItemStore()) -> TableNode {
        let n = TableNode(id: NodeID(id), store: store)
        try! n.load(catalogEntry: CatalogEntry(schema: Self.schema, at: HLC(time: 1 << 16, node: 0)), name: Self.table)
        return n
    }

    /// Runs the node's loop until quiet, storing every ready; returns the messages to deliver.
    @discardableResult
    func settle(_ n: TableNode) -> [TableNode.Request] {
        var out: [TableNode.Request] = []
        while let rd = n.ready(wallMs: wall) {
            n.commit(rd)
            out += rd.messages
        }
        return out
    }

    /// What the store holds of an index, in index order.
    func stored(_ n: TableNode, _ d: IndexDefinition) throws -> [IndexEntry] {
        var walk = n.replicas[Self.table]!.indexEntries(d, IndexRange(partition: nil))
        var out: [IndexEntry] = []
        while let e = try walk.next() { out.append(e) }
        return out
    }

    /// The index as stored equals the index rebuilt from the items, and its counts are exact.
    func expectIndexesMatchItems(_ n: TableNode, _ note: Comment) throws {
        let r = n.replicas[Self.table]!
        #expect(r.pendingCount == 0)
        for s in r.indexes.states where !s.building {
            let got = try stored(n, s.definition), want = try r.rebuiltIndex(s.definition)
            #expect(got == want, "\(s.definition.name): \(note)")
            #expect(s.items == want.count, "\(s.definition.name) count: \(note)")
            #expect(s.bytes == want.reduce(0) { $0 + $1.encoded.count }, "\(s.definition.name) bytes: \(note)")
        }
    }

    /// A random change to one item, as clients of a contact center make them: statuses come and
    /// go, some of the wrong type (a merge may produce one; it is then not indexed), timestamps
    /// count up, items are deleted and written again.
    func randomDelta(_ state: inout ItemState, _ k: ItemKey, _ rng: inout SeededGenerator, at t: HLC) -> ItemState? {
        let status: AttributeValue =
            rng.chance(0.1) ? .number(DecimalNumber(7)) : rng.chance(0.05) ? .string("") : .string("s\(rng.next() % 3)")
        switch rng.next() % 7 {
        case 0:
            var item: [String: AttributeValue] = ["pk": k.partition.attributeValue, "sk": k.sort!.attributeValue]
            if rng.chance(0.8) { item["status"] = status }
            if rng.chance(0.8) { item["ts"] = .number(DecimalNumber(Int(rng.next() % 50))) }
            if rng.chance(0.5) { item["queue"] = .string("q\(rng.next() % 2)") }
            return state.put(item, at: t)
        case 1: return state.set("status", status, at: t)
        case 2: return state.add("ts", DecimalNumber(1), at: t)
        case 3: return state.remove(rng.chance(0.5) ? "status" : "queue", at: t)
        case 4: return state.set("queue", .string("q\(rng.next() % 3)"), at: t)
        case 5: return state.delete(at: t)
        default: return state.set("note", .string("n\(rng.next() % 100)"), at: t)
        }
    }

    @Test func entriesAreSparseAndProjected() {
        let k = key(1, 1)
        var state = ItemState()
        _ = state.put(
            [
                "pk": .string("p1"), "sk": .number(DecimalNumber(1)), "status": .string("ready"), "ts": .number(DecimalNumber(5)),
                "queue": .string("q1"), "x": .bool(true)
            ], at: HLC(time: 1 << 16, node: 1))
        let e = Self.byStatus.entry(k, state, table: Self.schema)
        #expect(e?.key == IndexEntryKey(index: ItemKey(partition: .string("ready"), sort: .number(DecimalNumber(5))), table: k))
        #expect(
            e?.attributes == [
                "pk": .string("p1"), "sk": .number(DecimalNumber(1)), "status": .string("ready"), "ts": .number(DecimalNumber(5))
            ])
        #expect(Self.byQueue.entry(k, state, table: Self.schema)?.attributes.keys.sorted() == ["pk", "queue", "sk", "status"])
        #expect(Self.local.entry(k, state, table: Self.schema)?.attributes.count == 6)
        // Missing, of another type, or empty: not in the index.
        for bad: AttributeValue? in [nil, .number(DecimalNumber(3)), .string("")] {
            var s = state
            _ = bad.map { s.set("status", $0, at: HLC(time: 2 << 16, node: 1)) } ?? s.remove("status", at: HLC(time: 2 << 16, node: 1))
            #expect(Self.byStatus.entry(k, s, table: Self.schema) == nil)
        }
        var gone = state
        _ = gone.delete(at: HLC(time: 3 << 16, node: 1))
        #expect(Self.byStatus.entry(k, gone, table: Self.schema) == nil)
    }

    @Test func rangesWalkAPartitionBothWaysFromTheirBounds() throws {
        let n = node("a")
        n.defineIndexes(Self.table, [Self.byStatus])
        for i in 0..<30 {
            var state = ItemState()
            let k = key(i % 4, i)
            let delta = state.put(
                [
                    "pk": k.partition.attributeValue, "sk": k.sort!.attributeValue, "status": .string("s\(i % 2)"),
                    "ts": .number(DecimalNumber(i / 3))
                ],
                at: n.now(wallMs: wall))
            _ = try n.write([(Self.table, k, delta)])
        }
        settle(n)
        let all = try stored(n, Self.byStatus)
        #expect(all.count == 30)
        #expect(all == all.sorted { $0.key < $1.key })
        let r = n.replicas[Self.table]!
        func walk(_ range: IndexRange) throws -> [IndexEntryKey] {
            var w = r.indexEntries(Self.byStatus, range)
            var out: [IndexEntryKey] = []
            while let e = try w.next() { out.append(e.key) }
            return out
        }
        let s1 = all.map(\.key).filter { $0.index.partition == .string("s1") }
        #expect(try walk(IndexRange(partition: .string("s1"))) == s1)
        #expect(try walk(IndexRange(partition: .string("s1"), descending: true)) == s1.reversed())
        let from4 = ItemKey(partition: .string("s1"), sort: .number(DecimalNumber(4)))
        #expect(try walk(IndexRange(partition: .string("s1"), start: .indexKey(from4))) == s1.filter { !($0.index < from4) })
        #expect(
            try walk(IndexRange(partition: .string("s1"), start: .indexKey(from4), descending: true))
                == s1.filter { !(from4 < $0.index) }.reversed())
        #expect(try walk(IndexRange(partition: .string("s1"), start: .after(s1[3]))) == Array(s1[4...]))
        #expect(try walk(IndexRange(partition: .string("s1"), start: .after(s1[3]), descending: true)) == s1[..<3].reversed())
        #expect(try walk(IndexRange(partition: .string("nope"))).isEmpty)
    }

    /// Two cores and the messages between them: delivered late, shuffled, or lost (a lost one
    /// is answered as failed, as a timeout would be).
    final class Net {
        let nodes: [TableNode]
        /// Moves on in `drain`, so a failed batch's retry delay passes and it is sent again.
        var wall: UInt64
        var queue: [[(request: TableNode.Request, from: Int)]] = [[], []]
        /// At node i, by ticket: who asked, and its request id.
        var waiting: [[UInt64: (from: Int, id: UInt64)]] = [[:], [:]]

        init(_ nodes: [TableNode], wall: UInt64) {
            self.nodes = nodes
            self.wall = wall
        }

        /// Runs node j's loop until quiet; `fail` decides whether each commit fails.
        func run(_ j: Int, lose: () -> Bool = { false }, fail: () -> Bool = { false }) {
            while let rd = nodes[j].ready(wallMs: wall) {
                let failed = fail()
                if failed { nodes[j].stored(TandemError(.io, "injected")) } else { nodes[j].commit(rd) }
                for m in rd.messages {
                    if lose() { nodes[j].responded(to: m.id, payload: nil, wallMs: wall) } else { queue[1 - j].append((m, j)) }
                }
                for r in rd.replies {
                    guard let (from, id) = waiting[j].removeValue(forKey: r.ticket) else { continue }
                    nodes[from].responded(to: id, payload: failed || r.error != nil ? nil : r.payload, wallMs: wall)
                }
            }
        }

        /// Delivers up to `count` of what is queued for node i, in a shuffled order.
        func deliver(_ i: Int, _ count: Int, _ rng: inout SeededGenerator) {
            queue[i].shuffle(using: &rng)
            for (m, from) in queue[i].prefix(count) {
                waiting[i][nodes[i].receive(kind: m.kind, payload: m.payload, wallMs: wall)] = (from, m.id)
            }
            queue[i].removeFirst(min(count, queue[i].count))
        }

        /// Everything delivered and answered, both loops quiet.
        func drain(_ rng: inout SeededGenerator) {
            while true {
                wall += 100
                run(0)
                run(1)
                if queue[0].isEmpty && queue[1].isEmpty { return }
                for i in 0..<2 { deliver(i, queue[i].count, &rng) }
            }
        }
    }

    /// Random writes on two replicas, deltas delivered late, out of order or lost (anti-entropy
    /// repairs), commits that fail: every replica's stored index equals the index rebuilt from
    /// its own items at every quiet point, and the two replicas' indexes are equal at the end.
    @Test(arguments: 1...30) func randomMergesFromTwoReplicasKeepEveryIndexEqualToItsRebuild(seed: Int) throws {
        var rng = SeededGenerator(seed: UInt64(seed))
        let nodes = [node("a"), node("b")]
        nodes[0].membersChanged([("b", true)], wallMs: wall)
        nodes[1].membersChanged([("a", true)], wallMs: wall)
        let net = Net(nodes, wall: wall)
        // One node has the indexes from the start; the other defines them part way (a backfill).
        nodes[0].defineIndexes(Self.table, Self.all)
        var defined = false
        for step in 0..<400 {
            let i = Int(rng.next() % 2)
            let n = nodes[i]
            let k = key(Int(rng.next() % 5), Int(rng.next() % 8))
            var state = try n.replicas[Self.table]!.state(k) ?? ItemState()
            if let delta = randomDelta(&state, k, &rng, at: n.now(wallMs: wall)) { _ = try n.write([(Self.table, k, delta)]) }
            if step == 150 {
                nodes[1].defineIndexes(Self.table, Self.all)
                defined = true
            }
            if defined && rng.chance(0.3) { nodes[1].indexStep(budget: Int(rng.next() % 7) + 1) }
            // Run a node's loop now and then: 5% of commits fail (undone in memory), 10% of
            // messages are lost.
            if rng.chance(0.4) { net.run(Int(rng.next() % 2), lose: { rng.chance(0.1) }, fail: { rng.chance(0.05) }) }
            // A failed commit also undoes a definition not yet stored: the shell defines the
            // indexes again from `_indexes` after one (`Tables.syncIndexes`), and so does this.
            nodes[0].defineIndexes(Self.table, Self.all)
            if defined { nodes[1].defineIndexes(Self.table, Self.all) }
            if rng.chance(0.3) { net.deliver(i, Int(rng.next() % 3) + 1, &rng) }
            if step % 50 == 49 {
                net.drain(&rng)
                for n in nodes { try expectIndexesMatchItems(n, "seed \(seed) step \(step) node \(n.id)") }
            }
        }
        // Heal: finish the backfill, deliver everything, and run anti-entropy until the items agree.
        while nodes[1].indexStep(budget: 50) { net.drain(&rng) }
        for _ in 0..<6 {
            for n in nodes {
                n.startAntiEntropy(wallMs: net.wall) { _ in 0 }
                net.drain(&rng)
            }
        }
        let items = try nodes.map { n in try n.replicas[Self.table]!.allItems().map { "\($0.key)=\(ItemCodec.encode($0.state))" } }
        #expect(items[0] == items[1], "seed \(seed): the replicas' items differ")
        for n in nodes {
            #expect(n.replicas[Self.table]!.storedIndexes.states.map(\.definition) == Self.all, "seed \(seed) node \(n.id)")
            try expectIndexesMatchItems(n, "seed \(seed) final node \(n.id)")
        }
        for d in Self.all { #expect(try stored(nodes[0], d) == stored(nodes[1], d), "seed \(seed) \(d.name)") }
    }

    /// A backfill over existing items while writes go on, stopped by a crash part way: the new
    /// core reads the stored position and goes on from it; the built index equals its rebuild.
    @Test func aBackfillResumesAfterACrashAndEqualsTheRebuild() throws {
        var rng = SeededGenerator(seed: 7)
        let disk = MemoryItemStore()
        var n = node("a", store: disk)
        for _ in 0..<600 {
            let k = key(Int(rng.next() % 40), Int(rng.next() % 30))
            var state = try n.replicas[Self.table]!.state(k) ?? ItemState()
            if let delta = randomDelta(&state, k, &rng, at: n.now(wallMs: wall)) { _ = try n.write([(Self.table, k, delta)]) }
        }
        settle(n)
        n.defineIndexes(Self.table, [Self.byStatus, Self.byQueue])
        #expect(n.replicas[Self.table]!.indexes.states.allSatisfy { $0.building })
        for _ in 0..<20 {
            n.indexStep(budget: 13)
            let k = key(Int(rng.next() % 40), Int(rng.next() % 30))
            var state = try n.replicas[Self.table]!.state(k) ?? ItemState()
            if let delta = randomDelta(&state, k, &rng, at: n.now(wallMs: wall)) { _ = try n.write([(Self.table, k, delta)]) }
            settle(n)
        }
        #expect(!n.replicas[Self.table]!.indexReadable("by-status"), "not built yet: reads are refused")
        // Crash: a batch taken but never stored is lost; the next core starts from the disk.
        n.indexStep(budget: 5)
        _ = n.ready(wallMs: wall)
        n = node("a", store: disk)
        let resumed = n.replicas[Self.table]!.indexes
        #expect(resumed.states.count == 2 && resumed.states.allSatisfy { $0.building } && resumed.states.contains { $0.cursor != nil })
        while n.indexStep(budget: 17) {
            let k = key(Int(rng.next() % 40), Int(rng.next() % 30))
            var state = try n.replicas[Self.table]!.state(k) ?? ItemState()
            if let delta = randomDelta(&state, k, &rng, at: n.now(wallMs: wall)) { _ = try n.write([(Self.table, k, delta)]) }
            settle(n)
        }
        settle(n)
        #expect(n.replicas[Self.table]!.indexReadable("by-status") && n.replicas[Self.table]!.indexReadable("by-queue"))
        try expectIndexesMatchItems(n, "after the resumed backfill")
        // Restarted again: the built indexes are read, not rebuilt.
        let again = node("a", store: disk)
        #expect(again.replicas[Self.table]!.indexes.settled == n.replicas[Self.table]!.indexes.settled)
        try expectIndexesMatchItems(again, "after a restart")
    }

    /// A failed commit takes the index changes back with the items; a dropped index leaves
    /// nothing in the store; a table without indexes writes no index records.
    @Test func failedCommitsDropsAndTablesWithoutIndexes() throws {
        let disk = MemoryItemStore()
        let n = node("a", store: disk)
        var state = ItemState()
        let k = key(1, 1)
        _ = try n.write([
            (
                Self.table, k,
                state.put(
                    ["pk": .string("p1"), "sk": .number(DecimalNumber(1)), "status": .string("x"), "ts": .number(DecimalNumber(1))],
                    at: n.now(wallMs: wall))
            )
        ])
        let plain = try #require(n.ready(wallMs: wall))
        #expect(!plain.writes.contains { if case .index = $0 { true } else { false } }, "a table without indexes wrote index records")
        n.commit(plain)
        n.defineIndexes(Self.table, [Self.byStatus])
        settle(n)
        n.indexStep()
        settle(n)
        try expectIndexesMatchItems(n, "built")
        #expect(try stored(n, Self.byStatus).count == 1)
        // A change whose commit fails: neither the item nor its entry changes.
        var s2 = try n.replicas[Self.table]!.state(k)!
        _ = try n.write([(Self.table, k, s2.set("status", .string("y"), at: n.now(wallMs: wall)))])
        _ = try #require(n.ready(wallMs: wall))
        n.stored(TandemError(.io, "injected"))
        #expect(try n.replicas[Self.table]!.state(k)?.visible("status") == .string("x"))
        #expect(try stored(n, Self.byStatus).map(\.key.index.partition) == [.string("x")])
        try expectIndexesMatchItems(n, "after the failed commit")
        // Dropped: its entries and registry go.
        n.defineIndexes(Self.table, [])
        settle(n)
        #expect(try disk.indexEntries(n.replicas[Self.table]!.id, Self.byStatus.id, IndexRange(partition: nil), limit: 10).isEmpty)
        #expect(try disk.indexRegistry(n.replicas[Self.table]!.id) == nil)
    }
}
