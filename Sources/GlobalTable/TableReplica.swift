import TandemCore

/// One table's replicated items: merge-only state (every write is a delta merged here). The
/// items live in the store (`ItemStore`); this holds the changes not yet durable (`pending`,
/// read before the store) and the summary, kept up to date on every change. Which pending
/// changes a commit made durable is decided by version, so a change made while its key's
/// previous one was being stored is kept until its own commit.
public struct TableReplica {
    public let name: String
    public let schema: KeySchema
    public let id: TableID
    let store: ItemStore
    let cache: ItemCache
    /// Digest and counts, with every pending change in them.
    public private(set) var summary: TableSummary
    /// The summary as last stored.
    private var durableSummary: TableSummary
    /// Secondary indexes, with the entry writes the changes since the last take made
    /// (`SecondaryIndex.swift`), and as last stored (an index is readable once it is stored
    /// built: reads go to the store).
    public internal(set) var indexes = SecondaryIndexes()
    public private(set) var storedIndexes = SecondaryIndexes()

    private struct Pending {
        var state: ItemState?
        var stored: StoredItem?
        var version: UInt64
        /// What the store holds of the item (it changes when an earlier version is stored).
        var durable: TableNode.Durable
    }
    private var pending: [ItemKey: Pending] = [:]
    /// Pending keys in key and scan order, merged into the store's on walks.
    private var pendingOrder = SortedList<ItemKey>()
    private var pendingScan = SortedList<ScanKey>()
    /// Keys changed since the last `take`, in order.
    private var touched: [ItemKey] = []
    private var version: UInt64 = 0

    /// What a commit holds of this table: which version of each key, and the summary.
    public struct Taken {
        var table: TableID
        var keys: [(key: ItemKey, version: UInt64, durable: TableNode.Durable)] = []
        var summary = TableSummary()
        var indexes = SecondaryIndexes()
    }

    /// A table as its store holds it.
    public init(name: String, schema: KeySchema, at: HLC, store: ItemStore, cache: ItemCache) throws(TandemError) {
        self.init(new: name, schema: schema, at: at, store: store, cache: cache)
        summary = try store.summary(id) ?? TableSummary()
        durableSummary = summary
        indexes = try SecondaryIndexes(decoding: store.indexRegistry(id))
        storedIndexes = indexes
    }

    /// A new incarnation: nothing stored under it yet.
    public init(new name: String, schema: KeySchema, at: HLC, store: ItemStore, cache: ItemCache) {
        self.name = name
        self.schema = schema
        self.id = tableID(name, at)
        self.store = store
        self.cache = cache
        summary = TableSummary()
        durableSummary = summary
    }

    public var digest: MerkleDigest { summary.digest }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Reading

    public func stored(_ key: ItemKey) throws(TandemError) -> StoredItem? {
        if let p = pending[key] { return p.stored }
        return try durable(key)?.stored
    }

    public func state(_ key: ItemKey) throws(TandemError) -> ItemState? {
        if let p = pending[key] { return p.state }
        return try durable(key)?.state
    }

    /// The item as the store holds it, decoded (through the cache).
    private func durable(_ key: ItemKey) throws(TandemError) -> ItemCache.Entry? {
        if let e = cache.get(id, key) { return e }
        guard let item = try store.item(id, key) else { return nil }
        let e = (stored: item, state: try ItemCodec.decode(item.state))
        cache.put(id, key, e)
        return e
    }

    /// Items with a change not yet durable (what memory holds of the table besides its summary).
    public var pendingCount: Int { pending.count }

    /// Whether the key has a change not yet durable.
    public func isPending(_ key: ItemKey) -> Bool { pending[key] != nil }

    /// Keys in key order (or its reverse) from `start`.
    public func keys(from start: KeyBound = .first, descending: Bool = false) -> Walk<ItemKey> {
        let store = self.store, id = self.id
        return Walk(
            fetch: { last throws(TandemError) in
                try store.keys(id, from: last.map { .after($0) } ?? start, descending: descending, limit: Walk<ItemKey>.page)
            },
            pending: descending
                ? pendingOrder.descending(fromLastBefore: { !start.admits($0, descending: true) })
                : pendingOrder.ascending(fromFirstWhere: { start.admits($0) }),
            descending: descending,
            gone: { [pending] in pending[$0] != nil && pending[$0]!.state == nil })
    }

    /// Every item with its state, in key order: for the node's own small tables (catalogs,
    /// settings), never for a client's.
    public func allItems() throws(TandemError) -> [(key: ItemKey, state: ItemState)] {
        var out: [(key: ItemKey, state: ItemState)] = []
        var walk = keys()
        while let k = try walk.next() {
            if let s = try state(k) { out.append((k, s)) }
        }
        return out
    }

    /// Keys after `key` in key order.
    public func keys(after key: ItemKey?) -> Walk<ItemKey> { keys(from: key.map { .after($0) } ?? .first) }

    /// Keys in scan order after `after`.
    public func scanKeys(after: ScanKey?) -> Walk<ScanKey> {
        let store = self.store, id = self.id
        return Walk(
            fetch: { last throws(TandemError) in try store.scanKeys(id, after: last ?? after, limit: Walk<ScanKey>.page) },
            pending: pendingScan.ascending(after: after), descending: false,
            gone: { [pending] in pending[$0.key] != nil && pending[$0.key]!.state == nil })
    }

    /// The keys of one digest bucket with their hashes, sorted.
    public func bucket(_ bucket: Int) throws(TandemError) -> [(ItemKey, UInt64)] {
        var out: [ItemKey: UInt64] = [:]
        for (k, h) in try store.bucket(id, bucket) { out[k] = h }
        for (k, p) in pending where MerkleDigest.bucket(of: k) == bucket { out[k] = p.stored?.hash }
        return out.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Durable keys of items holding garbage, after `after`.
    func garbage(after: ItemKey?, limit: Int) throws(TandemError) -> [ItemKey] {
        try store.garbage(id, after: after, limit: limit)
    }

    /// Visible items of one partition in sort-key order, from `after` (exclusive), up to `limit`.
    public func query(
        partition: KeyValue, where match: (KeyValue?) -> Bool = { _ in true },
        after: ItemKey? = nil, limit: Int
    ) throws(TandemError) -> (items: [(ItemKey, [String: AttributeValue])], more: Bool) {
        var keys = self.keys(from: after.map { .after($0) } ?? .atOrAfter(ItemKey(partition: partition, sort: nil)))
        return try page(limit: limit) { () throws(TandemError) -> ItemKey? in
            while let k = try keys.next(), k.partition == partition {
                if match(k.sort) { return k }
            }
            return nil
        }
    }

    /// All visible items in key order, from `after` (exclusive), up to `limit`.
    public func scan(after: ItemKey? = nil, limit: Int) throws(TandemError) -> (items: [(ItemKey, [String: AttributeValue])], more: Bool) {
        var keys = self.keys(after: after)
        return try page(limit: limit) { () throws(TandemError) -> ItemKey? in try keys.next() }
    }

    /// The keys of Scan segment `segment` of `total`, in scan order, after `after` (which must be
    /// of that segment): only that segment's run of the scan order is read.
    public func segmentKeys(_ segment: Int, of total: Int, after: ItemKey? = nil) -> SegmentWalk {
        // The segment's first hash: the least h with h × total / 2^64 ≥ segment.
        let (q, r) = UInt64(total).dividingFullWidth((high: UInt64(segment), low: 0))
        let first = r > 0 ? q + 1 : q
        let start = after.map(ScanKey.init) ?? (first == 0 ? nil : ScanKey(hash: first, before: ()))
        return SegmentWalk(walk: scanKeys(after: start), segment: segment, total: total)
    }

    private func page(
        limit: Int, _ next: () throws(TandemError) -> ItemKey?
    ) throws(TandemError) -> (items: [(ItemKey, [String: AttributeValue])], more: Bool) {
        var out: [(ItemKey, [String: AttributeValue])] = []
        while let k = try next() {
            guard let v = try state(k)?.visible else { continue }
            if out.count == limit { return (out, true) }
            out.append((k, v))
        }
        return (out, false)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Changing

    /// Merges a delta (a local write or one from a peer): the state before, and whether
    /// anything changed.
    @discardableResult
    public mutating func merge(_ key: ItemKey, _ delta: ItemState) throws(TandemError) -> (before: ItemState?, changed: Bool) {
        var old: StoredItem?, before: ItemState?
        if let p = pending[key] {
            (old, before) = (p.stored, p.state)
        } else if let e = try durable(key) {
            (old, before) = (e.stored, e.state)
        }
        var next = before ?? ItemState()
        next.merge(delta)
        guard next != before else { return (before, false) }
        set(key, next, old: old, before: before)
        return (before, true)
    }

    /// Replaces an item's state outright (nil removes it): tombstone collection does this, with
    /// a state that reads the same, and a resync.
    public mutating func replace(_ key: ItemKey, with state: ItemState?) throws(TandemError) {
        set(key, state, old: try stored(key), before: try self.state(key))
    }

    /// `old`, `before`: the item as it is now (pending, or durable), stored and decoded.
    private mutating func set(_ key: ItemKey, _ state: ItemState?, old: StoredItem?, before: ItemState?) {
        let new = state.map { s in
            let bytes = ItemCodec.encode(s)
            return StoredItem(state: bytes, hash: MerkleDigest.itemHash(key, bytes))
        }
        summary.replace(key, old: old, new: new)
        if let s = state { summary.lastWrite = max(summary.lastWrite, s.lastWriteTime) }
        if !indexes.isEmpty { indexes.change(key, from: before, to: state, table: schema) }
        version += 1
        if var p = pending[key] {
            p.state = state
            p.stored = new
            p.version = version
            pending[key] = p
        } else {
            let durable = TableNode.Durable(stored: old != nil, garbage: before?.hasGarbage ?? false)
            pending[key] = Pending(state: state, stored: new, version: version, durable: durable)
            cache.remove(id, key)  // the store's version is about to change
            pendingOrder.insert(key)
            pendingScan.insert(ScanKey(key))
        }
        touched.append(key)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Storing

    /// The writes that store every change since the last take (one per key), and what they hold.
    mutating func take() -> (writes: [TableNode.StoreWrite], taken: Taken)? {
        let indexWrites = indexes.take()
        guard !touched.isEmpty || indexWrites != nil else { return nil }
        var writes: [TableNode.StoreWrite] = []
        var taken = Taken(table: id, summary: summary, indexes: indexes.settled)
        var seen = Set<ItemKey>()
        for key in touched where seen.insert(key).inserted {
            let p = pending[key]!
            let garbage = p.state?.hasGarbage ?? false
            writes.append(.item(table: id, key: key, item: p.stored, garbage: garbage, before: p.durable))
            taken.keys.append((key, p.version, TableNode.Durable(stored: p.stored != nil, garbage: garbage)))
        }
        writes.append(.summary(table: id, summary))
        for w in indexWrites ?? [] { writes.append(.index(table: id, w)) }
        touched = []
        return (writes, taken)
    }

    /// A take's commit succeeded: the store holds those versions now (and reads see them).
    /// (A take of an incarnation since replaced is nothing to this one.)
    mutating func stored(_ taken: Taken) {
        guard taken.table == id else { return }
        durableSummary = taken.summary
        storedIndexes = taken.indexes
        for (key, v, durable) in taken.keys {
            guard let p = pending[key] else { continue }
            if p.version == v {
                pending[key] = nil
                pendingOrder.remove(key)
                pendingScan.remove(ScanKey(key))
            } else {
                pending[key]!.durable = durable  // changed since: the store now holds that take
            }
        }
    }

    /// A commit failed: back to what the store holds.
    mutating func rollback() {
        pending = [:]
        pendingOrder = SortedList()
        pendingScan = SortedList()
        touched = []
        // The store's summary, not `durableSummary`: a replica put back by a failed catalog
        // change may have been replaced while a commit of its own succeeded, which it never
        // heard of. `durableSummary` only if the store cannot be read.
        summary = (try? store.summary(id) ?? TableSummary()) ?? durableSummary
        indexes = (try? SecondaryIndexes(decoding: store.indexRegistry(id))) ?? storedIndexes
    }
}

/// Keys from the store merged with pending ones, in order (or its reverse), each once; keys
/// whose pending change removes them are skipped. The store is read `page` keys at a time.
public struct Walk<K: Comparable> {
    static var page: Int { 256 }
    private let fetch: (K?) throws(TandemError) -> [K]
    private var pending: AnyIterator<K>
    private var nextPending: K?
    private let descending: Bool
    private let gone: (K) -> Bool
    private var buffer: [K] = []
    private var index = 0
    private var lastFetched: K?
    private var storeDone = false

    init(fetch: @escaping (K?) throws(TandemError) -> [K], pending: AnyIterator<K>, descending: Bool, gone: @escaping (K) -> Bool) {
        self.fetch = fetch
        self.pending = pending
        self.descending = descending
        self.gone = gone
        nextPending = self.pending.next()
    }

    public mutating func next() throws(TandemError) -> K? {
        while true {
            if index == buffer.count && !storeDone {
                buffer = try fetch(lastFetched)
                index = 0
                lastFetched = buffer.last ?? lastFetched
                storeDone = buffer.count < Walk.page
            }
            let fromStore = index < buffer.count ? buffer[index] : nil
            var k: K
            switch (fromStore, nextPending) {
            case (nil, nil): return nil
            case (let s?, nil):
                k = s
                index += 1
            case (nil, let p?):
                k = p
                nextPending = pending.next()
            case (let s?, let p?):
                if descending ? p < s : s < p {
                    k = s
                    index += 1
                } else {
                    k = p
                    nextPending = pending.next()
                    if s == p { index += 1 }
                }
            }
            if !gone(k) { return k }
        }
    }
}

/// The keys of one Scan segment, in scan order.
public struct SegmentWalk {
    var walk: Walk<ScanKey>
    let segment: Int
    let total: Int
    var done = false

    public mutating func next() throws(TandemError) -> ItemKey? {
        guard !done, let k = try walk.next(), k.segment(of: total) == segment else {
            done = true
            return nil
        }
        return k.key
    }
}
