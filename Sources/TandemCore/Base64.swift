/// RFC 4648 base64 (standard alphabet, padded), for binary values in JSON.
public enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let reverse: [UInt8] = {
        var r = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { r[Int(c)] = UInt8(i) }
        return r
    }()

    public static func encode(_ bytes: [UInt8]) -> String {
        let count = (bytes.count + 2) / 3 * 4
        guard count > 0 else { return "" }
        return alphabet.withUnsafeBufferPointer { abc in
            bytes.withUnsafeBufferPointer { src in
                String(unsafeUninitializedCapacity: count) { out in
                    var i = 0
                    var o = 0
                    while i + 2 < src.count {
                        let n = UInt32(src[i]) << 16 | UInt32(src[i + 1]) << 8 | UInt32(src[i + 2])
                        out[o] = abc[Int(n >> 18)]
                        out[o + 1] = abc[Int((n >> 12) & 63)]
                        out[o + 2] = abc[Int((n >> 6) & 63)]
                        out[o + 3] = abc[Int(n & 63)]
                        i += 3
                        o += 4
                    }
                    let rest = src.count - i
                    if rest > 0 {
                        let n = UInt32(src[i]) << 16 | (rest == 2 ? UInt32(src[i + 1]) << 8 : 0)
                        out[o] = abc[Int((n >> 18) & 63)]
                        out[o + 1] = abc[Int((n >> 12) & 63)]
                        out[o + 2] = rest == 2 ? abc[Int((n >> 6) & 63)] : UInt8(ascii: "=")
                        out[o + 3] = UInt8(ascii: "=")
                    }
                    return count
                }
            }
        }
    }

    /// Decodes padded base64; nil if malformed.
    public static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { decode($0) }
    }

    public static func decode(_ chars: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard chars.count % 4 == 0 else { return nil }
        guard chars.count > 0 else { return [] }
        var pad = 0
        if chars[chars.count - 1] == UInt8(ascii: "=") { pad = chars[chars.count - 2] == UInt8(ascii: "=") ? 2 : 1 }
        let count = chars.count / 4 * 3 - pad
        var valid = true
        let out = reverse.withUnsafeBufferPointer { rev in
            [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
                var i = 0
                var o = 0
                // Whole quads; the last one separately when it carries padding.
                let whole = pad == 0 ? chars.count : chars.count - 4
                while i < whole {
                    let a = rev[Int(chars[i])], b = rev[Int(chars[i + 1])], c = rev[Int(chars[i + 2])], d = rev[Int(chars[i + 3])]
                    if a > 63 || b > 63 || c > 63 || d > 63 { valid = false; break }
                    let n = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    out[o] = UInt8(n >> 16)
                    out[o + 1] = UInt8((n >> 8) & 0xFF)
                    out[o + 2] = UInt8(n & 0xFF)
                    i += 4
                    o += 3
                }
                if valid && pad > 0 {
                    let a = rev[Int(chars[i])], b = rev[Int(chars[i + 1])]
                    let c = pad == 1 ? rev[Int(chars[i + 2])] : 0
                    if a > 63 || b > 63 || c > 63 { valid = false }
                    let n = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6
                    out[o] = UInt8(truncatingIfNeeded: n >> 16)
                    if pad == 1 { out[o + 1] = UInt8(truncatingIfNeeded: n >> 8) }
                    o += 3 - pad
                }
                initialized = valid ? o : 0
            }
        }
        return valid ? out : nil
    }
}
