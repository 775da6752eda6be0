import GlobalTable
import Processing
import TandemCore
import Testing

@testable import TandemNode

/// What a materialize processor writes, merged the way replicas merge it: two owners of one
/// partition that overlapped (the old one stalled, resumed and wrote after its successor), then a
/// takeover that replays from an older checkpoint — each record still counts once.
struct MaterializeMergeTests {
    static let definition = try! ProcessorDefinition(
        name: "totals",
        json: try! JSON.parse(
            Array(
                #"{"source":{"stream":"amounts"},"target":{"materialize":{"table":"totals","key":{"queue":"$.queue"},"add":{"total":"$.amount","count":1}}}}"#
                    .utf8)),
        checkFilters: { _ in })
    static let records = (1...6).map { i in
        ProcessorRecord(sequence: UInt64(i), key: "c\(i)", data: Array(#"{"queue":"q","amount":\#(i)}"#.utf8), timestamp: 0)
    }

    /// `base` after the owner of partition 0 applied `records` at `ms`.
    static func apply(_ base: ItemState, _ records: ArraySlice<ProcessorRecord>, atMs ms: UInt64) -> ItemState {
        write(base, records, slot: "totals#0", atMs: ms).state
    }

    /// What the owner of the partition `slot` names writes when it applies `records` on a
    /// replica holding `base`: the delta it commits and sends to the other replicas, and its
    /// replica's state after.
    static func write(_ base: ItemState, _ records: ArraySlice<ProcessorRecord>, slot: String, atMs ms: UInt64) -> (
        state: ItemState, delta: ItemState
    ) {
        guard case .materialize(let m) = definition.target,
            let (writes, rejected) = Processors.materialized(
                m, schema: KeySchema(partitionKey: "queue"), slotName: slot, Array(records),
                at: HLC(physicalMs: ms, logical: 0, node: 7), read: { _ in base })
        else {
            Issue.record("not applied")
            return (base, ItemState())
        }
        #expect(rejected == nil)
        var state = base
        var delta = ItemState()
        for w in writes {
            state.merge(w.delta)
            delta.merge(w.delta)
        }
        return (state, delta)
    }

    static func number(_ s: ItemState, _ name: String) -> String? {
        if case .number(let n)? = s.visible?[name] { n.description } else { nil }
    }

    @Test func overlappingOwnersThenAReplayCountEachRecordOnce() {
        let base = Self.apply(ItemState(), Self.records[0..<2], atMs: 1_000)
        // The new owner applies 3…6; the old one, stalled before, resumes and applies 3…4 later.
        let successor = Self.apply(base, Self.records[2..<6], atMs: 2_000)
        let stalled = Self.apply(base, Self.records[2..<4], atMs: 3_000)
        for merged in [successor.merged(stalled), stalled.merged(successor)] {
            #expect(Self.number(merged, "total") == "21")
            #expect(Self.number(merged, "count") == "6")
            // A takeover from a checkpoint before 3 replays 3…6: all applied already. (With a
            // last-writer-wins mark the stalled owner's later "4" won over "6", and 5 and 6
            // counted twice: 32 and 8.)
            let replayed = Self.apply(merged, Self.records[2..<6], atMs: 4_000)
            #expect(Self.number(replayed, "total") == "21")
            #expect(Self.number(replayed, "count") == "6")
        }
    }

    /// Partition 0's owner A applies records 1–2, then 3–4. The owner of partition 1 has both of
    /// A's writes when it applies its own records to the same item. Replica N has only A's first
    /// write (the second is still queued to it: A stalled, or N was cut off from A) when the
    /// partition-1 owner's write reaches it; then N takes partition 0 over and resumes from the
    /// checkpoint A's first write settled (2). N must count 3 and 4 once: its mark for partition
    /// 0 says 2, so the partition-0 total N holds must be the one at 2, whoever's write brought
    /// it. (Each write carried the whole counter, every slot's total, while a slot's mark travels
    /// only in its own owner's writes: the partition-1 owner's write brought partition 0's total
    /// at 4 without its mark, and the replay counted 3 and 4 twice — the chaos checker's counters
    /// a few records too high.)
    @Test func aTakeoverCountsOnceWhenAnotherPartitionsWriteArrivedFirst() {
        let p1 = [
            ProcessorRecord(sequence: 1, key: "d1", data: Array(#"{"queue":"q","amount":10}"#.utf8), timestamp: 0),
            ProcessorRecord(sequence: 2, key: "d2", data: Array(#"{"queue":"q","amount":20}"#.utf8), timestamp: 0)
        ]
        let a1 = Self.write(ItemState(), Self.records[0..<2], slot: "totals#0", atMs: 1_000)
        let a2 = Self.write(a1.state, Self.records[2..<4], slot: "totals#0", atMs: 2_000)
        let other = Self.write(a2.state, p1[...], slot: "totals#1", atMs: 3_000)
        let n = a1.delta.merged(other.delta)
        let takeover = Self.write(n, Self.records[2..<6], slot: "totals#0", atMs: 4_000)
        // Every replica ends with every write: the stream's sums, once (1+…+6 and 10+20).
        let final = takeover.state.merged(a2.delta).merged(other.state)
        #expect(Self.number(final, "total") == "51")
        #expect(Self.number(final, "count") == "8")
        #expect(Self.number(takeover.state, "total") == "51")
        #expect(Self.number(takeover.state, "count") == "8")
    }

    @Test func aRedeliveredBatchChangesNothing() {
        let once = Self.apply(ItemState(), Self.records[...], atMs: 1_000)
        let twice = Self.apply(once, Self.records[...], atMs: 2_000)
        #expect(Self.number(twice, "total") == "21" && Self.number(twice, "count") == "6")
        #expect(twice == once, "a batch applied before writes nothing")
    }
}
