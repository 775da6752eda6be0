import Foundation

/// `/metrics` in the Prometheus text format (0.0.4), written in one place.
///
/// The services keep their counters as plain stored integers and histograms as `Histogram`
/// values, and a scrape reads them into a `MetricsText`. Nothing is registered, locked or boxed on
/// a hot path: a counted event is one integer increment, as before this type existed. (The
/// alternative, swift-metrics with a Prometheus exporter, puts a class and a lock behind every
/// counter; a put touches about ten of them.)
public struct MetricsText {
    public enum Kind: String {
        case counter, gauge, histogram
    }

    public private(set) var text = ""

    public init() {}

    /// A family with one unlabelled sample.
    public mutating func add(_ name: String, _ kind: Kind, _ help: String, _ value: some CustomStringConvertible) {
        header(name, kind, help)
        text += "\(name) \(value)\n"
    }

    /// A family with one sample per label set (none at all is a valid, empty family).
    public mutating func add(
        _ name: String, _ kind: Kind, _ help: String,
        samples: [(labels: [(String, String)], value: any CustomStringConvertible)]
    ) {
        header(name, kind, help)
        for s in samples { text += "\(name)\(MetricsText.labels(s.labels)) \(s.value)\n" }
    }

    /// A histogram family, one histogram per label set.
    public mutating func add(_ name: String, _ help: String, histograms: [(labels: [(String, String)], histogram: Histogram)]) {
        header(name, .histogram, help)
        for (labels, h) in histograms {
            var cumulative = 0
            for (i, bound) in h.bounds.enumerated() {
                cumulative += h.counts[i]
                text += "\(name)_bucket\(MetricsText.labels(labels + [("le", "\(bound)")])) \(cumulative)\n"
            }
            cumulative += h.counts[h.bounds.count]
            text += "\(name)_bucket\(MetricsText.labels(labels + [("le", "+Inf")])) \(cumulative)\n"
            text += "\(name)_sum\(MetricsText.labels(labels)) \(h.sum)\n"
            text += "\(name)_count\(MetricsText.labels(labels)) \(cumulative)\n"
        }
    }

    private mutating func header(_ name: String, _ kind: Kind, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(kind.rawValue)\n"
    }

    /// `{a="x",b="y"}`, label values escaped as the format requires; nothing for no labels.
    static func labels(_ pairs: [(String, String)]) -> String {
        guard !pairs.isEmpty else { return "" }
        return "{" + pairs.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    static func escape(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// Counts of observations per bucket (upper bounds `bounds`, the last bucket +Inf) and their sum.
public struct Histogram: Sendable {
    public let bounds: [Double]
    public private(set) var counts: [Int]
    public private(set) var sum = 0.0

    public init(bounds: [Double]) {
        self.bounds = bounds
        counts = [Int](repeating: 0, count: bounds.count + 1)
    }

    public mutating func record(_ value: Double) {
        counts[bounds.firstIndex { value <= $0 } ?? bounds.count] += 1
        sum += value
    }

    public var count: Int { counts.reduce(0, +) }
}
