import Membership
import TandemCore
import Testing

/// Regressions from review: what a hostile or confused peer can send must not corrupt state.
@Suite struct HostileInputTests {
    /// Acks carrying extreme (but decodable) coordinates, including from an address that is not
    /// the probe target, never push this node's coordinate out of range, and distance estimates
    /// never trap.
    @Test func forgedAcksCannotCorruptTheCoordinate() {
        var d = Driver(makeNode("a", peers: ["b", "c"]))
        let wild = VivaldiCoordinate(
            vector: [99.9] + Array(repeating: 0, count: VivaldiCoordinate.dimensions - 1), error: 0.001, height: 99)
        for round in 0..<60 {
            d.run(until: d.now + ms(1000))
            guard let ping = d.pings.last else { continue }
            // A forger elsewhere answers first; then the target itself answers with a wild coordinate.
            d.deliver([.ack(seq: ping.seq, forwarded: false, coordinate: wild)], from: "mallory", at: d.now + ms(1))
            d.deliver([.ack(seq: ping.seq, forwarded: false, coordinate: wild)], from: ping.target, at: d.now + ms(1))
            let c = d.node.vivaldi.coordinate
            #expect(c.isValid, "round \(round): coordinate left the valid range: \(c)")
            _ = c.distance(to: wild)
        }
        // What this node sends must still decode at its peers.
        let ack = Packet([.ack(seq: 1, forwarded: false, coordinate: d.node.vivaldi.coordinate)]).encode()
        #expect((try? Packet.decode(ack)) != nil)
    }

    @Test func pushPullCannotGrowMembershipBeyondItsCap() {
        var node = makeNode("a")
        let flood = (0..<(MembershipInstance.maxMembers + 50)).map { memberState("x\($0)") }
        _ = node.onPushPullRequest(PushPullMessage(join: true, senderName: "x0", states: flood), from: addr("x0"), now: t0)
        #expect(node.members.count == MembershipInstance.maxMembers)
        #expect(node.clusterSize == MembershipInstance.maxMembers + 1)
    }

    @Test func aJoinAnsweredByOurselvesDoesNotCountAsJoined() {
        var node = makeNode("a")
        _ = node.join(seeds: ["other:7946"], now: t0)
        _ = node.onPushPullResponse(node.pushPullMessage(join: false), from: "other:7946", join: true, now: t0 + ms(5))
        #expect(!node.joined)
    }
}
