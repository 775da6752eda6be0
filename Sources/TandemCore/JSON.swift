/// A JSON document that keeps numbers as their exact text (a 38-digit DynamoDB number must not
/// pass through a Double) and object members in order. The parser is strict (RFC 8259), bounded
/// in depth, and reports where input went wrong.
public indirect enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.number(let x), .number(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    public subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var arrayValue: [JSON]? { if case .array(let items) = self { items } else { nil } }
    public var objectValue: [(String, JSON)]? { if case .object(let members) = self { members } else { nil } }
    /// A number written as a whole number that fits an Int (`3`, not `3.0` or `3e0`).
    public var intValue: Int? { if case .number(let n) = self { Int(n) } else { nil } }
    public var doubleValue: Double? { if case .number(let n) = self { Double(n) } else { nil } }

    // MARK: Parsing

    public static let maxDepth = 64

    public static func parse(_ bytes: [UInt8], maxDepth: Int = JSON.maxDepth) throws(TandemError) -> JSON {
        var p = Parser(bytes: bytes, maxDepth: maxDepth)
        p.skipSpace()
        let value = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == bytes.count else { throw p.error("unexpected trailing characters") }
        return value
    }

    /// Where the string whose contents start at `start` ends (its closing quote) when it holds
    /// no escape and no control character, and whether it is all ASCII; nil otherwise. Eight
    /// bytes at a time while none is special (base64 payloads are long runs of such bytes).
    public static func plainString(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> (end: Int, ascii: Bool)? {
        var k = start
        var high: UInt8 = 0
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        while k + 8 <= b.count {
            let x = UnsafeRawPointer(b.baseAddress! + k).loadUnaligned(as: UInt64.self)
            let quote = x ^ (ones &* 0x22), slash = x ^ (ones &* 0x5C)
            // A zero byte in `quote` or `slash`, a byte below 0x20, or a byte ≥ 0x80.
            let special = ((quote &- ones) & ~quote) | ((slash &- ones) & ~slash) | (x &- ones &* 0x20) | x
            if special & highs != 0 { break }
            k += 8
        }
        while k < b.count {
            let c = b[k]
            if c == UInt8(ascii: "\"") { return (k, high < 0x80) }
            if c == UInt8(ascii: "\\") || c < 0x20 { return nil }
            high |= c
            k += 1
        }
        return nil
    }

    struct Parser {
        let bytes: [UInt8]
        let maxDepth: Int
        var i = 0

        func error(_ what: String) -> TandemError { TandemError(.badRequest, "invalid JSON at byte \(i): \(what)") }

        mutating func skipSpace() {
            while i < bytes.count {
                switch bytes[i] {
                case 0x20, 0x09, 0x0A, 0x0D: i += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(TandemError) -> JSON {
            guard depth <= maxDepth else { throw error("nested deeper than \(maxDepth)") }
            guard i < bytes.count else { throw error("unexpected end") }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(String, JSON)] = []
                skipSpace()
                if i < bytes.count && bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                    let key = try string()
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':'") }
                    i += 1
                    skipSpace()
                    members.append((key, try value(depth: depth + 1)))
                    skipSpace()
                    guard i < bytes.count else { throw error("unexpected end in object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                    throw error("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [JSON] = []
                skipSpace()
                if i < bytes.count && bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    skipSpace()
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard i < bytes.count else { throw error("unexpected end in array") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    throw error("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            default:
                return try number()
            }
        }

        mutating func literal(_ word: String, _ v: JSON) throws(TandemError) -> JSON {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else { throw error("unexpected character") }
            i += w.count
            return v
        }

        mutating func number() throws(TandemError) -> JSON {
            let start = i
            func digits(_ p: inout Parser) -> Int {
                let s = p.i
                while p.i < p.bytes.count, p.bytes[p.i] >= 0x30, p.bytes[p.i] <= 0x39 { p.i += 1 }
                return p.i - s
            }
            if i < bytes.count && bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 else { throw error("unexpected character") }
            if bytes[i] == 0x30 { i += 1 } else { _ = digits(&self) }
            if i < bytes.count && bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits(&self) > 0 else { throw error("digits expected after '.'") }
            }
            if i < bytes.count && (bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E")) {
                i += 1
                if i < bytes.count && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) { i += 1 }
                guard digits(&self) > 0 else { throw error("digits expected in exponent") }
            }
            return .number(String(decoding: bytes[start..<i], as: UTF8.self))
        }

        mutating func string() throws(TandemError) -> String {
            i += 1  // opening quote
            // Most strings hold no escapes: find the closing quote and validate the run whole.
            let start = i
            let plain: String?? = bytes.withUnsafeBufferPointer { b in
                guard let (end, ascii) = JSON.plainString(b, from: start) else { return nil }
                let run = UnsafeBufferPointer(rebasing: b[start..<end])
                // ASCII needs no validation; anything else is validated, not repaired.
                return .some(ascii ? String(decoding: run, as: UTF8.self) : String(validating: run, as: UTF8.self))
            }
            if let plain {
                guard let s = plain else { throw error("string is not UTF-8") }
                i += s.utf8.count + 1
                return s
            }
            var out: [UInt8] = []
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") {
                    i += 1
                    guard let s = String(validating: out, as: UTF8.self) else { throw error("string is not UTF-8") }
                    return s
                }
                if c < 0x20 { throw error("control character in string") }
                if c == UInt8(ascii: "\\") {
                    i += 1
                    guard i < bytes.count else { break }
                    switch bytes[i] {
                    case UInt8(ascii: "\""): out.append(0x22)
                    case UInt8(ascii: "\\"): out.append(0x5C)
                    case UInt8(ascii: "/"): out.append(0x2F)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar) {
                            guard i + 2 < bytes.count, bytes[i + 1] == UInt8(ascii: "\\"), bytes[i + 2] == UInt8(ascii: "u") else {
                                throw error("unpaired surrogate")
                            }
                            i += 2
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let u = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                        out.append(contentsOf: Array(String(Character(u)).utf8))
                    default: throw error("invalid escape")
                    }
                    i += 1
                    continue
                }
                out.append(c)
                i += 1
            }
            throw error("unterminated string")
        }

        /// Reads the 4 hex digits after `\u`; leaves `i` on the last one.
        mutating func hex4() throws(TandemError) -> UInt32 {
            guard i + 4 < bytes.count else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for k in 1...4 {
                let c = bytes[i + k]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw error("invalid \\u escape")
                }
                v = v << 4 | d
            }
            i += 4
            return v
        }
    }

    // MARK: Writing

    public var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): JSON.quote(s, into: &out)
        case .array(let items):
            out += "["
            for (k, v) in items.enumerated() {
                if k > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (k, (name, v)) in members.enumerated() {
                if k > 0 { out += "," }
                JSON.quote(name, into: &out)
                out += ":"
                v.write(to: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        // Most strings need no escaping: append them whole (per-scalar appends dominated the
        // cost of answering a write).
        var s = s
        let plain = s.withUTF8 { bytes in
            for b in bytes where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { return false }
            return true
        }
        if plain {
            out += s
            out += "\""
            return
        }
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

// MARK: Building answers

/// Typed building of documents, so an answer is checked by the compiler (a value that could not
/// be written used to turn a whole answer into `{}` at run time).
extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(String(value)) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    /// Members sorted by key, as from a dictionary (write `.object([...])` to keep an order).
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(elements.sorted { $0.0 < $1.0 })
    }

    public init(_ s: String) { self = .string(s) }
    public init(_ b: Bool) { self = .bool(b) }
    public init<I: BinaryInteger>(_ i: I) { self = .number(String(i)) }
    /// Shortest form that reads back the same, without a `.0` on whole numbers (1.0 → `1`,
    /// 0.5 → `0.5`, 1e-05 → `1e-05`), as JSONSerialization printed them. JSON has no NaN or
    /// infinity: those are `null`.
    public init(_ d: Double) {
        guard d.isFinite else { self = .null; return }
        let text = d.description
        self = .number(text.hasSuffix(".0") ? String(text.dropLast(2)) : text)
    }
    public init(_ strings: [String]) { self = .array(strings.map(JSON.string)) }
    /// An object from a dictionary, its members sorted by key (answers do not change between runs).
    public init(_ members: [String: JSON]) { self = .object(members.sorted { $0.key < $1.key }) }
}
