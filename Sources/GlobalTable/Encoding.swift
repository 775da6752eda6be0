import TandemCore

/// The canonical binary form of item states: the same state always gives the same bytes (maps,
/// sets and per-node tables are written in sorted order), so the bytes serve for replication,
/// storage and Merkle hashing alike. Decoding checks every length and count before it allocates.
public enum ItemCodec {
    /// Still 1 after nested map paths were added: they are a new attribute flag (8), so an item
    /// without paths encodes exactly as before, and a node that predates paths refuses one with
    /// them as malformed. Nothing was deployed with the older form, so no migration exists.
    public static let version: UInt8 = 1
    /// Nested maps/lists deeper than this are refused (DynamoDB allows 32).
    public static let maxDepth = 32

    public static func encode(_ item: ItemState) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.u8(version)
        hlc(item.marker, &w)
        w.u32(UInt32(item.attributes.count))
        for name in item.attributes.keys.sorted() {
            let a = item.attributes[name]!
            string(name, &w)
            attribute(a, &w)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(TandemError) -> ItemState {
        var r = ByteReader(bytes)
        let v = try r.u8()
        guard v == version else { throw TandemError(.unsupportedVersion, "item encoding version \(v)") }
        let marker = try readHLC(&r)
        var delta = ItemState.Builder(marker: marker)
        let count = try boundedCount(&r, minSize: 3)
        for _ in 0..<count {
            let name = try readString(&r)
            let state = try readAttribute(&r)
            delta.attributes[name] = state
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes after item") }
        return delta.build()
    }

    // MARK: attributes

    /// Flags (1 register, 2 counter, 4 set, 8 nested paths), those components, then the paths:
    /// a count, and per path in sorted order its keys and its own components (never paths).
    static func attribute(_ a: AttributeState, _ w: inout ByteWriter) {
        w.u8(componentFlags(a) | (a.paths.isEmpty ? 0 : 8))
        components(a, &w)
        guard !a.paths.isEmpty else { return }
        w.u32(UInt32(a.paths.count))
        for keys in a.paths.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let p = a.paths[keys]!
            w.u8(UInt8(keys.count))
            for k in keys { string(k, &w) }
            w.u8(componentFlags(p))
            components(p, &w)
        }
    }

    static func readAttribute(_ r: inout ByteReader) throws(TandemError) -> AttributeState {
        let flags = try r.u8()
        guard flags & ~15 == 0 else { throw TandemError(.malformed, "bad attribute flags \(flags)") }
        var state = try readComponents(&r, flags: flags, depth: 0)
        guard flags & 8 != 0 else { return state }
        let n = try boundedCount(&r, minSize: 6)
        guard n > 0 else { throw TandemError(.malformed, "empty path table") }
        for _ in 0..<n {
            let depth = Int(try r.u8())
            guard (1...maxDepth).contains(depth) else { throw TandemError(.malformed, "path of \(depth) keys") }
            var keys: [String] = []
            for _ in 0..<depth { keys.append(try readString(&r)) }
            let pathFlags = try r.u8()
            guard pathFlags != 0, pathFlags & ~7 == 0 else { throw TandemError(.malformed, "bad path flags \(pathFlags)") }
            // A value at a path sits `depth` levels down already: the nesting limit covers both.
            state.paths[keys] = try readComponents(&r, flags: pathFlags, depth: depth)
        }
        return state
    }

    static func componentFlags(_ a: AttributeState) -> UInt8 {
        (a.register != nil ? 1 : 0) | (a.counter != nil ? 2 : 0) | (a.set != nil ? 4 : 0)
    }

    static func components(_ a: AttributeState, _ w: inout ByteWriter) {
        if let r = a.register {
            hlc(r.at, &w)
            if let v = r.value {
                w.u8(1)
                value(v, &w)
            } else {
                w.u8(0)
            }
        }
        if let c = a.counter {
            number(c.base, &w)
            hlc(c.epoch, &w)
            hlc(c.lastWrite, &w)
            for table in [c.increments, c.decrements] {
                w.u32(UInt32(table.count))
                for node in table.keys.sorted() {
                    w.u64(node)
                    number(table[node]!, &w)
                }
            }
        }
        if let s = a.set {
            if let lw = s.lastWrite {
                w.u8(1)
                hlc(lw, &w)
            } else {
                w.u8(0)
            }
            for table in [s.adds, s.removed] {
                w.u32(UInt32(table.count))
                for e in table.keys.sorted() {
                    e.encode(&w)
                    let tags = table[e]!.sorted()
                    w.u32(UInt32(tags.count))
                    for t in tags { hlc(t, &w) }
                }
            }
        }
    }

    static func readComponents(_ r: inout ByteReader, flags: UInt8, depth: Int) throws(TandemError) -> AttributeState {
        var state = AttributeState()
        if flags & 1 != 0 {
            let at = try readHLC(&r)
            let value: AttributeValue? = try r.bool() ? try readValue(&r, depth: depth) : nil
            state.register = Register(value: value, at: at)
        }
        if flags & 2 != 0 {
            let base = try readNumber(&r)
            var c = Counter(base: base, epoch: try readHLC(&r))
            c.lastWrite = try readHLC(&r)
            for table in 0..<2 {
                let n = try boundedCount(&r, minSize: 9)
                for _ in 0..<n {
                    let node = try r.u64()
                    let amount = try readNumber(&r)
                    if table == 0 { c.increments[node] = amount } else { c.decrements[node] = amount }
                }
            }
            state.counter = c
        }
        if flags & 4 != 0 {
            var s = ORSet()
            if try r.bool() { s.lastWrite = try readHLC(&r) }
            for table in 0..<2 {
                let n = try boundedCount(&r, minSize: 5)
                for _ in 0..<n {
                    let e = try readElement(&r)
                    let tags = try boundedCount(&r, minSize: 16)
                    var set = Set<HLC>()
                    for _ in 0..<tags { set.insert(try readHLC(&r)) }
                    if table == 0 { s.adds[e] = set } else { s.removed[e] = set }
                }
            }
            state.set = s
        }
        return state
    }

    // MARK: pieces

    public static func hlc(_ t: HLC, _ w: inout ByteWriter) {
        w.u64(t.time)
        w.u64(t.node)
    }

    public static func readHLC(_ r: inout ByteReader) throws(TandemError) -> HLC {
        HLC(time: try r.u64(), node: try r.u64())
    }

    static func string(_ s: String, _ w: inout ByteWriter) { w.blob(Array(s.utf8)) }

    static func readString(_ r: inout ByteReader) throws(TandemError) -> String {
        let bytes = try r.blob(limit: r.remaining)
        guard let s = String(validating: bytes, as: UTF8.self) else { throw TandemError(.malformed, "string is not UTF-8") }
        return s
    }

    static func number(_ n: DecimalNumber, _ w: inout ByteWriter) { w.shortString(n.description) }

    static func readNumber(_ r: inout ByteReader) throws(TandemError) -> DecimalNumber {
        let text = try r.shortString()
        guard let n = DecimalNumber(text) else { throw TandemError(.malformed, "bad number '\(text)'") }
        return n
    }

    public static func boundedCount(_ r: inout ByteReader, minSize: Int) throws(TandemError) -> Int {
        let n = Int(try r.u32())
        guard n * minSize <= r.remaining else { throw TandemError(.malformed, "count \(n) cannot fit in \(r.remaining) bytes") }
        return n
    }

    static func readElement(_ r: inout ByteReader) throws(TandemError) -> SetElement {
        switch try r.u8() {
        case 0: return .string(try readString(&r))
        case 1: return .number(try readNumber(&r))
        case 2: return .binary(try r.blob(limit: r.remaining))
        case let t: throw TandemError(.malformed, "bad set element type \(t)")
        }
    }

    static func value(_ v: AttributeValue, _ w: inout ByteWriter) {
        switch v {
        case .string(let s):
            w.u8(0)
            string(s, &w)
        case .number(let n):
            w.u8(1)
            number(n, &w)
        case .binary(let b):
            w.u8(2)
            w.blob(b)
        case .bool(let b):
            w.u8(3)
            w.bool(b)
        case .null:
            w.u8(4)
        case .map(let m):
            w.u8(5)
            w.u32(UInt32(m.count))
            for k in m.keys.sorted() {
                string(k, &w)
                value(m[k]!, &w)
            }
        case .list(let l):
            w.u8(6)
            w.u32(UInt32(l.count))
            for x in l { value(x, &w) }
        case .stringSet(let s):
            w.u8(7)
            w.u32(UInt32(s.count))
            for x in s.sorted() { string(x, &w) }
        case .numberSet(let s):
            w.u8(8)
            w.u32(UInt32(s.count))
            for x in s.sorted() { number(x, &w) }
        case .binarySet(let s):
            w.u8(9)
            w.u32(UInt32(s.count))
            for x in s.sorted(by: { $0.lexicographicallyPrecedes($1) }) { w.blob(x) }
        }
    }

    static func readValue(_ r: inout ByteReader, depth: Int) throws(TandemError) -> AttributeValue {
        guard depth <= maxDepth else { throw TandemError(.malformed, "value nested deeper than \(maxDepth)") }
        switch try r.u8() {
        case 0: return .string(try readString(&r))
        case 1: return .number(try readNumber(&r))
        case 2: return .binary(try r.blob(limit: r.remaining))
        case 3: return .bool(try r.bool())
        case 4: return .null
        case 5:
            let n = try boundedCount(&r, minSize: 5)
            var m: [String: AttributeValue] = [:]
            for _ in 0..<n {
                let k = try readString(&r)
                m[k] = try readValue(&r, depth: depth + 1)
            }
            return .map(m)
        case 6:
            let n = try boundedCount(&r, minSize: 1)
            var l: [AttributeValue] = []
            for _ in 0..<n { l.append(try readValue(&r, depth: depth + 1)) }
            return .list(l)
        case 7:
            let n = try boundedCount(&r, minSize: 4)
            var s = Set<String>()
            for _ in 0..<n { s.insert(try readString(&r)) }
            return .stringSet(s)
        case 8:
            let n = try boundedCount(&r, minSize: 2)
            var s = Set<DecimalNumber>()
            for _ in 0..<n { s.insert(try readNumber(&r)) }
            return .numberSet(s)
        case 9:
            let n = try boundedCount(&r, minSize: 4)
            var s = Set<[UInt8]>()
            for _ in 0..<n { s.insert(try r.blob(limit: r.remaining)) }
            return .binarySet(s)
        case let t: throw TandemError(.malformed, "bad value type \(t)")
        }
    }
}
