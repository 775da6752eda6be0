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

    init(tables: Tables) { self.tables = tables }

    typealias Respond = (HTTPResponse) -> Void

    /// Answers one operation; every failure becomes a DynamoDB error shape.
    func handle(_ op: String, _ body: [UInt8], _ respond: @escaping Respond) {
        do {
            let request: JSON
            do { request = try JSON.parse(body.isEmpty ? Array("{}".utf8) : body) } catch {
                throw DynamoError.serialization("Could not parse request body as JSON")
            }
            guard case .object = request else { throw DynamoError.serialization("The request body must be a JSON object") }
            // Item writes wait for the disk; past the node's bound they are throttled the way
            // DynamoDB throttles (SDKs back off and retry this code), reads go on.
            if DynamoAPI.itemWrites.contains(op), tables.overloaded {
                throw DynamoError("ProvisionedThroughputExceededException",
                                  "The node's disk is behind (at least \(tables.maxQueuedWrites) writes waiting for it); the request was throttled, retry with backoff")
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

    private func string(_ j: JSON, _ field: String) throws(DynamoError) -> String? {
        guard let v = j[field], v != .null else { return nil }
        guard case .string(let s) = v else { throw .serialization("\(field) must be a string") }
        return s
    }

    private func int(_ j: JSON, _ field: String) throws(DynamoError) -> Int? {
        guard let v = j[field], v != .null else { return nil }
        guard case .number(let t) = v, let n = Int(t) else { throw .serialization("\(field) must be an integer") }
        return n
    }

    /// `ReturnConsumedCapacity`: nil for NONE, else whether INDEXES (which adds the `Table` part).
    /// `ReturnItemCollectionMetrics` is checked too and answers nothing: DynamoDB returns item
    /// collection metrics only for tables with local secondary indexes, which Tandem has not.
    private func capacityMode(_ j: JSON) throws(DynamoError) -> Bool? {
        let metrics = try string(j, "ReturnItemCollectionMetrics") ?? "NONE"
        guard ["SIZE", "NONE"].contains(metrics) else {
            throw .validation("1 validation error detected: Value '\(metrics)' at 'returnItemCollectionMetrics' failed to satisfy constraint: Member must satisfy enum value set: [SIZE, NONE]")
        }
        switch try string(j, "ReturnConsumedCapacity") ?? "NONE" {
        case "NONE": return nil
        case "TOTAL": return false
        case "INDEXES": return true
        case let v: throw .validation("1 validation error detected: Value '\(v)' at 'returnConsumedCapacity' failed to satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]")
        }
    }

    /// Capacity units by DynamoDB's on-demand rules, from item sizes: a read is 4 KB (half for an
    /// eventually consistent one: Tandem's reads are all local, so ConsistentRead only changes the
    /// figure), a write 1 KB, at least one unit each. Reported, never enforced.
    static func readUnits(_ bytes: Int, consistent: Bool) -> Double { Double(max(1, (bytes + 4095) / 4096)) * (consistent ? 1 : 0.5) }
    static func writeUnits(_ bytes: Int) -> Double { Double(max(1, (bytes + 1023) / 1024)) }

    static func consumed(_ table: String, _ units: Double, indexes: Bool) -> JSON {
        let n = JSON.number(String(units))
        return .object([("TableName", .string(table)), ("CapacityUnits", n)] + (indexes ? [("Table", .object([("CapacityUnits", n)]))] : []))
    }

    private func consistent(_ j: JSON) throws(DynamoError) -> Bool {
        switch j["ConsistentRead"] {
        case nil, .null?: return false
        case .bool(let b)?: return b
        default: throw .serialization("ConsistentRead must be a boolean")
        }
    }

    private func refuseLegacy(_ j: JSON, _ fields: [String]) throws(DynamoError) {
        for f in fields where j[f] != nil {
            throw .validation("The legacy parameter \(f) is not supported here; use the expression parameters")
        }
    }

    /// The table named by `TableName` (client tables only: names starting with `_` are the node's).
    private func table(_ j: JSON, field: String = "TableName") throws(DynamoError) -> (name: String, schema: KeySchema) {
        guard let name = try string(j, field) else { throw .validation("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null") }
        return try table(named: name)
    }

    private func table(named name: String) throws(DynamoError) -> (name: String, schema: KeySchema) {
        guard !name.hasPrefix("_"), let r = tables.replicas[name] else {
            throw DynamoError("ResourceNotFoundException", "Requested resource not found: Table: \(name) not found")
        }
        return (name, r.schema)
    }

    /// `ExpressionAttributeNames`/`Values` of a request, ready to parse its expressions.
    private func parser(_ j: JSON) throws(DynamoError) -> ExpressionParser {
        var names: [String: String] = [:]
        if let n = j["ExpressionAttributeNames"], n != .null {
            guard case .object(let members) = n else { throw .serialization("ExpressionAttributeNames must be a map") }
            for (k, v) in members {
                guard case .string(let s) = v else { throw .serialization("ExpressionAttributeNames values must be strings") }
                guard k.hasPrefix("#") else { throw .validation("ExpressionAttributeNames contains invalid key: Syntax error; key: \"\(k)\"") }
                names[k] = s
            }
        }
        var values: [String: AttributeValue] = [:]
        if let v = j["ExpressionAttributeValues"], v != .null {
            guard case .object(let members) = v else { throw .serialization("ExpressionAttributeValues must be a map") }
            for (k, value) in members {
                guard k.hasPrefix(":") else { throw .validation("ExpressionAttributeValues contains invalid key: Syntax error; key: \"\(k)\"") }
                values[k] = try DynamoJSON.value(value)
            }
        }
        return ExpressionParser(names: names, values: values)
    }

    /// A `Key` map: exactly the schema's key attributes, of their declared types.
    private func key(_ j: JSON?, _ schema: KeySchema) throws(DynamoError) -> ItemKey {
        let attributes = try DynamoJSON.item(j)
        let expected = 1 + (schema.sortKey == nil ? 0 : 1)
        guard attributes.count == expected else { throw .validation("The provided key element does not match the schema") }
        return try itemKey(attributes, schema, mismatch: "The provided key element does not match the schema")
    }

    private func itemKey(_ item: [String: AttributeValue], _ schema: KeySchema, mismatch: String? = nil) throws(DynamoError) -> ItemKey {
        func part(_ name: String, _ type: String) throws(DynamoError) -> KeyValue {
            guard let v = item[name] else {
                throw .validation(mismatch ?? "One or more parameter values were invalid: Missing the key \(name) in the item")
            }
            guard let k = KeyValue(v), v.typeName == type else {
                throw .validation(mismatch ?? "One or more parameter values were invalid: Type mismatch for key \(name) expected: \(type) actual: \(v.typeName)")
            }
            if case .string("") = k { throw .validation("One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: \(name)") }
            if case .binary([]) = k { throw .validation("One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty binary value. Key: \(name)") }
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
                throw .validation("One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes")
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

    private func keyAttributes(_ k: ItemKey, _ schema: KeySchema) -> [String: AttributeValue] {
        var out = [schema.partitionKey: k.partition.attributeValue]
        if let s = schema.sortKey, let v = k.sort { out[s] = v.attributeValue }
        return out
    }

    private func visible(_ table: String, _ key: ItemKey) -> [String: AttributeValue]? {
        TimeToLive.visible(tables.replicas[table]?.state(key), attribute: ttlAttribute(table), nowMs: Tables.wallMs())
    }

    /// The item's state for a write, with its expiry applied if its TTL has passed (so an update
    /// starts from an absent item, not the expired one), and that expiry's delete to commit too.
    private func current(_ table: String, _ key: ItemKey) -> (ItemState, ItemState?) {
        var state = tables.replicas[table]!.state(key) ?? ItemState()
        guard let attribute = ttlAttribute(table),
              let expiry = TimeToLive.expiryDelete(state, attribute: attribute, nowMs: Tables.wallMs()) else { return (state, nil) }
        state.merge(expiry)
        return (state, expiry)
    }

    /// The table's TTL attribute if TTL is enabled (the `_ttl` reserved table, replicated).
    func ttlAttribute(_ table: String) -> String? { tables.ttlAttribute(table) }

    private func returnValues(_ j: JSON, allowed: [String]) throws(DynamoError) -> String {
        let rv = try string(j, "ReturnValues") ?? "NONE"
        guard allowed.contains(rv) else { throw .validation("ReturnValues can only be \(allowed.joined(separator: ", ")) for this operation") }
        return rv
    }

    /// Checks `ConditionExpression` against the item as this node's replica has it.
    private func checkCondition(_ condition: Condition?, _ old: [String: AttributeValue]?, _ j: JSON) throws {
        guard let condition, try !condition.evaluate(old ?? [:]) else { return }
        if try string(j, "ReturnValuesOnConditionCheckFailure") == "ALL_OLD", let old { throw ConditionFailed(item: old) }
        throw DynamoError("ConditionalCheckFailedException", "The conditional request failed")
    }

    /// A failed condition that returns the old item (`ReturnValuesOnConditionCheckFailure`).
    struct ConditionFailed: Error { var item: [String: AttributeValue] }

    /// Commits one write and answers with `attributes` (or `{}`), and the write's capacity if
    /// asked (`units` of `capacity`, the request's mode; sized only then, not on every write).
    private func commit(_ table: String, _ key: ItemKey, _ delta: ItemState, _ attributes: [String: AttributeValue]?,
                        capacity: Bool?, units: @escaping @autoclosure () -> Double, _ respond: @escaping Respond) {
        tables.commit([(table, key, delta)]) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            let consumed = capacity.map { [("ConsumedCapacity", DynamoAPI.consumed(table, units(), indexes: $0))] } ?? []
            respond(DynamoAPI.ok(.object((attributes.map { [("Attributes", DynamoJSON.json($0))] } ?? []) + consumed)))
        }
    }

    private func checkSize(_ item: [String: AttributeValue], update: Bool = false) throws(DynamoError) {
        guard DynamoJSON.size(item) <= DynamoAPI.maxItemBytes else {
            throw .validation(update ? "Item size to update has exceeded the maximum allowed size" : "Item size has exceeded the maximum allowed size")
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: items

    private func getItem(_ j: JSON) throws -> JSON {
        try refuseLegacy(j, ["AttributesToGet"])
        let (name, schema) = try table(j)
        let k = try key(j["Key"], schema)
        var p = try parser(j)
        let projection = try string(j, "ProjectionExpression").map { text throws(DynamoError) in try p.projection(text) }
        try p.checkAllUsed()
        let capacity = try capacityMode(j), strong = try consistent(j)
        let item = visible(name, k)
        let consumed = capacity.map { [("ConsumedCapacity", DynamoAPI.consumed(name, DynamoAPI.readUnits(item.map(DynamoJSON.size) ?? 0, consistent: strong), indexes: $0))] } ?? []
        guard let item else { return .object(consumed) }
        return .object([("Item", DynamoJSON.json(projection.map { project(item, $0) } ?? item))] + consumed)
    }

    private func putItem(_ j: JSON, _ respond: @escaping Respond) throws {
        try refuseLegacy(j, ["Expected", "ConditionalOperator"])
        let (name, schema) = try table(j)
        let item = try DynamoJSON.item(j["Item"])
        let k = try itemKey(item, schema)
        try checkSize(item)
        var p = try parser(j)
        let condition = try string(j, "ConditionExpression").map { text throws(DynamoError) in try p.condition(text) }
        try p.checkAllUsed()
        let rv = try returnValues(j, allowed: ["NONE", "ALL_OLD"])
        let capacity = try capacityMode(j)
        let (start, expired) = current(name, k)
        var state = start
        let old = state.visible
        try conditionChecked(condition, old, j, respond) {
            let delta = state.put(item, at: tables.core.now(wallMs: Tables.wallMs()))
            commit(name, k, expired.map { $0.merged(delta) } ?? delta, rv == "ALL_OLD" ? old : nil, capacity: capacity,
                   units: DynamoAPI.writeUnits(max(DynamoJSON.size(item), old.map(DynamoJSON.size) ?? 0)), respond)
        }
    }

    /// Runs `body` if the condition holds; otherwise answers ConditionalCheckFailedException.
    private func conditionChecked(_ c: Condition?, _ old: [String: AttributeValue]?, _ j: JSON, _ respond: Respond,
                                  _ body: () throws -> Void) throws {
        do {
            try checkCondition(c, old, j)
        } catch let f as ConditionFailed {
            let e = JSON.object([("__type", .string("com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException")),
                                 ("message", .string("The conditional request failed")), ("Item", DynamoJSON.json(f.item))])
            return respond(HTTPResponse(status: 400, contentType: DynamoAPI.contentType, body: Array(e.serialized.utf8)))
        }
        try body()
    }

    private func deleteItem(_ j: JSON, _ respond: @escaping Respond) throws {
        try refuseLegacy(j, ["Expected", "ConditionalOperator"])
        let (name, schema) = try table(j)
        let k = try key(j["Key"], schema)
        var p = try parser(j)
        let condition = try string(j, "ConditionExpression").map { text throws(DynamoError) in try p.condition(text) }
        try p.checkAllUsed()
        let rv = try returnValues(j, allowed: ["NONE", "ALL_OLD"])
        let capacity = try capacityMode(j)
        let (start, expired) = current(name, k)
        var state = start
        let old = state.visible
        try conditionChecked(condition, old, j, respond) {
            let delta = state.delete(at: tables.core.now(wallMs: Tables.wallMs()))
            commit(name, k, expired.map { $0.merged(delta) } ?? delta, rv == "ALL_OLD" ? old : nil, capacity: capacity,
                   units: DynamoAPI.writeUnits(old.map(DynamoJSON.size) ?? 0), respond)
        }
    }

    private func updateItem(_ j: JSON, _ respond: @escaping Respond) throws {
        try refuseLegacy(j, ["AttributeUpdates", "Expected", "ConditionalOperator"])
        let (name, schema) = try table(j)
        let k = try key(j["Key"], schema)
        var p = try parser(j)
        let update = try string(j, "UpdateExpression").map { text throws(DynamoError) in try p.update(text) } ?? UpdateExpression()
        let condition = try string(j, "ConditionExpression").map { text throws(DynamoError) in try p.condition(text) }
        try p.checkAllUsed()
        let rv = try returnValues(j, allowed: ["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"])
        let capacity = try capacityMode(j)
        let (start, expired) = current(name, k)
        var state = start
        let old = state.visible
        try conditionChecked(condition, old, j, respond) {
            let t = tables.core.now(wallMs: Tables.wallMs())
            let keyNames = [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? [])
            var delta = try DynamoUpdate.apply(update, to: &state, keyNames: keyNames, at: t)
            // The key attributes are written with every update, so the item exists (as UpdateItem
            // creates it) even after a concurrent delete elsewhere hid its older writes.
            for (n, v) in keyAttributes(k, schema) { delta.merge(state.set(n, v, at: t)) }
            let new = state.visible ?? [:]
            try checkSize(new, update: true)
            let attributes: [String: AttributeValue]? = switch rv {
            case "ALL_OLD": old
            case "ALL_NEW": new
            case "UPDATED_OLD": old.map { project($0, update.paths) }
            // Removed paths are not "updated values" (an index into a list would now name another element).
            case "UPDATED_NEW": project(new, update.sets.map(\.0) + update.adds.map(\.0) + update.deletes.map(\.0))
            default: nil
            }
            commit(name, k, expired.map { $0.merged(delta) } ?? delta, attributes.flatMap { $0.isEmpty ? nil : $0 },
                   capacity: capacity, units: DynamoAPI.writeUnits(max(DynamoJSON.size(new), old.map(DynamoJSON.size) ?? 0)), respond)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: query and scan

    private func query(_ j: JSON) throws -> JSON {
        try refuseLegacy(j, ["KeyConditions", "QueryFilter", "AttributesToGet", "ConditionalOperator"])
        let (name, schema) = try table(j)
        if try string(j, "IndexName") != nil { throw DynamoError.validation("Secondary indexes are not supported") }
        var p = try parser(j)
        guard let kce = try string(j, "KeyConditionExpression") else {
            throw DynamoError.validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
        }
        let kc = try KeyCondition(try p.condition(kce, kind: "KeyConditionExpression"), schema: schema)
        let forward: Bool
        switch j["ScanIndexForward"] {
        case nil, .null?: forward = true
        case .bool(let b)?: forward = b
        default: throw DynamoError.serialization("ScanIndexForward must be a boolean")
        }
        // Walk the partition from its start (or the ExclusiveStartKey) in the table's key order,
        // in the requested direction. The sort-key condition holds on one contiguous run of the
        // partition (every operator is a range, begins_with included: keys order by bytes), so
        // the walk ends when the run does.
        let order = tables.replicas[name]!.sortedKeys
        let pk = kc.partition, sortTest = kc.sort, low = kc.low, high = kc.high
        return try page(j, &p, name, schema) { after throws(DynamoError) in
            if let after, after.partition != pk {
                throw .validation("The provided starting key is outside query boundaries based on provided conditions")
            }
            let base: AnyIterator<ItemKey>
            if forward {
                let start = after ?? ItemKey(partition: pk, sort: low)
                base = order.ascending { after == nil ? !($0 < start) : start < $0 }
            } else if let after {
                base = order.descending { !($0 < after) }
            } else if let high {
                let end = ItemKey(partition: pk, sort: high)
                base = order.descending { end < $0 }
            } else {
                base = order.descending { pk < $0.partition }
            }
            var matched = false, done = false
            return AnyIterator {
                while !done, let k = base.next(), k.partition == pk {
                    if k.sort.map(sortTest) ?? true {
                        matched = true
                        return k
                    }
                    if matched { break }
                }
                done = true
                return nil
            }
        }
    }

    private func scan(_ j: JSON) throws -> JSON {
        try refuseLegacy(j, ["ScanFilter", "AttributesToGet", "ConditionalOperator"])
        let (name, schema) = try table(j)
        if try string(j, "IndexName") != nil { throw DynamoError.validation("Secondary indexes are not supported") }
        var p = try parser(j)
        let segment = try int(j, "Segment"), total = try int(j, "TotalSegments")
        guard (segment == nil) == (total == nil) else {
            throw DynamoError.validation("The TotalSegments parameter is required but was not present in the request when Segment parameter is present")
        }
        if let segment, let total {
            guard (1...1_000_000).contains(total), (0..<total).contains(segment) else {
                throw DynamoError.validation("The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: \(segment) is not less than TotalSegments: \(total)")
            }
        }
        let replica = tables.replicas[name]!
        return try page(j, &p, name, schema) { after throws(DynamoError) in
            guard let segment, let total, total > 1 else { return replica.sortedKeys.ascending(after: after) }
            // A segment is a range of partition-key hashes: it reads only its own keys.
            if let after, ScanKey(after).segment(of: total) != segment {
                throw .validation("The provided Exclusive start key does not map to the provided segment")
            }
            return replica.segmentKeys(segment, of: total, after: after)
        }
    }

    /// One page of Query/Scan over `walk(ExclusiveStartKey)` (the keys after it, in result
    /// order): Limit (items evaluated, before the filter, as DynamoDB counts), the 1 MB page
    /// limit, FilterExpression, ProjectionExpression and Select. Only the keys the page reads
    /// (and one more, to know whether there is a next page) are visited.
    private func page(_ j: JSON, _ p: inout ExpressionParser, _ table: String, _ schema: KeySchema,
                      walk: (ItemKey?) throws(DynamoError) -> AnyIterator<ItemKey>) throws -> JSON {
        let filter = try string(j, "FilterExpression").map { text throws(DynamoError) in try p.condition(text, kind: "FilterExpression") }
        let projection = try string(j, "ProjectionExpression").map { text throws(DynamoError) in try p.projection(text) }
        try p.checkAllUsed()
        let limit = try int(j, "Limit")
        if let limit, limit < 1 { throw DynamoError.validation("1 validation error detected: Value '\(limit)' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1") }
        let select = try string(j, "Select") ?? (projection == nil ? "ALL_ATTRIBUTES" : "SPECIFIC_ATTRIBUTES")
        switch select {
        case "ALL_ATTRIBUTES", "COUNT", "SPECIFIC_ATTRIBUTES": break
        case "ALL_PROJECTED_ATTRIBUTES": throw DynamoError.validation("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
        default: throw DynamoError.validation("1 validation error detected: Value '\(select)' at 'select' failed to satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]")
        }
        // DynamoDB: with a ProjectionExpression, Select may only be SPECIFIC_ATTRIBUTES.
        if projection != nil, select != "SPECIFIC_ATTRIBUTES" {
            throw DynamoError.validation("Cannot specify the ProjectionExpression when choosing to get \(select == "COUNT" ? "only the COUNT" : select)")
        }
        let capacity = try capacityMode(j), strong = try consistent(j)
        var after: ItemKey?
        if let esk = j["ExclusiveStartKey"], esk != .null { after = try key(esk, schema) }
        let keys = try walk(after)
        let replica = tables.replicas[table]!
        let ttl = ttlAttribute(table), now = Tables.wallMs()
        var items: [JSON] = []
        var scanned = 0, count = 0, bytes = 0
        var last: ItemKey?
        var next = keys.next()
        while let k = next, scanned < (limit ?? Int.max), bytes < DynamoAPI.maxPageBytes {
            next = keys.next()
            guard let item = TimeToLive.visible(replica.state(k), attribute: ttl, nowMs: now) else { continue }
            scanned += 1
            bytes += DynamoJSON.size(item)
            last = k
            guard try filter?.evaluate(item) ?? true else { continue }
            count += 1
            if select != "COUNT" { items.append(DynamoJSON.json(projection.map { project(item, $0) } ?? item)) }
        }
        var out: [(String, JSON)] = []
        if select != "COUNT" { out.append(("Items", .array(items))) }
        out += [("Count", .number(String(count))), ("ScannedCount", .number(String(scanned)))]
        if next != nil, let last { out.append(("LastEvaluatedKey", DynamoJSON.json(keyAttributes(last, schema)))) }
        // A page is charged for every item it read (before the filter), rounded up once.
        if let capacity { out.append(("ConsumedCapacity", DynamoAPI.consumed(table, DynamoAPI.readUnits(bytes, consistent: strong), indexes: capacity))) }
        return .object(out)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: batches

    private func batchGet(_ j: JSON) throws -> JSON {
        guard case .object(let requests)? = j["RequestItems"], !requests.isEmpty else {
            throw DynamoError.validation("1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1")
        }
        let capacity = try capacityMode(j)
        var responses: [(String, JSON)] = []
        var consumed: [JSON] = []
        var total = 0
        for (tableName, r) in requests {
            let (name, schema) = try table(named: tableName)
            try refuseLegacy(r, ["AttributesToGet"])
            guard case .array(let keysJSON)? = r["Keys"], !keysJSON.isEmpty else { throw DynamoError.validation("Keys must be a non-empty list") }
            total += keysJSON.count
            guard total <= 100 else { throw DynamoError.validation("Too many items requested for the BatchGetItem call") }
            var p = try parser(r)
            let projection = try string(r, "ProjectionExpression").map { text throws(DynamoError) in try p.projection(text) }
            try p.checkAllUsed()
            let strong = try consistent(r)
            var seen = Set<ItemKey>()
            var items: [JSON] = []
            var units = 0.0
            for kj in keysJSON {
                let k = try key(kj, schema)
                guard seen.insert(k).inserted else { throw DynamoError.validation("Provided list of item keys contains duplicates") }
                let item = visible(name, k)
                units += DynamoAPI.readUnits(item.map(DynamoJSON.size) ?? 0, consistent: strong)
                if let item { items.append(DynamoJSON.json(projection.map { project(item, $0) } ?? item)) }
            }
            responses.append((name, .array(items)))
            if let capacity { consumed.append(DynamoAPI.consumed(name, units, indexes: capacity)) }
        }
        // Every key is read at once from the local replica: nothing is ever left unprocessed.
        return .object([("Responses", .object(responses)), ("UnprocessedKeys", .object([]))]
            + (capacity != nil ? [("ConsumedCapacity", .array(consumed))] : []))
    }

    private func batchWrite(_ j: JSON, _ respond: @escaping Respond) throws {
        guard case .object(let requests)? = j["RequestItems"], !requests.isEmpty else {
            throw DynamoError.validation("1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1")
        }
        let capacity = try capacityMode(j)
        // Everything is validated before anything is written: a bad request writes nothing.
        var writes: [(table: String, key: ItemKey, item: [String: AttributeValue]?)] = []
        for (tableName, list) in requests {
            let (name, schema) = try table(named: tableName)
            guard case .array(let entries) = list, !entries.isEmpty else { throw DynamoError.validation("Each table in RequestItems needs a non-empty list of requests") }
            var seen = Set<ItemKey>()
            for e in entries {
                let k: ItemKey
                var item: [String: AttributeValue]?
                if let put = e["PutRequest"] {
                    let values = try DynamoJSON.item(put["Item"])
                    try checkSize(values)
                    k = try itemKey(values, schema)
                    item = values
                } else if let del = e["DeleteRequest"] {
                    k = try key(del["Key"], schema)
                } else {
                    throw DynamoError.validation("Each write request holds a PutRequest or a DeleteRequest")
                }
                guard seen.insert(k).inserted else { throw DynamoError.validation("Provided list of item keys contains duplicates") }
                writes.append((name, k, item))
            }
        }
        guard writes.count <= 25 else {
            throw DynamoError.validation("1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length less than or equal to 25")
        }
        let t = tables.core.now(wallMs: Tables.wallMs())
        let deltas = writes.map { w in
            var state = tables.replicas[w.table]!.state(w.key) ?? ItemState()
            return (w.table, w.key, w.item.map { state.put($0, at: t) } ?? state.delete(at: t))
        }
        // Per table, in request order, the units of each write (the larger of the old and new item).
        var units: [(String, Double)] = []
        for w in writes where capacity != nil {
            let size = max(w.item.map(DynamoJSON.size) ?? 0, visible(w.table, w.key).map(DynamoJSON.size) ?? 0)
            if let i = units.firstIndex(where: { $0.0 == w.table }) { units[i].1 += DynamoAPI.writeUnits(size) } else { units.append((w.table, DynamoAPI.writeUnits(size))) }
        }
        tables.commit(deltas) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            // All or nothing: a batch is one group commit, or throttled whole when the disk is behind.
            let consumed: [(String, JSON)] = capacity.map { c in [("ConsumedCapacity", .array(units.map { DynamoAPI.consumed($0.0, $0.1, indexes: c) }))] } ?? []
            respond(DynamoAPI.ok(.object([("UnprocessedItems", .object([]))] + consumed)))
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: tables

    private func description(_ name: String, status: String = "ACTIVE") -> JSON {
        let r = tables.replicas[name]
        let schema = r?.schema ?? KeySchema(partitionKey: "")
        var keySchema: [JSON] = [.object([("AttributeName", .string(schema.partitionKey)), ("KeyType", .string("HASH"))])]
        var definitions: [JSON] = [.object([("AttributeName", .string(schema.partitionKey)), ("AttributeType", .string(schema.partitionKeyType))])]
        if let sk = schema.sortKey {
            keySchema.append(.object([("AttributeName", .string(sk)), ("KeyType", .string("RANGE"))]))
            definitions.append(.object([("AttributeName", .string(sk)), ("AttributeType", .string(schema.sortKeyType))]))
        }
        var count = 0, bytes = 0
        let ttl = ttlAttribute(name), now = Tables.wallMs()
        for state in r?.items.values ?? [:].values {
            guard let v = TimeToLive.visible(state, attribute: ttl, nowMs: now) else { continue }
            count += 1
            bytes += DynamoJSON.size(v)
        }
        let created = Double(tables.core.catalog[name]?.at.physicalMs ?? 0) / 1000
        return .object([
            ("TableName", .string(name)), ("TableStatus", .string(status)),
            ("TableArn", .string("arn:aws:dynamodb:tandem:000000000000:table/\(name)")),
            ("KeySchema", .array(keySchema)), ("AttributeDefinitions", .array(definitions)),
            ("CreationDateTime", .number(String(created))), ("ItemCount", .number(String(count))),
            ("TableSizeBytes", .number(String(bytes))),
            ("BillingModeSummary", .object([("BillingMode", .string("PAY_PER_REQUEST"))])),
            ("ProvisionedThroughput", .object([("NumberOfDecreasesToday", .number("0")), ("ReadCapacityUnits", .number("0")),
                                               ("WriteCapacityUnits", .number("0"))])),
        ])
    }

    private func createTable(_ j: JSON, _ respond: @escaping Respond) throws {
        guard let name = try string(j, "TableName") else { throw DynamoError.validation("TableName is required") }
        guard (3...255).contains(name.utf8.count), !name.hasPrefix("_"),
              name.unicodeScalars.allSatisfy({ ($0.isASCII && CharacterSet.alphanumerics.contains($0)) || "_.-".unicodeScalars.contains($0) }) else {
            throw DynamoError.validation("TableName must be 3 to 255 characters of [a-zA-Z0-9_.-], not starting with '_'")
        }
        for unsupported in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] where j[unsupported] != nil && j[unsupported] != .array([]) {
            throw DynamoError.validation("\(unsupported) are not supported")
        }
        guard case .array(let ks)? = j["KeySchema"], (1...2).contains(ks.count) else {
            throw DynamoError.validation("1 validation error detected: Value at 'keySchema' failed to satisfy constraint: Member must have length less than or equal to 2")
        }
        guard case .array(let ads)? = j["AttributeDefinitions"] else { throw DynamoError.validation("AttributeDefinitions is required") }
        var types: [String: String] = [:]
        for ad in ads {
            guard let n = try string(ad, "AttributeName"), let t = try string(ad, "AttributeType"), ["S", "N", "B"].contains(t) else {
                throw DynamoError.validation("Each attribute definition has an AttributeName and an AttributeType of S, N or B")
            }
            types[n] = t
        }
        var hash: String?, range: String?
        for (i, k) in ks.enumerated() {
            guard let n = try string(k, "AttributeName"), let t = try string(k, "KeyType") else {
                throw DynamoError.validation("Each key schema element has an AttributeName and a KeyType")
            }
            switch (t, i) {
            case ("HASH", 0): hash = n
            case ("RANGE", 1): range = n
            default: throw DynamoError.validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
            }
        }
        guard let hash, range != hash else { throw DynamoError.validation("Both the Hash Key and the Range Key element in the KeySchema have the same name") }
        guard Set(types.keys) == Set([hash] + (range.map { [$0] } ?? [])) else {
            throw DynamoError.validation("One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions")
        }
        if tables.replicas[name] != nil { throw DynamoError("ResourceInUseException", "Table already exists: \(name)") }
        let schema = KeySchema(partitionKey: hash, sortKey: range, partitionKeyType: types[hash]!, sortKeyType: range.map { types[$0]! } ?? "S")
        try tables.changeTable(name, schema: schema) { [weak self] error in
            guard let self else { return }
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(.object([("TableDescription", self.description(name))])))
        }
    }

    private func deleteTable(_ j: JSON, _ respond: @escaping Respond) throws {
        let (name, _) = try table(j)
        let before = description(name, status: "DELETING")
        try tables.changeTable(name, schema: nil) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(.object([("TableDescription", before)])))
        }
    }

    private func listTables(_ j: JSON) throws -> JSON {
        let limit = try int(j, "Limit") ?? 100
        guard (1...100).contains(limit) else { throw DynamoError.validation("Limit must be between 1 and 100") }
        let after = try string(j, "ExclusiveStartTableName")
        let names = tables.replicas.keys.filter { n in !n.hasPrefix("_") && (after.map { n > $0 } ?? true) }.sorted()
        var out: [(String, JSON)] = [("TableNames", .array(names.prefix(limit).map { .string($0) }))]
        if names.count > limit { out.append(("LastEvaluatedTableName", .string(names[limit - 1]))) }
        return .object(out)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: time to live

    private func describeTimeToLive(_ j: JSON) throws -> JSON {
        let (name, _) = try table(j)
        let d: [(String, JSON)] = if let a = ttlAttribute(name) {
            [("TimeToLiveStatus", .string("ENABLED")), ("AttributeName", .string(a))]
        } else {
            [("TimeToLiveStatus", .string("DISABLED"))]
        }
        return .object([("TimeToLiveDescription", .object(d))])
    }

    /// Enables or disables TTL on a table: one item of the reserved `_ttl` table, so the setting
    /// replicates like any write (and every node expires the same items).
    private func updateTimeToLive(_ j: JSON) throws -> (String, String?, JSON) {
        let (name, _) = try table(j)
        guard case .object? = j["TimeToLiveSpecification"], let spec = j["TimeToLiveSpecification"] else {
            throw DynamoError.validation("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null")
        }
        guard case .bool(let enabled)? = spec["Enabled"] else { throw DynamoError.validation("TimeToLiveSpecification.Enabled must be a boolean") }
        guard let attribute = try string(spec, "AttributeName"), !attribute.isEmpty, attribute.utf8.count <= 255 else {
            throw DynamoError.validation("TimeToLiveSpecification.AttributeName must be 1 to 255 characters")
        }
        let current = ttlAttribute(name)
        if enabled, current != nil { throw DynamoError.validation("TimeToLive is already enabled") }
        if !enabled, current == nil { throw DynamoError.validation("TimeToLive is already disabled") }
        if !enabled, current != attribute { throw DynamoError.validation("TimeToLive is active on a different AttributeName: current value is \(current!)") }
        return (name, enabled ? attribute : nil, .object([("TimeToLiveSpecification", .object([("Enabled", .bool(enabled)), ("AttributeName", .string(attribute))]))]))
    }

    private func updateTimeToLive(_ j: JSON, _ respond: @escaping Respond) throws {
        let (name, attribute, answer) = try updateTimeToLive(j)
        tables.setTTL(name, attribute: attribute) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(answer))
        }
    }
}
