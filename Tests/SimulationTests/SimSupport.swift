import Membership
import Simulation
import TandemCore
import Testing

/// Seeds for a scenario: `count` of them, different per scenario (`salt`), or just the one in
/// `TANDEM_SEED` when set, so a failure replays with
/// `TANDEM_SEED=<n> swift test --filter SimulationTests`. `TANDEM_SEEDS=<count>` runs a wider
/// sweep (every scenario with that many seeds).
func scenarioSeeds(_ count: Int, salt: UInt64) -> [UInt64] {
    if let s = Environment.seed { return [s] }
    let n = Environment.seedCount ?? count
    return (1...UInt64(n)).map { (($0 &+ salt &* 1000) &* 0x9E37_79B9_7F4A_7C15) >> 16 }
}

/// How long a freshly started cluster may take to agree: gossip usually does it in well under a
/// second, but a node that missed an update (each is retransmitted a bounded number of times) is
/// only guaranteed to catch up at its next push-pull, at most 1.5 intervals after start.
func convergeLimit(_ settings: MembershipSettings) -> Duration { settings.pushPullInterval * 2 }

/// A cluster of `count` nodes started together, run until every view agrees (within
/// `convergeLimit`), then for `settle` more so the start-up gossip has drained.
func startCluster(
    seed: UInt64, settings: MembershipSettings, nodes count: Int,
    network: SimNetworkConfig = SimNetworkConfig(), settle: Duration? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> MembershipSimulation {
    let sim = MembershipSimulation(seed: seed, settings: settings, network: network)
    sim.addNodes(count)
    let limit = convergeLimit(settings)
    let t = sim.run(until: { $0.fullyAgree() }, limit: limit)
    #expect(t != nil, "seed \(seed): \(count) nodes did not converge within \(limit)", sourceLocation: sourceLocation)
    sim.run(for: settle ?? settings.probeInterval * 5)
    return sim
}

extension Environment {
    static var seedCount: Int? {
        guard let raw = getenv("TANDEM_SEEDS") else { return nil }
        return Int(String(cString: raw)).map { max(1, $0) }
    }
}

extension MembershipSimulation {
    var upNodes: [Int] { nodes.indices.filter { nodes[$0].isUp } }

    /// Every running node other than `subject` sees `subject` with `status`.
    func allSee(_ subject: Int, as status: MemberStatus, observers: [Int]? = nil) -> Bool {
        (observers ?? upNodes).allSatisfy { $0 == subject || self.status(of: subject, seenBy: $0) == status }
    }

    /// `viewsAgree()`, and every running node also knows every running node at the incarnation
    /// that node itself holds (so no stale rumour about an older incarnation is still news).
    func fullyAgree() -> Bool {
        guard viewsAgree() else { return false }
        let up = upNodes
        for o in up {
            for s in up where s != o {
                if incarnation(of: s, seenBy: o) != nodes[s].instance!.myself.incarnation { return false }
            }
        }
        return true
    }

    /// The incarnation of `subject` as `observer` knows it.
    func incarnation(of subject: Int, seenBy observer: Int) -> UInt64? {
        guard let instance = nodes[observer].instance else { return nil }
        if subject == observer { return instance.myself.incarnation }
        return instance.members[nodes[subject].name]?.incarnation
    }

    /// Observations recorded since index `from`.
    func observations(since from: Int) -> ArraySlice<Observation> { observations[from...] }

    func index(of name: String) -> Int { nodes.firstIndex { $0.name == name }! }

    /// A compact, comparable rendering of everything observed (for determinism checks).
    var observationTrace: [String] {
        observations.map { "\($0.at.nanoseconds) \($0.observer) \($0.subject) \($0.status) \($0.incarnation) \($0.subjectWasUp)" }
    }
}

func describe(_ o: MembershipSimulation.Observation?) -> String {
    guard let o else { return "none" }
    return "\(o.observer) saw \(o.subject) \(o.status) (inc \(o.incarnation)) at \(o.at)"
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
