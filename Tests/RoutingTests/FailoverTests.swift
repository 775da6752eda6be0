import Membership
import Routing
import Simulation
import TandemCore
import Testing

extension Instant {
    static func s(_ seconds: Double) -> Instant { Instant(nanoseconds: UInt64(seconds * 1e9)) }
}

@Suite struct HealthTrackerTests {
    let a = NodeHealth(name: "a1", region: "a", serving: true)
    let b = NodeHealth(name: "b1", region: "b", serving: true)

    @Test func newNodesAreInAtOnceReturningOnesAfterHoldDown() {
        var t = HealthTracker(holdDown: .seconds(5), now: .s(0))
        t.observe([a, b], now: .s(0))
        #expect(t.view(now: .s(0)).nodes == ["a": ["a1"], "b": ["b1"]])
        var down = b
        down.serving = false
        t.observe([a, down], now: .s(1))
        #expect(t.view(now: .s(1)).nodes == ["a": ["a1"], "b": []])
        t.observe([a, b], now: .s(2))
        #expect(t.view(now: .s(6.9)).nodes["b"] == [])
        #expect(t.nextChange(after: .s(2)) == .s(7))
        #expect(t.view(now: .s(7)).nodes["b"] == ["b1"])
        #expect(t.nextChange(after: .s(7)) == nil)
    }

    @Test func flappingRestartsTheHoldDown() {
        var t = HealthTracker(holdDown: .seconds(5), now: .s(0))
        t.observe([a, b], now: .s(0))
        var down = b
        down.serving = false
        for second in stride(from: 1.0, to: 20, by: 2) {
            t.observe([a, down], now: .s(second))
            t.observe([a, b], now: .s(second + 1))
            #expect(t.view(now: .s(second + 1.5)).nodes["b"] == [])
        }
        #expect(t.view(now: .s(25)).nodes["b"] == ["b1"])
    }

    /// Live again after a death in the view: held down from the return membership announces,
    /// not from the observation — a stale death applied here alone, with no return announced,
    /// holds nothing (the member does not hold itself down either).
    @Test func aDeathInTheViewIsHeldDownFromTheAnnouncedReturn() {
        var t = HealthTracker(holdDown: .seconds(5), now: .s(0))
        t.observe([a, b], now: .s(0))
        let dead = NodeHealth(name: "b1", region: "b", serving: false, dead: true)
        t.observe([a, dead], now: .s(1))
        #expect(t.view(now: .s(1)).nodes["b"] == [])
        t.observe([a, b], now: .s(2))
        #expect(t.view(now: .s(2)).nodes["b"] == ["b1"], "no return announced: not held down")
        t.observe([a, dead], now: .s(3))
        t.returned("b1", at: .s(3.5))
        t.observe([a, b], now: .s(4))
        #expect(t.view(now: .s(8.4)).nodes["b"] == [])
        #expect(t.view(now: .s(8.5)).nodes["b"] == ["b1"])
    }

    @Test func forgottenNodesAreHeldDownWhenTheyReturn() {
        var t = HealthTracker(holdDown: .seconds(5), now: .s(0))
        t.observe([a, b], now: .s(0))
        t.observe([a], now: .s(1))  // reaped from the membership view
        #expect(t.view(now: .s(1)).nodes["b"] == [])
        t.observe([a, b], now: .s(10))
        #expect(t.view(now: .s(12)).nodes["b"] == [])
        #expect(t.view(now: .s(15)).nodes["b"] == ["b1"])
    }

    @Test func aRestartedNodeHoldsItselfDown() {
        var t = HealthTracker(holdDown: .seconds(5), selfName: "b1", selfRegion: "b", selfReturning: true, now: .s(100))
        t.observe([a, b], now: .s(100))
        #expect(t.view(now: .s(101)).nodes == ["a": ["a1"], "b": []])
        #expect(t.view(now: .s(105)).nodes == ["a": ["a1"], "b": ["b1"]])
    }

    /// Back from a stall or a partition (it refuted its own death), or rejoined later than it
    /// started: the node holds itself down from then, as the others do from when they see it.
    @Test func aNodeHoldsItselfDownFromWhenItReturns() {
        var t = HealthTracker(holdDown: .seconds(5), selfName: "b1", selfRegion: "b", now: .s(0))
        t.observe([a, b], now: .s(0))
        #expect(t.view(now: .s(1)).nodes == ["a": ["a1"], "b": ["b1"]])
        t.holdSelfDown(since: .s(50))
        t.observe([a, b], now: .s(50))
        #expect(t.view(now: .s(54)).nodes == ["a": ["a1"], "b": []])
        #expect(t.view(now: .s(55)).nodes == ["a": ["a1"], "b": ["b1"]])
        #expect(t.nextChange(after: .s(51)) == .s(55))
    }
}

/// The route table driven by the membership simulator's views: every simulated node keeps a
/// `RouteView` fed from its own membership core, as the node shell does, and builds its table
/// from it.
@Suite struct SimulatedFailoverTests {
    static let weights = ["region-0": 4000, "region-1": 3500, "region-2": 2500]

    final class Router {
        var views: [RouteView?]
        var returns: [Instant?]
        let holdDown: Duration
        init(count: Int, holdDown: Duration) {
            views = Array(repeating: nil, count: count)
            returns = Array(repeating: nil, count: count)
            self.holdDown = holdDown
        }

        static func status(_ s: MemberStatus) -> RouteMember.Status {
            switch s {
            case .alive: .alive
            case .suspect: .suspect
            case .dead: .dead
            case .left: .left
            }
        }

        /// Feeds node `i`'s membership view to its route view and returns its table (nil when down).
        func table(_ sim: MembershipSimulation, _ i: Int) -> RouteTable? {
            guard let core = sim.nodes[i].instance else {
                views[i] = nil
                return nil
            }
            if views[i] == nil {
                views[i] = RouteView(
                    holdDown: holdDown, selfName: core.myself.name, selfRegion: core.myself.meta.region,
                    selfReturning: core.myself.incarnation > 1, now: sim.now)
            }
            // As the node's Routes does: hold itself down from when the others see it return.
            if let at = core.returnedAt, at != returns[i] {
                returns[i] = at
                views[i]!.selfReturned(at: at)
            }
            var members = [
                RouteMember(
                    name: core.myself.name, region: core.myself.meta.region, status: .alive,
                    witness: core.myself.meta.role == .witness)
            ]
            for m in core.members.values {
                members.append(
                    RouteMember(
                        name: m.name, region: m.state.meta.region, status: Router.status(m.status),
                        witness: m.state.meta.role == .witness, returnedAt: m.returnedAt))
            }
            views[i]!.observe(members, instanceHealthy: [:], now: sim.now)
            let health = views[i]!.health(now: sim.now)
            return RouteTable(RouteInputs(split: SplitConfig(weights: SimulatedFailoverTests.weights), health: health))
        }

        func answers(_ sim: MembershipSimulation, _ i: Int, _ ids: [String]) -> [String]? {
            guard let t = table(sim, i) else { return nil }
            return ids.map { (try? t.decide(contact: $0).region) ?? "-" }
        }
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func killedRegionLeavesEveryTableAndReturnsAfterHoldDown(seed: UInt64) {
        let settings = MembershipSettings.fast
        let sim = MembershipSimulation(seed: seed, settings: settings)
        sim.addNodes(3)
        let holdDown = Duration.seconds(3)
        let router = Router(count: 3, holdDown: holdDown)
        let ids = contacts(600)
        #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(10)) != nil, "seed \(seed): no convergence")
        sim.run(for: .seconds(1))
        // Determinism: every node gives every contact the same region (10,000 contacts, once).
        if seed == 1 {
            let many = contacts(10_000)
            let all = (0..<3).map { router.answers(sim, $0, many)! }
            #expect(all[0] == all[1] && all[1] == all[2], "nodes disagree on 10,000 contacts")
        }
        let first = (0..<3).map { router.answers(sim, $0, ids)! }
        #expect(first[0] == first[1] && first[1] == first[2], "seed \(seed): nodes disagree before the failure")
        #expect(Set(first[0]) == Set(SimulatedFailoverTests.weights.keys))

        sim.crash(1)
        router.views[1] = nil  // its memory dies with it
        // Converged: both survivors route nothing to region-1, and agree.
        let converged = sim.run(
            until: { s in
                let a = router.answers(s, 0, ids)!, b = router.answers(s, 2, ids)!
                return a == b && !a.contains("region-1")
            }, limit: .seconds(10))
        #expect(converged != nil, "seed \(seed): survivors still route to the dead region")
        // Zero collateral: only region-1's contacts moved.
        let after = router.answers(sim, 0, ids)!
        for (x, y) in zip(first[0], after) where x != "region-1" { #expect(x == y) }
        // And it stays out (no flapping) while it is down.
        sim.run(for: .seconds(5))
        #expect(!router.answers(sim, 0, ids)!.contains("region-1"))
        #expect(!router.answers(sim, 2, ids)!.contains("region-1"))

        sim.restart(1)
        let restartedAt = sim.now
        // Until the hold-down ends nobody routes to it, then everybody does, identically.
        var sawEarly = false
        let back = sim.run(
            until: { s in
                let answers = (0..<3).map { router.answers(s, $0, ids)! }
                if s.now - restartedAt < holdDown, let who = answers.firstIndex(where: { $0.contains("region-1") }) {
                    if !sawEarly { print("early: node \(who) at \(s.now - restartedAt)") }
                    sawEarly = true
                }
                return answers.allSatisfy { $0 == first[0] }
            }, limit: .seconds(20))
        #expect(!sawEarly, "seed \(seed): region-1 took contacts before its hold-down ended")
        #expect(back != nil, "seed \(seed): region-1 never came back")
        if let back { #expect(back >= holdDown) }
    }

    /// A node stalled long enough to be declared dead (SIGSTOP, a swapping host) wakes and
    /// refutes: the others hold it down from when they see it alive again, and it holds itself
    /// down from its refutation, so every table agrees through the hold-down (before, it took its
    /// own contacts at once while the others sent them elsewhere for the whole hold-down).
    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func aNodeBackFromAStallHoldsItselfDownAsTheOthersDo(seed: UInt64) {
        let sim = MembershipSimulation(seed: seed, settings: .fast)
        sim.addNodes(3)
        let holdDown = Duration.seconds(3)
        let router = Router(count: 3, holdDown: holdDown)
        let ids = contacts(300)
        #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(10)) != nil, "seed \(seed): no convergence")
        sim.run(for: .seconds(1))
        let first = router.answers(sim, 0, ids)!
        let x = 1 + Int(seed % 2)
        sim.stall(x, for: .seconds(3))
        let dead = sim.run(
            until: { s in (0..<3).filter { $0 != x }.allSatisfy { s.status(of: x, seenBy: $0) == .dead } }, limit: .seconds(3))
        #expect(dead != nil, "seed \(seed): the stalled node was not declared dead")
        // From the wake until every table is back to the first: how long the tables differed.
        #expect(sim.run(until: { !$0.isStalled(x) }, limit: .seconds(5)) != nil)
        var disagreeing = Duration.zero
        var last = sim.now
        let back = sim.run(
            until: { s in
                let answers = (0..<3).map { router.answers(s, $0, ids)! }
                if !(answers[0] == answers[1] && answers[1] == answers[2]) { disagreeing = disagreeing + (s.now - last) }
                last = s.now
                return answers.allSatisfy { $0 == first }
            }, limit: .seconds(20))
        #expect(back != nil, "seed \(seed): the stalled node's region never came back")
        // Only while the news of its return spreads (milliseconds), not for the hold-down.
        #expect(disagreeing < .milliseconds(500), "seed \(seed): tables disagreed for \(disagreeing) of the \(holdDown) hold-down")
    }

    /// A partition cuts {b, x} from the other three. The majority declares both dead; b, in the
    /// minority, freezes its view and never sees x dead. After the heal, x refutes its death: the
    /// majority holds x down because it saw x dead, and b must too, from about the same moment —
    /// before, b served x at once and the tables disagreed for the whole hold-down (chaos check
    /// seed 973408 after `partition r2`: 9.1 s).
    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func aMinorityThatNeverSawADeathStillHoldsTheReturnedNodeDown(seed: UInt64) {
        let sim = MembershipSimulation(seed: seed, settings: .fast)
        sim.addNodes(5)
        let holdDown = Duration.seconds(3)
        let router = Router(count: 5, holdDown: holdDown)
        let ids = contacts(100)
        #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(10)) != nil, "seed \(seed): no convergence")
        sim.run(for: .seconds(1))
        let (b, x) = (1, 2)
        sim.partition([[0, 3, 4], [b, x]])
        let dead = sim.run(
            until: { s in [0, 3, 4].allSatisfy { s.status(of: b, seenBy: $0) == .dead && s.status(of: x, seenBy: $0) == .dead } },
            limit: .seconds(10))
        #expect(dead != nil, "seed \(seed): the minority was not declared dead")
        for i in 0..<5 { _ = router.answers(sim, i, ids) }
        #expect(sim.status(of: x, seenBy: b) != .dead, "seed \(seed): b saw x dead (the scenario needs it not to)")
        sim.heal()
        // From the heal until every node answers alike and x's region is back everywhere.
        var disagreeing = Duration.zero
        for _ in 0..<250 {
            sim.run(for: .milliseconds(40))
            let answers = (0..<5).map { router.answers(sim, $0, ids)! }
            if Set(answers.map { $0.joined(separator: ",") }).count > 1 { disagreeing = disagreeing + .milliseconds(40) }
        }
        #expect(disagreeing < .seconds(1), "seed \(seed): tables disagreed for \(disagreeing) after the heal (hold-down \(holdDown))")
    }

    /// 100 ms more delay on one node's links for 6 s (the chaos checker's `delay 100ms r3`), over
    /// and over, with the fast profile's 40 ms probe timeouts: nodes flap, and whatever each
    /// saw, every table must agree again well within the checker's 5 s bound.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func aDelayedNodesFlapsAreHeldDownAlikeEverywhere(seed: UInt64) {
        let sim = MembershipSimulation(seed: seed, settings: .fast)
        sim.addNodes(3)
        let router = Router(count: 3, holdDown: .seconds(2))
        let ids = contacts(60)
        #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(10)) != nil, "seed \(seed): no convergence")
        sim.run(for: .seconds(1))
        var longest = Duration.zero
        var since: Instant?
        var slow = sim.network
        slow.latency = slow.latency + .milliseconds(100)
        for round in 0..<6 {
            let x = Int((seed + UInt64(round)) % 3)
            for other in 0..<3 where other != x {
                sim.setLink(from: x, to: other, slow)
                sim.setLink(from: other, to: x, slow)
            }
            for step in 0..<400 {
                if step == 150 {
                    for other in 0..<3 where other != x { sim.setLink(from: x, to: other, nil); sim.setLink(from: other, to: x, nil) }
                }
                sim.run(for: .milliseconds(40))
                let answers = (0..<3).compactMap { router.answers(sim, $0, ids) }
                if answers.count == 3 && Set(answers.map { $0.joined(separator: ",") }).count > 1 {
                    if since == nil { since = sim.now }
                    longest = max(longest, sim.now - since!)
                } else {
                    since = nil
                }
            }
        }
        #expect(longest < .milliseconds(2500), "seed \(seed): tables disagreed for \(longest) in a row")
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func theIsolatedNodeKeepsItsViewAndTheMajorityFailsItOver(seed: UInt64) {
        let sim = MembershipSimulation(seed: seed, settings: .fast)
        sim.addNodes(3)
        let router = Router(count: 3, holdDown: .seconds(3))
        let ids = contacts(300)
        #expect(sim.run(until: { $0.viewsAgree() }, limit: .seconds(10)) != nil, "seed \(seed): no convergence")
        sim.run(for: .seconds(1))
        let before = router.answers(sim, 2, ids)!
        sim.partition([[0, 1], [2]])
        var isolatedChanged = false
        let split = sim.run(
            until: { s in
                if router.answers(s, 2, ids)! != before { isolatedChanged = true }
                let majority = [0, 1].allSatisfy { !router.answers(s, $0, ids)!.contains("region-2") }
                return majority && s.status(of: 0, seenBy: 2) == .dead && s.status(of: 1, seenBy: 2) == .dead
            }, limit: .seconds(20))
        #expect(split != nil, "seed \(seed): the partition was not detected")
        #expect(!isolatedChanged, "seed \(seed): the isolated node failed the majority over")
        sim.heal()
        let healed = sim.run(until: { s in (0..<3).allSatisfy { router.answers(s, $0, ids)! == before } }, limit: .seconds(30))
        #expect(healed != nil, "seed \(seed): routing did not recover after the heal")
    }
}
