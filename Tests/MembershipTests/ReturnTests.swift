import Membership
import TandemCore
import Testing

/// When the others see a node come back (`returnedAt`, which routing's hold-down follows), and
/// what a (re)joining node learns from a whole view.
@Suite struct ReturnTests {
    /// Back from a stall: a suspicion read first and refuted, then the death that followed it —
    /// still news, the first time only.
    @Test func theFirstNoticeOfItsOwnDeathIsWhenANodeReturns() {
        var b = makeNode("b", settings: .fast, peers: ["a", "c"])
        #expect(b.returnedAt == nil)
        _ = b.onPacket(Packet([.suspect(name: "b", incarnation: 1, from: "a")]), from: addr("a"), now: t0 + ms(10))
        #expect(b.myself.incarnation == 2)
        #expect(b.returnedAt == nil, "a suspicion is not a death")
        _ = b.onPacket(Packet([.dead(name: "b", incarnation: 1, from: "a")]), from: addr("a"), now: t0 + ms(20))
        #expect(b.returnedAt == t0 + ms(20))
        _ = b.onPacket(Packet([.dead(name: "b", incarnation: 1, from: "c")]), from: addr("c"), now: t0 + ms(30))
        #expect(b.returnedAt == t0 + ms(20), "a repeat of the same death")
        _ = b.onPacket(Packet([.dead(name: "b", incarnation: 2, from: "c")]), from: addr("c"), now: t0 + ms(40))
        #expect(b.returnedAt == t0 + ms(40), "a new death")
    }

    /// A restarted node's old life's death is not its return (its rejoin is).
    @Test func aPreviousLifesDeathIsNotAReturn() {
        var b = makeNode("b", incarnation: 5, settings: .fast, peers: ["a"])
        _ = b.onPacket(Packet([.dead(name: "b", incarnation: 4, from: "a")]), from: addr("a"), now: t0 + ms(10))
        #expect(b.returnedAt == nil)
        _ = b.join(seeds: [addr("a")], now: t0 + ms(20))
        let view = PushPullMessage(join: false, senderName: "a", states: [memberState("a"), memberState("b", inc: 4, status: .dead)])
        _ = b.onPushPullResponse(view, from: addr("a"), join: true, now: t0 + ms(30))
        #expect(b.returnedAt == t0 + ms(30), "rejoined: the others see it back now")
    }

    /// Whoever held a member dead tells it so when it comes back, since its refutation may have
    /// crossed the death notice.
    @Test func aMemberBackFromTheDeadIsToldOfItsDeath() {
        var a = makeNode("a", settings: .fast, peers: ["b", "c"])
        _ = a.onPacket(Packet([.dead(name: "b", incarnation: 1, from: "c")]), from: addr("c"), now: t0 + ms(10))
        #expect(a.members["b"]?.status == .dead)
        let out = a.onPacket(Packet([.alive(memberState("b", inc: 2))]), from: addr("c"), now: t0 + ms(20))
        #expect(out.sentMessages.contains { $0.to == addr("b") && $0.message == .dead(name: "b", incarnation: 1, from: "a") })
    }

    /// A whole view's suspected members are members: a node (re)joining while a peer is suspected
    /// learns of it (suspected) rather than routing without it until it refutes.
    @Test func aSuspectedMemberInAJoinViewIsLearned() {
        var n = makeNode("n", incarnation: 3, settings: .fast)
        _ = n.join(seeds: [addr("a")], now: t0)
        let view = PushPullMessage(
            join: false, senderName: "a",
            states: [memberState("a"), memberState("b", inc: 7, status: .suspect), memberState("n", inc: 2, status: .dead)])
        _ = n.onPushPullResponse(view, from: addr("a"), join: true, now: t0 + ms(30))
        #expect(n.members["b"]?.status == .suspect)
        #expect(n.members["b"]?.incarnation == 7)
    }

    /// The first notice of its own death gets a new incarnation that says the node returned,
    /// even when it already refuted the suspicion: a member that never applied the death (the
    /// refutation outran the notice) still learns of the return from it.
    @Test func aNodeAnnouncesItsReturnWithANewIncarnation() {
        var b = makeNode("b", settings: .region, peers: ["a", "c"])
        #expect(b.myself.meta.returned == 0)
        _ = b.onPacket(Packet([.suspect(name: "b", incarnation: 1, from: "a")]), from: addr("a"), now: t0 + ms(10))
        #expect(b.myself.incarnation == 2)
        #expect(b.myself.meta.returned == 0, "a refuted suspicion is not a return")
        let out = b.onPacket(Packet([.dead(name: "b", incarnation: 1, from: "a")]), from: addr("a"), now: t0 + ms(20))
        #expect(b.myself.incarnation == 3)
        #expect(b.myself.meta.returned == 3)
        #expect(out.sentMessages.contains { $0.to == addr("c") && $0.message == .alive(b.myself) }, "told to everyone at once")
        _ = b.onPacket(Packet([.dead(name: "b", incarnation: 1, from: "c")]), from: addr("c"), now: t0 + ms(30))
        #expect(b.myself.incarnation == 3, "a repeat of the same death is old news")
    }

    /// A restarted node has returned: its first incarnation says so.
    @Test func aRestartIsAReturn() {
        let b = makeNode("b", incarnation: 5, settings: .fast, peers: ["a"])
        #expect(b.myself.meta.returned == 5)
        let fresh = makeNode("n", settings: .fast)
        #expect(fresh.myself.meta.returned == 0, "a first start is not a return")
    }

    /// A member whose `returned` rises has come back, whether or not this node held it dead; a
    /// plain refutation (same `returned`) has not.
    @Test func aMemberThatNeverLookedDeadHereStillReturns() {
        var a = makeNode("a", settings: .fast, peers: ["b", "c"])
        #expect(a.members["b"]?.returnedAt == nil)
        var refuted = memberState("b", inc: 2)
        refuted.meta.returned = 0
        _ = a.onPacket(Packet([.alive(refuted)]), from: addr("b"), now: t0 + ms(10))
        #expect(a.members["b"]?.returnedAt == nil, "a refuted suspicion")
        var back = memberState("b", inc: 3)
        back.meta.returned = 3
        let out = a.onPacket(Packet([.alive(back)]), from: addr("b"), now: t0 + ms(20))
        #expect(a.members["b"]?.status == .alive)
        #expect(a.members["b"]?.returnedAt == t0 + ms(20))
        #expect(out.contains(.memberChanged(back, previous: .alive)), "routing hears of it at once")
        _ = a.onPacket(Packet([.alive(memberState("b", inc: 4, returned: 3))]), from: addr("b"), now: t0 + ms(30))
        #expect(a.members["b"]?.returnedAt == t0 + ms(20), "the same return once")
    }
}
