import TandemCore

/// Weighted rendezvous hashing in integer arithmetic, so every node on every CPU picks the same
/// region for the same contact, bit for bit.
///
/// Each candidate `i` with weight `wᵢ` draws `uᵢ ∈ (0, 1]` from a hash of (contact, candidate);
/// the winner minimises `−ln(uᵢ) / wᵢ` (Schindelhauer & Schomaker, "Weighted distributed hash
/// tables", 2005; the same law as the exponential-clock race). `−ln(uᵢ)/wᵢ` is exponential with
/// rate `wᵢ`, so candidate `i` wins with probability `wᵢ / Σw`, and removing a candidate moves
/// exactly the contacts it won, to the others in proportion to their weights: nothing moves
/// between the survivors.
///
/// The logarithm is base 2 (the constant factor cancels in every comparison), in Q32 fixed point
/// from a 4097-entry table built with integer squaring (no libm: its last bit may differ between
/// platforms) and linear interpolation (absolute error below 1e-8).
public enum Rendezvous {
    /// 64-bit finaliser (splitmix64): every input bit flips about half the output bits.
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        splitmix64Mix(x &+ 0x9E37_79B9_7F4A_7C15)
    }

    /// The contact's hash, computed once per decision.
    public static func contactHash(_ contact: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in contact.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return mix(h)
    }

    /// A candidate's (region's or node's) seed, computed once per table.
    public static func seed(_ name: String) -> UInt64 { mix(stableHash64(name.utf8) ^ 0x5EED_0F_A11_C0DE) }

    /// The draw for (contact, candidate): two rounds, so nearby contact hashes and nearby seeds
    /// give unrelated draws.
    @inlinable
    public static func draw(_ contact: UInt64, _ seed: UInt64) -> UInt64 { mix(mix(contact ^ seed) &+ seed) }

    /// `−log2(u)` in Q32 for `u = (⌊h / 2¹¹⌋ + 1) / 2⁵³ ∈ (0, 1]`: small is a strong draw.
    @inlinable
    public static func negLog2(_ h: UInt64) -> UInt64 {
        let y = (h >> 11) &+ 1  // 1 ... 2⁵³
        let k = UInt64(63 - y.leadingZeroBitCount)  // ⌊log2 y⌋
        let fraction = (y << (63 - k)) << 1  // the mantissa's bits after the point
        let index = Int(fraction >> 52)  // top 12 bits
        let rest = (fraction >> 20) & 0xFFFF_FFFF  // next 32 bits, for interpolation
        let lo = log2Table[index], hi = log2Table[index + 1]
        let log2y = (k << 32) + lo + (((hi - lo) * rest) >> 32)
        return (53 << 32) - log2y
    }

    /// `log2(1 + i/4096)` in Q32 for `i` in 0...4096, by integer squaring only.
    public static let log2Table: [UInt64] = (0...4096).map { i in
        // m in Q2.62: 1 + i/4096.
        var m = (UInt64(1) << 62) + (UInt64(i) << 50)
        var result: UInt64 = 0
        if i == 4096 { return 1 << 32 }
        for bit in stride(from: 31, through: 0, by: -1) {
            // m² in Q4.124 → back to Q2.62.
            let (high, low) = m.multipliedFullWidth(by: m)
            m = (high << 2) | (low >> 62)
            if m >= (UInt64(1) << 63) {  // m² ≥ 2: this bit is 1
                result |= UInt64(1) << UInt64(bit)
                m >>= 1
            }
        }
        return result
    }

    /// True when draw `a` with weight `wa` beats draw `b` with weight `wb` (`a/wa < b/wb`), exactly.
    @inlinable
    public static func beats(_ a: UInt64, _ wa: UInt64, _ b: UInt64, _ wb: UInt64) -> Bool {
        let left = a.multipliedFullWidth(by: wb)
        let right = b.multipliedFullWidth(by: wa)
        return left.high != right.high ? left.high < right.high : left.low < right.low
    }

    /// True when the two are exactly equal (`a/wa == b/wb`): callers break ties by index.
    @inlinable
    public static func ties(_ a: UInt64, _ wa: UInt64, _ b: UInt64, _ wb: UInt64) -> Bool {
        let left = a.multipliedFullWidth(by: wb)
        let right = b.multipliedFullWidth(by: wa)
        return left.high == right.high && left.low == right.low
    }
}
