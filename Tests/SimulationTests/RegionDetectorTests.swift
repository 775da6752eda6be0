import Membership
import Simulation
import TandemCore
import Testing

/// The `region` profile (the default): the watched ring, RTT-derived timeouts and confirmed
/// suspicions, over many seeds with inter-region delay, loss and stalls. Bounds here are
/// generous correctness bounds in simulated time; the figures are the benchmark's to print.
@Suite struct RegionDetectorTests {
    /// One-way delays between regions the default is meant for, with a little jitter.
    static func network(oneWayMs: Int, loss: Double = 0) -> SimNetworkConfig {
        SimNetworkConfig(latency: .milliseconds(oneWayMs), jitter: .milliseconds(3), lossRate: loss, unit: .milliseconds(1))
    }

    @Test(arguments: [20, 40, 80])
    func crashIsFoundByEveryoneAndNobodyElseDies(oneWayMs: Int) {
        var times: [Double] = []
        for seed in scenarioSeeds(8, salt: UInt64(300 + oneWayMs)) {
            let n = 3 + Int(seed % 13)  // 3…15 nodes
            let loss = seed % 2 == 0 ? 0.10 : 0
            let sim = startCluster(
                seed: seed, settings: .region, nodes: n, network: Self.network(oneWayMs: oneWayMs, loss: loss),
                settle: .seconds(5))
            let victim = Int((seed >> 8) % UInt64(n))
            let mark = sim.observations.count
            sim.crash(victim)
            let took = sim.run(until: { $0.allSee(victim, as: .dead) }, limit: .seconds(5))
            let missing = sim.upNodes.filter { sim.status(of: victim, seenBy: $0) != .dead }
            #expect(
                took != nil,
                "seed \(seed), \(n) nodes, \(oneWayMs) ms, loss \(loss): n\(victim) not dead everywhere after 5 s; not at \(missing)")
            if let took { times.append(took.seconds) }
            let wrong = sim.observations(since: mark).filter { $0.status == .dead && $0.subject != sim.nodes[victim].name }
            #expect(wrong.isEmpty, "seed \(seed): \(wrong.count) other nodes declared dead, first: \(describe(wrong.first))")
        }
        if Environment.verbose { print("region, \(oneWayMs) ms: detection (simulated s) \(times.sorted())") }
    }

    /// Ten minutes at 10 % loss on every link (each datagram, each way), 80 ms one way: not one
    /// live member is declared dead.
    @Test(arguments: [5, 15])
    func tenPercentLossDeclaresNoLiveNodeDead(nodes: Int) {
        for seed in scenarioSeeds(3, salt: UInt64(400 + nodes)) {
            let sim = startCluster(seed: seed, settings: .region, nodes: nodes, network: Self.network(oneWayMs: 80))
            sim.network.lossRate = 0.10
            let mark = sim.observations.count
            sim.run(for: .seconds(600))
            let deaths = sim.observations(since: mark).filter { $0.status == .dead }
            #expect(deaths.isEmpty, "seed \(seed), \(nodes) nodes: \(deaths.count) false deaths, first: \(describe(deaths.first))")
            let suspicions = sim.observations(since: mark).filter { $0.status == .suspect }.count
            if Environment.verbose { print("region, \(nodes) nodes, 10 % loss, 600 s: \(suspicions) suspect observations") }
            sim.network.lossRate = 0
            #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(30)) != nil, "seed \(seed): views disagree after the loss")
        }
    }

    /// One node stalls 5 s every 15 s (SIGSTOP-like: its inbox waits, its timers fire late):
    /// it may be declared dead, but nobody else may be — least of all by the stalled node when it
    /// wakes to a pile of stale packets and overdue timers.
    @Test(arguments: [20, 80])
    func aStallingNodeAccusesNobody(oneWayMs: Int) {
        for seed in scenarioSeeds(4, salt: UInt64(500 + oneWayMs)) {
            let n = 5 + Int(seed % 4)
            let loss = seed % 2 == 0 ? 0.10 : 0
            let sim = startCluster(seed: seed, settings: .region, nodes: n, network: Self.network(oneWayMs: oneWayMs, loss: loss))
            let stalled = Int(seed % UInt64(n))
            let name = sim.nodes[stalled].name
            let mark = sim.observations.count
            for _ in 0..<8 {
                sim.stall(stalled, for: .seconds(5))
                sim.run(for: .seconds(15))
            }
            let wrong = sim.observations(since: mark).filter { $0.status == .dead && $0.subject != name }
            #expect(
                wrong.isEmpty,
                "seed \(seed), \(n) nodes, \(oneWayMs) ms, loss \(loss): \(wrong.count) healthy nodes declared dead, first: \(describe(wrong.first))"
            )
            sim.network.lossRate = 0
            #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(30)) != nil, "seed \(seed): views disagree after the stalls")
        }
    }

    /// The watched ring bounds the work: at rest each node sends about watchers / interval
    /// pings-or-acks a second whatever the cluster's size (the budget is 10 packets a
    /// second per node for all traffic; membership must leave room for the rest).
    @Test(arguments: [5, 15])
    func quietClusterSendsAFewDatagramsPerNode(nodes: Int) {
        let sim = startCluster(seed: 7, settings: .region, nodes: nodes, network: Self.network(oneWayMs: 40), settle: .seconds(35))
        let (d0, b0) = (sim.datagramsSent, sim.bytesSent)
        sim.run(for: .seconds(60))
        let perNode = Double(sim.datagramsSent - d0) / 60 / Double(nodes)
        let bytesPerNode = Double(sim.bytesSent - b0) / 60 / Double(nodes)
        if Environment.verbose { print("region, \(nodes) nodes at rest: \(perNode) datagrams/s, \(bytesPerNode) B/s per node") }
        // Two neighbours, one ping and one ack per pair per 400 ms: 5/s per node.
        #expect(perNode <= 6, "\(nodes) nodes: \(perNode) datagrams/s per node at rest")
        #expect(perNode >= 3, "\(nodes) nodes: \(perNode) datagrams/s per node: is anyone watched at all?")
    }

    /// A partition of one node heals back to all alive within a few round trips: the others
    /// retry their dead member every 200 ms and it refutes.
    @Test func partitionedNodeIsBackSoonAfterTheHeal() {
        for seed in scenarioSeeds(4, salt: 600) {
            let n = 5
            let sim = startCluster(seed: seed, settings: .region, nodes: n, network: Self.network(oneWayMs: 40))
            let x = 1 + Int(seed % 4)
            sim.partition([(0..<n).filter { $0 != x }, [x]])
            let split = sim.run(
                until: { s in (0..<n).filter { $0 != x }.allSatisfy { s.status(of: x, seenBy: $0) == .dead } }, limit: .seconds(10))
            #expect(split != nil, "seed \(seed): n\(x) never declared dead by the others")
            sim.heal()
            let back = sim.run(until: { $0.viewsAgree() }, limit: .seconds(2))
            #expect(back != nil, "seed \(seed): not all alive 2 s after the heal")
            if Environment.verbose, let back { print("region heal: \(back.seconds) s") }
        }
    }
}
