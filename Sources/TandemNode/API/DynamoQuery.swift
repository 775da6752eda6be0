import Foundation
import GlobalTable
import Storage
import TandemCore
import Transport

/// DynamoDB: Query and Scan: pages of a table in key order, filtered and projected, at most
/// `maxPageBytes` a page.
extension DynamoAPI {
    // MARK: query and scan

    func query(_ j: JSON) throws -> JSON {
        try LegacyParameters.check(j, conditions: "QueryFilter")
        let (name, schema) = try table(j)
        let index = try self.index(j, table: name)
        var p = try parser(j)
        let keyCondition =
            try string(j, "KeyConditionExpression").map { text throws(DynamoError) in try p.condition(text, kind: "KeyConditionExpression")
            }
            ?? LegacyParameters.keyConditions(j)
        guard let keyCondition else {
            throw DynamoError.validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
        }
        let kc = try KeyCondition(keyCondition, schema: index?.definition.schema ?? schema)
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
        let replica = tables.replicas[name]!
        let pk = kc.partition, sortTest = kc.sort, low = kc.low, high = kc.high
        if let index {
            // The same walk over the index's entries: its key order is (index key, table key).
            let d = index.definition
            return try page(j, &p, name, schema, legacyFilter: "QueryFilter", filterRefuses: d.keyNames, index: index) {
                esk, base throws(DynamoError) in
                let after = try esk.map { e throws(DynamoError) in try indexStartKey(e, d, schema) }
                if let after, after.index.partition != pk {
                    throw .validation("The provided starting key is outside query boundaries based on provided conditions")
                }
                let start: IndexRange.Start =
                    if let after { .after(after) } else if let b = forward ? low : high { .indexKey(ItemKey(partition: pk, sort: b)) } else
                    {
                        .edge
                    }
                var matched = false
                let walk = replica.indexEntries(d, IndexRange(partition: pk, start: start, descending: !forward))
                // The sort-key condition holds on one run of the partition, as in the table.
                return indexRows(walk, d, table: name, schema: schema, base: base) { e in
                    if e.key.index.sort.map(sortTest) ?? true {
                        matched = true
                        return true
                    }
                    return matched ? nil : false
                }
            }
        }
        let keyNames = [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? [])
        return try page(j, &p, name, schema, legacyFilter: "QueryFilter", filterRefuses: keyNames) { esk, _ throws(DynamoError) in
            let after = try esk.map { e throws(DynamoError) in try key(e, schema) }
            if let after, after.partition != pk {
                throw .validation("The provided starting key is outside query boundaries based on provided conditions")
            }
            var base: Walk<ItemKey>
            if forward {
                base = replica.keys(from: after.map { .after($0) } ?? .atOrAfter(ItemKey(partition: pk, sort: low)))
            } else if let after {
                base = replica.keys(from: .after(after), descending: true)
            } else if let high {
                base = replica.keys(from: .atOrAfter(ItemKey(partition: pk, sort: high)), descending: true)
            } else {
                base = replica.keys(from: .partitionEnd(pk), descending: true)
            }
            var matched = false, done = false
            return tableRows(name, schema) { () throws(TandemError) -> ItemKey? in
                while !done, let k = try base.next(), k.partition == pk {
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

    func scan(_ j: JSON) throws -> JSON {
        try LegacyParameters.check(j, conditions: "ScanFilter")
        let (name, schema) = try table(j)
        let index = try self.index(j, table: name)
        var p = try parser(j)
        let segment = try int(j, "Segment"), total = try int(j, "TotalSegments")
        guard (segment == nil) == (total == nil) else {
            throw DynamoError.validation(
                "The TotalSegments parameter is required but was not present in the request when Segment parameter is present")
        }
        if let segment, let total {
            guard (1...1_000_000).contains(total), (0..<total).contains(segment) else {
                throw DynamoError.validation(
                    "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: \(segment) is not less than TotalSegments: \(total)"
                )
            }
        }
        let replica = tables.replicas[name]!
        if let index {
            // An index segment: the entries whose table key is in the table's segment (each
            // segment walks the whole index, keeping its own).
            let d = index.definition
            return try page(j, &p, name, schema, legacyFilter: "ScanFilter", index: index) { esk, base throws(DynamoError) in
                let after = try esk.map { e throws(DynamoError) in try indexStartKey(e, d, schema) }
                if let after, let segment, let total, ScanKey(after.table).segment(of: total) != segment {
                    throw .validation("The provided Exclusive start key does not map to the provided segment")
                }
                let walk = replica.indexEntries(d, IndexRange(partition: nil, start: after.map { .after($0) } ?? .edge))
                let rows = indexRows(walk, d, table: name, schema: schema, base: base)
                guard let segment, let total, total > 1 else { return rows }
                return RowSource { () throws(TandemError) -> Row? in
                    while let r = try rows.next() {
                        if case .index(let k) = r.key, let t = try? schema.key(of: k), ScanKey(t).segment(of: total) == segment { return r }
                    }
                    return nil
                }
            }
        }
        return try page(j, &p, name, schema, legacyFilter: "ScanFilter") { esk, _ throws(DynamoError) in
            let after = try esk.map { e throws(DynamoError) in try key(e, schema) }
            guard let segment, let total, total > 1 else {
                var keys = replica.keys(after: after)
                return tableRows(name, schema) { () throws(TandemError) in try keys.next() }
            }
            // A segment is a range of partition-key hashes: it reads only its own keys.
            if let after, ScanKey(after).segment(of: total) != segment {
                throw .validation("The provided Exclusive start key does not map to the provided segment")
            }
            var keys = replica.segmentKeys(segment, of: total, after: after)
            return tableRows(name, schema) { () throws(TandemError) in try keys.next() }
        }
    }

    /// One page of Query/Scan over `walk(ExclusiveStartKey)` (the keys after it, in result
    /// order): Limit (items evaluated, before the filter, as DynamoDB counts), the 1 MB page
    /// limit, FilterExpression, ProjectionExpression and Select. Only the keys the page reads
    /// (and one more, to know whether there is a next page) are visited.
    private func page(
        _ j: JSON, _ p: inout ExpressionParser, _ table: String, _ schema: KeySchema, legacyFilter: String,
        filterRefuses keyNames: [String] = [], index: IndexState? = nil,
        walk: (_ exclusiveStart: JSON?, _ base: Bool) throws(DynamoError) -> RowSource
    ) throws -> JSON {
        let expression = try string(j, "FilterExpression").map { text throws(DynamoError) in try p.condition(text, kind: "FilterExpression")
        }
        let filter = try expression ?? LegacyParameters.filter(j, legacyFilter)
        // A Query's key belongs in its key condition: DynamoDB refuses it in the filter.
        if let key = filter?.paths.first(where: { keyNames.contains($0.attribute) }) {
            throw DynamoError.validation(
                "\(expression != nil ? "Filter Expression" : legacyFilter) can only contain non-primary key attributes: Primary key attribute: \(key.attribute)"
            )
        }
        let projection =
            try string(j, "ProjectionExpression").map { text throws(DynamoError) in try p.projection(text) }
            ?? LegacyParameters.attributesToGet(j)
        try p.checkAllUsed()
        let limit = try int(j, "Limit")
        if let limit, limit < 1 {
            throw DynamoError.validation(
                "1 validation error detected: Value '\(limit)' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )
        }
        // DynamoDB's default: all attributes of a table, all projected attributes of an index.
        let select =
            try string(j, "Select")
            ?? (projection != nil ? "SPECIFIC_ATTRIBUTES" : index != nil ? "ALL_PROJECTED_ATTRIBUTES" : "ALL_ATTRIBUTES")
        switch select {
        case "ALL_ATTRIBUTES", "COUNT", "SPECIFIC_ATTRIBUTES": break
        case "ALL_PROJECTED_ATTRIBUTES" where index != nil: break
        case "ALL_PROJECTED_ATTRIBUTES":
            throw DynamoError.validation("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
        default:
            throw DynamoError.validation(
                "1 validation error detected: Value '\(select)' at 'select' failed to satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]"
            )
        }
        // DynamoDB: with a ProjectionExpression (or AttributesToGet), Select may only be SPECIFIC_ATTRIBUTES.
        if projection != nil, select != "SPECIFIC_ATTRIBUTES" {
            let field = j["AttributesToGet"].map { $0 != .null } ?? false ? "AttributesToGet" : "ProjectionExpression"
            throw DynamoError.validation(
                "Cannot specify the \(field) when choosing to get \(select == "COUNT" ? "only the COUNT" : select)")
        }
        let capacity = try capacityMode(j), strong = try consistent(j)
        let base =
            try index.map { s throws(DynamoError) in try needsBase(s, select: select, projection: projection, schema: schema) } ?? false
        let esk = j["ExclusiveStartKey"].flatMap { $0 == .null ? nil : $0 }
        let rows = try walk(esk, base)
        var items: [JSON] = []
        var scanned = 0, count = 0, bytes = 0
        var last: Row.Key?
        var next = try rows.next()
        while let row = next, scanned < (limit ?? Int.max), bytes < DynamoAPI.maxPageBytes {
            next = try rows.next()
            guard let item = row.item else { continue }
            scanned += 1
            bytes += DynamoJSON.size(item)
            last = row.key
            guard try filter?.evaluate(item) ?? true else { continue }
            count += 1
            if select != "COUNT" { items.append(DynamoJSON.json(projection.map { project(item, $0) } ?? item)) }
        }
        var out: [(String, JSON)] = []
        if select != "COUNT" { out.append(("Items", .array(items))) }
        out += [("Count", .number(String(count))), ("ScannedCount", .number(String(scanned)))]
        if next != nil, let last {
            let key: [String: AttributeValue] =
                switch last {
                case .table(let k): keyAttributes(k, schema)
                case .index(let attributes): attributes
                }
            out.append(("LastEvaluatedKey", DynamoJSON.json(key)))
        }
        // A page is charged for every item it read (before the filter), rounded up once.
        if let capacity {
            out.append(("ConsumedCapacity", DynamoAPI.consumed(table, DynamoAPI.readUnits(bytes, consistent: strong), indexes: capacity)))
        }
        return .object(out)
    }
}

/// A Query's or Scan's items in result order, read from the store as they are asked for: the
/// item (nil: not visible, skipped) and the key a LastEvaluatedKey names (the table key; for an
/// index, the index key and the table key, as DynamoDB gives it).
struct RowSource {
    let next: () throws(TandemError) -> Row?
}

struct Row {
    enum Key {
        case table(ItemKey)
        case index([String: AttributeValue])
    }
    var item: [String: AttributeValue]?
    var key: Key
}

extension DynamoAPI {
    /// The rows of a table's keys: each item as this node's replica has it, hidden once its TTL passed.
    func tableRows(_ table: String, _ schema: KeySchema, _ keys: @escaping () throws(TandemError) -> ItemKey?) -> RowSource {
        let replica = tables.replicas[table]!
        let ttl = ttlAttribute(table), now = Tables.wallMs()
        return RowSource { () throws(TandemError) -> Row? in
            guard let k = try keys() else { return nil }
            return Row(item: TimeToLive.visible(try replica.state(k), attribute: ttl, nowMs: now), key: .table(k))
        }
    }
}
