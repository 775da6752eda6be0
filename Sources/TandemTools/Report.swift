import Foundation
import TandemTestKit

/// The verdict on a target. MET or MISSED only when the run can be judged: a run with errors,
/// or with fewer samples than it needs, says so instead, since its figure may be the favourable
/// one only because the failures were left out of it.
public func verdict(_ met: Bool, errors: Int = 0, samples: Int, need: Int = 1) -> String {
    if errors > 0 { return "NOT JUDGED (\(errors) errors)" }
    if samples < need { return "NOT JUDGED (\(samples) samples, \(need) needed)" }
    return met ? "MET" : "MISSED"
}

/// A metric on every node, or nil when any node's /metrics does not answer (a missing reading
/// is not a zero).
public func metricEverywhere(_ cluster: LocalCluster, _ name: String, nodes: some Sequence<Int>) -> [Double]? {
    var out: [Double] = []
    for i in nodes {
        guard let v = cluster.metric(name, node: i) else { return nil }
        out.append(v)
    }
    return out
}

/// Why a benchmark, the demo or the checker stopped: what did not happen in time.
public struct ToolError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
