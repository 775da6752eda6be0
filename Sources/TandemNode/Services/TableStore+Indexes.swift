import GlobalTable
import Storage
import TandemCore

/// Secondary index records (`GlobalTable/SecondaryIndex.swift`), under the table incarnation's
/// prefix, so dropping the table drops them too:
///
///     0x05 id 0x05                                   → the index registry (definitions,
///                                                      backfill positions, counts)
///     0x05 id 0x06 index-id index-key table-key      → the projected attributes
///
/// Index key and table key are their ordered forms (`ItemKey.ordered`), so LMDB's byte order is
/// the index's order (index key, then table key) and an index partition is one range. The entry
/// holds the projected attributes, as DynamoDB's index does, and a Query reads one record per
/// item (docs/DESIGN-NOTES.md, "Secondary indexes", has the measurement). Up to four key values
/// share LMDB's 511-byte key: each is stored in full up to `elementLimit` bytes, past that as its
/// first bytes and a SHA-256 of the whole (like long table keys); the entry's keys are read from
/// its attributes, never from the record key.
extension TableStore {
    static let indexElementLimit = 110

    private static func entryPrefix(_ table: TableID, _ index: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 32)
        w.raw(head(table, .indexEntry))
        w.u64(index)
        return w.bytes
    }

    private static func element(_ v: KeyValue) -> [UInt8] {
        shorten(ItemKey(partition: v).ordered[...], limit: indexElementLimit).0
    }

    private static func elements(_ k: ItemKey) -> [UInt8] { element(k.partition) + (k.sort.map(element) ?? []) }

    private static func entryRecord(_ table: TableID, _ index: UInt64, _ key: IndexEntryKey) -> [UInt8] {
        entryPrefix(table, index) + elements(key.index) + elements(key.table)
    }

    static func indexOps(_ table: TableID, _ change: IndexWrite) -> [LMDBStore.Op] {
        switch change {
        case .put(let index, let key, let value): [.put(entryRecord(table, index, key), value)]
        case .delete(let index, let key): [.delete(entryRecord(table, index, key))]
        case .drop(let index): [.deletePrefix(entryPrefix(table, index))]
        case .registry(let bytes?): [.put(head(table, .indexRegistry), bytes)]
        case .registry(nil): [.delete(head(table, .indexRegistry))]
        }
    }

    func indexRegistry(_ table: TableID) throws(TandemError) -> [UInt8]? {
        try get(TableStore.head(table, .indexRegistry))
    }

    func indexEntries(_ table: TableID, _ index: UInt64, _ range: IndexRange, limit: Int) throws(TandemError) -> [[UInt8]] {
        let head = TableStore.entryPrefix(table, index)
        let prefix = head + (range.partition.map(TableStore.element) ?? [])
        let from: [UInt8], after: Bool
        switch (range.start, range.descending) {
        // 0xFF is past every ordered key value (they start with a type byte below it).
        case (.edge, false): (from, after) = (prefix, false)
        case (.edge, true): (from, after) = (prefix + [0xFF], true)
        case (.indexKey(let k), false): (from, after) = (head + TableStore.elements(k), false)
        case (.indexKey(let k), true): (from, after) = (head + TableStore.elements(k) + [0xFF], true)
        case (.after(let e), _): (from, after) = (head + TableStore.elements(e.index) + TableStore.elements(e.table), true)
        }
        do {
            return try lmdb.range(from: from, after: after, descending: range.descending, prefix: prefix, limit: limit).map(\.value)
        } catch {
            throw TableStore.readError(error)
        }
    }
}
