import GlobalTable
import TandemCore

/// Tags of tables and streams (DynamoDB's TagResource, Kinesis's AddTagsToStream): one item of
/// the reserved table `_tags` per resource (key `table`: a table's name, or `kinesis/NAME` for a
/// stream — neither kind of name holds a `/`), written like any item so they replicate. Each tag
/// is one key of the item's `tags` map, so tags set in two regions at once both stay (a tag set
/// twice keeps the later value). The item names the resource incarnation it belongs to: a table
/// or stream deleted and created again starts with no tags.
extension Tables {
    static let maxTags = 50

    static func tagKey(stream: String) -> String { "kinesis/\(stream)" }

    /// The tags of a resource's incarnation (`incarnation`: its creation stamp).
    func tags(_ resource: String, incarnation: UInt64) throws(TandemError) -> [String: String] {
        guard let item = try replicas[Tables.tagsTable]?.state(ItemKey(partition: .string(resource)))?.visible,
            item["incarnation"] == .number(DecimalNumber(String(incarnation))!), case .map(let m)? = item["tags"]
        else { return [:] }
        return m.compactMapValues { if case .string(let s) = $0 { s } else { nil } }
    }

    /// Sets and removes tags of a resource's incarnation; nil if that would leave more than 50
    /// (the limit is checked against this replica: tags added in two regions at once can exceed it).
    func changeTags(
        _ resource: String, incarnation: UInt64, set: [(key: String, value: String)], remove: [String],
        _ done: @escaping (TandemError?) -> Void
    ) -> Bool {
        var after: [String: String]
        var state: ItemState
        let key = ItemKey(partition: .string(resource))
        do {
            after = try tags(resource, incarnation: incarnation)
            state = try replicas[Tables.tagsTable]?.state(key) ?? ItemState()
        } catch {
            done(error)
            return true
        }
        for t in set { after[t.key] = t.value }
        for k in remove { after[k] = nil }
        guard after.count <= Tables.maxTags else { return false }
        let t = core.now(wallMs: Tables.wallMs())
        let stamp = AttributeValue.number(DecimalNumber(String(incarnation))!)
        var delta = ItemState()
        if state.visible?["incarnation"] == stamp {
            // Per tag, so concurrent changes of different tags in two regions both stay.
            for s in set { delta.merge(state.set(DocumentPath("tags", [s.key]), .string(s.value), at: t)) }
            for k in remove { delta.merge(state.remove(DocumentPath("tags", [k]), at: t)) }
        } else {
            // The first tags of this incarnation: the whole item, hiding an older incarnation's.
            delta = state.put(["table": .string(resource), "incarnation": stamp, "tags": .map(after.mapValues { .string($0) })], at: t)
        }
        commit([(Tables.tagsTable, key, delta)], done)
        return true
    }

    /// A tag list by the rules DynamoDB and Kinesis share: keys of 1 to 128 characters, values
    /// of at most 256, no `aws:` prefix (reserved for AWS), no key twice; the message if not.
    static func checkTags(_ tags: [(key: String, value: String)]) -> String? {
        var seen: Set<String> = []
        for (key, value) in tags {
            guard (1...128).contains(key.count), value.count <= 256 else {
                return "A tag Key is 1 to 128 characters and its Value at most 256"
            }
            guard !key.hasPrefix("aws:") else { return "Tag keys starting with 'aws:' are reserved: \(key)" }
            guard seen.insert(key).inserted else { return "Duplicate tag keys found: \(key)" }
        }
        return tags.count <= maxTags ? nil : "At most \(maxTags) tags"
    }
}
