import TandemCore

/// The operator's word on where contacts go: replicated through the global table, so every
/// node reads the same one.
public struct SplitConfig: Hashable, Sendable {
    /// Target weight per region in basis points of a percent (`50 %` = 5000). Relative: the
    /// target share of a region is its weight over the sum. Empty means equal weights over every
    /// region the health view knows.
    public var weights: [String: Int]
    /// Regions in maintenance: no new contacts, their share flows to the others.
    public var drained: Set<String>
    /// Edges pinned to one region (`edge → region`), outside the proximity plan. When the region
    /// cannot take contacts, the edge falls back to the plain split.
    public var overrides: [String: String]

    public static let maxWeight = 1_000_000

    public init(weights: [String: Int] = [:], drained: Set<String> = [], overrides: [String: String] = [:]) {
        self.weights = weights
        self.drained = drained
        self.overrides = overrides
    }
}

/// Where callers come in, and the RTT from each edge to each region.
public struct EdgeConfig: Hashable, Sendable {
    public struct Edge: Hashable, Sendable {
        /// Caller-to-region round trip in microseconds. A region missing here counts as
        /// `EdgeConfig.unknownRTTMicros` away: used only when the split needs it.
        public var rttMicros: [String: Int64]
        /// Relative traffic from this edge (integer, ≥ 1): the plan meets the split over the
        /// traffic, not over the edge count.
        public var volume: Int64

        public init(rttMicros: [String: Int64], volume: Int64 = 1) {
            self.rttMicros = rttMicros
            self.volume = volume
        }
    }

    public var edges: [String: Edge]

    public static let unknownRTTMicros: Int64 = 10_000_000
    public static let maxVolume: Int64 = 1_000_000
    /// The min-cost-flow plan is O((E+R)³) in the worst case: 200 edges × 5 regions solve in about
    /// 10 ms, on the loop, once per config change.
    public static let maxEdges = 200

    public init(edges: [String: Edge] = [:]) { self.edges = edges }
}

/// Which nodes can take contacts now, per region, as this node sees it (after hold-down): the
/// output of `HealthTracker`, an input of the table.
public struct HealthView: Hashable, Sendable {
    /// Region → names of its nodes that may take contacts (alive, instance healthy, past
    /// hold-down, not a witness). A known region with no such node maps to `[]`.
    public var nodes: [String: [String]]

    public init(nodes: [String: [String]] = [:]) { self.nodes = nodes }

    public var knownRegions: [String] { nodes.keys.sorted() }
}

/// Everything a route table is a function of.
public struct RouteInputs: Hashable, Sendable {
    public var split: SplitConfig
    public var health: HealthView
    public var edges: EdgeConfig
    /// Optional capacity coupling: available agents per region. A region that publishes a number
    /// gets at most its share of the published agents; one that publishes none is uncapped.
    public var capacity: [String: Int64]
    /// Region-to-region RTTs from the nodes' published Vivaldi measurements. Decides only
    /// through `resolvedEdges` (RTTs an edge's config lacks); also shown to operators.
    public var regionRTT: RegionRTT

    public init(
        split: SplitConfig = SplitConfig(), health: HealthView = HealthView(),
        edges: EdgeConfig = EdgeConfig(), capacity: [String: Int64] = [:], regionRTT: RegionRTT = RegionRTT()
    ) {
        self.split = split
        self.health = health
        self.edges = edges
        self.capacity = capacity
        self.regionRTT = regionRTT
    }

    /// The edges as the plan sees them: configured RTTs as they are, and for every region the
    /// matrix knows but an edge's config lacks, the estimate `min over configured r of
    /// (edge → r) + (r → region)` (`RegionRTT.estimate`). A complete config is unchanged, so a
    /// new region is planned sensibly without reconfiguring every edge.
    public var resolvedEdges: EdgeConfig {
        guard !regionRTT.isEmpty else { return edges }
        // Only regions that can have a share (the matrix also knows regions the split leaves
        // out: estimating those would change the fingerprint for nothing).
        let shared = split.weights.isEmpty ? Set(health.knownRegions) : Set(split.weights.filter { $0.value > 0 }.keys)
        let regions = regionRTT.regions.filter { shared.contains($0) }
        guard !regions.isEmpty else { return edges }
        var out = edges
        for (name, edge) in edges.edges {
            var filled = edge
            for r in regions where edge.rttMicros[r] == nil {
                if let v = regionRTT.estimate(edge, to: r) { filled.rttMicros[r] = v }
            }
            out.edges[name] = filled
        }
        return out
    }

    /// A stable 64-bit hash of a canonical encoding of every input that decides (sorted,
    /// integers only): equal fingerprints on two nodes mean equal inputs, so equal answers. The
    /// RTT matrix enters only through the edge RTTs it fills in, so a new measurement changes
    /// the fingerprint only when it changes the plan's costs (never for a complete edges config).
    public var fingerprint: UInt64 {
        let edges = resolvedEdges
        var w = ByteWriter(capacity: 256)
        w.u8(1)  // encoding version
        func string(_ s: String) { let b = Array(s.utf8); w.u32(UInt32(b.count)); w.raw(b) }
        w.u32(UInt32(split.weights.count))
        for k in split.weights.keys.sorted() { string(k); w.u64(UInt64(bitPattern: Int64(split.weights[k]!))) }
        w.u32(UInt32(split.drained.count))
        for k in split.drained.sorted() { string(k) }
        w.u32(UInt32(split.overrides.count))
        for k in split.overrides.keys.sorted() { string(k); string(split.overrides[k]!) }
        w.u32(UInt32(health.nodes.count))
        for k in health.nodes.keys.sorted() {
            string(k)
            let names = health.nodes[k]!.sorted()
            w.u32(UInt32(names.count))
            for n in names { string(n) }
        }
        w.u32(UInt32(edges.edges.count))
        for k in edges.edges.keys.sorted() {
            let e = edges.edges[k]!
            string(k)
            w.u64(UInt64(bitPattern: e.volume))
            w.u32(UInt32(e.rttMicros.count))
            for r in e.rttMicros.keys.sorted() { string(r); w.u64(UInt64(bitPattern: e.rttMicros[r]!)) }
        }
        w.u32(UInt32(capacity.count))
        for k in capacity.keys.sorted() { string(k); w.u64(UInt64(bitPattern: capacity[k]!)) }
        return Rendezvous.mix(stableHash64(w.bytes))
    }
}

/// Hex, 16 digits: how fingerprints are shown.
public func fingerprintText(_ f: UInt64) -> String {
    let s = String(f, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
