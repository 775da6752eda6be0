/// The per-edge split as a transportation problem: edge `e` supplies `supply[e]` units of
/// traffic, region `r` must receive `demand[r]` units in total (its share of the target split),
/// and a unit from `e` to `r` costs `cost[e][r]` (the caller-to-region RTT in µs). The plan that
/// minimises total cost minimises the mean caller RTT while the total still meets the split.
///
/// All integer: the same inputs give the same plan on every node. `Σ supply` must equal
/// `Σ demand`; every cost must be non-negative.
public enum Transport {
    /// Picks the solver: sorted greedy for two regions, min-cost flow otherwise.
    public static func solve(cost: [[Int64]], supply: [Int64], demand: [Int64]) -> [[Int64]] {
        precondition(
            supply.reduce(0, +) == demand.reduce(0, +),
            "transport: supply \(supply.reduce(0, +)) != demand \(demand.reduce(0, +))")
        precondition(
            cost.count == supply.count && cost.allSatisfy { $0.count == demand.count && $0.allSatisfy { $0 >= 0 } },
            "transport: cost must be \(supply.count)×\(demand.count) and non-negative")
        if demand.count == 2 { return twoRegions(cost: cost, supply: supply, demand: demand) }
        return minCostFlow(cost: cost, supply: supply, demand: demand)
    }

    /// Two regions: give region 0 the edges where it is most advantageous (smallest
    /// `cost[e][0] − cost[e][1]`) until its demand is met. An exchange argument shows this is
    /// optimal, and at most one edge is split.
    public static func twoRegions(cost: [[Int64]], supply: [Int64], demand: [Int64]) -> [[Int64]] {
        let order = supply.indices.sorted { a, b in
            let da = cost[a][0] - cost[a][1], db = cost[b][0] - cost[b][1]
            return da != db ? da < db : a < b
        }
        var plan = [[Int64]](repeating: [0, 0], count: supply.count)
        var left = demand[0]
        for e in order {
            let take = min(left, supply[e])
            plan[e][0] = take
            plan[e][1] = supply[e] - take
            left -= take
        }
        return plan
    }

    /// Successive shortest paths with Johnson potentials (Dijkstra on reduced costs), dense:
    /// for E edges and R regions each round is O((E+R)²), and every round saturates an edge's
    /// supply, a region's demand or empties a cell, so there are about E+R rounds.
    public static func minCostFlow(cost: [[Int64]], supply: [Int64], demand: [Int64]) -> [[Int64]] {
        let E = supply.count, R = demand.count
        let n = E + R + 1  // edges, regions, sink (the source is implicit)
        let sink = E + R
        var flow = [[Int64]](repeating: [Int64](repeating: 0, count: R), count: E)
        var supplyLeft = supply, demandLeft = demand
        var potential = [Int64](repeating: 0, count: n)
        let infinity = Int64.max / 4
        var dist = [Int64](repeating: infinity, count: n)
        var parent = [Int](repeating: -1, count: n)
        var done = [Bool](repeating: false, count: n)
        var remaining = supply.reduce(0, +)
        var rounds = 0
        while remaining > 0 {
            rounds += 1
            precondition(rounds <= 4 * (E + R) + 16, "transport: min-cost flow did not finish (E=\(E) R=\(R))")
            for i in 0..<n {
                dist[i] = infinity
                parent[i] = -1
                done[i] = false
            }
            // From the implicit source (potential 0): every edge with supply left, reduced cost −π.
            for e in 0..<E where supplyLeft[e] > 0 { dist[e] = -potential[e] }
            while true {
                var u = -1
                for i in 0..<n where !done[i] && dist[i] < infinity && (u < 0 || dist[i] < dist[u]) { u = i }
                if u < 0 { break }
                done[u] = true
                if u < E {
                    for r in 0..<R {
                        let v = E + r
                        let d = dist[u] + cost[u][r] + potential[u] - potential[v]
                        if d < dist[v] { dist[v] = d; parent[v] = u }
                    }
                } else if u < sink {
                    let r = u - E
                    for e in 0..<E where flow[e][r] > 0 {
                        let d = dist[u] - cost[e][r] + potential[u] - potential[e]
                        if d < dist[e] { dist[e] = d; parent[e] = u }
                    }
                    if demandLeft[r] > 0 {
                        let d = dist[u] + potential[u] - potential[sink]
                        if d < dist[sink] { dist[sink] = d; parent[sink] = u }
                    }
                }
            }
            precondition(dist[sink] < infinity, "transport: no augmenting path with \(remaining) units left")
            // Walk back sink ← region ← edge ← region … ← edge (which has supply left).
            var amount = demandLeft[parent[sink] - E]
            var v = parent[sink]
            while true {
                let e = parent[v]
                if parent[e] < 0 { amount = min(amount, supplyLeft[e]); break }
                amount = min(amount, flow[e][parent[e] - E])
                v = parent[e]
            }
            let lastRegion = parent[sink] - E
            demandLeft[lastRegion] -= amount
            v = parent[sink]
            while true {
                let e = parent[v]
                flow[e][v - E] += amount
                if parent[e] < 0 { supplyLeft[e] -= amount; break }
                flow[e][parent[e] - E] -= amount
                v = parent[e]
            }
            remaining -= amount
            for i in 0..<n where dist[i] < infinity { potential[i] += dist[i] }
        }
        return flow
    }

    /// Total cost of a plan (for tests and `split show`), saturating at `Int64.max` (200
    /// edges of the largest volume at the largest RTT would overflow; that must not trap).
    public static func cost(of plan: [[Int64]], _ cost: [[Int64]]) -> Int64 {
        var total: Int64 = 0
        for e in plan.indices {
            for r in plan[e].indices {
                let (product, o1) = plan[e][r].multipliedReportingOverflow(by: cost[e][r])
                let (sum, o2) = total.addingReportingOverflow(product)
                if o1 || o2 { return .max }
                total = sum
            }
        }
        return total
    }
}
