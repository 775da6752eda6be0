import TandemCore

/// A key attribute's value: DynamoDB allows strings, numbers and binary as keys — the same
/// scalars that sets hold, ordered the same way.
public typealias KeyValue = SetElement

extension SetElement: CustomStringConvertible {
    public var attributeValue: AttributeValue {
        switch self {
        case .string(let s): .string(s)
        case .number(let n): .number(n)
        case .binary(let b): .binary(b)
        }
    }

    public init?(_ value: AttributeValue) {
        switch value {
        case .string(let s): self = .string(s)
        case .number(let n): self = .number(n)
        case .binary(let b): self = .binary(b)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .string(let s): s
        case .number(let n): n.description
        case .binary(let b): b.map { String($0, radix: 16) }.joined()
        }
    }

    func encode(_ w: inout ByteWriter) {
        switch self {
        case .string(let s):
            w.u8(0)
            w.blob(Array(s.utf8))
        case .number(let n):
            w.u8(1)
            w.shortString(n.description)
        case .binary(let b):
            w.u8(2)
            w.blob(b)
        }
    }
}

/// An item's primary key: partition key and, if the table has one, sort key.
public struct ItemKey: Hashable, Comparable, Sendable {
    public var partition: KeyValue
    public var sort: KeyValue?

    public init(partition: KeyValue, sort: KeyValue? = nil) {
        self.partition = partition
        self.sort = sort
    }

    public static func < (a: ItemKey, b: ItemKey) -> Bool {
        let c = SetElement.order(a.partition, b.partition)
        if c != 0 { return c < 0 }
        switch (a.sort, b.sort) {
        case (nil, nil): return false
        case (nil, _): return true
        case (_, nil): return false
        case (let x?, let y?): return x < y
        }
    }

    /// Reads `bytes` back (storage keys).
    public init(bytes: [UInt8]) throws(TandemError) {
        var r = ByteReader(bytes)
        func element(_ r: inout ByteReader) throws(TandemError) -> KeyValue {
            switch try r.u8() {
            case 0:
                guard let s = String(validating: try r.blob(limit: r.remaining), as: UTF8.self) else {
                    throw TandemError(.malformed, "key is not UTF-8")
                }
                return .string(s)
            case 1:
                let text = try r.shortString()
                guard let n = DecimalNumber(text) else { throw TandemError(.malformed, "bad number key") }
                return .number(n)
            case 2: return .binary(try r.blob(limit: r.remaining))
            case let t: throw TandemError(.malformed, "bad key type \(t)")
            }
        }
        partition = try element(&r)
        sort = try r.bool() ? try element(&r) : nil
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes after key") }
    }

    /// Stable bytes (hashing, storage keys).
    public var bytes: [UInt8] {
        var w = ByteWriter(capacity: 32)
        partition.encode(&w)
        if let s = sort {
            w.u8(1)
            s.encode(&w)
        } else {
            w.u8(0)
        }
        return w.bytes
    }
}

public struct KeySchema: Hashable, Sendable {
    public var partitionKey: String
    public var sortKey: String?
    /// DynamoDB's key types: `S`, `N` or `B`.
    public var partitionKeyType: String
    public var sortKeyType: String

    public init(partitionKey: String, sortKey: String? = nil, partitionKeyType: String = "S", sortKeyType: String = "S") {
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.partitionKeyType = partitionKeyType
        self.sortKeyType = sortKeyType
    }

    /// A key value from its text form in a URL (`N` parsed exactly, `B` as base64).
    public static func keyValue(_ text: String, type: String) -> KeyValue? {
        switch type {
        case "S": return text.isEmpty ? nil : .string(text)
        case "N": return DecimalNumber(text).map { .number($0) }
        case "B": return Base64.decode(text).flatMap { $0.isEmpty ? nil : .binary($0) }
        default: return nil
        }
    }

    /// The item's key, checking that the key attributes are present and of the declared type.
    public func key(of item: [String: AttributeValue]) throws(TandemError) -> ItemKey {
        func part(_ name: String, _ type: String) throws(TandemError) -> KeyValue {
            guard let v = item[name] else { throw TandemError(.badRequest, "item lacks key attribute '\(name)'") }
            guard let k = KeyValue(v), v.typeName == type else {
                throw TandemError(.badRequest, "key attribute '\(name)' must be of type \(type)")
            }
            return k
        }
        return ItemKey(
            partition: try part(partitionKey, partitionKeyType), sort: try sortKey.map { n throws(TandemError) in try part(n, sortKeyType) }
        )
    }
}

/// Order-independent digests of a table's items in 256 key-hash buckets, kept up to date on
/// every change, so two replicas find what differs by comparing a root, then bucket digests,
/// then only the items of differing buckets.
///
/// A bucket's digest is the wrapping sum of its items' hashes (hash of key and canonical state):
/// replacing an item subtracts its old hash and adds the new one, in O(1).
public struct MerkleDigest: Hashable, Sendable {
    public static let bucketCount = 256
    public private(set) var buckets = [UInt64](repeating: 0, count: MerkleDigest.bucketCount)

    public init() {}

    init(buckets: [UInt64]) { self.buckets = buckets }

    public static func bucket(of key: ItemKey) -> Int { Int(stableHash64(key.bytes) >> 56) }

    public static func itemHash(_ key: ItemKey, _ encodedState: [UInt8]) -> UInt64 {
        // Two independent 64-bit hashes folded together: a collision needs both to collide.
        let k = key.bytes
        let fnv = stableHash64(encodedState, continuing: stableHash64(k))
        return fnv ^ (UInt64(CRC32C.checksum(encodedState, seed: CRC32C.checksum(k))) << 32)
    }

    mutating func remove(bucket b: Int, hash: UInt64) { buckets[b] &-= hash }

    mutating func replace(bucket b: Int, oldHash: UInt64?, newHash: UInt64) {
        if let oldHash { buckets[b] &-= oldHash }
        buckets[b] &+= newHash
    }

    /// One number that differs if any bucket differs.
    public var root: UInt64 {
        var w = ByteWriter(capacity: 8 * MerkleDigest.bucketCount)
        for b in buckets { w.u64(b) }
        return stableHash64(w.bytes)
    }

    public func differingBuckets(_ other: MerkleDigest) -> [Int] {
        (0..<MerkleDigest.bucketCount).filter { buckets[$0] != other.buckets[$0] }
    }
}
