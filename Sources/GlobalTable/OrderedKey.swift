import TandemCore

/// Item keys as bytes whose order is the keys' order (`ItemKey.<`), so a store sorted by bytes
/// (LMDB) walks a table in key order and a partition is one range of it.
///
/// Each key value is a type byte then its body, self-delimiting so the sort key can follow the
/// partition key and a key without sort key sorts before every key of its partition:
/// - strings and binary: the bytes, each 0x00 as 0x00 0xFF, ended by 0x00 0x01 (so a prefix
///   sorts first, and bytes compare as DynamoDB compares them);
/// - numbers: sign (0x01 negative, 0x02 zero, 0x03 positive); for a positive one, the decimal
///   exponent of its leading digit biased to two bytes, then each digit + 1, ended by 0x00; a
///   negative one is the same with every byte complemented, so larger magnitudes sort first.
extension ItemKey {
    public var ordered: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        ItemKey.append(partition, to: &out)
        if let sort { ItemKey.append(sort, to: &out) }
        return out
    }

    public init(ordered bytes: [UInt8]) throws(TandemError) {
        var i = 0
        partition = try ItemKey.read(bytes, &i)
        sort = i < bytes.count ? try ItemKey.read(bytes, &i) : nil
        guard i == bytes.count else { throw TandemError(.malformed, "trailing bytes after ordered key") }
    }

    private static func append(_ v: KeyValue, to out: inout [UInt8]) {
        switch v {
        case .string(let s):
            out.append(0x10)
            escape(s.utf8, &out)
        case .binary(let b):
            out.append(0x30)
            escape(b, &out)
        case .number(let n):
            out.append(0x20)
            guard !n.digits.isEmpty else {
                out.append(0x02)
                return
            }
            // value = 0.d1 d2 … × 10^e, with e = exponent + digit count
            let e = UInt16(truncatingIfNeeded: n.exponent + n.digits.count + 0x4000)
            let flip: UInt8 = n.negative ? 0xFF : 0x00
            out.append(n.negative ? 0x01 : 0x03)
            out.append(UInt8(e >> 8) ^ flip)
            out.append(UInt8(e & 0xFF) ^ flip)
            for d in n.digits { out.append((d + 1) ^ flip) }
            out.append(0x00 ^ flip)
        }
    }

    private static func escape<C: Collection>(_ bytes: C, _ out: inout [UInt8]) where C.Element == UInt8 {
        for b in bytes {
            out.append(b)
            if b == 0 { out.append(0xFF) }
        }
        out.append(0x00)
        out.append(0x01)
    }

    private static func read(_ bytes: [UInt8], _ i: inout Int) throws(TandemError) -> KeyValue {
        guard i < bytes.count else { throw TandemError(.malformed, "ordered key ends early") }
        let type = bytes[i]
        i += 1
        switch type {
        case 0x10, 0x30:
            var body: [UInt8] = []
            while true {
                guard i + 1 < bytes.count || (i < bytes.count && bytes[i] != 0) else {
                    throw TandemError(.malformed, "ordered key ends early")
                }
                let b = bytes[i]
                i += 1
                if b != 0 {
                    body.append(b)
                    continue
                }
                let next = bytes[i]
                i += 1
                if next == 0x01 { break }
                guard next == 0xFF else { throw TandemError(.malformed, "bad escape in ordered key") }
                body.append(0)
            }
            if type == 0x30 { return .binary(body) }
            guard let s = String(validating: body, as: UTF8.self) else { throw TandemError(.malformed, "key is not UTF-8") }
            return .string(s)
        case 0x20:
            guard i < bytes.count else { throw TandemError(.malformed, "ordered key ends early") }
            let sign = bytes[i]
            i += 1
            if sign == 0x02 { return .number(.zero) }
            guard sign == 0x01 || sign == 0x03, i + 2 <= bytes.count else { throw TandemError(.malformed, "bad number in ordered key") }
            let flip: UInt8 = sign == 0x01 ? 0xFF : 0x00
            let e = Int(UInt16(bytes[i] ^ flip) << 8 | UInt16(bytes[i + 1] ^ flip)) - 0x4000
            i += 2
            var digits: [UInt8] = []
            while true {
                guard i < bytes.count, digits.count <= DecimalNumber.maxDigits else {
                    throw TandemError(.malformed, "bad number in ordered key")
                }
                let d = bytes[i] ^ flip
                i += 1
                if d == 0 { break }
                guard d <= 10 else { throw TandemError(.malformed, "bad digit in ordered key") }
                digits.append(d - 1)
            }
            return .number(DecimalNumber(negative: sign == 0x01, digits: digits, exponent: e - digits.count))
        default:
            throw TandemError(.malformed, "bad type in ordered key")
        }
    }
}
