import Foundation
import GlobalTable
import Storage
import TandemCore
import Transport

/// DynamoDB: a table's tags (CreateTable's `Tags`, TagResource, UntagResource,
/// ListTagsOfResource). They are an item of the reserved table `_tags` per table, written like
/// any item so they replicate: each tag is one key of the item's `tags` map, so tagging in two
/// regions at once keeps both tags (a tag set twice keeps the later value). The item names the
/// table incarnation it belongs to: a table deleted and created again starts with no tags.
extension DynamoAPI {
    static let maxTags = 50

    /// The tags of a table (of its current incarnation).
    func tags(of table: String) -> [String: String] {
        guard let entry = tables.core.catalog[table], !entry.deleted,
            let item = tables.replicas[Tables.tagsTable]?.state(ItemKey(partition: .string(table)))?.visible,
            case .number(let incarnation)? = item["incarnation"], incarnation.description == String(entry.at.time),
            case .map(let m)? = item["tags"]
        else { return [:] }
        return m.compactMapValues { if case .string(let s) = $0 { s } else { nil } }
    }

    /// Sets and removes tags of `table`, refusing more than 50 in all (as DynamoDB does).
    func changeTags(_ table: String, set: [(key: String, value: String)], remove: [String], _ done: @escaping (TandemError?) -> Void)
        throws(DynamoError)
    {
        guard let entry = tables.core.catalog[table], !entry.deleted else {
            throw DynamoError("ResourceNotFoundException", "Requested resource not found: Table: \(table) not found")
        }
        let current = tags(of: table)
        var after = current
        for t in set { after[t.key] = t.value }
        for k in remove { after[k] = nil }
        guard after.count <= DynamoAPI.maxTags else {
            throw .validation("One or more parameter values were invalid: The number of tags exceeds the limit of \(DynamoAPI.maxTags)")
        }
        let key = ItemKey(partition: .string(table))
        var state = tables.replicas[Tables.tagsTable]?.state(key) ?? ItemState()
        let t = tables.core.now(wallMs: Tables.wallMs())
        let stamp = AttributeValue.number(DecimalNumber(String(entry.at.time))!)
        var delta = ItemState()
        if state.visible?["incarnation"] == stamp {
            // Per tag, so concurrent changes of different tags in two regions both stay.
            for s in set { delta.merge(state.set(DocumentPath("tags", [s.key]), .string(s.value), at: t)) }
            for k in remove { delta.merge(state.remove(DocumentPath("tags", [k]), at: t)) }
        } else {
            // First tags of this incarnation: the whole item, hiding an older incarnation's.
            delta = state.put(
                ["table": .string(table), "incarnation": stamp, "tags": .map(after.mapValues { .string($0) })], at: t)
        }
        tables.commit([(Tables.tagsTable, key, delta)], done)
    }

    /// A `Tags` list by DynamoDB's rules: keys of 1 to 128 characters, values of at most 256,
    /// no `aws:` prefix (reserved for AWS), no key twice, at most 50.
    func tagList(_ j: JSON?) throws(DynamoError) -> [(key: String, value: String)] {
        guard case .array(let list)? = j, list.count <= DynamoAPI.maxTags else {
            throw .validation("One or more parameter values were invalid: Tags must be a list of at most \(DynamoAPI.maxTags) tags")
        }
        var seen: Set<String> = []
        var out: [(key: String, value: String)] = []
        for tag in list {
            guard let key = try string(tag, "Key"), let value = try string(tag, "Value") else {
                throw .validation("One or more parameter values were invalid: Each tag has a Key and a Value")
            }
            guard (1...128).contains(key.count), value.count <= 256 else {
                throw .validation("One or more parameter values were invalid: A tag Key is 1 to 128 characters and its Value at most 256")
            }
            guard !key.hasPrefix("aws:") else {
                throw .validation("One or more parameter values were invalid: Tag keys starting with 'aws:' are reserved: \(key)")
            }
            guard seen.insert(key).inserted else {
                throw .validation("One or more parameter values were invalid: Duplicate tag keys found: \(key)")
            }
            out.append((key, value))
        }
        return out
    }

    /// The table a `ResourceArn` names (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`, any region
    /// and account: clients build ARNs their own way, or take DescribeTable's `TableArn`).
    func tableOfArn(_ j: JSON) throws(DynamoError) -> String {
        guard let arn = try string(j, "ResourceArn") else {
            throw .validation(
                "1 validation error detected: Value null at 'resourceArn' failed to satisfy constraint: Member must not be null")
        }
        let parts = arn.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "arn", parts[2] == "dynamodb", parts[5].hasPrefix("table/") else {
            throw .validation("Invalid TableArn: \(arn)")
        }
        let name = String(parts[5].dropFirst("table/".count))
        guard !name.hasPrefix("_"), tables.replicas[name] != nil else {
            throw DynamoError("ResourceNotFoundException", "Requested resource not found: ResourceArn: \(arn) not found")
        }
        return name
    }

    func tagResource(_ j: JSON, _ respond: @escaping Respond) throws {
        let table = try tableOfArn(j)
        let set = try tagList(j["Tags"])
        try changeTags(table, set: set, remove: []) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(.object([])))
        }
    }

    func untagResource(_ j: JSON, _ respond: @escaping Respond) throws {
        let table = try tableOfArn(j)
        guard case .array(let keys)? = j["TagKeys"] else {
            throw DynamoError.validation(
                "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null")
        }
        var remove: [String] = []
        for k in keys {
            guard case .string(let s) = k, (1...128).contains(s.count) else {
                throw DynamoError.validation("One or more parameter values were invalid: A tag key is 1 to 128 characters")
            }
            remove.append(s)
        }
        try changeTags(table, set: [], remove: remove) { error in
            if let error { return respond(DynamoAPI.error(DynamoError("InternalServerError", error.message))) }
            respond(DynamoAPI.ok(.object([])))
        }
    }

    /// Every tag, sorted by key (at most 50: one page; a NextToken, the last key seen, is honoured).
    func listTagsOfResource(_ j: JSON) throws -> JSON {
        let table = try tableOfArn(j)
        let after = try string(j, "NextToken")
        let tags = tags(of: table).filter { tag in after.map { tag.key > $0 } ?? true }.sorted { $0.key < $1.key }
        return .object([("Tags", .array(tags.map { .object([("Key", .string($0.key)), ("Value", .string($0.value))]) }))])
    }
}
