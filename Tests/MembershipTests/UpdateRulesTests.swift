import Membership
import TandemCore
import Testing

/// SWIM §4.2/§4.4: refutation by incarnation, and which update overrides which.
@Suite struct RefutationTests {
    @Test(arguments: [
        SwimMessage.suspect(name: "a", incarnation: 5, from: "b"),
        SwimMessage.dead(name: "a", incarnation: 5, from: "b"),
        SwimMessage.suspect(name: "a", incarnation: 9, from: "b"),
        SwimMessage.dead(name: "a", incarnation: 9, from: "b"),
        SwimMessage.leave(name: "a", incarnation: 5)
    ])
    func rumourAboutSelfIsRefuted(rumour: SwimMessage) throws {
        var a = makeNode("a", incarnation: 5, peers: ["b", "c"])
        let seen: UInt64 =
            switch rumour {
            case .suspect(_, let i, _), .dead(_, let i, _), .leave(_, let i): i
            default: 0
            }
        let out = a.onPacket(Packet([rumour]), from: addr("b"), now: t0 + ms(10))
        #expect(a.myself.incarnation == seen + 1, "refutation must take incarnation \(seen + 1), \(rumour)")
        #expect(out.persisted == [seen + 1], "the new incarnation must be persisted before it is used")
        #expect(a.myself.status == .alive)
        #expect(a.stats.refutations == 1)

        // The very next packet this node sends carries `alive` for itself at the new incarnation.
        var d = Driver(a)
        d.now = t0 + ms(10)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.sent.isEmpty })
        let first = try #require(d.sent.first)
        #expect(first.messages.contains(.alive(a.myself)), "first packet after refutation: \(first.messages)")
        #expect(
            !first.messages.contains { m in
                if case .alive(let s) = m { s.name == "a" && s.incarnation != seen + 1 } else { false }
            })
    }

    @Test func refutationRidesOnTheAckToThePingThatCarriedTheRumour() throws {
        var a = makeNode("a", incarnation: 3, peers: ["b"])
        let out = a.onPacket(
            Packet([.ping(seq: 42, target: "a"), .dead(name: "a", incarnation: 3, from: "b")]),
            from: addr("b"), now: t0 + ms(5))
        #expect(a.myself.incarnation == 4)
        #expect(out.persisted == [4])
        let reply = try #require(out.sends.first { $0.to == addr("b") })
        #expect(reply.packet.messages.first == .ack(seq: 42, forwarded: false, coordinate: a.vivaldi.coordinate))
        #expect(reply.packet.messages.contains(.alive(a.myself)))
    }

    @Test(arguments: [
        SwimMessage.suspect(name: "a", incarnation: 4, from: "b"),
        SwimMessage.dead(name: "a", incarnation: 0, from: "b"),
        SwimMessage.leave(name: "a", incarnation: 4),
        SwimMessage.alive(memberState("a", inc: 4)),
        // Its own current state: a node restarted at incarnation 5 says it returned at 5.
        SwimMessage.alive(
            MemberState(
                name: "a", address: addr("a"), incarnation: 5, status: .alive,
                meta: MemberMeta(region: "r-a", api: "a:8080", returned: 5)))
    ])
    func staleRumourAboutSelfDoesNotBumpIncarnation(rumour: SwimMessage) {
        var a = makeNode("a", incarnation: 5, peers: ["b"])
        let out = a.onPacket(Packet([rumour]), from: addr("b"), now: t0 + ms(10))
        #expect(a.myself.incarnation == 5, "\(rumour)")
        #expect(out.persisted.isEmpty, "\(rumour)")
        #expect(a.stats.refutations == 0)
        #expect(a.myself.status == .alive)
    }

    @Test func aliveAboutSelfWithNewerIncarnationIsRefuted() {
        // A previous life of this node (or a name clash) announced a higher incarnation.
        var a = makeNode("a", incarnation: 2, peers: ["b"])
        let out = a.onPacket(Packet([.alive(memberState("a", inc: 7))]), from: addr("b"), now: t0 + ms(1))
        #expect(a.myself.incarnation == 8)
        #expect(out.persisted == [8])
    }

    @Test func aliveAboutSelfWithSameIncarnationButOtherAddressIsRefuted() {
        var a = makeNode("a", incarnation: 2, peers: ["b"])
        var clash = memberState("a", inc: 2)
        clash.address = "10.9.9.9:7946"
        let out = a.onPacket(Packet([.alive(clash)]), from: addr("b"), now: t0 + ms(1))
        #expect(a.myself.incarnation == 3)
        #expect(out.persisted == [3])
        #expect(a.myself.address == addr("a"))
    }

    @Test func pushPullViewCallingSelfDeadIsRefuted() {
        var a = makeNode("a", incarnation: 4, peers: ["b"])
        let view = PushPullMessage(
            join: false, senderName: "b",
            states: [memberState("a", inc: 4, status: .dead), memberState("b")])
        let (reply, out) = a.onPushPullRequest(view, from: addr("b"), now: t0 + ms(1))
        #expect(a.myself.incarnation == 5)
        #expect(out.persisted == [5])
        // The answer is built after the merge, so it already carries the refutation.
        #expect(reply.states.contains(a.myself))
        #expect(reply.states.first { $0.name == "a" }?.incarnation == 5)
    }
}

@Suite struct OverrideRuleTests {
    /// Node `a` watching member `b`.
    func watcher() -> MembershipInstance { makeNode("a", peers: ["b", "c", "d"]) }

    func apply(_ node: inout MembershipInstance, _ m: SwimMessage, at t: Instant = t0 + ms(1)) -> [MembershipDirective] {
        node.onPacket(Packet([m]), from: addr("c"), now: t)
    }

    func status(_ node: MembershipInstance, _ name: String = "b") -> (MemberStatus?, UInt64?) {
        (node.members[name]?.status, node.members[name]?.incarnation)
    }

    @Test func suspectAtSameIncarnationOverridesAlive() {
        var a = watcher()
        let out = apply(&a, .suspect(name: "b", incarnation: 1, from: "c"))
        #expect(status(a) == (.suspect, 1))
        #expect(out.changes.count == 1)
        #expect(out.changes.first?.state.status == .suspect)
        #expect(out.changes.first?.previous == .alive)
    }

    @Test func suspectAtOlderIncarnationIsIgnored() {
        var a = watcher()
        _ = apply(&a, .alive(memberState("b", inc: 3)))
        let out = apply(&a, .suspect(name: "b", incarnation: 2, from: "c"))
        #expect(status(a) == (.alive, 3))
        #expect(out.changes.isEmpty)
    }

    @Test func suspectAtNewerIncarnationOverridesAlive() {
        var a = watcher()
        _ = apply(&a, .suspect(name: "b", incarnation: 4, from: "c"))
        #expect(status(a) == (.suspect, 4))
    }

    @Test func aliveNeedsHigherIncarnationToClearSuspect() {
        var a = watcher()
        _ = apply(&a, .suspect(name: "b", incarnation: 1, from: "c"))
        var out = apply(&a, .alive(memberState("b", inc: 1)))
        #expect(status(a) == (.suspect, 1), "alive at the same incarnation must not clear a suspicion")
        #expect(out.changes.isEmpty)
        out = apply(&a, .alive(memberState("b", inc: 2)))
        #expect(status(a) == (.alive, 2))
        #expect(out.changes.map(\.previous) == [.suspect])
        #expect(out.pushPulls.isEmpty, "suspect → alive needs no state sync")
    }

    @Test func aliveNeedsHigherIncarnationToClearDead() {
        var a = watcher()
        _ = apply(&a, .dead(name: "b", incarnation: 1, from: "c"))
        #expect(status(a) == (.dead, 1))
        var out = apply(&a, .alive(memberState("b", inc: 1)))
        #expect(status(a) == (.dead, 1))
        #expect(out.changes.isEmpty)
        out = apply(&a, .alive(memberState("b", inc: 2)))
        #expect(status(a) == (.alive, 2))
        #expect(out.changes.map(\.previous) == [.dead])
        // Back from the dead: views are synced at once.
        #expect(out.pushPulls.map(\.to) == [addr("b")])
    }

    @Test func deadOverridesSuspectAndSuspectDoesNotReviveOrDowngradeDead() {
        var a = watcher()
        _ = apply(&a, .suspect(name: "b", incarnation: 1, from: "c"))
        _ = apply(&a, .dead(name: "b", incarnation: 1, from: "d"))
        #expect(status(a) == (.dead, 1))
        let out = apply(&a, .suspect(name: "b", incarnation: 1, from: "c"))
        #expect(status(a) == (.dead, 1))
        #expect(out.changes.isEmpty)
        _ = apply(&a, .suspect(name: "b", incarnation: 5, from: "c"))
        #expect(status(a) == (.dead, 1), "only the member itself (alive) brings a dead member back")
    }

    @Test func deadAtOlderIncarnationIsIgnored() {
        var a = watcher()
        _ = apply(&a, .alive(memberState("b", inc: 3)))
        _ = apply(&a, .dead(name: "b", incarnation: 2, from: "c"))
        #expect(status(a) == (.alive, 3))
    }

    @Test func leftIsFinalForItsIncarnation() {
        var a = watcher()
        _ = apply(&a, .suspect(name: "b", incarnation: 1, from: "c"))
        var out = apply(&a, .leave(name: "b", incarnation: 1))
        #expect(status(a) == (.left, 1))
        #expect(out.changes.map(\.previous) == [.suspect])
        for m: SwimMessage in [
            .alive(memberState("b", inc: 1)), .suspect(name: "b", incarnation: 1, from: "c"),
            .dead(name: "b", incarnation: 1, from: "c"), .suspect(name: "b", incarnation: 2, from: "c"),
            .dead(name: "b", incarnation: 2, from: "c"), .leave(name: "b", incarnation: 1)
        ] {
            out = apply(&a, m)
            #expect(status(a) == (.left, 1), "\(m) must not override left")
            #expect(out.changes.isEmpty, "\(m)")
        }
        // Only the member itself, rejoining with a higher incarnation, comes back.
        out = apply(&a, .alive(memberState("b", inc: 2)))
        #expect(status(a) == (.alive, 2))
        #expect(out.changes.map(\.previous) == [.left])
    }

    @Test func leaveOverridesDeadAtSameIncarnationButNotAnOlderOne() {
        var a = watcher()
        _ = apply(&a, .alive(memberState("b", inc: 2)))
        _ = apply(&a, .dead(name: "b", incarnation: 2, from: "c"))
        _ = apply(&a, .leave(name: "b", incarnation: 1))
        #expect(status(a) == (.dead, 2))
        _ = apply(&a, .leave(name: "b", incarnation: 2))
        #expect(status(a) == (.left, 2))
    }

    @Test func unknownMemberIsLearnedOnlyFromAlive() {
        var a = watcher()
        for m: SwimMessage in [
            .suspect(name: "x", incarnation: 1, from: "c"), .dead(name: "x", incarnation: 1, from: "c"),
            .leave(name: "x", incarnation: 1)
        ] {
            _ = apply(&a, m)
            #expect(a.members["x"] == nil, "\(m)")
        }
        let out = apply(&a, .alive(memberState("x", inc: 7)))
        #expect(status(a, "x") == (.alive, 7))
        #expect(out.changes.count == 1)
        #expect(out.changes.first?.previous == nil)
        #expect(a.clusterSize == 5)
    }

    @Test func clusterSizeCountsLiveMembersOnly() {
        var a = watcher()
        #expect(a.clusterSize == 4)
        _ = apply(&a, .suspect(name: "b", incarnation: 1, from: "c"))
        #expect(a.clusterSize == 4)
        _ = apply(&a, .dead(name: "b", incarnation: 1, from: "c"))
        #expect(a.clusterSize == 3)
        _ = apply(&a, .leave(name: "c", incarnation: 1))
        #expect(a.clusterSize == 2)
    }

    @Test func newRumoursArePassedOnAndRepeatsChangeNothing() {
        var d = Driver(watcher())
        d.run(until: t0 + ms(200))
        let first = d.deliver([.suspect(name: "b", incarnation: 1, from: "c")], from: "c")
        let second = d.deliver([.suspect(name: "b", incarnation: 1, from: "c")], from: "c")
        #expect(first.changes.count == 1)
        #expect(second.changes.isEmpty, "a repeated rumour is no news")
        let heardAt = d.now
        d.run(until: heardAt + ms(200))
        let passedOn = d.sent.filter { $0.at >= heardAt && $0.messages.contains(.suspect(name: "b", incarnation: 1, from: "c")) }
        #expect(!passedOn.isEmpty, "the suspicion must be gossiped on")
    }
}
