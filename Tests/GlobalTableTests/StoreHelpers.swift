import TandemCore

@testable import GlobalTable

extension TableReplica {
    /// A replica over a store of its own, in memory.
    static func inMemory(_ name: String, _ schema: KeySchema) -> TableReplica {
        TableReplica(
            new: name, schema: schema, at: HLC(time: 1 << 16, node: 0), store: MemoryItemStore(), cache: ItemCache(itemsPerGeneration: 64))
    }

    /// Stores every pending change, as a commit does: reads then come from the store.
    mutating func persist() {
        guard let (writes, taken) = take() else { return }
        (store as! MemoryItemStore).apply(writes)
        stored(taken)
    }

    func allKeys() throws -> [ItemKey] { try allItems().map(\.key) }
}

extension Walk {
    /// Up to `limit` keys.
    mutating func take(_ limit: Int = .max) throws -> [K] {
        var out: [K] = []
        while out.count < limit, let k = try next() { out.append(k) }
        return out
    }
}

extension SegmentWalk {
    mutating func take(_ limit: Int = .max) throws -> [ItemKey] {
        var out: [ItemKey] = []
        while out.count < limit, let k = try next() { out.append(k) }
        return out
    }
}

extension TableNode {
    /// Carries out a ready's store as the shell does: the writes into this node's store, then
    /// `stored(nil)`.
    func commit(_ rd: TableReady) {
        (store as! MemoryItemStore).apply(rd.writes)
        stored(nil)
    }
}
