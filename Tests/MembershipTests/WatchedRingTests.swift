@testable import Membership
import TandemCore
import Testing

/// The `region` profile's rules, one node driven by hand.
@Suite struct WatchedRingTests {
    @Test func eachNodeWatchesItsTwoRingNeighbours() {
        let c = makeNode("c", settings: .region, peers: ["a", "b", "d", "e"])
        #expect(Set(c.watchedMembers()) == ["b", "d"])
        let a = makeNode("a", settings: .region, peers: ["b", "c", "d", "e"])
        #expect(Set(a.watchedMembers()) == ["b", "e"], "the ring wraps around")
        let small = makeNode("a", settings: .region, peers: ["b", "c"])
        #expect(Set(small.watchedMembers()) == ["b", "c"])
    }

    /// The higher name of a pair only listens while the lower one's pings keep coming.
    @Test func aNodeThatKeepsHearingItsNeighboursSendsNoPings() {
        var d = Driver(makeNode("c", settings: .region, peers: ["a", "b"]))
        var t = t0
        while t < t0 + .seconds(4) {
            t = t + ms(400)
            d.run(until: t)
            d.deliver([.ping(seq: 1, target: "c")], from: "a", at: t)
            d.deliver([.ping(seq: 1, target: "c")], from: "b", at: t)
        }
        #expect(d.pings.isEmpty, "pinged \(d.pings.map(\.target)) while hearing from both every 400 ms")
        // Silence: within 1.25 intervals c pings them itself.
        d.run(until: t + ms(600))
        #expect(Set(d.pings.map(\.target)) == ["a", "b"])
    }

    @Test func theLowerNameOfAPairPingsEveryInterval() {
        var d = Driver(makeNode("a", settings: .region, peers: ["b", "c"]), responsive: ["b", "c"])
        d.run(until: t0 + .seconds(4))
        let toB = d.pings.filter { $0.target == "b" }.count
        #expect((8...11).contains(toB), "\(toB) pings to b in 4 s at 400 ms")
    }

    /// The direct timeout follows the measured round trip, not the profile's fixed 800 ms.
    @Test func directTimeoutComesFromTheMeasuredRoundTrip() {
        var n = makeNode("a", settings: .region, peers: ["b"])
        #expect(n.directTimeout(to: "b") == MembershipSettings.region.probeTimeout, "nothing measured yet")
        for _ in 0..<20 {
            let now = n.nextDeadline
            for s in n.onTick(now: now).sends where s.to == addr("b") {
                guard let seq = s.packet.messages.first?.pingSeq else { continue }
                _ = n.onPacket(Packet([.ack(seq: seq, forwarded: false, coordinate: nil)]), from: addr("b"), now: now + ms(160))
            }
        }
        let b = n.directTimeout(to: "b")
        #expect(b > ms(160) && b < ms(240), "160 ms round trips: timeout \(b)")
    }

    /// A helper's nack is an independent failure: the suspicion it confirms needs no second probe.
    @Test func helperNacksConfirmTheSuspicion() throws {
        var d = Driver(makeNode("a", settings: .region, peers: ["b", "c", "d"]), responsive: [])
        // Run until the indirect stage of a probe of b, and have every helper nack.
        d.run(until: t0 + .seconds(2), stopWhen: { $0.sent.contains { $0.messages.contains { $0.isPingReq } } })
        let request = try #require(d.sent.first { $0.messages.contains { $0.isPingReq } })
        guard case .pingReq(let seq, let target, _)? = request.messages.first(where: { $0.isPingReq }) else {
            Issue.record("no ping-req")
            return
        }
        for helper in d.sent.filter({ $0.messages.contains { $0.isPingReq } }).map(\.to) {
            d.deliver([.nack(seq: seq)], from: String(helper.dropLast(5)))
        }
        let raised = d.run(until: d.now + .seconds(5), stopWhen: { $0.node.members[target]?.status == .suspect })
        #expect(raised)
        d.run(until: d.now + ms(20))  // fresh news goes out within `gossipMinGap`
        let out = d.sent.flatMap(\.messages).filter {
            if case .suspect(let n, _, let from) = $0 { n == target && from != "a" } else { false }
        }
        #expect(!out.isEmpty, "the helpers' confirmations were not gossiped")
        // Confirmed: dead after `suspicionMin` plus a round trip (the accuser's own wait; nothing
        // measured here, so the profile's probe timeout), not the lone accuser's `suspicionMax`.
        let suspectedAt = d.now - ms(20)
        let region = MembershipSettings.region
        d.run(until: suspectedAt + region.suspicionMin + region.probeTimeout + ms(50))
        #expect(d.node.members[target]?.status == .dead)
        #expect(region.suspicionMin + region.probeTimeout + ms(50) < region.suspicionMax)
    }

    /// Two direct pings unanswered (the first and its resend, each given the direct timeout):
    /// the suspicion starts then, while the helpers are still out, and a helper's nack that
    /// comes later confirms it at once.
    @Test func theSuspicionStartsWhenTheResentPingGoesUnanswered() throws {
        // a watches b and d; d answers, b is gone (c and d are the helpers).
        var d = Driver(makeNode("a", settings: .region, peers: ["b", "c", "d"]), responsive: ["c", "d"])
        d.run(until: t0 + .seconds(2), stopWhen: { $0.sent.contains { $0.messages.contains { $0.isPingReq } } })
        let requestedAt = d.now
        let request = try #require(d.sent.first { $0.messages.contains { $0.isPingReq } })
        guard case .pingReq(let seq, let target, _)? = request.messages.first(where: { $0.isPingReq }) else {
            Issue.record("no ping-req")
            return
        }
        let helpers = d.sent.filter { $0.messages.contains { $0.isPingReq } }.map { String($0.to.dropLast(5)) }
        // Nothing measured yet: the direct timeout is the profile's, and the resend waits it too.
        let raised = d.run(
            until: requestedAt + MembershipSettings.region.probeTimeout + ms(1),
            stopWhen: { $0.node.members[target]?.status == .suspect })
        #expect(raised, "no suspicion once the resent ping had waited its timeout")
        let confirmations = d.node.stats.confirmations
        d.deliver([.nack(seq: seq)], from: helpers[0], at: d.now + ms(100))
        #expect(d.node.stats.confirmations == confirmations + 1, "the late nack did not confirm the suspicion")
    }
}

/// The gossip queue: one update per member, but independent accusations side by side.
@Suite struct BroadcastQueueTests {
    /// A receiver needs the accuser's suspicion and its confirmations to use the short timeout;
    /// the confirmation queued a moment after the accuser's own suspicion used to replace it.
    @Test func suspicionsOfOneIncarnationByDifferentAccusersAreAllSent() {
        var q = BroadcastQueue()
        q.enqueue(.suspect(name: "b", incarnation: 3, from: "a"))
        q.enqueue(.suspect(name: "b", incarnation: 3, from: "c"))
        q.enqueue(.suspect(name: "b", incarnation: 3, from: "c"))
        q.enqueue(.alive(memberState("e")))
        let sent = q.take(budget: 1400, limit: 4)
        let accusers = sent.compactMap { m -> String? in if case .suspect(_, _, let from) = m { from } else { nil } }
        #expect(accusers.sorted() == ["a", "c"])
        #expect(sent.count == 3)
    }

    /// Anything newer about the member replaces every accusation: a refutation, a death, or a
    /// suspicion of a later incarnation.
    @Test func aNewerUpdateReplacesEveryAccusation() {
        var q = BroadcastQueue()
        q.enqueue(.suspect(name: "b", incarnation: 3, from: "a"))
        q.enqueue(.suspect(name: "b", incarnation: 3, from: "c"))
        q.enqueue(.alive(memberState("b", inc: 4)))
        #expect(q.take(budget: 1400, limit: 4) == [.alive(memberState("b", inc: 4))])
        q.enqueue(.suspect(name: "b", incarnation: 4, from: "a"))
        q.enqueue(.suspect(name: "b", incarnation: 5, from: "c"))
        #expect(q.take(budget: 1400, limit: 4) == [.suspect(name: "b", incarnation: 5, from: "c")])
    }
}
