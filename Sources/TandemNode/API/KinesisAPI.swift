import Foundation
import Storage
import StreamLog
import TandemCore
import Transport

/// Kinesis Data Streams' JSON wire API (`POST /`, `X-Amz-Target: Kinesis_20131202.<Op>`) over
/// streams. Each operation is translated into calls of the streams service (`StreamsService`),
/// so forwarding to leaders and proxied reads work as they do for the REST API.
///
/// Shards are the stream's partitions (`shardId-000000000003` is partition 3), sequence numbers
/// are the partition log's indexes. A record goes to the shard whose HashKeyRange holds its
/// ExplicitHashKey, else the MD5 of its PartitionKey, as in Kinesis (`KeyHash`; streams created
/// before that rule keep theirs, FNV-1a of the key). A shard iterator is an opaque token naming stream incarnation, partition and
/// position, with a checksum so an altered token is refused; it expires after 5 minutes.
final class KinesisAPI {
    static let contentType = "application/x-amz-json-1.1"
    static let iteratorLifetimeMs: UInt64 = 300_000
    static let account = "000000000000"

    let streams: Streams

    init(streams: Streams) { self.streams = streams }

    typealias Respond = (HTTPResponse) -> Void

    struct Failure: Error {
        var type: String
        var message: String
        init(_ type: String, _ message: String) {
            self.type = type
            self.message = message
        }
        static func invalid(_ m: String) -> Failure { Failure("InvalidArgumentException", m) }
    }

    func handle(_ op: String, _ body: [UInt8], _ respond: @escaping Respond) {
        do {
            let j: JSON
            do { j = try JSON.parse(body.isEmpty ? Array("{}".utf8) : body) } catch {
                throw Failure("SerializationException", "Could not parse request body as JSON")
            }
            guard case .object = j else { throw Failure("SerializationException", "The request body must be a JSON object") }
            switch op {
            case "CreateStream": try createStream(j, respond)
            case "DeleteStream":
                streams.deleteStream(try streamName(j, existing: true).name) { [self] error in
                    if let error { return respond(failed(error)) }
                    respond(KinesisAPI.ok(.object([])))
                }
            case "ListStreams": respond(KinesisAPI.ok(try listStreams(j)))
            case "DescribeStreamSummary":
                respond(KinesisAPI.ok(.object([("StreamDescriptionSummary", .object(try summary(try streamName(j, existing: true))))])))
            case "DescribeStream":
                let d = try streamName(j, existing: true)
                let shards = try shardPage(d, j, after: try string(j, "ExclusiveStartShardId"), limit: try int(j, "Limit") ?? 100)
                respond(
                    KinesisAPI.ok(
                        .object([
                            (
                                "StreamDescription",
                                .object(
                                    try summary(d).filter { $0.0 != "OpenShardCount" && $0.0 != "ConsumerCount" }
                                        + [("Shards", .array(shards.shards)), ("HasMoreShards", .bool(shards.more))])
                            )
                        ])))
            case "ListShards":
                var d: Streams.Definition
                var after = try string(j, "ExclusiveStartShardId")
                if let token = try string(j, "NextToken") {
                    // Our NextToken is "stream/lastShardId".
                    let parts = token.split(separator: "/", maxSplits: 1).map(String.init)
                    guard parts.count == 2, let def = streams.definitions[parts[0]] else { throw Failure.invalid("Invalid NextToken") }
                    d = def
                    after = parts[1]
                } else {
                    d = try streamName(j, existing: true)
                }
                let page = try shardPage(d, j, after: after, limit: try int(j, "MaxResults") ?? 1000)
                var out: [(String, JSON)] = [("Shards", .array(page.shards))]
                if page.more, let last = page.lastID { out.append(("NextToken", .string("\(d.name)/\(last)"))) }
                respond(KinesisAPI.ok(.object(out)))
            case "PutRecord": try putRecords(j, batch: false, respond)
            case "PutRecords": try putRecords(j, batch: true, respond)
            case "GetShardIterator": try getShardIterator(j, respond)
            case "GetRecords": try getRecords(j, respond)
            case "IncreaseStreamRetentionPeriod", "DecreaseStreamRetentionPeriod":
                try changeRetention(j, increase: op.hasPrefix("Inc"), respond)
            case "AddTagsToStream": try changeTags(j, add: true, respond)
            case "RemoveTagsFromStream": try changeTags(j, add: false, respond)
            case "ListTagsForStream": respond(KinesisAPI.ok(try listTags(j)))
            case "SubscribeToShard", "RegisterStreamConsumer", "DescribeStreamConsumer", "ListStreamConsumers":
                throw Failure(
                    "UnknownOperationException", "Operation \(op) is not supported: enhanced fan-out is not built; read with GetRecords")
            default: throw Failure("UnknownOperationException", "Operation \(op) is not supported")
            }
        } catch let f as Failure {
            respond(KinesisAPI.error(f))
        } catch let e as StreamsError {
            respond(KinesisAPI.error(KinesisAPI.failure(e)))
        } catch let e as TandemError {
            respond(KinesisAPI.error(Failure.invalid(e.message)))
        } catch {
            respond(KinesisAPI.error(Failure("InternalFailure", "\(error)")))
        }
    }

    static func ok(_ j: JSON) -> HTTPResponse { HTTPResponse(status: 200, contentType: contentType, body: Array(j.serialized.utf8)) }

    static func error(_ f: Failure) -> HTTPResponse {
        let body = JSON.object([("__type", .string(f.type)), ("message", .string(f.message))])
        return HTTPResponse(status: f.type == "InternalFailure" ? 500 : 400, contentType: contentType, body: Array(body.serialized.utf8))
    }

    /// A streams service error as Kinesis names it.
    static func failure(_ e: StreamsError) -> Failure {
        switch e.status {
        case 404: Failure("ResourceNotFoundException", e.message)
        case 400, 409, 413: Failure.invalid(e.message)
        case 429, 503: Failure("ProvisionedThroughputExceededException", e.message)
        default: Failure("InternalFailure", e.message)
        }
    }

    /// The answer to a failed streams call, counted as the streams API counts its errors.
    private func failed(_ e: StreamsError) -> HTTPResponse {
        streams.countError(e.code)
        return KinesisAPI.error(KinesisAPI.failure(e))
    }

    // MARK: helpers

    private func string(_ j: JSON, _ field: String) throws -> String? {
        guard let v = j[field], v != .null else { return nil }
        guard case .string(let s) = v else { throw Failure("SerializationException", "\(field) must be a string") }
        return s
    }

    private func int(_ j: JSON, _ field: String) throws -> Int? {
        guard let v = j[field], v != .null else { return nil }
        guard case .number(let t) = v, let n = Int(t) else { throw Failure("SerializationException", "\(field) must be an integer") }
        return n
    }

    private func streamName(_ j: JSON, existing: Bool) throws -> Streams.Definition {
        guard let name = try string(j, "StreamName") ?? (try string(j, "StreamARN")).map({ String($0.split(separator: "/").last ?? "") })
        else {
            throw Failure.invalid("StreamName is required")
        }
        guard let d = streams.definitions[name] else {
            throw Failure("ResourceNotFoundException", "Stream \(name) under account \(KinesisAPI.account) not found.")
        }
        return d
    }

    static func shardID(_ p: Int) -> String {
        let digits = String(p)
        return "shardId-" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    static func partition(ofShard id: String, _ d: Streams.Definition) throws -> Int {
        guard id.hasPrefix("shardId-"), let p = Int(id.dropFirst(8)), p >= 0, p < d.partitions else {
            throw Failure("ResourceNotFoundException", "Shard \(id) in stream \(d.name) under account \(KinesisAPI.account) does not exist")
        }
        return p
    }

    private func arn(_ name: String) -> String { "arn:aws:kinesis:tandem:\(KinesisAPI.account):stream/\(name)" }

    /// ACTIVE once every partition has a leader this node knows of (puts succeed), else CREATING.
    private func status(_ d: Streams.Definition) -> String {
        streams.describe(d).partitions.allSatisfy { $0.leader != nil } ? "ACTIVE" : "CREATING"
    }

    private func summary(_ d: Streams.Definition) throws -> [(String, JSON)] {
        [
            ("StreamName", .string(d.name)), ("StreamARN", .string(arn(d.name))), ("StreamStatus", .string(status(d))),
            ("StreamModeDetails", .object([("StreamMode", .string("PROVISIONED"))])),
            ("RetentionPeriodHours", .number(String(d.retentionHours))),
            ("StreamCreationTimestamp", .number(String(Double(d.incarnation) / 1000))),
            ("EnhancedMonitoring", .array([.object([("ShardLevelMetrics", .array([]))])])), ("EncryptionType", .string("NONE")),
            ("OpenShardCount", .number(String(d.partitions))), ("ConsumerCount", .number("0"))
        ]
    }

    private func shardPage(_ d: Streams.Definition, _ j: JSON, after: String?, limit: Int) throws -> (
        shards: [JSON], more: Bool, lastID: String?
    ) {
        guard (1...10_000).contains(limit) else { throw Failure.invalid("Limit must be 1 to 10000") }
        let first = try after.map { try KinesisAPI.partition(ofShard: $0, d) + 1 } ?? 0
        var shards: [JSON] = []
        var p = first
        while p < d.partitions && shards.count < limit {
            let range = KeyHash.range(p, partitions: d.partitions), start = range.lowerBound, end = range.upperBound
            shards.append(
                .object([
                    ("ShardId", .string(KinesisAPI.shardID(p))),
                    ("HashKeyRange", .object([("StartingHashKey", .string(String(start))), ("EndingHashKey", .string(String(end)))])),
                    ("SequenceNumberRange", .object([("StartingSequenceNumber", .string(Sequence.format(1)))]))
                ]))
            p += 1
        }
        return (shards, p < d.partitions, shards.isEmpty ? nil : KinesisAPI.shardID(p - 1))
    }

    // MARK: streams

    private func createStream(_ j: JSON, _ respond: @escaping Respond) throws {
        guard let name = try string(j, "StreamName") else { throw Failure.invalid("StreamName is required") }
        let count = try int(j, "ShardCount") ?? 4
        if streams.definitions[name] != nil {
            throw Failure("ResourceInUseException", "Stream \(name) under account \(KinesisAPI.account) already exists.")
        }
        // CreateStream's Tags (a map), stored once the stream exists, as AddTagsToStream does.
        var tags: [(key: String, value: String)] = []
        if case .object(let members)? = j["Tags"] {
            for (k, v) in members {
                guard case .string(let value) = v else { throw Failure("SerializationException", "Tag values must be strings") }
                tags.append((k, value))
            }
            if let problem = Tables.checkTags(tags) { throw Failure.invalid(problem) }
        }
        streams.createStream(name, partitions: count, retentionHours: 24) { [self] result in
            if case .failure(let e) = result { return respond(failed(e)) }
            guard !tags.isEmpty, let d = streams.definitions[name] else { return respond(KinesisAPI.ok(.object([]))) }
            _ = streams.tables.changeTags(Tables.tagKey(stream: name), incarnation: d.incarnation, set: tags, remove: []) { error in
                if let error { return respond(KinesisAPI.error(Failure("InternalFailure", error.message))) }
                respond(KinesisAPI.ok(.object([])))
            }
        }
    }

    private func listStreams(_ j: JSON) throws -> JSON {
        let limit = try int(j, "Limit") ?? 100
        guard (1...10_000).contains(limit) else { throw Failure.invalid("Limit must be 1 to 10000") }
        // Pages continue after a stream name: ExclusiveStartStreamName, or NextToken (which is
        // the last name of the page before, as the SDK paginators pass it back).
        let after = try string(j, "NextToken") ?? string(j, "ExclusiveStartStreamName")
        let names = streams.definitions.keys.filter { n in after.map { n > $0 } ?? true }.sorted()
        let page = Array(names.prefix(limit))
        let next: [(String, JSON)] = names.count > limit ? [("NextToken", .string(page.last!))] : []
        return .object(
            next + [
                ("StreamNames", .array(page.map { .string($0) })), ("HasMoreStreams", .bool(names.count > limit)),
                (
                    "StreamSummaries",
                    .array(
                        page.map { n in
                            let d = streams.definitions[n]!
                            return .object([
                                ("StreamName", .string(n)), ("StreamARN", .string(arn(n))), ("StreamStatus", .string(status(d))),
                                ("StreamCreationTimestamp", .number(String(Double(d.incarnation) / 1000)))
                            ])
                        })
                )
            ])
    }

    // MARK: retention and tags

    /// Increase/DecreaseStreamRetentionPeriod, with Kinesis's bounds (24 to 8,760 hours) and its
    /// rule that each goes one way only.
    private func changeRetention(_ j: JSON, increase: Bool, _ respond: @escaping Respond) throws {
        let d = try streamName(j, existing: true)
        guard let hours = try int(j, "RetentionPeriodHours") else { throw Failure.invalid("RetentionPeriodHours is required") }
        guard hours >= 24 else {
            throw Failure.invalid("Minimum allowed retention period is 24 hours. Requested retention period (\(hours) hours) is too short.")
        }
        guard hours <= 8760 else {
            throw Failure.invalid(
                "Maximum allowed retention period is 8760 hours. Requested retention period (\(hours) hours) is too long.")
        }
        if increase, hours < d.retentionHours {
            throw Failure.invalid(
                "Requested retention period (\(hours) hours) for stream \(d.name) can not be shorter than existing retention period (\(d.retentionHours) hours). Use DecreaseStreamRetentionPeriod API."
            )
        }
        if !increase, hours > d.retentionHours {
            throw Failure.invalid(
                "Requested retention period (\(hours) hours) for stream \(d.name) can not be longer than existing retention period (\(d.retentionHours) hours). Use IncreaseStreamRetentionPeriod API."
            )
        }
        streams.setRetention(d.name, hours: hours) { [self] error in
            if let error { return respond(failed(error)) }
            respond(KinesisAPI.ok(.object([])))
        }
    }

    /// AddTagsToStream (`Tags`: a map) and RemoveTagsFromStream (`TagKeys`), stored as table
    /// tags are (`Tables.changeTags`), at most 50 a stream.
    private func changeTags(_ j: JSON, add: Bool, _ respond: @escaping Respond) throws {
        let d = try streamName(j, existing: true)
        var set: [(key: String, value: String)] = []
        var remove: [String] = []
        if add {
            guard case .object(let members)? = j["Tags"], !members.isEmpty else { throw Failure.invalid("Tags must be a non-empty map") }
            for (k, v) in members {
                guard case .string(let value) = v else { throw Failure("SerializationException", "Tag values must be strings") }
                set.append((k, value))
            }
            if let problem = Tables.checkTags(set) { throw Failure.invalid(problem) }
        } else {
            guard case .array(let keys)? = j["TagKeys"], (1...Tables.maxTags).contains(keys.count) else {
                throw Failure.invalid("TagKeys must list 1 to \(Tables.maxTags) keys")
            }
            remove = keys.compactMap(\.stringValue)
        }
        let stored = streams.tables.changeTags(Tables.tagKey(stream: d.name), incarnation: d.incarnation, set: set, remove: remove) {
            error in
            if let error { return respond(KinesisAPI.error(Failure("InternalFailure", error.message))) }
            respond(KinesisAPI.ok(.object([])))
        }
        guard stored else { throw Failure("LimitExceededException", "A stream has at most \(Tables.maxTags) tags") }
    }

    /// ListTagsForStream: tags in key order, after ExclusiveStartTagKey, at most Limit (50).
    private func listTags(_ j: JSON) throws -> JSON {
        let d = try streamName(j, existing: true)
        let limit = try int(j, "Limit") ?? Tables.maxTags
        guard (1...Tables.maxTags).contains(limit) else { throw Failure.invalid("Limit must be 1 to \(Tables.maxTags)") }
        let after = try string(j, "ExclusiveStartTagKey")
        let all = try streams.tables.tags(Tables.tagKey(stream: d.name), incarnation: d.incarnation)
            .filter { tag in after.map { tag.key > $0 } ?? true }.sorted { $0.key < $1.key }
        return .object([
            ("Tags", .array(all.prefix(limit).map { .object([("Key", .string($0.key)), ("Value", .string($0.value))]) })),
            ("HasMoreTags", .bool(all.count > limit))
        ])
    }

    // MARK: records

    private func putRecords(_ j: JSON, batch: Bool, _ respond: @escaping Respond) throws {
        let d = try streamName(j, existing: true)
        let entries: [JSON]
        if batch {
            guard case .array(let list)? = j["Records"], (1...StreamWire.maxRecordsPerPut).contains(list.count) else {
                throw Failure.invalid("Records must hold 1 to \(StreamWire.maxRecordsPerPut) records")
            }
            entries = list
        } else {
            entries = [j]
        }
        var records: [(key: String, hashKey: UInt128?, record: [UInt8])] = []
        for e in entries {
            guard let key = try string(e, "PartitionKey"), (1...256).contains(key.count), key.utf8.count <= StreamRecord.maxKeyBytes else {
                throw Failure.invalid("PartitionKey must be 1 to 256 characters")
            }
            guard let data = try string(e, "Data"), let bytes = Base64.decode(data) else { throw Failure.invalid("Data must be base64") }
            guard bytes.count <= StreamRecord.maxDataBytes else { throw Failure.invalid("Data is at most 1 MiB") }
            // A decimal 128-bit integer that overrides the key's hash (Kinesis's rule).
            var hashKey: UInt128?
            if let text = try string(e, "ExplicitHashKey") {
                guard !text.isEmpty, text.utf8.allSatisfy({ (48...57).contains($0) }), let value = UInt128(text) else {
                    throw Failure.invalid("ExplicitHashKey must be a decimal integer from 0 to 2^128 - 1")
                }
                hashKey = value
            }
            records.append((key, hashKey, StreamRecord.encode(key: key, data: bytes)))
        }
        func entry(_ p: Int, _ sequence: UInt64) -> [(String, JSON)] {
            [("SequenceNumber", .string(Sequence.format(sequence))), ("ShardId", .string(KinesisAPI.shardID(p)))]
        }
        guard batch else {
            return streams.putRecord(d.name, key: records[0].key, hashKey: records[0].hashKey, record: records[0].record) { [self] result in
                switch result {
                case .success(let r):
                    respond(KinesisAPI.ok(.object(entry(r.partition, r.sequence) + [("EncryptionType", .string("NONE"))])))
                case .failure(let e): respond(failed(e))
                }
            }
        }
        streams.putRecords(d.name, records) { [self] result in
            switch result {
            case .success(let outcomes):
                let out: [JSON] = outcomes.map { o in
                    switch o.result {
                    case .success(let seq): return .object(entry(o.partition, seq))
                    case .failure(let f):
                        return .object([
                            ("ErrorCode", .string(f.retryable ? "ProvisionedThroughputExceededException" : "InternalFailure")),
                            ("ErrorMessage", .string(f.message))
                        ])
                    }
                }
                let failed = outcomes.filter { if case .failure = $0.result { true } else { false } }.count
                respond(
                    KinesisAPI.ok(
                        .object([
                            ("FailedRecordCount", .number(String(failed))), ("Records", .array(out)),
                            ("EncryptionType", .string("NONE"))
                        ])))
            case .failure(let e):
                respond(failed(e))
            }
        }
    }

    // MARK: iterators

    /// The iterator's fields; `from` is a position of the streams read API (`trim-horizon`,
    /// `at:SEQ`, `after:SEQ`, `time:MS`).
    struct Iterator: Equatable {
        var stream: String
        var incarnation: UInt64
        var partition: Int
        var from: String
        var issuedMs: UInt64

        var token: String {
            let text = "\(incarnation)|\(partition)|\(issuedMs)|\(from)|\(stream)"
            let sum = String(stableHash64(Array(("tandem-iterator|" + text).utf8)), radix: 16)
            return Base64.encode(Array((sum + "|" + text).utf8))
        }

        init(stream: String, incarnation: UInt64, partition: Int, from: String, issuedMs: UInt64) {
            self.stream = stream
            self.incarnation = incarnation
            self.partition = partition
            self.from = from
            self.issuedMs = issuedMs
        }

        init?(token: String) {
            guard let bytes = Base64.decode(token), let text = String(validating: bytes, as: UTF8.self) else { return nil }
            let parts = text.split(separator: "|", maxSplits: 5, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 6, let inc = UInt64(parts[1]), let p = Int(parts[2]), let issued = UInt64(parts[3]) else { return nil }
            self.init(stream: parts[5], incarnation: inc, partition: p, from: parts[4], issuedMs: issued)
            guard self.token == token else { return nil }
        }
    }

    private func getShardIterator(_ j: JSON, _ respond: @escaping Respond) throws {
        let d = try streamName(j, existing: true)
        guard let shard = try string(j, "ShardId") else { throw Failure.invalid("ShardId is required") }
        let p = try KinesisAPI.partition(ofShard: shard, d)
        func sequence() throws -> String {
            guard let s = try string(j, "StartingSequenceNumber"), Sequence.parse(s) != nil else {
                throw Failure.invalid("StartingSequenceNumber must be a sequence number this stream returned")
            }
            return s
        }
        let type = try string(j, "ShardIteratorType") ?? ""
        let from: String
        switch type {
        case "TRIM_HORIZON": from = "trim-horizon"
        case "AT_SEQUENCE_NUMBER": from = "at:" + (try sequence())
        case "AFTER_SEQUENCE_NUMBER": from = "after:" + (try sequence())
        case "AT_TIMESTAMP":
            guard case .number(let t)? = j["Timestamp"], let seconds = Double(t), seconds >= 0 else {
                throw Failure.invalid("AT_TIMESTAMP needs Timestamp (seconds since the epoch)")
            }
            from = "time:\(UInt64(seconds * 1000))"
        case "LATEST":
            // LATEST means after what is committed now: resolved at once, so records put between
            // this call and the first GetRecords are not skipped.
            streams.read(d.name, partition: p, try ReadQuery(from: .latest, limit: 1)) { [self] result in
                switch result {
                case .success(let r):
                    let it = Iterator(
                        stream: d.name, incarnation: d.incarnation, partition: p, from: r.next.text, issuedMs: Tables.wallMs())
                    respond(KinesisAPI.ok(.object([("ShardIterator", .string(it.token))])))
                case .failure(let e):
                    respond(failed(e))
                }
            }
            return
        default:
            throw Failure.invalid(
                "ShardIteratorType must be TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP")
        }
        let it = Iterator(stream: d.name, incarnation: d.incarnation, partition: p, from: from, issuedMs: Tables.wallMs())
        respond(KinesisAPI.ok(.object([("ShardIterator", .string(it.token))])))
    }

    private func getRecords(_ j: JSON, _ respond: @escaping Respond) throws {
        guard let token = try string(j, "ShardIterator"), let it = Iterator(token: token) else {
            throw Failure.invalid("Invalid ShardIterator")
        }
        let limit = try int(j, "Limit") ?? 10_000
        guard (1...10_000).contains(limit) else { throw Failure.invalid("Limit must be 1 to 10000") }
        guard Tables.wallMs() < it.issuedMs + KinesisAPI.iteratorLifetimeMs else {
            throw Failure(
                "ExpiredIteratorException",
                "Iterator expired. The iterator was created at time \(it.issuedMs) while right now it is \(Tables.wallMs()) which is further in the future than the tolerated delay of \(KinesisAPI.iteratorLifetimeMs) milliseconds."
            )
        }
        guard let d = streams.definitions[it.stream], d.incarnation == it.incarnation else {
            throw Failure("ResourceNotFoundException", "Stream \(it.stream) under account \(KinesisAPI.account) not found.")
        }
        // The position was written by this API (the token is checksummed): a bad one is an invalid argument.
        let from: ReadPosition
        do { from = try ReadPosition(parsing: it.from) } catch { throw KinesisAPI.failure(error) }
        streams.read(d.name, partition: it.partition, try ReadQuery(from: from, limit: limit)) { [self] result in
            switch result {
            case .success(let r):
                let out: [JSON] = r.records.map { rec in
                    .object([
                        ("SequenceNumber", .string(Sequence.format(rec.sequence))),
                        ("ApproximateArrivalTimestamp", .number(String(Double(rec.timestamp) / 1000))),
                        ("Data", .string(Base64.encode(rec.data))), ("PartitionKey", .string(rec.key))
                    ])
                }
                let next = Iterator(
                    stream: d.name, incarnation: d.incarnation, partition: it.partition, from: r.next.text, issuedMs: Tables.wallMs())
                respond(
                    KinesisAPI.ok(
                        .object([
                            ("Records", .array(out)), ("NextShardIterator", .string(next.token)),
                            ("MillisBehindLatest", .number(String(r.behindMs)))
                        ])))
            case .failure(let e):
                respond(failed(e))
            }
        }
    }
}
