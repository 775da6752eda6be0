import TandemCore

// Where a table's items live. The core (`TableNode`) reads durable items through `ItemStore`
// and asks for changes through `TableNode.StoreWrite`; the shell stores them (LMDB on a node,
// `MemoryItemStore` in the simulator and in tests). Memory holds only what is not yet durable
// (`TableReplica`'s pending changes) and each table's summary, so a node's memory is bounded by
// its write rate, not by its data, and a restart reads summaries, not items.
//
// Every store keeps, per table incarnation (`TableID`):
// - items by key, in key order (Query, Scan, the TTL sweep), each with its digest hash;
// - keys by digest bucket with their hashes (anti-entropy compares buckets, then lists them);
// - keys in scan order (`ScanKey`: parallel Scan segments);
// - keys of items that hold garbage (`ItemState.hasGarbage`: what tombstone collection visits);
// - the summary (`TableSummary`: digest, counts), written in the same commit as the items.
// A store's reads see exactly what was committed before them: the shell makes a commit
// visible to reads before it reports `stored(nil)` to the core.

/// A table incarnation's name in a store: its name and catalog time, hashed, so a re-created
/// table never sees its predecessor's items, and a dropped one is one range to delete.
public typealias TableID = UInt64

public func tableID(_ name: String, _ at: HLC) -> TableID {
    var w = ByteWriter(capacity: name.utf8.count + 16)
    w.blob(Array(name.utf8))
    w.u64(at.time)
    w.u64(at.node)
    return splitmix64Mix(stableHash64(w.bytes))
}

/// An item as a store holds it: its canonical state and that state's digest hash.
public struct StoredItem: Equatable, Sendable {
    public var state: [UInt8]
    public var hash: UInt64
    public init(state: [UInt8], hash: UInt64) {
        self.state = state
        self.hash = hash
    }
}

/// What a table keeps in memory of its store: the digest anti-entropy compares, and counts for
/// DescribeTable. Stored in the commit that changes the items it sums, so it never disagrees
/// with them.
public struct TableSummary: Equatable, Sendable {
    public var digest = MerkleDigest()
    /// Items stored: live ones and deleted ones whose tombstone is not yet collected.
    public var items = 0
    /// Bytes of their canonical states.
    public var bytes = 0
    /// The latest HLC time written to the table: a restart's clock starts above it.
    public var lastWrite: UInt64 = 0

    public init() {}

    /// Written with every commit that changes the table: the digest goes as one copy of its
    /// buckets, little-endian (256 `u64` appends were 31,800 instructions of a one-item commit).
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 8 * MerkleDigest.bucketCount + 25)
        w.u8(1)  // version
        w.u64(UInt64(items))
        w.u64(UInt64(bytes))
        w.u64(lastWrite)
        #if _endian(big)
            let le = digest.buckets.map { $0.littleEndian }
        #else
            let le = digest.buckets
        #endif
        le.withUnsafeBytes { w.raw(Array($0)) }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(TandemError) {
        var r = ByteReader(bytes)
        guard try r.u8() == 1 else { throw TandemError(.malformed, "unknown table summary version") }
        items = Int(try r.u64())
        self.bytes = Int(try r.u64())
        lastWrite = try r.u64()
        let raw = try r.bytes(8 * MerkleDigest.bucketCount)
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes in table summary") }
        var buckets = [UInt64](repeating: 0, count: MerkleDigest.bucketCount)
        buckets.withUnsafeMutableBytes { $0.copyBytes(from: raw) }
        #if _endian(big)
            buckets = buckets.map { UInt64(littleEndian: $0) }
        #endif
        digest = MerkleDigest(buckets: buckets)
    }

    /// Counts a stored item (rebuilding a summary from the items).
    public mutating func add(_ key: ItemKey, _ item: StoredItem, lastWrite: UInt64) {
        replace(key, old: nil, new: item)
        self.lastWrite = max(self.lastWrite, lastWrite)
    }

    mutating func replace(_ key: ItemKey, old: StoredItem?, new: StoredItem?) {
        let bucket = MerkleDigest.bucket(of: key)
        if let old {
            digest.remove(bucket: bucket, hash: old.hash)
            items -= 1
            bytes -= old.state.count
        }
        if let new {
            digest.replace(bucket: bucket, oldHash: nil, newHash: new.hash)
            items += 1
            bytes += new.state.count
        }
    }
}

/// Where a key walk starts, in the walk's direction ("after" is below for a descending one).
public enum KeyBound: Sendable {
    case first
    case atOrAfter(ItemKey)
    case after(ItemKey)
    /// Descending: from the last key of this partition (ascending: from the next partition).
    case partitionEnd(KeyValue)

    /// Whether `k` is at or past the bound in the walk's direction.
    public func admits(_ k: ItemKey, descending: Bool = false) -> Bool {
        switch (self, descending) {
        case (.first, _): true
        case (.atOrAfter(let s), false): !(k < s)
        case (.atOrAfter(let s), true): !(s < k)
        case (.after(let s), false): s < k
        case (.after(let s), true): k < s
        case (.partitionEnd(let p), false): SetElement.order(k.partition, p) > 0
        case (.partitionEnd(let p), true): SetElement.order(k.partition, p) <= 0
        }
    }
}

/// Durable items, read by the core. Reads may fail (a corrupt page): the error reaches the
/// caller, never a guess.
public protocol ItemStore: AnyObject {
    func item(_ table: TableID, _ key: ItemKey) throws(TandemError) -> StoredItem?
    /// Up to `limit` keys in key order (or its reverse) from `start`.
    func keys(_ table: TableID, from start: KeyBound, descending: Bool, limit: Int) throws(TandemError) -> [ItemKey]
    /// Up to `limit` keys in scan order after `after` (nil: from the first).
    func scanKeys(_ table: TableID, after: ScanKey?, limit: Int) throws(TandemError) -> [ScanKey]
    /// The keys of one digest bucket, with their hashes.
    func bucket(_ table: TableID, _ bucket: Int) throws(TandemError) -> [(ItemKey, UInt64)]
    /// Up to `limit` keys of items holding garbage, in key order after `after`.
    func garbage(_ table: TableID, after: ItemKey?, limit: Int) throws(TandemError) -> [ItemKey]
    func summary(_ table: TableID) throws(TandemError) -> TableSummary?
    /// The table's index registry (`SecondaryIndexes.encoded`), if it has indexes.
    func indexRegistry(_ table: TableID) throws(TandemError) -> [UInt8]?
    /// Up to `limit` entry values of one index in `range`, in the range's order.
    func indexEntries(_ table: TableID, _ index: UInt64, _ range: IndexRange, limit: Int) throws(TandemError) -> [[UInt8]]
}

/// The store in memory: the simulator's disk (it outlives a crashed core) and tests'.
public final class MemoryItemStore: ItemStore {
    private struct Table {
        var items: [ItemKey: StoredItem] = [:]
        var order = SortedList<ItemKey>()
        var scan = SortedList<ScanKey>()
        var buckets = [Set<ItemKey>](repeating: [], count: MerkleDigest.bucketCount)
        var garbage = SortedList<ItemKey>()
        var summary: TableSummary?
        var registry: [UInt8]?
        var indexes: [UInt64: (order: SortedList<IndexEntryKey>, values: [IndexEntryKey: [UInt8]])] = [:]
    }
    private var tables: [TableID: Table] = [:]

    public init() {}

    /// Applies one commit's item changes (catalog and stability records are the caller's).
    public func apply(_ writes: [TableNode.StoreWrite]) {
        for w in writes {
            switch w {
            case .item(let id, let key, let item, let garbage, _):
                var t = tables[id] ?? Table()
                if let item {
                    if t.items.updateValue(item, forKey: key) == nil {
                        t.order.insert(key)
                        t.scan.insert(ScanKey(key))
                        t.buckets[MerkleDigest.bucket(of: key)].insert(key)
                    }
                } else if t.items.removeValue(forKey: key) != nil {
                    t.order.remove(key)
                    t.scan.remove(ScanKey(key))
                    t.buckets[MerkleDigest.bucket(of: key)].remove(key)
                }
                if garbage && item != nil { t.garbage.insert(key) } else { t.garbage.remove(key) }
                tables[id] = t
            case .summary(let id, let s): tables[id, default: Table()].summary = s
            case .index(let id, let change):
                var t = tables[id] ?? Table()
                switch change {
                case .put(let index, let key, let value):
                    var i = t.indexes[index] ?? (SortedList(), [:])
                    if i.values.updateValue(value, forKey: key) == nil { i.order.insert(key) }
                    t.indexes[index] = i
                case .delete(let index, let key):
                    if var i = t.indexes[index], i.values.removeValue(forKey: key) != nil {
                        i.order.remove(key)
                        t.indexes[index] = i
                    }
                case .drop(let index): t.indexes[index] = nil
                case .registry(let bytes): t.registry = bytes
                }
                tables[id] = t
            case .dropTable(let id): tables[id] = nil
            case .catalog, .stability, .change: break
            }
        }
    }

    public func item(_ table: TableID, _ key: ItemKey) throws(TandemError) -> StoredItem? { tables[table]?.items[key] }

    public func keys(_ table: TableID, from start: KeyBound, descending: Bool, limit: Int) throws(TandemError) -> [ItemKey] {
        guard let t = tables[table] else { return [] }
        if descending { return Array(t.order.descending(fromLastBefore: { !start.admits($0, descending: true) }).prefix(limit)) }
        return Array(t.order.ascending(fromFirstWhere: { start.admits($0) }).prefix(limit))
    }

    public func scanKeys(_ table: TableID, after: ScanKey?, limit: Int) throws(TandemError) -> [ScanKey] {
        guard let t = tables[table] else { return [] }
        return Array(t.scan.ascending(after: after).prefix(limit))
    }

    public func bucket(_ table: TableID, _ bucket: Int) throws(TandemError) -> [(ItemKey, UInt64)] {
        guard let t = tables[table] else { return [] }
        return t.buckets[bucket].sorted().map { ($0, t.items[$0]!.hash) }
    }

    public func garbage(_ table: TableID, after: ItemKey?, limit: Int) throws(TandemError) -> [ItemKey] {
        guard let t = tables[table] else { return [] }
        return Array(t.garbage.ascending(after: after).prefix(limit))
    }

    public func summary(_ table: TableID) throws(TandemError) -> TableSummary? { tables[table]?.summary }

    public func indexRegistry(_ table: TableID) throws(TandemError) -> [UInt8]? { tables[table]?.registry }

    public func indexEntries(_ table: TableID, _ index: UInt64, _ range: IndexRange, limit: Int) throws(TandemError) -> [[UInt8]] {
        guard let i = tables[table]?.indexes[index] else { return [] }
        let keys =
            range.descending
            ? i.order.descending(fromLastBefore: { !range.admits($0) }) : i.order.ascending(fromFirstWhere: { range.admits($0) })
        return Array(keys.prefix(while: { range.contains($0) }).prefix(limit).map { i.values[$0]! })
    }
}

/// Decoded durable items, by table and key, so a write does not read and decode the item its
/// caller just read (a Query page, a condition, the state a delta is made on) and hot items
/// (counters, agent status) are not decoded on every change: reading and decoding an item from
/// LMDB was ~22,000 instructions of a put, done twice (callgrind, sequential PUTs). It holds only
/// durable states: an item with a pending change is read from the pending change, and changing
/// an item drops its entry. Two generations approximate LRU at the cost of a dictionary swap: a
/// hit in the old one moves the entry to the young one; when the young one is full it becomes
/// the old one. So at most `2 × itemsPerGeneration` items are held, and at most twice
/// `bytesPerGeneration` of their stored bytes (large items fill a generation sooner).
public final class ItemCache {
    struct Key: Hashable {
        let table: TableID
        let key: ItemKey
    }
    typealias Entry = (stored: StoredItem, state: ItemState)
    private var young: [Key: Entry] = [:]
    private var old: [Key: Entry] = [:]
    private var youngBytes = 0
    public let itemsPerGeneration: Int
    public let bytesPerGeneration: Int
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(itemsPerGeneration: Int, bytesPerGeneration: Int = 8 << 20) {
        self.itemsPerGeneration = itemsPerGeneration
        self.bytesPerGeneration = bytesPerGeneration
    }

    public var count: Int { young.count + old.count }

    func get(_ table: TableID, _ key: ItemKey) -> Entry? {
        let k = Key(table: table, key: key)
        if let e = young[k] {
            hits += 1
            return e
        }
        guard let e = old.removeValue(forKey: k) else {
            misses += 1
            return nil
        }
        hits += 1
        insert(k, e)
        return e
    }

    func put(_ table: TableID, _ key: ItemKey, _ entry: Entry) { insert(Key(table: table, key: key), entry) }

    func remove(_ table: TableID, _ key: ItemKey) {
        let k = Key(table: table, key: key)
        young[k] = nil
        old[k] = nil
    }

    private func insert(_ k: Key, _ e: Entry) {
        guard itemsPerGeneration > 0 else { return }
        young[k] = e
        youngBytes += e.stored.state.count
        if young.count >= itemsPerGeneration || youngBytes >= bytesPerGeneration {
            old = young
            young = [:]
            youngBytes = 0
        }
    }
}
