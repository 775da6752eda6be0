import Processing
import Storage
import StreamLog
import TandemCore
import Transport

/// Peer frame kinds used by streams (1 is push-pull, 2–4 are tables).
enum StreamFrameKind {
    /// One-way batch of Raft messages for any number of partitions (no reply).
    static let raft: UInt8 = 10
    /// A put forwarded towards the partition leader; answered after commit.
    static let put: UInt8 = 11
    /// A read proxied by a node that holds no replica of the partition.
    static let read: UInt8 = 12

    static let all: Set<UInt8> = [raft, put, read]
}

/// Which partition of which stream incarnation a message is about. The incarnation (the
/// stream's creation time) keeps a deleted-and-recreated stream from hearing its old self.
struct GroupID: Hashable, CustomStringConvertible {
    var stream: String
    var incarnation: UInt64
    var partition: Int

    var description: String { "\(stream)/\(partition)" }

    func encode(into w: inout ByteWriter) {
        w.shortString(stream)
        w.u64(incarnation)
        w.u16(UInt16(partition))
    }

    static func decode(_ r: inout ByteReader) throws(TandemError) -> GroupID {
        GroupID(stream: try r.shortString(), incarnation: try r.u64(), partition: Int(try r.u16()))
    }
}

/// The payload of a record entry in the log: `version u8 | key shortString | data…`, or for the
/// first record of a put a replica forwarded to the leader, `2 | origin u64 | put u64 | key | data`.
/// The key travels with the record so readers can hand it back and consumers can group by it.
/// The tag lets the forwarding replica recognise the put when the leader's append brings it
/// back, and answer as soon as it has committed it (`StreamPartition.awaitForwarded`): the
/// origin is random per process, so a restarted node or another node never takes a record
/// for one of its own; the put number counts that process's forwards.
enum StreamRecord {
    static let version: UInt8 = 1
    static let taggedVersion: UInt8 = 2
    static let maxKeyBytes = 255
    /// Like Kinesis: a record's data is at most 1 MiB (the request may carry up to 4 MiB).
    static let maxDataBytes = 1 << 20

    static func encode(key: String, data: [UInt8]) -> [UInt8] {
        var key = key
        return key.withUTF8 { encode(keyBytes: $0, data: data) }
    }

    /// `version | key length | key | data`; the key is at most `maxKeyBytes` (checked by callers).
    static func encode(keyBytes: UnsafeBufferPointer<UInt8>, data: [UInt8]) -> [UInt8] {
        var record: [UInt8] = []
        record.reserveCapacity(2 + keyBytes.count + data.count)
        record.append(version)
        record.append(UInt8(keyBytes.count))
        record.append(contentsOf: keyBytes)
        record.append(contentsOf: data)
        return record
    }

    /// The common body `{"key":"…","data":"<base64>"}` (members in either order, whitespace
    /// anywhere, no escapes) straight to (key, encoded record), base64 decoded in place: on the
    /// put path a JSON tree cost more than all of Raft. Nil for any other shape, which then
    /// goes through the JSON parser and gets its precise error there.
    static func encodeSimpleBody(_ body: [UInt8]) -> (key: String, record: [UInt8])? {
        body.withUnsafeBufferPointer { b -> (key: String, record: [UInt8])? in
            var i = 0
            func space() { while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 } }
            func expect(_ c: UInt8) -> Bool {
                space()
                guard i < b.count, b[i] == c else { return false }
                i += 1
                return true
            }
            /// The range of a string without escapes or control characters.
            func string() -> Range<Int>? {
                guard expect(UInt8(ascii: "\"")), let (end, _) = JSON.plainString(b, from: i) else { return nil }
                defer { i = end + 1 }
                return i..<end
            }
            guard expect(UInt8(ascii: "{")) else { return nil }
            var key: Range<Int>?, data: Range<Int>?
            for member in 0..<2 {
                guard let name = string(), expect(UInt8(ascii: ":")), let value = string() else { return nil }
                switch name.count == 3 ? 0 : name.count == 4 ? 1 : 2 {
                case 0 where b[name.lowerBound] == 0x6B && b[name.lowerBound + 1] == 0x65 && b[name.lowerBound + 2] == 0x79 && key == nil:
                    key = value
                case 1
                where b[name.lowerBound] == 0x64 && b[name.lowerBound + 1] == 0x61 && b[name.lowerBound + 2] == 0x74
                    && b[name.lowerBound + 3] == 0x61 && data == nil:
                    data = value
                default: return nil
                }
                guard expect(member == 0 ? UInt8(ascii: ",") : UInt8(ascii: "}")) else { return nil }
            }
            space()
            guard i == b.count, let key, let data, (1...maxKeyBytes).contains(key.count),
                let keyText = String(validating: UnsafeBufferPointer(rebasing: b[key]), as: UTF8.self),
                let decoded = Base64.decode(UnsafeBufferPointer(rebasing: b[data])), decoded.count <= maxDataBytes
            else { return nil }
            return (keyText, encode(keyBytes: UnsafeBufferPointer(rebasing: b[key]), data: decoded))
        }
    }

    /// `record` (either version) with the tag (origin, put) in place of any it had.
    static func tagged(_ record: [UInt8], origin: UInt64, put: UInt64) -> [UInt8] {
        let body = record.first == taggedVersion ? record.dropFirst(17) : record.dropFirst()
        var w = ByteWriter(capacity: record.count + 17)
        w.u8(taggedVersion)
        w.u64(origin)
        w.u64(put)
        w.raw(body)
        return w.bytes
    }

    /// The tag of a tagged record, else nil.
    static func tag(_ bytes: [UInt8]) -> (origin: UInt64, put: UInt64)? {
        guard bytes.first == taggedVersion else { return nil }
        var r = ByteReader(bytes)
        _ = try? r.u8()
        guard let origin = try? r.u64(), let put = try? r.u64() else { return nil }
        return (origin, put)
    }

    static func decode(_ bytes: [UInt8]) -> (key: String, data: ArraySlice<UInt8>)? {
        var r = ByteReader(bytes)
        switch try? r.u8() {
        case version: break
        case taggedVersion:
            guard (try? r.u64()) != nil, (try? r.u64()) != nil else { return nil }
        default: return nil
        }
        guard let key = try? r.shortString() else { return nil }
        return (key, bytes[r.offset...])
    }
}

/// Sequence numbers are Raft indexes written as 20-digit decimal strings, so they sort as text too
/// (one implementation, shared with the processors' events).
typealias Sequence = SequenceText

/// A put's outcome when it failed: rendered as `{"error", "message", "retryable"}`.
struct PutFailure: Error {
    var status: Int
    var code: String
    var message: String
    var retryable: Bool

    /// A replica's disk failed (503 `disk_failed`) or is full (507 `disk_full`, as for tables).
    static func disk(_ g: GroupID, full: Bool, _ what: String) -> PutFailure {
        let code: TandemError.Code = full ? .diskFull : .diskFailed
        return PutFailure(status: code.httpStatus, code: code.name, message: "partition \(g) \(what)", retryable: true)
    }

    static func noLeader(_ g: String) -> PutFailure {
        PutFailure(status: 503, code: "no_leader", message: "partition \(g) has no leader right now", retryable: true)
    }

    func encode(into w: inout ByteWriter) {
        w.u16(UInt16(status))
        w.shortString(code)
        w.blob(Array(message.utf8.prefix(1000)))
        w.bool(retryable)
    }

    static func decode(_ r: inout ByteReader) throws(TandemError) -> PutFailure {
        PutFailure(
            status: Int(try r.u16()), code: try r.shortString(),
            message: String(decoding: try r.blob(limit: 1000), as: UTF8.self), retryable: try r.bool())
    }
}

/// Frame payloads. Every decoder checks each count and length before it allocates.
enum StreamWire {
    static let version: UInt8 = 1
    static let maxMessagesPerFrame = 10_000
    static let maxRecordsPerPut = 500

    // MARK: raft batch: version | count u16 | (group, message blob)*

    static func decodeRaftBatch(_ bytes: [UInt8]) throws(TandemError) -> [(GroupID, RaftMessage)] {
        var r = ByteReader(bytes)
        guard try r.u8() == version else { throw TandemError(.unsupportedVersion, "stream raft frame version") }
        let n = try r.count16(limit: maxMessagesPerFrame, minElementSize: 16)
        var out: [(GroupID, RaftMessage)] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            let g = try GroupID.decode(&r)
            out.append((g, try RaftMessage.decode(try r.blob(limit: 8 << 20))))
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes after raft batch") }
        return out
    }

    // MARK: put: version | group | hops u8 | waitMs u32 | count u16 | record blob*

    struct PutRequest {
        var group: GroupID
        var hops: Int
        var waitMs: UInt32
        var records: [[UInt8]]
    }

    static func encode(_ p: PutRequest) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + p.records.reduce(0) { $0 + $1.count + 4 })
        w.u8(version)
        p.group.encode(into: &w)
        w.u8(UInt8(min(p.hops, 255)))
        w.u32(p.waitMs)
        w.u16(UInt16(p.records.count))
        for rec in p.records { w.blob(rec) }
        return w.bytes
    }

    static func decodePut(_ bytes: [UInt8]) throws(TandemError) -> PutRequest {
        var r = ByteReader(bytes)
        guard try r.u8() == version else { throw TandemError(.unsupportedVersion, "stream put frame version") }
        let g = try GroupID.decode(&r)
        let hops = Int(try r.u8())
        let waitMs = try r.u32()
        let n = try r.count16(limit: maxRecordsPerPut, minElementSize: 4)
        var records: [[UInt8]] = []
        for _ in 0..<n { records.append(try r.blob(limit: StreamRecord.maxDataBytes + 512)) }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes after put") }
        return PutRequest(group: g, hops: hops, waitMs: waitMs, records: records)
    }

    /// Answer: `0 | first u64 | last u64 | leader shortString` or `1 | failure | leader shortString`.
    static func encodePutResult(_ result: Result<ClosedRange<UInt64>, PutFailure>, leader: NodeID?) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        switch result {
        case .success(let range):
            w.u8(0)
            w.u64(range.lowerBound)
            w.u64(range.upperBound)
        case .failure(let f):
            w.u8(1)
            f.encode(into: &w)
        }
        w.shortString(leader?.rawValue ?? "")
        return w.bytes
    }

    static func decodePutResult(_ bytes: [UInt8]) throws(TandemError) -> (Result<ClosedRange<UInt64>, PutFailure>, leader: NodeID?) {
        var r = ByteReader(bytes)
        let result: Result<ClosedRange<UInt64>, PutFailure>
        switch try r.u8() {
        case 0:
            let a = try r.u64(), b = try r.u64()
            guard a <= b else { throw TandemError(.malformed, "put result range") }
            result = .success(a...b)
        case 1: result = .failure(try PutFailure.decode(&r))
        default: throw TandemError(.malformed, "put result tag")
        }
        let leader = try r.shortString()
        return (result, leader.isEmpty ? nil : NodeID(leader))
    }

    // MARK: read proxy: version | stream | partition u16 | count u8 | (key, value)* → status u16 | body blob

    static func encodeRead(stream: String, partition: Int, query: [String: String]) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.u8(version)
        w.shortString(stream)
        w.u16(UInt16(partition))
        let pairs = query.sorted { $0.key < $1.key }.prefix(16)
        w.u8(UInt8(pairs.count))
        for (k, v) in pairs {
            w.shortString(k)
            w.shortString(v)
        }
        return w.bytes
    }

    static func decodeRead(_ bytes: [UInt8]) throws(TandemError) -> (stream: String, partition: Int, query: [String: String]) {
        var r = ByteReader(bytes)
        guard try r.u8() == version else { throw TandemError(.unsupportedVersion, "stream read frame version") }
        let stream = try r.shortString()
        let partition = Int(try r.u16())
        var query: [String: String] = [:]
        for _ in 0..<(try r.u8()) { query[try r.shortString()] = try r.shortString() }
        return (stream, partition, query)
    }

    static func encodeReadResult(status: Int, body: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: body.count + 8)
        w.u16(UInt16(status))
        w.blob(body)
        return w.bytes
    }

    static func decodeReadResult(_ bytes: [UInt8]) throws(TandemError) -> (Int, [UInt8]) {
        var r = ByteReader(bytes)
        return (Int(try r.u16()), try r.blob(limit: 8 << 20))
    }
}
