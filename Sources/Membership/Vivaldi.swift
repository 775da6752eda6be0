import TandemCore

/// A Vivaldi network coordinate (Dabek et al., "Vivaldi: A Decentralized Network Coordinate
/// System", SIGCOMM 2004), with the height vector and error weighting as Serf uses them.
///
/// Each probe's RTT pulls this node's coordinate toward or away from the responder's, so
/// after a few rounds the distance between any two coordinates estimates their RTT, and any
/// node can estimate the latency between two regions it never measured directly.
/// Units are seconds.
public struct VivaldiCoordinate: Hashable, Sendable {
    public static let dimensions = 8
    public var vector: [Double]
    public var error: Double
    public var height: Double

    public init(
        vector: [Double] = Array(repeating: 0, count: VivaldiCoordinate.dimensions),
        error: Double = Vivaldi.errorMax, height: Double = Vivaldi.heightMin
    ) {
        self.vector = vector
        self.error = error
        self.height = height
    }

    /// Coordinates beyond this (in seconds) are not plausible on Earth: refused or reset.
    public static let limit = 100.0

    /// Finite, in range, with the right number of dimensions.
    public var isValid: Bool {
        vector.count == VivaldiCoordinate.dimensions && vector.allSatisfy { $0.isFinite && abs($0) < VivaldiCoordinate.limit }
            && error.isFinite && error >= 0 && height.isFinite && height >= 0 && height < VivaldiCoordinate.limit
    }

    /// The estimated round-trip time to `other` (clamped to a plausible range).
    public func distance(to other: VivaldiCoordinate) -> Duration {
        let d = rawDistance(to: other)
        return .nanoseconds(Int64((d.isFinite ? min(max(d, 0), 4 * VivaldiCoordinate.limit) : 0) * 1e9))
    }

    func rawDistance(to other: VivaldiCoordinate) -> Double {
        var sum = 0.0
        for i in 0..<vector.count { let d = vector[i] - other.vector[i]; sum += d * d }
        return sum.squareRoot() + height + other.height
    }

    func encode(to w: inout ByteWriter) {
        for v in vector { w.f64(v) }
        w.f64(error)
        w.f64(height)
    }

    /// Decodes a coordinate; an implausible one (out of range, not finite) makes the packet
    /// malformed. Our own coordinate is reset whenever it leaves that range, so an honest node
    /// never sends one.
    static func decode(from r: inout ByteReader) throws(TandemError) -> VivaldiCoordinate {
        var vector: [Double] = []
        vector.reserveCapacity(dimensions)
        for _ in 0..<dimensions { vector.append(Double(bitPattern: try r.u64())) }
        let c = VivaldiCoordinate(vector: vector, error: Double(bitPattern: try r.u64()), height: Double(bitPattern: try r.u64()))
        guard c.isValid else { throw TandemError(.malformed, "coordinate out of range") }
        return c
    }
}

/// Vivaldi's update rule, with Serf's constants (serf/coordinate/config.go).
public struct Vivaldi: Sendable {
    public static let errorMax = 1.5
    public static let ce = 0.25
    public static let cc = 0.25
    public static let heightMin = 10e-6
    public static let gravityRho = 150.0
    public static let latencyFilterSize = 3
    static let zeroThreshold = 1e-6

    public private(set) var coordinate = VivaldiCoordinate()
    /// Per peer, the last few RTTs: updates use their median, which filters one-off spikes.
    private var samples: [String: [Double]] = [:]

    public init() {}

    public mutating func observe(
        rtt: Duration, from peer: String, peerCoordinate other: VivaldiCoordinate,
        rng: inout SeededGenerator
    ) {
        let raw = rtt.seconds
        guard raw > 0, raw < 10, other.isValid else { return }
        var window = samples[peer, default: []]
        window.append(raw)
        if window.count > Vivaldi.latencyFilterSize { window.removeFirst() }
        samples[peer] = window
        let rttSeconds = max(window.sorted()[window.count / 2], Vivaldi.zeroThreshold)

        let dist = coordinate.rawDistance(to: other)
        let wrongness = abs(dist - rttSeconds) / rttSeconds
        let totalError = max(coordinate.error + other.error, Vivaldi.zeroThreshold)
        let weight = coordinate.error / totalError
        coordinate.error = min(Vivaldi.errorMax, Vivaldi.ce * weight * wrongness + coordinate.error * (1 - Vivaldi.ce * weight))
        applyForce(Vivaldi.cc * weight * (rttSeconds - dist), from: other, rng: &rng)

        // Gravity keeps the whole coordinate system from drifting away from the origin.
        let origin = VivaldiCoordinate(
            vector: Array(repeating: 0, count: VivaldiCoordinate.dimensions), error: 0, height: Vivaldi.heightMin)
        let d = coordinate.rawDistance(to: origin)
        let pull = (d / Vivaldi.gravityRho) * (d / Vivaldi.gravityRho)
        applyForce(-pull, from: origin, rng: &rng)
        // Serf's rule: a coordinate that went bad starts over rather than poisoning estimates.
        if !coordinate.isValid { coordinate = VivaldiCoordinate() }
    }

    public mutating func forget(_ peer: String) { samples[peer] = nil }

    private mutating func applyForce(_ force: Double, from other: VivaldiCoordinate, rng: inout SeededGenerator) {
        var direction = zip(coordinate.vector, other.vector).map { $0 - $1 }
        let magnitude = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
        var length = magnitude
        if magnitude < Vivaldi.zeroThreshold {
            // Two nodes at the same spot push apart in a random direction.
            direction = (0..<VivaldiCoordinate.dimensions).map { _ in rng.unit() - 0.5 }
            length = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if length < Vivaldi.zeroThreshold { return }
        }
        for i in 0..<direction.count { coordinate.vector[i] += direction[i] / length * force }
        if magnitude >= Vivaldi.zeroThreshold {
            coordinate.height = max(Vivaldi.heightMin, (coordinate.height + other.height) * force / magnitude + coordinate.height)
        }
    }
}
