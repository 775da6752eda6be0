/// An exact decimal number as DynamoDB's `N` type holds it: up to 38 significant digits, magnitude
/// between 1E-130 and 1E+125 (or zero). Arithmetic is exact, so a counter's sum is the same on
/// every node whatever order the increments arrive in.
public struct DecimalNumber: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let maxDigits = 38
    public static let maxExponent = 125
    public static let minExponent = -130

    /// Significant digits, most significant first; no leading or trailing zeros. Empty for zero.
    public private(set) var digits: [UInt8]
    /// value = ±digits × 10^exponent
    public private(set) var exponent: Int
    public private(set) var negative: Bool

    public static let zero = DecimalNumber(negative: false, digits: [], exponent: 0)

    init(negative: Bool, digits: [UInt8], exponent: Int) {
        var d = digits
        var e = exponent
        while let first = d.first, first == 0 { d.removeFirst() }
        while let last = d.last, last == 0 {
            d.removeLast()
            e += 1
        }
        self.digits = d
        self.exponent = d.isEmpty ? 0 : e
        self.negative = d.isEmpty ? false : negative
    }

    /// Parses `42`, `-0.5`, `1.5E2`, `.5`, `+7`; nil if malformed, too precise or out of range.
    public init?(_ text: String) {
        var chars = Array(text.utf8)
        guard !chars.isEmpty, chars.count <= 400 else { return nil }
        var negative = false
        if chars[0] == UInt8(ascii: "-") || chars[0] == UInt8(ascii: "+") {
            negative = chars[0] == UInt8(ascii: "-")
            chars.removeFirst()
        }
        var mantissa: [UInt8] = []
        var fractionDigits = 0
        var seenDot = false
        var seenDigit = false
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c >= 48 && c <= 57 {
                mantissa.append(c - 48)
                if seenDot { fractionDigits += 1 }
                seenDigit = true
            } else if c == UInt8(ascii: ".") && !seenDot {
                seenDot = true
            } else {
                break
            }
            i += 1
        }
        guard seenDigit else { return nil }
        var exp = 0
        if i < chars.count {
            guard chars[i] == UInt8(ascii: "e") || chars[i] == UInt8(ascii: "E") else { return nil }
            i += 1
            var expNegative = false
            if i < chars.count && (chars[i] == UInt8(ascii: "-") || chars[i] == UInt8(ascii: "+")) {
                expNegative = chars[i] == UInt8(ascii: "-")
                i += 1
            }
            guard i < chars.count, chars.count - i <= 6 else { return nil }
            while i < chars.count {
                let c = chars[i]
                guard c >= 48 && c <= 57 else { return nil }
                exp = exp * 10 + Int(c - 48)
                i += 1
            }
            if expNegative { exp = -exp }
        }
        self.init(negative: negative, digits: mantissa, exponent: exp - fractionDigits)
        guard isRepresentable else { return nil }
    }

    /// Within DynamoDB's precision and range.
    public var isRepresentable: Bool {
        guard !digits.isEmpty else { return true }
        let magnitude = exponent + digits.count - 1
        return digits.count <= DecimalNumber.maxDigits
            && magnitude <= DecimalNumber.maxExponent && magnitude >= DecimalNumber.minExponent
    }

    public init(_ value: Int) { self.init(String(value))! }

    /// Plain notation, as DynamoDB returns numbers: `150`, `-0.015`, no exponent, no padding.
    public var description: String {
        guard !digits.isEmpty else { return "0" }
        let body = digits.map { Character(Unicode.Scalar($0 + 48)) }
        var s: String
        if exponent >= 0 {
            s = String(body) + String(repeating: "0", count: exponent)
        } else {
            let point = body.count + exponent
            if point > 0 {
                s = String(body[..<point]) + "." + String(body[point...])
            } else {
                s = "0." + String(repeating: "0", count: -point) + String(body)
            }
        }
        return negative ? "-" + s : s
    }

    public static func < (a: DecimalNumber, b: DecimalNumber) -> Bool {
        if a.negative != b.negative { return a.negative }
        let c = compareMagnitude(a, b)
        return a.negative ? c > 0 : c < 0
    }

    /// The exact sum, or nil if it needs more than 38 digits or leaves the range.
    public static func + (a: DecimalNumber, b: DecimalNumber) -> DecimalNumber? {
        if a.digits.isEmpty { return b }
        if b.digits.isEmpty { return a }
        let e = min(a.exponent, b.exponent)
        let x = a.digits + Array(repeating: 0, count: a.exponent - e)
        let y = b.digits + Array(repeating: 0, count: b.exponent - e)
        let result: DecimalNumber
        if a.negative == b.negative {
            result = DecimalNumber(negative: a.negative, digits: addMagnitudes(x, y), exponent: e)
        } else if compareDigits(x, y) >= 0 {
            result = DecimalNumber(negative: a.negative, digits: subtractMagnitudes(x, y), exponent: e)
        } else {
            result = DecimalNumber(negative: b.negative, digits: subtractMagnitudes(y, x), exponent: e)
        }
        return result.isRepresentable ? result : nil
    }

    public static prefix func - (a: DecimalNumber) -> DecimalNumber {
        DecimalNumber(negative: !a.negative, digits: a.digits, exponent: a.exponent)
    }

    static func compareMagnitude(_ a: DecimalNumber, _ b: DecimalNumber) -> Int {
        if a.digits.isEmpty || b.digits.isEmpty { return (a.digits.isEmpty ? 0 : 1) - (b.digits.isEmpty ? 0 : 1) }
        let ma = a.exponent + a.digits.count, mb = b.exponent + b.digits.count
        if ma != mb { return ma < mb ? -1 : 1 }
        for i in 0..<max(a.digits.count, b.digits.count) {
            let da = i < a.digits.count ? a.digits[i] : 0
            let db = i < b.digits.count ? b.digits[i] : 0
            if da != db { return da < db ? -1 : 1 }
        }
        return 0
    }

    /// Compares equal-scale digit strings (most significant first).
    static func compareDigits(_ x: [UInt8], _ y: [UInt8]) -> Int {
        let xs = Array(x.drop { $0 == 0 }), ys = Array(y.drop { $0 == 0 })
        if xs.count != ys.count { return xs.count < ys.count ? -1 : 1 }
        for (a, b) in zip(xs, ys) where a != b { return a < b ? -1 : 1 }
        return 0
    }

    static func addMagnitudes(_ x: [UInt8], _ y: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var carry: UInt8 = 0
        var i = x.count - 1, j = y.count - 1
        while i >= 0 || j >= 0 || carry > 0 {
            let s = (i >= 0 ? x[i] : 0) + (j >= 0 ? y[j] : 0) + carry
            out.append(s % 10)
            carry = s / 10
            i -= 1
            j -= 1
        }
        return out.reversed()
    }

    /// x − y for x ≥ y.
    static func subtractMagnitudes(_ x: [UInt8], _ y: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var borrow = 0
        var i = x.count - 1, j = y.count - 1
        while i >= 0 {
            var d = Int(x[i]) - borrow - (j >= 0 ? Int(y[j]) : 0)
            borrow = d < 0 ? 1 : 0
            if d < 0 { d += 10 }
            out.append(UInt8(d))
            i -= 1
            j -= 1
        }
        return out.reversed()
    }
}
