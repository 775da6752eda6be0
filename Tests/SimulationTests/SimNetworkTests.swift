import Simulation
import Testing

/// The shared network model: partitions, one-way cuts, per-link behaviour, and heal.
@Suite struct SimNetworkTests {
    @Test func partitionsCutsAndLinks() {
        var net = SimNetwork(config: SimNetworkConfig(lossRate: 0.1))
        net.partition([[0, 1], [2]])
        #expect(net.canReach(0, 1) && net.canReach(1, 0))
        #expect(!net.canReach(0, 2) && !net.canReach(2, 1))
        #expect(net.canReach(3, 0), "an unlisted node is in group 0")
        net.heal()
        net.cut(from: 0, to: 1)
        #expect(!net.canReach(0, 1) && net.canReach(1, 0), "a cut is one way")
        net.links[SimNetwork.Link(from: 1, to: 2)] = SimNetworkConfig(latency: .milliseconds(50), lossRate: 0.5)
        #expect(net.config(from: 1, to: 2).lossRate == 0.5 && net.config(from: 1, to: 2).latency == .milliseconds(50))
        #expect(net.config(from: 2, to: 1).lossRate == 0.1, "other links keep the network's behaviour")
        net.heal()
        #expect(net.canReach(0, 1) && net.config(from: 1, to: 2).lossRate == 0.5, "heal ends cuts, not link behaviour")
    }
}
