import Membership
import TandemCore
import Testing

/// Lifeguard §IV-C: whoever talks to a suspect (or a dead member) tells it first.
@Suite struct BuddyRuleTests {
    @Test func pingToASuspectCarriesItsSuspicion() throws {
        var a = makeNode("a", peers: ["b", "c"])
        _ = a.onPacket(Packet([.suspect(name: "c", incarnation: 1, from: "b")]), from: addr("b"), now: t0)
        var d = Driver(a, responsive: ["b"])
        d.run(until: t0 + .seconds(3), stopWhen: { $0.pings.contains { $0.target == "c" } })
        let ping = try #require(d.sent.first { $0.messages.contains { $0.pingTarget == "c" } })
        #expect(ping.to == addr("c"))
        #expect(ping.messages.first?.pingTarget == "c")
        // The notice rides right behind the ping, ahead of any other gossip.
        #expect(
            ping.messages.dropFirst().first == .suspect(name: "c", incarnation: 1, from: "a"),
            "ping to a suspect: \(ping.messages)")
        #expect(ping.messages.filter { $0.subject == "c" }.count == 1, "one notice about c, not two")
    }

    @Test func pingToAnAliveMemberCarriesNoNoticeAboutIt() throws {
        let a = makeNode("a", peers: ["b", "c"])
        var d = Driver(a, responsive: ["b", "c"])
        d.run(until: t0 + .seconds(5))
        #expect(d.pings.count >= 3)
        for s in d.sent where s.messages.first?.pingSeq != nil {
            let target = s.messages.first!.pingTarget!
            #expect(!s.messages.contains(.suspect(name: target, incarnation: 1, from: "a")))
        }
    }

    @Test func ackToASuspectSenderCarriesItsSuspicion() {
        var a = makeNode("a", peers: ["b", "c"])
        _ = a.onPacket(Packet([.suspect(name: "b", incarnation: 1, from: "c")]), from: addr("c"), now: t0)
        let out = a.onPacket(Packet([.ping(seq: 5, target: "a")]), from: addr("b"), now: t0 + ms(1))
        let reply = out.sends.first { $0.to == addr("b") }
        #expect(reply?.packet.messages.first == .ack(seq: 5, forwarded: false, coordinate: a.vivaldi.coordinate))
        #expect(reply?.packet.messages.contains(.suspect(name: "b", incarnation: 1, from: "a")) == true)
    }

    @Test func deadMembersAreRetriedWithTheirDeathNotice() {
        var a = makeNode("a", peers: ["b", "c"])
        _ = a.onPacket(Packet([.dead(name: "c", incarnation: 1, from: "b")]), from: addr("b"), now: t0)
        var d = Driver(a, responsive: ["b"])
        d.run(until: t0 + .seconds(1))
        let retries = d.sent.filter { $0.to == addr("c") }
        // lan retries one dead member every 200 ms.
        #expect(retries.count >= 4, "\(retries.count) retries of the dead member in 1 s")
        for r in retries {
            #expect(r.messages.first?.pingTarget == "c")
            #expect(r.messages.contains(.dead(name: "c", incarnation: 1, from: "a")))
        }
        #expect(d.node.stats.deadRetries == retries.count)
    }

    @Test func retriedDeadMemberThatIsBackRefutesAndRejoins() throws {
        var a = makeNode("a", peers: ["b", "c"])
        _ = a.onPacket(Packet([.dead(name: "c", incarnation: 1, from: "b")]), from: addr("b"), now: t0)
        var d = Driver(a, responsive: ["b"])
        d.run(until: t0 + .seconds(1), stopWhen: { $0.sent.contains { $0.to == addr("c") } })
        let retry = try #require(d.sent.first { $0.to == addr("c") })
        // c (alive after all) reads its death notice, refutes, and acks with the refutation.
        let seq = try #require(retry.messages.first?.pingSeq)
        let out = d.deliver([.ack(seq: seq, forwarded: false, coordinate: nil), .alive(memberState("c", inc: 2))], from: "c")
        #expect(d.node.members["c"]?.status == .alive)
        #expect(d.node.members["c"]?.incarnation == 2)
        #expect(out.pushPulls.map(\.to) == [addr("c")], "a member back from the dead gets a full sync")
    }
}

/// Lifeguard §IV-A: local health awareness.
@Suite struct AwarenessTests {
    @Test func failedProbeWithNoHelpersRaisesAwareness() throws {
        let a = makeNode("a", peers: ["b"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let first = try #require(d.pings.first)
        #expect(first.target == "b")
        #expect(d.node.awareness == 0)
        d.run(until: first.at + .seconds(1) - ms(1))
        #expect(d.node.awareness == 0)
        #expect(d.node.members["b"]?.status == .alive)
        d.run(until: first.at + .seconds(1))
        #expect(d.node.awareness == 1)
        #expect(d.node.members["b"]?.status == .suspect)
        #expect(d.node.stats.suspicionsRaised == 1)
    }

    /// 4 members: a failed direct ping goes to 2 helpers; each missing nack raises awareness by one.
    @Test(arguments: [0, 1, 2])
    func missingNacksRaiseAwareness(nacks: Int) throws {
        let a = makeNode("a", peers: ["b", "c", "d"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let ping = try #require(d.pings.first)
        d.run(until: ping.at + ms(500))
        let helpers = d.sent.filter { $0.messages.contains { $0.isPingReq } }.map(\.to)
        #expect(helpers.count == 2)
        d.run(until: ping.at + ms(900))
        for h in helpers.prefix(nacks) {
            d.deliver([.nack(seq: ping.seq)], from: String(h.dropLast(5)), at: ping.at + ms(900))
        }
        d.run(until: ping.at + .seconds(1))
        #expect(d.node.stats.nacks == nacks)
        #expect(d.node.awareness == 2 - nacks, "2 helpers, \(nacks) nacks")
        #expect(d.node.members[ping.target]?.status == .suspect, "no ack is no ack, nacks or not")
    }

    @Test func ackLowersAwareness() throws {
        let a = makeNode("a", peers: ["b"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let first = try #require(d.pings.first)
        d.run(until: first.at + .seconds(1))
        #expect(d.node.awareness == 1)
        // The second probe (sent as the first ended) is answered.
        let second = try #require(d.pings.last)
        #expect(second.at == first.at + .seconds(1))
        d.deliver([.ack(seq: second.seq, forwarded: false, coordinate: nil)], from: "b", at: second.at + ms(3))
        #expect(d.node.awareness == 0)
        #expect(d.node.stats.acks == 1)
    }

    @Test func awarenessIsCappedBelowTheMaxMultiplier() {
        let a = makeNode("a", peers: ["b", "c", "d", "e", "f"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(120))
        #expect(d.node.awareness == MembershipSettings.lan.awarenessMaxMultiplier - 1)
    }

    @Test func probeIntervalScalesWithAwareness() throws {
        let a = makeNode("a", peers: ["b"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(6))
        let probes = d.pings.map(\.at)
        try #require(probes.count >= 3)
        // awareness 0 → 1 s; after the failure, awareness 1 → 2 s (the probe timeout stretches too).
        #expect(probes[1] - probes[0] == .seconds(1))
        #expect(probes[2] - probes[1] == .seconds(2))
    }

    /// Found by the crash/restart simulation: a probe sent to a member's old process (or before it
    /// refuted) ended after the member was back at a higher incarnation, and the core suspected the
    /// new incarnation, which had never failed a probe.
    @Test(arguments: ["refuted", "restarted"])
    func probeFailureIsEvidenceAgainstTheProbedIncarnationOnly(how: String) throws {
        let a = makeNode("a", peers: ["b"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let ping = try #require(d.pings.first)
        if how == "restarted" {
            // b is declared dead while the ping is unanswered, then comes back with a new incarnation.
            d.deliver([.dead(name: "b", incarnation: 1, from: "x")], from: "b", at: ping.at + ms(100))
            #expect(d.node.members["b"]?.status == .dead)
        }
        d.deliver([.alive(memberState("b", inc: 2))], from: "b", at: ping.at + ms(200))
        #expect(d.node.members["b"]?.status == .alive)
        d.run(until: ping.at + .seconds(1))
        #expect(d.node.members["b"]?.status == .alive, "the probe of incarnation 1 failed, not incarnation 2")
        #expect(d.node.stats.suspicionsRaised == 0)
        #expect(!d.directives.changes.contains { $0.state.status == .suspect })
    }

    @Test func probeTimeoutScalesWithAwareness() throws {
        let a = makeNode("a", peers: ["b", "c", "d", "e"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let first = try #require(d.pings.first)
        d.run(until: first.at + .seconds(1))
        let w = d.node.awareness
        #expect(w == 3, "3 helpers, none sent a nack")
        let second = try #require(d.pings.last)
        #expect(second.at == first.at + .seconds(1))
        // The direct wait stretches to 500 ms × (awareness + 1) before helpers are asked.
        let stretched = second.at + ms(500) * Double(w + 1)
        d.run(until: stretched - ms(1))
        #expect(
            !d.sent.contains { $0.messages.first == .pingReq(seq: second.seq, target: second.target, targetAddress: addr(second.target)) })
        d.run(until: stretched)
        #expect(
            d.sent.contains {
                $0.at == stretched
                    && $0.messages.first == .pingReq(seq: second.seq, target: second.target, targetAddress: addr(second.target))
            })
    }
}

/// SWIM §3.1 indirect probing, with Lifeguard's nacks (§IV-A).
@Suite struct IndirectProbeTests {
    @Test func directTimeoutSendsPingReqsToUpToKHelpers() throws {
        let a = makeNode("a", peers: ["b", "c", "d", "e", "f"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let ping = try #require(d.pings.first)
        d.run(until: ping.at + ms(499))
        #expect(!d.sent.contains { $0.messages.contains { $0.isPingReq } }, "too early for ping-req")
        d.run(until: ping.at + ms(500))
        let reqs = d.sent.filter { $0.messages.first?.isPingReq == true }
        #expect(reqs.count == MembershipSettings.lan.indirectChecks)
        #expect(Set(reqs.map(\.to)).count == reqs.count, "distinct helpers")
        #expect(!reqs.contains { $0.to == addr(ping.target) }, "the target is no helper")
        for r in reqs {
            #expect(r.messages.first == .pingReq(seq: ping.seq, target: ping.target, targetAddress: addr(ping.target)))
            #expect(r.at == ping.at + ms(500))
        }
        #expect(d.node.stats.indirectProbes == 3)
    }

    @Test func fewerHelpersThanKUsesAllThereAre() throws {
        let a = makeNode("a", peers: ["b", "c"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let ping = try #require(d.pings.first)
        d.run(until: ping.at + ms(500))
        let reqs = d.sent.filter { $0.messages.first?.isPingReq == true }
        #expect(reqs.count == 1)
    }

    @Test func suspectMembersAreNotAskedToHelp() throws {
        var a = makeNode("a", peers: ["b", "c", "d"])
        _ = a.onPacket(Packet([.suspect(name: "d", incarnation: 1, from: "c")]), from: addr("c"), now: t0)
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let ping = try #require(d.pings.first)
        d.run(until: ping.at + ms(500))
        let helpers = d.sent.filter { $0.messages.first?.isPingReq == true }.map(\.to)
        #expect(!helpers.contains(addr("d")))
        #expect(helpers.count == (ping.target == "d" ? 2 : 1))
    }

    @Test func forwardedAckSavesTheTarget() throws {
        let a = makeNode("a", peers: ["b", "c", "d", "e"])
        var d = Driver(a)
        d.run(until: t0 + .seconds(2), stopWhen: { !$0.pings.isEmpty })
        let ping = try #require(d.pings.first)
        d.run(until: ping.at + ms(500))
        let helper = try #require(d.sent.first { $0.messages.first?.isPingReq == true })
        d.deliver(
            [.ack(seq: ping.seq, forwarded: true, coordinate: nil)], from: String(helper.to.dropLast(5)),
            at: ping.at + ms(700))
        d.run(until: ping.at + .seconds(1))
        #expect(d.node.members[ping.target]?.status == .alive)
        #expect(d.node.awareness == 0)
        #expect(d.node.stats.acks == 1)
    }

    @Test func helperRelaysPingAndForwardsAck() throws {
        var d = Driver(makeNode("a", peers: ["b", "c"]))
        d.tick(at: t0)
        let out = d.deliver([.pingReq(seq: 77, target: "c", targetAddress: addr("c"))], from: "b", at: t0 + ms(10))
        let relay = try #require(out.sends.first { $0.to == addr("c") })
        let relaySeq = try #require(relay.packet.messages.first?.pingSeq)
        #expect(relay.packet.messages.first?.pingTarget == "c")
        #expect(d.node.stats.indirectRelays == 1)

        let fwd = d.deliver([.ack(seq: relaySeq, forwarded: false, coordinate: nil)], from: "c", at: t0 + ms(20))
        let toB = fwd.sends.filter { $0.to == addr("b") }
        #expect(toB.count == 1)
        #expect(toB.first?.packet.messages.first == .ack(seq: 77, forwarded: true, coordinate: nil))

        // Answered: no nack later, and a duplicate ack is not forwarded twice.
        let dup = d.deliver([.ack(seq: relaySeq, forwarded: false, coordinate: nil)], from: "c", at: t0 + ms(21))
        #expect(dup.sentMessages.isEmpty)
        d.run(until: t0 + .seconds(2))
        #expect(!d.sent.flatMap(\.messages).contains(.nack(seq: 77)))
    }

    @Test func helperSendsNackAfter80PercentOfProbeTimeout() throws {
        var d = Driver(makeNode("a", peers: ["b", "c"]))
        d.tick(at: t0)
        let start = t0 + ms(10)
        let out = d.deliver([.pingReq(seq: 77, target: "c", targetAddress: addr("c"))], from: "b", at: start)
        let relaySeq = try #require(out.sends.first { $0.to == addr("c") }?.packet.messages.first?.pingSeq)
        #expect(d.node.nextDeadline <= start + ms(400))
        d.run(until: start + ms(399))
        #expect(!d.sent.flatMap(\.messages).contains(.nack(seq: 77)))
        d.run(until: start + ms(400))
        let nacks = d.sent.filter { $0.messages.contains(.nack(seq: 77)) }
        #expect(nacks.count == 1)
        #expect(nacks.first?.to == addr("b"))
        #expect(nacks.first?.at == start + ms(400))
        // A late ack after the nack is not forwarded.
        let late = d.deliver([.ack(seq: relaySeq, forwarded: false, coordinate: nil)], from: "c", at: start + ms(450))
        #expect(!late.sentMessages.contains { $0.to == addr("b") })
    }

    @Test func pingReqAboutSelfIsIgnored() {
        var a = makeNode("a", peers: ["b"])
        let out = a.onPacket(Packet([.pingReq(seq: 1, target: "a", targetAddress: addr("a"))]), from: addr("b"), now: t0)
        #expect(out.sends.isEmpty)
        #expect(a.stats.indirectRelays == 0)
    }

    @Test func pingForSomeoneElseIsNotAnswered() {
        // A new process on a reused address must not answer for the old one.
        var a = makeNode("a", peers: ["b"])
        let out = a.onPacket(Packet([.ping(seq: 1, target: "old-a")]), from: addr("b"), now: t0)
        #expect(out.sends.isEmpty)
        #expect(a.stats.pingsForOthers == 1)
    }

    @Test func packetsStayWithinTheDatagramLimitInALargeCluster() {
        // 300 members with long metadata: far more queued updates than one datagram holds.
        var a = makeNode("a")
        let states = (0..<300).map { i in
            MemberState(
                name: "member-\(i)-" + String(repeating: "x", count: 40), address: "10.1.\(i / 250).\(i % 250):7946",
                incarnation: UInt64(i), status: .alive,
                meta: MemberMeta(region: "region-\(i % 7)", api: "10.1.\(i / 250).\(i % 250):8080"))
        }
        _ = a.onPushPullResponse(
            PushPullMessage(join: false, senderName: "member-0", states: states),
            from: "10.1.0.0:7946", join: false, now: t0)
        #expect(a.clusterSize == 301)
        var d = Driver(a)
        d.run(until: t0 + .seconds(10))
        #expect(d.sent.count > 20)
        for s in d.sent {
            let bytes = s.packet.encode()
            #expect(bytes.count <= Packet.maxSize)
            #expect((try? Packet.decode(bytes)) == s.packet)
        }
        // Gossip packets are filled, not sent one update at a time.
        #expect(d.sent.contains { $0.packet.encode().count > 1000 })
    }
}
