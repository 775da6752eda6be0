@testable import GlobalTable
import TandemCore
import Testing

@Suite struct SortedKeysTests {
    func key(_ p: Int, _ s: Int) -> ItemKey { ItemKey(partition: .string("p\(p)"), sort: .number(DecimalNumber(s))) }

    /// Random inserts and removes (enough to split and empty blocks) against a sorted array:
    /// the same keys in the same order, walked from any start, both ways.
    @Test func matchesASortedArray() {
        for seed in UInt64(1)...5 {
            var rng = SeededGenerator(seed: seed)
            var index = SortedKeys()
            var model = Set<ItemKey>()
            for step in 0..<6000 {
                let k = key(Int(rng.next() % 30), Int(rng.next() % 200))
                if step > 3000, rng.chance(0.6) {
                    index.remove(k)
                    model.remove(k)
                } else {
                    index.insert(k)
                    model.insert(k)
                }
            }
            let sorted = model.sorted()
            #expect(index.count == sorted.count)
            #expect(Array(index.ascending(after: nil)) == sorted, "seed \(seed)")
            #expect(Array(index.descending { _ in false }) == sorted.reversed())
            for _ in 0..<50 {
                let probe = key(Int(rng.next() % 31), Int(rng.next() % 201))
                #expect(Array(index.ascending(after: probe)) == sorted.filter { probe < $0 })
                #expect(Array(index.descending { !($0 < probe) }) == sorted.filter { $0 < probe }.reversed())
            }
        }
    }

    /// Keys sort as DynamoDB sorts them: strings by UTF-8 bytes (not by Swift's Unicode
    /// ordering: "é" precomposed sorts after "e\u{301}" composed here, Swift calls them equal),
    /// binary bytewise, numbers numerically; `order` agrees with `<` both ways.
    @Test func keysSortByUTF8BytesAndBytes() {
        var rng = SeededGenerator(seed: 9)
        let alphabet = ["a", "b", "z", "A", "0", "é", "e\u{301}", "😀", "\u{7F}", "\u{80}", "ÿ"]
        for _ in 0..<2000 {
            let x = (0..<Int(rng.next() % 4)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined()
            let y = (0..<Int(rng.next() % 4)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined()
            #expect((SetElement.string(x) < .string(y)) == Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8)), "\(x) \(y)")
            #expect((SetElement.order(.string(x), .string(y)) == 0) == (Array(x.utf8) == Array(y.utf8)))
            let bx = Array(x.utf8), by = Array(y.utf8)
            #expect((SetElement.binary(bx) < .binary(by)) == bx.lexicographicallyPrecedes(by))
            let (m, n) = (Int(rng.next() % 100) - 50, Int(rng.next() % 100) - 50)
            #expect((SetElement.number(DecimalNumber(m)) < .number(DecimalNumber(n))) == (m < n))
        }
        #expect(SetElement.string("zzz") < .number(DecimalNumber(0)))  // different types: by rank
    }

    /// The replica keeps the index as keys come and go; queries read only their partition.
    @Test func replicaQueryAndScanUseTheIndex() throws {
        var t = TableReplica.inMemory("t", KeySchema(partitionKey: "pk", sortKey: "sk", sortKeyType: "N"))
        var clock = HybridClock(node: 1)
        for p in 0..<20 {
            for s in 0..<50 {
                var item = ItemState()
                try t.merge(key(p, s), item.put(["v": .number(DecimalNumber(s))], at: clock.now(wallMs: 1)))
            }
            if p == 10 { t.persist() }  // half stored, half pending
        }
        try t.replace(key(3, 7), with: nil)  // a pending removal of a stored key
        #expect(try t.allKeys().count == 999)
        let q = try t.query(partition: .string("p3"), where: { ($0.map { $0 >= .number(DecimalNumber(5)) }) ?? false }, limit: 4)
        #expect(q.items.map(\.0) == [key(3, 5), key(3, 6), key(3, 8), key(3, 9)] && q.more)
        let s = try t.scan(after: key(9, 47), limit: 10)  // "p9" is the last partition (bytes order)
        #expect(s.items.map(\.0) == [key(9, 48), key(9, 49)] && !s.more)
    }

    /// Parallel Scan: for any number of segments, paging every segment with ExclusiveStartKey
    /// yields every key exactly once, each segment only its own keys (in scan order), and a
    /// segment's walk stops at its end instead of reading the rest of the table.
    @Test func scanSegmentsPartitionTheTable() throws {
        var t = TableReplica.inMemory("t", KeySchema(partitionKey: "pk", sortKey: "sk", sortKeyType: "N"))
        var clock = HybridClock(node: 1)
        var rng = SeededGenerator(seed: 7)
        // 300 partitions of 1 to 8 sort keys: item collections of several sizes.
        for p in 0..<300 {
            for s in 0..<(1 + Int(rng.next() % 8)) {
                var item = ItemState()
                try t.merge(key(p, s), item.put(["v": .number(DecimalNumber(s))], at: clock.now(wallMs: 1)))
            }
            if p == 150 { t.persist() }  // half stored, half pending
        }
        let all = Set(try t.allKeys())
        for total in [1, 2, 3, 4, 7, 16, 1000] {
            var seen: [ItemKey] = []
            for segment in 0..<total {
                var mine: [ItemKey] = []
                var after: ItemKey?
                repeat {  // pages of 5, each continuing after the last key of the one before
                    var walk = t.segmentKeys(segment, of: total, after: after)
                    let page = try walk.take(5)
                    mine += page
                    after = page.count == 5 ? page.last : nil
                } while after != nil
                #expect(mine.allSatisfy { ScanKey($0).segment(of: total) == segment })
                #expect(mine.map(ScanKey.init) == mine.map(ScanKey.init).sorted(), "segment \(segment) of \(total) out of order")
                seen += mine
            }
            #expect(seen.count == all.count && Set(seen) == all, "\(total) segments: \(seen.count) keys for \(all.count)")
        }
        // Shares are even (a hash, not key ranges): 4 segments of about 1,350 keys each.
        let shares = try (0..<4).map { s in
            var walk = t.segmentKeys(s, of: 4)
            return try walk.take().count
        }
        #expect(shares.allSatisfy { abs($0 - all.count / 4) < all.count / 8 }, "\(shares)")
        // Continuing after a key that has since been deleted still finds its place.
        var walk = t.segmentKeys(1, of: 4)
        let first = try walk.take(3)
        try t.replace(first[1], with: nil)
        var rest = t.segmentKeys(1, of: 4, after: first[1])
        #expect(try rest.next() == first[2])
        t.persist()  // the removal stored: the same from the store
        rest = t.segmentKeys(1, of: 4, after: first[1])
        #expect(try rest.next() == first[2])
    }
}
