import Foundation
import GlobalTable
import Storage
import TandemCore
import Transport

/// DynamoDB: a table's tags (CreateTable's `Tags`, TagResource, UntagResource,
/// ListTagsOfResource), stored as `Tables` stores tags (Services/Tags.swift).
extension DynamoAPI {
    /// The tags of a table (of its current incarnation).
    func tags(of table: String) throws(TandemError) -> [String: String] {
        guard let entry = tables.core.catalog[table], !entry.deleted else { return [:] }
        return try tables.tags(table, incarnation: entry.at.time)
    }

    /// Sets and removes tags of `table`, refusing more than 50 in all (as DynamoDB does).
    func changeTags(_ table: String, set: [(key: String, value: String)], remove: [String], _ done: @escaping (TandemError?) -> Void)
        throws(DynamoError)
    {
        guard let entry = tables.core.catalog[table], !entry.deleted else {
            throw DynamoError("ResourceNotFoundException", "Requested resource not found: Table: \(table) not found")
        }
        guard tables.changeTags(table, incarnation: entry.at.time, set: set, remove: remove, done) else {
            throw .validation("One or more parameter values were invalid: The number of tags exceeds the limit of \(Tables.maxTags)")
        }
    }

    /// A `Tags` list (`[{Key, Value}]`) by DynamoDB's rules (`Tables.checkTags`).
    func tagList(_ j: JSON?) throws(DynamoError) -> [(key: String, value: String)] {
        guard case .array(let list)? = j else { throw .validation("One or more parameter values were invalid: Tags must be a list") }
        var out: [(key: String, value: String)] = []
        for tag in list {
            guard let key = try string(tag, "Key"), let value = try string(tag, "Value") else {
                throw .validation("One or more parameter values were invalid: Each tag has a Key and a Value")
            }
            out.append((key, value))
        }
        if let problem = Tables.checkTags(out) { throw .validation("One or more parameter values were invalid: \(problem)") }
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
        let tags = try tags(of: table).filter { tag in after.map { tag.key > $0 } ?? true }.sorted { $0.key < $1.key }
        return .object([("Tags", .array(tags.map { .object([("Key", .string($0.key)), ("Value", .string($0.value))]) }))])
    }
}
