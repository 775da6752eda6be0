import Membership
import Simulation
import TandemCore
import Testing

/// Where the default profile's detection time goes, in simulated time: kill → the first
/// suspicion anywhere → the first death anywhere → dead on every survivor, over many kills at
/// each delay and loss. Figures, not assertions (run with TANDEM_VERBOSE=1; the namespace
/// benchmark, `scripts/bench-membership-ns`, measures the real thing).
@Suite(.enabled(if: Environment.verbose)) struct DetectionBudgetFigures {
    @Test(arguments: [20, 40, 80])
    func budget(oneWayMs: Int) {
        for loss in [0.0, 0.10] {
            var suspected: [Double] = [], firstDead: [Double] = [], allDead: [Double] = []
            var falseDeaths = 0
            for seed in scenarioSeeds(40, salt: UInt64(700 + oneWayMs)) {
                let n = 5
                let sim = startCluster(
                    seed: seed, settings: .region, nodes: n,
                    network: RegionDetectorTests.network(oneWayMs: oneWayMs, loss: loss), settle: .seconds(5))
                // Kill at a random point of the probe cycle.
                sim.run(for: .milliseconds(Int64(seed % 400)))
                let victim = 1 + Int((seed >> 8) % UInt64(n - 1))
                let name = sim.nodes[victim].name
                let mark = sim.observations.count
                let t0 = sim.now
                sim.crash(victim)
                guard sim.run(until: { $0.allSee(victim, as: .dead) }, limit: .seconds(10)) != nil else { continue }
                let seen = sim.observations(since: mark)
                falseDeaths += seen.filter { $0.status == .dead && $0.subject != name }.count
                func first(_ s: MemberStatus) -> Double? {
                    seen.first { $0.subject == name && $0.status == s }.map { ($0.at - t0).seconds }
                }
                if let s = first(.suspect) { suspected.append(s) }
                if let d = first(.dead) { firstDead.append(d) }
                allDead.append((sim.now - t0).seconds)
            }
            func q(_ xs: [Double]) -> String {
                let s = xs.sorted()
                guard !s.isEmpty else { return "-" }
                let p = { (f: Double) in s[min(s.count - 1, Int(Double(s.count - 1) * f))] }
                let ms = { (x: Double) in "\(Int((x * 1000).rounded()))" }
                return "p50 \(ms(p(0.5))) p90 \(ms(p(0.9))) max \(ms(s.last!)) ms"
            }
            print(
                "region \(oneWayMs) ms, loss \(Int(loss * 100))%, 5 nodes, \(allDead.count) kills: first suspect \(q(suspected)); first dead \(q(firstDead)); dead everywhere \(q(allDead)); other deaths \(falseDeaths)"
            )
        }
    }
}
