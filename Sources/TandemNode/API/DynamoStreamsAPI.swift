import GlobalTable
import TandemCore
import Transport

/// DynamoDB Streams' JSON wire API (`X-Amz-Target: DynamoDBStreams_20120810.<Op>`): ListStreams,
/// DescribeStream, GetShardIterator, GetRecords over this node's change streams
/// (`ChangeStreams`). Errors are DynamoDB's shape and names: ResourceNotFoundException,
/// ValidationException, ExpiredIteratorException, TrimmedDataAccessException.
final class DynamoStreamsAPI {
    let streams: ChangeStreams

    init(streams: ChangeStreams) { self.streams = streams }

    func handle(_ op: String, _ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) {
        do {
            let request: JSON
            do { request = try JSON.parse(body.isEmpty ? Array("{}".utf8) : body) } catch {
                throw DynamoError.serialization("Could not parse request body as JSON")
            }
            guard case .object = request else { throw DynamoError.serialization("The request body must be a JSON object") }
            switch op {
            case "ListStreams": respond(DynamoAPI.ok(try listStreams(request)))
            case "DescribeStream": respond(DynamoAPI.ok(try describeStream(request)))
            case "GetShardIterator": respond(DynamoAPI.ok(try getShardIterator(request)))
            case "GetRecords": respond(HTTPResponse(status: 200, contentType: DynamoAPI.contentType, body: try getRecords(request)))
            default: throw DynamoError("UnknownOperationException", "Operation \(op) is not supported")
            }
        } catch let e as DynamoError {
            respond(DynamoAPI.error(e))
        } catch let e as TandemError {
            respond(DynamoAPI.error(DynamoError(e.code.httpStatus >= 500 ? "InternalServerError" : "ValidationException", e.message)))
        } catch {
            respond(DynamoAPI.error(DynamoError("InternalServerError", "\(error)")))
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: helpers

    private func string(_ j: JSON, _ field: String) throws(DynamoError) -> String? {
        guard let v = j[field], v != .null else { return nil }
        guard case .string(let s) = v else { throw .serialization("\(field) must be a string") }
        return s
    }

    private func int(_ j: JSON, _ field: String, _ range: ClosedRange<Int>) throws(DynamoError) -> Int? {
        guard let v = j[field], v != .null else { return nil }
        guard case .number(let t) = v, let n = Int(t) else { throw .serialization("\(field) must be an integer") }
        guard range.contains(n) else {
            throw .validation(
                "1 validation error detected: Value '\(n)' at '\(field.prefix(1).lowercased() + field.dropFirst())' failed to satisfy constraint: Member must have value \(n < range.lowerBound ? "greater than or equal to \(range.lowerBound)" : "less than or equal to \(range.upperBound)")"
            )
        }
        return n
    }

    private static func notFound(_ what: String) -> DynamoError {
        DynamoError("ResourceNotFoundException", "Requested resource not found: \(what)")
    }

    private func stream(_ j: JSON, now: UInt64) throws(DynamoError) -> ChangeStreams.Descriptor {
        guard let arn = try string(j, "StreamArn") else {
            throw .validation(
                "1 validation error detected: Value null at 'streamArn' failed to satisfy constraint: Member must not be null")
        }
        guard let d = streams.descriptor(arn: arn, nowMs: now) else { throw DynamoStreamsAPI.notFound("Stream: \(arn) not found") }
        return d
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: operations

    func listStreams(_ j: JSON) throws(DynamoError) -> JSON {
        let now = Tables.wallMs()
        let limit = try int(j, "Limit", 1...100) ?? 100
        let table = try string(j, "TableName")
        if let table, table.hasPrefix("_") || streams.tables.replicas[table] == nil {
            throw DynamoStreamsAPI.notFound("Table: \(table) not found")
        }
        var list = streams.readable(table, nowMs: now)
        if let start = try string(j, "ExclusiveStartStreamArn") {
            guard let i = list.firstIndex(where: { streams.arn($0) == start }) else {
                throw DynamoStreamsAPI.notFound("Stream: \(start) not found")
            }
            list = Array(list[(i + 1)...])
        }
        let page = list.prefix(limit)
        var out: [(String, JSON)] = [
            (
                "Streams",
                .array(
                    page.map {
                        .object([
                            ("StreamArn", .string(streams.arn($0))), ("TableName", .string($0.table)),
                            ("StreamLabel", .string(StreamLabel.text($0.label)))
                        ])
                    })
            )
        ]
        if list.count > limit, let last = page.last { out.append(("LastEvaluatedStreamArn", .string(streams.arn(last)))) }
        return .object(out)
    }

    func describeStream(_ j: JSON) throws -> JSON {
        let now = Tables.wallMs()
        let d = try stream(j, now: now)
        _ = try int(j, "Limit", 1...100)
        let closed = streams.closed(d, nowMs: now)
        var shards: [JSON] = []
        if try string(j, "ExclusiveStartShardId") != streams.shardID(d) {
            let first = try streams.firstRecord(d)
            let last = try streams.lastRecord(d)
            let mark = try streams.trimMark(d)
            // An open shard starts at its first record kept, or, with none, at the next to come.
            let start = first ?? max(mark, last ?? 0, streams.tables.core.changeStream(d.table)?.last ?? 0) + 1
            var range: [(String, JSON)] = [("StartingSequenceNumber", .string(ChangeRecord.sequenceText(start)))]
            if closed, let end = last ?? (mark > 0 ? mark : nil) {
                range.append(("EndingSequenceNumber", .string(ChangeRecord.sequenceText(end))))
            }
            shards.append(.object([("ShardId", .string(streams.shardID(d))), ("SequenceNumberRange", .object(range))]))
        }
        let schema = streams.tables.replicas[d.table]?.schema ?? KeySchema(partitionKey: "")
        var keySchema: [JSON] = [.object([("AttributeName", .string(schema.partitionKey)), ("KeyType", "HASH")])]
        if let sk = schema.sortKey { keySchema.append(.object([("AttributeName", .string(sk)), ("KeyType", "RANGE")])) }
        return .object([
            (
                "StreamDescription",
                .object([
                    ("StreamArn", .string(streams.arn(d))), ("StreamLabel", .string(StreamLabel.text(d.label))),
                    ("StreamStatus", .string(closed ? "DISABLED" : "ENABLED")), ("StreamViewType", .string(d.view.name)),
                    ("CreationRequestDateTime", .number(LambdaSeconds.text(d.label))), ("TableName", .string(d.table)),
                    ("KeySchema", .array(keySchema)), ("Shards", .array(shards))
                ])
            )
        ])
    }

    func getShardIterator(_ j: JSON) throws -> JSON {
        let now = Tables.wallMs()
        let d = try stream(j, now: now)
        guard let shard = try string(j, "ShardId") else {
            throw DynamoError.validation(
                "1 validation error detected: Value null at 'shardId' failed to satisfy constraint: Member must not be null")
        }
        guard shard == streams.shardID(d) else { throw DynamoStreamsAPI.notFound("Shard: \(shard) in Stream: \(streams.arn(d)) not found") }
        guard let type = try string(j, "ShardIteratorType") else {
            throw DynamoError.validation(
                "1 validation error detected: Value null at 'shardIteratorType' failed to satisfy constraint: Member must not be null")
        }
        let mark = try streams.trimMark(d)
        let after: UInt64
        switch type {
        case "TRIM_HORIZON": after = mark
        case "LATEST": after = max(mark, try streams.lastRecord(d) ?? 0)
        case "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER":
            guard let text = try string(j, "SequenceNumber") else {
                throw DynamoError.validation("A SequenceNumber is required with ShardIteratorType \(type)")
            }
            guard let s = ChangeRecord.parseSequence(text) else { throw DynamoError.validation("Invalid SequenceNumber: \(text)") }
            let at = type == "AT_SEQUENCE_NUMBER" ? max(s, 1) - 1 : s
            if mark > 0 && at < mark {
                throw DynamoError(
                    "TrimmedDataAccessException",
                    "The sequence number \(text) is older than the oldest record kept in the shard (records older than 24 hours are trimmed)"
                )
            }
            after = at
        default:
            throw DynamoError.validation(
                "1 validation error detected: Value '\(type)' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_SEQUENCE_NUMBER, TRIM_HORIZON]"
            )
        }
        let it = ShardIterator(table: d.table, tableID: d.tableID, label: d.label, after: after, issuedMs: now, node: streams.nodeHash)
        return .object([("ShardIterator", .string(it.text))])
    }

    func getRecords(_ j: JSON) throws -> [UInt8] {
        let now = Tables.wallMs()
        guard let text = try string(j, "ShardIterator") else {
            throw DynamoError.validation(
                "1 validation error detected: Value null at 'shardIterator' failed to satisfy constraint: Member must not be null")
        }
        let limit = try int(j, "Limit", 1...1000) ?? 1000
        guard let it = ShardIterator(text: text) else { throw DynamoError.validation("Invalid ShardIterator") }
        guard it.node == streams.nodeHash else {
            throw DynamoError.validation("Invalid ShardIterator: it was issued by another node (each node's stream holds its own records)")
        }
        guard now < it.issuedMs + ChangeStreams.iteratorLifetimeMs else {
            throw DynamoError("ExpiredIteratorException", "Iterator expired: a shard iterator is valid for 15 minutes after it is issued")
        }
        guard let d = streams.readable(it.table, nowMs: now).first(where: { $0.label == it.label && $0.tableID == it.tableID }) else {
            throw DynamoStreamsAPI.notFound("Stream of table \(it.table) not found")
        }
        if try it.after < streams.trimMark(d) {
            throw DynamoError(
                "TrimmedDataAccessException",
                "The iterator points at records trimmed from the shard (records older than 24 hours are trimmed)")
        }
        // Judged before the read: a record that came after it is simply read next time.
        let closed = streams.closed(d, nowMs: now)
        let records = try streams.read(d, after: it.after, limit: limit)
        var out = Array(#"{"Records":["#.utf8)
        out.reserveCapacity(records.reduce(64) { $0 + $1.dynamodb.count + 200 })
        let json = streams.recordJSON(d, sourceARN: false)
        for (i, r) in records.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            json(r, &out)
        }
        out.append(UInt8(ascii: "]"))
        let end = records.last?.sequence ?? it.after
        // A closed shard read to its end has no next iterator: that is how readers learn it ended.
        if !(closed && records.count < limit) {
            var next = it
            next.after = end
            next.issuedMs = now
            out += Array(#","NextShardIterator":"#.utf8) + Array(JSON.string(next.text).serialized.utf8)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}

extension ChangeStreams {
    /// Writes records of `d` as DynamoDB Streams' GetRecords gives them (and, with `sourceARN`,
    /// as Lambda's DynamoDB event has them, which adds `eventSourceARN`): what is the same for
    /// every record of the stream is made once; a record's stored `dynamodb` text is copied in.
    func recordJSON(_ d: Descriptor, sourceARN: Bool) -> (ChangeRecord, inout [UInt8]) -> Void {
        let head = Array(#"{"awsRegion":"#.utf8) + Array(JSON.string(region).serialized.utf8) + Array(#","eventID":""#.utf8)
        let idPrefix = Array(eventID(d, 0).prefix(16).utf8)
        let names: [ChangeEvent: [UInt8]] = Dictionary(
            uniqueKeysWithValues: [ChangeEvent.insert, .modify, .remove].map { e in
                var tail = Array(#"","eventName":""#.utf8) + Array(e.name.utf8)
                tail += Array(#"","eventSource":"aws:dynamodb","eventVersion":"1.1""#.utf8)
                if sourceARN { tail += Array(#","eventSourceARN":"#.utf8) + Array(JSON.string(arn(d)).serialized.utf8) }
                return (e, tail + Array(#","dynamodb":"#.utf8))
            })
        return { r, out in
            out += head
            out += idPrefix
            let hex = String(r.sequence, radix: 16)
            out += repeatElement(UInt8(ascii: "0"), count: 16 - hex.utf8.count)
            out += hex.utf8
            out += names[r.event]!
            out += r.dynamodb
            out.append(UInt8(ascii: "}"))
        }
    }

    func recordJSON(_ d: Descriptor, _ r: ChangeRecord, sourceARN: Bool) -> [UInt8] {
        var out: [UInt8] = []
        recordJSON(d, sourceARN: sourceARN)(r, &out)
        return out
    }
}

/// Epoch milliseconds as seconds with three decimals (DynamoDB's timestamps on the wire).
enum LambdaSeconds {
    static func text(_ ms: UInt64) -> String {
        let frac = String(ms % 1000)
        return String(ms / 1000) + "." + String(repeating: "0", count: 3 - frac.count) + frac
    }
}

/// A position in one node's stream, opaque to clients: which stream, the last sequence number
/// read, when it was issued (it expires 15 minutes later) and by which node, with a checksum.
struct ShardIterator: Equatable {
    var table: String
    var tableID: TableID
    var label: UInt64
    var after: UInt64
    var issuedMs: UInt64
    var node: UInt64

    init(table: String, tableID: TableID, label: UInt64, after: UInt64, issuedMs: UInt64, node: UInt64) {
        self.table = table
        self.tableID = tableID
        self.label = label
        self.after = after
        self.issuedMs = issuedMs
        self.node = node
    }

    var text: String {
        var w = ByteWriter(capacity: 64 + table.utf8.count)
        w.u8(1)
        for v in [tableID, label, after, issuedMs, node] { w.u64(v) }
        w.shortString(table)
        w.u64(stableHash64(w.bytes))
        return Base64.encode(w.bytes)
    }

    init?(text: String) {
        guard text.utf8.count <= 2048, let bytes = Base64.decode(text), bytes.count > 49 else { return nil }
        var r = ByteReader(bytes)
        guard (try? r.u8()) == 1, let id = try? r.u64(), let label = try? r.u64(), let after = try? r.u64(), let issued = try? r.u64(),
            let node = try? r.u64(), let table = try? r.shortString(), let sum = try? r.u64(), r.isAtEnd,
            sum == stableHash64(bytes.prefix(bytes.count - 8))
        else { return nil }
        self.init(table: table, tableID: id, label: label, after: after, issuedMs: issued, node: node)
    }
}
