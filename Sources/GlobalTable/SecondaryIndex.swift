import TandemCore

// Secondary indexes (DynamoDB's global and local secondary indexes) of one table replica, kept
// by the table core in the same commit as the items they index.
//
// The rules:
// - **An index is a function of the visible items.** An item has an entry in an index iff it has
//   every index key attribute, of the declared type and not empty (a sparse index leaves the rest
//   out; a merge that gives a key attribute another type, which DynamoDB refuses at write time
//   and the API refuses too, but two regions may still merge into, also leaves it out). The
//   entry is keyed by (index key, table key) and holds the projected attributes. So two nodes
//   with the same items have the same indexes, and an index converges as its table does: each
//   node maintains its indexes from its own merged state (DynamoDB's GSIs are eventually
//   consistent with their table in the same way).
// - **Derived at the change.** Every change of an item (`TableReplica.set`: a local write, a
//   peer's delta, compaction, a resync) diffs the item's entry before and after it and queues the
//   entry writes; they go in the commit that stores the item (`take`), with the index registry
//   (definitions, backfill positions, counts). So after any crash the indexes equal the table,
//   and a failed commit rolls both back. A table without indexes does nothing more than test an
//   empty array.
// - **Backfill.** An index defined on a table with items is built by walking the table in key
//   order, a batch at a time (`TableNode.indexStep`), its position (`cursor`: every key up to it
//   has been visited) stored in the same commit as the entries it wrote. A change to a key past
//   the position writes nothing to that index: the walk reaches the key later and writes its
//   entry then; a key at or before it is maintained as in an active index. So every entry exists
//   exactly once and the counts are exact.
// - **Dropped** indexes (and re-created ones: every creation has its own `id`) are one range
//   delete in the store.
//
// Nothing here reads a clock, touches a disk or a socket.

/// An index's definition, the same on every node (it travels in the reserved `_indexes` table).
public struct IndexDefinition: Hashable, Sendable {
    public enum Projection: Hashable, Sendable {
        case all
        case keysOnly
        /// KEYS_ONLY plus these attributes (NonKeyAttributes), sorted.
        case include([String])
    }

    public var name: String
    /// A local secondary index (same partition key as the table; created only with it).
    public var local: Bool
    public var schema: KeySchema
    public var projection: Projection
    /// Names this creation of the index in the store: an index deleted and created again under
    /// the same name never sees its predecessor's entries.
    public var id: UInt64

    public init(name: String, local: Bool, schema: KeySchema, projection: Projection, id: UInt64) {
        self.name = name
        self.local = local
        self.schema = schema
        self.projection = projection
        self.id = id
    }

    /// The index key's attribute names.
    public var keyNames: [String] { [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? []) }

    /// The index key of an item's attributes: nil if one is missing, of another type, or empty.
    public func indexKey(_ attribute: (String) -> AttributeValue?) -> ItemKey? {
        guard let p = IndexDefinition.keyValue(attribute(schema.partitionKey), schema.partitionKeyType) else { return nil }
        guard let s = schema.sortKey else { return ItemKey(partition: p) }
        guard let v = IndexDefinition.keyValue(attribute(s), schema.sortKeyType) else { return nil }
        return ItemKey(partition: p, sort: v)
    }

    static func keyValue(_ v: AttributeValue?, _ type: String) -> KeyValue? {
        guard let v, v.typeName == type, let k = KeyValue(v) else { return nil }
        switch k {
        case .string(let s) where s.isEmpty: return nil
        case .binary(let b) where b.isEmpty: return nil
        default: return k
        }
    }

    /// The entry of an item (nil: the item is not in this index).
    public func entry(_ tableKey: ItemKey, _ state: ItemState?, table: KeySchema) -> IndexEntry? {
        guard let state else { return nil }
        guard let key = indexKey({ state.visible($0) }) else { return nil }
        var projected: [String: AttributeValue] = [:]
        switch projection {
        case .all:
            projected = state.visible ?? [:]
        case .keysOnly, .include:
            var names = keyNames
            if case .include(let extra) = projection { names += extra }
            for n in names { projected[n] = state.visible(n) }
        }
        // The table key always, from the key itself (an item's key attributes are written with
        // it through the APIs, but the core does not depend on that).
        projected[table.partitionKey] = tableKey.partition.attributeValue
        if let s = table.sortKey, let v = tableKey.sort { projected[s] = v.attributeValue }
        return IndexEntry(key: IndexEntryKey(index: key, table: tableKey), attributes: projected)
    }

    /// The entry key of projected attributes (an entry's own, read back from the store).
    public func entryKey(_ attributes: [String: AttributeValue], table: KeySchema) -> IndexEntryKey? {
        guard let index = indexKey({ attributes[$0] }), let t = try? table.key(of: attributes) else { return nil }
        return IndexEntryKey(index: index, table: t)
    }

    public func encode(_ w: inout ByteWriter) {
        ItemCodec.string(name, &w)
        w.bool(local)
        ItemCodec.string(schema.partitionKey, &w)
        w.shortString(schema.partitionKeyType)
        w.bool(schema.sortKey != nil)
        if let s = schema.sortKey { ItemCodec.string(s, &w) }
        w.shortString(schema.sortKeyType)
        switch projection {
        case .all: w.u8(0)
        case .keysOnly: w.u8(1)
        case .include(let names):
            w.u8(2)
            w.u32(UInt32(names.count))
            for n in names { ItemCodec.string(n, &w) }
        }
        w.u64(id)
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 64)
        encode(&w)
        return w.bytes
    }

    public init(decoding r: inout ByteReader) throws(TandemError) {
        name = try ItemCodec.readString(&r)
        local = try r.bool()
        let pk = try ItemCodec.readString(&r)
        let pkType = try r.shortString()
        let sk: String? = try r.bool() ? try ItemCodec.readString(&r) : nil
        let skType = try r.shortString()
        for t in [pkType, skType] where !["S", "N", "B"].contains(t) { throw TandemError(.malformed, "bad index key type \(t)") }
        schema = KeySchema(partitionKey: pk, sortKey: sk, partitionKeyType: pkType, sortKeyType: skType)
        switch try r.u8() {
        case 0: projection = .all
        case 1: projection = .keysOnly
        case 2:
            let n = try ItemCodec.boundedCount(&r, minSize: 4)
            var names: [String] = []
            for _ in 0..<n { names.append(try ItemCodec.readString(&r)) }
            projection = .include(names)
        case let p: throw TandemError(.malformed, "bad index projection \(p)")
        }
        id = try r.u64()
    }

    public init(decoding bytes: [UInt8]) throws(TandemError) {
        var r = ByteReader(bytes)
        try self.init(decoding: &r)
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes after index definition") }
    }
}

/// Where an entry sits in its index: by index key, then table key (an index key need not be unique).
public struct IndexEntryKey: Hashable, Comparable, Sendable {
    public var index: ItemKey
    public var table: ItemKey

    public init(index: ItemKey, table: ItemKey) {
        self.index = index
        self.table = table
    }

    public static func < (a: IndexEntryKey, b: IndexEntryKey) -> Bool {
        a.index != b.index ? a.index < b.index : a.table < b.table
    }
}

/// One item in an index: its place and its projected attributes.
public struct IndexEntry: Equatable, Sendable {
    public var key: IndexEntryKey
    public var attributes: [String: AttributeValue]

    /// The stored value: the projected attributes as one map.
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 64)
        ItemCodec.value(.map(attributes), &w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(TandemError) -> [String: AttributeValue] {
        var r = ByteReader(bytes)
        guard case .map(let m) = try ItemCodec.readValue(&r, depth: 0), r.isAtEnd else {
            throw TandemError(.malformed, "bad index entry")
        }
        return m
    }
}

/// A change for the store to make to a table's indexes (`TableNode.StoreWrite.index`).
public enum IndexWrite: Equatable, Sendable {
    case put(index: UInt64, key: IndexEntryKey, value: [UInt8])
    case delete(index: UInt64, key: IndexEntryKey)
    /// Every entry of an index (it was deleted, or its table's incarnation replaced).
    case drop(index: UInt64)
    /// The table's index registry (`SecondaryIndexes.encoded`); nil when it has no index left.
    case registry([UInt8]?)
}

/// Which entries of an index a read walks: one index partition (or all of them) in index order
/// or its reverse, from `start`.
public struct IndexRange: Sendable {
    public enum Start: Sendable {
        /// From the first entry (the last, descending).
        case edge
        /// From the first entry whose index key is at or past this one in the walk's direction
        /// (a sort-key bound of a Query).
        case indexKey(ItemKey)
        /// After this entry (ExclusiveStartKey, or the last entry of the page before).
        case after(IndexEntryKey)
    }
    public var partition: KeyValue?
    public var start: Start
    public var descending: Bool

    public init(partition: KeyValue?, start: Start = .edge, descending: Bool = false) {
        self.partition = partition
        self.start = start
        self.descending = descending
    }

    /// Whether `k` is at or past the start in the walk's direction (ignoring the partition's end).
    public func admits(_ k: IndexEntryKey) -> Bool {
        switch (start, descending) {
        case (.edge, false): partition.map { SetElement.order(k.index.partition, $0) >= 0 } ?? true
        case (.edge, true): partition.map { SetElement.order(k.index.partition, $0) <= 0 } ?? true
        case (.indexKey(let b), false): !(k.index < b)
        case (.indexKey(let b), true): !(b < k.index)
        case (.after(let e), false): e < k
        case (.after(let e), true): k < e
        }
    }

    /// Whether `k` is in the walked partition.
    public func contains(_ k: IndexEntryKey) -> Bool { partition.map { k.index.partition == $0 } ?? true }
}

/// One index on one replica: its definition, how far its backfill is, and its size.
public struct IndexState: Equatable, Sendable {
    public var definition: IndexDefinition
    /// Still being built: every key up to `cursor` (none if nil) has been visited.
    public var building: Bool
    public var cursor: ItemKey?
    /// Entries and their stored bytes (DescribeTable's ItemCount and IndexSizeBytes).
    public var items: Int = 0
    public var bytes: Int = 0

    /// Whether changes to `key` are written to the index now (else the backfill writes it later).
    func maintains(_ key: ItemKey) -> Bool {
        guard building else { return true }
        guard let cursor else { return false }
        return !(cursor < key)
    }
}

/// A replica's indexes and the index writes its changes made since the last take.
public struct SecondaryIndexes: Equatable, Sendable {
    public private(set) var states: [IndexState] = []
    var writes: [IndexWrite] = []
    /// The registry must be stored (a definition, position or count changed).
    var changed = false

    public init() {}

    public var isEmpty: Bool { states.isEmpty }

    public subscript(name: String) -> IndexState? { states.first { $0.definition.name == name } }

    // ==== ------------------------------------------------------------------------------------
    // MARK: The registry record

    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 64 * states.count + 8)
        w.u8(1)  // version
        w.u32(UInt32(states.count))
        for s in states {
            s.definition.encode(&w)
            switch (s.building, s.cursor) {
            case (false, _): w.u8(0)
            case (true, nil): w.u8(1)
            case (true, let c?):
                w.u8(2)
                w.blob(c.bytes)
            }
            w.u64(UInt64(s.items))
            w.u64(UInt64(s.bytes))
        }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]?) throws(TandemError) {
        guard let bytes else { return }
        var r = ByteReader(bytes)
        guard try r.u8() == 1 else { throw TandemError(.malformed, "unknown index registry version") }
        let n = try ItemCodec.boundedCount(&r, minSize: 20)
        for _ in 0..<n {
            let d = try IndexDefinition(decoding: &r)
            var s = IndexState(definition: d, building: false, cursor: nil)
            switch try r.u8() {
            case 0: break
            case 1: s.building = true
            case 2:
                s.building = true
                s.cursor = try ItemKey(bytes: try r.blob(limit: r.remaining))
            case let t: throw TandemError(.malformed, "bad index state \(t)")
            }
            s.items = Int(try r.u64())
            s.bytes = Int(try r.u64())
            states.append(s)
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes in index registry") }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Changing

    /// Makes `definitions` the indexes (by id): new ones start building (or are active at once
    /// on an empty table), missing ones are dropped. Whether anything changed.
    mutating func define(_ definitions: [IndexDefinition], emptyTable: Bool) -> Bool {
        let wanted = Set(definitions.map(\.id))
        var any = false
        for s in states where !wanted.contains(s.definition.id) {
            writes.append(.drop(index: s.definition.id))
            any = true
        }
        states.removeAll { !wanted.contains($0.definition.id) }
        for d in definitions where !states.contains(where: { $0.definition.id == d.id }) {
            states.append(IndexState(definition: d, building: !emptyTable, cursor: nil))
            any = true
        }
        if any { changed = true }
        return any
    }

    /// An item changed from `before` to `after`: the entry writes of every index that maintains it.
    mutating func change(_ key: ItemKey, from before: ItemState?, to after: ItemState?, table: KeySchema) {
        for i in states.indices where states[i].maintains(key) {
            let d = states[i].definition
            let old = d.entry(key, before, table: table), new = d.entry(key, after, table: table)
            guard old != new else { continue }
            var bytes = 0, items = 0
            if let old {
                let size = old.encoded.count
                bytes -= size
                items -= 1
                if old.key != new?.key { writes.append(.delete(index: d.id, key: old.key)) }
            }
            if let new {
                let value = new.encoded
                bytes += value.count
                items += 1
                writes.append(.put(index: d.id, key: new.key, value: value))
            }
            states[i].items += items
            states[i].bytes += bytes
            changed = true
        }
    }

    /// The backfill of index `i` visited `key` (its entry, if any, is `entry`).
    mutating func visited(_ i: Int, _ key: ItemKey, _ entry: IndexEntry?) {
        if let entry {
            let value = entry.encoded
            writes.append(.put(index: states[i].definition.id, key: entry.key, value: value))
            states[i].items += 1
            states[i].bytes += value.count
        }
        states[i].cursor = key
        changed = true
    }

    /// The backfill of index `i` is done: the index is active.
    mutating func built(_ i: Int) {
        states[i].building = false
        states[i].cursor = nil
        changed = true
    }

    /// The writes to store, the registry last; nil if nothing changed.
    mutating func take() -> [IndexWrite]? {
        guard changed else { return nil }
        var out = writes
        out.append(.registry(states.isEmpty ? nil : encoded))
        writes = []
        changed = false
        return out
    }

    /// What is stored: these states, no writes outstanding.
    var settled: SecondaryIndexes {
        var s = self
        s.writes = []
        s.changed = false
        return s
    }
}

extension TableReplica {
    /// Whether the index is built in the store (its backfill's last commit is durable).
    public func indexReadable(_ name: String) -> Bool { storedIndexes[name].map { !$0.building } ?? false }

    /// Replaces the table's index definitions (see `SecondaryIndexes.define`); whether anything changed.
    mutating func defineIndexes(_ definitions: [IndexDefinition]) -> Bool {
        indexes.define(definitions, emptyTable: summary.items == 0)
    }

    /// Visits up to `budget` keys for the indexes still being built; the keys visited.
    mutating func backfill(budget: Int) throws(TandemError) -> Int {
        var visited = 0
        for i in indexes.states.indices where indexes.states[i].building && visited < budget {
            let d = indexes.states[i].definition
            var walk = keys(after: indexes.states[i].cursor)
            while true {
                guard visited < budget else { break }
                guard let k = try walk.next() else {
                    indexes.built(i)
                    break
                }
                indexes.visited(i, k, d.entry(k, try state(k), table: schema))
                visited += 1
            }
        }
        return visited
    }

    /// The entries of one index in `range`, read from the store (what is durable: a write is
    /// acknowledged after its commit, which holds its index entries, so a read after the
    /// acknowledgement sees them).
    public func indexEntries(_ definition: IndexDefinition, _ range: IndexRange) -> IndexWalk {
        IndexWalk(store: store, table: id, schema: schema, definition: definition, range: range)
    }

    /// Every entry an index should hold, computed from the items (what a rebuild would write):
    /// for tests and checks, not for serving.
    public func rebuiltIndex(_ definition: IndexDefinition) throws(TandemError) -> [IndexEntry] {
        var out: [IndexEntry] = []
        var walk = keys()
        while let k = try walk.next() {
            if let e = definition.entry(k, try state(k), table: schema) { out.append(e) }
        }
        return out.sorted { $0.key < $1.key }
    }
}

/// The entries of one index range, read from the store a page at a time.
public struct IndexWalk {
    static var page: Int { 256 }
    let store: ItemStore
    let table: TableID
    let schema: KeySchema
    let definition: IndexDefinition
    var range: IndexRange
    private var buffer: [IndexEntry] = []
    private var index = 0
    private var done = false

    init(store: ItemStore, table: TableID, schema: KeySchema, definition: IndexDefinition, range: IndexRange) {
        self.store = store
        self.table = table
        self.schema = schema
        self.definition = definition
        self.range = range
    }

    public mutating func next() throws(TandemError) -> IndexEntry? {
        if index == buffer.count {
            guard !done else { return nil }
            let values = try store.indexEntries(table, definition.id, range, limit: IndexWalk.page)
            done = values.count < IndexWalk.page
            buffer = []
            for v in values {
                let attributes = try IndexEntry.decode(v)
                guard let key = definition.entryKey(attributes, table: schema) else {
                    throw TandemError(.io, "index \(definition.name): entry without its keys \(attributes)")
                }
                buffer.append(IndexEntry(key: key, attributes: attributes))
            }
            index = 0
            if let last = buffer.last { range.start = .after(last.key) }
            guard !buffer.isEmpty else { return nil }
        }
        defer { index += 1 }
        return buffer[index]
    }
}

extension TableNode {
    /// Makes `definitions` the indexes of `table` (this incarnation): new ones are built from the
    /// table's items, missing ones dropped, in the next commit.
    public func defineIndexes(_ table: String, _ definitions: [IndexDefinition]) {
        guard replicas[table] != nil else { return }
        _ = replicas[table]!.defineIndexes(definitions)
    }

    /// One backfill step: up to `budget` keys of the indexes being built (their entries and
    /// positions go in the next commit). Whether any index is still building.
    @discardableResult
    public func indexStep(budget: Int = 2_000) -> Bool {
        var left = budget, building = false
        for name in replicas.keys.sorted() where replicas[name]!.indexes.states.contains(where: \.building) {
            if left > 0 {
                do {
                    left -= try replicas[name]!.backfill(budget: left)
                } catch {
                    stats.storeReadFailures += 1
                }
            }
            building = building || replicas[name]!.indexes.states.contains(where: \.building)
        }
        return building
    }
}
