import TandemCore

/// What a function's answer to one batch means for the partition's checkpoint.
public enum BatchOutcome: Equatable, Sendable {
    /// Every record was processed: the checkpoint moves past the batch.
    case success
    /// The function reported failed records: the checkpoint moves to just before the lowest of
    /// them, and the batch is retried from there.
    case partialFailure(lowestFailed: UInt64)
    /// The whole batch failed; the text says why (for logs and dead letters).
    case failure(String)
}

/// Lambda's wire formats for a Kinesis event source mapping: the event a function receives and
/// the partial batch response it may answer with.
public enum LambdaEvent {
    /// Lambda's synchronous invocation payload limit (6 MB), request and response alike. An
    /// answer above it is not examined.
    public static let maxResponseBytes = 6 * 1024 * 1024

    /// `shardId-` and the partition, 12 digits (`shardId-000000000006`).
    public static func shardID(_ partition: Int) -> String {
        let digits = String(partition)
        return "shardId-" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    /// Milliseconds since the epoch as Lambda's `approximateArrivalTimestamp`: seconds, with three
    /// decimals (1545084650987 → `1545084650.987`).
    public static func arrivalSeconds(_ ms: UInt64) -> String {
        let frac = String(ms % 1000)
        return String(ms / 1000) + "." + String(repeating: "0", count: 3 - frac.count) + frac
    }

    public static func streamARN(stream: String, region: String, accountID: String) -> String {
        "arn:aws:kinesis:\(region):\(accountID):stream/\(stream)"
    }

    /// A batch as the event Lambda sends for a Kinesis source (field names, order and types as
    /// in Lambda's sample event): `{"Records":[{"kinesis":{…},"eventSource":"aws:kinesis",…}]}`.
    /// Sequence numbers are `SequenceText` (20 digits); `eventID` is `shardId-…:<sequence>`.
    /// `invokeIdentityArn` names a role `tandem-processor` in the account (Tandem has no roles).
    public static func kinesisEvent(
        _ records: [ProcessorRecord], stream: String, partition: Int, region: String, accountID: String = "000000000000"
    ) -> [UInt8] {
        let shard = shardID(partition)
        let arn = JSON.string(streamARN(stream: stream, region: region, accountID: accountID))
        let identity = JSON.string("arn:aws:iam::\(accountID):role/tandem-processor")
        let regionValue = JSON.string(region)
        let items: [JSON] = records.map { r in
            let sequence = SequenceText.format(r.sequence)
            return .object([
                (
                    "kinesis",
                    .object([
                        ("kinesisSchemaVersion", "1.0"),
                        ("partitionKey", .string(r.key)),
                        ("sequenceNumber", .string(sequence)),
                        ("data", .string(Base64.encode(r.data))),
                        ("approximateArrivalTimestamp", .number(arrivalSeconds(r.timestamp)))
                    ])
                ),
                ("eventSource", "aws:kinesis"),
                ("eventVersion", "1.0"),
                ("eventID", .string(shard + ":" + sequence)),
                ("eventName", "aws:kinesis:record"),
                ("invokeIdentityArn", identity),
                ("awsRegion", regionValue),
                ("eventSourceARN", arn)
            ])
        }
        return Array(JSON.object([("Records", .array(items))]).serialized.utf8)
    }

    /// What a function's answer means, with Lambda's rules for a Kinesis source with
    /// `ReportBatchItemFailures` on:
    /// - an `X-Amz-Function-Error` header (the handler raised, or its runtime failed) fails the
    ///   batch whatever the status; so does a status outside 2xx;
    /// - a body above 6 MB fails the batch, unread (Lambda refuses such a response);
    /// - a complete success is an empty body, `null`, `{}`, an object without `batchItemFailures`,
    ///   `"batchItemFailures": null` or `[]` — and the empty JSON string `""` and empty array `[]`,
    ///   which AWS-validated tests (LocalStack's snapshots of real Lambda) show succeeding;
    /// - a body that is not JSON fails the batch (Lambda's documented "invalid JSON response"
    ///   failure for partial batch responses, and issue 16's "non-JSON fails the whole batch");
    ///   so does any other non-object JSON (a non-empty string, a number, a boolean, a non-empty
    ///   array): Lambda reads the answer as a `StreamsEventResponse` object, and the only
    ///   non-object values it documents or is seen to accept are the empty/null ones above;
    /// - `batchItemFailures` that is not an array, an entry that is not an object, an
    ///   `itemIdentifier` that is missing (a wrongly named key), null, not a string, empty, or not
    ///   one of the batch's sequence numbers as sent (20 digits) fails the whole batch;
    /// - otherwise the lowest failed sequence number is the new checkpoint.
    /// `format`: how the batch's sequence numbers were written in the event (a DynamoDB stream's
    /// are 21 digits).
    public static func outcome(
        status: Int, functionError: String?, body: [UInt8], batch: [UInt64], format: (UInt64) -> String = SequenceText.format
    ) -> BatchOutcome {
        if let functionError {
            return .failure("function error (\(functionError))" + errorDetail(body))
        }
        guard (200..<300).contains(status) else {
            return .failure("function answered HTTP \(status)" + errorDetail(body))
        }
        guard body.count <= maxResponseBytes else {
            return .failure("response of \(body.count) bytes exceeds the \(maxResponseBytes)-byte payload limit")
        }
        guard body.contains(where: { !isSpace($0) }) else { return .success }
        let json: JSON
        do {
            json = try JSON.parse(body)
        } catch {
            return .failure("response is not JSON: \(error.message)")
        }
        let members: [(String, JSON)]
        switch json {
        case .null: return .success
        case .string(let s) where s.isEmpty: return .success
        case .array(let items) where items.isEmpty: return .success
        case .object(let m): members = m
        case .string: return .failure("response is a JSON string, not a partial batch response object")
        case .number: return .failure("response is a JSON number, not a partial batch response object")
        case .bool: return .failure("response is a JSON boolean, not a partial batch response object")
        case .array: return .failure("response is a JSON array, not a partial batch response object")
        }
        let failures: [JSON]
        switch members.first(where: { $0.0 == "batchItemFailures" })?.1 {
        case nil, .null?: return .success
        case .array(let items)?: failures = items
        default: return .failure("batchItemFailures is not an array")
        }
        if failures.isEmpty { return .success }
        var sent: [String: UInt64] = [:]
        sent.reserveCapacity(batch.count)
        for s in batch { sent[format(s)] = s }
        var lowest = UInt64.max
        for (i, item) in failures.enumerated() {
            guard case .object(let fields) = item else {
                return .failure("batchItemFailures[\(i)] is not an object")
            }
            switch fields.first(where: { $0.0 == "itemIdentifier" })?.1 {
            case nil:
                return .failure("batchItemFailures[\(i)] has no itemIdentifier")
            case .null?:
                return .failure("batchItemFailures[\(i)].itemIdentifier is null")
            case .string(let id)?:
                guard !id.isEmpty else { return .failure("batchItemFailures[\(i)].itemIdentifier is empty") }
                guard let s = sent[id] else {
                    return .failure("batchItemFailures[\(i)].itemIdentifier \(clip(id)) is not a sequence number of the batch")
                }
                lowest = min(lowest, s)
            default:
                return .failure("batchItemFailures[\(i)].itemIdentifier is not a string")
            }
        }
        return .partialFailure(lowestFailed: lowest)
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    static func clip(_ s: String, _ limit: Int = 64) -> String {
        let q = JSON.string(s).serialized
        return q.count <= limit ? q : String(q.prefix(limit)) + "…"
    }

    /// `: <errorType>: <errorMessage>` from a Lambda error body, when it is one (bounded).
    static func errorDetail(_ body: [UInt8]) -> String {
        guard !body.isEmpty, body.count <= 64 * 1024, let json = try? JSON.parse(body) else { return "" }
        let type = json["errorType"]?.stringValue
        let message = json["errorMessage"]?.stringValue
        let text = [type, message].compactMap { $0 }.joined(separator: ": ")
        guard !text.isEmpty else { return "" }
        return ": " + (text.count <= 256 ? text : String(text.prefix(256)) + "…")
    }
}
