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
        guard case .materialize(let m) = definition.target,
            let (writes, rejected) = Processors.materialized(
                m, schema: KeySchema(partitionKey: "queue"), slotName: "totals#0", Array(records),
                at: HLC(physicalMs: ms, logical: 0, node: 7), read: { _ in base })
        else {
            Issue.record("not applied")
            return base
        }
        #expect(rejected == nil)
        var state = base
        for w in writes { state.merge(w.delta) }
        return state
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

    @Test func aRedeliveredBatchChangesNothing() {
        let once = Self.apply(ItemState(), Self.records[...], atMs: 1_000)
        let twice = Self.apply(once, Self.records[...], atMs: 2_000)
        #expect(Self.number(twice, "total") == "21" && Self.number(twice, "count") == "6")
        #expect(twice == once, "a batch applied before writes nothing")
    }
}
