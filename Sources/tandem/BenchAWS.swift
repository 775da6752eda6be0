import ArgumentParser
import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Transport

/// Figures for the AWS-compatible APIs on one node: raw keep-alive HTTP load (no SDK) against
/// PutItem, GetItem, UpdateItem ADD and PutRecords, each as req/s and p99.
struct AWSBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "aws")

    @Option(help: "Seconds per operation.") var seconds = 10
    @Option(help: "Keep-alive client connections.") var connections = 50

    func run() throws {
        print("AWS-compatible APIs benchmark — one node on 127.0.0.1, load generator on the same cores\n")
        let cluster = try LocalCluster(size: 1, profile: "fast")
        try cluster.startAll()
        let api = cluster.nodes[0].api
        guard eventually(timeout: .seconds(20), { cluster.view(from: 0) != nil }) else { throw ValidationError("node did not start") }
        func call(_ target: String, _ body: String) throws -> HTTPClient.Response {
            try HTTPClient.request("POST", api, "/", body: Array(body.utf8), headers: [("X-Amz-Target", target)])
        }
        _ = try call("DynamoDB_20120810.CreateTable", #"{"TableName":"bench","KeySchema":[{"AttributeName":"id","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"id","AttributeType":"S"}]}"#)
        _ = try call("Kinesis_20131202.CreateStream", #"{"StreamName":"bench","ShardCount":4}"#)
        guard eventually(timeout: .seconds(20), {
            (try? call("Kinesis_20131202.DescribeStreamSummary", #"{"StreamName":"bench"}"#).text.contains("\"ACTIVE\"")) == true
        }) else { throw ValidationError("stream did not become active") }

        var rng = SystemRandomNumberGenerator()
        let note = String(repeating: "x", count: 200)
        func measure(_ what: String, _ target: String, target goal: String? = nil, met: ((LoadGenerator.Result) -> Bool)? = nil,
                     _ body: @escaping () -> String) throws {
            let g = try LoadGenerator(target: api) { ("POST", "/", Array(body().utf8)) }
            g.headers = [("X-Amz-Target", target)]
            let r = g.run(connections: connections, duration: .seconds(Int64(seconds)))
            print("• \(what): " + String(format: "%.0f/s, p50 %.2f ms, p99 %.2f ms, errors %d (n=%d)",
                                         r.perSecond, r.percentile(0.5), r.percentile(0.99), r.errors, r.requests))
            if let goal, let met { print("    target \(goal): \(met(r) ? "MET" : "MISSED")") }
            print("")
            fflush(nil)
        }
        try measure("PutItem, 256-byte items", "DynamoDB_20120810.PutItem", target: "≥ 15,000/s, p99 < 5 ms",
                    met: { $0.perSecond >= 15_000 && $0.percentile(0.99) < 5 }) {
            #"{"TableName":"bench","Item":{"id":{"S":"k\#(Int.random(in: 0..<100_000, using: &rng))"},"note":{"S":"\#(note)"}}}"#
        }
        try measure("GetItem (hits and misses)", "DynamoDB_20120810.GetItem") {
            #"{"TableName":"bench","Key":{"id":{"S":"k\#(Int.random(in: 0..<100_000, using: &rng))"}}}"#
        }
        try measure("UpdateItem ADD (counter)", "DynamoDB_20120810.UpdateItem") {
            #"{"TableName":"bench","Key":{"id":{"S":"c\#(Int.random(in: 0..<1_000, using: &rng))"}},"UpdateExpression":"ADD n :one","ExpressionAttributeValues":{":one":{"N":"1"}}}"#
        }
        let records = (0..<100).map { #"{"PartitionKey":"k\#($0)","Data":"\#(Base64.encode(Array(note.utf8)))"}"# }.joined(separator: ",")
        try measure("PutRecords, 100 records of 200 bytes per request", "Kinesis_20131202.PutRecords") {
            #"{"StreamName":"bench","Records":[\#(records)]}"#
        }
    }
}
