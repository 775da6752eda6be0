import Routing
import TandemCore
import Testing

@Suite struct RegionRTTTests {
    static func matrix(_ pairs: [(String, String, Int64)]) -> RegionRTT {
        var m = RegionRTT()
        for (a, b, ms) in pairs { m.set(a, b, micros: ms * 1000) }
        return m
    }

    @Test func matrixIsTheMeanOfBothDirectionsOverEachRegionsNodes() {
        let m = RegionRTT.build([
            "a1": RTTReport(region: "a", rttMs: ["b": 10, "c": 40]),
            "a2": RTTReport(region: "a", rttMs: ["b": 13]),  // a → b: 11.5 ms
            "b1": RTTReport(region: "b", rttMs: ["a": 12, "b": 99]),  // its own region is ignored
            "c1": RTTReport(region: "c", rttMs: [:])
        ])
        #expect(m.rtt("a", "b") == 11_750)  // (11,500 + 12,000) / 2
        #expect(m.rtt("b", "a") == 11_750)
        #expect(m.rtt("a", "c") == 40_000)  // one direction measured
        #expect(m.rtt("b", "c") == nil)
        #expect(m.rtt("b", "b") == 0)
        #expect(m.regions == ["a", "b", "c"])
        // Order of reports does not matter: a pure function of the set.
        let again = RegionRTT.build([
            "b1": RTTReport(region: "b", rttMs: ["a": 12]),
            "a2": RTTReport(region: "a", rttMs: ["b": 13]),
            "c1": RTTReport(region: "c", rttMs: [:]),
            "a1": RTTReport(region: "a", rttMs: ["c": 40, "b": 10])
        ])
        #expect(again == m)
    }

    /// Edges configured for `us-east-1` and `eu-west-1`; `us-west-2` is new and named by no edge.
    static let edges: [String: EdgeConfig.Edge] = [
        "nyc": ms(["us-east-1": 8, "eu-west-1": 75]),
        "lon": ms(["us-east-1": 70, "eu-west-1": 5]),
        "sao": ms(["us-east-1": 110, "eu-west-1": 150])
    ]
    static let measured = matrix([("us-east-1", "us-west-2", 60), ("eu-west-1", "us-west-2", 140), ("us-east-1", "eu-west-1", 70)])

    @Test func aRegionAnEdgeLacksIsEstimatedThroughTheConfiguredOnes() throws {
        var i = inputs(["eu-west-1": 6666, "us-west-2": 3333], edges: RegionRTTTests.edges)
        i.regionRTT = RegionRTTTests.measured
        let resolved = i.resolvedEdges.edges
        // min over configured r of (edge → r) + (r → us-west-2)
        #expect(resolved["nyc"]!.rttMicros["us-west-2"] == 68_000)  // 8 + 60, not 75 + 140
        #expect(resolved["lon"]!.rttMicros["us-west-2"] == 130_000)  // 70 + 60, not 5 + 140
        #expect(resolved["sao"]!.rttMicros["us-west-2"] == 170_000)
        // Configured values stay as they are.
        #expect(resolved["nyc"]!.rttMicros["eu-west-1"] == 75_000)

        // us-west-2 takes one edge of three: nyc (68 + 5 + 150 = 223 ms beats sao there: 250).
        let table = RouteTable(i)
        #expect(table.planShares(edge: "nyc") == ["us-west-2": 1])
        #expect(table.planShares(edge: "lon") == ["eu-west-1": 1])
        #expect(table.planShares(edge: "sao") == ["eu-west-1": 1])
        for c in contacts(500) { #expect(try table.decide(contact: c, edge: "nyc").region == "us-west-2") }
        // Without the matrix the new region is "10 s away" from every edge, and it gets the edge
        // farthest from eu-west-1 instead of the one nearest to it.
        let blind = RouteTable(inputs(["eu-west-1": 6666, "us-west-2": 3333], edges: RegionRTTTests.edges))
        #expect(blind.planShares(edge: "sao") == ["us-west-2": 1])

        // An estimate decides exactly like the same value configured by hand: same plan, same
        // fingerprint.
        let byHand = RouteTable(inputs(["eu-west-1": 6666, "us-west-2": 3333], edges: resolved))
        #expect(byHand.plans == table.plans && byHand.planCost == table.planCost)
        #expect(byHand.fingerprint == table.fingerprint)
    }

    @Test func aCompleteEdgesConfigIgnoresTheMatrix() throws {
        let plain = inputs(["us-east-1": 5000, "eu-west-1": 5000], edges: ProximityTests.atlantic)
        var measured = plain
        measured.regionRTT = RegionRTTTests.matrix([("us-east-1", "eu-west-1", 70)])
        let a = RouteTable(plain), b = RouteTable(measured)
        #expect(a.fingerprint == b.fingerprint)
        #expect(a.plans == b.plans)
        for c in contacts(2_000) {
            for e in ["nyc", "lon", nil] as [String?] { #expect(try a.decide(contact: c, edge: e) == b.decide(contact: c, edge: e)) }
        }
        // A region only the matrix knows (no share) is not estimated: nothing changes.
        measured.regionRTT.set("us-east-1", "ap-south-1", micros: 200_000)
        #expect(RouteTable(measured).fingerprint == a.fingerprint)
        #expect(RouteTable(measured).regions == ["eu-west-1", "us-east-1"])
    }

    @Test func anEdgeWithNoPathToTheRegionStaysUnknown() {
        var i = inputs(["a": 5000, "z": 5000], edges: ["e": ms(["a": 5])])
        i.regionRTT = RegionRTTTests.matrix([("b", "z", 10)])  // nothing from a to z
        #expect(i.resolvedEdges.edges["e"]!.rttMicros["z"] == nil)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Publication damping

    static let t0 = Instant(nanoseconds: 1_000_000_000)

    @Test func smallChangesAreNeverRewritten() {
        var p = RTTPublisher()
        #expect(p.next(measured: ["b": 100, "c": 10], now: RegionRTTTests.t0) == ["b": 100, "c": 10])
        // Within 20 % (or under 2 ms): not news, however long we wait.
        for s in [11, 30, 60, 600] {
            #expect(p.next(measured: ["b": 120, "c": 11], now: RegionRTTTests.t0 + .seconds(s)) == nil)
            #expect(p.next(measured: ["b": 80, "c": 9], now: RegionRTTTests.t0 + .seconds(s)) == nil)
        }
        #expect(p.published == ["b": 100, "c": 10])
        // Whole-ms jitter at LAN scale: 0 ↔ 1 ms is more than 20 % but not news.
        var lan = RTTPublisher()
        _ = lan.next(measured: ["b": 0], now: RegionRTTTests.t0)
        #expect(lan.next(measured: ["b": 1], now: RegionRTTTests.t0 + .seconds(20)) == nil)
    }

    @Test func aLargeMoveIsRewrittenAtMostEveryInterval() {
        var p = RTTPublisher()
        _ = p.next(measured: ["b": 100, "c": 10], now: RegionRTTTests.t0)
        // 121 ms is more than 20 % away, but the last write is only 5 s old.
        #expect(p.next(measured: ["b": 121, "c": 11], now: RegionRTTTests.t0 + .seconds(5)) == nil)
        // After 10 s it goes out, with every current value (the small moves too).
        #expect(p.next(measured: ["b": 121, "c": 11], now: RegionRTTTests.t0 + .seconds(10)) == ["b": 121, "c": 11])
        #expect(p.next(measured: ["b": 200, "c": 11], now: RegionRTTTests.t0 + .seconds(15)) == nil)
        #expect(p.next(measured: ["b": 200, "c": 11], now: RegionRTTTests.t0 + .seconds(20)) == ["b": 200, "c": 11])
    }

    @Test func anUnmeasuredRegionKeepsItsValueAndANewOneIsPublished() {
        var p = RTTPublisher()
        p.adopt(["b": 100, "c": 10], now: RegionRTTTests.t0)  // restart: what the table holds
        #expect(p.next(measured: ["b": 100, "c": 10], now: RegionRTTTests.t0 + .seconds(30)) == nil)
        // c's node died: no measurement, the published value stays (the plan is not re-solved).
        #expect(p.next(measured: ["b": 101], now: RegionRTTTests.t0 + .seconds(30)) == nil)
        #expect(p.next(measured: [:], now: RegionRTTTests.t0 + .seconds(30)) == nil)
        // A region with a first measurement is news.
        #expect(p.next(measured: ["b": 101, "d": 50], now: RegionRTTTests.t0 + .seconds(30)) == ["b": 101, "c": 10, "d": 50])
    }
}
