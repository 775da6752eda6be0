import TandemCore
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Lifeguard's dynamic suspicion timeout (Dadgar et al., "Lifeguard: Local Health Awareness for
/// More Accurate Failure Detection", 2018, §IV-B).
///
/// A suspicion starts long (`max`) and shrinks toward `min` as independent members confirm it:
/// after `c` of the `k` wanted confirmations the timeout is
/// `max(min, max − (max − min) × log(c + 1) / log(k + 1))`. A lone node with a bad link waits the
/// long timeout; a node that many others also cannot reach is declared dead quickly.
public struct Suspicion: Sendable {
    public let incarnation: UInt64
    public let startedAt: Instant
    public let minTimeout: Duration
    public let maxTimeout: Duration
    /// Confirmations wanted to reach `minTimeout`.
    public let wanted: Int
    /// Members that independently suspected it (the originator is not a confirmation).
    public private(set) var confirmers: Set<String>
    public let originator: String
    public private(set) var deadline: Instant

    public init(incarnation: UInt64, from: String, now: Instant, minTimeout: Duration, maxTimeout: Duration, wanted: Int) {
        self.incarnation = incarnation
        self.originator = from
        self.startedAt = now
        self.minTimeout = minTimeout
        self.maxTimeout = maxTimeout
        self.wanted = wanted
        self.confirmers = []
        self.deadline = now + Suspicion.timeout(confirmations: 0, wanted: wanted, min: minTimeout, max: maxTimeout)
    }

    /// Records a confirmation; true if it was new (and so worth re-gossiping).
    public mutating func confirm(_ from: String) -> Bool {
        guard from != originator, confirmers.count < wanted, confirmers.insert(from).inserted else { return false }
        deadline = startedAt + Suspicion.timeout(confirmations: confirmers.count, wanted: wanted, min: minTimeout, max: maxTimeout)
        return true
    }

    /// Pushes the deadline back (used after this process was stalled).
    public mutating func postpone(by d: Duration) { deadline = deadline + d }

    public static func timeout(confirmations c: Int, wanted k: Int, min: Duration, max: Duration) -> Duration {
        guard k >= 1 else { return min }
        let fraction = log(Double(c) + 1) / log(Double(k) + 1)
        let t = Double(max.nanoseconds) - fraction * Double((max - min).nanoseconds)
        return .nanoseconds(Swift.max(min.nanoseconds, Int64(t.rounded(.down))))
    }

    /// `suspicionMult × max(1, log10(max(n, 1))) × probeInterval`: larger clusters need longer
    /// for the suspect to hear of its suspicion and refute it.
    public static func minTimeout(settings: MembershipSettings, clusterSize n: Int) -> Duration {
        let scale = Swift.max(1.0, log10(Double(Swift.max(n, 1))))
        return settings.probeInterval * (settings.suspicionMult * scale)
    }
}
