/// xoshiro256** — a small, fast, seedable generator.
///
/// Every core that needs randomness owns one of these, seeded by its caller, so a simulation run
/// is a pure function of its seed. (Blackman & Vigna, "Scrambled linear pseudorandom number
/// generators", 2018.)
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        // splitmix64 spreads any seed, including 0, over the whole state.
        var x = seed
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            return splitmix64Mix(x)
        }
        s = (next(), next(), next(), next())
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// A uniform double in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { p > 0 && unit() < p }
}

/// splitmix64's finaliser: every input bit flips about half the output bits. Shared by the
/// seeded generator, rendezvous hashing and scan segments, whose outputs must never change
/// (seeds replay runs; nodes must agree on hashes).
@inlinable
public func splitmix64Mix(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
