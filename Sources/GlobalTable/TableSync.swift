import TandemCore

/// A table's identity in the catalog: its key schema and the HLC of the create (or delete)
/// that made it what it is. The catalog is a last-writer-wins map of these, so a table created,
/// deleted or re-created anywhere ends up the same everywhere; items travel tagged with their
/// table's `createdAt`, so items of a deleted table cannot leak into its successor.
public struct CatalogEntry: Hashable, Sendable {
    public var schema: KeySchema
    public var at: HLC
    public var deleted: Bool

    public init(schema: KeySchema, at: HLC, deleted: Bool = false) {
        self.schema = schema
        self.at = at
        self.deleted = deleted
    }

    /// Last writer wins.
    public static func join(_ a: CatalogEntry?, _ b: CatalogEntry) -> CatalogEntry {
        guard let a else { return b }
        return b.at > a.at ? b : a
    }
}

/// One replicated change: an item delta for the table incarnation `entry.at`.
public struct TableDelta: Hashable, Sendable {
    public var table: String
    public var entry: CatalogEntry
    public var key: ItemKey
    public var state: ItemState

    public init(table: String, entry: CatalogEntry, key: ItemKey, state: ItemState) {
        self.table = table
        self.entry = entry
        self.key = key
        self.state = state
    }
}

/// Wire forms of the table sync messages (peer frames).
public enum TableSyncCodec {
    public static let version: UInt8 = 1
    public static let maxBatch = 10_000

    static func entry(_ e: CatalogEntry, _ w: inout ByteWriter) {
        w.blob(Array(e.schema.partitionKey.utf8))
        w.shortString(e.schema.partitionKeyType)
        w.bool(e.schema.sortKey != nil)
        if let sk = e.schema.sortKey { w.blob(Array(sk.utf8)) }
        w.shortString(e.schema.sortKeyType)
        ItemCodec.hlc(e.at, &w)
        w.bool(e.deleted)
    }

    static func readEntry(_ r: inout ByteReader) throws(TandemError) -> CatalogEntry {
        let pk = try ItemCodec.readString(&r)
        let pkType = try r.shortString()
        let sk: String? = try r.bool() ? try ItemCodec.readString(&r) : nil
        let skType = try r.shortString()
        for t in [pkType, skType] where !["S", "N", "B"].contains(t) { throw TandemError(.malformed, "bad key type \(t)") }
        let at = try ItemCodec.readHLC(&r)
        return CatalogEntry(
            schema: KeySchema(partitionKey: pk, sortKey: sk, partitionKeyType: pkType, sortKeyType: skType),
            at: at, deleted: try r.bool())
    }

    static func encodeCatalog(_ catalog: [String: CatalogEntry], _ w: inout ByteWriter) {
        w.u32(UInt32(catalog.count))
        for name in catalog.keys.sorted() {
            w.blob(Array(name.utf8))
            entry(catalog[name]!, &w)
        }
    }

    static func readCatalog(_ r: inout ByteReader) throws(TandemError) -> [String: CatalogEntry] {
        var catalog: [String: CatalogEntry] = [:]
        let entries = try ItemCodec.boundedCount(&r, minSize: 8)
        for _ in 0..<entries {
            let name = try ItemCodec.readString(&r)
            catalog[name] = try readEntry(&r)
        }
        return catalog
    }

    /// Deltas, and catalog entries (a delta with no key is a catalog-only change).
    public static func encode(deltas: [TableDelta], catalog: [String: CatalogEntry] = [:]) -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.u8(version)
        encodeCatalog(catalog, &w)
        w.u32(UInt32(deltas.count))
        for d in deltas {
            w.blob(Array(d.table.utf8))
            entry(d.entry, &w)
            w.blob(d.key.bytes)
            w.blob(ItemCodec.encode(d.state))
        }
        return w.bytes
    }

    public static func decodeDeltas(_ bytes: [UInt8]) throws(TandemError) -> (deltas: [TableDelta], catalog: [String: CatalogEntry]) {
        var r = ByteReader(bytes)
        let v = try r.u8()
        guard v == version else { throw TandemError(.unsupportedVersion, "table sync version \(v)") }
        let catalog = try readCatalog(&r)
        let n = try ItemCodec.boundedCount(&r, minSize: 8)
        guard n <= maxBatch else { throw TandemError(.tooLarge, "batch of \(n) deltas") }
        var deltas: [TableDelta] = []
        for _ in 0..<n {
            let table = try ItemCodec.readString(&r)
            let e = try readEntry(&r)
            let key = try ItemKey(bytes: try r.blob(limit: r.remaining))
            let state = try ItemCodec.decode(try r.blob(limit: r.remaining))
            deltas.append(TableDelta(table: table, entry: e, key: key, state: state))
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes in table sync") }
        return (deltas, catalog)
    }

    /// Anti-entropy opening: the catalog and, per table, one number for its whole digest. An
    /// idle cluster's round is then a few hundred bytes; the 2 KB of bucket digests per table
    /// (`encode(digests:)`) go only for tables whose roots differ. (Idle 5-node loopback cluster,
    /// six reserved tables: 7.2 KB/s of peer traffic per node, nearly all digests.)
    public static func encode(roots: [String: UInt64], catalog: [String: CatalogEntry]) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + roots.count * 32)
        w.u8(version)
        encodeCatalog(catalog, &w)
        w.u32(UInt32(roots.count))
        for name in roots.keys.sorted() {
            w.blob(Array(name.utf8))
            w.u64(roots[name]!)
        }
        return w.bytes
    }

    public static func decodeRoots(_ bytes: [UInt8]) throws(TandemError) -> (roots: [String: UInt64], catalog: [String: CatalogEntry]) {
        var r = ByteReader(bytes)
        let v = try r.u8()
        guard v == version else { throw TandemError(.unsupportedVersion, "table sync version \(v)") }
        let catalog = try readCatalog(&r)
        let n = try ItemCodec.boundedCount(&r, minSize: 4 + 8)
        var roots: [String: UInt64] = [:]
        for _ in 0..<n {
            let name = try ItemCodec.readString(&r)
            roots[name] = try r.u64()
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes in roots") }
        return (roots, catalog)
    }

    /// The answer to roots: the answerer's catalog and the tables whose roots differ.
    public static func encode(differing: [String], catalog: [String: CatalogEntry]) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + differing.count * 16)
        w.u8(version)
        encodeCatalog(catalog, &w)
        w.u32(UInt32(differing.count))
        for name in differing { w.blob(Array(name.utf8)) }
        return w.bytes
    }

    public static func decodeDiffering(_ bytes: [UInt8]) throws(TandemError) -> (differing: [String], catalog: [String: CatalogEntry]) {
        var r = ByteReader(bytes)
        let v = try r.u8()
        guard v == version else { throw TandemError(.unsupportedVersion, "table sync version \(v)") }
        let catalog = try readCatalog(&r)
        let n = try ItemCodec.boundedCount(&r, minSize: 4)
        var names: [String] = []
        for _ in 0..<n { names.append(try ItemCodec.readString(&r)) }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes in differing tables") }
        return (names, catalog)
    }

    /// The bucket digests of the tables whose roots differ: the catalog and, per table, its
    /// bucket digests.
    public static func encode(digests: [String: MerkleDigest], catalog: [String: CatalogEntry]) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + digests.count * 2048)
        w.u8(version)
        encodeCatalog(catalog, &w)
        w.u32(UInt32(digests.count))
        for name in digests.keys.sorted() {
            w.blob(Array(name.utf8))
            for b in digests[name]!.buckets { w.u64(b) }
        }
        return w.bytes
    }

    public static func decodeDigests(_ bytes: [UInt8]) throws(TandemError) -> (digests: [String: [UInt64]], catalog: [String: CatalogEntry])
    {
        var r = ByteReader(bytes)
        let v = try r.u8()
        guard v == version else { throw TandemError(.unsupportedVersion, "table sync version \(v)") }
        let catalog = try readCatalog(&r)
        let n = try ItemCodec.boundedCount(&r, minSize: 4 + 8 * MerkleDigest.bucketCount)
        var digests: [String: [UInt64]] = [:]
        for _ in 0..<n {
            let name = try ItemCodec.readString(&r)
            var buckets: [UInt64] = []
            buckets.reserveCapacity(MerkleDigest.bucketCount)
            for _ in 0..<MerkleDigest.bucketCount { buckets.append(try r.u64()) }
            digests[name] = buckets
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes in digests") }
        return (digests, catalog)
    }
}
