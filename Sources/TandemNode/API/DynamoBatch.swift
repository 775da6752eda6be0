import Foundation
import GlobalTable
import Storage
import TandemCore
import Transport

/// DynamoDB: BatchGetItem and BatchWriteItem.
extension DynamoAPI {
    // MARK: batches

    func batchGet(_ j: JSON) throws -> JSON {
        guard case .object(let requests)? = j["RequestItems"], !requests.isEmpty else {
            throw DynamoError.validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        }
        let capacity = try capacityMode(j)
        var responses: [(String, JSON)] = []
        var consumed: [JSON] = []
        var total = 0
        for (tableName, r) in requests {
            let (name, schema) = try table(named: tableName)
            try LegacyParameters.check(r)
            guard case .array(let keysJSON)? = r["Keys"], !keysJSON.isEmpty else {
                throw DynamoError.validation("Keys must be a non-empty list")
            }
            total += keysJSON.count
            guard total <= 100 else { throw DynamoError.validation("Too many items requested for the BatchGetItem call") }
            var p = try parser(r)
            let projection =
                try string(r, "ProjectionExpression").map { text throws(DynamoError) in try p.projection(text) }
                ?? LegacyParameters.attributesToGet(r)
            try p.checkAllUsed()
            let strong = try consistent(r)
            var seen = Set<ItemKey>()
            var items: [JSON] = []
            var units = 0.0
            for kj in keysJSON {
                let k = try key(kj, schema)
                guard seen.insert(k).inserted else { throw DynamoError.validation("Provided list of item keys contains duplicates") }
                let item = try visible(name, k)
                units += DynamoAPI.readUnits(item.map(DynamoJSON.size) ?? 0, consistent: strong)
                if let item { items.append(DynamoJSON.json(projection.map { project(item, $0) } ?? item)) }
            }
            responses.append((name, .array(items)))
            if let capacity { consumed.append(DynamoAPI.consumed(name, units, indexes: capacity)) }
        }
        // Every key is read at once from the local replica: nothing is ever left unprocessed.
        return .object(
            [("Responses", .object(responses)), ("UnprocessedKeys", .object([]))]
                + (capacity != nil ? [("ConsumedCapacity", .array(consumed))] : []))
    }

    func batchWrite(_ j: JSON, _ respond: @escaping Respond) throws {
        guard case .object(let requests)? = j["RequestItems"], !requests.isEmpty else {
            throw DynamoError.validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        }
        let capacity = try capacityMode(j)
        // Everything is validated before anything is written: a bad request writes nothing.
        var writes: [(table: String, key: ItemKey, item: [String: AttributeValue]?)] = []
        for (tableName, list) in requests {
            let (name, schema) = try table(named: tableName)
            guard case .array(let entries) = list, !entries.isEmpty else {
                throw DynamoError.validation("Each table in RequestItems needs a non-empty list of requests")
            }
            var seen = Set<ItemKey>()
            for e in entries {
                let k: ItemKey
                var item: [String: AttributeValue]?
                if let put = e["PutRequest"] {
                    let values = try DynamoJSON.item(put["Item"])
                    try checkSize(values)
                    k = try itemKey(values, schema)
                    try checkIndexKeys(name, values)
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
            throw DynamoError.validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length less than or equal to 25"
            )
        }
        let t = tables.core.now(wallMs: Tables.wallMs())
        let deltas = try writes.map { w in
            var state = try tables.replicas[w.table]!.state(w.key) ?? ItemState()
            return (w.table, w.key, w.item.map { state.put($0, at: t) } ?? state.delete(at: t))
        }
        // Per table, in request order, the units of each write (the larger of the old and new item).
        var units: [(String, Double)] = []
        for w in writes where capacity != nil {
            let size = max(w.item.map(DynamoJSON.size) ?? 0, try visible(w.table, w.key).map(DynamoJSON.size) ?? 0)
            if let i = units.firstIndex(where: { $0.0 == w.table }) {
                units[i].1 += DynamoAPI.writeUnits(size)
            } else {
                units.append((w.table, DynamoAPI.writeUnits(size)))
            }
        }
        tables.commit(deltas) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            // All or nothing: a batch is one group commit, or throttled whole when the disk is behind.
            let consumed: [(String, JSON)] =
                capacity.map { c in [("ConsumedCapacity", .array(units.map { DynamoAPI.consumed($0.0, $0.1, indexes: c) }))] } ?? []
            respond(DynamoAPI.ok(.object([("UnprocessedItems", .object([]))] + consumed)))
        }
    }
}
