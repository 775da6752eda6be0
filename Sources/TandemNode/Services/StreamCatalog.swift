import GlobalTable
import StreamLog
import TandemCore

/// The streams catalog as items of reserved global tables, written through the typed table API
/// (`Tables.put`/`delete`) so they replicate, repair and survive restarts like any table item.
///
/// A definition (`_streams`, key `name`) is `name` (S), `partitions` and `retentionHours` (N),
/// `incarnation` (S: decimal milliseconds, as nodes have always stored it) and `placement`
/// (L of M `{voters: L of S, witnesses: L of S}`, one per partition; voters in preference
/// order, so a list and not a set). Nodes before this one stored `placement` as JSON text in a
/// string: that form is still read (data on disk, and older nodes still write it), only the
/// typed one is written. `keyHash` (S: `md5`) names the stream's key-to-partition rule; a stream
/// stored without it (created before the rule existed) keeps FNV-1a. A checkpoint (`_checkpoints`, key `id` = `stream:consumer:partition`)
/// is `id` and `sequence` (S, the formatted sequence number), last writer wins.
extension Streams {
    static func catalogItem(_ d: Definition) -> [String: AttributeValue] {
        let placement = zip(d.voters, d.witnesses).map { v, w in
            AttributeValue.map(["voters": .list(v.map { .string($0.rawValue) }), "witnesses": .list(w.map { .string($0.rawValue) })])
        }
        return [
            "name": .string(d.name), "partitions": .number(DecimalNumber(d.partitions)),
            "retentionHours": .number(DecimalNumber(d.retentionHours)), "incarnation": .string(String(d.incarnation)),
            "placement": .list(placement), "keyHash": .string(d.keyHash.rawValue)
        ]
    }

    /// A definition from its catalog item, in either form; nil if the item is not one.
    static func decodeDefinition(_ item: [String: AttributeValue]) -> Definition? {
        func int(_ k: String) -> Int? { if case .number(let n)? = item[k] { Int(n.description) } else { nil } }
        guard case .string(let name)? = item["name"], let partitions = int("partitions"), let retention = int("retentionHours"),
            case .string(let incText)? = item["incarnation"], let incarnation = UInt64(incText),
            let placement = decodePlacement(item["placement"]), placement.count == partitions
        else { return nil }
        // A rule this node does not know is not guessed: the stream is unreadable here.
        let keyHash: KeyHash
        switch item["keyHash"] {
        case nil: keyHash = .fnv1a
        case .string(let text)?:
            guard let known = KeyHash(rawValue: text) else { return nil }
            keyHash = known
        default: return nil
        }
        return Definition(
            name: name, partitions: partitions, retentionHours: retention, incarnation: incarnation,
            voters: placement.map(\.voters), witnesses: placement.map(\.witnesses), keyHash: keyHash)
    }

    private static func decodePlacement(_ value: AttributeValue?) -> [(voters: [NodeID], witnesses: [NodeID])]? {
        switch value {
        case .list(let partitions)?:
            var out: [(voters: [NodeID], witnesses: [NodeID])] = []
            for p in partitions {
                guard case .map(let m) = p, case .list(let v)? = m["voters"], case .list(let w)? = m["witnesses"] else { return nil }
                out.append((strings(v), strings(w)))
            }
            return out
        case .string(let text)?:
            // The older form: the same structure as JSON text.
            guard case .array(let partitions)? = try? JSON.parse(Array(text.utf8)) else { return nil }
            var out: [(voters: [NodeID], witnesses: [NodeID])] = []
            for p in partitions {
                guard case .array(let v)? = p["voters"], case .array(let w)? = p["witnesses"] else { return nil }
                out.append((v.compactMap { $0.stringValue.map { NodeID($0) } }, w.compactMap { $0.stringValue.map { NodeID($0) } }))
            }
            return out
        default:
            return nil
        }
    }

    private static func strings(_ list: [AttributeValue]) -> [NodeID] {
        list.compactMap { if case .string(let s) = $0 { NodeID(s) } else { nil } }
    }

    /// Every definition the catalog holds, and the names it holds deleted (tombstones).
    func readCatalog() throws(TandemError) -> (definitions: [String: Definition], deleted: Set<String>, unreadable: Set<String>) {
        var defs: [String: Definition] = [:]
        var deleted: Set<String> = []
        var unreadable: Set<String> = []
        for (key, state) in try tables.replicas[Streams.catalogTable]?.allItems() ?? [] {
            guard case .string(let name) = key.partition else { continue }
            guard let visible = state.visible else {
                deleted.insert(name)
                continue
            }
            if let d = Streams.decodeDefinition(visible) { defs[d.name] = d } else { unreadable.insert(name) }
        }
        return (defs, deleted, unreadable)
    }

    func writeDefinition(_ d: Definition, _ done: @escaping (TandemError?) -> Void) {
        tables.put(table: Streams.catalogTable, key: ItemKey(partition: .string(d.name)), values: Streams.catalogItem(d), done)
    }

    func deleteDefinition(_ name: String, _ done: @escaping (TandemError?) -> Void) {
        tables.delete(table: Streams.catalogTable, key: ItemKey(partition: .string(name)), done)
    }

    static func checkpointID(_ stream: String, _ consumer: String, _ p: Int) -> String { "\(stream):\(consumer):\(p)" }

    /// The stored sequence of a consumer's checkpoint on a partition (as stored: formatted).
    func storedCheckpoint(_ stream: String, _ consumer: String, _ p: Int) -> String? {
        let key = ItemKey(partition: .string(Streams.checkpointID(stream, consumer, p)))
        guard case .string(let seq)? = (try? tables.replicas[Streams.checkpointTable]?.state(key))??.visible?["sequence"] else {
            return nil
        }
        return seq
    }

    func writeCheckpoint(_ stream: String, _ consumer: String, _ p: Int, sequence: UInt64, _ done: @escaping (TandemError?) -> Void) {
        let id = Streams.checkpointID(stream, consumer, p)
        tables.put(
            table: Streams.checkpointTable, key: ItemKey(partition: .string(id)),
            values: ["id": .string(id), "sequence": .string(Sequence.format(sequence))], done)
    }
}
