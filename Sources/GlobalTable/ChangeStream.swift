import TandemCore

// A table's change stream on one node (DynamoDB Streams): the record of every change of an
// item's visible value that this node applied — its own writes and its peers', as a region's
// stream does in DynamoDB global tables.
//
// Rules (the shell's reading side is `TandemNode/Services/ChangeStreams.swift`):
// - **A record is made where the change is merged**, by the core (`TableNode.write` for a local
//   write, `merge` for a peer's delta or an anti-entropy push), and goes in the same ready — so
//   the same LMDB commit — as the item write it describes. A record is in the stream iff its
//   change is durable: a failed commit drops both (the stream shows nothing refused), and an
//   acknowledged write's record was on disk before the acknowledgement.
// - **Only visible changes.** The visible item before the merge is compared with the one after:
//   absent → present is INSERT, present → present and different is MODIFY, present → absent
//   is REMOVE; a merge that leaves the visible item as it was (an older concurrent write that
//   loses, a delta already held, tombstone collection) makes no record. DynamoDB, too, writes
//   no record for a write that changes nothing.
// - **Sequence numbers** are per node and table incarnation, one more for each record, never
//   reused (a failed commit's numbers are skipped), across streams: a stream enabled again
//   continues from the last number of the one before, so a consumer's checkpoint stays
//   meaningful. Records are stored in sequence order and commits are serial, so readers see a
//   stream only grow at its end: a number once passed is never filled in later.
// - **The view type** is applied when the record is made (a stream's view type never changes:
//   another one is another stream), so a KEYS_ONLY stream stores no images.
//
// When no table of the node has a stream, the only cost on the write path is one check that
// the stream map is empty.

public enum StreamViewType: UInt8, Sendable, CaseIterable {
    case keysOnly = 1, newImage = 2, oldImage = 3, newAndOldImages = 4

    public var name: String {
        switch self {
        case .keysOnly: "KEYS_ONLY"
        case .newImage: "NEW_IMAGE"
        case .oldImage: "OLD_IMAGE"
        case .newAndOldImages: "NEW_AND_OLD_IMAGES"
        }
    }

    public init?(name: String) {
        guard let v = StreamViewType.allCases.first(where: { $0.name == name }) else { return nil }
        self = v
    }
}

public enum ChangeEvent: UInt8, Sendable {
    case insert = 1, modify = 2, remove = 3

    public var name: String {
        switch self {
        case .insert: "INSERT"
        case .modify: "MODIFY"
        case .remove: "REMOVE"
        }
    }

    /// What a change of the visible item is; nil if it is no change.
    public static func of(before: [String: AttributeValue]?, after: [String: AttributeValue]?) -> ChangeEvent? {
        switch (before, after) {
        case (nil, nil): nil
        case (nil, _?): .insert
        case (_?, nil): .remove
        case (let b?, let a?): a == b ? nil : .modify
        }
    }
}

/// A stream as the core records into it: which table incarnation, its label (the enabling
/// time, ms since the epoch: it names the stream) and view type.
public struct ChangeStreamSpec: Equatable, Sendable {
    public var table: TableID
    public var label: UInt64
    public var view: StreamViewType

    public init(table: TableID, label: UInt64, view: StreamViewType) {
        self.table = table
        self.label = label
        self.view = view
    }
}

/// One stream record as stored: the `dynamodb` object of DynamoDB Streams' record shape is
/// made once, as JSON text, when the change is captured; the parts that depend on who reads
/// (region, eventID, the source ARN) are added when it is read.
public struct ChangeRecord: Equatable, Sendable {
    public var event: ChangeEvent
    /// This node's own write (not a peer's): a table processor consumes only these.
    public var local: Bool
    public var createdMs: UInt64
    public var sequence: UInt64
    /// `{"ApproximateCreationDateTime":…,"Keys":…,…}` as UTF-8 JSON text.
    public var dynamodb: [UInt8]

    public init(event: ChangeEvent, local: Bool, createdMs: UInt64, sequence: UInt64, dynamodb: [UInt8]) {
        self.event = event
        self.local = local
        self.createdMs = createdMs
        self.sequence = sequence
        self.dynamodb = dynamodb
    }

    /// A record of `event`, with what `view` keeps of the images.
    public init(
        event: ChangeEvent, local: Bool, createdMs: UInt64, sequence: UInt64, view: StreamViewType,
        keys: [String: AttributeValue], old: [String: AttributeValue]?, new: [String: AttributeValue]?
    ) {
        let newImage = view == .newImage || view == .newAndOldImages ? new : nil
        let oldImage = view == .oldImage || view == .newAndOldImages ? old : nil
        // SizeBytes: the record's keys and images, by DynamoDB's item size accounting.
        let size = DynamoJSON.size(keys) + (newImage.map(DynamoJSON.size) ?? 0) + (oldImage.map(DynamoJSON.size) ?? 0)
        var fields: [(String, JSON)] = [
            // DynamoDB Streams: epoch seconds, rounded down.
            ("ApproximateCreationDateTime", .number(String(createdMs / 1000))),
            ("Keys", DynamoJSON.json(keys))
        ]
        if let newImage { fields.append(("NewImage", DynamoJSON.json(newImage))) }
        if let oldImage { fields.append(("OldImage", DynamoJSON.json(oldImage))) }
        fields += [
            ("SequenceNumber", .string(ChangeRecord.sequenceText(sequence))), ("SizeBytes", .number(String(max(1, size)))),
            ("StreamViewType", .string(view.name))
        ]
        self.init(
            event: event, local: local, createdMs: createdMs, sequence: sequence, dynamodb: Array(JSON.object(fields).serialized.utf8))
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: dynamodb.count + 19)
        w.u8(event.rawValue)
        w.u8(local ? 1 : 0)
        w.u64(createdMs)
        w.u64(sequence)
        w.raw(dynamodb)
        return w.bytes
    }

    /// Bytes of a stored record before its JSON: enough to read its time and sequence.
    public static let headerBytes = 18

    public init(decoding bytes: [UInt8]) throws(TandemError) {
        var r = ByteReader(bytes)
        guard let event = ChangeEvent(rawValue: try r.u8()) else { throw TandemError(.malformed, "unknown change event") }
        self.event = event
        local = try r.u8() & 1 == 1
        createdMs = try r.u64()
        sequence = try r.u64()
        dynamodb = Array(bytes[r.offset...])
    }

    /// A record's creation time and sequence from its header (`headerBytes` of it suffice).
    public static func header(_ bytes: [UInt8]) throws(TandemError) -> (createdMs: UInt64, sequence: UInt64) {
        var r = ByteReader(bytes, from: 2)
        return (try r.u64(), try r.u64())
    }

    /// DynamoDB Streams' sequence numbers are 21 to 40 digits: 21, zero-padded, so they sort
    /// as text too.
    public static func sequenceText(_ n: UInt64) -> String {
        let digits = String(n)
        return String(repeating: "0", count: 21 - digits.count) + digits
    }

    public static func parseSequence(_ text: String) -> UInt64? {
        guard (21...40).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        let significant = text.drop { $0 == "0" }
        return significant.isEmpty ? 0 : UInt64(significant)
    }
}

// ==== ----------------------------------------------------------------------------------------
// MARK: Capture in the core

extension TableNode {
    /// A table's stream as the core records into it, and the last sequence number it issued.
    struct ChangeStreamState {
        var spec: ChangeStreamSpec
        var last: UInt64
    }

    /// Starts (or, with nil, stops) recording `table`'s changes. `lastSequence`: the highest
    /// number the store holds for the table (records or trim marks), so numbers never go back
    /// across a restart or a new stream. Setting the stream it has already changes nothing.
    public func setChangeStream(_ table: String, _ spec: ChangeStreamSpec?, lastSequence: UInt64) {
        guard let spec else {
            changeStreams[table] = nil
            return
        }
        if let s = changeStreams[table], s.spec == spec { return }
        changeStreams[table] = ChangeStreamState(spec: spec, last: max(lastSequence, changeStreams[table]?.last ?? 0))
    }

    /// The tables whose changes are recorded.
    public var changeStreamTables: [String] { Array(changeStreams.keys) }

    /// The stream `table`'s changes are recorded into, with the last sequence number issued.
    public func changeStream(_ table: String) -> (spec: ChangeStreamSpec, last: UInt64)? {
        changeStreams[table].map { ($0.spec, $0.last) }
    }

    /// Records the change a merge made to `key` (its state before: `before`) if `table` has a
    /// stream and the visible item changed; the record goes into `writes`, with the item's.
    func captureChange(
        _ table: String, _ key: ItemKey, before: ItemState?, local: Bool, into writes: inout [StoreWrite]
    ) throws(TandemError) {
        guard var s = changeStreams[table], let replica = replicas[table], replica.id == s.spec.table else { return }
        let old = before?.visible
        let new = try replica.state(key)?.visible
        guard let event = ChangeEvent.of(before: old, after: new) else { return }
        s.last += 1
        changeStreams[table] = s
        var keys = [replica.schema.partitionKey: key.partition.attributeValue]
        if let name = replica.schema.sortKey, let v = key.sort { keys[name] = v.attributeValue }
        let record = ChangeRecord(
            event: event, local: local, createdMs: clock.last >> 16, sequence: s.last, view: s.spec.view, keys: keys, old: old,
            new: new)
        writes.append(.change(table: replica.id, stream: s.spec.label, sequence: s.last, record: record.encoded))
    }
}

// ==== ----------------------------------------------------------------------------------------
// MARK: Names

/// A stream's label as DynamoDB writes it: its creation time, ISO 8601 in UTC to the
/// millisecond, without a zone (`2015-05-11T21:21:33.291`).
public enum StreamLabel {
    public static func text(_ ms: UInt64) -> String {
        let days = Int64(ms / 86_400_000), rest = Int(ms % 86_400_000)
        // Civil from days (H. Hinnant's algorithm), proleptic Gregorian.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func pad(_ v: Int64, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        let h = Int64(rest / 3_600_000), mi = Int64(rest / 60_000 % 60), s = Int64(rest / 1_000 % 60), f = Int64(rest % 1_000)
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(h, 2)):\(pad(mi, 2)):\(pad(s, 2)).\(pad(f, 3))"
    }

    public static func parse(_ text: String) -> UInt64? {
        let u = Array(text.utf8)
        guard u.count == 23, u[4] == 0x2D, u[7] == 0x2D, u[10] == 0x54, u[13] == 0x3A, u[16] == 0x3A, u[19] == 0x2E else { return nil }
        func num(_ r: Range<Int>) -> Int64? {
            var v: Int64 = 0
            for i in r {
                guard u[i] >= 0x30, u[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(u[i] - 0x30)
            }
            return v
        }
        guard let y = num(0..<4), let m = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16),
            let s = num(17..<19), let f = num(20..<23), (1...12).contains(m), (1...31).contains(d), h < 24, mi < 60, s < 60, y >= 1970
        else { return nil }
        // Days from civil.
        let yy = m <= 2 ? y - 1 : y
        let era = yy / 400
        let yoe = yy - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let ms = days * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1_000 + f
        guard ms >= 0, StreamLabel.text(UInt64(ms)) == text else { return nil }
        return UInt64(ms)
    }
}
