import Foundation
@testable import Storage
import TandemCore
@testable import TandemNode
@testable import TandemTestKit
import Testing
@testable import Transport

/// The DynamoDB and Kinesis JSON wire APIs on real processes, driven with raw JSON as an AWS SDK
/// sends it (`POST /`, `X-Amz-Target`).
@Suite(.serialized) struct AWSProcessTests {
    /// One AWS call: the HTTP status and the parsed body.
    static func aws(_ api: String, _ target: String, _ body: String) throws -> (status: Int, json: JSON) {
        let service = target.hasPrefix("Kinesis") ? "1.1" : "1.0"
        let r = try HTTPClient.request(
            "POST", api, "/", body: Array(body.utf8),
            headers: [("X-Amz-Target", target), ("Content-Type", "application/x-amz-json-\(service)")])
        return (r.status, (try? JSON.parse(r.body)) ?? .null)
    }

    static func ddb(_ api: String, _ op: String, _ body: String) throws -> (status: Int, json: JSON) {
        try aws(api, "DynamoDB_20120810.\(op)", body)
    }

    static func errorType(_ r: (status: Int, json: JSON)) -> String? {
        r.json["__type"]?.stringValue.map { String($0.split(separator: "#").last ?? "") }
    }

    static func createTable(_ api: String, _ name: String, sortKey: Bool) throws {
        let keys =
            sortKey
            ? #"[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}]"#
            : #"[{"AttributeName":"pk","KeyType":"HASH"}]"#
        let defs =
            sortKey
            ? #"[{"AttributeName":"pk","AttributeType":"S"},{"AttributeName":"sk","AttributeType":"N"}]"#
            : #"[{"AttributeName":"pk","AttributeType":"S"}]"#
        let r = try ddb(
            api, "CreateTable",
            #"{"TableName":"\#(name)","KeySchema":\#(keys),"AttributeDefinitions":\#(defs),"BillingMode":"PAY_PER_REQUEST"}"#)
        #expect(r.status == 200 && r.json["TableDescription"]?["TableStatus"] == .string("ACTIVE"), "\(r)")
    }

    static func formed(_ cluster: LocalCluster) -> Bool {
        eventually(timeout: .seconds(20)) {
            cluster.nodes.indices.allSatisfy { i in
                cluster.view(from: i)?.values.filter { $0.status == "alive" }.count == cluster.nodes.count
            }
        }
    }

    @Test func itemsConditionsAndErrors() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        try AWSProcessTests.createTable(api, "calls", sortKey: false)
        #expect(
            AWSProcessTests.errorType(
                try AWSProcessTests.ddb(
                    api, "CreateTable",
                    #"{"TableName":"calls","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}"#
                )) == "ResourceInUseException")

        // Round trip, numbers canonical as DynamoDB returns them.
        let put = try AWSProcessTests.ddb(
            api, "PutItem",
            #"{"TableName":"calls","Item":{"pk":{"S":"c1"},"wait":{"N":"00042"},"score":{"N":"1.5E2"},"m":{"M":{"l":{"L":[{"BOOL":true},{"NULL":true}]}}}}}"#
        )
        #expect(put.status == 200 && put.json == .object([]))
        let got = try AWSProcessTests.ddb(api, "GetItem", #"{"TableName":"calls","Key":{"pk":{"S":"c1"}}}"#)
        #expect(
            got.json["Item"]?["wait"] == .object([("N", .string("42"))]) && got.json["Item"]?["score"] == .object([("N", .string("150"))]))
        #expect(got.json["Item"]?["m"]?["M"]?["l"]?["L"] == .array([.object([("BOOL", .bool(true))]), .object([("NULL", .bool(true))])]))

        // A failed condition changes nothing; a holding one writes and returns the old item.
        let failed = try AWSProcessTests.ddb(
            api, "PutItem", #"{"TableName":"calls","Item":{"pk":{"S":"c1"}},"ConditionExpression":"attribute_not_exists(pk)"}"#)
        #expect(failed.status == 400 && AWSProcessTests.errorType(failed) == "ConditionalCheckFailedException")
        let updated = try AWSProcessTests.ddb(
            api, "UpdateItem",
            #"{"TableName":"calls","Key":{"pk":{"S":"c1"}},"UpdateExpression":"SET wait = wait - :k REMOVE m","ConditionExpression":"score > :k","ExpressionAttributeValues":{":k":{"N":"2"}},"ReturnValues":"UPDATED_NEW"}"#
        )
        #expect(updated.status == 200 && updated.json["Attributes"] == .object([("wait", .object([("N", .string("40"))]))]), "\(updated)")
        let deleted = try AWSProcessTests.ddb(api, "DeleteItem", #"{"TableName":"calls","Key":{"pk":{"S":"c1"}},"ReturnValues":"ALL_OLD"}"#)
        #expect(deleted.json["Attributes"]?["wait"] == .object([("N", .string("40"))]))
        #expect(try AWSProcessTests.ddb(api, "GetItem", #"{"TableName":"calls","Key":{"pk":{"S":"c1"}}}"#).json == .object([]))

        // Malformed requests get DynamoDB's error codes, and the node keeps serving.
        let bad: [(String, String, String)] = [
            ("GetItem", "{not json", "SerializationException"),
            ("GetItem", #"{"TableName":"calls","Key":{"pk":{"N":"1"}}}"#, "ValidationException"),
            ("GetItem", #"{"TableName":"nope","Key":{"pk":{"S":"1"}}}"#, "ResourceNotFoundException"),
            ("PutItem", #"{"TableName":"calls","Item":{"pk":{"S":"x"},"n":{"N":"abc"}}}"#, "ValidationException"),
            ("UpdateItem", #"{"TableName":"calls","Key":{"pk":{"S":"x"}},"UpdateExpression":"SET a = :undefined"}"#, "ValidationException"),
            ("Frobnicate", "{}", "UnknownOperationException"),
            (
                "PutItem", #"{"TableName":"calls","Item":{"pk":{"S":"big"},"blob":{"S":"\#(String(repeating: "x", count: 410_000))"}}}"#,
                "ValidationException"
            )
        ]
        for (op, body, type) in bad {
            let r = try AWSProcessTests.ddb(api, op, body)
            #expect(r.status == 400 && AWSProcessTests.errorType(r) == type, "\(op) \(body.prefix(80)): \(r.json.serialized.prefix(200))")
        }
        #expect(try AWSProcessTests.ddb(api, "ListTables", "{}").json["TableNames"] == .array([.string("calls")]))
    }

    @Test func queryPagingAndBatches() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        try AWSProcessTests.createTable(api, "history", sortKey: true)
        let puts = (0..<12).map { #"{"PutRequest":{"Item":{"pk":{"S":"cust"},"sk":{"N":"\#($0)"},"odd":{"BOOL":\#($0 % 2 == 1)}}}}"# }
        let w = try AWSProcessTests.ddb(api, "BatchWriteItem", #"{"RequestItems":{"history":[\#(puts.joined(separator: ","))]}}"#)
        #expect(w.status == 200 && w.json["UnprocessedItems"] == .object([]), "\(w)")
        let tooMany = (0..<26).map { #"{"DeleteRequest":{"Key":{"pk":{"S":"x"},"sk":{"N":"\#($0)"}}}}"# }
        #expect(
            AWSProcessTests.errorType(
                try AWSProcessTests.ddb(api, "BatchWriteItem", #"{"RequestItems":{"history":[\#(tooMany.joined(separator: ","))]}}"#))
                == "ValidationException")

        // Pages of 5 with a filter: Limit counts items read, LastEvaluatedKey resumes.
        var odd: [String] = []
        var start = ""
        var pages = 0
        repeat {
            let r = try AWSProcessTests.ddb(
                api, "Query",
                #"{"TableName":"history","KeyConditionExpression":"pk = :p AND sk BETWEEN :a AND :b","FilterExpression":"odd = :t","ExpressionAttributeValues":{":p":{"S":"cust"},":a":{"N":"1"},":b":{"N":"10"},":t":{"BOOL":true}},"Limit":5\#(start)}"#
            )
            guard case .array(let items)? = r.json["Items"] else { Issue.record("no items: \(r)"); return }
            odd += items.compactMap { $0["sk"]?["N"]?.stringValue }
            pages += 1
            start = r.json["LastEvaluatedKey"].map { #","ExclusiveStartKey":\#($0.serialized)"# } ?? ""
        } while !start.isEmpty && pages < 10
        #expect(odd == ["1", "3", "5", "7", "9"] && pages == 2, "\(odd) in \(pages) pages")
        let back = try AWSProcessTests.ddb(
            api, "Query",
            #"{"TableName":"history","KeyConditionExpression":"pk = :p AND begins_with(sk, :x)","ExpressionAttributeValues":{":p":{"S":"cust"},":x":{"N":"1"}}}"#
        )
        #expect(AWSProcessTests.errorType(back) == "ValidationException", "begins_with needs a string or binary sort key")
        let count = try AWSProcessTests.ddb(
            api, "Query",
            #"{"TableName":"history","KeyConditionExpression":"pk = :p AND sk < :n","ScanIndexForward":false,"Select":"COUNT","ExpressionAttributeValues":{":p":{"S":"cust"},":n":{"N":"4"}}}"#
        )
        #expect(count.json["Count"] == .number("4") && count.json["Items"] == nil)

        let g = try AWSProcessTests.ddb(
            api, "BatchGetItem",
            #"{"RequestItems":{"history":{"Keys":[{"pk":{"S":"cust"},"sk":{"N":"2"}},{"pk":{"S":"cust"},"sk":{"N":"77"}}],"ProjectionExpression":"sk"}}}"#
        )
        #expect(g.json["Responses"]?["history"] == .array([.object([("sk", .object([("N", .string("2"))]))])]), "\(g)")
        var total = 0
        for s in 0..<4 {
            let r = try AWSProcessTests.ddb(api, "Scan", #"{"TableName":"history","Segment":\#(s),"TotalSegments":4}"#)
            if case .number(let c)? = r.json["Count"] { total += Int(c) ?? 0 }
        }
        #expect(total == 12)
    }

    /// Better than DynamoDB: concurrent increments on two nodes both count, and SET of different
    /// attributes on two nodes both survive (DynamoDB global tables keep one whole item).
    @Test func countersFromTwoNodesSum() throws {
        let cluster = try LocalCluster(size: 2)
        try cluster.startAll()
        #expect(AWSProcessTests.formed(cluster))
        let a = cluster.nodes[0].api, b = cluster.nodes[1].api
        try AWSProcessTests.createTable(a, "counters", sortKey: false)
        #expect(
            eventually(timeout: .seconds(10)) { (try? AWSProcessTests.ddb(b, "DescribeTable", #"{"TableName":"counters"}"#).status) == 200 }
        )
        for i in 0..<10 {
            let (api, expr) = i % 2 == 0 ? (a, "ADD n :one SET x = :one") : (b, "SET n = if_not_exists(n, :zero) + :one, y = :one")
            let r = try AWSProcessTests.ddb(
                api, "UpdateItem",
                #"{"TableName":"counters","Key":{"pk":{"S":"k"}},"UpdateExpression":"\#(expr)","ExpressionAttributeValues":{":one":{"N":"1"}\#(i % 2 == 1 ? #",":zero":{"N":"0"}"# : "")}}"#
            )
            #expect(r.status == 200, "\(r)")
        }
        let get = #"{"TableName":"counters","Key":{"pk":{"S":"k"}},"ConsistentRead":true}"#
        let want = JSON.object([("n", .number("10")), ("x", .number("1")), ("y", .number("1"))])
        func seen(_ api: String) -> JSON? {
            guard let item = try? AWSProcessTests.ddb(api, "GetItem", get).json["Item"] else { return nil }
            return .object(["n", "x", "y"].map { ($0, item[$0]?["N"].flatMap { $0.stringValue.map { .number($0) } } ?? .null) })
        }
        #expect(
            eventually(timeout: .seconds(10)) { seen(a) == want && seen(b) == want },
            "\(String(describing: seen(a))) \(String(describing: seen(b)))")
    }

    @Test func kinesisPutAndGetRecordsWithIterators() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        func kinesis(_ op: String, _ body: String) throws -> (status: Int, json: JSON) {
            try AWSProcessTests.aws(api, "Kinesis_20131202.\(op)", body)
        }
        #expect(try kinesis("CreateStream", #"{"StreamName":"events","ShardCount":1}"#).status == 200)
        #expect(
            AWSProcessTests.errorType(try kinesis("CreateStream", #"{"StreamName":"events","ShardCount":1}"#)) == "ResourceInUseException")
        #expect(
            eventually(timeout: .seconds(10)) {
                (try? kinesis("DescribeStreamSummary", #"{"StreamName":"events"}"#).json["StreamDescriptionSummary"]?["StreamStatus"])
                    == .string("ACTIVE")
            })
        let first = try kinesis("PutRecord", #"{"StreamName":"events","PartitionKey":"c1","Data":"\#(Base64.encode(Array("one".utf8)))"}"#)
        #expect(first.json["ShardId"] == .string("shardId-000000000000"), "\(first)")
        let latest = try kinesis(
            "GetShardIterator", #"{"StreamName":"events","ShardId":"shardId-000000000000","ShardIteratorType":"LATEST"}"#)
        let batch = try kinesis(
            "PutRecords",
            #"{"StreamName":"events","Records":[{"PartitionKey":"c1","Data":"dHdv"},{"PartitionKey":"c2","Data":"dGhyZWU="}]}"#)
        #expect(batch.json["FailedRecordCount"] == .number("0"))

        func records(_ iterator: JSON?) throws -> (data: [String], next: JSON?) {
            let r = try kinesis("GetRecords", #"{"ShardIterator":\#(iterator?.serialized ?? "null")}"#)
            guard case .array(let list)? = r.json["Records"] else { return ([], nil) }
            #expect(r.json["MillisBehindLatest"] != nil)
            return (list.compactMap { $0["Data"]?.stringValue }, r.json["NextShardIterator"])
        }
        let horizon = try kinesis(
            "GetShardIterator", #"{"StreamName":"events","ShardId":"shardId-000000000000","ShardIteratorType":"TRIM_HORIZON"}"#)
        let all = try records(horizon.json["ShardIterator"])
        #expect(all.data == ["b25l", "dHdv", "dGhyZWU="])
        #expect(try records(all.next).data.isEmpty, "the next iterator starts after the last record")
        #expect(
            try records(latest.json["ShardIterator"]).data == ["dHdv", "dGhyZWU="],
            "LATEST starts after what was committed when it was made")
        let at = try kinesis(
            "GetShardIterator",
            #"{"StreamName":"events","ShardId":"shardId-000000000000","ShardIteratorType":"AT_SEQUENCE_NUMBER","StartingSequenceNumber":\#(first.json["SequenceNumber"]!.serialized)}"#
        )
        #expect(try records(at.json["ShardIterator"]).data.first == "b25l")

        #expect(AWSProcessTests.errorType(try kinesis("GetRecords", #"{"ShardIterator":"Zm9yZ2Vk"}"#)) == "InvalidArgumentException")
        #expect(
            AWSProcessTests.errorType(
                try kinesis("GetShardIterator", #"{"StreamName":"events","ShardId":"shardId-000000000009","ShardIteratorType":"LATEST"}"#))
                == "ResourceNotFoundException")
        #expect(
            AWSProcessTests.errorType(try kinesis("PutRecord", #"{"StreamName":"nope","PartitionKey":"k","Data":"eA=="}"#))
                == "ResourceNotFoundException")
        #expect(try kinesis("ListStreams", "{}").json["StreamNames"] == .array([.string("events")]))
    }

    /// Overload: item writes past the node's bound of writes waiting for the disk, and stream
    /// puts past the bound of puts waiting for their commit, are throttled as the services throttle
    /// (ProvisionedThroughputExceededException, which SDKs retry with backoff); reads go on. Both
    /// bounds are 0 here, so every write is over them.
    @Test func overloadIsThrottling() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0, extraArgs: ["--max-queued-writes", "0", "--max-pending-puts", "0"])
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        try AWSProcessTests.createTable(api, "calls", sortKey: false)
        for (op, body) in [
            ("PutItem", #"{"TableName":"calls","Item":{"pk":{"S":"a"}}}"#),
            (
                "UpdateItem",
                #"{"TableName":"calls","Key":{"pk":{"S":"a"}},"UpdateExpression":"ADD n :one","ExpressionAttributeValues":{":one":{"N":"1"}}}"#
            ),
            ("DeleteItem", #"{"TableName":"calls","Key":{"pk":{"S":"a"}}}"#),
            ("BatchWriteItem", #"{"RequestItems":{"calls":[{"PutRequest":{"Item":{"pk":{"S":"b"}}}}]}}"#)
        ] {
            let r = try AWSProcessTests.ddb(api, op, body)
            #expect(r.status == 400 && AWSProcessTests.errorType(r) == "ProvisionedThroughputExceededException", "\(op): \(r)")
        }
        #expect(try AWSProcessTests.ddb(api, "GetItem", #"{"TableName":"calls","Key":{"pk":{"S":"a"}}}"#).json == .object([]))

        func kinesis(_ op: String, _ body: String) throws -> (status: Int, json: JSON) {
            try AWSProcessTests.aws(api, "Kinesis_20131202.\(op)", body)
        }
        #expect(try kinesis("CreateStream", #"{"StreamName":"events","ShardCount":1}"#).status == 200)
        #expect(
            eventually(timeout: .seconds(10)) {
                (try? kinesis("DescribeStreamSummary", #"{"StreamName":"events"}"#).json["StreamDescriptionSummary"]?["StreamStatus"])
                    == .string("ACTIVE")
            })
        let one = try kinesis("PutRecord", #"{"StreamName":"events","PartitionKey":"c1","Data":"eA=="}"#)
        #expect(AWSProcessTests.errorType(one) == "ProvisionedThroughputExceededException", "\(one)")
        let batch = try kinesis(
            "PutRecords", #"{"StreamName":"events","Records":[{"PartitionKey":"c1","Data":"eA=="},{"PartitionKey":"c2","Data":"eQ=="}]}"#)
        #expect(batch.json["FailedRecordCount"] == .number("2"), "\(batch)")
        guard case .array(let results)? = batch.json["Records"] else { Issue.record("no Records: \(batch)"); return }
        #expect(results.allSatisfy { $0["ErrorCode"] == .string("ProvisionedThroughputExceededException") }, "\(batch)")
    }

    /// A shard iterator older than 5 minutes is ExpiredIteratorException; a fresh one for the same
    /// position reads (the token is built here as the node builds it, with an old issue time).
    @Test func oldShardIteratorsExpire() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        func kinesis(_ op: String, _ body: String) throws -> (status: Int, json: JSON) {
            try AWSProcessTests.aws(api, "Kinesis_20131202.\(op)", body)
        }
        #expect(try kinesis("CreateStream", #"{"StreamName":"events","ShardCount":1}"#).status == 200)
        #expect(
            eventually(timeout: .seconds(10)) {
                (try? kinesis("DescribeStreamSummary", #"{"StreamName":"events"}"#).json["StreamDescriptionSummary"]?["StreamStatus"])
                    == .string("ACTIVE")
            })
        let fresh = try kinesis(
            "GetShardIterator", #"{"StreamName":"events","ShardId":"shardId-000000000000","ShardIteratorType":"TRIM_HORIZON"}"#)
        let token = try #require(fresh.json["ShardIterator"]?.stringValue)
        var old = try #require(KinesisAPI.Iterator(token: token))
        old.issuedMs -= KinesisAPI.iteratorLifetimeMs + 1000
        let expired = try kinesis("GetRecords", #"{"ShardIterator":"\#(old.token)"}"#)
        #expect(expired.status == 400 && AWSProcessTests.errorType(expired) == "ExpiredIteratorException", "\(expired)")
        #expect(try kinesis("GetRecords", #"{"ShardIterator":"\#(token)"}"#).status == 200)
    }

    /// TTL: the setting replicates; an item whose TTL has passed reads as absent on both nodes
    /// and is then deleted by both nodes' sweeps with the same delete, so the replicas end equal
    /// (same digest) with no conflict.
    @Test func timeToLiveExpiresOnEveryNodeIdentically() throws {
        let cluster = try LocalCluster(size: 2)
        try cluster.startAll()
        #expect(AWSProcessTests.formed(cluster))
        let a = cluster.nodes[0].api, b = cluster.nodes[1].api
        try AWSProcessTests.createTable(a, "sessions", sortKey: false)
        #expect(
            eventually(timeout: .seconds(10)) { (try? AWSProcessTests.ddb(b, "DescribeTable", #"{"TableName":"sessions"}"#).status) == 200 }
        )
        let off = try AWSProcessTests.ddb(b, "DescribeTimeToLive", #"{"TableName":"sessions"}"#)
        #expect(off.json["TimeToLiveDescription"]?["TimeToLiveStatus"] == .string("DISABLED"))
        let on = try AWSProcessTests.ddb(
            a, "UpdateTimeToLive", #"{"TableName":"sessions","TimeToLiveSpecification":{"Enabled":true,"AttributeName":"exp"}}"#)
        #expect(on.json["TimeToLiveSpecification"]?["Enabled"] == .bool(true), "\(on)")
        #expect(
            AWSProcessTests.errorType(
                try AWSProcessTests.ddb(
                    a, "UpdateTimeToLive", #"{"TableName":"sessions","TimeToLiveSpecification":{"Enabled":true,"AttributeName":"exp"}}"#))
                == "ValidationException")
        #expect(
            eventually(timeout: .seconds(10)) {
                (try? AWSProcessTests.ddb(b, "DescribeTimeToLive", #"{"TableName":"sessions"}"#).json["TimeToLiveDescription"]?[
                    "AttributeName"]) == .string("exp")
            }, "the setting replicates")

        let now = Int(Date().timeIntervalSince1970)
        for (node, pk, exp) in [(a, "soon", "\(now + 3)"), (b, "kept", "\(now + 3600)"), (a, "past", "\(now - 10)"), (b, "none", "")] {
            let ttl = exp.isEmpty ? "" : #","exp":{"N":"\#(exp)"}"#
            #expect(
                try AWSProcessTests.ddb(node, "PutItem", #"{"TableName":"sessions","Item":{"pk":{"S":"\#(pk)"}\#(ttl)}}"#).status == 200)
        }
        func keys(_ api: String) -> [String] {
            guard case .array(let items)? = try? AWSProcessTests.ddb(api, "Scan", #"{"TableName":"sessions"}"#).json["Items"] else {
                return ["?"]
            }
            return items.compactMap { $0["pk"]?["S"]?.stringValue }.sorted()
        }
        #expect(
            eventually(timeout: .seconds(2)) { keys(a) == ["kept", "none", "soon"] && keys(b) == ["kept", "none", "soon"] },
            "an item already expired is absent at once: \(keys(a)) \(keys(b))")
        #expect(try AWSProcessTests.ddb(b, "GetItem", #"{"TableName":"sessions","Key":{"pk":{"S":"past"}}}"#).json == .object([]))
        #expect(eventually(timeout: .seconds(8)) { keys(a) == ["kept", "none"] && keys(b) == ["kept", "none"] }, "\(keys(a)) \(keys(b))")
        #expect(try AWSProcessTests.ddb(a, "GetItem", #"{"TableName":"sessions","Key":{"pk":{"S":"soon"}}}"#).json == .object([]))

        // Both sweeps delete; the replicas converge to the same bytes (equal digests).
        func digest(_ api: String) -> JSON? {
            (try? HTTPClient.request("GET", api, "/v1/tables/sessions")).flatMap { try? JSON.parse($0.body) }?["digest"]
        }
        #expect(
            eventually(timeout: .seconds(10)) { digest(a) != nil && digest(a) == digest(b) },
            "\(String(describing: digest(a))) \(String(describing: digest(b)))")
        #expect(
            eventually(timeout: .seconds(5)) {
                (cluster.metric("tandem_ttl_deleted_total", node: 0) ?? 0) + (cluster.metric("tandem_ttl_deleted_total", node: 1) ?? 0) >= 2
            })

        // An UpdateItem on an expired item starts from nothing: its counter does not resume.
        #expect(
            try AWSProcessTests.ddb(
                a, "PutItem", #"{"TableName":"sessions","Item":{"pk":{"S":"c"},"n":{"N":"5"},"exp":{"N":"\#(now - 5)"}}}"#
            ).status == 200)
        let up = try AWSProcessTests.ddb(
            a, "UpdateItem",
            #"{"TableName":"sessions","Key":{"pk":{"S":"c"}},"UpdateExpression":"ADD n :one","ExpressionAttributeValues":{":one":{"N":"1"}},"ReturnValues":"ALL_NEW"}"#
        )
        #expect(
            up.json["Attributes"] == .object([("n", .object([("N", .string("1"))])), ("pk", .object([("S", .string("c"))]))])
                || up.json["Attributes"] == .object([("pk", .object([("S", .string("c"))])), ("n", .object([("N", .string("1"))]))]),
            "\(up)")
        let disable = try AWSProcessTests.ddb(
            b, "UpdateTimeToLive", #"{"TableName":"sessions","TimeToLiveSpecification":{"Enabled":false,"AttributeName":"exp"}}"#)
        #expect(disable.status == 200, "\(disable)")
    }
}
