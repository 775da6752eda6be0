/// An attribute value in DynamoDB's type system, so a DynamoDB-compatible API can sit on the
/// same engine without a second model.
public indirect enum AttributeValue: Hashable, Sendable {
    case string(String)
    case number(DecimalNumber)
    case binary([UInt8])
    case bool(Bool)
    case null
    case map([String: AttributeValue])
    case list([AttributeValue])
    case stringSet(Set<String>)
    case numberSet(Set<DecimalNumber>)
    case binarySet(Set<[UInt8]>)

    /// DynamoDB's type descriptor (`S`, `N`, …).
    public var typeName: String {
        switch self {
        case .string: "S"
        case .number: "N"
        case .binary: "B"
        case .bool: "BOOL"
        case .null: "NULL"
        case .map: "M"
        case .list: "L"
        case .stringSet: "SS"
        case .numberSet: "NS"
        case .binarySet: "BS"
        }
    }
}

/// A string, number or binary scalar: a member of a set, or a key. Ordered as DynamoDB orders
/// sort keys: strings by UTF-8 bytes, numbers numerically, binary bytewise.
public enum SetElement: Hashable, Sendable, Comparable {
    case string(String)
    case number(DecimalNumber)
    case binary([UInt8])

    public static func < (a: SetElement, b: SetElement) -> Bool { order(a, b) < 0 }

    /// Negative, zero or positive as `a` sorts before, with or after `b`: one pass where
    /// `!=` then `<` would compare twice (keys are compared on every write, to keep them sorted).
    public static func order(_ a: SetElement, _ b: SetElement) -> Int {
        switch (a, b) {
        case (.string(let x), .string(let y)): return bytewise(x, y)
        case (.number(let x), .number(let y)): return x < y ? -1 : y < x ? 1 : 0
        case (.binary(let x), .binary(let y)):
            return x.withUnsafeBufferPointer { p in y.withUnsafeBufferPointer { q in bytewise(p, q) } }
        default: return a.rank - b.rank
        }
    }

    /// UTF-8 byte order (which is code point order), without copying either string.
    static func bytewise(_ x: String, _ y: String) -> Int {
        var x = x, y = y
        return x.withUTF8 { p in y.withUTF8 { q in bytewise(p, q) } }
    }

    static func bytewise(_ p: UnsafeBufferPointer<UInt8>, _ q: UnsafeBufferPointer<UInt8>) -> Int {
        for k in 0..<min(p.count, q.count) where p[k] != q[k] { return p[k] < q[k] ? -1 : 1 }
        return p.count - q.count
    }

    public var rank: Int {
        switch self {
        case .string: 0
        case .number: 1
        case .binary: 2
        }
    }
}
