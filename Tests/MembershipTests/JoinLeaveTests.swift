import Membership
import TandemCore
import Testing

@Suite struct JoinTests {
    func joinAttempts(_ d: Driver) -> [Instant] {
        d.log.compactMap { e in
            if case .pushPull(let to, true) = e.directive, to == addr("s") { e.at } else { nil }
        }
    }

    @Test func joinPushPullsToEverySeedButItself() {
        var a = makeNode("a")
        let out = a.join(seeds: [addr("s"), addr("a"), addr("t")], now: t0)
        #expect(out.pushPulls.map(\.to) == [addr("s"), addr("t")])
        #expect(out.pushPulls.allSatisfy { $0.join })
        #expect(!a.joined)
    }

    @Test func joinWithOnlyItselfAsSeedIsAlreadyJoined() {
        var a = makeNode("a")
        let out = a.join(seeds: [addr("a")], now: t0)
        #expect(out.pushPulls.isEmpty)
        #expect(a.joined)
        let none = a.join(seeds: [], now: t0)
        #expect(none.isEmpty)
        #expect(a.joined)
    }

    @Test func joinRetriesWithDoublingBackoffUntilAnswered() {
        var d = Driver(makeNode("a"))
        let first = d.node.join(seeds: [addr("s")], now: t0)
        #expect(first == [.pushPull(to: addr("s"), join: true)])
        d.run(until: t0 + .seconds(4))
        let attempts = [t0] + joinAttempts(d)
        let gaps = zip(attempts.dropFirst(), attempts).map { ($0 - $1).milliseconds }
        // lan: 50 ms doubling: t0, +50, +150, +350, +750, +1550, +3150 ms.
        #expect(gaps == [50, 100, 200, 400, 800, 1600], "\(gaps)")
        // Failures change nothing: it keeps trying.
        _ = d.node.onPushPullFailed(to: addr("s"), join: true, now: d.now)
        #expect(d.node.stats.pushPullFailures == 1)
        #expect(!d.node.joined)

        // The seed answers: joined, the seed's view merged, no more join attempts.
        let view = PushPullMessage(join: false, senderName: "s", states: [memberState("s", inc: 3), memberState("t")])
        let out = d.node.onPushPullResponse(view, from: addr("s"), join: true, now: d.now)
        #expect(d.node.joined)
        #expect(d.node.members["s"]?.status == .alive)
        #expect(d.node.members["s"]?.incarnation == 3)
        #expect(d.node.members["t"]?.status == .alive)
        #expect(out.changes.count == 2)
        let before = joinAttempts(d).count
        d.run(until: t0 + .seconds(60))
        #expect(joinAttempts(d).count == before, "no join attempt after joining")
        #expect(d.directives.pushPulls.allSatisfy { !$0.join || $0.to == addr("s") })
    }

    @Test func joinBackoffIsCappedAtJoinRetryMax() {
        // fast: 20 ms doubling up to 2 s.
        var d = Driver(makeNode("a", settings: .fast))
        _ = d.node.join(seeds: [addr("s")], now: t0)
        d.run(until: t0 + .seconds(12))
        let attempts = [t0] + joinAttempts(d)
        let gaps = zip(attempts.dropFirst(), attempts).map { ($0 - $1).milliseconds }
        #expect(Array(gaps.prefix(7)) == [20, 40, 80, 160, 320, 640, 1280], "\(gaps)")
        #expect(gaps.dropFirst(7).allSatisfy { $0 == 2000 }, "\(gaps)")
        #expect(gaps.count >= 10)
    }

    @Test func pushPullRequestMergesAndAnswersWithWholeView() {
        var s = makeNode("s", peers: ["b"])
        let joiner = PushPullMessage(join: true, senderName: "a", states: [memberState("a", inc: 2)])
        let (reply, out) = s.onPushPullRequest(joiner, from: addr("a"), now: t0 + ms(1))
        #expect(s.members["a"]?.status == .alive)
        #expect(out.changes.map(\.state.name) == ["a"])
        #expect(reply.senderName == "s")
        #expect(!reply.join)
        #expect(reply.states.map(\.name) == ["a", "b", "s"])
    }

    @Test func remoteDeadBecomesLocalSuspicion() {
        // memberlist's merge rule: one node's stale view cannot kill a member others can reach.
        var a = makeNode("a", peers: ["b", "c"])
        let view = PushPullMessage(
            join: false, senderName: "b",
            states: [memberState("b"), memberState("c", status: .dead)])
        _ = a.onPushPullResponse(view, from: addr("b"), join: false, now: t0 + ms(1))
        #expect(a.members["c"]?.status == .suspect)
    }
}

@Suite struct LeaveTests {
    @Test func leaveTellsEveryLiveMemberDirectly() {
        var a = makeNode("a", incarnation: 4, peers: ["b", "c", "d", "e"])
        _ = a.onPacket(
            Packet([.dead(name: "d", incarnation: 1, from: "b"), .suspect(name: "e", incarnation: 1, from: "b")]),
            from: addr("b"), now: t0)
        let out = a.leave(now: t0 + ms(10))
        let notice = SwimMessage.leave(name: "a", incarnation: 4)
        #expect(out.sends.map(\.to).sorted() == [addr("b"), addr("c"), addr("e")], "live members only (suspects too)")
        for s in out.sends { #expect(s.packet.messages == [notice]) }
        #expect(a.myself.status == .left)
        #expect(a.leaving)
        // Leaving twice sends nothing more.
        #expect(a.leave(now: t0 + ms(20)).isEmpty)
    }

    @Test func leavingNodeStopsProbingAndDoesNotRefute() {
        var d = Driver(makeNode("a", peers: ["b", "c"]), responsive: ["b", "c"])
        d.run(until: t0 + .seconds(3))
        let probes = d.node.stats.probes
        _ = d.node.leave(now: d.now)
        let leftAt = d.now
        d.run(until: leftAt + .seconds(10))
        #expect(d.node.stats.probes == probes)
        #expect(!d.sent.contains { $0.at > leftAt && $0.messages.contains { $0.pingSeq != nil } }, "no probes after leaving")
        // The notice keeps spreading by gossip.
        #expect(d.sent.contains { $0.at > leftAt && $0.messages.contains(.leave(name: "a", incarnation: 1)) })
        // A rumour about a departed node is not worth a refutation.
        let out = d.deliver([.suspect(name: "a", incarnation: 1, from: "b"), .dead(name: "a", incarnation: 1, from: "c")], from: "b")
        #expect(out.persisted.isEmpty)
        #expect(d.node.myself.incarnation == 1)
        #expect(d.node.myself.status == .left)
        // And it learns no new members.
        d.deliver([.alive(memberState("z"))], from: "b")
        #expect(d.node.members["z"] == nil)
        #expect(d.node.pushPullMessage(join: false).states.first { $0.name == "a" }?.status == .left)
    }

    @Test func receiverMarksLeaverLeftNotDead() {
        var d = Driver(makeNode("b", peers: ["a", "c"]), responsive: ["c"])
        d.run(until: t0 + .seconds(1))
        let out = d.deliver([.leave(name: "a", incarnation: 1)], from: "a")
        #expect(d.node.members["a"]?.status == .left)
        #expect(out.changes.count == 1)
        #expect(out.changes.first?.state.status == .left)
        #expect(out.changes.first?.previous == .alive)
        #expect(d.node.clusterSize == 2)
        let leftAt = d.now
        // Long past any suspicion timeout: a is never probed, suspected, retried or declared dead.
        d.run(until: leftAt + .seconds(120))
        #expect(d.node.members["a"]?.status == .left)
        #expect(!d.sent.contains { $0.at > leftAt && $0.to == addr("a") })
        #expect(!d.directives.changes.contains { $0.state.name == "a" && $0.state.status == .dead })
        // Gossip about it cannot make it dead either.
        d.deliver([.dead(name: "a", incarnation: 1, from: "c"), .suspect(name: "a", incarnation: 1, from: "c")], from: "c")
        #expect(d.node.members["a"]?.status == .left)
    }

    @Test func leaveClearsAPendingSuspicion() {
        var a = makeNode("b", peers: ["a", "c", "d", "e"])
        _ = a.onPacket(Packet([.suspect(name: "a", incarnation: 1, from: "c")]), from: addr("c"), now: t0)
        _ = a.onPacket(Packet([.leave(name: "a", incarnation: 1)]), from: addr("a"), now: t0 + ms(5))
        var d = Driver(a, responsive: ["c", "d", "e"])
        d.now = t0 + ms(5)
        d.run(until: t0 + .seconds(60))
        #expect(d.node.members["a"]?.status == .left)
        #expect(d.node.stats.deathsDeclared == 0)
    }

    @Test func leftMembersAreForgottenAfterRetainTime() {
        var d = Driver(makeNode("b", settings: .fast, peers: ["a", "c"]), responsive: ["c"])
        d.deliver([.leave(name: "a", incarnation: 1)], from: "a", at: t0 + ms(1))
        d.run(until: t0 + MembershipSettings.fast.leftRetainTime - .seconds(1))
        #expect(d.node.members["a"]?.status == .left)
        d.run(until: t0 + MembershipSettings.fast.leftRetainTime + .seconds(2))
        #expect(d.node.members["a"] == nil)
        #expect(d.node.members["c"]?.status == .alive)
    }
}

/// Whether a node's view may be acted on (routes are refused until it is).
@Suite struct SyncedViewTests {
    @Test func aNewNodeWithNoSeedIsSyncedAtOnce() {
        let a = makeNode("a")
        #expect(a.isSynced(now: t0))
    }

    @Test func aJoiningNodeIsSyncedOnlyOnceItsJoinAnswered() {
        var a = makeNode("a")
        _ = a.join(seeds: [addr("b")], now: t0)
        #expect(!a.isSynced(now: t0 + ms(100)))
        let view = PushPullMessage(join: false, senderName: "b", states: [memberState("b")])
        _ = a.onPushPullResponse(view, from: addr("b"), join: true, now: t0 + ms(100))
        #expect(a.isSynced(now: t0 + ms(100)))
    }

    /// A restarted node (a higher incarnation from its data dir) with no seed to join through
    /// knows only whoever speaks to it, until a peer's whole view reaches it.
    @Test func aReturningNodeWaitsForAWholeView() {
        var a = makeNode("a", incarnation: 3)
        #expect(!a.isSynced(now: t0))
        _ = a.onPacket(Packet([.ping(seq: 1, target: "a"), .alive(memberState("b"))]), from: addr("b"), now: t0 + ms(10))
        #expect(!a.isSynced(now: t0 + ms(10)), "one member's gossip is not the cluster's view")
        let view = PushPullMessage(join: false, senderName: "b", states: [memberState("b"), memberState("c")])
        _ = a.onPushPullRequest(view, from: addr("b"), now: t0 + ms(20))
        #expect(a.isSynced(now: t0 + ms(20)))
        // Alone: after a push-pull interval there is nobody to wait for.
        let lone = makeNode("z", incarnation: 2)
        #expect(lone.isSynced(now: t0 + MembershipSettings.lan.pushPullInterval))
    }
}
