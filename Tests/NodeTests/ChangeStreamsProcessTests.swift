import Foundation
import TandemCore
import TandemTestKit
import Testing
import Transport

/// DynamoDB Streams on real processes: a write taken by one node is in the other node's stream
/// (as a global table's replica stream holds replicated writes); an acknowledged write's record
/// survives a `kill -9` (it was stored in the write's own commit) and numbers never go back; a
/// processor with a table source delivers each change once, from the node that took it, in
/// Lambda's DynamoDB event shape.
@Suite(.serialized) struct ChangeStreamsProcessTests {
    static func ddb(_ api: String, _ op: String, _ body: String) throws -> (status: Int, json: JSON) {
        try AWSProcessTests.ddb(api, op, body)
    }

    static func streams(_ api: String, _ op: String, _ body: String) throws -> (status: Int, json: JSON) {
        try AWSProcessTests.aws(api, "DynamoDBStreams_20120810.\(op)", body)
    }

    static func createTable(_ api: String, _ name: String, view: String) throws {
        let r = try ddb(
            api, "CreateTable",
            #"{"TableName":"\#(name)","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST","StreamSpecification":{"StreamEnabled":true,"StreamViewType":"\#(view)"}}"#
        )
        #expect(r.status == 200, "\(r)")
    }

    /// The table's stream ARN as `api`'s node describes it (nil until it has one).
    static func streamARN(_ api: String, _ table: String) -> String? {
        (try? ddb(api, "DescribeTable", #"{"TableName":"\#(table)"}"#))?.json["Table"]?["LatestStreamArn"]?.stringValue
    }

    /// Every record of the node's stream of `table`, from its trim horizon.
    static func records(_ api: String, _ table: String) throws -> [JSON] {
        guard let arn = streamARN(api, table) else { return [] }
        let d = try streams(api, "DescribeStream", #"{"StreamArn":"\#(arn)"}"#)
        guard case .array(let shards)? = d.json["StreamDescription"]?["Shards"], let shard = shards.first?["ShardId"]?.stringValue else {
            return []
        }
        let it = try streams(
            api, "GetShardIterator", #"{"StreamArn":"\#(arn)","ShardId":"\#(shard)","ShardIteratorType":"TRIM_HORIZON"}"#)
        var iterator = it.json["ShardIterator"]?.stringValue
        var out: [JSON] = []
        while let i = iterator {
            let r = try streams(api, "GetRecords", #"{"ShardIterator":"\#(i)","Limit":100}"#)
            guard r.status == 200, case .array(let list)? = r.json["Records"] else {
                Issue.record("GetRecords: \(r)")
                return out
            }
            out += list
            iterator = list.isEmpty ? nil : r.json["NextShardIterator"]?.stringValue
        }
        return out
    }

    static func keys(_ records: [JSON]) -> [String] { records.compactMap { $0["dynamodb"]?["Keys"]?["pk"]?["S"]?.stringValue } }

    @Test func aWriteOnOneNodeIsInTheOtherNodesStream() throws {
        let cluster = try LocalCluster(size: 2, profile: "fast")
        defer { for i in 0..<2 { cluster.kill9(i) } }
        try cluster.startAll()
        #expect(ProcessorsProcessTests.formed(cluster))
        let a = cluster.nodes[0].api, b = cluster.nodes[1].api
        try Self.createTable(a, "calls", view: "NEW_AND_OLD_IMAGES")
        #expect(eventually(timeout: .seconds(10)) { Self.streamARN(b, "calls") != nil }, "the stream setting never reached node B")
        #expect(Self.streamARN(a, "calls") == Self.streamARN(b, "calls"), "one stream, one ARN, on every node")
        #expect(try Self.ddb(b, "PutItem", #"{"TableName":"calls","Item":{"pk":{"S":"from-b"},"state":{"S":"ringing"}}}"#).status == 200)
        #expect(try Self.ddb(a, "PutItem", #"{"TableName":"calls","Item":{"pk":{"S":"from-a"},"state":{"S":"queued"}}}"#).status == 200)
        #expect(
            try Self.ddb(
                b, "UpdateItem",
                ##"{"TableName":"calls","Key":{"pk":{"S":"from-a"}},"UpdateExpression":"SET #s = :v","ExpressionAttributeNames":{"#s":"state"},"ExpressionAttributeValues":{":v":{"S":"answered"}}}"##
            ).status == 200)
        // Each node's stream has all three changes, its own and the other's.
        for api in [a, b] {
            var got: [JSON] = []
            let complete = eventually(timeout: .seconds(10)) {
                got = (try? Self.records(api, "calls")) ?? []
                return got.count >= 3
            }
            #expect(complete, "\(api): \(got)")
            #expect(got.count == 3, "\(api): \(got)")
            #expect(Set(Self.keys(got)) == ["from-a", "from-b"])
            let modify = got.first { $0["eventName"]?.stringValue == "MODIFY" }
            #expect(modify?["dynamodb"]?["OldImage"]?["state"]?["S"]?.stringValue == "queued", "\(api)")
            #expect(modify?["dynamodb"]?["NewImage"]?["state"]?["S"]?.stringValue == "answered", "\(api)")
            #expect(got.allSatisfy { $0["eventSource"]?.stringValue == "aws:dynamodb" })
        }
        // The regions say whose stream it is.
        #expect(try Self.records(a, "calls").allSatisfy { $0["awsRegion"]?.stringValue == cluster.regions[0] })
        // An iterator is the issuing node's: the other node refuses it rather than read its own records under it.
        let arn = try #require(Self.streamARN(a, "calls"))
        let shard = try #require(
            try Self.streams(a, "DescribeStream", #"{"StreamArn":"\#(arn)"}"#).json["StreamDescription"]?["Shards"]?.arrayValue?.first?[
                "ShardId"]?.stringValue)
        let it = try #require(
            try Self.streams(a, "GetShardIterator", #"{"StreamArn":"\#(arn)","ShardId":"\#(shard)","ShardIteratorType":"TRIM_HORIZON"}"#)
                .json["ShardIterator"]?.stringValue)
        let elsewhere = try Self.streams(b, "GetRecords", #"{"ShardIterator":"\#(it)"}"#)
        #expect(AWSProcessTests.errorType(elsewhere) == "ValidationException", "\(elsewhere)")
    }

    @Test func anAcknowledgedWritesRecordSurvivesKill9AndNumbersNeverGoBack() throws {
        let cluster = try LocalCluster(size: 1, profile: "fast")
        defer { cluster.kill9(0) }
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        try Self.createTable(api, "agents", view: "NEW_IMAGE")
        var acked: [String] = []
        for i in 0..<60 {
            let r = try Self.ddb(api, "PutItem", #"{"TableName":"agents","Item":{"pk":{"S":"a\#(i)"},"n":{"N":"\#(i)"}}}"#)
            if r.status == 200 { acked.append("a\(i)") }
        }
        #expect(acked.count == 60)
        // Killed right after the last acknowledgement: every acknowledged write's record is on disk.
        cluster.kill9(0)
        try cluster.start(0)
        #expect(
            eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil },
            "the node did not come back: \(cluster.log(0).suffix(2_000))")
        let before = try Self.records(api, "agents")
        #expect(Self.keys(before) == acked, "in the order written, each once")
        #expect(before.allSatisfy { $0["eventName"]?.stringValue == "INSERT" && $0["dynamodb"]?["NewImage"]?["n"] != nil })
        let sequences = before.compactMap { $0["dynamodb"]?["SequenceNumber"]?.stringValue }
        #expect(sequences == sequences.sorted() && Set(sequences).count == sequences.count)
        // After the restart the stream goes on: a new record numbered after every earlier one.
        #expect(try Self.ddb(api, "PutItem", #"{"TableName":"agents","Item":{"pk":{"S":"later"}}}"#).status == 200)
        let after = try Self.records(api, "agents")
        #expect(Self.keys(after) == acked + ["later"])
        let last = after.last?["dynamodb"]?["SequenceNumber"]?.stringValue ?? ""
        #expect(last > (sequences.last ?? ""), "a number issued before the kill was issued again: \(last)")
    }

    @Test func aTableProcessorDeliversEachChangeOnceFromTheNodeThatTookIt() throws {
        let cluster = try LocalCluster(size: 2, profile: "fast")
        defer { for i in 0..<2 { cluster.kill9(i) } }
        try cluster.startAll()
        #expect(ProcessorsProcessTests.formed(cluster))
        let fn = try ProcessorsProcessTests.Function(root: cluster.root)
        defer { fn.stop() }
        let a = cluster.nodes[0].api, b = cluster.nodes[1].api
        // A table without a stream is no source; neither is a name that is no table.
        #expect(
            try Self.ddb(
                a, "CreateTable",
                #"{"TableName":"plain","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}"#
            ).status == 200)
        let target = #""target":{"function":{"url":"\#(fn.url)","timeoutMs":5000}}"#
        for source in [#"{"table":"plain"}"#, #"{"table":"nope"}"#, #"{"table":"plain","startingPosition":"at-timestamp","timestampMs":1}"#]
        {
            let r = ProcessorsProcessTests.call("PUT", a, "/v1/processors/bad", #"{"source":\#(source),\#(target)}"#)
            #expect(r?.status == 400 && r?.text.contains("source.") == true, "\(source): \(r?.text ?? "no answer")")
        }
        try Self.createTable(a, "queue", view: "NEW_AND_OLD_IMAGES")
        #expect(eventually(timeout: .seconds(10)) { Self.streamARN(b, "queue") != nil })
        let created = ProcessorsProcessTests.call(
            "PUT", a, "/v1/processors/on-queue",
            #"{"source":{"table":"queue","startingPosition":"trim-horizon"},"batchSize":5,"maxRetryAttempts":1,\#(target)}"#)
        #expect(created?.status == 201, "\(created?.text ?? "no answer")")
        // Writes on both nodes, and one whose handler fails it once (a partial batch response).
        var written: [String] = []
        for i in 0..<12 {
            let api = i % 2 == 0 ? a : b
            let fail = i == 5 ? #","fail":{"BOOL":true}"# : ""
            let r = try Self.ddb(api, "PutItem", #"{"TableName":"queue","Item":{"pk":{"S":"c\#(i)"},"i":{"N":"\#(i)"}\#(fail)}}"#)
            if r.status == 200 { written.append("c\(i)") }
        }
        #expect(written.count == 12)
        func deliveredKeys() -> [String: Set<String>] {
            var byKey: [String: Set<String>] = [:]
            for d in fn.deliveries {
                guard let rec = try? JSON.parse(Array(d.data.utf8)), let k = rec["dynamodb"]?["Keys"]?["pk"]?["S"]?.stringValue else {
                    continue
                }
                byKey[k, default: []].insert(d.id)
            }
            return byKey
        }
        let all = eventually(timeout: .seconds(20)) { Set(deliveredKeys().keys).isSuperset(of: written) }
        #expect(all, "delivered: \(deliveredKeys().keys.sorted())")
        // Once, from one node: every delivery of a change has the one eventID of the stream it came from.
        #expect(!eventually(timeout: .seconds(1)) { deliveredKeys().values.contains { $0.count > 1 } }, "\(deliveredKeys())")
        // Lambda's DynamoDB event shape.
        let sample = try #require(fn.deliveries.first.flatMap { try? JSON.parse(Array($0.data.utf8)) })
        #expect(sample["eventSource"]?.stringValue == "aws:dynamodb")
        #expect(sample["eventName"]?.stringValue == "INSERT")
        #expect(sample["eventSourceARN"]?.stringValue == Self.streamARN(a, "queue"))
        #expect(sample["dynamodb"]?["NewImage"]?["pk"] != nil && sample["dynamodb"]?["StreamViewType"]?.stringValue == "NEW_AND_OLD_IMAGES")
        // The failed record came again, then went to the dead-letter stream, and the node's
        // consumer moved on past it (nothing after it was skipped: every key was delivered).
        #expect(fn.deliveries.contains { $0.data.contains("\"c5\"") && $0.attempt != "1" }, "the failed record was not retried")
        #expect(
            eventually(timeout: .seconds(10)) {
                ProcessorsProcessTests.records(a, "_dlq.on-queue").count + ProcessorsProcessTests.records(b, "_dlq.on-queue").count >= 1
            }, "the failed record was not dead-lettered")
        // describe names the nodes that consumed, with their checkpoints.
        let described = eventually(timeout: .seconds(10)) {
            guard let r = ProcessorsProcessTests.call("GET", a, "/v1/processors/on-queue"), let j = try? JSON.parse(r.body),
                case .array(let parts)? = j["partitions"]
            else { return false }
            return Set(parts.compactMap { $0["owner"]?.stringValue }) == Set(cluster.nodes.map(\.name))
                && parts.allSatisfy { $0["checkpoint"]?.stringValue?.utf8.count == 21 }
        }
        #expect(described, "\(ProcessorsProcessTests.call("GET", a, "/v1/processors/on-queue")?.text ?? "")")
    }
}
