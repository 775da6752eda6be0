import GlobalTable
import TandemCore
@testable import TandemNode
import Testing

/// DynamoDB Streams' shard iterators and the change records' place in LMDB: an iterator reads
/// back as issued, and any other text — cut, altered, too long — is refused rather than read
/// as some other position; record keys sort by stream, then sequence number.
@Suite struct ShardIteratorTests {
    @Test func anIteratorReadsBackAndAnythingElseIsRefused() {
        let it = ShardIterator(
            table: "calls", tableID: 0xDEAD_BEEF, label: 1_700_000_000_000, after: 41, issuedMs: 1_700_000_100_000, node: 7)
        #expect(ShardIterator(text: it.text) == it)
        #expect(it.text.utf8.count <= 2048, "DynamoDB's limit on an iterator's length")
        var rng = SeededGenerator(seed: 3)
        let bytes = Array(it.text.utf8)
        for _ in 0..<500 {
            var changed = bytes
            let i = Int(rng.next() % UInt64(changed.count))
            let c = UInt8(ascii: "A") + UInt8(rng.next() % 26)
            guard c != changed[i] else { continue }
            changed[i] = c
            #expect(ShardIterator(text: String(decoding: changed, as: UTF8.self)) == nil)
        }
        for bad in ["", "x", String(it.text.dropLast(4)), String(repeating: "A", count: 3_000)] {
            #expect(ShardIterator(text: bad) == nil)
        }
    }

    @Test func recordKeysSortByStreamThenSequence() {
        let keys = [(2, 1), (1, 300), (1, 2), (1, 256), (2, 0)].map { ChangeStreamStore.recordKey(9, UInt64($0.0), UInt64($0.1)) }
        let sorted = keys.sorted { $0.lexicographicallyPrecedes($1) }
        #expect(sorted.map { ChangeStreamStore.label(ofKey: $0) } == [1, 1, 1, 2, 2])
        #expect(sorted.map { ChangeStreamStore.sequence(ofKey: $0) } == [2, 256, 300, 0, 1])
        #expect(keys.allSatisfy { $0.starts(with: ChangeStreamStore.head(9, ChangeStreamStore.records)) })
        #expect(!ChangeStreamStore.markKey(9, 1).starts(with: ChangeStreamStore.head(9, ChangeStreamStore.records)))
    }
}
