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

    public static func < (a: SetElement, b: SetElement) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
        case (.number(let x), .number(let y)): x < y
        case (.binary(let x), .binary(let y)): x.lexicographicallyPrecedes(y)
        default: a.rank < b.rank
        }
    }

    public var rank: Int {
        switch self {
        case .string: 0
        case .number: 1
        case .binary: 2
        }
    }
}
