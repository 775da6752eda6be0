@testable import GlobalTable
import TandemCore
import Testing

/// Change streams in the table core (`ChangeStream.swift`), from DynamoDB Streams' documented
/// rules: a record per change of an item, INSERT/MODIFY/REMOVE, images as the view type says, no
/// record for a write that changes nothing, sequence numbers rising in a shard; and the core's
/// own: a record goes in the commit of its change, a failed commit shows nothing of it, a peer's
/// change is recorded too, and a table without a stream writes nothing more.
@Suite struct ChangeStreamTests {
    static let table = "agents"
    let wall: UInt64 = 1_700_000_000_000

    func node(_ id: NodeID = "a") -> TableNode {
        let n = TableNode(id: id, store: MemoryItemStore())
        _ = try! n.createTable(Self.table, schema: KeySchema(partitionKey: "id"), wallMs: wall)
        n.commit(n.ready(wallMs: wall)!)
        return n
    }

    func enable(_ n: TableNode, _ view: StreamViewType, label: UInt64 = 1_700_000_000_001, last: UInt64 = 0) {
        let spec = ChangeStreamSpec(table: n.replicas[Self.table]!.id, label: label, view: view)
        n.setChangeStream(Self.table, spec, lastSequence: last)
    }

    func key(_ s: String) -> ItemKey { ItemKey(partition: .string(s)) }

    func ready(_ n: TableNode) throws -> TableReady { try #require(n.ready(wallMs: wall)) }

    func put(_ n: TableNode, _ k: String, _ values: [String: AttributeValue]) throws {
        var state = try n.replicas[Self.table]!.state(key(k)) ?? ItemState()
        var item = values
        item["id"] = .string(k)
        _ = try n.write([(Self.table, key(k), state.put(item, at: n.now(wallMs: wall)))])
    }

    func delete(_ n: TableNode, _ k: String) throws {
        var state = try n.replicas[Self.table]!.state(key(k)) ?? ItemState()
        _ = try n.write([(Self.table, key(k), state.delete(at: n.now(wallMs: wall)))])
    }

    /// The change records of a ready, decoded, with the `dynamodb` JSON parsed.
    func records(_ rd: TableReady) throws -> [(record: ChangeRecord, json: JSON, label: UInt64)] {
        try rd.writes.compactMap { w in
            guard case .change(_, let label, let sequence, let bytes) = w else { return nil }
            let r = try ChangeRecord(decoding: bytes)
            #expect(r.sequence == sequence)
            return (r, try JSON.parse(r.dynamodb), label)
        }
    }

    func item(_ j: JSON?) -> [String: AttributeValue]? { j.flatMap { try? DynamoJSON.item($0) } }

    @Test func insertModifyRemoveWithBothImagesInTheCommitOfTheChange() throws {
        let n = node()
        enable(n, .newAndOldImages)
        try put(n, "a1", ["status": .string("ready")])
        try put(n, "a1", ["status": .string("busy")])
        try put(n, "a1", ["status": .string("busy")])  // changes nothing visible: no record
        try delete(n, "a1")
        try delete(n, "a1")  // nothing to delete: no record
        let rd = try ready(n)
        let recs = try records(rd)
        #expect(recs.map(\.record.event) == [.insert, .modify, .remove])
        #expect(recs.map(\.record.sequence) == [1, 2, 3])
        #expect(recs.allSatisfy { $0.record.local && $0.label == 1_700_000_000_001 })
        #expect(rd.writes.contains { if case .item = $0 { true } else { false } }, "the item write goes in the same commit")
        let (insert, modify, remove) = (recs[0].json, recs[1].json, recs[2].json)
        #expect(item(insert["Keys"]) == ["id": .string("a1")])
        #expect(item(insert["NewImage"]) == ["id": .string("a1"), "status": .string("ready")])
        #expect(insert["OldImage"] == nil)
        #expect(item(modify["OldImage"]) == ["id": .string("a1"), "status": .string("ready")])
        #expect(item(modify["NewImage"]) == ["id": .string("a1"), "status": .string("busy")])
        #expect(item(remove["OldImage"]) == ["id": .string("a1"), "status": .string("busy")])
        #expect(remove["NewImage"] == nil)
        #expect(insert["StreamViewType"]?.stringValue == "NEW_AND_OLD_IMAGES")
        #expect(insert["SequenceNumber"]?.stringValue == "000000000000000000001")
        #expect(insert["ApproximateCreationDateTime"] == .number(String(wall / 1000)))
        if case .number(let size)? = insert["SizeBytes"] { #expect(Int(size)! > 0) } else { Issue.record("no SizeBytes") }
    }

    @Test func viewTypesKeepWhatTheySay() throws {
        for view in StreamViewType.allCases {
            let n = node()
            enable(n, view)
            try put(n, "k", ["v": .number(DecimalNumber("1")!)])
            try put(n, "k", ["v": .number(DecimalNumber("2")!)])
            let recs = try records(try ready(n))
            let modify = try #require(recs.last).json
            #expect(item(modify["Keys"]) == ["id": .string("k")])
            #expect((modify["NewImage"] != nil) == (view == .newImage || view == .newAndOldImages), "\(view)")
            #expect((modify["OldImage"] != nil) == (view == .oldImage || view == .newAndOldImages), "\(view)")
            #expect(modify["StreamViewType"]?.stringValue == view.name)
        }
    }

    @Test func noStreamNoRecordsAndStoppingStops() throws {
        let n = node()
        try put(n, "k", ["v": .string("x")])
        #expect(try records(try ready(n)).isEmpty)
        n.commit(n.ready(wallMs: wall) ?? TableReady())
        enable(n, .keysOnly)
        n.setChangeStream(Self.table, nil, lastSequence: 0)
        try put(n, "k", ["v": .string("y")])
        #expect(try records(try ready(n)).isEmpty)
    }

    @Test func aPeersChangeIsRecordedAndAMergeThatChangesNothingVisibleIsNot() throws {
        let a = node("a"), b = TableNode(id: "b", store: MemoryItemStore())
        try b.load(catalogEntry: a.catalog[Self.table]!, name: Self.table)  // one incarnation of the table
        a.membersChanged([("b", true)], wallMs: wall)
        b.membersChanged([("a", true)], wallMs: wall)
        enable(b, .newAndOldImages)
        try put(a, "k", ["v": .string("from-a")])
        a.commit(try ready(a))
        let deltas = try ready(a).messages.filter { $0.kind == TableNode.Kind.deltas }
        #expect(!deltas.isEmpty)
        for m in deltas { _ = b.receive(kind: m.kind, payload: m.payload, wallMs: wall) }
        let rd = try ready(b)
        let recs = try records(rd)
        #expect(recs.map(\.record.event) == [.insert])
        #expect(recs.first?.record.local == false, "a peer's change is not this node's own")
        b.commit(rd)
        // The same delta again (a resend, an anti-entropy push) changes nothing: no record.
        for m in deltas { _ = b.receive(kind: m.kind, payload: m.payload, wallMs: wall) }
        #expect(try records(b.ready(wallMs: wall) ?? TableReady()).isEmpty)
    }

    @Test func aFailedCommitDropsItsRecordsAndNumbersAreNotReused() throws {
        let n = node()
        enable(n, .keysOnly, last: 41)  // numbers continue from what the store holds
        try put(n, "k1", [:])
        let first = try ready(n)
        #expect(try records(first).map(\.record.sequence) == [42])
        try put(n, "k2", [:])  // queued behind the failing commit, made on top of it
        n.stored(TandemError(.io, "disk"))
        let after = n.ready(wallMs: wall)
        #expect(try records(after ?? TableReady()).isEmpty, "nothing of the failed commit, nor of what was made on it")
        if let after { n.commit(after) }
        try put(n, "k3", [:])
        let next = try records(try ready(n))
        #expect(next.map(\.record.sequence) == [44], "never an earlier number again")
        #expect(next.map(\.record.event) == [.insert])
    }

    @Test func aNewStreamContinuesTheNumbersAndADroppedTableIncarnationRecordsNothing() throws {
        let n = node()
        enable(n, .keysOnly, label: 10)
        try put(n, "k", ["v": .string("1")])
        n.commit(try ready(n))
        enable(n, .keysOnly, label: 20, last: 0)
        try put(n, "k", ["v": .string("2")])
        let recs = try records(try ready(n))
        #expect(recs.map(\.label) == [20])
        #expect(recs.map(\.record.sequence) == [2])
        // A spec for another incarnation of the table (it was dropped and made again) records nothing.
        n.setChangeStream(Self.table, ChangeStreamSpec(table: 12345, label: 30, view: .keysOnly), lastSequence: 0)
        try put(n, "k", ["v": .string("3")])
        #expect(try records(n.ready(wallMs: wall) ?? TableReady()).isEmpty)
    }

    @Test func recordCodecSequenceTextAndLabels() throws {
        let r = ChangeRecord(
            event: .modify, local: true, createdMs: 1_234_567, sequence: 99, view: .keysOnly, keys: ["id": .string("x")], old: nil, new: nil
        )
        #expect(try ChangeRecord(decoding: r.encoded) == r)
        #expect(try ChangeRecord.header(Array(r.encoded.prefix(ChangeRecord.headerBytes))) == (1_234_567, 99))
        #expect(throws: TandemError.self) { try ChangeRecord(decoding: [9, 0]) }
        for n: UInt64 in [0, 1, 42, 1 << 40, .max] {
            let t = ChangeRecord.sequenceText(n)
            #expect(t.utf8.count == 21)
            #expect(ChangeRecord.parseSequence(t) == n)
        }
        #expect(ChangeRecord.parseSequence("12") == nil, "DynamoDB's sequence numbers are 21 to 40 digits")
        #expect(ChangeRecord.parseSequence("00000000000000000000x") == nil)
        #expect(ChangeRecord.parseSequence(String(repeating: "9", count: 30)) == nil, "past 64 bits: none of ours")
        #expect(ChangeEvent.of(before: nil, after: nil) == nil)
        #expect(ChangeEvent.of(before: ["a": .null], after: ["a": .null]) == nil)
        // Labels: DynamoDB's form, UTC to the millisecond.
        #expect(StreamLabel.text(1_431_379_293_291) == "2015-05-11T21:21:33.291")
        #expect(StreamLabel.text(0) == "1970-01-01T00:00:00.000")
        #expect(StreamLabel.text(951_782_400_000) == "2000-02-29T00:00:00.000")
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<2_000 {
            let ms = rng.next() % 8_000_000_000_000
            #expect(StreamLabel.parse(StreamLabel.text(ms)) == ms)
        }
        for bad in ["2015-05-11T21:21:33", "2015-13-11T21:21:33.291", "2015-05-11 21:21:33.291", "x015-05-11T21:21:33.291"] {
            #expect(StreamLabel.parse(bad) == nil, "\(bad)")
        }
    }
}
