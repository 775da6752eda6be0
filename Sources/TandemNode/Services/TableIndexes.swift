import GlobalTable
import TandemCore

/// Secondary index definitions: one item per (table, index) in the reserved table `_indexes`,
/// naming the table incarnation (catalog timestamp) it belongs to and holding the encoded
/// `IndexDefinition` as one binary attribute (so two regions creating the same index name at
/// once end with one whole definition, the later one, not a mix). Definitions replicate like any
/// write; each node makes the core's indexes (`TableNode.defineIndexes`) follow what `_indexes`
/// holds, and the core builds and maintains them from the node's own merged items.
extension Tables {
    static let indexesTable = "_indexes"
    static let indexesSchema = KeySchema(partitionKey: "table", sortKey: "index")

    /// The index definitions `_indexes` holds for this incarnation of `table`.
    func indexDefinitions(_ table: String) -> [IndexDefinition] {
        guard let entry = core.catalog[table], !entry.deleted, let r = replicas[Tables.indexesTable],
            let page = try? r.query(partition: .string(table), limit: 1_000)
        else { return [] }
        return page.items.compactMap { _, v in
            guard case .number(let incarnation)? = v["incarnation"], incarnation.description == String(entry.at.time),
                case .binary(let bytes)? = v["definition"]
            else { return nil }
            return try? IndexDefinition(decoding: bytes)
        }.sorted { $0.name < $1.name }
    }

    /// A new index's id: unique to this table incarnation, index name and moment.
    func newIndexID(_ table: String, _ index: String) -> UInt64 {
        var w = ByteWriter(capacity: 64)
        w.blob(Array(table.utf8))
        w.blob(Array(index.utf8))
        w.u64(core.catalog[table]?.at.time ?? 0)
        w.u64(core.now(wallMs: Tables.wallMs()).time)
        return splitmix64Mix(stableHash64(w.bytes))
    }

    /// Adds (`create`) and removes (`delete`, by name) index definitions of `table`, durably and
    /// replicated; the core starts building or drops them at once (in the same commit).
    func changeIndexes(_ table: String, create: [IndexDefinition], delete: [String], _ done: @escaping (TandemError?) -> Void) {
        guard let entry = core.catalog[table], !entry.deleted else { return done(TandemError(.notFound, "no table '\(table)'")) }
        var writes: [(table: String, key: ItemKey, delta: ItemState)] = []
        do {
            for d in create {
                let key = ItemKey(partition: .string(table), sort: .string(d.name))
                var state = try replicas[Tables.indexesTable]?.state(key) ?? ItemState()
                let values: [String: AttributeValue] = [
                    "table": .string(table), "index": .string(d.name), "definition": .binary(d.encoded),
                    "incarnation": .number(DecimalNumber(String(entry.at.time))!)
                ]
                writes.append((Tables.indexesTable, key, state.put(values, at: core.now(wallMs: Tables.wallMs()))))
            }
            for name in delete {
                let key = ItemKey(partition: .string(table), sort: .string(name))
                var state = try replicas[Tables.indexesTable]?.state(key) ?? ItemState()
                writes.append((Tables.indexesTable, key, state.delete(at: core.now(wallMs: Tables.wallMs()))))
            }
        } catch {
            return done(error)
        }
        commit(writes, done)
        syncIndexes(catalog: true)
    }

    /// Makes every client table's indexes in the core what `_indexes` says, if `_indexes` (or,
    /// with `catalog`, the catalog too) changed since the last look. Before each ready is taken
    /// only `_indexes`' digest is compared (a table without indexes pays that per commit, not a
    /// comparison of catalogs); the catalog every 100 ms, and after each change this node makes.
    func syncIndexes(catalog: Bool = false) {
        guard let digest = core.replicas[Tables.indexesTable]?.summary.digest else { return }
        if !catalog, digest == indexesSeen?.digest { return }
        let seen = IndexesSeen(digest: digest, catalog: core.catalog)
        guard seen != indexesSeen else { return }
        indexesSeen = seen
        for (name, replica) in core.replicas where !name.hasPrefix("_") {
            let wanted = indexDefinitions(name)
            if wanted.map(\.id).sorted() != replica.indexes.states.map(\.definition.id).sorted() {
                core.defineIndexes(name, wanted)
            }
        }
    }

    struct IndexesSeen: Equatable {
        var digest: MerkleDigest
        var catalog: [String: CatalogEntry]
    }
}
