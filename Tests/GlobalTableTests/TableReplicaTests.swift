@testable import GlobalTable
import TandemCore
import Testing

@Suite struct TableReplicaTests {
    let schema = KeySchema(partitionKey: "pk", sortKey: "sk")

    func key(_ p: String, _ s: Int) -> ItemKey { ItemKey(partition: .string(p), sort: .number(DecimalNumber(s))) }

    /// Lost deltas are repaired by comparing digests and exchanging only differing buckets.
    @Test func antiEntropyRepairsLostDeltas() throws {
        for seed in UInt64(1)...40 {
            var rng = SeededGenerator(seed: seed)
            var replicas = (0..<3).map { _ in TableReplica.inMemory("agents", schema) }
            var clocks = (0..<3).map { HybridClock(node: UInt64($0 + 1)) }
            var wall: UInt64 = 1_000
            for _ in 0..<300 {
                wall += 1
                let r = Int(rng.next() % 3)
                let k = key("p\(rng.next() % 4)", Int(rng.next() % 20))
                let t = clocks[r].now(wallMs: wall)
                var state = try replicas[r].state(k) ?? ItemState()
                let delta: ItemState? =
                    switch rng.next() % 4 {
                    case 0: state.set("status", .string("s\(rng.next() % 3)"), at: t)
                    case 1: state.add("handled", DecimalNumber(1), at: t)
                    case 2: state.addToSet("skills", [.string("k\(rng.next() % 3)")], at: t)
                    default: rng.chance(0.2) ? state.delete(at: t) : state.put(["status": .string("new")], at: t)
                    }
                guard let delta else { continue }
                try replicas[r].merge(k, delta)
                for o in 0..<3 where o != r && !rng.chance(0.3) { try replicas[o].merge(k, delta) }  // 30% lost
                // Now and then a commit: the rest is read from the store, the pending over it.
                if rng.chance(0.1) { replicas[Int(rng.next() % 3)].persist() }
            }
            // Anti-entropy, pairwise: only the differing buckets' items cross.
            var itemsSent = 0
            for (a, b) in [(0, 1), (1, 2), (0, 2), (0, 1)] where replicas[a].digest.root != replicas[b].digest.root {
                for bucket in replicas[a].digest.differingBuckets(replicas[b].digest) {
                    for (k, _) in try replicas[a].bucket(bucket) { try replicas[b].merge(k, try replicas[a].state(k)!); itemsSent += 1 }
                    for (k, _) in try replicas[b].bucket(bucket) { try replicas[a].merge(k, try replicas[b].state(k)!); itemsSent += 1 }
                }
            }
            #expect(replicas[0].digest == replicas[1].digest && replicas[1].digest == replicas[2].digest, "seed \(seed)")
            let items = try replicas.map { r in try r.allItems().map { "\($0.key)=\(ItemCodec.encode($0.state))" } }
            #expect(items[0] == items[1] && items[1] == items[2], "seed \(seed)")
            // Stored, each replica reads the same from its store as it did from memory.
            for i in 0..<3 { replicas[i].persist() }
            #expect(try replicas.map { r in try r.allItems().map { "\($0.key)=\(ItemCodec.encode($0.state))" } } == items, "seed \(seed)")
        }
    }

    @Test func queryReturnsOnePartitionInSortOrderWithPages() throws {
        var t = TableReplica.inMemory("contacts", schema)
        var clock = HybridClock(node: 1)
        for s in [5, 1, 3, 2, 4] {
            var item = ItemState()
            try t.merge(key("cust-9", s), item.put(["n": .number(DecimalNumber(s))], at: clock.now(wallMs: 1)))
            if s == 3 { t.persist() }  // some stored, some pending: one walk over both
        }
        var other = ItemState()
        try t.merge(key("cust-1", 1), other.put(["n": .number(DecimalNumber(99))], at: clock.now(wallMs: 1)))
        let first = try t.query(partition: .string("cust-9"), limit: 2)
        #expect(first.items.map(\.0.sort) == [.number(DecimalNumber(1)), .number(DecimalNumber(2))])
        #expect(first.more)
        let rest = try t.query(partition: .string("cust-9"), after: first.items.last!.0, limit: 10)
        #expect(rest.items.map(\.0.sort) == [3, 4, 5].map { .number(DecimalNumber($0)) })
        #expect(!rest.more)
        #expect(try t.scan(limit: 100).items.count == 6)
    }

    /// Reads through the item cache always see the latest state: random merges, commits and
    /// rolled-back batches over a tiny cache (8 items a generation, so entries come and go),
    /// checked against a replica-free model of what was merged and kept.
    @Test func theItemCacheNeverServesAStaleState() throws {
        var rng = SeededGenerator(seed: 5)
        let store = MemoryItemStore()
        var t = TableReplica(
            new: "t", schema: schema, at: HLC(time: 1 << 16, node: 0), store: store, cache: ItemCache(itemsPerGeneration: 8))
        var clock = HybridClock(node: 1)
        var durable: [ItemKey: ItemState] = [:], current: [ItemKey: ItemState] = [:]
        for step in 0..<3_000 {
            let k = key("p\(rng.next() % 3)", Int(rng.next() % 12))
            var state = try t.state(k) ?? ItemState()
            #expect(state == current[k] ?? ItemState(), "step \(step): read \(k)")
            let delta = state.add("n", DecimalNumber(1), at: clock.now(wallMs: 1))!
            try t.merge(k, delta)
            current[k] = state
            switch rng.next() % 10 {
            case 0:
                t.persist()
                durable = current
            case 1:
                _ = t.take()
                t.rollback()  // the commit failed: back to what the store holds
                current = durable
            default: break
            }
        }
        #expect(t.cache.count <= 16)
    }
}
