import Foundation
import GlobalTable
import Storage
import TandemCore
import Transport

/// DynamoDB's JSON wire API (`POST /`, `X-Amz-Target: DynamoDB_20120810.<Op>`) over global
/// tables, so AWS SDK code runs against a node by changing its endpoint.
///
/// Semantics, mapped onto the CRDT rules (see `DynamoUpdate`): PutItem and DeleteItem replace or
/// delete the whole item; UpdateItem's `SET a = :v` is a per-attribute last-writer-wins write,
/// `ADD n :k` and `SET n = n + :k` are counters (concurrent increments in every region count),
/// ADD/DELETE on sets are add-wins. Conditions (ConditionExpression) are checked against this
/// node's replica when the write is made: a concurrent write in another region is not seen, and
/// the two merge. Reads are local (ConsistentRead is accepted and means the same).
final class DynamoAPI {
    static let contentType = "application/x-amz-json-1.0"
    static let maxItemBytes = 400 * 1024
    static let maxPageBytes = 1 << 20
    static let itemWrites: Set<String> = ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"]

    let tables: Tables
    /// The tables' change streams (DynamoDB Streams), set by the node.
    var changeStreams: ChangeStreams?

    init(tables: Tables) { self.tables = tables }

    typealias Respond = (HTTPResponse) -> Void

    /// Answers one operation; every failure becomes a DynamoDB error shape. `host` is the
    /// request's Host header (the endpoint DescribeEndpoints names).
    func handle(_ op: String, _ body: [UInt8], host: String? = nil, _ respond: @escaping Respond) {
        do {
            let request: JSON
            do { request = try JSON.parse(body.isEmpty ? Array("{}".utf8) : body) } catch {
                throw DynamoError.serialization("Could not parse request body as JSON")
            }
            guard case .object = request else { throw DynamoError.serialization("The request body must be a JSON object") }
            // Item writes wait for the disk; past the node's bound they are throttled the way
            // DynamoDB throttles (SDKs back off and retry this code), reads go on.
            if DynamoAPI.itemWrites.contains(op), tables.overloaded {
                throw DynamoError(
                    "ProvisionedThroughputExceededException",
                    "The node's disk is behind (at least \(tables.maxQueuedWrites) writes waiting for it); the request was throttled, retry with backoff"
                )
            }
            switch op {
            case "GetItem": respond(DynamoAPI.ok(try getItem(request)))
            case "PutItem": try putItem(request, respond)
            case "DeleteItem": try deleteItem(request, respond)
            case "UpdateItem": try updateItem(request, respond)
            case "Query": respond(DynamoAPI.ok(try query(request)))
            case "Scan": respond(DynamoAPI.ok(try scan(request)))
            case "BatchGetItem": respond(DynamoAPI.ok(try batchGet(request)))
            case "BatchWriteItem": try batchWrite(request, respond)
            case "CreateTable": try createTable(request, respond)
            case "DescribeTable": respond(DynamoAPI.ok(.object([("Table", description(try table(request).name))])))
            case "DeleteTable": try deleteTable(request, respond)
            case "ListTables": respond(DynamoAPI.ok(try listTables(request)))
            case "DescribeTimeToLive": respond(DynamoAPI.ok(try describeTimeToLive(request)))
            case "UpdateTimeToLive": try updateTimeToLive(request, respond)
            case "UpdateTable": try updateTable(request, respond)
            case "TagResource": try tagResource(request, respond)
            case "UntagResource": try untagResource(request, respond)
            case "ListTagsOfResource": respond(DynamoAPI.ok(try listTagsOfResource(request)))
            // SDKs with endpoint discovery ask where to send requests: here, for a day.
            case "DescribeEndpoints":
                respond(
                    DynamoAPI.ok(
                        .object([
                            (
                                "Endpoints",
                                .array([.object([("Address", .string(host ?? "127.0.0.1")), ("CachePeriodInMinutes", .number("1440"))])])
                            )
                        ])))
            // DynamoDB's default account and table quotas; Tandem reports capacity, never enforces it.
            case "DescribeLimits":
                respond(
                    DynamoAPI.ok(
                        .object([
                            ("AccountMaxReadCapacityUnits", .number("80000")), ("AccountMaxWriteCapacityUnits", .number("80000")),
                            ("TableMaxReadCapacityUnits", .number("40000")), ("TableMaxWriteCapacityUnits", .number("40000"))
                        ])))
            default:
                throw DynamoError("UnknownOperationException", "Operation \(op) is not supported")
            }
        } catch let e as DynamoError {
            respond(DynamoAPI.error(e))
        } catch let e as TandemError {
            respond(DynamoAPI.error(DynamoError(e.code.httpStatus >= 500 ? "InternalServerError" : "ValidationException", e.message)))
        } catch {
            respond(DynamoAPI.error(DynamoError("InternalServerError", "\(error)")))
        }
    }

    static func ok(_ j: JSON) -> HTTPResponse {
        HTTPResponse(status: 200, contentType: contentType, body: Array(j.serialized.utf8))
    }

    static func error(_ e: DynamoError) -> HTTPResponse {
        let status = e.type == "InternalServerError" ? 500 : 400
        let body = JSON.object([("__type", .string("com.amazonaws.dynamodb.v20120810#\(e.type)")), ("message", .string(e.message))])
        return HTTPResponse(status: status, contentType: contentType, body: Array(body.serialized.utf8))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: request helpers

    func string(_ j: JSON, _ field: String) throws(DynamoError) -> String? {
        guard let v = j[field], v != .null else { return nil }
        guard case .string(let s) = v else { throw .serialization("\(field) must be a string") }
        return s
    }

    func int(_ j: JSON, _ field: String) throws(DynamoError) -> Int? {
        guard let v = j[field], v != .null else { return nil }
        guard case .number(let t) = v, let n = Int(t) else { throw .serialization("\(field) must be an integer") }
        return n
    }

    /// `ReturnConsumedCapacity`: nil for NONE, else whether INDEXES (which adds the `Table` part).
    /// `ReturnItemCollectionMetrics` is checked too and answers nothing: DynamoDB returns item
    /// collection metrics for tables with local secondary indexes, whose item collections it
    /// limits to 10 GB; here no such limit exists (every node holds every item), and none are
    /// returned (README, secondary indexes).
    func capacityMode(_ j: JSON) throws(DynamoError) -> Bool? {
        let metrics = try string(j, "ReturnItemCollectionMetrics") ?? "NONE"
        guard ["SIZE", "NONE"].contains(metrics) else {
            throw .validation(
                "1 validation error detected: Value '\(metrics)' at 'returnItemCollectionMetrics' failed to satisfy constraint: Member must satisfy enum value set: [SIZE, NONE]"
            )
        }
        switch try string(j, "ReturnConsumedCapacity") ?? "NONE" {
        case "NONE": return nil
        case "TOTAL": return false
        case "INDEXES": return true
        case let v:
            throw .validation(
                "1 validation error detected: Value '\(v)' at 'returnConsumedCapacity' failed to satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]"
            )
        }
    }

    /// Capacity units by DynamoDB's on-demand rules, from item sizes: a read is 4 KB (half for an
    /// eventually consistent one: Tandem's reads are all local, so ConsistentRead only changes the
    /// figure), a write 1 KB, at least one unit each. Reported, never enforced.
    static func readUnits(_ bytes: Int, consistent: Bool) -> Double { Double(max(1, (bytes + 4095) / 4096)) * (consistent ? 1 : 0.5) }
    static func writeUnits(_ bytes: Int) -> Double { Double(max(1, (bytes + 1023) / 1024)) }

    static func consumed(_ table: String, _ units: Double, indexes: Bool) -> JSON {
        let n = JSON.number(String(units))
        return .object(
            [("TableName", .string(table)), ("CapacityUnits", n)] + (indexes ? [("Table", .object([("CapacityUnits", n)]))] : []))
    }

    func consistent(_ j: JSON) throws(DynamoError) -> Bool {
        switch j["ConsistentRead"] {
        case nil, .null?: return false
        case .bool(let b)?: return b
        default: throw .serialization("ConsistentRead must be a boolean")
        }
    }

    /// The table named by `TableName` (client tables only: names starting with `_` are the node's).
    func table(_ j: JSON, field: String = "TableName") throws(DynamoError) -> (name: String, schema: KeySchema) {
        guard let name = try string(j, field) else {
            throw .validation(
                "1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null")
        }
        return try table(named: name)
    }

    func table(named name: String) throws(DynamoError) -> (name: String, schema: KeySchema) {
        guard !name.hasPrefix("_"), let r = tables.replicas[name] else {
            throw DynamoError("ResourceNotFoundException", "Requested resource not found: Table: \(name) not found")
        }
        return (name, r.schema)
    }

    /// `ExpressionAttributeNames`/`Values` of a request, ready to parse its expressions.
    func parser(_ j: JSON) throws(DynamoError) -> ExpressionParser {
        var names: [String: String] = [:]
        if let n = j["ExpressionAttributeNames"], n != .null {
            guard case .object(let members) = n else { throw .serialization("ExpressionAttributeNames must be a map") }
            for (k, v) in members {
                guard case .string(let s) = v else { throw .serialization("ExpressionAttributeNames values must be strings") }
                guard k.hasPrefix("#") else {
                    throw .validation("ExpressionAttributeNames contains invalid key: Syntax error; key: \"\(k)\"")
                }
                try DynamoJSON.checkName(s)
                names[k] = s
            }
        }
        var values: [String: AttributeValue] = [:]
        if let v = j["ExpressionAttributeValues"], v != .null {
            guard case .object(let members) = v else { throw .serialization("ExpressionAttributeValues must be a map") }
            for (k, value) in members {
                guard k.hasPrefix(":") else {
                    throw .validation("ExpressionAttributeValues contains invalid key: Syntax error; key: \"\(k)\"")
                }
                values[k] = try DynamoJSON.value(value)
            }
        }
        return ExpressionParser(names: names, values: values)
    }

    /// A `Key` map: exactly the schema's key attributes, of their declared types.
    func key(_ j: JSON?, _ schema: KeySchema) throws(DynamoError) -> ItemKey {
        let attributes = try DynamoJSON.item(j)
        let expected = 1 + (schema.sortKey == nil ? 0 : 1)
        guard attributes.count == expected else { throw .validation("The provided key element does not match the schema") }
        return try itemKey(attributes, schema, mismatch: "The provided key element does not match the schema")
    }

    func itemKey(_ item: [String: AttributeValue], _ schema: KeySchema, mismatch: String? = nil) throws(DynamoError) -> ItemKey {
        func part(_ name: String, _ type: String) throws(DynamoError) -> KeyValue {
            guard let v = item[name] else {
                throw .validation(mismatch ?? "One or more parameter values were invalid: Missing the key \(name) in the item")
            }
            guard let k = KeyValue(v), v.typeName == type else {
                throw .validation(
                    mismatch
                        ?? "One or more parameter values were invalid: Type mismatch for key \(name) expected: \(type) actual: \(v.typeName)"
                )
            }
            if case .string("") = k {
                throw .validation(
                    "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: \(name)"
                )
            }
            if case .binary([]) = k {
                throw .validation(
                    "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty binary value. Key: \(name)"
                )
            }
            return k
        }
        let pk = try part(schema.partitionKey, schema.partitionKeyType)
        // DynamoDB's key limits (and its words for them).
        guard DynamoAPI.keyBytes(pk) <= 2048 else {
            throw .validation("One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes")
        }
        var sk: KeyValue?
        if let s = schema.sortKey {
            sk = try part(s, schema.sortKeyType)
            guard DynamoAPI.keyBytes(sk!) <= 1024 else {
                throw .validation(
                    "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes"
                )
            }
        }
        return ItemKey(partition: pk, sort: sk)
    }

    /// A key value's size as DynamoDB counts it against the key limits: a string's UTF-8
    /// bytes, a binary's bytes (a number is at most 38 digits, far within).
    static func keyBytes(_ k: KeyValue) -> Int {
        switch k {
        case .string(let s): s.utf8.count
        case .binary(let b): b.count
        default: 0
        }
    }

    func keyAttributes(_ k: ItemKey, _ schema: KeySchema) -> [String: AttributeValue] {
        var out = [schema.partitionKey: k.partition.attributeValue]
        if let s = schema.sortKey, let v = k.sort { out[s] = v.attributeValue }
        return out
    }

    func visible(_ table: String, _ key: ItemKey) throws(TandemError) -> [String: AttributeValue]? {
        TimeToLive.visible(try tables.replicas[table]?.state(key), attribute: ttlAttribute(table), nowMs: Tables.wallMs())
    }

    /// The item's state for a write, with its expiry applied if its TTL has passed (so an update
    /// starts from an absent item, not the expired one), and that expiry's delete to commit too.
    func current(_ table: String, _ key: ItemKey) throws(TandemError) -> (ItemState, ItemState?) {
        var state = try tables.replicas[table]!.state(key) ?? ItemState()
        guard let attribute = ttlAttribute(table),
            let expiry = TimeToLive.expiryDelete(state, attribute: attribute, nowMs: Tables.wallMs())
        else { return (state, nil) }
        state.merge(expiry)
        return (state, expiry)
    }

    /// The table's TTL attribute if TTL is enabled (the `_ttl` reserved table, replicated).
    func ttlAttribute(_ table: String) -> String? { tables.ttlAttribute(table) }

    func returnValues(_ j: JSON, allowed: [String]) throws(DynamoError) -> String {
        let rv = try string(j, "ReturnValues") ?? "NONE"
        guard allowed.contains(rv) else {
            throw .validation("ReturnValues can only be \(allowed.joined(separator: ", ")) for this operation")
        }
        return rv
    }

    /// Checks `ConditionExpression` against the item as this node's replica has it.
    func checkCondition(_ condition: Condition?, _ old: [String: AttributeValue]?, _ j: JSON) throws {
        guard let condition, try !condition.evaluate(old ?? [:]) else { return }
        if try string(j, "ReturnValuesOnConditionCheckFailure") == "ALL_OLD", let old { throw ConditionFailed(item: old) }
        throw DynamoError("ConditionalCheckFailedException", "The conditional request failed")
    }

    /// A failed condition that returns the old item (`ReturnValuesOnConditionCheckFailure`).
    struct ConditionFailed: Error { var item: [String: AttributeValue] }

    /// Commits one write and answers with `attributes` (or `{}`), and the write's capacity if
    /// asked (`units` of `capacity`, the request's mode; sized only then, not on every write).
    func commit(
        _ table: String, _ key: ItemKey, _ delta: ItemState, _ attributes: [String: AttributeValue]?,
        capacity: Bool?, units: @escaping @autoclosure () -> Double, _ respond: @escaping Respond
    ) {
        tables.commit([(table, key, delta)]) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            let consumed = capacity.map { [("ConsumedCapacity", DynamoAPI.consumed(table, units(), indexes: $0))] } ?? []
            respond(DynamoAPI.ok(.object((attributes.map { [("Attributes", DynamoJSON.json($0))] } ?? []) + consumed)))
        }
    }

    func checkSize(_ item: [String: AttributeValue], update: Bool = false) throws(DynamoError) {
        guard DynamoJSON.size(item) <= DynamoAPI.maxItemBytes else {
            throw .validation(
                update ? "Item size to update has exceeded the maximum allowed size" : "Item size has exceeded the maximum allowed size")
        }
    }
}
