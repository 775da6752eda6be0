import Foundation
import GlobalTable
import Storage
import TandemCore
import Transport

/// DynamoDB: GetItem, PutItem, DeleteItem and UpdateItem: one item, its condition checked against this
/// node's replica, answered once the write is durable.
extension DynamoAPI {
    // MARK: items

    func getItem(_ j: JSON) throws -> JSON {
        try LegacyParameters.check(j)
        let (name, schema) = try table(j)
        let k = try key(j["Key"], schema)
        var p = try parser(j)
        let projection =
            try string(j, "ProjectionExpression").map { text throws(DynamoError) in try p.projection(text) }
            ?? LegacyParameters.attributesToGet(j)
        try p.checkAllUsed()
        let capacity = try capacityMode(j), strong = try consistent(j)
        let item = try visible(name, k)
        let consumed =
            capacity.map {
                [
                    (
                        "ConsumedCapacity",
                        DynamoAPI.consumed(name, DynamoAPI.readUnits(item.map(DynamoJSON.size) ?? 0, consistent: strong), indexes: $0)
                    )
                ]
            } ?? []
        guard let item else { return .object(consumed) }
        return .object([("Item", DynamoJSON.json(projection.map { project(item, $0) } ?? item))] + consumed)
    }

    func putItem(_ j: JSON, _ respond: @escaping Respond) throws {
        try LegacyParameters.check(j, conditions: "Expected")
        let (name, schema) = try table(j)
        let item = try DynamoJSON.item(j["Item"])
        let k = try itemKey(item, schema)
        try checkSize(item)
        try checkIndexKeys(name, item)
        var p = try parser(j)
        let condition = try condition(j, &p)
        try p.checkAllUsed()
        let rv = try returnValues(j, allowed: ["NONE", "ALL_OLD"])
        let capacity = try capacityMode(j)
        let (start, expired) = try current(name, k)
        var state = start
        let old = state.visible
        try conditionChecked(condition, old, j, respond) {
            let delta = state.put(item, at: tables.core.now(wallMs: Tables.wallMs()))
            commit(
                name, k, expired.map { $0.merged(delta) } ?? delta, rv == "ALL_OLD" ? old : nil, capacity: capacity,
                units: DynamoAPI.writeUnits(max(DynamoJSON.size(item), old.map(DynamoJSON.size) ?? 0)), respond)
        }
    }

    /// A write's condition: its ConditionExpression, or the legacy `Expected` (never both).
    private func condition(_ j: JSON, _ p: inout ExpressionParser) throws(DynamoError) -> Condition? {
        if let text = try string(j, "ConditionExpression") { return try p.condition(text) }
        return try LegacyParameters.expected(j)
    }

    /// Runs `body` if the condition holds; otherwise answers ConditionalCheckFailedException.
    private func conditionChecked(
        _ c: Condition?, _ old: [String: AttributeValue]?, _ j: JSON, _ respond: Respond,
        _ body: () throws -> Void
    ) throws {
        do {
            try checkCondition(c, old, j)
        } catch let f as ConditionFailed {
            let e = JSON.object([
                ("__type", .string("com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException")),
                ("message", .string("The conditional request failed")), ("Item", DynamoJSON.json(f.item))
            ])
            return respond(HTTPResponse(status: 400, contentType: DynamoAPI.contentType, body: Array(e.serialized.utf8)))
        }
        try body()
    }

    func deleteItem(_ j: JSON, _ respond: @escaping Respond) throws {
        try LegacyParameters.check(j, conditions: "Expected")
        let (name, schema) = try table(j)
        let k = try key(j["Key"], schema)
        var p = try parser(j)
        let condition = try condition(j, &p)
        try p.checkAllUsed()
        let rv = try returnValues(j, allowed: ["NONE", "ALL_OLD"])
        let capacity = try capacityMode(j)
        let (start, expired) = try current(name, k)
        var state = start
        let old = state.visible
        try conditionChecked(condition, old, j, respond) {
            let delta = state.delete(at: tables.core.now(wallMs: Tables.wallMs()))
            commit(
                name, k, expired.map { $0.merged(delta) } ?? delta, rv == "ALL_OLD" ? old : nil, capacity: capacity,
                units: DynamoAPI.writeUnits(old.map(DynamoJSON.size) ?? 0), respond)
        }
    }

    func updateItem(_ j: JSON, _ respond: @escaping Respond) throws {
        try LegacyParameters.check(j, conditions: "Expected")
        let (name, schema) = try table(j)
        let k = try key(j["Key"], schema)
        var p = try parser(j)
        let update =
            try string(j, "UpdateExpression").map { text throws(DynamoError) in try p.update(text) }
            ?? LegacyParameters.attributeUpdates(j) ?? UpdateExpression()
        let condition = try condition(j, &p)
        try p.checkAllUsed()
        let rv = try returnValues(j, allowed: ["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"])
        let capacity = try capacityMode(j)
        let (start, expired) = try current(name, k)
        var state = start
        let old = state.visible
        try conditionChecked(condition, old, j, respond) {
            let t = tables.core.now(wallMs: Tables.wallMs())
            let keyNames = [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? [])
            var delta = try DynamoUpdate.apply(update, to: &state, keyNames: keyNames, at: t)
            // Only removals (REMOVE, DELETE from a set) on a missing item: nothing to remove,
            // and DynamoDB creates no item for them (an update with no action at all does).
            if old == nil, update.sets.isEmpty, update.adds.isEmpty, !update.paths.isEmpty {
                let consumed = capacity.map { [("ConsumedCapacity", DynamoAPI.consumed(name, DynamoAPI.writeUnits(0), indexes: $0))] } ?? []
                return respond(DynamoAPI.ok(.object(consumed)))
            }
            // The key attributes are written with every update, so the item exists (as UpdateItem
            // creates it) even after a concurrent delete elsewhere hid its older writes.
            for (n, v) in keyAttributes(k, schema) { delta.merge(state.set(n, v, at: t)) }
            let new = state.visible ?? [:]
            try checkSize(new, update: true)
            try checkIndexKeys(name, new, update: true)
            let attributes: [String: AttributeValue]? =
                switch rv {
                case "ALL_OLD": old
                case "ALL_NEW": new
                case "UPDATED_OLD": old.map { project($0, update.paths) }
                // Every path written, read from the new item: a removed attribute is gone, but
                // after `REMOVE l[1]` the element that moved into l[1] is returned, as DynamoDB does.
                case "UPDATED_NEW": project(new, update.paths)
                default: nil
                }
            commit(
                name, k, expired.map { $0.merged(delta) } ?? delta, attributes.flatMap { $0.isEmpty ? nil : $0 },
                capacity: capacity, units: DynamoAPI.writeUnits(max(DynamoJSON.size(new), old.map(DynamoJSON.size) ?? 0)), respond)
        }
    }
}
