import TandemCore
import Testing

@testable import Processing

/// Lambda's Kinesis event (its documented sample event) and its partial batch response rules
/// (services-kinesis-batchfailurereporting; the Invoke API's X-Amz-Function-Error).
@Suite struct LambdaEventTests {
    static let batch: [UInt64] = [5, 6, 7, 8]

    static func outcome(_ body: String, status: Int = 200, error: String? = nil, batch: [UInt64] = batch) -> BatchOutcome {
        LambdaEvent.outcome(status: status, functionError: error, body: Array(body.utf8), batch: batch)
    }

    static func failed(_ o: BatchOutcome) -> Bool {
        if case .failure = o { return true }
        return false
    }

    // MARK: The event

    @Test func eventMatchesLambdasSampleFieldForField() throws {
        let records = [
            ProcessorRecord(sequence: 42, key: "1", data: Array("Hello, this is a test.".utf8), timestamp: 1_545_084_650_987),
            ProcessorRecord(sequence: 43, key: "2", data: [], timestamp: 1_607_497_475_000)
        ]
        let bytes = LambdaEvent.kinesisEvent(records, stream: "lambda-stream", partition: 6, region: "us-east-2", accountID: "123456789012")
        let text = String(decoding: bytes, as: UTF8.self)
        // Field order and literal forms as in the documentation's sample event.
        #expect(
            text.hasPrefix(
                #"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"00000000000000000042","#
                    + #""data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","approximateArrivalTimestamp":1545084650.987},"#
                    + #""eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:00000000000000000042","#
                    + #""eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/tandem-processor","#
                    + #""awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}"#))

        let json = try JSON.parse(bytes)
        let items = try #require(json["Records"]?.arrayValue)
        #expect(items.count == 2)
        let second = items[1]
        let kinesis = try #require(second["kinesis"])
        #expect(kinesis["partitionKey"] == .string("2"))
        #expect(kinesis["data"] == .string(""))
        // Seconds with three decimals, a JSON number (the sample's 1607497475.000).
        #expect(kinesis["approximateArrivalTimestamp"] == .number("1607497475.000"))
        #expect(second["eventID"] == .string("shardId-000000000006:00000000000000000043"))
        #expect(Base64.decode(try #require(items[0]["kinesis"]?["data"]?.stringValue)) == Array("Hello, this is a test.".utf8))
    }

    @Test func eventDefaultsAndEscaping() throws {
        let r = ProcessorRecord(sequence: 1, key: "a\"b\\c\n", data: [0, 255, 1], timestamp: 5)
        let json = try JSON.parse(LambdaEvent.kinesisEvent([r], stream: "agent-events", partition: 123, region: "eu-west-1"))
        let item = try #require(json["Records"]?.arrayValue?.first)
        #expect(item["kinesis"]?["partitionKey"] == .string("a\"b\\c\n"))
        #expect(item["kinesis"]?["approximateArrivalTimestamp"] == .number("0.005"))
        #expect(Base64.decode(try #require(item["kinesis"]?["data"]?.stringValue)) == [0, 255, 1])
        #expect(item["eventID"] == .string("shardId-000000000123:00000000000000000001"))
        #expect(item["eventSourceARN"] == .string("arn:aws:kinesis:eu-west-1:000000000000:stream/agent-events"))
        #expect(try JSON.parse(LambdaEvent.kinesisEvent([], stream: "s", partition: 0, region: "r")) == .object([("Records", .array([]))]))
    }

    @Test func shardIDsAndArrivalTimes() {
        #expect(LambdaEvent.shardID(0) == "shardId-000000000000")
        #expect(LambdaEvent.shardID(6) == "shardId-000000000006")
        #expect(LambdaEvent.shardID(999_999_999_999) == "shardId-999999999999")
        #expect(LambdaEvent.arrivalSeconds(0) == "0.000")
        #expect(LambdaEvent.arrivalSeconds(1_545_084_650_987) == "1545084650.987")
        #expect(LambdaEvent.arrivalSeconds(1_545_084_650_050) == "1545084650.050")
    }

    // MARK: Complete successes ("Success and failure conditions")

    @Test func documentedSuccesses() {
        #expect(Self.outcome("") == .success)  // a null EventResponse: no body at all
        #expect(Self.outcome(" \n") == .success)
        #expect(Self.outcome("null") == .success)  // a null EventResponse
        #expect(Self.outcome("{}") == .success)  // an empty EventResponse
        #expect(Self.outcome(#"{"batchItemFailures":null}"#) == .success)  // a null list
        #expect(Self.outcome(#"{"batchItemFailures":[]}"#) == .success)  // an empty list
        // A tumbling-window answer with state and no failures.
        #expect(Self.outcome(#"{"state":{"1":282},"batchItemFailures":[]}"#) == .success)
        #expect(Self.outcome(#"{"state":{"1":282}}"#) == .success)
        // The empty JSON string and empty array (AWS-validated success cases).
        #expect(Self.outcome(#""""#) == .success)
        #expect(Self.outcome("[]") == .success)
        #expect(Self.outcome("{}", status: 204) == .success)
    }

    // MARK: Partial failures

    @Test func lowestFailedSequenceBecomesTheCheckpoint() {
        let body = #"{"batchItemFailures":[{"itemIdentifier":"00000000000000000007"},{"itemIdentifier":"00000000000000000006"}]}"#
        #expect(Self.outcome(body) == .partialFailure(lowestFailed: 6))
        let one = #"{"batchItemFailures":[{"itemIdentifier":"00000000000000000008"}]}"#
        #expect(Self.outcome(one) == .partialFailure(lowestFailed: 8))
        let first = #"{"batchItemFailures":[{"itemIdentifier":"00000000000000000005"},{"itemIdentifier":"00000000000000000005"}]}"#
        #expect(Self.outcome(first) == .partialFailure(lowestFailed: 5))
    }

    // MARK: Complete failures

    @Test func malformedItemIdentifiersFailTheWholeBatch() {
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{"itemIdentifier":""}]}"#)))  // empty string
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{"itemIdentifier":null}]}"#)))  // null
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{"foo":"00000000000000000006"}]}"#)))  // bad key name
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{"ItemIdentifier":"00000000000000000006"}]}"#)))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{}]}"#)))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{"itemIdentifier":123}]}"#)))  // not a string
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{"itemIdentifier":6}]}"#)))
        // Not one of the batch's sequence numbers (as sent: 20 digits).
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{"itemIdentifier":"00000000000000000009"}]}"#)))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[{"itemIdentifier":"6"}]}"#)))
        // One bad entry among good ones fails the batch.
        let mixed = #"{"batchItemFailures":[{"itemIdentifier":"00000000000000000006"},{"itemIdentifier":""}]}"#
        #expect(Self.failed(Self.outcome(mixed)))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":["00000000000000000006"]}"#)))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":{"itemIdentifier":"00000000000000000006"}}"#)))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":"00000000000000000006"}"#)))
    }

    @Test func nonJSONAndNonObjectAnswersFail() {
        #expect(Self.failed(Self.outcome("OK")))
        #expect(Self.failed(Self.outcome("<html>")))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":["#)))
        #expect(Self.failed(Self.outcome(#""Successfully processed 4 records.""#)))
        #expect(Self.failed(Self.outcome("42")))
        #expect(Self.failed(Self.outcome("true")))
        #expect(Self.failed(Self.outcome(#"[{"itemIdentifier":"00000000000000000006"}]"#)))
    }

    @Test func functionErrorsAndStatusFailWhateverTheBody() {
        // The Invoke API answers 200 with X-Amz-Function-Error when the handler raised.
        let unhandled = Self.outcome(#"{"errorMessage":"boom","errorType":"ValueError"}"#, error: "Unhandled")
        #expect(unhandled == .failure("function error (Unhandled): ValueError: boom"))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[]}"#, error: "Handled")))
        #expect(Self.failed(Self.outcome("", error: "Unhandled")))
        #expect(Self.failed(Self.outcome(#"{"batchItemFailures":[]}"#, status: 500)))
        #expect(Self.failed(Self.outcome("", status: 429)))
        #expect(Self.failed(Self.outcome("{}", status: 302)))
        #expect(Self.failed(Self.outcome("", status: 199)))
        #expect(Self.outcome("boom", status: 502) == .failure("function answered HTTP 502"))
    }

    @Test func oversizedAnswersAreNotExamined() {
        var body = Array(#"{"pad":""#.utf8)
        body += [UInt8](repeating: UInt8(ascii: "x"), count: LambdaEvent.maxResponseBytes)
        body += Array(#""}"#.utf8)
        let o = LambdaEvent.outcome(status: 200, functionError: nil, body: body, batch: Self.batch)
        #expect(Self.failed(o))
        if case .failure(let why) = o { #expect(why.contains("payload limit")) }
    }

    @Test func failureMessagesSayWhatWasWrong() {
        let o = Self.outcome(#"{"batchItemFailures":[{"itemIdentifier":"00000000000000000006"},{"itemIdentifier":"99"}]}"#)
        #expect(o == .failure(#"batchItemFailures[1].itemIdentifier "99" is not a sequence number of the batch"#))
    }
}
