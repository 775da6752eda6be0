import Foundation
import GlobalTable
import Routing
import Storage
import TandemCore
@testable import TandemNode
import TandemTestKit
import Testing
import Transport

/// Routing on real `tandem node` processes: the HTTP API, the same answer from every node, and
/// failover after `kill -9`.
@Suite(.serialized) struct RoutingProcessTests {
    func call(_ method: String, _ api: String, _ path: String, _ body: String? = nil) throws -> HTTPClient.Response {
        try HTTPClient.request(method, api, path, body: body.map { Array($0.utf8) }, timeout: .seconds(5))
    }

    func object(_ r: HTTPClient.Response) -> JSON { r.json() ?? .object([]) }

    /// Three nodes, one per region, all alive in every view.
    func start(holdDown: Double = 1) throws -> LocalCluster {
        let cluster = try LocalCluster(size: 3, profile: "fast", chaos: true)
        for i in 0..<3 { try cluster.start(i, extraArgs: ["--hold-down", "\(holdDown)"]) }
        let formed = eventually(timeout: .seconds(20), interval: .milliseconds(50)) {
            (0..<3).allSatisfy { i in
                guard let v = cluster.view(from: i) else { return false }
                return v.count == 3 && v.values.allSatisfy { $0.status == "alive" }
            }
        }
        #expect(formed, "cluster did not form")
        return cluster
    }

    /// The table fingerprint node `i` reports, with the regions it may route to.
    func table(_ cluster: LocalCluster, _ i: Int) -> (fingerprint: String, eligible: Set<String>)? {
        guard let r = try? call("GET", cluster.nodes[i].api, "/v1/split"), r.status == 200,
            let fp = object(r)["table"]?.stringValue, let regions = object(r)["regions"]?.objectValue
        else { return nil }
        return (fp, Set(regions.filter { $0.1["eligible"]?.boolValue == true }.map(\.0)))
    }

    func region(_ cluster: LocalCluster, _ i: Int, _ contact: String, edge: String? = nil) -> String? {
        let path = "/v1/route?contact=\(contact)" + (edge.map { "&edge=\($0)" } ?? "")
        guard let r = try? call("GET", cluster.nodes[i].api, path), r.status == 200 else { return nil }
        return object(r)["region"]?.stringValue
    }

    @Test func everyNodeGivesTheSameAnswerAndTheAPIValidates() throws {
        let cluster = try start()
        let a = cluster.nodes[0].api
        let set = try call("PUT", a, "/v1/split", #"{"weights":{"region-0":40,"region-1":35,"region-2":25}}"#)
        #expect(set.status == 200, "\(set.text)")
        let edges =
            #"{"edges":{"nyc":{"rttMs":{"region-0":8,"region-1":70,"region-2":150},"volume":2},"lon":{"region-0":75,"region-1":5,"region-2":90}}}"#
        #expect(try call("PUT", cluster.nodes[1].api, "/v1/edges", edges).status == 200)
        // Config written on two nodes reaches all three: one fingerprint, every region eligible.
        let agreed = eventually(timeout: .seconds(10), interval: .milliseconds(50)) {
            let t = (0..<3).compactMap { table(cluster, $0) }
            return t.count == 3 && Set(t.map(\.fingerprint)).count == 1 && t[0].eligible.count == 3
        }
        #expect(agreed, "nodes did not converge on one table: \((0..<3).map { table(cluster, $0).map { "\($0)" } ?? "-" })")

        var seen: Set<String> = []
        for c in 0..<1_000 {
            let edge = ["nyc", "lon", nil][c % 3]
            let answers = (0..<3).map { region(cluster, $0, "C-\(c)", edge: edge) }
            #expect(answers[0] != nil && answers.allSatisfy { $0 == answers[0] }, "C-\(c): \(answers)")
            if let r = answers[0] { seen.insert(r) }
        }
        #expect(seen == ["region-0", "region-1", "region-2"])

        let full = try call("GET", a, "/v1/route?contact=C-1001&edge=nyc")
        let d = object(full)
        #expect(
            full.status == 200 && d["contact"]?.stringValue == "C-1001"
                && d["fallbacks"]?.arrayValue.map { $0.count == 2 && $0.allSatisfy { $0.stringValue != nil } } == true)
        #expect(["n1", "n2", "n3"].contains(d["node"]?.stringValue ?? ""))

        // Query components are decoded (`+` is a space, `%XX` a byte) and the id is echoed as JSON.
        let odd = try call("GET", a, "/v1/route?contact=a%2Bb+c%22%C3%A9")
        #expect(object(odd)["contact"]?.stringValue == "a+b c\"é")

        // Errors: 400 without a contact, 400 for an unknown edge, 503 with every region drained.
        #expect(try call("GET", a, "/v1/route?edge=nyc").status == 400)
        let unknown = try call("GET", a, "/v1/route?contact=x&edge=mars")
        #expect(unknown.status == 400 && object(unknown)["error"]?.stringValue == "unknown_edge")
        #expect(try call("PUT", a, "/v1/split", #"{"weights":{"region-0":-1}}"#).status == 400)
        #expect(try call("PUT", a, "/v1/edges", #"{"edges":{"x":{}}}"#).status == 400)
        #expect(try call("DELETE", a, "/v1/tables/_routing").status == 403)
        for r in ["region-0", "region-1", "region-2"] {
            #expect(try call("POST", cluster.nodes[2].api, "/v1/regions/\(r)/drain").status == 200)
        }
        let drained = eventually(timeout: .seconds(10)) { (try? call("GET", a, "/v1/route?contact=x"))?.status == 503 }
        #expect(drained)
        let none = try call("GET", a, "/v1/route?contact=x")
        #expect(object(none)["error"]?.stringValue == "no_healthy_region")
        #expect(try call("POST", a, "/v1/regions/region-1/undrain").status == 200)
        #expect(eventually(timeout: .seconds(10)) { (0..<3).allSatisfy { region(cluster, $0, "x") == "region-1" } })
        #expect(cluster.metric("tandem_route_decisions_total", node: 0).map { $0 > 0 } == true)
    }

    @Test func killedNodeLeavesEveryAnswerAndReturnsAfterHoldDown() throws {
        let cluster = try start(holdDown: 1)
        let contacts = (0..<300).map { "K-\($0)" }
        #expect(eventually(timeout: .seconds(10)) { (0..<3).allSatisfy { table(cluster, $0)?.eligible.count == 3 } })
        let before = contacts.map { region(cluster, 0, $0) }
        #expect(before.contains("region-1"))

        cluster.kill9(1)
        let gone = eventually(timeout: .seconds(15), interval: .milliseconds(50)) {
            [0, 2].allSatisfy { table(cluster, $0)?.eligible == ["region-0", "region-2"] }
        }
        #expect(gone, "survivors still route to region-1")
        for i in [0, 2] {
            let after = contacts.map { region(cluster, i, $0) }
            #expect(!after.contains("region-1"))
            // Zero collateral: contacts that were not on region-1 stayed where they were.
            for (x, y) in zip(before, after) where x != "region-1" { #expect(x == y) }
        }

        try cluster.start(1, extraArgs: ["--hold-down", "1"])
        let back = eventually(timeout: .seconds(20), interval: .milliseconds(50)) {
            (0..<3).allSatisfy { table(cluster, $0)?.eligible.count == 3 }
        }
        #expect(back, "region-1 did not return")
        for i in 0..<3 { #expect(contacts.map { region(cluster, i, $0) } == before) }
    }

    @Test func anUnhealthyInstanceTakesNoContacts() throws {
        // n3's "contact-center instance" is n1's health endpoint: when n1 dies, region-2's
        // instance is down too, though n3 itself is alive.
        let cluster = try LocalCluster(size: 3, profile: "fast")
        try cluster.start(0, extraArgs: ["--hold-down", "1"])
        try cluster.start(1, extraArgs: ["--hold-down", "1"])
        try cluster.start(2, extraArgs: ["--hold-down", "1", "--instance-health", "http://\(cluster.nodes[0].api)/v1/health"])
        #expect(
            eventually(timeout: .seconds(20), interval: .milliseconds(50)) {
                (0..<3).allSatisfy { table(cluster, $0)?.eligible.count == 3 }
            })
        cluster.kill9(0)
        #expect(
            eventually(timeout: .seconds(15), interval: .milliseconds(50)) {
                [1, 2].allSatisfy { table(cluster, $0)?.eligible == ["region-1"] }
            }, "region-2 still takes contacts with its instance down")
        #expect(eventually(timeout: .seconds(5)) { region(cluster, 2, "any") == "region-1" })
        try cluster.start(0, extraArgs: ["--hold-down", "1"])
        #expect(
            eventually(timeout: .seconds(20), interval: .milliseconds(50)) {
                (0..<3).allSatisfy { table(cluster, $0)?.eligible.count == 3 }
            }, "region-2 did not come back with its instance")

        // Unhealthy again, then n3 restarts without --instance-health: its old flag goes with it.
        cluster.kill9(0)
        #expect(eventually(timeout: .seconds(15), interval: .milliseconds(50)) { table(cluster, 1)?.eligible == ["region-1"] })
        cluster.kill9(2)
        try cluster.start(2, extraArgs: ["--hold-down", "1"])
        #expect(
            eventually(timeout: .seconds(20), interval: .milliseconds(50)) {
                [1, 2].allSatisfy { table(cluster, $0)?.eligible == ["region-1", "region-2"] }
            }, "a stale unhealthy flag outlived the node's --instance-health")
    }

    @Test func theMinoritySideOfAPartitionKeepsItsView() throws {
        let cluster = try start(holdDown: 1)
        #expect(eventually(timeout: .seconds(10)) { (0..<3).allSatisfy { table(cluster, $0)?.eligible.count == 3 } })
        cluster.setChaos(0, block: [cluster.nodes[2].bind])
        cluster.setChaos(1, block: [cluster.nodes[2].bind])
        cluster.setChaos(2, block: [cluster.nodes[0].bind, cluster.nodes[1].bind])
        // The majority fails region-2 over; the isolated node sees both others dead, yet keeps
        // routing as before rather than taking every contact itself.
        #expect(
            eventually(timeout: .seconds(15), interval: .milliseconds(50)) {
                [0, 1].allSatisfy { table(cluster, $0)?.eligible == ["region-0", "region-1"] }
            })
        #expect(
            eventually(timeout: .seconds(15), interval: .milliseconds(50)) {
                guard let v = cluster.view(from: 2) else { return false }
                return v["n1"]?.status == "dead" && v["n2"]?.status == "dead"
            })
        let isolated = try call("GET", cluster.nodes[2].api, "/v1/split")
        #expect(object(isolated)["minority"]?.boolValue == true)
        #expect(table(cluster, 2)?.eligible.count == 3)
        for i in 0..<3 { cluster.setChaos(i) }
        #expect(
            eventually(timeout: .seconds(20), interval: .milliseconds(50)) {
                (0..<3).allSatisfy { table(cluster, $0)?.eligible.count == 3 }
            }, "the partition did not heal")
    }

    /// The region-to-region matrix node `i` routes with (`GET /v1/regions/rtt`), in ms.
    func rttMatrix(_ cluster: LocalCluster, _ i: Int) -> [String: [String: Double]]? {
        guard let r = try? call("GET", cluster.nodes[i].api, "/v1/regions/rtt"), r.status == 200 else { return nil }
        guard let rows = object(r)["rttMs"]?.objectValue else { return nil }
        var matrix: [String: [String: Double]] = [:]
        for (a, row) in rows {
            guard let cells = row.objectValue else { return nil }
            matrix[a] = Dictionary(cells.compactMap { b, ms in ms.doubleValue.map { (b, $0) } }, uniquingKeysWith: { x, _ in x })
        }
        return matrix
    }

    @Test func publishedRTTsShowTheRegionOfADelayedNode() throws {
        let cluster = try start()
        func rtt(_ i: Int, _ a: String, _ b: String) -> Double? { rttMatrix(cluster, i)?[a]?[b] }
        let pairs = [("region-0", "region-1"), ("region-0", "region-2"), ("region-1", "region-2")]
        // Every node publishes after its warm-up; every node builds the same matrix from the items.
        let published = eventually(timeout: .seconds(30), interval: .milliseconds(200)) {
            (0..<3).allSatisfy { i in pairs.allSatisfy { rtt(i, $0.0, $0.1) != nil } }
        }
        #expect(published, "no RTT matrix: \((0..<3).map { rttMatrix(cluster, $0).map { "\($0)" } ?? "-" })")
        let before = try #require(rtt(0, "region-0", "region-1"))
        #expect(before < 8, "loopback RTT estimate \(before) ms")

        let recomputes = (0..<3).map { cluster.metric("tandem_route_table_recomputes_total", node: $0) }
        let fingerprints = (0..<3).map { table(cluster, $0)?.fingerprint }

        // n2 (region-1) now sends everything 15 ms late: its probes and acks take 15 ms longer.
        #expect(cluster.setChaos(1, delayMs: 15))
        let grew = eventually(timeout: .seconds(45), interval: .milliseconds(200)) {
            (0..<3).allSatisfy { i in
                (rtt(i, "region-0", "region-1") ?? 0) >= before + 8 && (rtt(i, "region-1", "region-2") ?? 0) >= before + 8
            }
        }
        #expect(grew, "matrix did not show region-1 farther: \((0..<3).map { rttMatrix(cluster, $0).map { "\($0)" } ?? "-" })")
        // The pair without the delayed node is still near, and all nodes hold the same matrix.
        #expect((rtt(0, "region-0", "region-2") ?? 99) < 8)
        // With no edge lacking a region, a new matrix is not a route change: same tables.
        #expect((0..<3).map { cluster.metric("tandem_route_table_recomputes_total", node: $0) } == recomputes)
        #expect((0..<3).map { table(cluster, $0)?.fingerprint } == fingerprints)
        #expect(
            eventually(timeout: .seconds(5)) {
                rttMatrix(cluster, 0) == rttMatrix(cluster, 1) && rttMatrix(cluster, 1) == rttMatrix(cluster, 2)
            })
        #expect(try call("POST", cluster.nodes[0].api, "/v1/regions/rtt").status == 405)

        // An edge configured without region-1 gets an estimate through the matrix.
        #expect(try call("PUT", cluster.nodes[0].api, "/v1/split", #"{"weights":{"region-0":50,"region-1":50}}"#).status == 200)
        #expect(try call("PUT", cluster.nodes[0].api, "/v1/edges", #"{"edges":{"nyc":{"region-0":20}}}"#).status == 200)
        let estimated = eventually(timeout: .seconds(10), interval: .milliseconds(100)) {
            guard let r = try? call("GET", cluster.nodes[2].api, "/v1/edges"),
                let ms = object(r)["edges"]?["nyc"]?["estimatedMs"]?["region-1"]?.doubleValue
            else { return false }
            return ms >= 20 + before + 8
        }
        #expect(estimated, "nyc has no estimate for region-1")
        cluster.setChaos(1)
    }
}

/// The `_routing` items: typed attributes written and read back, and the JSON text older nodes
/// wrote (still on disk, still written by them) read as the same config.
@Suite struct RoutingConfigTests {
    let split = SplitConfig(weights: ["region-0": 4000, "region-1": 6000], overrides: ["nyc": "region-0"])
    let edges = EdgeConfig(edges: ["nyc": .init(rttMicros: ["region-0": 8000, "region-1": 70_500], volume: 2)])

    /// The config every test expects, from whichever form.
    var expected: RoutingConfig {
        var c = RoutingConfig()
        c.split = split
        c.split.drained = ["region-1"]
        c.edges = edges
        c.capacity = ["region-0": 12]
        c.healthy = ["n2": false]
        c.rtt = ["n1": RTTReport(region: "region-0", rttMs: ["region-1": 40])]
        return c
    }

    @Test func typedItemsReadBackAsWritten() {
        let items: [(key: String, attributes: [String: AttributeValue])] = [
            ("split", RoutingConfig.item(split: split)), ("edges", RoutingConfig.item(edges: edges)),
            ("drain/region-1", RoutingConfig.item(drained: true)), ("drain/region-0", RoutingConfig.item(drained: false)),
            ("capacity/region-0", RoutingConfig.item(agents: 12)), ("health/n2", RoutingConfig.item(healthy: false)),
            ("rtt/n1", RoutingConfig.item(rtt: RTTReport(region: "region-0", rttMs: ["region-1": 40])))
        ]
        #expect(RoutingConfig(items: items) == expected)
        // Numbers, maps and bools, not text.
        #expect(
            RoutingConfig.item(split: split)["weights"]
                == .map(["region-0": .number(DecimalNumber(4000)), "region-1": .number(DecimalNumber(6000))]))
        #expect(items.allSatisfy { $0.attributes["doc"] == nil })
    }

    @Test func theOldJSONTextFormReadsAsTheSameConfig() {
        // Byte for byte what the JSON form wrote (sorted keys), in its `doc` string attribute.
        func legacy(_ text: String) -> [String: AttributeValue] { ["doc": .string(text)] }
        let items: [(key: String, attributes: [String: AttributeValue])] = [
            ("split", legacy(#"{"overrides":{"nyc":"region-0"},"weights":{"region-0":4000,"region-1":6000}}"#)),
            ("edges", legacy(#"{"edges":{"nyc":{"rttMicros":{"region-0":8000,"region-1":70500},"volume":2}}}"#)),
            ("drain/region-1", legacy(#"{"drained":true}"#)), ("drain/region-0", legacy(#"{"drained":false}"#)),
            ("capacity/region-0", legacy(#"{"agents":12}"#)), ("health/n2", legacy(#"{"healthy":false}"#)),
            ("rtt/n1", legacy(#"{"region":"region-0","rttMs":{"region-1":40}}"#))
        ]
        #expect(RoutingConfig(items: items) == expected)
    }

    @Test func fieldsOfTheWrongTypeAreIgnored() {
        let items: [(key: String, attributes: [String: AttributeValue])] = [
            // One fractional weight drops the whole map, as the JSON form's `[String: Int]` did.
            ("split", ["doc": .string(#"{"weights":{"region-0":40.5,"region-1":60},"overrides":{"nyc":"region-0"}}"#)]),
            ("capacity/region-0", ["agents": .string("12")]),
            ("health/n2", ["doc": .string("not json")]),
            (
                "edges",
                [
                    "edges": .map([
                        "nyc": .map(["rttMicros": .map(["region-0": .number(DecimalNumber(8000))])]),
                        "lon": .map(["volume": .number(DecimalNumber(1))])
                    ])
                ]
            )
        ]
        let c = RoutingConfig(items: items)
        #expect(c.split.weights.isEmpty && c.split.overrides == ["nyc": "region-0"])
        #expect(c.capacity.isEmpty && c.healthy.isEmpty)
        // An edge without RTTs is skipped; a missing volume is 1.
        #expect(c.edges == EdgeConfig(edges: ["nyc": .init(rttMicros: ["region-0": 8000], volume: 1)]))
    }
}
