/// Binary encoding shared by every protocol: big-endian integers, length-prefixed strings and
/// bytes. The reader checks every length against what is left *and* against a caller's limit
/// before it allocates, so nothing a peer sends can make a node allocate without bound or crash.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
    // One append of the big-endian bytes, not one per byte: a 2 KB table summary (256 u64s)
    // cost 77,000 instructions per commit written byte by byte (callgrind, one node, sequential
    // PUTs).
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func f64(_ v: Double) { u64(v.bitPattern) }
    public mutating func bool(_ v: Bool) { u8(v ? 1 : 0) }

    /// A string of at most 255 UTF-8 bytes (names, addresses, regions). Callers validate
    /// lengths at the edge (`ByteWriter.fitsShortString`); a longer string is cut at a character
    /// boundary so the output always decodes.
    public mutating func shortString(_ s: String) {
        var utf8 = Array(s.utf8)
        if utf8.count > 255 {
            var end = 255
            while end > 0 && utf8[end] & 0xC0 == 0x80 { end -= 1 }  // not inside a character
            utf8 = Array(utf8[..<end])
        }
        u8(UInt8(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    public static func fitsShortString(_ s: String) -> Bool { s.utf8.count <= 255 }

    public mutating func blob(_ b: [UInt8]) {
        u32(UInt32(b.count))
        bytes.append(contentsOf: b)
    }

    public mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
    public mutating func raw(_ b: ArraySlice<UInt8>) { bytes.append(contentsOf: b) }

    /// Overwrites two bytes at `offset` (used to back-fill a length).
    public mutating func patchU16(_ v: UInt16, at offset: Int) {
        bytes[offset] = UInt8(v >> 8)
        bytes[offset + 1] = UInt8(v & 0xFF)
    }

    /// Size in bytes of `shortString(s)`.
    public static func shortStringSize(_ s: String) -> Int { 1 + min(255, s.utf8.count) }
}

public struct ByteReader {
    private let bytes: [UInt8]
    public private(set) var offset: Int
    private let end: Int

    public init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.offset = start
        self.end = end ?? bytes.count
    }

    public var remaining: Int { end - offset }
    public var isAtEnd: Bool { offset >= end }

    private mutating func need(_ n: Int, _ what: StaticString) throws(TandemError) {
        guard n >= 0, n <= remaining else {
            throw TandemError(.malformed, "truncated \(what): need \(n) bytes, \(remaining) left")
        }
    }

    public mutating func u8() throws(TandemError) -> UInt8 {
        try need(1, "u8")
        defer { offset += 1 }
        return bytes[offset]
    }
    public mutating func u16() throws(TandemError) -> UInt16 {
        try need(2, "u16")
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }
    public mutating func u32() throws(TandemError) -> UInt32 {
        try need(4, "u32")
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(bytes[offset + i]) }
        offset += 4
        return v
    }
    public mutating func u64() throws(TandemError) -> UInt64 {
        try need(8, "u64")
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[offset + i]) }
        offset += 8
        return v
    }
    public mutating func f64() throws(TandemError) -> Double {
        let v = Double(bitPattern: try u64())
        guard v.isFinite else { throw TandemError(.malformed, "non-finite number") }
        return v
    }
    public mutating func bool() throws(TandemError) -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        case let b: throw TandemError(.malformed, "bad boolean \(b)")
        }
    }

    public mutating func shortString() throws(TandemError) -> String {
        let n = Int(try u8())
        try need(n, "string")
        defer { offset += n }
        guard let s = String(validating: bytes[offset..<offset + n], as: UTF8.self) else {
            throw TandemError(.malformed, "string is not UTF-8")
        }
        return s
    }

    public mutating func blob(limit: Int) throws(TandemError) -> [UInt8] {
        let n = Int(try u32())
        guard n <= limit else { throw TandemError(.tooLarge, "blob of \(n) bytes exceeds limit \(limit)") }
        try need(n, "blob")
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    /// The next `n` bytes, as they are.
    public mutating func bytes(_ n: Int) throws(TandemError) -> ArraySlice<UInt8> {
        try need(n, "bytes")
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    /// A sub-reader over the next `n` bytes; this reader skips past them.
    public mutating func sub(_ n: Int) throws(TandemError) -> ByteReader {
        try need(n, "section")
        defer { offset += n }
        return ByteReader(bytes, from: offset, to: offset + n)
    }

    /// A count that will drive a loop: bounded by `limit` and by what could possibly fit.
    public mutating func count16(limit: Int, minElementSize: Int) throws(TandemError) -> Int {
        let n = Int(try u16())
        guard n <= limit else { throw TandemError(.tooLarge, "count \(n) exceeds limit \(limit)") }
        guard n * max(1, minElementSize) <= remaining else {
            throw TandemError(.malformed, "count \(n) cannot fit in \(remaining) bytes")
        }
        return n
    }
}

/// CRC-32C (Castagnoli), for frames and records on disk.
public enum CRC32C {
    /// Eight 256-entry tables back to back (slicing-by-8): table k advances a byte's CRC by k
    /// more zero bytes, so eight input bytes cost eight lookups and no per-byte loop.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    public static func checksum<C: Collection>(_ data: C, seed: UInt32 = 0) -> UInt32 where C.Element == UInt8 {
        if let crc = data.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0), seed: seed) }) { return crc }
        return checksum(Array(data), seed: seed)
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        var crc = ~seed
        tables.withUnsafeBufferPointer { t in
            var i = 0
            let n = bytes.count
            while i + 8 <= n {
                let lo = crc ^ UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self))
                let hi = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                crc =
                    t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                crc = t[Int((crc ^ UInt32(bytes[i])) & 0xFF)] ^ (crc >> 8)
                i += 1
            }
        }
        return ~crc
    }
}

/// FNV-1a 64, a stable hash for anything that must agree across nodes and restarts
/// (Swift's `Hasher` is seeded per process).
public func stableHash64<C: Collection>(_ data: C, continuing h: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 where C.Element == UInt8 {
    var h = h
    for b in data { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    return h
}
