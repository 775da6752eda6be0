import TandemCore

/// What one node publishes (`_routing` item `rtt/<node>`): its region and its measured round
/// trip, in whole milliseconds, to each other region (from its Vivaldi estimates of that
/// region's nodes).
public struct RTTReport: Hashable, Sendable {
    public var region: String
    public var rttMs: [String: Int64]

    public init(region: String, rttMs: [String: Int64]) {
        self.region = region
        self.rttMs = rttMs
    }
}

/// The region-to-region RTT matrix every node derives from the same published reports, so it is
/// an input like any other (same reports, same matrix, bit for bit: integers only).
public struct RegionRTT: Hashable, Sendable {
    /// Symmetric, microseconds, no diagonal: `micros[a][b] == micros[b][a]`.
    public private(set) var micros: [String: [String: Int64]]

    public init() { micros = [:] }

    /// Sets the RTT of a pair (both directions).
    public mutating func set(_ a: String, _ b: String, micros value: Int64) {
        guard a != b else { return }
        micros[a, default: [:]][b] = max(0, value)
        micros[b, default: [:]][a] = max(0, value)
    }

    /// RTT between two regions in µs: 0 for a region to itself, nil when nobody measured it.
    public func rtt(_ a: String, _ b: String) -> Int64? { a == b ? 0 : micros[a]?[b] }

    public var regions: [String] { micros.keys.sorted() }
    public var isEmpty: Bool { micros.isEmpty }

    /// Per direction `a → b`, the mean over the nodes of `a` that report `b`; per pair, the mean
    /// of the two directions (or the one direction measured). Means round half up, in µs.
    public static func build(_ reports: [String: RTTReport]) -> RegionRTT {
        var sums: [String: [String: (sum: Int64, count: Int64)]] = [:]
        for (_, report) in reports where !report.region.isEmpty {
            for (to, ms) in report.rttMs where to != report.region && !to.isEmpty && ms >= 0 {
                let v = min(ms, 100_000) * 1000
                let old = sums[report.region]?[to] ?? (0, 0)
                sums[report.region, default: [:]][to] = (old.sum + v, old.count + 1)
            }
        }
        func mean(_ s: Int64, _ n: Int64) -> Int64 { (s + n / 2) / n }
        var out = RegionRTT()
        for (a, row) in sums {
            for (b, ab) in row {
                let forward = mean(ab.sum, ab.count)
                if let ba = sums[b]?[a] {
                    guard a < b else { continue }  // each pair once
                    out.set(a, b, micros: mean(forward + mean(ba.sum, ba.count), 2))
                } else {
                    out.set(a, b, micros: forward)
                }
            }
        }
        return out
    }

    /// `edge`'s RTT to `region` when the edge config does not name it: the cheapest way through
    /// a configured region, `min over r of (edge → r) + (r → region)`; nil if no configured
    /// region has a measured RTT to it.
    public func estimate(_ edge: EdgeConfig.Edge, to region: String) -> Int64? {
        var best: Int64?
        for (r, toR) in edge.rttMicros {
            guard let rr = rtt(r, region), r != region else { continue }
            let v = max(0, toR) + rr
            if best.map({ v < $0 }) ?? true { best = v }
        }
        return best
    }
}

/// When a node rewrites its `rtt/<node>` item: estimates wobble, and every rewrite is a new
/// input (a new matrix, possibly new edge estimates, a new fingerprint), so small moves are not
/// news. Pure: time comes in as `now`.
public struct RTTPublisher: Sendable {
    /// At most one rewrite per interval.
    public var minInterval: Duration
    /// A value must move by more than this percentage of the published one…
    public var thresholdPercent: Int64
    /// …and by at least this many ms (whole-ms jitter at LAN scale is not news).
    public var minStepMs: Int64
    /// What is in the table now (nil: nothing yet).
    public private(set) var published: [String: Int64]?
    public private(set) var publishedAt: Instant?

    public init(minInterval: Duration = .seconds(10), thresholdPercent: Int64 = 20, minStepMs: Int64 = 2) {
        self.minInterval = minInterval
        self.thresholdPercent = thresholdPercent
        self.minStepMs = minStepMs
    }

    /// Adopts what the table already holds (a restart does not rewrite unchanged values). The
    /// interval starts now.
    public mutating func adopt(_ values: [String: Int64], now: Instant) {
        published = values
        publishedAt = now
    }

    /// Given this node's current measurements, the document to write now, or nil to leave the
    /// item as it is. Regions not measured now (no live node there) keep their published value,
    /// so a region's failure does not change its RTT (and so does not re-plan the edges).
    public mutating func next(measured: [String: Int64], now: Instant) -> [String: Int64]? {
        guard !measured.isEmpty || published == nil else { return nil }
        guard let old = published, let at = publishedAt else {
            guard !measured.isEmpty else { return nil }
            published = measured
            publishedAt = now
            return measured
        }
        guard now >= at + minInterval else { return nil }
        let moved = measured.contains { r, v in
            guard let o = old[r] else { return true }
            let d = abs(v - o)
            return d * 100 > o * thresholdPercent && d >= minStepMs
        }
        guard moved else { return nil }
        // A rewrite carries every current value (the small moves too).
        let merged = old.merging(measured) { _, new in new }
        published = merged
        publishedAt = now
        return merged
    }
}
