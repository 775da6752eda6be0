import Foundation
import GlobalTable
import TandemCore

/// DynamoDB secondary indexes on the wire: CreateTable's GlobalSecondaryIndexes and
/// LocalSecondaryIndexes, UpdateTable's GlobalSecondaryIndexUpdates, how DescribeTable shows
/// them, and the index key checks every write makes. Definitions live in the reserved table
/// `_indexes` (`Tables.changeIndexes`); the core builds and keeps the entries
/// (`GlobalTable/SecondaryIndex.swift`). Checked as DynamoDB checks them, in its words where
/// clients match on them; DynamoDB's limits: 20 GSIs and 5 LSIs a table, 100 NonKeyAttributes
/// over all of a table's indexes, index names 3–255 characters of [a-zA-Z0-9_.-].
extension DynamoAPI {
    static let maxGlobalIndexes = 20
    static let maxLocalIndexes = 5
    static let maxProjectedAttributes = 100

    // ==== ------------------------------------------------------------------------------------
    // MARK: Definitions

    /// One index of a request (`field` names it in messages, as DynamoDB's validation does).
    func indexDefinition(
        _ j: JSON, field: String, local: Bool, types: [String: String], table: KeySchema, id: UInt64
    ) throws(DynamoError) -> IndexDefinition {
        guard case .object = j else { throw .serialization("\(field) must be a structure") }
        guard let name = try string(j, "IndexName") else {
            throw .validation(
                "1 validation error detected: Value null at '\(field).indexName' failed to satisfy constraint: Member must not be null")
        }
        guard (3...255).contains(name.utf8.count) else {
            throw .validation(
                "1 validation error detected: Value '\(name)' at '\(field).indexName' failed to satisfy constraint: Member must have length \(name.utf8.count < 3 ? "greater than or equal to 3" : "less than or equal to 255")"
            )
        }
        guard
            name.unicodeScalars.allSatisfy({ ($0.isASCII && CharacterSet.alphanumerics.contains($0)) || "_.-".unicodeScalars.contains($0) })
        else {
            throw .validation(
                "1 validation error detected: Value '\(name)' at '\(field).indexName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
            )
        }
        guard case .array(let ks)? = j["KeySchema"], (1...2).contains(ks.count) else {
            throw .validation(
                "1 validation error detected: Value at '\(field).keySchema' failed to satisfy constraint: Member must have length less than or equal to 2"
            )
        }
        var hash: String?, range: String?
        for (i, k) in ks.enumerated() {
            guard let n = try string(k, "AttributeName"), let t = try string(k, "KeyType") else {
                throw .validation("Each key schema element has an AttributeName and a KeyType")
            }
            switch (t, i) {
            case ("HASH", 0): hash = n
            case ("RANGE", 1): range = n
            default: throw .validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
            }
        }
        guard let hash, range != hash else {
            throw .validation("Both the Hash Key and the Range Key element in the KeySchema have the same name")
        }
        let keys = [hash] + (range.map { [$0] } ?? [])
        for k in keys where types[k] == nil {
            throw .validation(
                "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [\(keys.joined(separator: ", "))], AttributeDefinitions: [\(types.keys.sorted().joined(separator: ", "))]"
            )
        }
        if local {
            guard table.sortKey != nil else {
                throw .validation(
                    "One or more parameter values were invalid: Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex"
                )
            }
            guard hash == table.partitionKey, range != nil else {
                throw .validation(
                    "One or more parameter values were invalid: Index KeySchema does not have the same leading hash key as table KeySchema for index: \(name). index hash key: \(hash), table hash key: \(table.partitionKey)"
                )
            }
        }
        guard case .object? = j["Projection"], let projection = j["Projection"] else {
            throw .validation(
                "1 validation error detected: Value null at '\(field).projection' failed to satisfy constraint: Member must not be null")
        }
        let type = try string(projection, "ProjectionType") ?? "INCLUDE"
        let nonKey: [String]?
        switch projection["NonKeyAttributes"] {
        case nil, .null?: nonKey = nil
        case .array(let a)?:
            nonKey = try a.map { v throws(DynamoError) in
                guard case .string(let s) = v, !s.isEmpty else { throw .validation("NonKeyAttributes holds attribute names") }
                return s
            }
        default: throw .serialization("NonKeyAttributes must be a list")
        }
        let p: IndexDefinition.Projection
        switch type {
        case "ALL", "KEYS_ONLY":
            if nonKey != nil {
                throw .validation("One or more parameter values were invalid: ProjectionType is \(type), but NonKeyAttributes is specified")
            }
            p = type == "ALL" ? .all : .keysOnly
        case "INCLUDE":
            guard let nonKey, !nonKey.isEmpty else {
                throw .validation(
                    "One or more parameter values were invalid: NonKeyAttributes must not be empty when ProjectionType is INCLUDE")
            }
            p = .include(Array(Set(nonKey)).sorted())
        default:
            throw .validation(
                "1 validation error detected: Value '\(type)' at '\(field).projection.projectionType' failed to satisfy constraint: Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]"
            )
        }
        let schema = KeySchema(
            partitionKey: hash, sortKey: range, partitionKeyType: types[hash]!, sortKeyType: range.map { types[$0]! } ?? "S")
        return IndexDefinition(name: name, local: local, schema: schema, projection: p, id: id)
    }

    /// CreateTable's indexes (`types`: its AttributeDefinitions).
    func createTableIndexes(_ j: JSON, table name: String, schema: KeySchema, types: [String: String]) throws(DynamoError)
        -> [IndexDefinition]
    {
        var out: [IndexDefinition] = []
        for (field, local) in [("GlobalSecondaryIndexes", false), ("LocalSecondaryIndexes", true)] {
            guard let list = j[field], list != .null else { continue }
            guard case .array(let a) = list else { throw .serialization("\(field) must be a list") }
            let member = local ? "localSecondaryIndexes" : "globalSecondaryIndexes"
            guard !a.isEmpty else {
                throw .validation(
                    "1 validation error detected: Value '[]' at '\(member)' failed to satisfy constraint: Member must have length greater than or equal to 1"
                )
            }
            if !local, a.count > DynamoAPI.maxGlobalIndexes {
                throw .validation("GlobalSecondaryIndex count exceeds the per-table limit of \(DynamoAPI.maxGlobalIndexes)")
            }
            if local, a.count > DynamoAPI.maxLocalIndexes {
                throw .validation("Cannot have more than \(DynamoAPI.maxLocalIndexes) local secondary indexes per table")
            }
            for (i, x) in a.enumerated() {
                out.append(
                    try indexDefinition(
                        x, field: "\(member).\(i + 1).member", local: local, types: types, table: schema,
                        id: tables.newIndexID(name, (try? string(x, "IndexName")).flatMap { $0 } ?? "")))
            }
        }
        try checkIndexLimits(out)
        return out
    }

    /// Names unique, at most 100 NonKeyAttributes over all indexes.
    func checkIndexLimits(_ all: [IndexDefinition]) throws(DynamoError) {
        var names = Set<String>()
        for d in all where !names.insert(d.name).inserted {
            throw .validation("One or more parameter values were invalid: Duplicate index name: \(d.name)")
        }
        let projected = all.reduce(0) { n, d in
            if case .include(let a) = d.projection { n + a.count } else { n }
        }
        guard projected <= DynamoAPI.maxProjectedAttributes else {
            throw .validation(
                "One or more parameter values were invalid: Number of projected attributes in all indexes exceeds limit of \(DynamoAPI.maxProjectedAttributes), number of projected attributes:\(projected)"
            )
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: UpdateTable

    /// GlobalSecondaryIndexUpdates: one Create (built from the table's items: CREATING, then
    /// ACTIVE) or Delete per call, as DynamoDB allows; Update (throughput) is accepted and changes
    /// nothing (every table is on demand).
    func updateIndexes(_ j: JSON, table name: String, schema: KeySchema, _ respond: @escaping Respond) throws {
        guard case .array(let updates)? = j["GlobalSecondaryIndexUpdates"], !updates.isEmpty else {
            throw DynamoError.validation(
                "1 validation error detected: Value at 'globalSecondaryIndexUpdates' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        }
        let replica = tables.replicas[name]!
        let existing = replica.indexes.states.map(\.definition)
        var create: [IndexDefinition] = [], delete: [String] = []
        for (i, u) in updates.enumerated() {
            let actions = ["Create", "Delete", "Update"].filter { u[$0].map { $0 != .null } ?? false }
            guard actions.count == 1 else {
                throw DynamoError.validation(
                    "One or more parameter values were invalid: One of GlobalSecondaryIndexUpdate.Update, GlobalSecondaryIndexUpdate.Create, GlobalSecondaryIndexUpdate.Delete must not be null"
                )
            }
            let body = u[actions[0]]!
            switch actions[0] {
            case "Create":
                var types: [String: String] = [schema.partitionKey: schema.partitionKeyType]
                if let s = schema.sortKey { types[s] = schema.sortKeyType }
                for d in existing {
                    types[d.schema.partitionKey] = d.schema.partitionKeyType
                    if let s = d.schema.sortKey { types[s] = d.schema.sortKeyType }
                }
                if case .array(let ads)? = j["AttributeDefinitions"] {
                    for ad in ads {
                        guard let n = try string(ad, "AttributeName"), let t = try string(ad, "AttributeType"), ["S", "N", "B"].contains(t)
                        else {
                            throw DynamoError.validation("Each attribute definition has an AttributeName and an AttributeType of S, N or B")
                        }
                        if let known = types[n], known != t {
                            throw DynamoError.validation(
                                "One or more parameter values were invalid: Attribute \(n) is defined as \(known) and cannot be redefined as \(t)"
                            )
                        }
                        types[n] = t
                    }
                }
                let indexName = try string(body, "IndexName") ?? ""
                let d = try indexDefinition(
                    body, field: "globalSecondaryIndexUpdates.\(i + 1).member.create", local: false, types: types, table: schema,
                    id: tables.newIndexID(name, indexName))
                if existing.contains(where: { $0.name == d.name }) {
                    throw DynamoError.validation("One or more parameter values were invalid: Index \(d.name) already exists")
                }
                create.append(d)
            case "Delete":
                guard let indexName = try string(body, "IndexName") else {
                    throw DynamoError.validation("GlobalSecondaryIndexUpdate.Delete needs an IndexName")
                }
                guard let d = existing.first(where: { $0.name == indexName }), !d.local else {
                    throw DynamoError("ResourceNotFoundException", "Requested resource not found: Index: \(indexName) not found")
                }
                delete.append(indexName)
            default:
                guard let indexName = try string(body, "IndexName"), existing.contains(where: { $0.name == indexName && !$0.local }) else {
                    throw DynamoError("ResourceNotFoundException", "Requested resource not found: Index not found")
                }
            }
        }
        guard create.count + delete.count <= 1 else {
            throw DynamoError(
                "LimitExceededException",
                "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table")
        }
        if !create.isEmpty, replica.indexes.states.contains(where: \.building) {
            throw DynamoError(
                "LimitExceededException",
                "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table")
        }
        let after = existing.filter { !delete.contains($0.name) } + create
        if after.count(where: { !$0.local }) > DynamoAPI.maxGlobalIndexes {
            throw DynamoError(
                "LimitExceededException", "GlobalSecondaryIndex count exceeds the per-table limit of \(DynamoAPI.maxGlobalIndexes)")
        }
        try checkIndexLimits(after)
        guard !create.isEmpty || !delete.isEmpty else { return respond(DynamoAPI.ok(.object([("TableDescription", description(name))]))) }
        tables.changeIndexes(name, create: create, delete: delete) { [weak self] error in
            guard let self else { return }
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(.object([("TableDescription", self.description(name, status: "UPDATING"))])))
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: DescribeTable

    /// The index key attributes' definitions (DescribeTable lists them with the table's own).
    func indexAttributeDefinitions(_ name: String, except known: Set<String>) -> [JSON] {
        var seen = known
        var out: [JSON] = []
        for d in tables.replicas[name]?.indexes.states.map(\.definition) ?? [] {
            for (n, t) in [(d.schema.partitionKey, d.schema.partitionKeyType)]
                + (d.schema.sortKey.map { [($0, d.schema.sortKeyType)] } ?? [])
            where seen.insert(n).inserted {
                out.append(.object([("AttributeName", .string(n)), ("AttributeType", .string(t))]))
            }
        }
        return out
    }

    /// DescribeTable's GlobalSecondaryIndexes and LocalSecondaryIndexes, as this node holds them
    /// (IndexStatus CREATING with Backfilling while this node builds the index).
    func indexDescriptions(_ name: String) -> [(String, JSON)] {
        var global: [JSON] = [], local: [JSON] = []
        guard let replica = tables.replicas[name] else { return [] }
        for s in replica.indexes.states {
            let d = s.definition
            let building = !replica.indexReadable(d.name)
            var keySchema: [JSON] = [.object([("AttributeName", .string(d.schema.partitionKey)), ("KeyType", .string("HASH"))])]
            if let sk = d.schema.sortKey { keySchema.append(.object([("AttributeName", .string(sk)), ("KeyType", .string("RANGE"))])) }
            var projection: [(String, JSON)]
            switch d.projection {
            case .all: projection = [("ProjectionType", .string("ALL"))]
            case .keysOnly: projection = [("ProjectionType", .string("KEYS_ONLY"))]
            case .include(let a): projection = [("ProjectionType", .string("INCLUDE")), ("NonKeyAttributes", .array(a.map { .string($0) }))]
            }
            var fields: [(String, JSON)] = [
                ("IndexName", .string(d.name)), ("KeySchema", .array(keySchema)), ("Projection", .object(projection)),
                ("IndexSizeBytes", .number(String(s.bytes))), ("ItemCount", .number(String(s.items))),
                ("IndexArn", .string("arn:aws:dynamodb:tandem:000000000000:table/\(name)/index/\(d.name)"))
            ]
            if d.local {
                local.append(.object(fields))
                continue
            }
            fields.append(("IndexStatus", .string(building ? "CREATING" : "ACTIVE")))
            if building { fields.append(("Backfilling", .bool(true))) }
            fields.append(
                (
                    "ProvisionedThroughput",
                    .object([
                        ("NumberOfDecreasesToday", .number("0")), ("ReadCapacityUnits", .number("0")),
                        ("WriteCapacityUnits", .number("0"))
                    ])
                ))
            global.append(.object(fields))
        }
        return (global.isEmpty ? [] : [("GlobalSecondaryIndexes", .array(global))])
            + (local.isEmpty ? [] : [("LocalSecondaryIndexes", .array(local))])
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Writes

    /// An item written to `table` must give each index key attribute it has the declared type and
    /// a non-empty value (DynamoDB refuses the write otherwise; an item without the attribute is
    /// simply not in that index). `update`: the item is an UpdateItem's result.
    func checkIndexKeys(_ table: String, _ item: [String: AttributeValue], update: Bool = false) throws(DynamoError) {
        guard let indexes = tables.replicas[table]?.indexes, !indexes.isEmpty else { return }
        for d in indexes.states.map(\.definition).sorted(by: { $0.name < $1.name }) {
            for (n, type) in [(d.schema.partitionKey, d.schema.partitionKeyType)]
                + (d.schema.sortKey.map { [($0, d.schema.sortKeyType)] } ?? [])
            {
                guard let v = item[n] else { continue }
                guard v.typeName == type else {
                    throw .validation(
                        "One or more parameter values were invalid: Type mismatch for Index Key \(n) Expected: \(type) Actual: \(v.typeName) IndexName: \(d.name)"
                    )
                }
                if v == .string("") || v == .binary([]) {
                    let what = type == "S" ? "string" : "binary"
                    throw .validation(
                        update
                            ? "One or more parameter values are not valid. The update expression attempted to update a secondary index key to a value that is not supported. The AttributeValue for a key attribute cannot contain an empty \(what) value. IndexName: \(d.name), IndexKey: \(n)"
                            : "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty \(what) value. IndexName: \(d.name), IndexKey: \(n)"
                    )
                }
            }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Query and Scan

    /// The index a Query or Scan names, checked for the read: it exists, is built, and (a GSI)
    /// is not read with ConsistentRead.
    func index(_ j: JSON, table name: String) throws(DynamoError) -> IndexState? {
        guard let indexName = try string(j, "IndexName") else { return nil }
        guard let replica = tables.replicas[name], let s = replica.indexes[indexName] else {
            throw .validation("The table does not have the specified index: \(indexName)")
        }
        if !s.definition.local, try consistent(j) {
            throw .validation("Consistent reads are not supported on global secondary indexes")
        }
        if !replica.indexReadable(indexName) { throw .validation("Cannot read from backfilling global secondary index: \(indexName)") }
        return s
    }

    /// An index's ExclusiveStartKey: the table key and the index key attributes.
    func indexStartKey(_ j: JSON?, _ d: IndexDefinition, _ schema: KeySchema) throws(DynamoError) -> IndexEntryKey {
        let attributes = try DynamoJSON.item(j)
        let names = Set(d.keyNames + [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? []))
        guard Set(attributes.keys) == names, let k = d.entryKey(attributes, table: schema) else {
            throw .validation("The provided starting key is invalid: The provided key element does not match the schema")
        }
        return k
    }

    /// The rows of an index walk: the projected attributes, or (`base`: an LSI asked for more
    /// than it projects) the table's item, as DynamoDB fetches it. `keep`: true to return an
    /// entry, false to skip it, nil to end the walk there.
    func indexRows(
        _ walk: IndexWalk, _ d: IndexDefinition, table: String, schema: KeySchema, base: Bool, keep: ((IndexEntry) -> Bool?)? = nil
    ) -> RowSource {
        var walk = walk, done = false
        let keyNames = Set(d.keyNames + [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? []))
        return RowSource { [self] () throws(TandemError) -> Row? in
            while !done, let e = try walk.next() {
                let verdict: Bool? = if let keep { keep(e) } else { true }
                switch verdict {
                case nil: done = true
                case false?: continue
                case true?:
                    let key = e.attributes.filter { keyNames.contains($0.key) }
                    return Row(item: base ? try visible(table, e.key.table) : e.attributes, key: .index(key))
                }
            }
            done = true
            return nil
        }
    }

    /// Whether reading `index` with this Select / projection needs the table's items (an LSI
    /// asked for attributes it does not project), or is refused (a GSI: DynamoDB's rule).
    func needsBase(_ s: IndexState, select: String, projection: [AttributePath]?, schema: KeySchema) throws(DynamoError) -> Bool {
        let d = s.definition
        if case .all = d.projection { return false }
        var projected = Set(d.keyNames + [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? []))
        if case .include(let a) = d.projection { projected.formUnion(a) }
        let wantsMore = select == "ALL_ATTRIBUTES" || (projection?.contains { !projected.contains($0.attribute) } ?? false)
        guard wantsMore else { return false }
        if !d.local, select == "ALL_ATTRIBUTES" {
            throw .validation(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global secondary index \(d.name) because its projection type is not ALL"
            )
        }
        return d.local
    }
}
