import Foundation
import GlobalTable
import Storage
import TandemCore
@testable import TandemNode
import Testing
import Transport

/// DynamoDB Streams' 24-hour retention, on a node's real store and API in process (a day cannot
/// pass in a test; the trim step is given the time): records older than the retention are
/// trimmed; an iterator or sequence number below the trim point is TrimmedDataAccessException,
/// as DynamoDB documents; numbers go on after a trim; an iterator older than 15 minutes is
/// ExpiredIteratorException.
@Suite(.serialized) struct ChangeStreamTrimTests {
    final class Node {
        let loop = EventLoop()
        let dir: String
        let tables: Tables
        let streams: ChangeStreams
        let dynamo: DynamoAPI
        let api: DynamoStreamsAPI

        init() throws {
            dir = NSTemporaryDirectory() + "tandem-trim-\(UInt64.random(in: 0 ... .max))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            tables = try Tables(store: try LMDBStore(path: dir), loop: loop, peerID: "n1")
            streams = ChangeStreams(tables: tables, loop: loop)
            streams.selfName = "n1"
            dynamo = DynamoAPI(tables: tables)
            dynamo.changeStreams = streams
            api = DynamoStreamsAPI(streams: streams)
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }

        /// Runs the loop until `condition` holds (at most 5 s).
        func run(_ condition: () -> Bool) -> Bool {
            let tick = LoopTimer(loop: loop)
            tick.start(after: .milliseconds(5), repeating: .milliseconds(5)) {}
            defer { tick.stop() }
            let deadline = ContinuousClock.now + .seconds(5)
            while !condition() {
                if ContinuousClock.now > deadline { return false }
                loop.runOnce()
            }
            return true
        }

        func ddb(_ op: String, _ body: String) throws -> (status: Int, json: JSON) {
            var answer: HTTPResponse?
            dynamo.handle(op, Array(body.utf8)) { answer = $0 }
            #expect(run { answer != nil }, "\(op) was not answered")
            return (answer?.status ?? 0, (try? JSON.parse(answer?.body ?? [])) ?? .null)
        }

        func call(_ op: String, _ body: String) throws -> (status: Int, json: JSON) {
            var answer: HTTPResponse?
            api.handle(op, Array(body.utf8)) { answer = $0 }
            #expect(run { answer != nil }, "\(op) was not answered")
            return (answer?.status ?? 0, (try? JSON.parse(answer?.body ?? [])) ?? .null)
        }
    }

    static func errorType(_ r: (status: Int, json: JSON)) -> String? {
        r.json["__type"]?.stringValue.map { String($0.split(separator: "#").last ?? "") }
    }

    @Test func oldRecordsAreTrimmedAndWhatIsBelowTheTrimPointIsSaidToBe() throws {
        let n = try Node()
        let create = try n.ddb(
            "CreateTable",
            #"{"TableName":"calls","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST","StreamSpecification":{"StreamEnabled":true,"StreamViewType":"KEYS_ONLY"}}"#
        )
        #expect(create.status == 200, "\(create)")
        let arn = try #require(create.json["TableDescription"]?["LatestStreamArn"]?.stringValue)
        for i in 0..<5 { #expect(try n.ddb("PutItem", #"{"TableName":"calls","Item":{"pk":{"S":"c\#(i)"}}}"#).status == 200) }
        let shard = try #require(
            try n.call("DescribeStream", #"{"StreamArn":"\#(arn)"}"#).json["StreamDescription"]?["Shards"]?.arrayValue?.first?["ShardId"]?
                .stringValue)
        func iterator(_ kind: String, _ seq: String? = nil) throws -> (status: Int, json: JSON) {
            try n.call(
                "GetShardIterator",
                #"{"StreamArn":"\#(arn)","ShardId":"\#(shard)","ShardIteratorType":"\#(kind)""#
                    + (seq.map { #","SequenceNumber":"\#($0)""# } ?? "")
                    + "}")
        }
        func read(_ it: String) throws -> (status: Int, json: JSON) { try n.call("GetRecords", #"{"ShardIterator":"\#(it)"}"#) }
        let old = try #require(try iterator("TRIM_HORIZON").json["ShardIterator"]?.stringValue)
        let before = try read(old)
        let sequences = before.json["Records"]?.arrayValue?.compactMap { $0["dynamodb"]?["SequenceNumber"]?.stringValue } ?? []
        #expect(sequences.count == 5, "\(before)")

        // Nothing is a day old yet: a trim step now trims nothing.
        n.streams.trimStep(nowMs: Tables.wallMs())
        #expect(!n.run { n.streams.trimmed > 0 })
        #expect(try read(old).json["Records"]?.arrayValue?.count == 5)

        // A day and an hour later, every record is past the retention.
        n.streams.trimStep(nowMs: Tables.wallMs() + 25 * 3_600_000)
        #expect(n.run { n.streams.trimmed == 5 }, "trimmed \(n.streams.trimmed)")
        #expect(Self.errorType(try read(old)) == "TrimmedDataAccessException")
        #expect(Self.errorType(try iterator("AT_SEQUENCE_NUMBER", sequences[0])) == "TrimmedDataAccessException")
        #expect(Self.errorType(try iterator("AFTER_SEQUENCE_NUMBER", sequences[3])) == "TrimmedDataAccessException")
        let horizon = try #require(try iterator("TRIM_HORIZON").json["ShardIterator"]?.stringValue)
        #expect(try read(horizon).json["Records"]?.arrayValue?.isEmpty == true)

        // The stream goes on, numbered past everything trimmed.
        #expect(try n.ddb("PutItem", #"{"TableName":"calls","Item":{"pk":{"S":"later"}}}"#).status == 200)
        let after = try read(horizon)
        let later = try #require(after.json["Records"]?.arrayValue?.first?["dynamodb"]?["SequenceNumber"]?.stringValue)
        #expect(later > sequences.last!)
        #expect(try n.streams.lastSequence(n.tables.replicas["calls"]!.id) == ChangeRecord.parseSequence(later))

        // An iterator is good for 15 minutes.
        var stale = try #require(ShardIterator(text: horizon))
        stale.issuedMs -= 16 * 60_000
        #expect(Self.errorType(try read(stale.text)) == "ExpiredIteratorException")
    }
}
