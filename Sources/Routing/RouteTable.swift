import TandemCore

/// The answer for one contact.
public struct RouteDecision: Hashable, Sendable {
    public var contact: String
    public var region: String
    /// The node in `region` that takes it (rendezvous over the region's healthy nodes).
    public var node: String
    /// Where the contact goes if `region` cannot take it, best first: exactly the regions it
    /// would move to, in order, if the ones before failed.
    public var fallbacks: [String]
    public var fingerprint: UInt64
}

public enum RouteError: Error, Hashable, Sendable {
    case unknownEdge(String)
    /// Every region with a share is dead, drained or unhealthy (or has no share).
    case noHealthyRegion
}

/// Where contacts go: a pure function of `RouteInputs`, computed once per change of the inputs
/// and then read by every decision.
///
/// Construction:
/// 1. Target demand per region: the split's weights over the total traffic, capped by capacity
///    (water-filling: a capped region's excess flows to the uncapped in proportion to weight),
///    apportioned to integer units by largest remainder.
/// 2. Per edge, the proximity plan: the transportation problem `Transport.solve` over the edges'
///    traffic (volume × 10,000 units each) and the regions' demand, minimising total RTT.
/// 3. Health only filters, at decision time: a region that cannot take contacts is skipped in
///    the rendezvous race, so exactly its contacts move, to the others in proportion to their
///    weights on that edge (or, if none of the edge's regions is left, to the plain split).
///    The plan is not re-solved on failure: re-solving would move contacts between survivors.
public struct RouteTable: Sendable {
    public let inputs: RouteInputs
    public let fingerprint: UInt64
    /// The edges with RTTs their config lacks estimated from the region matrix
    /// (`RouteInputs.resolvedEdges`): what the plan used.
    public let resolvedEdges: EdgeConfig
    /// Regions that can get contacts (a share or a pinned edge), sorted by name.
    public let regions: [String]
    /// Per region: can it take contacts now (healthy node, not drained)?
    public let eligible: [Bool]
    /// Per region: its demand in units (the plain split, after capacity): the race's weights for
    /// a contact with no edge, and the second tier for an edge whose regions all failed.
    public let demand: [Int64]
    /// Per edge (by name): the plan's units per region (the first tier of that edge's race).
    public let plans: [String: [Int64]]
    /// Total plan cost in unit·µs (the objective), for tests and the CLI.
    public let planCost: Int64
    let seeds: [UInt64]
    let nodeNames: [[String]]
    let nodeSeeds: [[UInt64]]
    static let unitsPerVolume: Int64 = 10_000

    public init(_ inputs: RouteInputs) {
        self.inputs = inputs
        fingerprint = inputs.fingerprint
        let split = inputs.split
        let edges = inputs.resolvedEdges
        resolvedEdges = edges
        var weights: [String: Int64] = [:]
        if split.weights.isEmpty {
            for r in inputs.health.knownRegions { weights[r] = 10_000 }
        } else {
            for (r, w) in split.weights where w > 0 { weights[r] = Int64(min(w, SplitConfig.maxWeight)) }
        }
        let pinned = split.overrides.filter { inputs.edges.edges[$0.key] != nil }
        let weighted = weights.keys.sorted()
        // Past the limit (the API refuses more), the first edges by name are planned; the rest
        // route by the plain split.
        let planned = Array(inputs.edges.edges.keys.filter { pinned[$0] == nil }.sorted().prefix(EdgeConfig.maxEdges))
        let total =
            planned.isEmpty
            ? RouteTable.unitsPerVolume
            : planned.reduce(0) { $0 + min(max(inputs.edges.edges[$1]!.volume, 1), EdgeConfig.maxVolume) * RouteTable.unitsPerVolume }
        let demandByRegion = RouteTable.capped(total: total, regions: weighted, weights: weights, capacity: inputs.capacity)

        let regions = Set(weighted.filter { demandByRegion[$0]! > 0 } + pinned.values).sorted()
        self.regions = regions
        let index = Dictionary(uniqueKeysWithValues: regions.enumerated().map { ($1, $0) })
        let demand = regions.map { demandByRegion[$0] ?? 0 }
        self.demand = demand
        seeds = regions.map(Rendezvous.seed)
        var names: [[String]] = []
        var nodeSeeds: [[UInt64]] = []
        var eligible: [Bool] = []
        for r in regions {
            let nodes = split.drained.contains(r) ? [] : (inputs.health.nodes[r] ?? []).sorted()
            names.append(nodes)
            nodeSeeds.append(nodes.map(Rendezvous.seed))
            eligible.append(!nodes.isEmpty)
        }
        nodeNames = names
        self.nodeSeeds = nodeSeeds
        self.eligible = eligible

        // The proximity plan over the regions with demand.
        var plans: [String: [Int64]] = [:]
        var planCost: Int64 = 0
        let solved = regions.indices.filter { demand[$0] > 0 }
        if !planned.isEmpty && !solved.isEmpty {
            let cost = planned.map { e in
                solved.map { edges.edges[e]!.rttMicros[regions[$0]].map { max(0, $0) } ?? EdgeConfig.unknownRTTMicros }
            }
            let supply = planned.map { min(max(inputs.edges.edges[$0]!.volume, 1), EdgeConfig.maxVolume) * RouteTable.unitsPerVolume }
            let plan = Transport.solve(cost: cost, supply: supply, demand: solved.map { demand[$0] })
            planCost = Transport.cost(of: plan, cost)
            for (i, e) in planned.enumerated() {
                var row = [Int64](repeating: 0, count: regions.count)
                for (j, r) in solved.enumerated() { row[r] = plan[i][j] }
                plans[e] = row
            }
        }
        for (e, r) in pinned {
            var row = [Int64](repeating: 0, count: regions.count)
            row[index[r]!] = 1
            plans[e] = row
        }
        self.plans = plans
        self.planCost = planCost
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Decisions

    /// The region, node and fallbacks for `contact` arriving at `edge` (nil: no proximity, the
    /// plain split).
    public func decide(contact: String, edge: String? = nil) throws(RouteError) -> RouteDecision {
        let plan: [Int64]?
        if let edge {
            guard let p = plans[edge] else {
                // A configured edge with no plan (no region has a share) still routes by the split.
                guard inputs.edges.edges[edge] != nil else { throw .unknownEdge(edge) }
                plan = nil
                return try decide(contact: contact, plan: plan)
            }
            plan = p
        } else {
            plan = nil
        }
        return try decide(contact: contact, plan: plan)
    }

    private func decide(contact: String, plan: [Int64]?) throws(RouteError) -> RouteDecision {
        let h = Rendezvous.contactHash(contact)
        let n = regions.count
        return try withUnsafeTemporaryAllocation(of: (tier: Int, draw: UInt64, weight: UInt64, index: Int).self, capacity: max(n, 1)) {
            (ranked) throws(RouteError) -> RouteDecision in
            var count = 0
            for i in 0..<n where eligible[i] {
                let w0 = plan?[i] ?? 0
                let (tier, weight) = w0 > 0 ? (0, UInt64(w0)) : (1, UInt64(demand[i]))
                guard weight > 0 else { continue }
                let entry = (tier: tier, draw: Rendezvous.negLog2(Rendezvous.draw(h, seeds[i])), weight: weight, index: i)
                // Insertion sort: best first (lower tier, then smaller draw/weight, then lower index).
                var j = count
                while j > 0 && RouteTable.better(entry, ranked[j - 1]) {
                    ranked[j] = ranked[j - 1]
                    j -= 1
                }
                ranked[j] = entry
                count += 1
            }
            guard count > 0 else { throw .noHealthyRegion }
            let best = ranked[0].index
            var fallbacks: [String] = []
            fallbacks.reserveCapacity(count - 1)
            for k in 1..<count { fallbacks.append(regions[ranked[k].index]) }
            return RouteDecision(
                contact: contact, region: regions[best], node: node(h, in: best),
                fallbacks: fallbacks, fingerprint: fingerprint)
        }
    }

    @inline(__always)
    static func better(
        _ a: (tier: Int, draw: UInt64, weight: UInt64, index: Int),
        _ b: (tier: Int, draw: UInt64, weight: UInt64, index: Int)
    ) -> Bool {
        if a.tier != b.tier { return a.tier < b.tier }
        if Rendezvous.ties(a.draw, a.weight, b.draw, b.weight) { return a.index < b.index }
        return Rendezvous.beats(a.draw, a.weight, b.draw, b.weight)
    }

    /// Unweighted rendezvous over the region's healthy nodes.
    private func node(_ h: UInt64, in region: Int) -> String {
        let seeds = nodeSeeds[region]
        var best = 0
        var bestDraw: UInt64 = 0
        for (i, s) in seeds.enumerated() {
            let d = Rendezvous.draw(h, s)
            if i == 0 || d > bestDraw { best = i; bestDraw = d }
        }
        return nodeNames[region][best]
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Views

    /// Target share per region (of the plain split, after capacity), as fractions.
    public var targetShares: [String: Double] {
        let total = Double(demand.reduce(0, +))
        var out: [String: Double] = [:]
        for (i, r) in regions.enumerated() where demand[i] > 0 { out[r] = Double(demand[i]) / max(total, 1) }
        return out
    }

    /// Expected share per region after health: over the edges' traffic when edges are
    /// configured, else over the plain split. (Display only; decisions never use floats.)
    public var effectiveShares: [String: Double] {
        var out: [String: Double] = [:]
        func add(_ row: [Int64]?, volume: Double) {
            var first = 0.0, second = 0.0
            for i in regions.indices where eligible[i] {
                first += Double(row?[i] ?? 0)
                second += Double(demand[i])
            }
            for i in regions.indices where eligible[i] {
                let share = first > 0 ? Double(row?[i] ?? 0) / first : (second > 0 ? Double(demand[i]) / second : 0)
                if share > 0 { out[regions[i], default: 0] += share * volume }
            }
        }
        if plans.isEmpty {
            add(nil, volume: 1)
        } else {
            let volumes = plans.keys.map { Double(min(max(inputs.edges.edges[$0]!.volume, 1), EdgeConfig.maxVolume)) }
            let total = volumes.reduce(0, +)
            for (e, v) in zip(plans.keys, volumes) { add(plans[e], volume: v / total) }
        }
        return out
    }

    /// Per edge, the fraction of its traffic each region gets in the plan (before health).
    public func planShares(edge: String) -> [String: Double]? {
        guard let row = plans[edge] else { return nil }
        let total = Double(row.reduce(0, +))
        var out: [String: Double] = [:]
        for (i, r) in regions.enumerated() where row[i] > 0 { out[r] = Double(row[i]) / total }
        return out
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Apportionment

    /// Splits `total` units over `regions` by weight, capped by each region's share of the
    /// published capacity; integer, deterministic (largest remainder, ties by name).
    static func capped(total: Int64, regions: [String], weights: [String: Int64], capacity: [String: Int64]) -> [String: Int64] {
        var result: [String: Int64] = [:]
        guard !regions.isEmpty else { return result }
        let published = regions.filter { capacity[$0] != nil }
        guard !published.isEmpty else {
            return Dictionary(uniqueKeysWithValues: zip(regions, apportion(total, regions.map { weights[$0]! })))
        }
        let agents = published.map { max(0, capacity[$0]!) }
        let allAgents = agents.reduce(0, +)
        var cap: [String: Int64] = [:]
        for (r, a) in zip(published, agents) { cap[r] = allAgents == 0 ? 0 : mulDiv(total, a, allAgents).quotient }
        var free = regions
        var left = total
        while !free.isEmpty {
            let shares = apportion(left, free.map { weights[$0]! })
            let over = free.indices.filter { i in cap[free[i]].map { c in shares[i] > c } ?? false }
            if over.isEmpty {
                for (r, s) in zip(free, shares) { result[r] = s }
                return result
            }
            for i in over { result[free[i]] = cap[free[i]]!; left -= cap[free[i]]! }
            free = free.enumerated().filter { !over.contains($0.offset) }.map(\.element)
        }
        // Everyone capped and units left over (rounding): by weight, ignoring caps.
        let extra = apportion(left, regions.map { weights[$0]! })
        for (r, x) in zip(regions, extra) { result[r, default: 0] += x }
        return result
    }

    /// Largest-remainder apportionment of `total` by `weights` (ties to the lower index).
    static func apportion(_ total: Int64, _ weights: [Int64]) -> [Int64] {
        let sum = weights.reduce(0, +)
        guard sum > 0, total > 0 else { return weights.map { _ in 0 } }
        var out: [Int64] = []
        var remainders: [(Int64, Int)] = []
        for (i, w) in weights.enumerated() {
            let (q, r) = mulDiv(total, w, sum)
            out.append(q)
            remainders.append((r, i))
        }
        var left = total - out.reduce(0, +)
        for (_, i) in remainders.sorted(by: { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }) where left > 0 {
            out[i] += 1
            left -= 1
        }
        return out
    }

    /// `a·b / c` without overflow (all non-negative, c > 0).
    static func mulDiv(_ a: Int64, _ b: Int64, _ c: Int64) -> (quotient: Int64, remainder: Int64) {
        let p = UInt64(a).multipliedFullWidth(by: UInt64(b))
        let (q, r) = UInt64(c).dividingFullWidth((p.high, p.low))
        return (Int64(q), Int64(r))
    }
}
