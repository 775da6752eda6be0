import Routing
import TandemCore
import Testing

func ms(_ values: [String: Int64]) -> EdgeConfig.Edge { EdgeConfig.Edge(rttMicros: values.mapValues { $0 * 1000 }) }

@Suite struct ProximityTests {
    /// Two regions, four edges: two near each region.
    static let atlantic: [String: EdgeConfig.Edge] = [
        "nyc": ms(["us-east-1": 8, "eu-west-1": 75]),
        "bos": ms(["us-east-1": 10, "eu-west-1": 70]),
        "lon": ms(["us-east-1": 70, "eu-west-1": 5]),
        "par": ms(["us-east-1": 80, "eu-west-1": 10])
    ]

    @Test func balancedSplitSendsEveryEdgeToItsNearestRegion() throws {
        let table = RouteTable(inputs(["us-east-1": 5000, "eu-west-1": 5000], edges: ProximityTests.atlantic))
        #expect(table.planShares(edge: "nyc") == ["us-east-1": 1])
        #expect(table.planShares(edge: "bos") == ["us-east-1": 1])
        #expect(table.planShares(edge: "lon") == ["eu-west-1": 1])
        #expect(table.planShares(edge: "par") == ["eu-west-1": 1])
        // Mean RTT (8 + 10 + 5 + 10) / 4 ms, in unit·µs over 4 × 10,000 units.
        #expect(table.planCost == (8 + 10 + 5 + 10) * 1000 * 10_000)
        for c in contacts(2_000) { #expect(try table.decide(contact: c, edge: "lon").region == "eu-west-1") }
    }

    @Test func skewedSplitSplitsOnlyTheCheapestEdgeToMove() throws {
        // us-east-1 must take 70 % = 2.8 edges: nyc and bos whole, then the edge that costs
        // least to move over (lon: 70 − 5 = 65 ms extra, against par's 70 ms), 80 % of it.
        let table = RouteTable(inputs(["us-east-1": 7000, "eu-west-1": 3000], edges: ProximityTests.atlantic))
        #expect(table.planShares(edge: "nyc") == ["us-east-1": 1])
        #expect(table.planShares(edge: "bos") == ["us-east-1": 1])
        #expect(table.planShares(edge: "par") == ["eu-west-1": 1])
        let lon = try #require(table.planShares(edge: "lon"))
        #expect(abs(lon["us-east-1"]! - 0.8) < 1e-9)
        #expect((8 + 10) * 10_000 + 70 * 8_000 + 5 * 2_000 + 10 * 10_000 == table.planCost / 1000)
        // Over the edges' traffic the split is still exactly 70/30.
        let got = try (["nyc", "bos", "lon", "par"]).map { try shares(table, contacts(50_000), edge: $0) }
        let us = got.map { $0["us-east-1"] ?? 0 }.reduce(0, +) / 4
        #expect(abs(us - 0.7) < 0.005)
    }

    @Test func volumesWeighTheSplit() throws {
        var edges = ProximityTests.atlantic
        edges["nyc"]!.volume = 3  // nyc alone is half the traffic: it fills us-east-1's 50 %
        let table = RouteTable(inputs(["us-east-1": 5000, "eu-west-1": 5000], edges: edges))
        #expect(table.planShares(edge: "nyc") == ["us-east-1": 1])
        #expect(table.planShares(edge: "bos") == ["eu-west-1": 1])
    }

    @Test func threeRegionFixtureMeetsItsKnownOptimum() throws {
        // Each edge is near one region and the split is proportional to the edges' traffic, so
        // the optimum keeps every caller at its nearest region.
        let edges: [String: EdgeConfig.Edge] = [
            "nyc": ms(["us": 5, "eu": 80, "ap": 200]),
            "lon": ms(["us": 75, "eu": 4, "ap": 120]),
            "sin": ms(["us": 220, "eu": 150, "ap": 3]),
            "mum": ms(["us": 200, "eu": 110, "ap": 30])
        ]
        let table = RouteTable(inputs(["us": 2500, "eu": 2500, "ap": 5000], edges: edges))
        #expect(table.planShares(edge: "nyc") == ["us": 1])
        #expect(table.planShares(edge: "lon") == ["eu": 1])
        #expect(table.planShares(edge: "sin") == ["ap": 1])
        #expect(table.planShares(edge: "mum") == ["ap": 1])
        // Now us must take 50 %: one more edge's worth, cheapest from mum? nyc is full; the
        // cheapest extra is lon→us (75 − 4 = 71) then eu refills from mum (110 − 30 = 80):
        // 151 ms per unit, against mum→us directly (200 − 30 = 170). The solver finds the chain.
        let shifted = RouteTable(inputs(["us": 5000, "eu": 2500, "ap": 2500], edges: edges))
        #expect(shifted.planShares(edge: "nyc") == ["us": 1])
        #expect(shifted.planShares(edge: "lon") == ["us": 1])
        #expect(shifted.planShares(edge: "mum") == ["eu": 1])
        #expect(shifted.planShares(edge: "sin") == ["ap": 1])
    }

    @Test func twoRegionGreedyMatchesMinCostFlow() {
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<300 {
            let e = 1 + Int(rng.next() % 12)
            let cost = (0..<e).map { _ in (0..<2).map { _ in Int64(rng.next() % 200) } }
            let supply = (0..<e).map { _ in Int64(1 + rng.next() % 50) }
            let total = supply.reduce(0, +)
            let d0 = Int64(rng.next() % UInt64(total + 1))
            let greedy = Transport.twoRegions(cost: cost, supply: supply, demand: [d0, total - d0])
            let flow = Transport.minCostFlow(cost: cost, supply: supply, demand: [d0, total - d0])
            #expect(Transport.cost(of: greedy, cost) == Transport.cost(of: flow, cost))
            #expect(greedy.filter { $0[0] > 0 && $0[1] > 0 }.count <= 1, "at most R−1 = 1 edge split")
            check(flow, supply: supply, demand: [d0, total - d0])
        }
    }

    @Test func minCostFlowIsOptimalOnSmallInstances() {
        var rng = SeededGenerator(seed: 12)
        for _ in 0..<200 {
            let e = 1 + Int(rng.next() % 3), r = 2 + Int(rng.next() % 2)
            let cost = (0..<e).map { _ in (0..<r).map { _ in Int64(rng.next() % 100) } }
            let supply = (0..<e).map { _ in Int64(1 + rng.next() % 3) }
            var demand = [Int64](repeating: 0, count: r)
            for _ in 0..<supply.reduce(0, +) { demand[Int(rng.next() % UInt64(r))] += 1 }
            let plan = Transport.minCostFlow(cost: cost, supply: supply, demand: demand)
            check(plan, supply: supply, demand: demand)
            #expect(Transport.cost(of: plan, cost) == bruteForce(cost: cost, supply: supply, demand: demand))
        }
    }

    @Test func edgeFailureMovesOnlyTheFailedRegionsContactsOnEveryEdge() throws {
        let edges: [String: EdgeConfig.Edge] = [
            "nyc": ms(["us": 5, "eu": 80, "ap": 200]),
            "lon": ms(["us": 75, "eu": 4, "ap": 120]),
            "sin": ms(["us": 220, "eu": 150, "ap": 3])
        ]
        let weights = ["us": 5000, "eu": 3000, "ap": 2000]
        let before = RouteTable(inputs(weights, edges: edges))
        let after = RouteTable(inputs(weights, edges: edges, down: ["us"]))
        for edge in edges.keys {
            for c in contacts(5_000) {
                let a = try before.decide(contact: c, edge: edge), b = try after.decide(contact: c, edge: edge)
                #expect(b.region != "us")
                if a.region != "us" {
                    #expect(a.region == b.region, "collateral at \(edge): \(c)")
                } else {
                    #expect(a.fallbacks.first == b.region)
                }
            }
        }
    }

    @Test func pinnedEdgeGoesToItsRegionWhileItIsHealthy() throws {
        var i = inputs(["us": 5000, "eu": 5000], edges: ProximityTests.atlantic)
        i.split.overrides = ["nyc": "eu"]
        let pinned = RouteTable(i)
        for c in contacts(500) { #expect(try pinned.decide(contact: c, edge: "nyc").region == "eu") }
        i.health.nodes["eu"] = []
        let failed = RouteTable(i)
        for c in contacts(500) { #expect(try failed.decide(contact: c, edge: "nyc").region == "us") }
    }

    @Test func largestInputsDoNotOverflow() throws {
        var edges: [String: EdgeConfig.Edge] = [:]
        for e in 0..<EdgeConfig.maxEdges {
            edges["e\(e)"] = EdgeConfig.Edge(
                rttMicros: ["a": 99_999_000, "b": Int64(e) * 1000, "c": 5],
                volume: EdgeConfig.maxVolume)
        }
        let table = RouteTable(inputs(["a": SplitConfig.maxWeight, "b": 1, "c": 3], edges: edges))
        #expect(table.planCost == .max)
        let d = try table.decide(contact: "x", edge: "e7")
        #expect(["a", "b", "c"].contains(d.region))
    }

    func check(_ plan: [[Int64]], supply: [Int64], demand: [Int64], sourceLocation: SourceLocation = #_sourceLocation) {
        for (e, row) in plan.enumerated() {
            #expect(row.reduce(0, +) == supply[e], sourceLocation: sourceLocation)
            #expect(row.allSatisfy { $0 >= 0 }, sourceLocation: sourceLocation)
        }
        for r in demand.indices { #expect(plan.map { $0[r] }.reduce(0, +) == demand[r], sourceLocation: sourceLocation) }
    }

    /// Every integer plan, the cheapest cost.
    func bruteForce(cost: [[Int64]], supply: [Int64], demand: [Int64]) -> Int64 {
        var best = Int64.max
        func go(_ e: Int, _ left: [Int64], _ acc: Int64) {
            if e == supply.count {
                if left.allSatisfy({ $0 == 0 }) { best = min(best, acc) }
                return
            }
            func place(_ r: Int, _ remaining: Int64, _ left: [Int64], _ acc: Int64) {
                if r == demand.count - 1 {
                    guard remaining <= left[r] else { return }
                    var l = left
                    l[r] -= remaining
                    go(e + 1, l, acc + remaining * cost[e][r])
                    return
                }
                for x in 0...min(remaining, left[r]) {
                    var l = left
                    l[r] -= x
                    place(r + 1, remaining - x, l, acc + x * cost[e][r])
                }
            }
            place(0, supply[e], left, acc)
        }
        go(0, demand, 0)
        return best
    }
}
