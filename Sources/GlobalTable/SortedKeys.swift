/// A table's keys in order, kept up to date as keys appear and go, so Query and Scan start at
/// their first key by binary search and walk only what they return: blocks of at most
/// `2 × blockSize` sorted keys (a one-level B-tree). Insert and remove cost a binary search and
/// a move within one block; a block splits when full and goes when empty.
public struct SortedKeys: Sendable {
    static let blockSize = 256
    private var blocks: [[ItemKey]] = []
    public private(set) var count = 0

    public init() {}

    /// First index in `a` where `pred` holds (`pred` is false then true along `a`).
    private static func point(_ a: [ItemKey], _ pred: (ItemKey) -> Bool) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pred(a[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// The first position (block, index) where `pred` holds; `(blocks.count, 0)` if none.
    private func position(_ pred: (ItemKey) -> Bool) -> (Int, Int) {
        var lo = 0, hi = blocks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pred(blocks[mid][0]) { hi = mid } else { lo = mid + 1 }
        }
        // Blocks before `lo` start with keys where pred is false: the point is in block lo - 1
        // (or at the start of block lo).
        guard lo > 0 else { return (0, 0) }
        let i = SortedKeys.point(blocks[lo - 1], pred)
        return i < blocks[lo - 1].count ? (lo - 1, i) : (lo, 0)
    }

    public mutating func insert(_ key: ItemKey) {
        guard !blocks.isEmpty else {
            blocks = [[key]]
            count = 1
            return
        }
        var (b, i) = position { !($0 < key) }
        if b < blocks.count, blocks[b][i] == key { return }
        // Past the end, or at the start of a block: append to the block before (if any).
        if b == blocks.count || (i == 0 && b > 0) {
            b -= 1
            i = blocks[b].count
        }
        blocks[b].insert(key, at: i)
        count += 1
        if blocks[b].count >= 2 * SortedKeys.blockSize {
            let tail = Array(blocks[b][SortedKeys.blockSize...])
            blocks[b].removeSubrange(SortedKeys.blockSize...)
            blocks.insert(tail, at: b + 1)
        }
    }

    public mutating func remove(_ key: ItemKey) {
        let (b, i) = position { !($0 < key) }
        guard b < blocks.count, blocks[b][i] == key else { return }
        blocks[b].remove(at: i)
        count -= 1
        if blocks[b].isEmpty { blocks.remove(at: b) }
    }

    /// Keys in ascending order from the first one where `pred` holds (`pred`: false, then true).
    public func ascending(fromFirstWhere pred: (ItemKey) -> Bool) -> AnyIterator<ItemKey> {
        var (b, i) = position(pred)
        let blocks = self.blocks
        return AnyIterator {
            guard b < blocks.count else { return nil }
            let k = blocks[b][i]
            i += 1
            if i == blocks[b].count { b += 1; i = 0 }
            return k
        }
    }

    /// Keys in descending order from the last one where `pred` does not hold.
    public func descending(fromLastBefore pred: (ItemKey) -> Bool) -> AnyIterator<ItemKey> {
        var (b, i) = position(pred)
        let blocks = self.blocks
        return AnyIterator {
            if i == 0 {
                guard b > 0 else { return nil }
                b -= 1
                i = blocks[b].count
            }
            i -= 1
            return blocks[b][i]
        }
    }

    /// Keys after `key` (all keys if nil), ascending.
    public func ascending(after key: ItemKey?) -> AnyIterator<ItemKey> {
        guard let key else { return ascending { _ in true } }
        return ascending { key < $0 }
    }
}
