import Routing
import TandemCore
import Testing

/// `RouteView`: the membership view as routing sees it (witness filter, instance health,
/// hold-down, minority rule), on hand-made views.
@Suite struct RouteViewTests {
    func member(_ name: String, _ region: String, _ status: RouteMember.Status = .alive, witness: Bool = false) -> RouteMember {
        RouteMember(name: name, region: region, status: status, witness: witness)
    }

    func fresh(holdDown: Duration = .seconds(5)) -> RouteView {
        RouteView(holdDown: holdDown, selfName: "a1", selfRegion: "a", selfReturning: false, now: .s(0))
    }

    @Test func witnessesTakeNoContactsButCountTowardTheMajority() {
        var v = fresh()
        let w = member("w1", "w", witness: true)
        v.observe([member("a1", "a"), member("b1", "b"), w], instanceHealthy: [:], now: .s(0))
        // Not even as a known region with no node: a witness is no routing node at all.
        #expect(v.health(now: .s(0)).nodes == ["a": ["a1"], "b": ["b1"]])
        #expect(!v.minority)
        // b1 dies: with the witness alive, a1 is in the majority (2 of 3) and fails b1 over.
        v.observe([member("a1", "a"), member("b1", "b", .dead), w], instanceHealthy: [:], now: .s(1))
        #expect(!v.minority)
        #expect(v.health(now: .s(1)).nodes == ["a": ["a1"], "b": []])
    }

    @Test func anUnhealthyInstanceIsOutAndHeldDownWhenItRecovers() {
        var v = fresh(holdDown: .seconds(5))
        let all = [member("a1", "a"), member("b1", "b"), member("b2", "b")]
        v.observe(all, instanceHealthy: ["b1": true], now: .s(0))
        #expect(v.health(now: .s(0)).nodes == ["a": ["a1"], "b": ["b1", "b2"]])
        v.observe(all, instanceHealthy: ["b1": false], now: .s(1))
        #expect(v.health(now: .s(1)).nodes == ["a": ["a1"], "b": ["b2"]])
        // Healthy again (or its flag gone): back only after the hold-down.
        v.observe(all, instanceHealthy: [:], now: .s(2))
        #expect(v.health(now: .s(6.9)).nodes["b"] == ["b2"])
        #expect(v.health(now: .s(7)).nodes["b"] == ["b1", "b2"])
    }

    @Test func aSuspectServesADeadOrLeftNodeDoesNotAndReturnsAfterHoldDown() {
        var v = fresh(holdDown: .seconds(3))
        let others = [member("a2", "a"), member("a3", "a")]
        v.observe([member("a1", "a"), member("b1", "b"), member("c1", "c"), member("d1", "d")] + others, instanceHealthy: [:], now: .s(0))
        v.observe(
            [member("a1", "a"), member("b1", "b", .suspect), member("c1", "c", .dead), member("d1", "d", .left)] + others,
            instanceHealthy: [:], now: .s(1))
        #expect(!v.minority)  // 3 alive of the 5 that have not left
        #expect(v.health(now: .s(1)).nodes == ["a": ["a1", "a2", "a3"], "b": ["b1"], "c": [], "d": []])
        // c1 refutes its death: membership announces the return (`returnedAt`), and the
        // hold-down runs from it.
        var back = member("c1", "c")
        back.returnedAt = .s(2)
        v.observe([member("a1", "a"), member("b1", "b"), back, member("d1", "d", .left)] + others, instanceHealthy: [:], now: .s(2))
        #expect(v.health(now: .s(4.9)).nodes["c"] == [])
        #expect(v.health(now: .s(5)).nodes == ["a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1"], "d": []])
    }

    /// A member that came back (membership's `returnedAt`) is held down from then, whether or
    /// not this node ever saw it dead — its refutation may have outrun the death notice here.
    @Test func aReturnedMemberIsHeldDownEvenIfItNeverLookedDeadHere() {
        var v = fresh(holdDown: .seconds(3))
        let names = ["a1", "b1", "c1"]
        v.observe(names.map { member($0, String($0.prefix(1))) }, instanceHealthy: [:], now: .s(0))
        var back = names.map { member($0, String($0.prefix(1))) }
        back[1].returnedAt = .s(1)
        v.observe(back, instanceHealthy: [:], now: .s(1.5))
        #expect(v.health(now: .s(3.9)).nodes["b"] == [])
        #expect(v.health(now: .s(4)).nodes["b"] == ["b1"])
        // The same return seen again is not a new one.
        v.observe(back, instanceHealthy: [:], now: .s(5))
        #expect(v.health(now: .s(5)).nodes["b"] == ["b1"])
    }

    /// A node whose view froze as a minority still holds a returned member down from when it
    /// learned of the return, as the majority does; not from when its view thaws.
    @Test func aMinorityStillCountsReturns() {
        var v = fresh(holdDown: .seconds(3))
        let five = ["a1", "b1", "c1", "d1", "e1"]
        v.observe(five.map { member($0, String($0.prefix(1))) }, instanceHealthy: [:], now: .s(0))
        var cut = five.map { member($0, String($0.prefix(1)), ["a1", "b1"].contains($0) ? .alive : .suspect) }
        cut[1].returnedAt = .s(1)
        v.observe(cut, instanceHealthy: [:], now: .s(1))
        #expect(v.minority)
        #expect(v.health(now: .s(2)).nodes["b"] == [])
        var healed = five.map { member($0, String($0.prefix(1))) }
        healed[1].returnedAt = .s(1)
        v.observe(healed, instanceHealthy: [:], now: .s(3.5))
        #expect(!v.minority)
        #expect(v.health(now: .s(4)).nodes["b"] == ["b1"], "held down from the return, not from the thaw")
    }

    @Test func aNodeInTheMinorityKeepsItsPreviousView() {
        var v = fresh()
        let five = ["a1", "b1", "c1", "d1", "e1"]
        v.observe(five.map { member($0, String($0.prefix(1))) }, instanceHealthy: [:], now: .s(0))
        let before = v.health(now: .s(0))
        // Partitioned with one other node: 2 alive of 5. Nobody is failed over, not even on a
        // changed instance flag.
        let cut = five.map { member($0, String($0.prefix(1)), ["a1", "b1"].contains($0) ? .alive : .dead) }
        v.observe(cut, instanceHealthy: ["b1": false], now: .s(1))
        #expect(v.minority)
        #expect(v.health(now: .s(10)) == before)
        // Suspects do not count as alive for the rule (the minority freezes before anyone is
        // removed): 2 alive, 3 suspect is still a minority.
        v.observe(
            five.map { member($0, String($0.prefix(1)), ["a1", "b1"].contains($0) ? .alive : .suspect) }, instanceHealthy: [:], now: .s(2))
        #expect(v.minority)
        // Half is not a majority either: 3 alive of 6 known.
        var six = fresh()
        let names = ["a1", "b1", "c1", "d1", "e1", "f1"]
        six.observe(names.map { member($0, String($0.prefix(1))) }, instanceHealthy: [:], now: .s(0))
        six.observe(names.enumerated().map { member($1, String($1.prefix(1)), $0 < 3 ? .alive : .dead) }, instanceHealthy: [:], now: .s(1))
        #expect(six.minority)
        #expect(six.health(now: .s(1)).nodes["f"] == ["f1"])
        // The partition heals: 3 of 5 alive is a majority again, and the dead are failed over.
        v.observe(
            five.map { member($0, String($0.prefix(1)), $0 == "e1" || $0 == "d1" ? .dead : .alive) }, instanceHealthy: [:], now: .s(3))
        #expect(!v.minority)
        #expect(v.health(now: .s(3)).nodes == ["a": ["a1"], "b": ["b1"], "c": ["c1"], "d": [], "e": []])
    }

    @Test func twoNodesAreNeverAMinority() {
        var v = fresh()
        v.observe([member("a1", "a"), member("b1", "b")], instanceHealthy: [:], now: .s(0))
        // Left members do not count as known: 1 alive of 2 known (fewer than three) is no minority.
        v.observe([member("a1", "a"), member("b1", "b", .dead), member("c1", "c", .left)], instanceHealthy: [:], now: .s(1))
        #expect(!v.minority)
        #expect(v.health(now: .s(1)).nodes == ["a": ["a1"], "b": [], "c": []])
    }
}
