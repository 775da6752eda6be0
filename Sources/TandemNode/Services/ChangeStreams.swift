import Foundation
import GlobalTable
import Storage
import TandemCore
import Transport

/// Table change streams (DynamoDB Streams) on one node. The core records the changes
/// (`GlobalTable/ChangeStream.swift`: a record is stored in the commit of the change it
/// describes); this keeps the streams' settings, tells the core which tables record, reads
/// records for the `DynamoDBStreams_20120810` API and the table processors, and trims them.
///
/// **Settings** are items of the reserved table `_tablestreams`, one per stream (table, label),
/// naming the table incarnation, the view type and, once disabled, when: they replicate like
/// any item, so every node records the same streams under the same labels and ARNs. Each node's
/// stream holds what that node applied (its own writes and its peers'), so the streams of two
/// nodes hold the same changes, numbered and possibly ordered differently, as two regions'
/// streams of a DynamoDB global table do. A setting from a peer takes effect here within
/// `syncInterval`.
///
/// **One shard per node and stream** (`shardId-<label>-<node hash>`): DynamoDB splits a stream
/// into shards that roll over every few hours; a node's stream is one sequence, so it is one
/// shard, open while the stream is enabled and closed once disabled. Iterators name the node
/// that issued them: the records are that node's.
///
/// **Trimming.** Records older than `retentionMs` (24 h) are deleted in steps of at most
/// `trimBatch` records per `trimInterval`, in their own commits, oldest first; a per-stream
/// mark remembers the last number trimmed, so a request for older records is told so
/// (TrimmedDataAccessException) rather than given a gap. Nothing on the write path waits for it.
final class ChangeStreams {
    static let table = "_tablestreams"
    static let catalogEntry = CatalogEntry(
        schema: KeySchema(partitionKey: "table", sortKey: "label", sortKeyType: "N"), at: HLC(time: 1 << 16, node: 0))
    static let accountID = "000000000000"
    /// ARNs name the cluster as their region, as TableArn does; records carry the node's region.
    static let arnRegion = "tandem"
    static let iteratorLifetimeMs: UInt64 = 15 * 60_000
    /// A stream the core stopped recording into counts as closed for readers this much later:
    /// records captured just before may still be in a commit under way.
    static let closeGraceMs: UInt64 = 1_000

    let tables: Tables
    let lmdb: LMDBStore
    private let loop: EventLoop
    private let timer: LoopTimer
    var region = "tandem"
    /// This node's name; its hash names its shards.
    var selfName = "" { didSet { nodeHash = stableHash64(Array(selfName.utf8)) } }
    private(set) var nodeHash: UInt64 = 0
    var retentionMs: UInt64 = 24 * 3_600_000
    var syncInterval: Duration = .milliseconds(100)
    var trimInterval: Duration = .seconds(10)
    var trimBatch = 10_000
    private(set) var trimmed = 0
    private var lastSettings: TableSummary?
    private var lastTrim: Instant = .zero
    /// When the core stopped recording a stream here (by label), for `closeGraceMs`.
    private var stoppedAt: [UInt64: UInt64] = [:]
    /// Records read by GetRecords and processors, for `/metrics`.
    var recordsRead = 0

    init(tables: Tables, loop: EventLoop) {
        self.tables = tables
        self.lmdb = tables.itemStore.lmdb
        self.loop = loop
        timer = LoopTimer(loop: loop)
        tables.reserve(ChangeStreams.table, ChangeStreams.catalogEntry)
        sync()
        // A setting from a peer applies before the next client write here: one who saw the
        // stream in DescribeTable finds its next write in it.
        tables.afterPeerRequest = { [weak self] in self?.syncIfChanged() }
    }

    private func syncIfChanged() {
        if tables.replicas[ChangeStreams.table]?.summary != lastSettings { sync() }
    }

    func start() {
        timer.start(after: syncInterval, repeating: syncInterval) { [weak self] in
            guard let self else { return }
            self.syncIfChanged()
            if self.loop.now - self.lastTrim >= self.trimInterval {
                self.lastTrim = self.loop.now
                self.trimStep(nowMs: Tables.wallMs())
            }
        }
    }

    func stop() { timer.stop() }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Settings

    struct Descriptor: Equatable {
        var table: String
        var label: UInt64
        var view: StreamViewType
        var tableID: TableID
        var disabledAt: UInt64?
    }

    /// Every stream setting of `table` (nil: of all tables), as this node's replica has them.
    func descriptors(_ table: String? = nil) -> [Descriptor] {
        guard let replica = tables.replicas[ChangeStreams.table] else { return [] }
        let items: [(ItemKey, [String: AttributeValue])]
        if let table {
            items = (try? replica.query(partition: .string(table), limit: 100_000).items) ?? []
        } else {
            items = (try? replica.scan(limit: 100_000).items) ?? []
        }
        return items.compactMap { _, v in
            func number(_ k: String) -> UInt64? { if case .number(let n)? = v[k] { UInt64(n.description) } else { nil } }
            guard case .string(let t)? = v["table"], let label = number("label"), case .string(let viewName)? = v["view"],
                let view = StreamViewType(name: viewName), let id = number("tableId")
            else { return nil }
            return Descriptor(table: t, label: label, view: view, tableID: id, disabledAt: number("disabledAt"))
        }
    }

    /// The table's enabled stream on its current incarnation, if any (the newest, should two
    /// nodes have enabled one at once).
    func current(_ table: String) -> Descriptor? {
        guard let id = tables.replicas[table]?.id else { return nil }
        return descriptors(table).filter { $0.tableID == id && $0.disabledAt == nil }.max { $0.label < $1.label }
    }

    /// Streams clients can still read: of the table's current incarnation, enabled, or disabled
    /// less than the retention ago. Oldest first.
    func readable(_ table: String? = nil, nowMs: UInt64) -> [Descriptor] {
        descriptors(table).filter { d in
            tables.replicas[d.table]?.id == d.tableID && (d.disabledAt.map { nowMs < $0 + retentionMs } ?? true)
        }.sorted { ($0.table, $0.label) < ($1.table, $1.label) }
    }

    /// Enables a stream on `table` (a new label, later than any before), durably and replicated.
    func enable(_ table: String, view: StreamViewType, _ done: @escaping (TandemError?) -> Void) {
        guard let replica = tables.replicas[table] else { return done(TandemError(.notFound, "no table '\(table)'")) }
        let latest = descriptors(table).map(\.label).max() ?? 0
        let label = max(Tables.wallMs(), latest + 1)
        let values: [String: AttributeValue] = [
            "table": .string(table), "label": .number(DecimalNumber(String(label))!), "view": .string(view.name),
            "tableId": .number(DecimalNumber(String(replica.id))!)
        ]
        let key = ItemKey(partition: .string(table), sort: .number(DecimalNumber(String(label))!))
        tables.put(table: ChangeStreams.table, key: key, values: values) { [weak self] error in
            if error == nil { self?.sync() }
            done(error)
        }
    }

    /// Disables the table's stream: its shard closes; its records stay readable until trimmed.
    func disable(_ table: String, _ done: @escaping (TandemError?) -> Void) {
        guard let d = current(table) else { return done(TandemError(.notFound, "table '\(table)' has no stream")) }
        let key = ItemKey(partition: .string(table), sort: .number(DecimalNumber(String(d.label))!))
        do {
            var state = try tables.replicas[ChangeStreams.table]?.state(key) ?? ItemState()
            let delta = state.set(
                "disabledAt", .number(DecimalNumber(String(Tables.wallMs()))!), at: tables.core.now(wallMs: Tables.wallMs()))
            tables.commit([(ChangeStreams.table, key, delta)]) { [weak self] error in
                if error == nil { self?.sync() }
                done(error)
            }
        } catch {
            done(error)
        }
    }

    /// Tells the core which tables record, and into which stream.
    func sync() {
        lastSettings = tables.replicas[ChangeStreams.table]?.summary
        let now = Tables.wallMs()
        var wanted: [String: ChangeStreamSpec] = [:]
        for name in tables.replicas.keys where !name.hasPrefix("_") {
            if let d = current(name) { wanted[name] = ChangeStreamSpec(table: d.tableID, label: d.label, view: d.view) }
        }
        for name in Set(tables.core.changeStreamTables).union(wanted.keys) {
            let had = tables.core.changeStream(name)?.spec
            let want = wanted[name]
            guard had != want else { continue }
            if let had { stoppedAt[had.label] = now }
            if let want {
                // The highest number this table incarnation's stream records have had here.
                guard let last = try? lastSequence(want.table) else { continue }  // the store failed a read: next tick
                tables.core.setChangeStream(name, want, lastSequence: last)
            } else {
                tables.core.setChangeStream(name, nil, lastSequence: 0)
            }
        }
    }

    /// Whether readers may treat the stream as closed: the core no longer records into it, and
    /// has not for `closeGraceMs` (so its last records are durable).
    func closed(_ d: Descriptor, nowMs: UInt64) -> Bool {
        if let s = tables.core.changeStream(d.table)?.spec, s.label == d.label, s.table == d.tableID { return false }
        guard let at = stoppedAt[d.label] else { return true }
        return nowMs >= at + ChangeStreams.closeGraceMs
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Names

    func arn(_ d: Descriptor) -> String {
        "arn:aws:dynamodb:\(ChangeStreams.arnRegion):\(ChangeStreams.accountID):table/\(d.table)/stream/\(StreamLabel.text(d.label))"
    }

    /// The stream an ARN names, if this node knows it (and clients may still read it).
    func descriptor(arn: String, nowMs: UInt64) -> Descriptor? {
        guard arn.hasPrefix("arn:aws:dynamodb:"), let t = arn.range(of: ":table/"), let s = arn.range(of: "/stream/", options: .backwards),
            t.upperBound <= s.lowerBound, let label = StreamLabel.parse(String(arn[s.upperBound...]))
        else { return nil }
        let table = String(arn[t.upperBound..<s.lowerBound])
        return readable(table, nowMs: nowMs).first { $0.label == label }
    }

    /// `shardId-<label, 20 digits>-<node, 8 hex>`: one shard per node and stream.
    func shardID(_ d: Descriptor) -> String {
        let hex = String(nodeHash >> 32, radix: 16)
        return "shardId-" + SequenceLabel.digits(d.label, 20) + "-" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// DynamoDB's eventID: 32 hex digits, the same each time the record is read.
    func eventID(_ d: Descriptor, _ sequence: UInt64) -> String {
        let h = stableHash64(Array(shardID(d).utf8), continuing: d.tableID)
        return [h, sequence].map { v in
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Records in the store

    /// The highest sequence number the store holds for a table incarnation: its last record
    /// (numbers rise across streams, so the last record of the newest stream), or a trim mark.
    func lastSequence(_ table: TableID) throws -> UInt64 {
        let records = ChangeStreamStore.head(table, ChangeStreamStore.records)
        var last: UInt64 = 0
        if let p = try lmdb.range(from: records + [0xFF], descending: true, prefix: records, limit: 1, valueBytes: 0).first {
            last = ChangeStreamStore.sequence(ofKey: p.key)
        }
        let marks = ChangeStreamStore.head(table, ChangeStreamStore.marks)
        for p in try lmdb.range(from: marks, prefix: marks, limit: 100_000) {
            var r = ByteReader(p.value)
            last = max(last, try r.u64())
        }
        return last
    }

    /// The last record of one stream (nil: none).
    func lastRecord(_ d: Descriptor) throws -> UInt64? {
        let head = ChangeStreamStore.stream(d.tableID, d.label)
        return try lmdb.range(from: head + [0xFF], descending: true, prefix: head, limit: 1, valueBytes: 0).first.map {
            ChangeStreamStore.sequence(ofKey: $0.key)
        }
    }

    func firstRecord(_ d: Descriptor) throws -> UInt64? {
        let head = ChangeStreamStore.stream(d.tableID, d.label)
        return try lmdb.range(from: head, prefix: head, limit: 1, valueBytes: 0).first.map { ChangeStreamStore.sequence(ofKey: $0.key) }
    }

    /// The last sequence number trimmed from the stream (0: none).
    func trimMark(_ d: Descriptor) throws -> UInt64 {
        guard let v = try lmdb.get(ChangeStreamStore.markKey(d.tableID, d.label)) else { return 0 }
        var r = ByteReader(v)
        return try r.u64()
    }

    /// Records after `after`, at most `limit` of them and (past the first) `maxBytes` of JSON.
    func read(_ d: Descriptor, after: UInt64, limit: Int, maxBytes: Int = 1 << 20) throws -> [ChangeRecord] {
        let head = ChangeStreamStore.stream(d.tableID, d.label)
        var out: [ChangeRecord] = []
        var bytes = 0
        for p in try lmdb.range(from: ChangeStreamStore.recordKey(d.tableID, d.label, after), after: true, prefix: head, limit: limit) {
            let r = try ChangeRecord(decoding: p.value)
            bytes += r.dynamodb.count + 200
            if !out.isEmpty && bytes > maxBytes { break }
            out.append(r)
        }
        recordsRead += out.count
        return out
    }

    /// Deletes records older than the retention, oldest first, at most `trimBatch` a step, in
    /// one commit of their own; each stream's mark moves to its last trimmed number.
    func trimStep(nowMs: UInt64) {
        guard nowMs > retentionMs else { return }
        let horizon = nowMs - retentionMs
        var ops: [LMDBStore.Op] = []
        var count = 0
        for (name, replica) in tables.replicas where !name.hasPrefix("_") {
            let head = ChangeStreamStore.head(replica.id, ChangeStreamStore.records)
            var from = head
            var marks: [UInt64: UInt64] = [:]
            scan: while count < trimBatch {
                guard
                    let pairs = try? lmdb.range(
                        from: from, prefix: head, limit: min(1_000, trimBatch - count), valueBytes: ChangeRecord.headerBytes),
                    !pairs.isEmpty
                else { break }
                for p in pairs {
                    let label = ChangeStreamStore.label(ofKey: p.key)
                    guard let (created, sequence) = try? ChangeRecord.header(p.value) else { break scan }
                    if created >= horizon {
                        // The rest of this stream is younger: on to the next stream.
                        from = ChangeStreamStore.stream(replica.id, label &+ 1)
                        if label == .max { break scan }
                        continue scan
                    }
                    ops.append(.delete(p.key))
                    marks[label] = sequence
                    count += 1
                    from = p.key + [0]
                }
            }
            for (label, sequence) in marks {
                var w = ByteWriter(capacity: 8)
                w.u64(sequence)
                ops.append(.put(ChangeStreamStore.markKey(replica.id, label), w.bytes))
            }
            if count >= trimBatch { break }
        }
        guard !ops.isEmpty else { return }
        tables.submitMaintenance(ops) { [weak self] error in
            if error == nil { self?.trimmed += count }
        }
    }
}

/// Where change records are in LMDB, inside their table incarnation's range (so dropping the
/// table drops them; `TableStore` lists the layout):
///
///     0x05 id 0x10 label seq   → record (`ChangeRecord.encoded`)
///     0x05 id 0x11 label       → the last sequence number trimmed from the stream
enum ChangeStreamStore {
    static let records: UInt8 = 0x10
    static let marks: UInt8 = 0x11

    static func head(_ table: TableID, _ kind: UInt8) -> [UInt8] {
        var w = ByteWriter(capacity: 26)
        w.u8(TableStore.prefix)
        w.u64(table)
        w.u8(kind)
        return w.bytes
    }

    static func stream(_ table: TableID, _ label: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 26)
        w.raw(head(table, records))
        w.u64(label)
        return w.bytes
    }

    static func recordKey(_ table: TableID, _ label: UInt64, _ sequence: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 26)
        w.raw(stream(table, label))
        w.u64(sequence)
        return w.bytes
    }

    static func markKey(_ table: TableID, _ label: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 18)
        w.raw(head(table, marks))
        w.u64(label)
        return w.bytes
    }

    static func sequence(ofKey key: [UInt8]) -> UInt64 { key.suffix(8).reduce(0) { $0 << 8 | UInt64($1) } }
    static func label(ofKey key: [UInt8]) -> UInt64 { key.dropFirst(10).prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }

    static func ops(_ write: TableNode.StoreWrite) -> [LMDBStore.Op] {
        guard case .change(let table, let label, let sequence, let record) = write else { return [] }
        return [.put(recordKey(table, label, sequence), record)]
    }
}

enum SequenceLabel {
    static func digits(_ v: UInt64, _ n: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, n - s.count)) + s
    }
}
