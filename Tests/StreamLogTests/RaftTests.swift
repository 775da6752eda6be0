import StreamLog
import TandemCore
import Testing

/// Scenarios from the Raft paper and thesis, each a short script over `RaftTestCluster`.
@Suite struct RaftTests {
    @Test func threeNodesElectOneLeaderAndReplicate() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        #expect(c.leaders == ["a"])
        #expect(c["b"].leader == "a" && c["c"].leader == "a")
        try c.propose("a", "hello")
        c.stabilize()
        c.advance(.milliseconds(200))  // a heartbeat carries the commit index to followers
        for id: NodeID in ["a", "b", "c"] {
            #expect(c.appliedRecords(id) == ["hello"], "\(id)")
        }
        // Index 1 is the leader's no-op, then the record.
        #expect(c.terms("b") == [1, 1])
        #expect(throws: RaftError.self) { try c.propose("b", "not here") }
        do {
            try c.propose("b", "x")
        } catch {
            #expect(error.code == .notLeader && error.leaderHint == "a")
        }
    }

    /// Figure 7: the leader of term 8 repairs followers missing entries, holding extra ones, or
    /// both, so that every log ends up equal to the leader's.
    @Test func figure7FollowersAreRepaired() {
        let leader: [UInt64] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
        let c = RaftTestCluster(
            voters: ["leader", "a", "b", "c", "d", "e", "f"],
            logs: [
                "leader": leader,
                "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
                "b": [1, 1, 1, 4],
                "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
                "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
                "e": [1, 1, 1, 4, 4, 4, 4],
                "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]
            ],
            terms: ["leader": 7, "a": 7, "b": 7, "c": 7, "d": 7, "e": 7, "f": 7])
        c.elect("leader")
        #expect(c.leaders == ["leader"])
        #expect(c["leader"].term == 8)
        c.advance(.milliseconds(300))
        let expected = leader + [8]  // plus the new leader's no-op
        for id: NodeID in ["a", "b", "c", "d", "e", "f"] {
            #expect(c.terms(id) == expected, "\(id)")
        }
        #expect(c["leader"].commitIndex == 11)
    }

    /// Figure 8: a leader must not commit an entry of an earlier term by counting replicas —
    /// such an entry on a majority can still be overwritten. It commits only under an entry of
    /// the leader's own term.
    @Test func figure8OldTermEntryIsNotCommittedByCounting() throws {
        // (c) of Figure 8: s1 has 2@2 on s2, s5 has 2@3 from its short reign in term 3.
        let c = RaftTestCluster(
            voters: ["s1", "s2", "s3", "s4", "s5"],
            logs: ["s1": [1, 2], "s2": [1, 2], "s3": [1], "s4": [1], "s5": [1, 3]],
            terms: ["s1": 3, "s2": 3, "s3": 3, "s4": 3, "s5": 3])
        c.isolated = ["s5"]
        // s1 wins term 4 and replicates 2@2 to s3 and s4, but its own no-op (3@4) is lost.
        c.rewrite = { m in
            guard case .append(let prevIndex, let prevTerm, let entries, let commit, let persisted) = m.message.body else { return m }
            var held = m
            held.message.body = .append(
                prevIndex: prevIndex, prevTerm: prevTerm, entries: entries.filter { $0.index < 3 }, commit: commit, persisted: persisted)
            return held
        }
        c.elect("s1")
        #expect(c.leaders == ["s1"] && c["s1"].term == 4)
        c.advance(.milliseconds(50))
        #expect(try c["s3"].term(at: 2) == 2 && c["s4"].term(at: 2) == 2)  // 2@2 is on all of s1–s4
        #expect(c["s1"].commitIndex < 2, "an entry of term 2 must not commit by counting in term 4")

        // Why: s1 crashes and s5 (last term 3) can win with s2, s3, s4 and overwrite index 2.
        c.isolated = ["s1"]
        c.rewrite = { $0 }
        c.now = c.now + .seconds(2)  // past everyone's lease from s1
        c.elect("s5")
        if c["s5"].role != .leader { c.elect("s5") }  // the first pre-vote may only teach it term 4
        #expect(c["s5"].role == .leader && c["s5"].term > c["s1"].term)
        c.advance(.milliseconds(50))
        for id: NodeID in ["s2", "s3", "s4"] { #expect(try c["s5"].term(at: 2) == 3 && c[id].term(at: 2) == 3, "\(id)") }
    }

    @Test func figure8CommitsThroughAnEntryOfItsOwnTerm() throws {
        let c = RaftTestCluster(
            voters: ["s1", "s2", "s3", "s4", "s5"],
            logs: ["s1": [1, 2], "s2": [1, 2], "s3": [1], "s4": [1], "s5": [1, 3]],
            terms: ["s1": 3, "s2": 3, "s3": 3, "s4": 3, "s5": 3])
        c.isolated = ["s5"]
        c.elect("s1")
        c.stabilize()
        // The no-op 3@4 reached a majority: it commits, and 2@2 with it.
        #expect(c["s1"].commitIndex == 3)
        #expect(try c["s1"].term(at: 2) == 2)
    }

    /// A node cut off from the others keeps timing out, but with pre-vote its term does not
    /// grow, and when it comes back the leader (which followers still hear) is not disturbed.
    @Test func preVoteKeepsARejoiningNodeFromDisruptingTheLeader() {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        let term = c["a"].term
        c.isolated = ["c"]
        c.advance(.seconds(5))
        #expect(c["c"].term == term, "pre-vote must not bump the term")
        #expect(c["c"].metrics.preVotesStarted >= 2)
        c.isolated = []
        c.advance(.seconds(3))
        #expect(c.leaders == ["a"])
        #expect(c["a"].term == term)
        #expect(c["c"].leader == "a")
    }

    /// §6.2: a leader that cannot reach a quorum steps down within about an election timeout,
    /// and the majority side elects a new one.
    @Test func checkQuorumStepsDownAnIsolatedLeader() {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.isolated = ["a"]
        c.advance(.milliseconds(2100))
        #expect(c["a"].role == .follower)
        #expect(c["a"].metrics.checkQuorumStepDowns == 1)
        c.advance(.seconds(3))
        #expect(c.leaders.count == 1 && c.leaders != ["a"] || c.leaders.contains("b") || c.leaders.contains("c"))
        #expect(!c.leaders.contains("a"))
    }

    @Test func leadershipTransferCatchesUpTheTargetThenHandsOver() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.isolated = ["c"]
        for i in 0..<5 { try c.propose("a", "r\(i)") }
        c.stabilize()
        c.isolated = []
        try c["a"].transferLeadership(to: "c", now: c.now)
        #expect(throws: RaftError.self) { try c.propose("a", "during transfer") }
        c.process("a")
        c.stabilize()
        #expect(c.leaders == ["c"])
        #expect(c["c"].term == c["a"].term && c["a"].leader == "c")
        #expect(c["c"].lastIndex == 7)  // a's no-op, 5 records, c's no-op
    }

    @Test func leadershipTransferIsAbandonedAfterAnElectionTimeout() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.isolated = ["c"]
        try c["a"].transferLeadership(to: "c", now: c.now)
        c.advance(.milliseconds(1100))
        #expect(c["a"].transfer == nil)
        #expect(c["a"].metrics.transfersAborted == 1)
        #expect(c.leaders == ["a"])
        try c.propose("a", "accepted again")
    }

    /// A witness votes and stores the log, so it makes a quorum, but it never campaigns and is
    /// never chosen to take over.
    @Test func witnessVotesAndStoresButNeverLeads() throws {
        let c = RaftTestCluster(voters: ["a", "b"], witnesses: ["w"])
        #expect(!c["w"].isPromotable)
        c.elect("a")
        c.isolated = ["b"]
        try c.propose("a", "with the witness")
        c.stabilize()
        #expect(c["a"].commitIndex == 2, "leader + witness are a quorum of three")
        #expect(c["w"].lastIndex == 2)
        #expect(throws: RaftError.self) { try c["a"].transferLeadership(to: "w", now: c.now) }
        try c["a"].transferLeadership(now: c.now)
        #expect(c["a"].transfer?.target == "b")

        // Only the witness is left with the leader gone: it never starts an election.
        c.isolated = ["a", "b"]
        let term = c["w"].term
        c.advance(.seconds(5))
        #expect(c["w"].role == .follower && c["w"].term == term)
        #expect(c["w"].metrics.preVotesStarted == 0 && c["w"].metrics.electionsStarted == 0)
    }

    /// §4.1: one server at a time; the next change waits for the previous one to commit; a
    /// leader that removes itself steps down once that commits.
    @Test func singleServerMembershipChange() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.add("d", configuration: RaftConfiguration(voters: []))  // learns its configuration from the log
        let index = try c["a"].proposeConfigurationChange(.addVoter("d"), now: c.now)
        #expect(c["a"].configuration.voters == ["a", "b", "c", "d"], "in effect once appended")
        #expect(throws: RaftError.self) { try c["a"].proposeConfigurationChange(.remove("b"), now: c.now) }
        c.process("a")
        c.stabilize()
        c.advance(.milliseconds(200))
        #expect(c["a"].commitIndex >= index)
        #expect(c["d"].configuration.voters == ["a", "b", "c", "d"])
        #expect(c["d"].lastIndex == c["a"].lastIndex)

        try c["a"].proposeConfigurationChange(.remove("a"), now: c.now)
        c.process("a")
        c.stabilize()
        #expect(c["a"].role == .follower, "a removed leader steps down once its removal commits")
        c.advance(.seconds(3))
        #expect(c.leaders.count == 1 && !c.leaders.contains("a"))
        let newLeader = c.leaders[0]
        #expect(c[newLeader].configuration.voters == ["b", "c", "d"])
        try c.propose(newLeader, "after the change")
        c.stabilize()
        c.advance(.milliseconds(200))
        #expect(c.appliedRecords("d") == ["after the change"])
    }

    /// A member being removed gets entries up to the removing configuration, then (once that
    /// commits) the commit index, and nothing more: it knows it is out (`isRemoved`), and its
    /// log ends at its removal, so it has acked nothing a later configuration could count.
    /// Added back, it is a member again; a newcomer still catching up is never "removed".
    @Test func aRemovedMemberLearnsItIsOut() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.advance(.milliseconds(200))
        #expect(!c["c"].isRemoved)
        let removal = try c["a"].proposeConfigurationChange(.remove("c"), now: c.now)
        try c.propose("a", "right after")
        c.advance(.milliseconds(300))
        #expect(c["a"].configurationCommitted && c["a"].progress["c"] == nil)
        #expect(c["c"].lastIndex == removal && c["c"].commitIndex == removal)
        #expect(c["c"].isRemoved && !c["b"].isRemoved && !c["a"].isRemoved)
        try c.propose("a", "later")
        c.advance(.milliseconds(300))
        #expect(c["c"].lastIndex == removal, "nothing past its removal")
        #expect(c.appliedRecords("b") == ["right after", "later"])

        // Added back: it gets the log again and is a member.
        _ = try c["a"].proposeConfigurationChange(.addVoter("c"), now: c.now)
        c.process("a")
        c.advance(.milliseconds(300))
        #expect(!c["c"].isRemoved && c["c"].configuration.contains("c"))
        #expect(c["c"].lastIndex == c["a"].lastIndex)

        // A newcomer replaying the log through an old removal of itself is not removed.
        c.add("c2", configuration: RaftConfiguration(voters: []))
        #expect(!c["c2"].isRemoved)
    }

    /// A removed member that stays silent is dropped by the leader after a check-quorum period;
    /// when it comes back it learns from the leader that it is out.
    @Test func aSilentRemovedMemberIsDropped() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.advance(.milliseconds(200))
        c.isolated = ["c"]
        let removal = try c["a"].proposeConfigurationChange(.remove("c"), now: c.now)
        c.process("a")
        c.advance(.milliseconds(200))
        #expect(c["a"].configurationCommitted && c["a"].progress["c"] != nil)
        c.advance(.seconds(3))
        #expect(c["a"].progress["c"] == nil && c["a"].role == .leader)
        #expect(!c["c"].isRemoved, "it never heard")

        // Back on the network it campaigns on its old configuration; the leader's answer to its
        // pre-vote tells it it is out: it stops campaigning and the shell may drop its data.
        let term = c["a"].term
        c.isolated = []
        c.advance(.seconds(3))
        #expect(c["c"].isRemoved && !c["c"].isPromotable)
        #expect(c.leaders == ["a"] && c["a"].term == term, "the removed node disrupted the group")
        let elections = c["c"].metrics.preVotesStarted
        c.advance(.seconds(5))
        #expect(c["c"].metrics.preVotesStarted == elections, "it keeps campaigning")

        // Added back, it is a member again: replication makes it forget the notice, and a copy of
        // the notice arriving late (reordered) is ignored, so entries it acks are never dropped.
        // Here it first gets only the entries before the one adding it back (the first batch cut
        // short, then nothing more for a while).
        let removed = RaftMessage(from: "a", term: c["a"].term, body: .removed(configurationIndex: removal))
        try c.propose("a", "while c was out")
        c.stabilize()
        let readd = try c["a"].proposeConfigurationChange(.addVoter("c"), now: c.now)
        final class Once { var cut = false }
        let once = Once()
        c.dropIf = { m, _ in m.to == "c" && once.cut }
        c.rewrite = { m in
            guard m.to == "c", case .append(let prev, let prevTerm, let entries, let commit, let persisted) = m.message.body,
                entries.contains(where: { $0.index == readd })
            else { return m }
            once.cut = true
            var cut = m
            cut.message.body = .append(
                prevIndex: prev, prevTerm: prevTerm, entries: entries.filter { $0.index < readd },
                commit: commit, persisted: persisted)
            return cut
        }
        c.process("a")
        c.advance(.milliseconds(300))
        #expect(c["c"].lastIndex == readd - 1 && c["c"].leader == "a", "it should hold everything before its re-add")
        #expect(!c["c"].isRemoved, "replication from a leader did not clear the notice")
        c["c"].step(removed, now: c.now)
        #expect(!c["c"].isRemoved, "a late notice would drop entries it has acked")
        c.rewrite = { $0 }
        c.dropIf = { _, _ in false }
        c.advance(.milliseconds(500))
        #expect(!c["c"].isRemoved && c["c"].isPromotable && c["c"].lastIndex == c["a"].lastIndex)
    }

    /// A member that got the entry removing it but never heard that it committed (its acks were
    /// lost, then the leader dropped it as silent) cannot campaign on a configuration without
    /// itself; it asks the members, and learns from them that it is out.
    @Test func aMemberThatMissedItsRemovalsCommitAsks() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.advance(.milliseconds(200))
        c.dropIf = { _, from in from == "c" }
        let removal = try c["a"].proposeConfigurationChange(.remove("c"), now: c.now)
        c.process("a")
        c.advance(.seconds(3))
        #expect(c["c"].lastIndex >= removal && c["c"].commitIndex < removal && c["a"].commitIndex >= removal)
        #expect(c["a"].progress["c"] == nil, "the leader still tracks c")
        #expect(!c["c"].isRemoved && !c["c"].isPromotable)
        c.dropIf = { _, _ in false }
        c.advance(.seconds(3))
        #expect(c["c"].isRemoved, "c never learned that it was removed")
        #expect(c.leaders == ["a"])
    }

    /// A follower whose next entry was trimmed by retention is told to start after the trim
    /// point (those records expired) and then catches up normally.
    @Test func laggingFollowerBehindTheTrimPointGetsInstallStart() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.stabilize()
        c.isolated = ["c"]
        for i in 0..<20 { try c.propose("a", "r\(i)") }
        c.stabilize()
        c.advance(.milliseconds(200))
        for id: NodeID in ["a", "b"] { c.storages[id]!.trim(before: 15) }
        c.isolated = []
        c.advance(.milliseconds(300))
        #expect(c["a"].metrics.installStartsSent >= 1)
        #expect(c["c"].metrics.installStartsReceived == 1)
        #expect(c.storages["c"]!.firstIndex == 15)
        #expect(c["c"].lastIndex == c["a"].lastIndex)
        #expect(c.terms("c") == Array(c.terms("a").suffix(c.terms("c").count)))
        #expect(c.appliedRecords("c") == (13..<20).map { "r\($0)" })
        #expect(c["a"].progress["c"]?.match == c["a"].lastIndex)
    }

    /// A follower whose ack arrives after others already committed those entries learns the
    /// commit index from the answer to that ack, not at the next heartbeat or batch (readers on
    /// followers wait for it).
    @Test func aLateAckOfCommittedEntriesGetsTheCommitIndexAtOnce() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.stabilize()
        #expect(c["a"].progress["c"]?.state == .replicate)
        try c.propose("a", "x")
        let index = c["a"].lastIndex
        // Both appends are out, carrying the old commit index; b's ack commits the entry. The
        // leader's note that the entry is on its disk is lost on the way to c (else c would
        // commit by itself, and this would not test the leader's answer).
        let toC = c.inFlight.filter { if $0.to == "c", case .append = $0.message.body { true } else { false } }
        c.inFlight.removeAll { $0.to == "c" }
        #expect(toC.count == 1)
        c.stabilize()
        #expect(c["a"].commitIndex == index && c["b"].commitIndex == index)
        #expect(c["c"].commitIndex < index)
        // Only then does c get its append and ack it; time does not move (no heartbeat).
        c.inFlight = toC
        c.stabilize()
        #expect(c["c"].commitIndex == index, "the leader answers a late ack of committed entries with the commit index")
        #expect(c.appliedRecords("c") == ["x"])
    }

    /// A restarted member starts from the newest configuration entry in its log (the shell
    /// keeps a list of them), not the one the group was created with; one past the log's end
    /// (lost in a crash) is ignored, and one a new leader overwrites gives way to the one before.
    @Test func aRestartedMemberUsesTheNewestConfigurationInItsLog() {
        let base = RaftConfiguration(voters: ["a", "b", "c"])
        let added = RaftConfiguration(voters: ["a", "b", "c", "d"])
        func node(_ later: [(index: UInt64, configuration: RaftConfiguration)]) -> (RaftNode, MemoryLogStorage) {
            let storage = MemoryLogStorage()
            storage.append((1...3).map { LogEntry(index: $0, term: 1) })
            storage.sync()
            return (
                RaftNode(
                    id: "b", configuration: base, laterConfigurations: later, hardState: HardState(term: 1), storage: storage,
                    settings: RaftTestCluster.testSettings, seed: 1, now: Instant(nanoseconds: 1)), storage
            )
        }
        #expect(node([(2, added)]).0.configuration == added)
        #expect(node([(5, added)]).0.configuration == base, "an entry past the log's end was lost")
        let (b, _) = node([(3, added)])
        // A leader of term 2 whose log matches through 2 overwrites entry 3.
        b.step(
            RaftMessage(
                from: "a", term: 2,
                body: .append(prevIndex: 2, prevTerm: 1, entries: [LogEntry(index: 3, term: 2)], commit: 0, persisted: 0)),
            now: Instant(nanoseconds: 2))
        #expect(b.configuration == base)
    }

    /// Why a departed voter is removed before its replacement is added (`Streams.replacementStep`):
    /// with c dead and the newcomer d not (yet) answering, adding d first makes 4 voters with
    /// quorum 3 and only a and b to ack — nothing commits, the change included. Removing c
    /// first leaves a and b a quorum of 2, and then of {a, b, d} while d catches up.
    @Test func replacingADeadVoterRemovesFirst() throws {
        for removeFirst in [true, false] {
            let c = RaftTestCluster(voters: ["a", "b", "c"])
            c.add("d", configuration: RaftConfiguration(voters: []))
            c.elect("a")
            c.advance(.milliseconds(200))
            c.isolated = ["c", "d"]
            let changes: [ConfigurationChange] = removeFirst ? [.remove("c"), .addVoter("d")] : [.addVoter("d"), .remove("c")]
            for change in changes {
                _ = try? c["a"].proposeConfigurationChange(change, now: c.now)
                c.process("a")
                c.advance(.milliseconds(300))
            }
            try? c.propose("a", "after")
            c.advance(.milliseconds(300))
            if removeFirst {
                #expect(c["a"].configuration == RaftConfiguration(voters: ["a", "b", "d"]) && c["a"].configurationCommitted)
                #expect(c.appliedRecords("a") == ["after"], "the group commits without c and d")
            } else {
                #expect(!c["a"].configurationCommitted, "adding first: the change itself cannot commit")
                #expect(c.appliedRecords("a").isEmpty)
            }
        }
    }

    @Test func aFollowerAcksOnlyAfterPersisting() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        try c["a"].propose([[1, 2, 3]], timestamp: 5, now: c.now)
        let rd = c["a"].ready()
        #expect(rd.messages.count == 2 && rd.messagesAfterPersist.isEmpty, "leader replicates before its own fsync")
        #expect(rd.entries.count == 1)
        c["b"].step(rd.messages.first { $0.to == "b" }!.message, now: c.now)
        let fb = c["b"].ready()
        #expect(fb.entries.count == 1 && fb.messages.isEmpty && fb.messagesAfterPersist.count == 1)
    }
}

/// A follower that holds an entry of the current term on disk, and has heard that the leader
/// does too, knows it is committed where the two are a majority — without waiting for the
/// leader to count its ack (one round trip fewer for a put forwarded through it).
@Suite struct FollowerCommitTests {
    /// The instant-disk shell of `RaftTestCluster.process`, without sending anything.
    static func persist(_ c: RaftTestCluster, _ id: NodeID, _ rd: RaftReady) {
        c.storages[id]!.append(rd.entries)
        c.storages[id]!.sync()
        if let p = rd.persistedPosition { c[id].appended(through: p, now: c.now) }
    }

    @Test func aFollowerCommitsWhatItAndTheLeaderHoldOnDisk() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.advance(.milliseconds(200))
        let (a, b) = (c["a"], c["b"])
        let before = b.commitIndex
        let index = try a.propose([[1, 2, 3]], timestamp: 0, now: c.now).upperBound
        let rd = a.ready()
        // The leader replicates before its own fsync, and says so.
        guard let toB = rd.messages.first(where: { $0.to == "b" }),
            case .append(_, _, let entries, _, let persisted) = toB.message.body
        else {
            Issue.record("no append to b: \(rd.messages)")
            return
        }
        #expect(entries.last?.index == index && persisted < index)
        b.step(toB.message, now: c.now)
        let acks = b.ready()
        Self.persist(c, "b", acks)
        #expect(b.commitIndex == before, "only b's copy is known durable")

        // The leader's fsync: it tells b (and c), whose acks it has not seen.
        Self.persist(c, "a", rd)
        let after = a.ready()
        #expect(a.commitIndex < index, "the leader has counted no ack yet")
        let notices = after.messages.filter { if case .persisted(index) = $0.message.body { true } else { false } }
        #expect(Set(notices.map(\.to)) == ["b", "c"], "\(after.messages)")
        b.step(notices.first { $0.to == "b" }!.message, now: c.now)
        #expect(b.commitIndex == index)
        #expect(b.ready().committedEntries.last?.index == index)
        // c got the notice but not the entry: nothing to commit there.
        c["c"].step(notices.first { $0.to == "c" }!.message, now: c.now)
        #expect(c["c"].commitIndex == before)
    }

    /// The other order: the leader's notice first, then the follower's own fsync.
    @Test func theFollowersOwnFsyncCanComeLast() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        c.advance(.milliseconds(200))
        let (a, b) = (c["a"], c["b"])
        let index = try a.propose([[7]], timestamp: 0, now: c.now).upperBound
        let rd = a.ready()
        b.step(rd.messages.first { $0.to == "b" }!.message, now: c.now)
        let pending = b.ready()
        Self.persist(c, "a", rd)
        let notice = a.ready().messages.first { $0.to == "b" }!
        b.step(notice.message, now: c.now)
        #expect(b.commitIndex < index, "b's own copy is not durable yet")
        Self.persist(c, "b", pending)
        #expect(b.commitIndex == index)
    }

    /// With 5 members two copies are not a majority: no notices, and a notice would not count.
    @Test func notInAGroupWhereTwoAreNoMajority() throws {
        let c = RaftTestCluster(voters: ["a", "b", "c", "d", "e"])
        c.elect("a")
        c.advance(.milliseconds(200))
        let (a, b) = (c["a"], c["b"])
        let before = b.commitIndex
        let index = try a.propose([[1]], timestamp: 0, now: c.now).upperBound
        let rd = a.ready()
        b.step(rd.messages.first { $0.to == "b" }!.message, now: c.now)
        Self.persist(c, "b", b.ready())
        Self.persist(c, "a", rd)
        let after = a.ready()
        #expect(!after.messages.contains { if case .persisted = $0.message.body { true } else { false } })
        b.step(RaftMessage(from: "a", term: a.term, body: .persisted(index: index)), now: c.now)
        #expect(b.commitIndex == before)
    }

    /// An entry of an earlier term on both disks is not committed by this rule (Figure 8): only
    /// an entry of the leader's own term is.
    @Test func anEarlierTermsEntryIsNotCommittedThisWay() {
        let c = RaftTestCluster(voters: ["a", "b", "c"], logs: ["a": [1, 1, 1], "b": [1, 1, 1], "c": [1]], terms: ["a": 1, "b": 1, "c": 1])
        let b = c["b"]
        // a leads term 2; its no-op has not reached b, but b's log matches through 3.
        b.step(RaftMessage(from: "a", term: 2, body: .append(prevIndex: 3, prevTerm: 1, entries: [], commit: 0, persisted: 3)), now: c.now)
        b.step(RaftMessage(from: "a", term: 2, body: .persisted(index: 3)), now: c.now)
        #expect(b.leader == "a" && b.commitIndex == 0)
        // The no-op of term 2 on both disks commits it and everything before it.
        b.step(
            RaftMessage(
                from: "a", term: 2,
                body: .append(
                    prevIndex: 3, prevTerm: 1, entries: [LogEntry(index: 4, term: 2, kind: .noop)],
                    commit: 0, persisted: 4)), now: c.now)
        #expect(b.commitIndex == 0, "b's copy of 4 is not durable yet")
        Self.persist(c, "b", b.ready())
        #expect(b.commitIndex == 4)
    }
}

@Suite struct RaftMessageCodecTests {
    static let samples: [RaftMessage] = [
        RaftMessage(from: "a", term: 3, body: .preVote(lastIndex: 10, lastTerm: 2)),
        RaftMessage(from: "b", term: 3, body: .preVoteResponse(granted: true)),
        RaftMessage(from: "a", term: 4, body: .requestVote(lastIndex: 10, lastTerm: 2, transfer: true)),
        RaftMessage(from: "c", term: 4, body: .voteResponse(granted: false)),
        RaftMessage(
            from: "a", term: 4,
            body: .append(
                prevIndex: 9, prevTerm: 2,
                entries: [
                    LogEntry(index: 10, term: 4, kind: .noop, timestamp: 7),
                    LogEntry(index: 11, term: 4, kind: .record, timestamp: 8, data: [1, 2, 3])
                ], commit: 9, persisted: 10)),
        RaftMessage(from: "b", term: 4, body: .appendResponse(success: false, index: 9, hintIndex: 7, hintTerm: 1)),
        RaftMessage(from: "a", term: 4, body: .heartbeat(commit: 11)),
        RaftMessage(from: "b", term: 4, body: .heartbeatResponse),
        RaftMessage(
            from: "a", term: 4,
            body: .installStart(
                index: 100, term: 3,
                configuration: RaftConfiguration(voters: ["a", "b"], witnesses: ["w"]))),
        RaftMessage(from: "a", term: 4, body: .timeoutNow),
        RaftMessage(from: "a", term: 4, body: .persisted(index: 11)),
        RaftMessage(from: "a", term: 4, body: .removed(configurationIndex: 9))
    ]

    @Test func everyMessageRoundTrips() throws {
        for m in Self.samples {
            #expect(try RaftMessage.decode(m.encode()) == m)
        }
    }

    @Test func appendWithAGapIsRejected() {
        let m = RaftMessage(
            from: "a", term: 1,
            body: .append(
                prevIndex: 1, prevTerm: 1,
                entries: [
                    LogEntry(index: 3, term: 1)
                ], commit: 0, persisted: 0))
        #expect(throws: TandemError.self) { try RaftMessage.decode(m.encode()) }
    }

    /// Garbage and mutated messages must throw, never trap or allocate without bound.
    @Test func randomAndMutatedBytesNeverTrap() {
        var rng = SeededGenerator(seed: 42)
        var decoded = 0
        for _ in 0..<20_000 {
            var bytes: [UInt8]
            if rng.chance(0.3) {
                bytes = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                bytes = Self.samples[Int(rng.next() % UInt64(Self.samples.count))].encode()
                for _ in 0...(rng.next() % 4) where !bytes.isEmpty {
                    let i = Int(rng.next() % UInt64(bytes.count))
                    switch rng.next() % 3 {
                    case 0: bytes[i] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: bytes.removeSubrange(i...)
                    default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: i)
                    }
                }
            }
            if (try? RaftMessage.decode(bytes)) != nil { decoded += 1 }
        }
        #expect(decoded > 0)  // some mutations are still valid messages; the rest threw
    }
}

@Suite struct MemoryLogStorageTests {
    @Test func appendTruncatesTheConflictingSuffixAndCrashLosesUnsynced() throws {
        let s = MemoryLogStorage()
        s.append((1...5).map { LogEntry(index: $0, term: 1) })
        s.sync()
        s.append([LogEntry(index: 4, term: 2), LogEntry(index: 5, term: 2), LogEntry(index: 6, term: 2)])
        #expect(try s.lastIndex == 6 && s.term(at: 4) == 2)
        s.dropUnsynced()
        #expect(s.lastIndex == 3, "the truncated suffix is gone and the new one was not synced")
        s.trim(before: 3)
        #expect(try s.firstIndex == 3 && s.term(at: 2) == 1 && s.term(at: 1) == nil)
        #expect(try s.entries(from: 1, to: 10, maxBytes: 1).map(\.index) == [3])
    }
}
