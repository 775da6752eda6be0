import Membership
import Simulation
import TandemCore
import Testing

/// A two-way partition: each side declares the other dead, nobody declares its own side dead,
/// and after `heal()` the whole cluster is alive and agreeing again within a bounded
/// (simulated) time, with no operator action (dead members are retried).
@Suite struct PartitionTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var profile: String
        var settings: MembershipSettings
        var nodes: Int
        /// The minority side; the rest form the other side.
        var minority: [Int]
        /// How long the majority may take to declare the minority dead.
        var split: Duration
        /// How long the minority may take to declare the majority dead. A lone node takes much
        /// longer: Lifeguard makes a node whose probes all fail stretch its own timeouts (up to 8×).
        var minoritySplit: Duration
        /// Bound on convergence after healing, in simulated time.
        var heal: Duration
        var testDescription: String { "\(profile) \(nodes) nodes, \(minority.count) vs \(nodes - minority.count)" }
    }

    static let cases = [
        Case(
            profile: "lan", settings: .lan, nodes: 10, minority: [5, 6, 7, 8, 9], split: .seconds(60), minoritySplit: .seconds(60),
            heal: .seconds(3)),
        Case(
            profile: "lan", settings: .lan, nodes: 10, minority: [7], split: .seconds(60), minoritySplit: .seconds(180), heal: .seconds(3)),
        Case(
            profile: "lan", settings: .lan, nodes: 10, minority: [0], split: .seconds(60), minoritySplit: .seconds(180), heal: .seconds(3)),
        Case(
            profile: "fast", settings: .fast, nodes: 10, minority: [5, 6, 7, 8, 9], split: .seconds(6), minoritySplit: .seconds(6),
            heal: .seconds(1)),
        Case(
            profile: "fast", settings: .fast, nodes: 12, minority: [0, 1, 2], split: .seconds(6), minoritySplit: .seconds(18),
            heal: .seconds(1)),
        Case(
            profile: "fast", settings: .fast, nodes: 10, minority: [3], split: .seconds(6), minoritySplit: .seconds(18), heal: .seconds(1)),
        Case(
            // Each side finds the other along the ring, a neighbour at a time, its timeouts
            // stretched by Lifeguard (no helper across answers): slower than fast's full sweep.
            profile: "region", settings: .region, nodes: 10, minority: [5, 6, 7, 8, 9], split: .seconds(30),
            minoritySplit: .seconds(30), heal: .seconds(1)),
        Case(
            profile: "region", settings: .region, nodes: 10, minority: [3], split: .seconds(10), minoritySplit: .seconds(60),
            heal: .seconds(1))
    ]

    @Test(arguments: cases)
    func partitionThenHeal(c: Case) {
        var healTimes: [Duration] = []
        for seed in scenarioSeeds(5, salt: 10) {
            let sim = startCluster(seed: seed, settings: c.settings, nodes: c.nodes)

            let a = Array(0..<c.nodes).filter { !c.minority.contains($0) }
            let b = c.minority
            let side = Dictionary(uniqueKeysWithValues: a.map { (sim.nodes[$0].name, 0) } + b.map { (sim.nodes[$0].name, 1) })
            let mark = sim.observations.count
            sim.partition([a, b])
            let split = sim.run(
                until: { s in a.allSatisfy { x in b.allSatisfy { y in s.status(of: y, seenBy: x) == .dead } } },
                limit: c.split)
            #expect(split != nil, "seed \(seed) \(c): the majority did not declare the minority dead within \(c.split)")
            let split2 = sim.run(
                until: { s in a.allSatisfy { x in b.allSatisfy { y in s.status(of: x, seenBy: y) == .dead } } },
                limit: c.minoritySplit)
            #expect(split2 != nil, "seed \(seed) \(c): the minority did not declare the majority dead within \(c.minoritySplit)")
            let sameSide = sim.observations(since: mark).filter { $0.status == .dead && side[$0.observer] == side[$0.subject] }
            #expect(sameSide.isEmpty, "seed \(seed) \(c): \(sameSide.count) deaths within one side, first: \(describe(sameSide.first))")
            sim.run(for: c.settings.probeInterval * 20)  // stay split a while longer

            sim.heal()
            let mark1 = sim.observations.count
            let healed = sim.run(until: { $0.fullyAgree() }, limit: c.heal * 4)
            #expect(healed != nil, "seed \(seed) \(c): views never agreed within \(c.heal * 4) of healing")
            if let healed {
                healTimes.append(healed)
                #expect(healed <= c.heal, "seed \(seed) \(c): healing took \(healed), bound \(c.heal)")
            }
            // Healed for good: nobody dies, and once every view agrees on every member and
            // incarnation, nothing changes any more.
            let mark2 = sim.observations.count
            sim.run(for: c.settings.probeInterval * 30)
            let deaths = sim.observations(since: mark1).filter { $0.status == .dead }
            #expect(deaths.isEmpty, "seed \(seed) \(c): \(deaths.count) deaths after healing, first: \(describe(deaths.first))")
            let flaps = sim.observations(since: mark2)
            #expect(flaps.isEmpty, "seed \(seed) \(c): \(flaps.count) status changes after agreement, first: \(describe(flaps.first))")
            #expect(sim.fullyAgree(), "seed \(seed) \(c): views diverged after healing")
        }
        if Environment.verbose { print("heal times \(c): \(healTimes.map { format3($0.milliseconds) + " ms" })") }
    }

    @Test func healedPartitionUnderLossConverges() {
        for seed in scenarioSeeds(3, salt: 11) {
            var network = SimNetworkConfig()
            network.lossRate = 0.05
            network.jitter = .milliseconds(2)
            let sim = startCluster(seed: seed, settings: .lan, nodes: 12, network: network)
            sim.partition([Array(0..<6), Array(6..<12)])
            sim.run(for: .seconds(60))
            sim.heal()
            let healed = sim.run(until: { $0.viewsAgree() }, limit: .seconds(30))
            #expect(healed != nil, "seed \(seed): no convergence within 30 s of healing under 5% loss")
            if let healed { #expect(healed <= .seconds(10), "seed \(seed): healing took \(healed)") }
        }
    }

    /// A partition shorter than the suspicion timeout. SWIM does not promise that nobody is
    /// declared dead (a suspicion raised inside the partition may expire before the suspect hears
    /// of it: its gossip was spent inside the partition, and only a probe either way tells it), but
    /// the cluster must heal by itself: everyone alive and agreeing, a node declared dead back at a
    /// higher incarnation, and no running node left dead.
    @Test func briefPartitionHealsByItself() {
        var falseDeaths = 0
        for seed in scenarioSeeds(6, salt: 12) {
            let sim = startCluster(seed: seed, settings: .lan, nodes: 10)
            let mark = sim.observations.count
            sim.partition([Array(0..<5), Array(5..<10)])
            sim.run(for: .seconds(2))
            sim.heal()
            let healed = sim.run(until: { $0.fullyAgree() }, limit: .seconds(30))
            #expect(healed != nil, "seed \(seed): views do not agree 30 s after a 2 s partition")
            let deaths = sim.observations(since: mark).filter { $0.status == .dead }
            falseDeaths += deaths.count
            for d in deaths {
                let i = sim.index(of: d.subject)
                let now = sim.incarnation(of: i, seenBy: sim.index(of: d.observer)) ?? 0
                #expect(now > d.incarnation, "seed \(seed): \(describe(d)), and still at incarnation \(now)")
            }
        }
        if Environment.verbose { print("brief partition: \(falseDeaths) deaths declared in total") }
    }
}

extension Environment {
    static var verbose: Bool { getenv("TANDEM_VERBOSE") != nil }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
