/// A hybrid logical clock timestamp (Kulkarni et al., "Logical Physical Clocks", 2014):
/// 48 bits of wall-clock milliseconds and a 16-bit logical counter, with the writing node's id
/// as the final tie-break, so any two writes anywhere are totally ordered and the order respects
/// causality.
public struct HLC: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// `physicalMs << 16 | logical`.
    public var time: UInt64
    public var node: UInt64

    public init(physicalMs: UInt64, logical: UInt16, node: UInt64) {
        time = (physicalMs & 0xFFFF_FFFF_FFFF) << 16 | UInt64(logical)
        self.node = node
    }

    public init(time: UInt64, node: UInt64) {
        self.time = time
        self.node = node
    }

    public static let zero = HLC(time: 0, node: 0)

    public var physicalMs: UInt64 { time >> 16 }
    public var logical: UInt16 { UInt16(time & 0xFFFF) }

    public static func < (a: HLC, b: HLC) -> Bool { a.time != b.time ? a.time < b.time : a.node < b.node }

    public var description: String { "\(physicalMs).\(logical)@\(String(node, radix: 16))" }
}

/// The clock that issues HLC timestamps on one node. Pure: the wall time comes in as a value.
public struct HybridClock: Sendable {
    public let node: UInt64
    /// A remote timestamp further ahead of our wall clock than this is clamped (and counted by
    /// the caller): one node with a wild clock must not drag every other node's clock forward.
    public let maxAheadMs: UInt64
    public private(set) var last: UInt64 = 0

    public init(node: UInt64, maxAheadMs: UInt64 = 60_000) {
        self.node = node
        self.maxAheadMs = maxAheadMs
    }

    /// A timestamp for a local event, greater than every one issued or observed before.
    public mutating func now(wallMs: UInt64) -> HLC {
        let physical = (wallMs & 0xFFFF_FFFF_FFFF) << 16
        last = max(last + 1, physical)
        return HLC(time: last, node: node)
    }

    /// Advances past a remote timestamp; returns false if it was clamped to `wall + maxAheadMs`.
    @discardableResult
    public mutating func observe(_ remote: HLC, wallMs: UInt64) -> Bool {
        let ceiling = ((wallMs + maxAheadMs) & 0xFFFF_FFFF_FFFF) << 16
        let accepted = min(remote.time, ceiling)
        last = max(last, accepted)
        return remote.time <= ceiling
    }
}
