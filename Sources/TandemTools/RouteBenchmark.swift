import Foundation
import Routing
import TandemCore
import TandemTestKit
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Figures for routing, each against its target: the core in-process, HTTP route queries on a
/// real node, and route convergence after `kill -9` with a prober (real processes on loopback).
public struct RouteBenchmark {
    public struct Options: Sendable {
        public var seconds = 15
        public var connections = 16
        public var runs = 10
        public var lossSeconds = 300
        public var only: String?

        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    public func run() throws {
        let parts = Set((options.only ?? "decision,recompute,http,converge,loss").split(separator: ",").map(String.init))
        print("routing benchmark — machine: \(ProcessInfo.processInfo.activeProcessorCount) cores\n")
        let inputs = RouteBenchmark.inputs(regions: 5, edges: 50)
        if parts.contains("decision") { decision(inputs) }
        if parts.contains("recompute") { recompute(inputs) }
        if parts.contains("http") { try http() }
        if parts.contains("converge") { try converge() }
        if parts.contains("loss") { try loss() }
    }

    /// 5 regions with uneven weights, 50 edges with RTTs from a seeded generator, 2 nodes each.
    static func inputs(regions: Int, edges: Int) -> RouteInputs {
        var rng = SeededGenerator(seed: 42)
        let names = (0..<regions).map { "region-\($0)" }
        var weights: [String: Int] = [:]
        for (i, r) in names.enumerated() { weights[r] = 1000 + 500 * i }
        var config = EdgeConfig()
        for e in 0..<edges {
            var rtt: [String: Int64] = [:]
            for r in names { rtt[r] = Int64(2_000 + rng.next() % 200_000) }
            config.edges["edge-\(e)"] = EdgeConfig.Edge(rttMicros: rtt, volume: Int64(1 + rng.next() % 5))
        }
        var nodes: [String: [String]] = [:]
        for r in names { nodes[r] = ["\(r)-a", "\(r)-b"] }
        return RouteInputs(split: SplitConfig(weights: weights), health: HealthView(nodes: nodes), edges: config)
    }

    func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

    func line(_ what: String, _ figure: String, target: String, met: Bool, errors: Int = 0, samples: Int = 1, need: Int = 1) {
        print("• \(what): \(figure)")
        print("    target \(target): \(verdict(met, errors: errors, samples: samples, need: need))\n")
        fflush(nil)
    }

    // MARK: in-process

    func decision(_ inputs: RouteInputs) {
        let table = RouteTable(inputs)
        let contacts = (0..<100_000).map { "C-\($0 &* 7919)" }
        let edges = (0..<50).map { "edge-\($0)" }
        var sink = 0
        var failed = 0
        var perDecisionNs: [Double] = []
        let clock = ContinuousClock()
        for batch in 0..<400 {
            let t0 = clock.now
            for k in 0..<1_000 {
                let i = batch * 1_000 + k
                if let d = try? table.decide(contact: contacts[i % contacts.count], edge: edges[i % edges.count]) {
                    sink &+= d.region.utf8.count + d.fallbacks.count
                } else {
                    failed += 1  // a decision that failed is timed but did not do the work
                }
            }
            perDecisionNs.append(Double((clock.now - t0).nanoseconds) / 1_000)
        }
        let s = perDecisionNs.sorted()
        line(
            "decision in-process (5 regions, 50 edges, region + node + 4 fallbacks)",
            String(
                format: "median %.0f ns, p99 %.0f ns per decision (400 batches of 1,000), %d decisions failed", median(s),
                s[Int(Double(s.count) * 0.99)], failed) + (sink == 0 ? "!" : ""),
            target: "median < 1 µs", met: median(s) < 1_000, errors: failed)
    }

    func recompute(_ inputs: RouteInputs) {
        var samples: [Double] = []
        let clock = ContinuousClock()
        var varied = inputs
        for i in 0..<200 {
            varied.split.weights["region-0"] = 1000 + i  // a new input each time
            let t0 = clock.now
            let table = RouteTable(varied)
            samples.append((clock.now - t0).seconds * 1e6)
            precondition(!table.regions.isEmpty)
        }
        let s = samples.sorted()
        // The largest configuration the API accepts, for the record (no target).
        let largest = RouteBenchmark.inputs(regions: 5, edges: EdgeConfig.maxEdges)
        let t0 = clock.now
        _ = RouteTable(largest)
        let largestMs = (clock.now - t0).seconds * 1e3
        line(
            "table recompute (5 regions, 50 edges: apportion, min-cost-flow plan, seeds)",
            String(
                format: "median %.0f µs, max %.0f µs (n=%d); at the limit of %d edges: %.1f ms", median(s), s.last!, s.count,
                EdgeConfig.maxEdges, largestMs),
            target: "< 1 ms", met: median(s) < 1_000)
    }

    // MARK: HTTP

    func start(_ size: Int, chaos: Bool = false, holdDown: Double = 2) throws -> LocalCluster {
        let cluster = try LocalCluster(size: size, profile: "fast", chaos: chaos)
        for i in 0..<size { try cluster.start(i, extraArgs: ["--hold-down", "\(holdDown)"]) }
        let names = cluster.nodes.map(\.name)
        guard
            eventually(
                timeout: .seconds(20), { (0..<size).allSatisfy { i in names.allSatisfy { cluster.view(from: i)?[$0]?.status == "alive" } } }
            )
        else {
            throw ToolError("cluster did not form")
        }
        return cluster
    }

    func eligible(_ cluster: LocalCluster, _ i: Int) -> Set<String>? {
        guard let r = try? HTTPClient.request("GET", cluster.nodes[i].api, "/v1/split", timeout: .seconds(1)), r.status == 200,
            let regions = r.json()?["regions"]?.objectValue
        else { return nil }
        return Set(regions.filter { $0.1["eligible"]?.boolValue == true }.map(\.0))
    }

    func http() throws {
        let cluster = try start(3)
        let api = cluster.nodes[0].api
        var edges: [String: JSON] = [:]
        var rng = SeededGenerator(seed: 9)
        for e in 0..<50 {
            edges["edge-\(e)"] = [
                "rttMs": [
                    "region-0": JSON(1 + Int(rng.next() % 150)), "region-1": JSON(1 + Int(rng.next() % 150)),
                    "region-2": JSON(1 + Int(rng.next() % 150))
                ]
            ]
        }
        let body: JSON = ["edges": JSON(edges)]
        guard try HTTPClient.request("PUT", api, "/v1/edges", body: Array(body.serialized.utf8)).status == 200,
            try HTTPClient.request("PUT", api, "/v1/split", body: Array(#"{"weights":{"region-0":40,"region-1":35,"region-2":25}}"#.utf8))
                .status == 200,
            eventually(timeout: .seconds(10), { self.eligible(cluster, 0)?.count == 3 })
        else {
            throw ToolError("could not configure routing")
        }
        // The same client against a trivial static handler on the same HTTP server code, in this
        // process on its own thread (so it too competes with the generator for the 2 cores).
        let port = LocalCluster.freePortBase(count: 1)
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread {
            let loop = EventLoop()
            guard let server = try? HTTPServer(loop: loop, bind: try SocketAddress("127.0.0.1:\(port)")) else { return }
            let body = Array(#"{"ok":true}"#.utf8) + [0x0A]
            server.handler = { _, respond in respond(HTTPResponse(status: 200, body: body)) }
            ready.signal()
            loop.run()
            _ = server
        }
        thread.start()
        ready.wait()
        // Alternate route and static phases (3 each) so that load from anything else on the
        // machine hits both alike; report the median phase of each.
        var i = 0
        var routes: [LoadGenerator.Result] = [], statics: [LoadGenerator.Result] = []
        let phase = Duration.seconds(Int64(max(1, options.seconds / 3)))
        for _ in 0..<3 {
            routes.append(
                try LoadGenerator(target: api) {
                    i &+= 1
                    return ("GET", "/v1/route?contact=C-\(i)&edge=edge-\(i % 50)", nil)
                }.run(connections: options.connections, duration: phase))
            statics.append(
                try LoadGenerator(target: "127.0.0.1:\(port)") { ("GET", "/static", nil) }
                    .run(connections: options.connections, duration: phase))
        }
        let r = routes.sorted { $0.perSecond < $1.perSecond }[1]
        let st = statics.sorted { $0.perSecond < $1.perSecond }[1]
        line(
            "HTTP route queries, one node, \(options.connections) keep-alive clients (3 regions, 50 edges), median of 3 alternating phases",
            String(
                format:
                    "%.0f/s, p50 %.2f ms, p99 %.2f ms, errors %d (phases: %@/s) — static handler, same client: %.0f/s, errors %d (phases: %@/s); route = %.0f%% of static",
                r.perSecond, r.percentile(0.5), r.percentile(0.99), routes.map(\.errors).reduce(0, +),
                routes.map { String(format: "%.0f", $0.perSecond) }.joined(separator: ", "), st.perSecond,
                statics.map(\.errors).reduce(0, +),
                statics.map { String(format: "%.0f", $0.perSecond) }.joined(separator: ", "), 100 * r.perSecond / max(st.perSecond, 1)),
            target: "≥ 30,000/s", met: r.perSecond >= 30_000, errors: routes.map(\.errors).reduce(0, +), samples: r.requests)
    }

    // MARK: convergence

    func converge() throws {
        var times: [Double] = []
        var unobserved = 0, probeErrors = 0, probesSent = 0
        var misrouted = 0, answered = 0
        for run in 0..<options.runs {
            let cluster = try start(3)
            defer { for i in 0..<3 { cluster.kill9(i) } }
            guard eventually(timeout: .seconds(10), { (0..<3).allSatisfy { self.eligible(cluster, $0)?.count == 3 } }) else {
                throw ToolError("tables did not settle")
            }
            let victim = 1 + run % 2
            let dead = "region-\(victim)"
            let survivors = (0..<3).filter { $0 != victim }
            // Contacts that the victim's region takes now: each probe of one of these answers the
            // dead region until the prober's node has failed over.
            let victimContacts = (0..<2_000).map { "P-\(run)-\($0)" }.filter { c in
                (try? HTTPClient.request("GET", cluster.nodes[0].api, "/v1/route?contact=\(c)"))?.json()?["region"]?.stringValue == dead
            }.prefix(100)
            guard !victimContacts.isEmpty else { throw ToolError("no contact routed to \(dead)") }
            let clock = ContinuousClock()
            cluster.kill9(victim)
            let killedAt = clock.now
            var lastMisroute: ContinuousClock.Instant?
            var cleanRounds = 0
            var round = 0
            var randomProbes: [(at: ContinuousClock.Instant, misrouted: Bool)] = []
            // Prober: every survivor at 100 Hz, alternating a victim contact and a random one. A
            // round is clean only when every survivor answered and none named the dead region: a
            // probe that failed saw nothing, so it cannot count as routed around.
            while cleanRounds < 100 && clock.now - killedAt < .seconds(30) {
                let due = killedAt + .milliseconds(10 * round)
                if clock.now < due { usleep(UInt32((due - clock.now).nanoseconds / 1000)) }
                round += 1
                var clean = true
                for s in survivors {
                    let c =
                        round % 2 == 0 ? victimContacts[victimContacts.startIndex + round / 2 % victimContacts.count] : "R-\(run)-\(round)"
                    probesSent += 1
                    guard let r = try? HTTPClient.request("GET", cluster.nodes[s].api, "/v1/route?contact=\(c)", timeout: .seconds(1)),
                        r.status == 200,
                        let region = r.json()?["region"]?.stringValue
                    else {
                        probeErrors += 1
                        clean = false
                        continue
                    }
                    if region == dead {
                        clean = false
                        lastMisroute = clock.now
                    }
                    if round % 2 == 1 { randomProbes.append((clock.now, region == dead)) }
                }
                cleanRounds = clean ? cleanRounds + 1 : 0
            }
            guard cleanRounds >= 100 else { throw ToolError("run \(run): survivors still route to \(dead), or do not answer, after 30 s") }
            // The failover is the last answer naming the dead region. None at all means the
            // prober never saw the survivors before they failed over: not a failover of 0 s.
            guard let lastMisroute else {
                unobserved += 1
                continue
            }
            times.append((lastMisroute - killedAt).seconds)
            // During convergence: from the kill to the last misrouted answer.
            let during = randomProbes.filter { $0.at <= lastMisroute }
            misrouted += during.filter(\.misrouted).count
            answered += during.count
        }
        let s = times.sorted()
        let figure = s.isEmpty ? "no failover observed" : String(format: "p50 %.3f s, max %.3f s over %d runs", median(s), s.last!, s.count)
        line(
            "route convergence after kill -9 of 1 of 3 nodes, fast profile, prober at 100 Hz on each survivor",
            figure
                + String(
                    format:
                        "; %d of %d runs unobserved (no answer named the dead region); %d of %d probes failed; misrouted during convergence: %d of %d random-contact probes (%.1f%%)",
                    unobserved, options.runs, probeErrors, probesSent, misrouted, answered,
                    100 * Double(misrouted) / Double(max(answered, 1))),
            target: "< 1 s", met: (s.last ?? .infinity) < 1, errors: probeErrors + unobserved, samples: s.count, need: options.runs)
    }

    // MARK: loss

    func loss() throws {
        let cluster = try start(3, chaos: true)
        guard eventually(timeout: .seconds(10), { (0..<3).allSatisfy { self.eligible(cluster, $0)?.count == 3 } }) else {
            throw ToolError("tables did not settle")
        }
        guard let before = metricEverywhere(cluster, "tandem_route_table_recomputes_total", nodes: 0..<3) else {
            throw ToolError("a node's /metrics did not answer")
        }
        for i in 0..<3 { cluster.setChaos(i, dropRate: 0.05) }
        let clock = ContinuousClock()
        let start = clock.now
        // An unanswered poll saw nothing: it is counted as such, never as "3 eligible".
        var smallestView: Int?
        var polls = 0, unanswered = 0
        while clock.now - start < .seconds(Int64(options.lossSeconds)) {
            for i in 0..<3 {
                polls += 1
                if let n = eligible(cluster, i)?.count { smallestView = min(smallestView ?? n, n) } else { unanswered += 1 }
            }
            usleep(100_000)
        }
        for i in 0..<3 { cluster.setChaos(i) }
        let after = metricEverywhere(cluster, "tandem_route_table_recomputes_total", nodes: 0..<3)
        let changes = after.map { Int(zip($0, before).map { $0 - $1 }.reduce(0, +)) }
        line(
            "spurious route changes, 3 nodes, \(options.lossSeconds) s with 5 % gossip loss",
            "\(changes.map(String.init) ?? "unknown (a node's /metrics did not answer)") table recomputes (no input changed); "
                + "fewest eligible regions seen by a 10 Hz poller: \(smallestView.map(String.init) ?? "none") of 3 (\(unanswered) of \(polls) polls unanswered)",
            target: "0", met: changes == 0, errors: unanswered + (changes == nil ? 1 : 0), samples: polls - unanswered)
    }
}
