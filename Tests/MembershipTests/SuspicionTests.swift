import Membership
import TandemCore
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Lifeguard's dynamic suspicion timeout (§IV-B), the arithmetic and how the core uses it.
@Suite struct SuspicionTimeoutTests {
    func close(_ a: Duration, _ b: Duration, within tolerance: Duration = .microseconds(1)) -> Bool {
        abs(a.nanoseconds - b.nanoseconds) <= tolerance.nanoseconds
    }

    @Test func noConfirmationsGivesMax() {
        #expect(Suspicion.timeout(confirmations: 0, wanted: 3, min: .seconds(2), max: .seconds(12)) == .seconds(12))
        #expect(Suspicion.timeout(confirmations: 0, wanted: 1, min: .seconds(2), max: .seconds(12)) == .seconds(12))
    }

    @Test func noConfirmationsWantedGivesMin() {
        // k = 0 (a cluster too small to confirm anything): the minimum at once, whatever c is.
        for c in 0...3 {
            #expect(Suspicion.timeout(confirmations: c, wanted: 0, min: .seconds(4), max: .seconds(24)) == .seconds(4))
        }
    }

    @Test func confirmationsShrinkTowardMin() {
        let (lo, hi): (Duration, Duration) = (.seconds(2), .seconds(12))
        // max − (max − min)·log(c+1)/log(k+1) with k = 3: c=1 → 12 − 10·½ = 7 s, c=2 → 12 − 10·log 3/log 4.
        #expect(close(Suspicion.timeout(confirmations: 1, wanted: 3, min: lo, max: hi), .seconds(7)))
        #expect(
            close(
                Suspicion.timeout(confirmations: 2, wanted: 3, min: lo, max: hi),
                .nanoseconds(Int64(12e9 - 10e9 * log(3) / log(4)))))
        #expect(Suspicion.timeout(confirmations: 3, wanted: 3, min: lo, max: hi) == lo)
        // Past k it stays at min (never below).
        #expect(Suspicion.timeout(confirmations: 10, wanted: 3, min: lo, max: hi) == lo)
        // Strictly shrinking from 0 to k.
        let series = (0...3).map { Suspicion.timeout(confirmations: $0, wanted: 3, min: lo, max: hi) }
        #expect(zip(series, series.dropFirst()).allSatisfy { $0 > $1 }, "\(series)")
        // And never outside [min, max] for any c, k.
        for k in 0...8 {
            for c in 0...10 {
                let t = Suspicion.timeout(confirmations: c, wanted: k, min: lo, max: hi)
                #expect(t >= lo && t <= hi, "c=\(c) k=\(k): \(t)")
            }
        }
    }

    @Test(arguments: [
        (0, 1.0), (1, 1.0), (5, 1.0), (10, 1.0), (50, log10(50.0)), (100, 2.0), (1000, 3.0)
    ])
    func minTimeoutScalesWithLog10OfClusterSize(n: Int, scale: Double) {
        let lan = Suspicion.minTimeout(settings: .lan, clusterSize: n)
        #expect(close(lan, .seconds(4) * scale), "lan n=\(n): \(lan)")
        let fast = Suspicion.minTimeout(settings: .fast, clusterSize: n)
        #expect(close(fast, .milliseconds(300) * scale), "fast n=\(n): \(fast)")
    }

    @Test func minTimeoutSpotValues() {
        #expect(Suspicion.minTimeout(settings: .lan, clusterSize: 5) == .seconds(4))
        #expect(Suspicion.minTimeout(settings: .lan, clusterSize: 100) == .seconds(8))
        #expect(Suspicion.minTimeout(settings: .wan, clusterSize: 100) == .seconds(60))
        #expect(Suspicion.minTimeout(settings: .fast, clusterSize: 100) == .milliseconds(600))
    }

    @Test func suspicionCountsIndependentConfirmationsOnly() {
        var s = Suspicion(incarnation: 1, from: "b", now: t0, minTimeout: .seconds(4), maxTimeout: .seconds(24), wanted: 2)
        #expect(s.deadline == t0 + .seconds(24))
        var fresh = s.confirm("b")
        #expect(!fresh, "the originator is not a confirmation")
        #expect(s.deadline == t0 + .seconds(24))
        fresh = s.confirm("c")
        #expect(fresh)
        fresh = s.confirm("c")
        #expect(!fresh, "the same member confirms once")
        let afterOne = s.deadline
        #expect(afterOne < t0 + .seconds(24) && afterOne > t0 + .seconds(4))
        fresh = s.confirm("d")
        #expect(fresh)
        #expect(s.deadline == t0 + .seconds(4))
        fresh = s.confirm("e")
        #expect(!fresh, "no more than `wanted` confirmations count")
        #expect(s.confirmers == ["c", "d"])
        s.postpone(by: .seconds(3))
        #expect(s.deadline == t0 + .seconds(7))
    }

    /// n = 5 with lan: min 4 s, max 24 s, two confirmations wanted.
    @Test func coreDeclaresDeadAtMaxWithoutConfirmations() {
        var a = makeNode("a", peers: ["b", "c", "d", "e"])
        _ = a.onPacket(Packet([.suspect(name: "e", incarnation: 1, from: "b")]), from: addr("b"), now: t0)
        // Everyone answers probes (so this node's own probes confirm nothing), but e never refutes.
        var d = Driver(a, responsive: ["b", "c", "d", "e"])
        d.run(until: t0 + .seconds(24) - ms(1))
        #expect(d.node.members["e"]?.status == .suspect)
        #expect(d.node.stats.confirmations == 0)
        d.run(until: t0 + .seconds(24))
        #expect(d.node.members["e"]?.status == .dead)
        let death = d.log.first { e in
            if case .memberChanged(let s, _) = e.directive { s.name == "e" && s.status == .dead } else { false }
        }
        #expect(death?.at == t0 + .seconds(24))
    }

    @Test func confirmationsShortenTheCoresSuspicion() {
        var a = makeNode("a", peers: ["b", "c", "d", "e"])
        _ = a.onPacket(Packet([.suspect(name: "e", incarnation: 1, from: "b")]), from: addr("b"), now: t0)
        _ = a.onPacket(Packet([.suspect(name: "e", incarnation: 1, from: "c")]), from: addr("c"), now: t0 + ms(10))
        #expect(a.stats.confirmations == 1)
        _ = a.onPacket(Packet([.suspect(name: "e", incarnation: 1, from: "d")]), from: addr("d"), now: t0 + ms(20))
        #expect(a.stats.confirmations == 2)
        // Two of two wanted: the deadline is the minimum, 4 s after the suspicion started.
        _ = a.onTick(now: t0 + ms(1500))
        _ = a.onTick(now: t0 + ms(3000))
        _ = a.onTick(now: t0 + ms(3999))
        #expect(a.members["e"]?.status == .suspect)
        let out = a.onTick(now: t0 + ms(4001))
        #expect(a.members["e"]?.status == .dead)
        #expect(out.changes.contains { $0.state.name == "e" && $0.state.status == .dead && $0.previous == .suspect })
        #expect(a.stats.deathsDeclared == 1)
    }

    @Test func confirmationsAreGossipedOn() {
        var a = makeNode("a", peers: ["b", "c", "d", "e"])
        _ = a.onPacket(Packet([.suspect(name: "e", incarnation: 1, from: "b")]), from: addr("b"), now: t0)
        var d = Driver(a)
        d.run(until: t0 + ms(100))
        d.deliver([.suspect(name: "e", incarnation: 1, from: "c")], from: "c", at: t0 + ms(150))
        d.run(until: t0 + ms(400))
        let later = d.sent.filter { $0.at >= t0 + ms(150) }.flatMap(\.messages)
        #expect(later.contains(.suspect(name: "e", incarnation: 1, from: "c")))
    }
}

/// A process that was stalled (SIGSTOP, swap) must read its inbox before it judges anyone.
/// Every peer answers pings here, so only the suspicion's own deadline can kill c.
@Suite struct StallTests {
    /// n = 3: no confirmations wanted, so a suspicion lasts exactly the 4 s minimum.
    func suspecting() -> Driver {
        var a = makeNode("a", peers: ["b", "c"])
        _ = a.onPacket(Packet([.suspect(name: "c", incarnation: 1, from: "b")]), from: addr("b"), now: t0)
        return Driver(a, responsive: ["b", "c"])
    }

    @Test func withoutAStallTheSuspectDiesOnTime() {
        var d = suspecting()
        d.run(until: t0 + ms(3999))
        #expect(d.node.members["c"]?.status == .suspect)
        d.run(until: t0 + ms(4000))
        #expect(d.node.members["c"]?.status == .dead)
        #expect(d.node.stats.stalls == 0)
    }

    @Test func refutationReadAfterAStallSavesTheSuspect() {
        var d = suspecting()
        d.run(until: t0 + ms(1000))
        // Stalled for 9 s: the suspicion's deadline (t0 + 4 s) passed while the process was frozen.
        let out = d.tick(at: t0 + ms(10_000))
        #expect(d.node.stats.stalls == 1)
        #expect(d.node.members["c"]?.status == .suspect, "a stalled node must not judge before reading its inbox")
        #expect(!out.changes.contains { $0.state.status == .dead })
        #expect(d.node.awareness >= 1, "a stall is a sign of poor local health")
        // The refutation that was waiting in the socket buffer.
        d.deliver([.alive(memberState("c", inc: 2))], from: "c", at: t0 + ms(10_001))
        #expect(d.node.members["c"]?.status == .alive)
        #expect(d.node.members["c"]?.incarnation == 2)
        d.run(until: t0 + .seconds(30))
        #expect(d.node.members["c"]?.status == .alive)
        #expect(!d.directives.changes.contains { $0.state.status == .dead }, "nobody may be declared dead")
    }

    @Test func stallPushesTheDeadlineBackByTheGap() {
        var d = suspecting()
        d.run(until: t0 + ms(999))
        d.tick(at: t0 + ms(1000))
        d.tick(at: t0 + ms(10_000))  // a 9 s gap: the deadline moves from t0+4 s to t0+13 s
        d.run(until: t0 + .seconds(13) - ms(1))
        #expect(d.node.members["c"]?.status == .suspect)
        #expect(d.node.stats.stalls == 1)
        d.run(until: t0 + .seconds(13) + ms(1))
        #expect(d.node.members["c"]?.status == .dead)
    }

    @Test func gapsBelowTheThresholdAreNotStalls() {
        var a = makeNode("a", settings: .fast, peers: ["b"])
        var t = t0
        for _ in 0..<20 {
            t = t + ms(499)
            _ = a.onTick(now: t)
        }
        #expect(a.stats.stalls == 0)
        _ = a.onTick(now: t + ms(501))
        #expect(a.stats.stalls == 1)
    }
}
