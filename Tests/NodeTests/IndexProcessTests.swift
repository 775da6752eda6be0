import Foundation
import TandemCore
@testable import TandemTestKit
import Testing
@testable import Transport

/// Secondary indexes on real processes, through the DynamoDB API: two nodes writing the same
/// items at once (and one creating an index meanwhile) each end with indexes equal to the
/// indexes rebuilt from their own table, as DynamoDB's rules define them; after a `kill -9`
/// under writes, and during a backfill, a node's indexes equal its table again.
@Suite(.serialized) struct IndexProcessTests {
    static func ddb(_ api: String, _ op: String, _ body: String) throws -> (status: Int, json: JSON) {
        try AWSProcessTests.ddb(api, op, body)
    }

    static let table = "agents"
    static let createBody = #"""
        {"TableName":"agents","BillingMode":"PAY_PER_REQUEST",
         "KeySchema":[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}],
         "AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"},{"AttributeName":"sk","AttributeType":"N"},
                                 {"AttributeName":"status","AttributeType":"S"},{"AttributeName":"ts","AttributeType":"N"}],
         "GlobalSecondaryIndexes":[{"IndexName":"by-status","KeySchema":[{"AttributeName":"status","KeyType":"HASH"},
                                    {"AttributeName":"ts","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}],
         "LocalSecondaryIndexes":[{"IndexName":"by-ts","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"},
                                    {"AttributeName":"ts","KeyType":"RANGE"}],"Projection":{"ProjectionType":"KEYS_ONLY"}}]}
        """#
    static let createQueueIndex = #"""
        {"TableName":"agents","AttributeDefinitions":[{"AttributeName":"queue","AttributeType":"S"}],
         "GlobalSecondaryIndexUpdates":[{"Create":{"IndexName":"by-queue","KeySchema":[{"AttributeName":"queue","KeyType":"HASH"}],
                                        "Projection":{"ProjectionType":"INCLUDE","NonKeyAttributes":["status"]}}}]}
        """#

    /// An item as a set of attribute → value text (the order of a JSON object is not the item's).
    typealias Item = [String: String]

    static func item(_ j: JSON) -> Item {
        guard case .object(let fields) = j else { return [:] }
        return Dictionary(uniqueKeysWithValues: fields.map { ($0.0, $0.1.serialized) })
    }

    /// Every item of a Scan (of the table, or of `index`), following LastEvaluatedKey.
    static func scanAll(_ api: String, index: String? = nil) throws -> [Item] {
        var out: [Item] = []
        var start: String?
        while true {
            var body = #"{"TableName":"agents","Limit":100"#
            if let index { body += #","IndexName":"\#(index)""# }
            if let start { body += #","ExclusiveStartKey":\#(start)"# }
            let r = try ddb(api, "Scan", body + "}")
            guard r.status == 200, case .array(let items)? = r.json["Items"] else {
                throw TandemError(.io, "scan failed: \(r)")
            }
            out += items.map(Self.item)
            guard let lek = r.json["LastEvaluatedKey"] else { return out }
            start = lek.serialized
        }
    }

    /// The index DynamoDB's rules make of `items`: the items with every index key attribute of
    /// its declared type (sparse), projected.
    static func rebuilt(_ items: [Item], keys: [(String, String)], projection: [String]?) -> Set<Item> {
        Set(
            items.compactMap { item in
                for (name, type) in keys {
                    guard let v = item[name], v.hasPrefix("{\"\(type)\":") else { return nil }
                }
                guard let projection else { return item }
                return item.filter { projection.contains($0.key) }
            })
    }

    /// Whether each index of node `api` holds exactly what its table rebuilds to.
    static func indexesMatch(_ api: String, queueIndex: Bool) -> (ok: Bool, detail: String) {
        guard let items = try? scanAll(api), let byStatus = try? scanAll(api, index: "by-status"),
            let byTs = try? scanAll(api, index: "by-ts")
        else { return (false, "a scan failed") }
        var checks: [(String, [Item], Set<Item>)] = [
            ("by-status", byStatus, rebuilt(items, keys: [("status", "S"), ("ts", "N")], projection: nil)),
            ("by-ts", byTs, rebuilt(items, keys: [("ts", "N")], projection: ["pk", "sk", "ts"]))
        ]
        if queueIndex {
            guard let byQueue = try? scanAll(api, index: "by-queue") else { return (false, "by-queue not readable") }
            checks.append(("by-queue", byQueue, rebuilt(items, keys: [("queue", "S")], projection: ["pk", "sk", "queue", "status"])))
        }
        for (name, got, want) in checks where Set(got) != want || got.count != want.count {
            return (false, "\(name): \(got.count) entries, the table rebuilds to \(want.count)")
        }
        return (true, "\(items.count) items")
    }

    /// One random write through `api`, as agents' status changes come: a put, a status or queue
    /// change, a removed timestamp, a delete.
    static func randomWrite(_ api: String, _ rng: inout SeededGenerator) {
        let pk = "a\(rng.next() % 8)", sk = rng.next() % 6
        let key = #"{"pk":{"S":"\#(pk)"},"sk":{"N":"\#(sk)"}}"#
        let status = ["available", "busy", "away"][Int(rng.next() % 3)]
        let body: (String, String)
        switch rng.next() % 6 {
        case 0, 1:
            var item = #"{"pk":{"S":"\#(pk)"},"sk":{"N":"\#(sk)"},"note":{"S":"n\#(rng.next() % 100)"}"#
            if rng.next() % 5 > 0 { item += #","status":{"S":"\#(status)"}"# }
            if rng.next() % 5 > 0 { item += #","ts":{"N":"\#(rng.next() % 1000)"}"# }
            if rng.next() % 2 > 0 { item += #","queue":{"S":"q\#(rng.next() % 3)"}"# }
            body = ("PutItem", #"{"TableName":"agents","Item":\#(item)}}"#)
        case 2:
            body = (
                "UpdateItem",
                ##"{"TableName":"agents","Key":\##(key),"UpdateExpression":"SET #s = :s, ts = :t","ExpressionAttributeNames":{"#s":"status"},"ExpressionAttributeValues":{":s":{"S":"\##(status)"},":t":{"N":"\##(rng.next() % 1000)"}}}"##
            )
        case 3: body = ("UpdateItem", #"{"TableName":"agents","Key":\#(key),"UpdateExpression":"REMOVE ts"}"#)
        case 4:
            body = (
                "UpdateItem",
                #"{"TableName":"agents","Key":\#(key),"UpdateExpression":"SET queue = :q","ExpressionAttributeValues":{":q":{"S":"q\#(rng.next() % 3)"}}}"#
            )
        default: body = ("DeleteItem", #"{"TableName":"agents","Key":\#(key)}"#)
        }
        _ = try? ddb(api, body.0, body.1)
    }

    final class Stop: @unchecked Sendable {
        let lock = NSLock()
        var stop = false
        var writes = 0
        var isStopped: Bool { lock.withLock { stop } }
    }

    /// Two regions writing the same items at once, and a GSI created on one of them while they
    /// write: once the writes stop and the tables agree, every node's every index equals the
    /// index rebuilt from its own table (each node keeps its indexes from its own merged state).
    @Test func twoNodesWritingAtOnceEachEndWithIndexesEqualToTheirTable() throws {
        let cluster = try LocalCluster(size: 2)
        defer { for i in 0..<2 { cluster.kill9(i) } }
        try cluster.startAll()
        #expect(AWSProcessTests.formed(cluster), "cluster did not form")
        let apis = cluster.nodes.map(\.api)
        let create = try Self.ddb(apis[0], "CreateTable", Self.createBody)
        #expect(create.status == 200, "\(create)")
        #expect(eventually(timeout: .seconds(10)) { (try? Self.ddb(apis[1], "DescribeTable", #"{"TableName":"agents"}"#).status) == 200 })

        let stop = Stop()
        let writers = (0..<2).map { w in
            Thread {
                var rng = SeededGenerator(seed: UInt64(w + 1))
                while !stop.isStopped {
                    Self.randomWrite(apis[w], &rng)
                    stop.lock.withLock { stop.writes += 1 }
                }
            }
        }
        for t in writers { t.start() }
        #expect(eventually(timeout: .seconds(20)) { stop.lock.withLock { stop.writes } >= 300 })
        let update = try Self.ddb(apis[1], "UpdateTable", Self.createQueueIndex)
        #expect(update.status == 200, "\(update)")
        #expect(eventually(timeout: .seconds(20)) { stop.lock.withLock { stop.writes } >= 1_200 })
        stop.lock.withLock { stop.stop = true }
        while writers.contains(where: { !$0.isFinished }) { usleep(10_000) }

        // Converged: both tables the same, and on each node every index equals its rebuild.
        var last = ""
        let converged = eventually(timeout: .seconds(30)) {
            guard let a = try? Self.scanAll(apis[0]), let b = try? Self.scanAll(apis[1]), Set(a) == Set(b) else {
                last = "the tables differ"
                return false
            }
            for api in apis {
                let (ok, detail) = Self.indexesMatch(api, queueIndex: true)
                last = "\(api): \(detail)"
                if !ok { return false }
            }
            return true
        }
        #expect(converged, "\(last)")
    }

    /// `kill -9` under writes, and again during a backfill: at restart the indexes are read
    /// from the disk (ACTIVE at once; the interrupted backfill resumes) and equal the table.
    @Test func afterAKill9TheIndexesEqualTheTable() throws {
        let cluster = try LocalCluster(size: 1)
        defer { cluster.kill9(0) }
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        #expect(try Self.ddb(api, "CreateTable", Self.createBody).status == 200)

        let stop = Stop()
        let writers = (0..<2).map { w in
            Thread {
                var rng = SeededGenerator(seed: UInt64(w + 10))
                while !stop.isStopped {
                    Self.randomWrite(api, &rng)
                    stop.lock.withLock { stop.writes += 1 }
                }
            }
        }
        for t in writers { t.start() }
        #expect(eventually(timeout: .seconds(20)) { stop.lock.withLock { stop.writes } >= 500 })
        cluster.kill9(0)
        stop.lock.withLock { stop.stop = true }
        while writers.contains(where: { !$0.isFinished }) { usleep(10_000) }
        try cluster.start(0)
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil }, "the node did not come back")
        let status = try Self.ddb(api, "DescribeTable", #"{"TableName":"agents"}"#)
        let gsis: [JSON] = if case .array(let a)? = status.json["Table"]?["GlobalSecondaryIndexes"] { a } else { [] }
        #expect(gsis.count == 1 && gsis[0]["IndexStatus"] == .string("ACTIVE"), "\(status.json)")
        let afterKill = Self.indexesMatch(api, queueIndex: false)
        #expect(afterKill.ok, "after the kill: \(afterKill.detail)")

        // Many items, then an index created over them and the node killed while it is built.
        for b in 0..<120 {
            let puts = (0..<25).map { i in
                #"{"PutRequest":{"Item":{"pk":{"S":"bulk\#(b)"},"sk":{"N":"\#(i)"},"queue":{"S":"q\#(i % 4)"},"status":{"S":"s"}}}}"#
            }
            let r = try Self.ddb(api, "BatchWriteItem", #"{"RequestItems":{"agents":[\#(puts.joined(separator: ","))]}}"#)
            #expect(r.status == 200, "\(r)")
        }
        #expect(try Self.ddb(api, "UpdateTable", Self.createQueueIndex).status == 200)
        cluster.kill9(0)
        try cluster.start(0)
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil }, "the node did not come back")
        #expect(
            eventually(timeout: .seconds(30)) {
                let d = try? Self.ddb(api, "DescribeTable", #"{"TableName":"agents"}"#)
                guard case .array(let gsis)? = d?.json["Table"]?["GlobalSecondaryIndexes"] else { return false }
                return gsis.count == 2 && gsis.allSatisfy { $0["IndexStatus"] == .string("ACTIVE") }
            }, "the index created before the kill never became active")
        let afterBackfill = Self.indexesMatch(api, queueIndex: true)
        #expect(afterBackfill.ok, "after the interrupted backfill: \(afterBackfill.detail)")
    }
}
