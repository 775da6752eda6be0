import Foundation
import TandemCore
import TandemTestKit
import Transport

/// Figures for the AWS-compatible APIs on one node: raw keep-alive HTTP load (no SDK) against
/// PutItem, GetItem, UpdateItem ADD and PutRecords, each as req/s and p99.
public struct AWSBenchmark {
    public struct Options: Sendable {
        public var seconds = 10
        public var connections = 50
        /// Which parts run: items (PutItem, GetItem, UpdateItem), indexes (PutItem with 2 GSIs
        /// against none), records (PutRecords).
        public var parts: Set<String> = ["items", "indexes", "records"]

        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    public func run() throws {
        print("AWS-compatible APIs benchmark — one node on 127.0.0.1, load generator on the same cores\n")
        let cluster = try LocalCluster(size: 1, profile: "fast")
        try cluster.startAll()
        let api = cluster.nodes[0].api
        guard eventually(timeout: .seconds(20), { cluster.view(from: 0) != nil }) else { throw ToolError("node did not start") }
        func call(_ target: String, _ body: String) throws -> HTTPClient.Response {
            try HTTPClient.request("POST", api, "/", body: Array(body.utf8), headers: [("X-Amz-Target", target)])
        }
        let table = try call(
            "DynamoDB_20120810.CreateTable",
            #"{"TableName":"bench","KeySchema":[{"AttributeName":"id","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"id","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}"#
        )
        guard table.status == 200 else { throw ToolError("CreateTable: \(table.status) \(table.text)") }
        let stream = try call("Kinesis_20131202.CreateStream", #"{"StreamName":"bench","ShardCount":4}"#)
        guard stream.status == 200 else { throw ToolError("CreateStream: \(stream.status) \(stream.text)") }
        guard
            eventually(
                timeout: .seconds(20),
                {
                    (try? call("Kinesis_20131202.DescribeStreamSummary", #"{"StreamName":"bench"}"#).text.contains("\"ACTIVE\"")) == true
                })
        else { throw ToolError("stream did not become active") }

        var rng = SystemRandomNumberGenerator()
        // An item's size as DynamoDB counts it (attribute names plus values): "id" + "k00042"
        // (keys are zero-padded to 6 characters) + "note" + the note = 256 bytes.
        let itemBytes = 256
        let note = String(repeating: "x", count: itemBytes - "id".count - "k00000".count - "note".count)
        func key(_ n: Int) -> String { "k" + String(repeating: "0", count: max(0, 5 - String(n).count)) + String(n) }
        func measure(
            _ what: String, _ target: String, target goal: String? = nil, met: ((LoadGenerator.Result) -> Bool)? = nil,
            _ body: @escaping () -> String
        ) throws {
            let g = try LoadGenerator(target: api) { ("POST", "/", Array(body().utf8)) }
            g.headers = [("X-Amz-Target", target)]
            let r = g.run(connections: options.connections, duration: .seconds(Int64(options.seconds)))
            print(
                "• \(what): "
                    + String(
                        format: "%.0f/s, p50 %.2f ms, p99 %.2f ms, errors %d (n=%d)",
                        r.perSecond, r.percentile(0.5), r.percentile(0.99), r.errors, r.requests))
            if let goal, let met { print("    target \(goal): \(verdict(met(r), errors: r.errors, samples: r.requests))") }
            print("")
            fflush(nil)
        }
        if options.parts.contains("items") {
            try measure(
                "PutItem, \(itemBytes)-byte items", "DynamoDB_20120810.PutItem", target: "≥ 15,000/s, p99 < 5 ms",
                met: { $0.perSecond >= 15_000 && $0.percentile(0.99) < 5 }
            ) {
                #"{"TableName":"bench","Item":{"id":{"S":"\#(key(Int.random(in: 0..<100_000, using: &rng)))"},"note":{"S":"\#(note)"}}}"#
            }
            try measure("GetItem (hits and misses)", "DynamoDB_20120810.GetItem") {
                #"{"TableName":"bench","Key":{"id":{"S":"\#(key(Int.random(in: 0..<100_000, using: &rng)))"}}}"#
            }
            try measure("UpdateItem ADD (counter)", "DynamoDB_20120810.UpdateItem") {
                #"{"TableName":"bench","Key":{"id":{"S":"c\#(Int.random(in: 0..<1_000, using: &rng))"}},"UpdateExpression":"ADD n :one","ExpressionAttributeValues":{":one":{"N":"1"}}}"#
            }
        }
        if options.parts.contains("indexes") { try indexes(call, measure) }
        guard options.parts.contains("records") else { return }
        // Records a 200 answer reports failed were not written: counted per record, not per request.
        let data = Base64.encode([UInt8](repeating: UInt8(ascii: "x"), count: 200))
        let records = (0..<100).map { #"{"PartitionKey":"k\#($0)","Data":"\#(data)"}"# }.joined(separator: ",")
        let b = BatchLoad(
            target: api, path: "/", headers: [("X-Amz-Target", "Kinesis_20131202.PutRecords")],
            body: Array(#"{"StreamName":"bench","Records":[\#(records)]}"#.utf8), recordsPerBatch: 100,
            failedKey: "FailedRecordCount"
        ).run(connections: options.connections, seconds: options.seconds)
        print(
            "• PutRecords, 100 records of 200 bytes per request: "
                + String(
                    format: "%.0f/s, p50 %.2f ms, p99 %.2f ms, errors %d (n=%d); %.0f records/s written, %d records reported failed\n",
                    Double(b.batches) / max(b.seconds, 1e-9), b.percentile(0.5), b.percentile(0.99), b.errors, b.batches,
                    b.recordsPerSecond, b.failedRecords))
        fflush(nil)
    }

    /// PutItem of the same items (an agent's status, queue and a timestamp: 256 bytes) to a
    /// table without indexes and to one with two GSIs (status + timestamp, projecting ALL; queue,
    /// KEYS_ONLY): the write amplification of index maintenance. Each in its own phase, twice,
    /// alternating, so a machine that gets busier part way shows in both.
    func indexes(
        _ call: (String, String) throws -> HTTPClient.Response,
        _ measure: (String, String, String?, ((LoadGenerator.Result) -> Bool)?, @escaping () -> String) throws -> Void
    ) throws {
        let defs =
            #"[{"AttributeName":"id","AttributeType":"S"},{"AttributeName":"status","AttributeType":"S"},{"AttributeName":"ts","AttributeType":"N"},{"AttributeName":"queue","AttributeType":"S"}]"#
        let gsis =
            #"[{"IndexName":"by-status","KeySchema":[{"AttributeName":"status","KeyType":"HASH"},{"AttributeName":"ts","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}},{"IndexName":"by-queue","KeySchema":[{"AttributeName":"queue","KeyType":"HASH"}],"Projection":{"ProjectionType":"KEYS_ONLY"}}]"#
        for (name, indexes) in [("plain", false), ("indexed", true)] {
            let r = try call(
                "DynamoDB_20120810.CreateTable",
                #"{"TableName":"\#(name)","KeySchema":[{"AttributeName":"id","KeyType":"HASH"}],"AttributeDefinitions":\#(indexes ? defs : #"[{"AttributeName":"id","AttributeType":"S"}]"#),"BillingMode":"PAY_PER_REQUEST"\#(indexes ? #","GlobalSecondaryIndexes":"# + gsis : "")}"#
            )
            guard r.status == 200 else { throw ToolError("CreateTable \(name): \(r.status) \(r.text)") }
        }
        var rng = SystemRandomNumberGenerator()
        // "id" + 6 + "status" + 9 + "queue" + 3 + "ts" + 13 digits (~8 bytes) + "note" + note = 256.
        let note = String(repeating: "x", count: 256 - 2 - 6 - 6 - 9 - 5 - 3 - 2 - 8 - 4)
        let statuses = ["available", "busy-call", "away-xxxx"]
        func item(_ table: String) -> String {
            let n = Int.random(in: 0..<100_000, using: &rng)
            let id = "k" + String(repeating: "0", count: max(0, 5 - String(n).count)) + String(n)
            return
                #"{"TableName":"\#(table)","Item":{"id":{"S":"\#(id)"},"status":{"S":"\#(statuses[n % 3])"},"queue":{"S":"q\#(n % 20 + 10)"},"ts":{"N":"\#(Int.random(in: 10_000_000..<99_999_999, using: &rng))"},"note":{"S":"\#(note)"}}}"#
        }
        for round in 1...2 {
            try measure("PutItem, no indexes (round \(round))", "DynamoDB_20120810.PutItem", nil, nil) { item("plain") }
            try measure("PutItem, 2 GSIs (round \(round))", "DynamoDB_20120810.PutItem", nil, nil) { item("indexed") }
        }
    }
}
