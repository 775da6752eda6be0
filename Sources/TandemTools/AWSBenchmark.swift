import Foundation
import TandemCore
import TandemTestKit
import Transport

/// Figures for the AWS-compatible APIs on one node: raw keep-alive HTTP load (no SDK) against
/// PutItem, GetItem, UpdateItem ADD and PutRecords, each as req/s and p99; PutItem on a table
/// with a stream (DynamoDB Streams) beside the same without, and GetRecords read back.
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
        let streamed = try call(
            "DynamoDB_20120810.CreateTable",
            #"{"TableName":"bench-stream","KeySchema":[{"AttributeName":"id","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"id","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST","StreamSpecification":{"StreamEnabled":true,"StreamViewType":"NEW_AND_OLD_IMAGES"}}"#
        )
        guard streamed.status == 200 else { throw ToolError("CreateTable with a stream: \(streamed.status) \(streamed.text)") }
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
        /// The node's CPU per request too (µs): less at the mercy of other load on the machine than
        /// throughput, so two runs compare better by it.
        @discardableResult
        func measure(
            _ what: String, _ target: String, target goal: String? = nil, met: ((LoadGenerator.Result) -> Bool)? = nil,
            _ body: @escaping () -> String
        ) throws -> (result: LoadGenerator.Result, cpuMicros: Double) {
            let g = try LoadGenerator(target: api) { ("POST", "/", Array(body().utf8)) }
            g.headers = [("X-Amz-Target", target)]
            let cpu0 = cluster.cpuSeconds(0) ?? 0
            let r = g.run(connections: options.connections, duration: .seconds(Int64(options.seconds)))
            let cpu = ((cluster.cpuSeconds(0) ?? 0) - cpu0) * 1e6 / Double(max(r.requests, 1))
            print(
                "• \(what): "
                    + String(
                        format: "%.0f/s, p50 %.2f ms, p99 %.2f ms, errors %d (n=%d); node CPU %.1f µs per request",
                        r.perSecond, r.percentile(0.5), r.percentile(0.99), r.errors, r.requests, cpu))
            if let goal, let met { print("    target \(goal): \(verdict(met(r), errors: r.errors, samples: r.requests))") }
            print("")
            fflush(nil)
            return (r, cpu)
        }
        if options.parts.contains("items") {
            let plain = try measure(
                "PutItem, \(itemBytes)-byte items", "DynamoDB_20120810.PutItem", target: "≥ 15,000/s, p99 < 5 ms",
                met: { $0.perSecond >= 15_000 && $0.percentile(0.99) < 5 }
            ) {
                #"{"TableName":"bench","Item":{"id":{"S":"\#(key(Int.random(in: 0..<100_000, using: &rng)))"},"note":{"S":"\#(note)"}}}"#
            }
            // The same load on a table with a NEW_AND_OLD_IMAGES stream: each write also stores its
            // stream record (in the same commit) with both images.
            let withStream = try measure(
                "PutItem, \(itemBytes)-byte items, table with a NEW_AND_OLD_IMAGES stream", "DynamoDB_20120810.PutItem"
            ) {
                #"{"TableName":"bench-stream","Item":{"id":{"S":"\#(key(Int.random(in: 0..<100_000, using: &rng)))"},"note":{"S":"\#(note)"}}}"#
            }
            print(
                String(
                    format:
                        "    with a stream: %.0f%% of the throughput without (%.0f vs %.0f/s), p99 %.2f vs %.2f ms; node CPU %.1f vs %.1f µs per PutItem",
                    100 * withStream.result.perSecond / max(plain.result.perSecond, 1e-9), withStream.result.perSecond,
                    plain.result.perSecond,
                    withStream.result.percentile(0.99), plain.result.percentile(0.99), withStream.cpuMicros, plain.cpuMicros)
                    + (plain.result.errors + withStream.result.errors > 0 ? " — NOT A FIGURE: the runs had errors" : "") + "\n")
            try readStream(call)
            try measure("GetItem (hits and misses)", "DynamoDB_20120810.GetItem") {
                #"{"TableName":"bench","Key":{"id":{"S":"\#(key(Int.random(in: 0..<100_000, using: &rng)))"}}}"#
            }
            try measure("UpdateItem ADD (counter)", "DynamoDB_20120810.UpdateItem") {
                #"{"TableName":"bench","Key":{"id":{"S":"c\#(Int.random(in: 0..<1_000, using: &rng))"}},"UpdateExpression":"ADD n :one","ExpressionAttributeValues":{":one":{"N":"1"}}}"#
            }
        }
        if options.parts.contains("indexes") { try indexes(call) { _ = try measure($0, $1, target: $2, met: $3, $4) } }
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

    /// GetRecords throughput: one reader walks `bench-stream`'s shard from its trim horizon with
    /// Limit 1000 until it is read to its end or the time is up; every error is counted.
    func readStream(_ call: (String, String) throws -> HTTPClient.Response) throws {
        func json(_ r: HTTPClient.Response) throws -> JSON {
            guard r.status == 200 else { throw ToolError("\(r.status) \(r.text.prefix(300))") }
            return try JSON.parse(r.body)
        }
        let arn = try json(try call("DynamoDB_20120810.DescribeTable", #"{"TableName":"bench-stream"}"#))["Table"]?["LatestStreamArn"]?
            .stringValue
        guard let arn else { throw ToolError("bench-stream has no stream") }
        let d = try json(try call("DynamoDBStreams_20120810.DescribeStream", #"{"StreamArn":"\#(arn)"}"#))
        guard let shard = d["StreamDescription"]?["Shards"]?.arrayValue?.first?["ShardId"]?.stringValue else {
            throw ToolError("no shard: \(d)")
        }
        var iterator = try json(
            try call(
                "DynamoDBStreams_20120810.GetShardIterator",
                #"{"StreamArn":"\#(arn)","ShardId":"\#(shard)","ShardIteratorType":"TRIM_HORIZON"}"#))["ShardIterator"]?.stringValue
        var records = 0, calls = 0, errors = 0, bytes = 0
        var latencies: [Double] = []
        let start = Date()
        while let it = iterator, Date().timeIntervalSince(start) < Double(options.seconds) {
            let t0 = Date()
            guard let r = try? call("DynamoDBStreams_20120810.GetRecords", #"{"ShardIterator":"\#(it)","Limit":1000}"#), r.status == 200,
                let j = try? JSON.parse(r.body), let list = j["Records"]?.arrayValue
            else {
                errors += 1
                if errors > 10 { break }
                continue
            }
            latencies.append(Date().timeIntervalSince(t0) * 1000)
            calls += 1
            bytes += r.body.count
            records += list.count
            iterator = list.isEmpty ? nil : j["NextShardIterator"]?.stringValue
        }
        let seconds = max(Date().timeIntervalSince(start), 1e-9)
        latencies.sort()
        func p(_ q: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))] }
        print(
            "• GetRecords, Limit 1000, one reader from TRIM_HORIZON: "
                + String(
                    format: "%.0f records/s (%.1f MB/s), %.0f calls/s, p50 %.2f ms, p99 %.2f ms per call, errors %d (records %d, calls %d)",
                    Double(records) / seconds, Double(bytes) / seconds / 1e6, Double(calls) / seconds, p(0.5), p(0.99), errors, records,
                    calls) + (errors > 0 ? " — NOT A FIGURE: the run had errors" : "") + "\n")
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
