import Foundation
import Membership
import Simulation
import TandemCore
import TandemTestKit
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Figures for the membership issue, each against its target. Real processes on loopback; the
/// 50-node gossip load comes from the simulator.
public struct MembershipBenchmark {
    public struct Options: Sendable {
        public var fastRuns = 15
        public var lanRuns = 5
        public var healRuns = 5
        public var lossSeconds = 300
        public var stallSeconds = 120
        public var quick = false
        public var only: String?

        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    public func run() throws {
        let scale = options.quick ? 0.2 : 1.0
        func n(_ x: Int) -> Int { max(1, Int(Double(x) * scale)) }
        print("membership benchmark — 5 real nodes on 127.0.0.1 unless noted\(options.quick ? " (quick)" : "")")
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores\n")

        let parts = Set((options.only ?? "detect-fast,detect-lan,heal,join,loss,stall,load").split(separator: ",").map(String.init))
        if parts.contains("detect-fast") { try detection(profile: "fast", runs: n(options.fastRuns), target: 1.0) }
        if parts.contains("detect-lan") { try detection(profile: "lan", runs: n(options.lanRuns), target: 6.0) }
        if parts.contains("heal") {
            try partitionHeal(profile: "lan", runs: n(options.healRuns))
            try partitionHeal(profile: "fast", runs: n(options.healRuns))
        }
        if parts.contains("join") {
            try join(profile: "lan", runs: n(5))
            try join(profile: "fast", runs: n(5))
        }
        if parts.contains("loss") { try loss(seconds: n(options.lossSeconds)) }
        if parts.contains("stall") { try stall(seconds: max(30, n(options.stallSeconds))) }
        if parts.contains("load") { simulatedLoad() }
    }

    // MARK: kill -9 → every survivor lists it dead

    func detection(profile: String, runs: Int, target: Double) throws {
        let cluster = try LocalCluster(size: 5, profile: profile)
        try cluster.startAll()
        guard waitAllAlive(cluster, timeout: .seconds(30)) else { throw ToolError("cluster did not form") }
        var samples: [Double] = []
        for r in 0..<runs {
            // Measure from a steady cluster: every node at full local health.
            _ = eventually(timeout: .seconds(30), interval: .milliseconds(50)) {
                (0..<5).allSatisfy { cluster.metric("tandem_membership_local_health", node: $0) == 0 }
            }
            let victim = 1 + r % 4
            let name = cluster.nodes[victim].name
            let survivors = (0..<5).filter { $0 != victim }
            let clock = ContinuousClock()
            cluster.kill9(victim)
            let t0 = clock.now
            let ok = eventually(timeout: .seconds(60), interval: .milliseconds(2)) {
                survivors.allSatisfy { cluster.view(from: $0)?[name]?.status == "dead" }
            }
            guard ok else { throw ToolError("\(profile): \(name) not declared dead") }
            samples.append((clock.now - t0).seconds)
            try cluster.start(victim)
            guard waitAllAlive(cluster, timeout: .seconds(30)) else { throw ToolError("\(name) did not rejoin") }
        }
        report(
            "kill -9 → dead on every survivor, \(profile)", samples, unit: "s", target: "median < \(target) s",
            met: median(samples) < target)
    }

    // MARK: partition one node away, then heal

    func partitionHeal(profile: String, runs: Int) throws {
        let cluster = try LocalCluster(size: 5, profile: profile, chaos: true)
        try cluster.startAll()
        guard waitAllAlive(cluster, timeout: .seconds(30)) else { throw ToolError("cluster did not form") }
        var samples: [Double] = []
        for r in 0..<runs {
            let x = 1 + r % 4
            let others = (0..<5).filter { $0 != x }
            cluster.setChaos(x, block: others.map { cluster.nodes[$0].bind })
            for o in others { cluster.setChaos(o, block: [cluster.nodes[x].bind]) }
            let name = cluster.nodes[x].name
            // Split when every other node lists x dead and x has declared at least one of them dead
            // (alone, x's own timeouts stretch under Lifeguard, so declaring all four takes ~1 min).
            let split = eventually(timeout: .seconds(180)) {
                others.allSatisfy { cluster.view(from: $0)?[name]?.status == "dead" }
                    && (cluster.view(from: x).map { v in others.contains { v[cluster.nodes[$0].name]?.status == "dead" } } ?? false)
            }
            guard split else { throw ToolError("\(profile): partition never took effect") }
            let clock = ContinuousClock()
            let t0 = clock.now
            for i in 0..<5 { cluster.setChaos(i) }
            guard waitAllAlive(cluster, timeout: .seconds(60)) else { throw ToolError("\(profile): no heal") }
            samples.append((clock.now - t0).seconds)
        }
        report(
            "partition 1 node, heal → all alive everywhere, \(profile)", samples, unit: "s",
            target: "every run < 1 s", met: (samples.max() ?? 99) < 1.0)
    }

    // MARK: join

    func join(profile: String, runs: Int) throws {
        var samples: [Double] = []
        for _ in 0..<runs {
            let cluster = try LocalCluster(size: 5, profile: profile)
            let clock = ContinuousClock()
            let t0 = clock.now
            try cluster.startAll()
            guard waitAllAlive(cluster, timeout: .seconds(30)) else { throw ToolError("no join") }
            samples.append((clock.now - t0).seconds)
            for i in 0..<5 { cluster.kill9(i) }
        }
        report(
            "5 nodes started together → all see 5 alive (incl. process start), \(profile)", samples, unit: "s",
            target: "< 0.25 s", met: median(samples) < 0.25)
    }

    // MARK: false deaths under loss, and under a stalling node

    func loss(seconds: Int) throws {
        let cluster = try LocalCluster(size: 5, profile: "lan", chaos: true)
        cluster.logLevel = "info"
        try cluster.startAll()
        guard waitAllAlive(cluster, timeout: .seconds(30)) else { throw ToolError("cluster did not form") }
        // Each datagram passes the sender's and the receiver's dropper: 1 − (1 − d)² = 10%.
        let d = 1 - (0.9).squareRoot()
        for i in 0..<5 { cluster.setChaos(i, dropRate: d) }
        let before = metricEverywhere(cluster, "tandem_gossip_bytes_out_total", nodes: 0..<5)
        let clock = ContinuousClock()
        let t0 = clock.now
        _ = eventually(timeout: .seconds(Int64(seconds))) { false }
        let elapsed = (clock.now - t0).seconds
        let after = metricEverywhere(cluster, "tandem_gossip_bytes_out_total", nodes: 0..<5)
        let falseDead = (0..<5).reduce(0) { $0 + deadLines(cluster.log($1)).count }
        func total(_ name: String) -> String {
            metricEverywhere(cluster, name, nodes: 0..<5).map { String(Int($0.reduce(0, +))) }
                ?? "unknown (a node's /metrics did not answer)"
        }
        // Dead lines come from the nodes' logs; a node that is not alive at the end may not
        // have logged what it saw, so the count is judged only when all are.
        let allAlive = waitAllAlive(cluster, timeout: .seconds(5))
        print(
            "• 10% packet loss on every link, lan, \(seconds) s: false dead = \(falseDead)  (target 0) "
                + verdict(falseDead == 0, errors: allAlive ? 0 : 1, samples: 1))
        print(
            "    suspicions raised \(total("tandem_membership_suspicions_total")), refuted \(total("tandem_membership_refutations_total")); all still alive: \(allAlive)"
        )
        if let before, let after {
            let rates = zip(before, after).map { ($1 - $0) / elapsed }
            print(String(format: "• gossip load, 5 nodes, lan, 10%% loss: %.0f bytes/s per node out (mean)\n", rates.reduce(0, +) / 5))
        } else {
            print("• gossip load, 5 nodes, lan, 10% loss: unknown (a node's /metrics did not answer)\n")
        }
        fflush(nil)
        for i in 0..<5 { cluster.kill9(i) }
    }

    func stall(seconds: Int) throws {
        let cluster = try LocalCluster(size: 5, profile: "lan")
        cluster.logLevel = "info"
        try cluster.startAll()
        guard waitAllAlive(cluster, timeout: .seconds(30)) else { throw ToolError("cluster did not form") }
        let stalled = 4
        let stalledName = cluster.nodes[stalled].name
        let clock = ContinuousClock()
        let end = clock.now + .seconds(Int64(seconds))
        var stalls = 0
        while clock.now + .seconds(15) <= end {
            cluster.signal(stalled, SIGSTOP)
            stalls += 1
            _ = eventually(timeout: .seconds(5)) { false }
            cluster.signal(stalled, SIGCONT)
            _ = eventually(timeout: .seconds(10)) { false }
        }
        let healthyDead = (0..<5).reduce(0) { n, i in n + deadLines(cluster.log(i)).filter { !$0.contains("member=\(stalledName) ") }.count
        }
        let stalledDead = (0..<5).reduce(0) { n, i in n + deadLines(cluster.log(i)).filter { $0.contains("member=\(stalledName) ") }.count }
        let refutations = cluster.metric("tandem_membership_refutations_total", node: stalled).map { String(Int($0)) } ?? "unknown"
        let noticed = cluster.metric("tandem_membership_stalls_total", node: stalled).map { String(Int($0)) } ?? "unknown"
        let allAlive = waitAllAlive(cluster, timeout: .seconds(10))
        print(
            "• one node stalled 5 s every 15 s (\(stalls) stalls, lan): healthy nodes marked dead = \(healthyDead)  (target 0) "
                + verdict(healthyDead == 0, errors: allAlive ? 0 : 1, samples: stalls))
        print(
            "    stalled node: declared dead \(stalledDead) times by others, refuted \(refutations) times, noticed its own stall \(noticed) times; all alive at the end: \(allAlive)\n"
        )
        fflush(nil)
        for i in 0..<5 { cluster.kill9(i) }
    }

    // MARK: gossip load at 50 nodes (simulation)

    func simulatedLoad() {
        for (count, profile) in [(5, "lan"), (50, "lan")] {
            let sim = MembershipSimulation(seed: 1, settings: .lan)
            sim.addNodes(count)
            sim.run(for: .seconds(60))
            let bytes0 = sim.bytesSent
            sim.run(for: .seconds(300))
            let perNode = Double(sim.bytesSent - bytes0) / 300 / Double(count)
            print(
                String(
                    format: "• gossip load, %d nodes, %@, simulated 5 min steady state: %.0f bytes/s per node out", count, profile, perNode)
            )
            fflush(nil)
        }
    }

    // MARK: polling a cluster made by cluster/up (scripts/bench-membership-ns)

    public enum ViewCondition: Sendable {
        case member(String, status: String)
        /// Every API lists at least `count` members, all alive.
        case allAlive(count: Int)
    }

    /// Polls every API on its own thread every 2 ms; returns the wall time (seconds since the
    /// epoch) at which the last of them first satisfied `condition`, or nil after `timeout`.
    static let pollersPerNode = 4

    public static func awaitViews(apis: [String], _ condition: ViewCondition, timeout: Double) -> Double? {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var metAt: [Double?]
            init(_ n: Int) { metAt = Array(repeating: nil, count: n) }
        }
        let results = Results(apis.count)
        let deadline = Date().addingTimeInterval(timeout)
        let group = DispatchGroup()
        // Several pollers per node, the first to see it counts: under link loss the client's
        // own requests lose packets too (a lost SYN or answer holds one poller up to its 500 ms
        // timeout), and with one poller per node that wait was added to the node's detection
        // time (max over the survivors: most kills at 10 % loss).
        for (i, api) in apis.enumerated() {
            for poller in 0..<MembershipBenchmark.pollersPerNode {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    usleep(UInt32(poller) * 700)
                    while Date() < deadline && results.lock.withLock({ results.metAt[i] == nil }) {
                        if let r = try? HTTPClient.request("GET", api, "/v1/members", timeout: .milliseconds(500)), r.status == 200,
                            let members = r.json()?["members"]?.arrayValue
                        {
                            let view = members.compactMap { m -> (String, String)? in
                                guard let n = m["name"]?.stringValue, let s = m["status"]?.stringValue else { return nil }
                                return (n, s)
                            }
                            let ok: Bool
                            switch condition {
                            case .member(let name, let status): ok = view.contains { $0.0 == name && $0.1 == status }
                            case .allAlive(let count): ok = view.count >= count && view.allSatisfy { $0.1 == "alive" }
                            }
                            if ok {
                                let now = Date().timeIntervalSince1970
                                results.lock.withLock { results.metAt[i] = min(results.metAt[i] ?? now, now) }
                                return
                            }
                        }
                        usleep(2000)
                    }
                }
            }
        }
        group.wait()
        let times = results.lock.withLock { results.metAt.compactMap { $0 } }
        return times.count == apis.count ? times.max() : nil
    }

    // MARK: helpers

    func waitAllAlive(_ cluster: LocalCluster, timeout: Duration) -> Bool {
        let names = cluster.nodes.map(\.name)
        return eventually(timeout: timeout, interval: .milliseconds(2)) {
            cluster.nodes.indices.allSatisfy { i in
                guard let v = cluster.view(from: i) else { return false }
                return names.allSatisfy { v[$0]?.status == "alive" }
            }
        }
    }

    func deadLines(_ log: String) -> [String] {
        log.split(separator: "\n").filter { $0.hasSuffix("member dead") }.map(String.init)
    }

    func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return .nan }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func report(_ what: String, _ xs: [Double], unit: String, target: String, met: Bool) {
        let s = xs.sorted()
        let p90 = s[min(s.count - 1, Int(Double(s.count) * 0.9))]
        print(
            "• \(what): "
                + String(
                    format: "median %.3f %@, p90 %.3f, min %.3f, max %.3f (n=%d)",
                    median(xs), unit, p90, s.first!, s.last!, xs.count))
        print("    target \(target): \(met ? "MET" : "MISSED")\n")
        fflush(nil)
    }
}
