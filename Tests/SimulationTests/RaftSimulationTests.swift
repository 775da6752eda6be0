import Simulation
import StreamLog
import TandemCore
import Testing

/// Seeded runs of one Raft group under faults. Each failure names its seed; replay one with
/// `TANDEM_SEED=<n>`, widen the sweep with `TANDEM_SEEDS=<count>`.
@Suite struct RaftSimulationTests {
    /// Faults for a while, then none: every invariant holds throughout, and afterwards a
    /// leader is elected and a new record commits on every node within a bounded time.
    static func chaosRun(seed: UInt64, config: RaftSimConfig, faults: Duration) -> RaftSimulation {
        let sim = RaftSimulation(seed: seed, config: config)
        sim.run(for: .milliseconds(500))
        sim.runWithFaults(for: faults)
        sim.quiesce()
        let limit = config.settings.electionTimeout * 20
        let elected = sim.run(until: { $0.hasStableLeader }, limit: limit)
        #expect(elected != nil, "seed \(seed): no stable leader within \(limit) after the faults stopped")
        var marker: String?
        let committed = sim.run(
            until: { s in
                if marker == nil || (s.acknowledged[marker!] == nil && s.leaders.isEmpty) { marker = s.proposeMarker() }
                return marker.map { s.isAcknowledgedEverywhere($0) } ?? false
            }, limit: limit)
        #expect(committed != nil, "seed \(seed): a proposal did not commit everywhere within \(limit) of quiet")
        sim.checkAcknowledgedRecords()
        #expect(sim.violations.isEmpty, "seed \(seed): \(sim.violations.joined(separator: "\n"))")
        return sim
    }

    @Test func threeNodesUnderFaultsStaySafeAndRecover() {
        var acked = 0
        var early = 0
        for seed in scenarioSeeds(200, salt: 700) {
            let sim = Self.chaosRun(seed: seed, config: RaftSimConfig(), faults: .seconds(3))
            acked += sim.acknowledged.count
            early += sim.acknowledgedBeforeLeaderCommit
        }
        #expect(acked > 0)
        #expect(early > 0, "no follower acknowledged before its leader's commit under faults")
    }

    /// Log reads that fail now and then as well: a halted core is stopped like a crashed node
    /// and restarted on the same storage; every invariant still holds, and the group recovers.
    @Test func failingLogReadsStaySafeAndRecover() {
        var config = RaftSimConfig()
        config.readFaults = true
        var stops = 0
        for seed in scenarioSeeds(40, salt: 750) {
            stops += Self.chaosRun(seed: seed, config: config, faults: .seconds(2)).readFailureStops
        }
        #expect(stops > 0, "no read fault ever halted a node")
    }

    @Test func fiveNodesUnderFaultsStaySafeAndRecover() {
        var config = RaftSimConfig()
        config.nodes = 5
        for seed in scenarioSeeds(60, salt: 800) {
            _ = Self.chaosRun(seed: seed, config: config, faults: .seconds(2))
        }
    }

    @Test func quietClusterAcknowledgesEveryProposal() {
        for seed in scenarioSeeds(5, salt: 900) {
            let sim = RaftSimulation(seed: seed)
            sim.run(for: .seconds(2))
            sim.checkAcknowledgedRecords()
            #expect(sim.violations.isEmpty, "seed \(seed): \(sim.violations)")
            // Nearly every proposal after the first election is acknowledged (a few are in flight).
            #expect(sim.acknowledged.count > sim.proposedCount * 8 / 10, "seed \(seed): \(sim.acknowledged.count) of \(sim.proposedCount)")
        }
    }

    /// Proposals forwarded through a follower are acknowledged by that follower, often before
    /// the leader has counted a majority (it and the leader hold them on disk: 2 of 3). With 5
    /// members two copies are no majority, so the follower only ever learns commits from the
    /// leader. Either way every acknowledgement names the index the record holds everywhere.
    @Test func forwardingFollowersAcknowledgeEarlyOnlyWhereTwoAreAMajority() {
        for seed in scenarioSeeds(5, salt: 950) {
            let sim = RaftSimulation(seed: seed)
            sim.run(for: .seconds(2))
            sim.checkAcknowledgedRecords()
            #expect(sim.violations.isEmpty, "seed \(seed): \(sim.violations)")
            #expect(
                sim.acknowledgedByForwarder > 10 && sim.acknowledgedBeforeLeaderCommit > sim.acknowledgedByForwarder / 4,
                "seed \(seed): \(sim.acknowledgedByForwarder) by forwarders, \(sim.acknowledgedBeforeLeaderCommit) before the leader's commit"
            )
            var five = RaftSimConfig()
            five.nodes = 5
            let wide = RaftSimulation(seed: seed, config: five)
            wide.run(for: .seconds(2))
            wide.checkAcknowledgedRecords()
            #expect(wide.violations.isEmpty, "seed \(seed): \(wide.violations)")
            #expect(
                wide.acknowledgedByForwarder > 10 && wide.acknowledgedBeforeLeaderCommit == 0,
                "seed \(seed): \(wide.acknowledgedByForwarder) by forwarders, \(wide.acknowledgedBeforeLeaderCommit) before the leader's commit"
            )
        }
    }

    @Test func sameSeedSameRun() {
        let a = Self.chaosRun(seed: 12345, config: RaftSimConfig(), faults: .seconds(1))
        let b = Self.chaosRun(seed: 12345, config: RaftSimConfig(), faults: .seconds(1))
        #expect(a.acknowledged == b.acknowledged && a.messagesSent == b.messagesSent)
    }
}
