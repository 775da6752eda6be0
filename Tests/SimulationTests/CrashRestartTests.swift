import Membership
import Simulation
import TandemCore
import Testing

/// A crashed node is found dead by everyone (and nobody else is); restarted on its data dir it
/// comes back with a higher incarnation.
@Suite struct CrashRestartTests {
    struct Profile: Sendable, CustomTestStringConvertible {
        var name: String
        var settings: MembershipSettings
        /// Bounds in simulated time, generous next to what the profile should achieve.
        var detect: Duration
        var rejoin: Duration
        var testDescription: String { name }
    }

    // lan: n ≤ 20, so suspicion lasts 4–6 s (min) up to 6× that without confirmations; a crash is
    // noticed within a probe lap (about n s at worst). fast is ten times quicker.
    static let profiles = [
        Profile(name: "lan", settings: .lan, detect: .seconds(60), rejoin: .seconds(3)),
        Profile(name: "fast", settings: .fast, detect: .seconds(8), rejoin: .seconds(1)),
        // region: a crash is found by its ring neighbours within an interval and a probe, then
        // confirmed; 5 s is generous (the benchmark prints the real figures).
        Profile(name: "region", settings: .region, detect: .seconds(5), rejoin: .seconds(1))
    ]

    @Test(arguments: profiles)
    func crashedNodeIsDeclaredDeadEverywhereThenRejoinsWithHigherIncarnation(profile: Profile) {
        var timings: [String] = []
        for seed in scenarioSeeds(6, salt: 1) {
            let n = 10 + Int(seed % 11)
            let victim = 1 + Int((seed >> 8) % UInt64(n - 1))
            timings.append(crashAndRestart(seed: seed, profile: profile, nodes: n, victim: victim))
        }
        if Environment.verbose { print("\(profile.name): \(timings)") }
    }

    /// Node 0 is the one every other node joined through: on restart it has no seed to join, and
    /// comes back only because the others retry their dead members.
    @Test(arguments: profiles)
    func crashedSeedNodeRejoinsWithoutASeed(profile: Profile) {
        var timings: [String] = []
        for seed in scenarioSeeds(3, salt: 4) {
            timings.append(crashAndRestart(seed: seed, profile: profile, nodes: 10 + Int(seed % 6), victim: 0))
        }
        if Environment.verbose { print("\(profile.name), node 0: \(timings)") }
    }

    /// Returns a line of timings for verbose runs.
    func crashAndRestart(seed: UInt64, profile: Profile, nodes n: Int, victim: Int) -> String {
        let sim = startCluster(seed: seed, settings: profile.settings, nodes: n)

        let name = sim.nodes[victim].name
        let incarnationAtCrash = sim.nodes[victim].instance!.myself.incarnation
        let mark = sim.observations.count
        sim.crash(victim)
        let detected = sim.run(until: { $0.allSee(victim, as: .dead) }, limit: profile.detect)
        let missing = sim.upNodes.filter { $0 != victim && sim.status(of: victim, seenBy: $0) != .dead }
        #expect(
            detected != nil,
            "seed \(seed) \(profile.name): \(name) (of \(n)) not dead everywhere after \(profile.detect); still not dead at \(missing)")
        let wrongDeaths = sim.observations(since: mark).filter { $0.status == .dead && $0.subject != name }
        #expect(
            wrongDeaths.isEmpty,
            "seed \(seed) \(profile.name): \(wrongDeaths.count) other nodes declared dead, first: \(describe(wrongDeaths.first))")
        #expect(
            sim.deathsOfRunningNodes.isEmpty,
            "seed \(seed) \(profile.name): running node declared dead: \(describe(sim.deathsOfRunningNodes.first))")

        sim.restart(victim)
        let back = sim.run(until: { $0.fullyAgree() }, limit: profile.rejoin)
        #expect(back != nil, "seed \(seed) \(profile.name): \(name) not back everywhere after \(profile.rejoin)")
        let newIncarnation = sim.nodes[victim].instance!.myself.incarnation
        #expect(newIncarnation > incarnationAtCrash, "seed \(seed) \(profile.name): \(name) restarted without a higher incarnation")
        for o in sim.upNodes where o != victim {
            let seen = sim.incarnation(of: victim, seenBy: o) ?? 0
            #expect(
                seen > incarnationAtCrash && sim.status(of: victim, seenBy: o) == .alive,
                "seed \(seed) \(profile.name): \(sim.nodes[o].name) sees \(name) \(String(describing: sim.status(of: victim, seenBy: o))) at incarnation \(seen), crashed at \(incarnationAtCrash)"
            )
        }

        // And it stays that way: no flapping, no new suspicions or deaths.
        let mark2 = sim.observations.count
        sim.run(for: profile.detect)
        #expect(sim.fullyAgree(), "seed \(seed) \(profile.name): views diverged after the rejoin")
        let later = sim.observations(since: mark2)
        #expect(
            later.isEmpty, "seed \(seed) \(profile.name): \(later.count) status changes after the rejoin, first: \(describe(later.first))")
        return
            "n=\(n) victim \(name): dead everywhere after \(detected.map { format3($0.seconds) } ?? "-") s, back after \(back.map { format3($0.milliseconds) } ?? "-") ms"
    }

    @Test func severalCrashesAtOnceAreAllDetected() {
        for seed in scenarioSeeds(4, salt: 2) {
            let sim = startCluster(seed: seed, settings: .lan, nodes: 16)
            // A third of the cluster (not node 0) goes down together.
            let victims = Set((1..<16).filter { ($0 + Int(seed % 7)) % 3 == 0 })
            for v in victims { sim.crash(v) }
            let t = sim.run(until: { s in victims.allSatisfy { s.allSee($0, as: .dead) } }, limit: .seconds(90))
            #expect(t != nil, "seed \(seed): \(victims.sorted()) not all dead everywhere within 90 s")
            #expect(sim.deathsOfRunningNodes.isEmpty, "seed \(seed): \(describe(sim.deathsOfRunningNodes.first))")
            #expect(sim.viewsAgree(stopped: victims), "seed \(seed): views disagree")
            for v in victims.sorted() { sim.restart(v) }
            #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(10)) != nil, "seed \(seed): restarted nodes not back within 10 s")
        }
    }

    /// A node restarted while its only seed (node 0) is still down cannot join by itself; the
    /// others' dead-member retries find it, and node 0 comes back the same way later.
    @Test func restartWhileTheSeedIsDownRejoinsThroughDeadRetries() {
        for seed in scenarioSeeds(4, salt: 5) {
            let sim = startCluster(seed: seed, settings: .lan, nodes: 12)
            let other = 1 + Int(seed % 11)
            sim.crash(0)
            sim.crash(other)
            let dead = sim.run(until: { $0.allSee(0, as: .dead) && $0.allSee(other, as: .dead) }, limit: .seconds(60))
            #expect(dead != nil, "seed \(seed): n0 and n\(other) not dead everywhere within 60 s")
            sim.restart(other)
            let back = sim.run(until: { $0.viewsAgree(stopped: [0]) }, limit: .seconds(3))
            #expect(back != nil, "seed \(seed): n\(other) not back within 3 s while its seed n0 is down")
            #expect(sim.nodes[other].instance?.joined == false, "seed \(seed): the join itself cannot have succeeded")
            sim.restart(0)
            let all = sim.run(until: { $0.fullyAgree() }, limit: .seconds(3))
            #expect(all != nil, "seed \(seed): n0 not back within 3 s")
            #expect(sim.deathsOfRunningNodes.isEmpty, "seed \(seed): \(describe(sim.deathsOfRunningNodes.first))")
        }
    }

    @Test func crashDetectionUnderLoss() {
        for seed in scenarioSeeds(3, salt: 3) {
            var network = SimNetworkConfig()
            network.lossRate = 0.05
            network.duplicateRate = 0.01
            network.jitter = .milliseconds(3)
            let sim = startCluster(seed: seed, settings: .lan, nodes: 15, network: network, settle: .seconds(10))
            let victim = 1 + Int(seed % 14)
            sim.crash(victim)
            let t = sim.run(until: { $0.allSee(victim, as: .dead) }, limit: .seconds(90))
            #expect(t != nil, "seed \(seed): n\(victim) not dead everywhere within 90 s under 5% loss")
            #expect(sim.deathsOfRunningNodes.isEmpty, "seed \(seed): \(describe(sim.deathsOfRunningNodes.first))")
            sim.restart(victim)
            #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(15)) != nil, "seed \(seed): n\(victim) not back within 15 s")
        }
    }
}
