import Foundation
import GlobalTable
import Storage
import TandemCore
import Transport

/// DynamoDB: CreateTable, DescribeTable, DeleteTable, ListTables and the time-to-live settings.
extension DynamoAPI {
    // MARK: tables

    func description(_ name: String, status: String = "ACTIVE") -> JSON {
        let r = tables.replicas[name]
        let schema = r?.schema ?? KeySchema(partitionKey: "")
        var keySchema: [JSON] = [.object([("AttributeName", .string(schema.partitionKey)), ("KeyType", .string("HASH"))])]
        var definitions: [JSON] = [
            .object([("AttributeName", .string(schema.partitionKey)), ("AttributeType", .string(schema.partitionKeyType))])
        ]
        if let sk = schema.sortKey {
            keySchema.append(.object([("AttributeName", .string(sk)), ("KeyType", .string("RANGE"))]))
            definitions.append(.object([("AttributeName", .string(sk)), ("AttributeType", .string(schema.sortKeyType))]))
        }
        definitions += indexAttributeDefinitions(name, except: Set([schema.partitionKey] + (schema.sortKey.map { [$0] } ?? [])))
        // From the table's summary, not a scan (DynamoDB, too, updates these only now and
        // then): items stored, a deleted one until its tombstone is collected, and their
        // stored size.
        let count = r?.summary.items ?? 0, bytes = r?.summary.bytes ?? 0
        let entry = tables.core.catalog[name]
        let created = Double(entry?.at.physicalMs ?? 0) / 1000
        return .object(
            [
                ("TableName", .string(name)), ("TableStatus", .string(status)), ("TableId", .string(DynamoAPI.tableID(name, entry?.at))),
                ("TableArn", .string("arn:aws:dynamodb:tandem:000000000000:table/\(name)")),
                ("KeySchema", .array(keySchema)), ("AttributeDefinitions", .array(definitions)),
                ("CreationDateTime", .number(String(created))), ("ItemCount", .number(String(count))),
                ("TableSizeBytes", .number(String(bytes))),
                ("BillingModeSummary", .object([("BillingMode", .string("PAY_PER_REQUEST"))]))
            ] + streamDescription(name) + [
                (
                    "ProvisionedThroughput",
                    .object([
                        ("NumberOfDecreasesToday", .number("0")), ("ReadCapacityUnits", .number("0")),
                        ("WriteCapacityUnits", .number("0"))
                    ])
                )
            ] + indexDescriptions(name))
    }

    /// DescribeTable's TableId: a UUID naming this incarnation of the table, the same on every
    /// node (it is derived from the name and the catalog's creation stamp, which replicate),
    /// different after the table is deleted and created again.
    static func tableID(_ name: String, _ at: HLC?) -> String {
        var seed = Array(name.utf8)
        for v in [at?.physicalMs ?? 0, UInt64(at?.logical ?? 0), at?.node ?? 0] {
            seed += (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
        }
        let high = stableHash64(seed), low = stableHash64(seed, continuing: high)
        let hex = [high, low].map { h in
            let s = String(h, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
        let c = Array(hex)
        return [c[0..<8], c[8..<12], c[12..<16], c[16..<20], c[20..<32]].map { String($0) }.joined(separator: "-")
    }

    func createTable(_ j: JSON, _ respond: @escaping Respond) throws {
        guard let name = try string(j, "TableName") else { throw DynamoError.validation("TableName is required") }
        guard (3...255).contains(name.utf8.count), !name.hasPrefix("_"),
            name.unicodeScalars.allSatisfy({ ($0.isASCII && CharacterSet.alphanumerics.contains($0)) || "_.-".unicodeScalars.contains($0) })
        else {
            throw DynamoError.validation("TableName must be 3 to 255 characters of [a-zA-Z0-9_.-], not starting with '_'")
        }
        guard case .array(let ks)? = j["KeySchema"], (1...2).contains(ks.count) else {
            throw DynamoError.validation(
                "1 validation error detected: Value at 'keySchema' failed to satisfy constraint: Member must have length less than or equal to 2"
            )
        }
        guard case .array(let ads)? = j["AttributeDefinitions"] else { throw DynamoError.validation("AttributeDefinitions is required") }
        var types: [String: String] = [:]
        for ad in ads {
            guard let n = try string(ad, "AttributeName"), let t = try string(ad, "AttributeType"), ["S", "N", "B"].contains(t) else {
                throw DynamoError.validation("Each attribute definition has an AttributeName and an AttributeType of S, N or B")
            }
            guard n.utf8.count <= 255 else {
                throw DynamoError.validation(
                    "One or more parameter values were invalid: An attribute name of a key is at most 255 bytes: \(n.utf8.count) bytes")
            }
            guard types.updateValue(t, forKey: n) == nil else {
                throw DynamoError.validation(
                    "Cannot have two attributes with the same name; Duplicate AttributeName in AttributeDefinitions: \(n)")
            }
        }
        var hash: String?, range: String?
        for (i, k) in ks.enumerated() {
            guard let n = try string(k, "AttributeName"), let t = try string(k, "KeyType") else {
                throw DynamoError.validation("Each key schema element has an AttributeName and a KeyType")
            }
            guard (1...255).contains(n.utf8.count) else {
                throw DynamoError.validation(
                    "1 validation error detected: Value '\(n)' at 'keySchema.\(i + 1).member.attributeName' failed to satisfy constraint: Member must have length less than or equal to 255"
                )
            }
            switch (t, i) {
            case ("HASH", 0): hash = n
            case ("RANGE", 1): range = n
            default: throw DynamoError.validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
            }
        }
        guard let hash, range != hash else {
            throw DynamoError.validation("Both the Hash Key and the Range Key element in the KeySchema have the same name")
        }
        let schema = KeySchema(
            partitionKey: hash, sortKey: range, partitionKeyType: types[hash]!, sortKeyType: range.map { types[$0]! } ?? "S")
        let indexes = try createTableIndexes(j, table: name, schema: schema, types: types)
        guard Set(types.keys) == Set([hash] + (range.map { [$0] } ?? []) + indexes.flatMap(\.keyNames)) else {
            throw DynamoError.validation(
                "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions"
            )
        }
        try checkTableOptions(j, creating: true)
        let tags = try j["Tags"].flatMap { t throws(DynamoError) in t == .null ? nil : try tagList(t) } ?? []
        if tables.replicas[name] != nil { throw DynamoError("ResourceInUseException", "Table already exists: \(name)") }
        let view = try streamRequest(j).flatMap { $0 }
        // The table and its indexes go in one commit (the index definitions are items of
        // `_indexes`, written in the same loop turn): the reply waits for the later one.
        try tables.changeTable(name, schema: schema) { _ in }
        tables.changeIndexes(name, create: indexes, delete: []) { [weak self] error in
            guard let self else { return }
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            // Then the stream, if asked for, then the tags; the answer describes the table with both.
            let created = { [weak self] in
                guard let self else { return }
                respond(DynamoAPI.ok(.object([("TableDescription", self.description(name))])))
            }
            let tagged = { [weak self] in
                guard let self else { return }
                guard !tags.isEmpty else { return created() }
                do throws(DynamoError) {
                    try self.changeTags(name, set: tags, remove: []) { error in
                        if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
                        created()
                    }
                } catch {
                    respond(DynamoAPI.error(error))
                }
            }
            guard let view, let streams = self.changeStreams else { return tagged() }
            streams.enable(name, view: view) { error in
                if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
                tagged()
            }
        }
    }

    /// `StreamSpecification` as asked (checked by `checkTableOptions`): nil if absent, `.some(nil)`
    /// to disable, else the view type of the stream to enable.
    func streamRequest(_ j: JSON) throws(DynamoError) -> StreamViewType?? {
        guard let spec = j["StreamSpecification"], spec != .null, case .bool(let enabled)? = spec["StreamEnabled"] else { return nil }
        guard enabled else { return .some(nil) }
        return try string(spec, "StreamViewType").flatMap { StreamViewType(name: $0) }
    }

    /// DescribeTable's stream fields: the latest stream (still readable), and the specification
    /// while it is enabled.
    func streamDescription(_ name: String) -> [(String, JSON)] {
        guard let streams = changeStreams, let latest = streams.readable(name, nowMs: Tables.wallMs()).last else { return [] }
        var out: [(String, JSON)] = []
        if let c = streams.current(name) {
            out.append(("StreamSpecification", .object([("StreamEnabled", .bool(true)), ("StreamViewType", .string(c.view.name))])))
        }
        out += [("LatestStreamArn", .string(streams.arn(latest))), ("LatestStreamLabel", .string(StreamLabel.text(latest.label)))]
        return out
    }

    /// CreateTable's and UpdateTable's options beyond the key schema, checked as DynamoDB checks
    /// them so a request DynamoDB refuses is refused here too. What valid ones do (README):
    /// - BillingMode: PROVISIONED (CreateTable's default) needs ProvisionedThroughput,
    ///   PAY_PER_REQUEST refuses it; either way the table is on demand (capacity is reported,
    ///   never enforced).
    /// - StreamSpecification: StreamEnabled true (with a StreamViewType) enables a change stream
    ///   (`ChangeStreams`); false is a table without one (UpdateTable: disables it).
    /// - Tags (CreateTable): stored, as TagResource stores them.
    func checkTableOptions(_ j: JSON, creating: Bool) throws(DynamoError) {
        let given = try string(j, "BillingMode")
        let mode = given ?? (creating ? "PROVISIONED" : nil)
        if let mode {
            guard ["PROVISIONED", "PAY_PER_REQUEST"].contains(mode) else {
                throw .validation(
                    "1 validation error detected: Value '\(mode)' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"
                )
            }
        }
        let throughput = j["ProvisionedThroughput"].flatMap { $0 == .null ? nil : $0 }
        switch (mode, throughput) {
        case ("PAY_PER_REQUEST", _?):
            throw .validation(
                "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST"
            )
        case ("PROVISIONED", nil):
            throw .validation(
                "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"
            )
        case (_, let pt?):
            for f in ["ReadCapacityUnits", "WriteCapacityUnits"] {
                guard let n = try int(pt, f), n >= 1 else {
                    throw .validation(
                        "One or more parameter values were invalid: \(f) must be specified and at least 1 when BillingMode is PROVISIONED")
                }
            }
        default: break
        }
        if let spec = j["StreamSpecification"], spec != .null {
            guard case .object = spec, case .bool(let enabled)? = spec["StreamEnabled"] else {
                throw .validation(
                    "1 validation error detected: Value null at 'streamSpecification.streamEnabled' failed to satisfy constraint: Member must not be null"
                )
            }
            let view = try string(spec, "StreamViewType")
            if let view, !["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"].contains(view) {
                throw .validation(
                    "1 validation error detected: Value '\(view)' at 'streamSpecification.streamViewType' failed to satisfy constraint: Member must satisfy enum value set: [NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES, KEYS_ONLY]"
                )
            }
            if enabled {
                guard view != nil else {
                    throw .validation("One or more parameter values were invalid: StreamViewType is required when StreamEnabled is true")
                }
            }
        }
        if creating, let tags = j["Tags"], tags != .null { _ = try tagList(tags) }
    }

    /// UpdateTable: the billing mode and stream settings CreateTable takes (checked the same way;
    /// every table stays on demand), global secondary indexes (`DynamoIndexes.swift`) and
    /// streams; replicas are refused.
    func updateTable(_ j: JSON, _ respond: @escaping Respond) throws {
        let (name, schema) = try table(j)
        if j["ReplicaUpdates"].map({ $0 != .null }) ?? false { throw DynamoError.validation("ReplicaUpdates are not supported yet") }
        if j["GlobalSecondaryIndexUpdates"].map({ $0 != .null }) ?? false {
            try checkTableOptions(j, creating: false)
            return try updateIndexes(j, table: name, schema: schema, respond)
        }
        let answer = try updateTable(j)
        guard let request = try streamRequest(j), let streams = changeStreams else { return respond(DynamoAPI.ok(answer)) }
        // DynamoDB: "a ValidationException if you try to enable a stream on a table that already
        // has a stream, or if you try to disable a stream on a table that doesn't have a stream".
        let current = streams.current(name)
        let done: (TandemError?) -> Void = { [weak self] error in
            guard let self else { return }
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(.object([("TableDescription", self.description(name))])))
        }
        if let view = request {
            if let current {
                throw DynamoError.validation("Table already has an enabled stream: TableName: \(name), StreamArn: \(streams.arn(current))")
            }
            streams.enable(name, view: view, done)
        } else {
            guard current != nil else { throw DynamoError.validation("Table does not have a stream enabled: TableName: \(name)") }
            streams.disable(name, done)
        }
    }

    func updateTable(_ j: JSON) throws -> JSON {
        let (name, _) = try table(j)
        let options = ["BillingMode", "ProvisionedThroughput", "StreamSpecification", "SSESpecification", "TableClass"]
        guard options.contains(where: { j[$0].map { $0 != .null } ?? false }) else {
            throw DynamoError.validation(
                "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required"
            )
        }
        try checkTableOptions(j, creating: false)
        return .object([("TableDescription", description(name))])
    }

    func deleteTable(_ j: JSON, _ respond: @escaping Respond) throws {
        let (name, _) = try table(j)
        let before = description(name, status: "DELETING")
        try tables.changeTable(name, schema: nil) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(.object([("TableDescription", before)])))
        }
    }

    func listTables(_ j: JSON) throws -> JSON {
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

    func describeTimeToLive(_ j: JSON) throws -> JSON {
        let (name, _) = try table(j)
        let d: [(String, JSON)] =
            if let a = ttlAttribute(name) {
                [("TimeToLiveStatus", .string("ENABLED")), ("AttributeName", .string(a))]
            } else {
                [("TimeToLiveStatus", .string("DISABLED"))]
            }
        return .object([("TimeToLiveDescription", .object(d))])
    }

    /// Enables or disables TTL on a table: one item of the reserved `_ttl` table, so the setting
    /// replicates like any write (and every node expires the same items).
    func updateTimeToLive(_ j: JSON) throws -> (String, String?, JSON) {
        let (name, _) = try table(j)
        guard case .object? = j["TimeToLiveSpecification"], let spec = j["TimeToLiveSpecification"] else {
            throw DynamoError.validation(
                "1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null"
            )
        }
        guard case .bool(let enabled)? = spec["Enabled"] else {
            throw DynamoError.validation("TimeToLiveSpecification.Enabled must be a boolean")
        }
        guard let attribute = try string(spec, "AttributeName"), !attribute.isEmpty, attribute.utf8.count <= 255 else {
            throw DynamoError.validation("TimeToLiveSpecification.AttributeName must be 1 to 255 characters")
        }
        let current = ttlAttribute(name)
        if enabled, current != nil { throw DynamoError.validation("TimeToLive is already enabled") }
        if !enabled, current == nil { throw DynamoError.validation("TimeToLive is already disabled") }
        if !enabled, current != attribute {
            throw DynamoError.validation("TimeToLive is active on a different AttributeName: current value is \(current!)")
        }
        return (
            name, enabled ? attribute : nil,
            .object([("TimeToLiveSpecification", .object([("Enabled", .bool(enabled)), ("AttributeName", .string(attribute))]))])
        )
    }

    func updateTimeToLive(_ j: JSON, _ respond: @escaping Respond) throws {
        let (name, attribute, answer) = try updateTimeToLive(j)
        tables.setTTL(name, attribute: attribute) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(answer))
        }
    }
}
