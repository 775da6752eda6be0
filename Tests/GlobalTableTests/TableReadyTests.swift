@testable import GlobalTable
import TandemCore
import Testing

/// The table core's one output, `TableReady`, and its ordering contract: a ready's writes are
/// stored before its replies are answered and its messages sent; a write's delta leaves the
/// node only in a ready taken after `stored(nil)` for that write; a failed store undoes the
/// write in memory and sends nothing of it.
@Suite struct TableReadyTests {
    static let table = "agents"
    let wall: UInt64 = 5_000_000

    /// Two cores, "a" and "b", each holding the table and seeing the other as live.
    func pair() -> (TableNode, TableNode) {
        let a = TableNode(id: "a", store: MemoryItemStore()), b = TableNode(id: "b", store: MemoryItemStore())
        _ = try! a.createTable(Self.table, schema: KeySchema(partitionKey: "id"), wallMs: wall)
        a.commit(a.ready(wallMs: wall)!)
        try! b.load(catalogEntry: a.catalog[Self.table]!, name: Self.table)
        a.membersChanged([("b", true)], wallMs: wall)
        b.membersChanged([("a", true)], wallMs: wall)
        return (a, b)
    }

    func key(_ s: String) -> ItemKey { ItemKey(partition: .string(s)) }

    /// A local put of `key` on `node`; returns its ticket.
    func put(_ node: TableNode, _ k: ItemKey, _ status: String) throws -> UInt64 {
        var state = try node.replicas[Self.table]!.state(k) ?? ItemState()
        let delta = state.put(["id": k.partition.attributeValue, "status": .string(status)], at: node.now(wallMs: wall))
        return try node.write([(Self.table, k, delta)])
    }

    /// Delivers `messages` to `to` and runs its loop until quiet; true if it merged something.
    @discardableResult
    func deliver(_ messages: [TableNode.Request], to node: TableNode) -> Int {
        var replies = 0
        for m in messages { _ = node.receive(kind: m.kind, payload: m.payload, wallMs: wall) }
        while let rd = node.ready(wallMs: wall) {
            node.commit(rd)
            replies += rd.replies.filter { $0.payload != nil }.count
        }
        return replies
    }

    @Test func storeComesBeforeReplyAndTheDeltaOnlyAfterTheStore() throws {
        let (a, b) = pair()
        let k = key("k1")
        let ticket = try put(a, k, "ready")

        // The first ready stores the item and answers the write; nothing in it carries the
        // delta (it is not durable yet), and nothing more comes until the store is reported.
        let first = try #require(a.ready(wallMs: wall))
        let id = a.replicas[Self.table]!.id
        #expect(first.writes.contains { if case .item(id, k, _?, _, _) = $0 { true } else { false } })
        #expect(first.replies.map(\.ticket) == [ticket])
        #expect(first.replies.allSatisfy { $0.error == nil && $0.payload == nil })
        #expect(first.messages.allSatisfy { $0.kind != TableNode.Kind.deltas })
        #expect(a.ready(wallMs: wall) == nil, "a second ready while the first one's writes are being stored")
        _ = deliver(first.messages, to: b)
        #expect(try b.replicas[Self.table]!.state(k) == nil, "the delta reached the peer before it was stored")

        // Stored: now the delta goes, in the next ready.
        a.commit(first)
        let second = try #require(a.ready(wallMs: wall))
        #expect(second.writes.isEmpty)
        let deltas = second.messages.filter { $0.kind == TableNode.Kind.deltas && $0.to == "b" }
        #expect(deltas.count == 1)
        #expect(deliver(deltas, to: b) == 1, "the peer did not answer the delta batch")
        #expect(try b.replicas[Self.table]!.state(k)?.visible?["status"] == .string("ready"))
    }

    @Test func aFailedStoreUndoesTheWriteAndSendsNothingOfIt() throws {
        let (a, b) = pair()
        let k = key("k1"), other = key("k2")
        // A durable item first, so "as it was" is not just "absent".
        _ = try put(a, k, "before")
        a.commit(try #require(a.ready(wallMs: wall)))
        _ = deliver(a.ready(wallMs: wall)?.messages ?? [], to: b)
        let before = try a.replicas[Self.table]!.state(k)
        let digestBefore = a.replicas[Self.table]!.digest

        let failedTicket = try put(a, k, "refused")
        let rd = try #require(a.ready(wallMs: wall))
        #expect(rd.replies.map(\.ticket) == [failedTicket])
        // Made while that commit runs, on top of it: it fails with it.
        let laterTicket = try put(a, other, "later")
        a.stored(TandemError(.diskFailed, "fsync failed"))

        #expect(try a.replicas[Self.table]!.state(k) == before, "the refused write is still readable")
        #expect(try a.replicas[Self.table]!.state(other) == nil, "a write made on top of the refused one is readable")
        #expect(a.replicas[Self.table]!.digest == digestBefore)

        // What comes after: the later write's failure, and no delta of either write, ever.
        var sent: [TableNode.Request] = []
        var failedReplies: [UInt64] = []
        a.startAntiEntropy(wallMs: wall) { _ in 0 }
        a.stabilityRound(wallMs: wall)
        for _ in 0..<5 {
            guard let next = a.ready(wallMs: wall) else { break }
            a.commit(next)
            failedReplies += next.replies.filter { $0.error != nil }.map(\.ticket)
            sent += next.messages
            // Answer everything, so anti-entropy runs its whole round.
            for m in next.messages {
                let t = b.receive(kind: m.kind, payload: m.payload, wallMs: wall)
                while let brd = b.ready(wallMs: wall) {
                    b.commit(brd)
                    if let reply = brd.replies.first(where: { $0.ticket == t })?.payload {
                        a.responded(to: m.id, payload: reply, wallMs: wall)
                    }
                }
            }
        }
        #expect(failedReplies == [laterTicket])
        #expect(!sent.isEmpty, "anti-entropy and stability sent nothing at all")
        #expect(try b.replicas[Self.table]!.state(k)?.visible?["status"] == .string("before"))
        #expect(try b.replicas[Self.table]!.state(other) == nil)
    }

    /// Runs one anti-entropy round from `a` to `b` to its end, answering every request;
    /// returns the bytes `a` sent and the kinds of its requests.
    func antiEntropyRound(from a: TableNode, to b: TableNode) -> (bytes: Int, kinds: [UInt8]) {
        var bytes = 0
        var kinds: [UInt8] = []
        a.startAntiEntropy(wallMs: wall) { _ in 0 }
        for _ in 0..<10 {
            guard let next = a.ready(wallMs: wall) else { break }
            a.commit(next)
            for m in next.messages {
                bytes += m.payload.count
                kinds.append(m.kind)
                let t = b.receive(kind: m.kind, payload: m.payload, wallMs: wall)
                while let brd = b.ready(wallMs: wall) {
                    b.commit(brd)
                    if let reply = brd.replies.first(where: { $0.ticket == t })?.payload {
                        a.responded(to: m.id, payload: reply, wallMs: wall)
                    }
                }
            }
        }
        return (bytes, kinds)
    }

    /// Two replicas that agree exchange one number per table, not 256 bucket digests (2 KB) per
    /// table; replicas that differ still find the table, then the buckets, and repair them.
    @Test func antiEntropyBetweenEqualReplicasSendsOnlyRoots() throws {
        let a = TableNode(id: "a", store: MemoryItemStore()), b = TableNode(id: "b", store: MemoryItemStore())
        _ = try a.createTable(Self.table, schema: KeySchema(partitionKey: "id"), wallMs: wall)
        a.commit(a.ready(wallMs: wall)!)
        try b.load(catalogEntry: a.catalog[Self.table]!, name: Self.table)
        // Written before b was a member: no delta stream carries them; only anti-entropy can.
        for i in 0..<20 {
            _ = try put(a, key("k\(i)"), "s\(i)")
            a.commit(try #require(a.ready(wallMs: wall)))
        }
        a.membersChanged([("b", true)], wallMs: wall)
        b.membersChanged([("a", true)], wallMs: wall)
        let repair = antiEntropyRound(from: a, to: b)
        #expect(repair.kinds.prefix(2) == [TableNode.Kind.roots, TableNode.Kind.digests])
        #expect(repair.kinds.contains(TableNode.Kind.deltas))
        #expect(try b.replicas[Self.table]!.state(key("k7"))?.visible?["status"] == .string("s7"))
        #expect(b.replicas[Self.table]!.digest == a.replicas[Self.table]!.digest)

        let quiet = antiEntropyRound(from: a, to: b)
        #expect(quiet.kinds == [TableNode.Kind.roots])
        #expect(quiet.bytes < 200, "an in-sync round sent \(quiet.bytes) bytes")
    }

    @Test func aPeersBatchIsAnsweredOnlyAfterItIsStored() throws {
        let (a, b) = pair()
        let k = key("k1")
        _ = try put(a, k, "x")
        a.commit(a.ready(wallMs: wall)!)
        let batch = try #require(a.ready(wallMs: wall)).messages.filter { $0.kind == TableNode.Kind.deltas }
        #expect(batch.count == 1)

        let ticket = b.receive(kind: batch[0].kind, payload: batch[0].payload, wallMs: wall)
        let rd = try #require(b.ready(wallMs: wall))
        #expect(!rd.writes.isEmpty, "the merged item is not stored before the answer")
        #expect(rd.replies.first { $0.ticket == ticket }?.payload != nil)
        // The disk refuses: the shell answers nothing (the sender resends), and the merge is undone.
        b.stored(TandemError(.diskFailed, "fsync failed"))
        #expect(try b.replicas[Self.table]!.state(k) == nil)
    }

    @Test func writesToAMissingTableAreRefusedWhole() throws {
        let (a, _) = pair()
        var s = ItemState()
        let delta = s.put(["id": .string("x")], at: a.now(wallMs: wall))
        #expect(throws: TandemError.self) { try a.write([(Self.table, key("x"), delta), ("nope", key("x"), delta)]) }
        #expect(try a.replicas[Self.table]!.state(key("x")) == nil)
        #expect(a.ready(wallMs: wall) == nil)
    }
}
