import GlobalTable
import Logging
import Storage
import TandemCore
import Transport

/// The global tables' items in LMDB (see `GlobalTable/ItemStore.swift` for what a store keeps).
/// Every record of a table incarnation is under `0x05 | TableID`, so dropping one is one range:
///
///     0x05 id 0x00                      → summary (digest, counts)
///     0x05 id 0x01 key                  → flags, item hash, [full key], state
///     0x05 id 0x02 bucket key           → ·                  (anti-entropy buckets)
///     0x05 id 0x03 scan-hash key        → ·                  (parallel Scan order)
///     0x05 id 0x04 key                  → ·                  (items holding garbage)
///     0x05 id 0x05                      → index registry     (TableStore+Indexes.swift)
///     0x05 id 0x06 index entry-key      → projected attributes
///     0x05 id 0x10 label seq            → change record      (`ChangeStreamStore`)
///     0x05 id 0x11 label                → last trimmed seq   (`ChangeStreamStore`)
///
/// Only the item record changes when an item does: the index records are written when a key
/// is created and deleted when it goes (the garbage record when that changes). An item's hash
/// lives in its item record, and a bucket listing reads it from there: LMDB copies every page a
/// commit touches, and a bucket record rewritten with each hash was a second random page per
/// overwrite (a one-node run wrote 24 KB to disk per new item with it).
///
/// `key` is the ordered form (`ItemKey.ordered`), so LMDB's byte order is key order and a
/// partition is one range. LMDB keys end at 511 bytes and DynamoDB allows 2,048-byte partition
/// and 1,024-byte sort keys: a key value whose ordered form passes `elementLimit` is stored as
/// its type byte with the low bits set (0x1F, 0x3F: no ordered form starts so), its first 200
/// bytes and a SHA-256 of the whole, and the item record carries the full key. A long partition
/// key still groups its items, in sort-key order; long sort keys keep their order up to their
/// first 200 bytes, and past that sort by hash among themselves.
final class TableStore: ItemStore {
    static let prefix: UInt8 = 0x05
    /// Set while summaries are not to be trusted (a migration under way): they are rebuilt
    /// from the items at start.
    static let rebuildKey: [UInt8] = [0x06]
    static let elementLimit = 233

    enum Record: UInt8 {
        case summary = 0, item = 1, bucket = 2, scan = 3, garbage = 4, indexRegistry = 5, indexEntry = 6
    }

    let lmdb: LMDBStore

    init(_ lmdb: LMDBStore) { self.lmdb = lmdb }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Keys

    static func head(_ table: TableID, _ record: Record) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.u8(prefix)
        w.u64(table)
        w.u8(record.rawValue)
        return w.bytes
    }

    /// The key as stored: its ordered form, each value in its long form if it is too long.
    static func stored(_ key: ItemKey) -> (bytes: [UInt8], long: Bool) {
        let ordered = key.ordered
        guard ordered.count > elementLimit else { return (ordered, false) }
        let partition = ItemKey(partition: key.partition).ordered
        let (p, longP) = shorten(partition[...])
        let (s, longS) = shorten(ordered[partition.count...])
        return (p + s, longP || longS)
    }

    static func shorten(_ element: ArraySlice<UInt8>, limit: Int = elementLimit) -> ([UInt8], Bool) {
        guard element.count > limit, let type = element.first else { return (Array(element), false) }
        return ([type | 0x0F] + element.dropFirst().prefix(limit - 33) + sha256(Array(element)), true)
    }

    private static func itemRecord(_ table: TableID, _ stored: [UInt8]) -> [UInt8] { head(table, .item) + stored }

    /// Reads a key back from its stored form (the item record holds a long one in full).
    private func key(_ table: TableID, stored: ArraySlice<UInt8>) throws(TandemError) -> ItemKey {
        if let k = try? ItemKey(ordered: Array(stored)) { return k }
        guard let value = try get(TableStore.itemRecord(table, Array(stored))) else {
            throw TandemError(.io, "table store: index entry without its item")
        }
        let decoded = try TableStore.decodeItem(value)
        if let k = decoded.key { return k }
        throw TandemError(.io, "table store: unreadable key")
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Values

    private static func encodeItem(_ key: ItemKey, long: Bool, _ item: StoredItem) -> [UInt8] {
        var w = ByteWriter(capacity: item.state.count + 16)
        w.u8(long ? 1 : 0)
        w.u64(item.hash)
        if long { w.blob(key.ordered) }
        w.raw(item.state)
        return w.bytes
    }

    private static func decodeItem(_ value: [UInt8]) throws(TandemError) -> (key: ItemKey?, item: StoredItem) {
        var r = ByteReader(value)
        let flags = try r.u8()
        let hash = try r.u64()
        let key = flags & 1 == 1 ? try ItemKey(ordered: try r.blob(limit: value.count)) : nil
        return (key, StoredItem(state: Array(value[r.offset...]), hash: hash))
    }

    func get(_ key: [UInt8]) throws(TandemError) -> [UInt8]? {
        do { return try lmdb.get(key) } catch { throw TableStore.readError(error) }
    }

    func range(_ start: [UInt8], after: Bool, prefix: [UInt8], limit: Int) throws(TandemError) -> [(key: [UInt8], value: [UInt8])] {
        do { return try lmdb.range(from: start, after: after, prefix: prefix, limit: limit) } catch { throw TableStore.readError(error) }
    }

    static func readError(_ error: any Error) -> TandemError {
        let e = error as? TandemError ?? TandemError(.io, "\(error)")
        return TandemError(.diskFailed, "table store read failed: \(e.message)")
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: ItemStore

    func item(_ table: TableID, _ key: ItemKey) throws(TandemError) -> StoredItem? {
        guard let value = try get(TableStore.itemRecord(table, TableStore.stored(key).bytes)) else { return nil }
        return try TableStore.decodeItem(value).item
    }

    func keys(_ table: TableID, from start: KeyBound, descending: Bool, limit: Int) throws(TandemError) -> [ItemKey] {
        let head = TableStore.head(table, .item)
        let from: [UInt8], after: Bool
        switch start {
        // 0xFF is past every ordered key (they start with a type byte below it).
        case .first: (from, after) = descending ? (head + [0xFF], true) : (head, false)
        case .atOrAfter(let k): (from, after) = (head + TableStore.stored(k).bytes, false)
        case .after(let k): (from, after) = (head + TableStore.stored(k).bytes, true)
        case .partitionEnd(let p): (from, after) = (head + TableStore.stored(ItemKey(partition: p)).bytes + [0xFF], true)
        }
        // Values only as far as a long key in them (flags, hash, length, key): not the states.
        let pairs: [(key: [UInt8], value: [UInt8])]
        do {
            pairs = try lmdb.range(from: from, after: after, descending: descending, prefix: head, limit: limit, valueBytes: 4_096)
        } catch {
            throw TableStore.readError(error)
        }
        var out: [ItemKey] = []
        out.reserveCapacity(pairs.count)
        for p in pairs {
            if p.value.first == 1 {
                var r = ByteReader(p.value, from: 9)
                out.append(try ItemKey(ordered: try r.blob(limit: 4_096)))
            } else {
                out.append(try ItemKey(ordered: Array(p.key[head.count...])))
            }
        }
        return out
    }

    func scanKeys(_ table: TableID, after: ScanKey?, limit: Int) throws(TandemError) -> [ScanKey] {
        let head = TableStore.head(table, .scan)
        let start = after.map { head + TableStore.scanSuffix($0) } ?? head
        var out: [ScanKey] = []
        for p in try range(start, after: after != nil, prefix: head, limit: limit) {
            var r = ByteReader(p.key, from: head.count)
            let hash = try r.u64()
            out.append(ScanKey(hash: hash, key: try key(table, stored: p.key[(head.count + 8)...])))
        }
        return out
    }

    func bucket(_ table: TableID, _ bucket: Int) throws(TandemError) -> [(ItemKey, UInt64)] {
        let head = TableStore.head(table, .bucket) + [UInt8(bucket)]
        var out: [(ItemKey, UInt64)] = []
        var start = head
        var after = false
        while true {
            let pairs = try range(start, after: after, prefix: head, limit: 4096)
            for p in pairs {
                let stored = p.key[head.count...]
                guard let value = try get(TableStore.itemRecord(table, Array(stored))) else {
                    throw TandemError(.io, "table store: bucket entry without its item")
                }
                let (long, item) = try TableStore.decodeItem(value)
                if let long { out.append((long, item.hash)) } else { out.append((try ItemKey(ordered: Array(stored)), item.hash)) }
            }
            guard pairs.count == 4096, let last = pairs.last else { break }
            start = last.key
            after = true
        }
        return out
    }

    func garbage(_ table: TableID, after: ItemKey?, limit: Int) throws(TandemError) -> [ItemKey] {
        let head = TableStore.head(table, .garbage)
        let start = after.map { head + TableStore.stored($0).bytes } ?? head
        return try range(start, after: after != nil, prefix: head, limit: limit).map { (p) throws(TandemError) in
            try key(table, stored: p.key[head.count...])
        }
    }

    func summary(_ table: TableID) throws(TandemError) -> TableSummary? {
        guard let bytes = try get(TableStore.head(table, .summary)) else { return nil }
        return try TableSummary(decoding: bytes)
    }

    private static func scanSuffix(_ k: ScanKey) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.u64(k.hash)
        w.raw(stored(k.key).bytes)
        return w.bytes
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Writing

    /// The LMDB changes for one of the core's item writes.
    static func ops(_ write: TableNode.StoreWrite) -> [LMDBStore.Op] {
        switch write {
        case .item(let table, let key, let item, let garbage, let before):
            // Only the records that change: an overwrite is one put (the item), a new key three
            // (item, bucket, scan), and the garbage record only when it comes or goes.
            let (stored, long) = TableStore.stored(key)
            let bucketKey = head(table, .bucket) + [UInt8(MerkleDigest.bucket(of: key))] + stored
            let garbageKey = head(table, .garbage) + stored
            var ops: [LMDBStore.Op] = []
            guard let item else {
                guard before.stored else { return [] }
                ops = [.delete(itemRecord(table, stored)), .delete(bucketKey), .delete(head(table, .scan) + scanSuffix(ScanKey(key)))]
                if before.garbage { ops.append(.delete(garbageKey)) }
                return ops
            }
            ops = [.put(itemRecord(table, stored), encodeItem(key, long: long, item))]
            if !before.stored { ops += [.put(bucketKey, []), .put(head(table, .scan) + scanSuffix(ScanKey(key)), [])] }
            if garbage != before.garbage { ops.append(garbage ? .put(garbageKey, []) : .delete(garbageKey)) }
            return ops
        case .summary(let table, let s): return [.put(head(table, .summary), s.encoded)]
        case .index(let table, let change): return indexOps(table, change)
        case .dropTable(let table):
            var w = ByteWriter(capacity: 9)
            w.u8(prefix)
            w.u64(table)
            return [.deletePrefix(w.bytes)]
        case .change: return ChangeStreamStore.ops(write)
        case .catalog, .stability: return []
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Summaries from the items

    /// Recomputes every listed table's summary from its item records (after a migration, or
    /// one a crash interrupted), then clears the rebuild mark.
    func rebuildSummaries(_ tables: [TableID]) throws {
        var ops: [LMDBStore.Op] = []
        for table in tables {
            var s = TableSummary()
            let head = TableStore.head(table, .item)
            var start = head
            var after = false
            while true {
                let pairs = try range(start, after: after, prefix: head, limit: 10_000)
                for p in pairs {
                    let (long, item) = try TableStore.decodeItem(p.value)
                    let key = try long ?? ItemKey(ordered: Array(p.key[head.count...]))
                    s.add(key, item, lastWrite: try ItemCodec.decode(item.state).lastWriteTime)
                }
                guard pairs.count == 10_000, let last = pairs.last else { break }
                start = last.key
                after = true
            }
            ops.append(.put(TableStore.head(table, .summary), s.encoded))
        }
        ops.append(.delete(TableStore.rebuildKey))
        try lmdb.commit(ops)
        try lmdb.refresh()
    }

    /// Moves items from the layout before this store (`0x02 | name | key` → state, and long
    /// keys under `0x04 | SHA-256`, read whole into memory at start) to this one, a batch per
    /// commit, each batch deleting what it moved, so a crash part way resumes where it stopped.
    /// Items of tables the catalog no longer has are dropped. Returns how many moved.
    func migrate(catalog: [String: CatalogEntry], logger: Logger) throws -> Int {
        let oldItem: [UInt8] = [0x02], oldLong: [UInt8] = [0x04]
        var moved = 0
        var marked = try lmdb.get(TableStore.rebuildKey) != nil
        for prefix in [oldItem, oldLong] {
            while true {
                let pairs = try lmdb.range(from: prefix, prefix: prefix, limit: 10_000)
                if pairs.isEmpty { break }
                var ops: [LMDBStore.Op] = marked ? [] : [.put(TableStore.rebuildKey, [])]
                marked = true
                for p in pairs {
                    ops.append(.delete(p.key))
                    let (name, key, state) =
                        try prefix == oldItem ? TableStore.decodeOldItem(p.key, p.value) : TableStore.decodeOldLong(p.value)
                    guard let entry = catalog[name], !entry.deleted else { continue }
                    let garbage = try ItemCodec.decode(state).hasGarbage
                    let item = StoredItem(state: state, hash: MerkleDigest.itemHash(key, state))
                    let fresh = TableNode.Durable(stored: false, garbage: false)
                    ops += TableStore.ops(.item(table: tableID(name, entry.at), key: key, item: item, garbage: garbage, before: fresh))
                    moved += 1
                }
                try lmdb.commit(ops)
                try lmdb.refresh()
                logger.notice("table store: moved \(moved) items to the on-disk layout")
            }
        }
        return moved
    }

    private static func decodeOldItem(_ key: [UInt8], _ value: [UInt8]) throws -> (String, ItemKey, [UInt8]) {
        var r = ByteReader(key, from: 1)
        let nameLength = Int(try r.u16())
        guard r.remaining >= nameLength else { throw TandemError(.malformed, "corrupt item key in store") }
        let name = String(decoding: key[3..<(3 + nameLength)], as: UTF8.self)
        return (name, try ItemKey(bytes: Array(key[(3 + nameLength)...])), value)
    }

    private static func decodeOldLong(_ value: [UInt8]) throws -> (String, ItemKey, [UInt8]) {
        var r = ByteReader(value)
        let name = String(decoding: try r.blob(limit: 255), as: UTF8.self)
        let key = try ItemKey(bytes: try r.blob(limit: value.count))
        return (name, key, Array(value[r.offset...]))
    }
}
