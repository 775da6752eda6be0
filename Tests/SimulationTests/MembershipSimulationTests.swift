import Membership
import Simulation
import TandemCore
import Testing

/// Seeded multi-node scenarios. Each failure message names the seed; rerun one seed with
/// `TANDEM_SEED=<n> swift test --filter SimulationTests`.
@Suite struct MembershipSimulationTests {
    static func seeds(_ count: Int) -> [UInt64] {
        if let s = Environment.seed { return [s] }
        return (1...UInt64(count)).map { $0 &* 0x9E37_79B9 }
    }

    @Test func lossyNetworkDeclaresNoLiveNodeDead() {
        for seed in scenarioSeeds(2, salt: 50) {
            var network = SimNetworkConfig()
            network.lossRate = 0.10
            let sim = MembershipSimulation(seed: seed, settings: .lan, network: network)
            sim.addNodes(50)
            sim.run(for: .seconds(600))
            let falseDeaths = sim.deathsOfRunningNodes
            #expect(
                falseDeaths.isEmpty,
                "seed \(seed): \(falseDeaths.count) live nodes declared dead, first: \(String(describing: falseDeaths.first))")
            // A suspicion may be in flight at any instant; once the loss stops, views must agree.
            sim.network.lossRate = 0
            let settled = sim.run(until: { $0.viewsAgree() }, limit: .seconds(60))
            #expect(settled != nil, "seed \(seed): views still disagree 60 s after the loss stopped")
        }
    }
}

enum Environment {
    static var seed: UInt64? {
        guard let raw = getenv("TANDEM_SEED") else { return nil }
        return UInt64(String(cString: raw))
    }
}

#if canImport(Glibc)
    import Glibc
#endif
