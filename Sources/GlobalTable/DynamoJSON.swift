import TandemCore

/// A DynamoDB API error: its `__type` (without the namespace) and message, as DynamoDB words it
/// where clients are known to match on the text.
public struct DynamoError: Error, Equatable, CustomStringConvertible {
    public var type: String
    public var message: String

    public init(_ type: String, _ message: String) {
        self.type = type
        self.message = message
    }

    public static func validation(_ message: String) -> DynamoError { DynamoError("ValidationException", message) }
    public static func serialization(_ message: String) -> DynamoError { DynamoError("SerializationException", message) }

    public var description: String { "\(type): \(message)" }
}

/// DynamoDB's typed JSON (`{"S":"x"}`, `{"N":"42"}`, `{"M":{…}}`, …) to and from `AttributeValue`.
/// Numbers come back canonical (`00042` → `42`, `1.5E2` → `150`), as DynamoDB returns them.
public enum DynamoJSON {
    public static func value(_ json: JSON, depth: Int = 0) throws(DynamoError) -> AttributeValue {
        guard depth <= ItemCodec.maxDepth else { throw .validation("Nesting Levels have exceeded supported limits") }
        guard case .object(let members) = json, members.count == 1, let (tag, body) = members.first else {
            throw .validation(
                "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes")
        }
        func string(_ j: JSON) throws(DynamoError) -> String {
            guard case .string(let s) = j else { throw .serialization("\(tag) value must be a string") }
            return s
        }
        func number(_ j: JSON) throws(DynamoError) -> DecimalNumber {
            guard let n = DecimalNumber(try string(j)) else {
                throw .validation("A value provided cannot be converted into a number")
            }
            return n
        }
        func bytes(_ j: JSON) throws(DynamoError) -> [UInt8] {
            guard let b = Base64.decode(try string(j)) else {
                throw .serialization("Base64 encoded length is expected a multiple of 4 bytes")
            }
            return b
        }
        func list() throws(DynamoError) -> [JSON] {
            guard case .array(let items) = body else { throw .serialization("\(tag) value must be a list") }
            return items
        }
        func set<T: Hashable>(_ convert: (JSON) throws(DynamoError) -> T) throws(DynamoError) -> Set<T> {
            let items = try list()
            guard !items.isEmpty else { throw .validation("One or more parameter values were invalid: An \(tag) set may not be empty") }
            var out = Set<T>()
            for item in items { out.insert(try convert(item)) }
            guard out.count == items.count else { throw .validation("Input collection contains duplicates") }
            return out
        }
        switch tag {
        case "S": return .string(try string(body))
        case "N": return .number(try number(body))
        case "B": return .binary(try bytes(body))
        case "BOOL":
            guard case .bool(let b) = body else { throw .serialization("BOOL value must be true or false") }
            return .bool(b)
        case "NULL":
            guard case .bool(true) = body else {
                throw .validation("One or more parameter values were invalid: Null attribute value types must have the value of true")
            }
            return .null
        case "M":
            guard case .object(let m) = body else { throw .serialization("M value must be an object") }
            var out: [String: AttributeValue] = [:]
            for (k, v) in m { out[k] = try value(v, depth: depth + 1) }
            return .map(out)
        case "L":
            var out: [AttributeValue] = []
            for v in try list() { out.append(try value(v, depth: depth + 1)) }
            return .list(out)
        case "SS": return .stringSet(try set(string))
        case "NS": return .numberSet(try set(number))
        case "BS": return .binarySet(try set(bytes))
        default: throw .serialization("Unknown AttributeValue type '\(tag)'")
        }
    }

    /// An item (`{"name": {"S": …}, …}`).
    public static func item(_ json: JSON?) throws(DynamoError) -> [String: AttributeValue] {
        guard case .object(let members)? = json else { throw .serialization("an item is an object of attribute values") }
        var out: [String: AttributeValue] = [:]
        for (k, v) in members {
            guard !k.isEmpty else { throw .validation("One or more parameter values were invalid: An attribute name may not be empty") }
            try checkName(k)
            out[k] = try value(v)
        }
        return out
    }

    /// DynamoDB's limit on an attribute name (65,535 bytes is the longest accepted; its
    /// documented "64 KB" is not).
    public static let maxNameBytes = 65535

    public static func checkName(_ name: String) throws(DynamoError) {
        guard name.utf8.count <= maxNameBytes else {
            throw .validation(
                "One or more parameter values were invalid: An attribute name is \(name.utf8.count) bytes, more than the maximum of \(maxNameBytes)"
            )
        }
    }

    public static func json(_ value: AttributeValue) -> JSON {
        switch value {
        case .string(let s): .object([("S", .string(s))])
        case .number(let n): .object([("N", .string(n.description))])
        case .binary(let b): .object([("B", .string(Base64.encode(b)))])
        case .bool(let b): .object([("BOOL", .bool(b))])
        case .null: .object([("NULL", .bool(true))])
        case .map(let m): .object([("M", json(m))])
        case .list(let l): .object([("L", .array(l.map(json)))])
        case .stringSet(let s): .object([("SS", .array(s.sorted().map { .string($0) }))])
        case .numberSet(let s): .object([("NS", .array(s.sorted().map { .string($0.description) }))])
        case .binarySet(let s): .object([("BS", .array(s.sorted { $0.lexicographicallyPrecedes($1) }.map { .string(Base64.encode($0)) }))])
        }
    }

    public static func json(_ item: [String: AttributeValue]) -> JSON {
        .object(item.keys.sorted().map { ($0, json(item[$0]!)) })
    }

    /// DynamoDB's size accounting: names plus values in bytes (numbers about one byte per two
    /// digits), for the 400 KB item limit.
    public static func size(_ item: [String: AttributeValue]) -> Int {
        item.reduce(0) { $0 + $1.key.utf8.count + size($1.value) }
    }

    public static func size(_ v: AttributeValue) -> Int {
        switch v {
        case .string(let s): s.utf8.count
        case .number(let n): (n.digits.count + 1) / 2 + 1
        case .binary(let b): b.count
        case .bool, .null: 1
        case .map(let m): 3 + size(m) + m.count
        case .list(let l): 3 + l.reduce(0) { $0 + size($1) + 1 }
        case .stringSet(let s): s.reduce(0) { $0 + $1.utf8.count }
        case .numberSet(let s): s.reduce(0) { $0 + size(.number($1)) }
        case .binarySet(let s): s.reduce(0) { $0 + $1.count }
        }
    }
}
