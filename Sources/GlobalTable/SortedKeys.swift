import TandemCore

/// A table's keys in key order (Query, and Scan without segments).
public typealias SortedKeys = SortedList<ItemKey>

/// Keys in order, kept up to date as keys appear and go, so Query and Scan start at their first
/// key by binary search and walk only what they return: blocks of at most `2 × blockSize`
/// sorted keys (a one-level B-tree). Insert and remove cost a binary search and a move within
/// one block; a block splits when full and goes when empty.
public struct SortedList<Key: Comparable & Sendable>: Sendable {
    static var blockSize: Int { 256 }
    private var blocks: [[Key]] = []
    public private(set) var count = 0

    public init() {}

    /// First index in `a` where `pred` holds (`pred` is false then true along `a`).
    private static func point(_ a: [Key], _ pred: (Key) -> Bool) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pred(a[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// The first position (block, index) where `pred` holds; `(blocks.count, 0)` if none.
    private func position(_ pred: (Key) -> Bool) -> (Int, Int) {
        var lo = 0, hi = blocks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pred(blocks[mid][0]) { hi = mid } else { lo = mid + 1 }
        }
        // Blocks before `lo` start with keys where pred is false: the point is in block lo - 1
        // (or at the start of block lo).
        guard lo > 0 else { return (0, 0) }
        let i = SortedList.point(blocks[lo - 1], pred)
        return i < blocks[lo - 1].count ? (lo - 1, i) : (lo, 0)
    }

    public mutating func insert(_ key: Key) {
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
        if blocks[b].count >= 2 * SortedList.blockSize {
            let tail = Array(blocks[b][SortedList.blockSize...])
            blocks[b].removeSubrange(SortedList.blockSize...)
            blocks.insert(tail, at: b + 1)
        }
    }

    public mutating func remove(_ key: Key) {
        let (b, i) = position { !($0 < key) }
        guard b < blocks.count, blocks[b][i] == key else { return }
        blocks[b].remove(at: i)
        count -= 1
        if blocks[b].isEmpty { blocks.remove(at: b) }
    }

    /// Keys in ascending order from the first one where `pred` holds (`pred`: false, then true).
    public func ascending(fromFirstWhere pred: (Key) -> Bool) -> AnyIterator<Key> {
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
    public func descending(fromLastBefore pred: (Key) -> Bool) -> AnyIterator<Key> {
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
    public func ascending(after key: Key?) -> AnyIterator<Key> {
        guard let key else { return ascending { _ in true } }
        return ascending { key < $0 }
    }
}

/// A key's place in the scan order: by a hash of its partition key, then the key. Segments of a
/// parallel Scan are ranges of that hash, so each segment is one contiguous run of this order
/// (read from its start by binary search), every item is in exactly one segment, an item
/// collection stays in one segment in sort-key order (as in DynamoDB), and an
/// ExclusiveStartKey finds its place from the key alone, even after that item is gone.
public struct ScanKey: Comparable, Sendable {
    public let hash: UInt64
    public let key: ItemKey

    public init(_ key: ItemKey) {
        self.key = key
        // FNV-1a spreads short keys poorly over its high bits, which pick the segment: finish
        // with splitmix64's mixer. Stable across nodes, so a LastEvaluatedKey works on any node.
        hash = splitmix64Mix(stableHash64(ItemKey(partition: key.partition).bytes))
    }

    /// A place just before every key whose hash is `hash` (walks start after it).
    init(hash: UInt64, before: Void) {
        self.hash = hash
        key = ItemKey(partition: .string(""))  // no key is less: keys are not empty
    }

    public init(hash: UInt64, key: ItemKey) {
        self.hash = hash
        self.key = key
    }

    /// The segment of `total` this key belongs to: the hash's place in `total` equal ranges.
    public func segment(of total: Int) -> Int { Int(hash.multipliedFullWidth(by: UInt64(total)).high) }

    public static func < (a: ScanKey, b: ScanKey) -> Bool { a.hash != b.hash ? a.hash < b.hash : a.key < b.key }
    public static func == (a: ScanKey, b: ScanKey) -> Bool { a.hash == b.hash && a.key == b.key }
}
