import TandemCore

/// Plain JSON ↔ DynamoDB-typed values, for the `/v1/tables` API.
///
/// JSON maps as you would expect — string → S, number → N (exact), true/false → BOOL, null →
/// NULL, array → L, object → M — and the types JSON lacks are explicit one-member objects:
/// `{"$B": "<base64>"}`, `{"$SS": ["a","b"]}`, `{"$NS": [1, 2]}`, `{"$BS": ["<base64>"]}`.
public enum PlainJSON {
    public static func value(_ json: JSON, path: String = "") throws(TandemError) -> AttributeValue {
        switch json {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        case .number(let text):
            guard let n = DecimalNumber(text) else {
                throw TandemError(.badRequest, "\(where_(path))number \(text) has more than 38 digits or is out of range")
            }
            return .number(n)
        case .array(let items):
            var out: [AttributeValue] = []
            for (i, item) in items.enumerated() { out.append(try value(item, path: "\(path)[\(i)]")) }
            return .list(out)
        case .object(let members):
            if members.count == 1, let typed = try typedValue(members[0].0, members[0].1, path: path) { return typed }
            var out: [String: AttributeValue] = [:]
            for (k, v) in members { out[k] = try value(v, path: path.isEmpty ? k : "\(path).\(k)") }
            return .map(out)
        }
    }

    static func where_(_ path: String) -> String { path.isEmpty ? "" : "\(path): " }

    static func typedValue(_ tag: String, _ body: JSON, path: String) throws(TandemError) -> AttributeValue? {
        func bytes(_ j: JSON) throws(TandemError) -> [UInt8] {
            guard case .string(let s) = j, let b = Base64.decode(s) else {
                throw TandemError(.badRequest, "\(where_(path))\(tag) needs base64 strings")
            }
            return b
        }
        func list() throws(TandemError) -> [JSON] {
            guard case .array(let items) = body, !items.isEmpty else {
                throw TandemError(.badRequest, "\(where_(path))\(tag) needs a non-empty array")
            }
            return items
        }
        switch tag {
        case "$B": return .binary(try bytes(body))
        case "$SS":
            var s = Set<String>()
            for item in try list() {
                guard case .string(let x) = item else { throw TandemError(.badRequest, "\(where_(path))$SS holds strings only") }
                s.insert(x)
            }
            return .stringSet(s)
        case "$NS":
            var s = Set<DecimalNumber>()
            for item in try list() {
                guard case .number(let t) = item, let n = DecimalNumber(t) else {
                    throw TandemError(.badRequest, "\(where_(path))$NS holds numbers only")
                }
                s.insert(n)
            }
            return .numberSet(s)
        case "$BS":
            var s = Set<[UInt8]>()
            for item in try list() { s.insert(try bytes(item)) }
            return .binarySet(s)
        default: return nil
        }
    }

    public static func json(_ value: AttributeValue) -> JSON {
        switch value {
        case .string(let s): .string(s)
        case .number(let n): .number(n.description)
        case .binary(let b): .object([("$B", .string(Base64.encode(b)))])
        case .bool(let b): .bool(b)
        case .null: .null
        case .map(let m): .object(m.keys.sorted().map { ($0, json(m[$0]!)) })
        case .list(let l): .array(l.map(json))
        case .stringSet(let s): .object([("$SS", .array(s.sorted().map { .string($0) }))])
        case .numberSet(let s): .object([("$NS", .array(s.sorted().map { .number($0.description) }))])
        case .binarySet(let s):
            .object([("$BS", .array(s.sorted { $0.lexicographicallyPrecedes($1) }.map { .string(Base64.encode($0)) }))])
        }
    }

    public static func json(_ item: [String: AttributeValue]) -> JSON {
        .object(item.keys.sorted().map { ($0, json(item[$0]!)) })
    }
}
