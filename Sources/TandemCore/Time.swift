/// A point on a monotonic clock, in nanoseconds since an arbitrary origin.
///
/// Cores never read a clock: the shell passes `now` in (from `uv_hrtime`), and the simulator
/// passes its virtual time. Keeping the value a plain integer makes runs replay exactly.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static let zero = Instant(nanoseconds: 0)

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    public static func + (a: Instant, d: Duration) -> Instant {
        let n = d.nanoseconds
        return n >= 0
            ? Instant(nanoseconds: a.nanoseconds &+ UInt64(n))
            : Instant(nanoseconds: a.nanoseconds &- min(a.nanoseconds, UInt64(-n)))
    }

    /// The time from `b` to `a`; zero when `b` is later.
    public static func - (a: Instant, b: Instant) -> Duration {
        a >= b ? .nanoseconds(Int64(a.nanoseconds - b.nanoseconds)) : .zero
    }

    public var milliseconds: Double { Double(nanoseconds) / 1e6 }
    public var description: String { String(format3(milliseconds)) + "ms" }
}

extension Duration {
    /// Whole nanoseconds (saturating at Int64's range, far beyond any timeout we use).
    public var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }

    public var milliseconds: Double { Double(nanoseconds) / 1e6 }
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    public static func * (d: Duration, f: Double) -> Duration {
        .nanoseconds(Int64((Double(d.nanoseconds) * f).rounded()))
    }
}

/// Three decimals without Foundation.
@inlinable public func format3(_ x: Double) -> String {
    let scaled = Int64((x * 1000).rounded())
    let sign = scaled < 0 ? "-" : ""
    let a = abs(scaled)
    let frac = String(a % 1000)
    return sign + String(a / 1000) + "." + String(repeating: "0", count: 3 - frac.count) + frac
}
