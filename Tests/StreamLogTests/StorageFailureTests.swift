import StreamLog
import TandemCore
import Testing

/// A storage read that fails halts the core (the rule atop Raft.swift): its next ready carries
/// only `storageFailure`, nothing it decided leaves it, later inputs are ignored, and a node
/// restarted on the same storage once reads work again rejoins with a log equal to the group's.
@Suite struct StorageFailureTests {
    /// A group of three with `s1` leading and a few records committed everywhere.
    static func group() throws -> RaftTestCluster {
        let c = RaftTestCluster(voters: ["s1", "s2", "s3"])
        c.elect("s1")
        for k in 1...3 { try c.propose("s1", "r\(k)") }
        c.stabilize()
        #expect(c.leaders == ["s1"] && ["s1", "s2", "s3"].allSatisfy { c[$0].commitIndex == c["s1"].lastIndex })
        return c
    }

    /// The halted node's ready (it may halt inside `ready()` itself): the failure and nothing
    /// else; then no more readies.
    static func expectOnlyFailure(_ node: RaftNode) {
        #expect(node.hasReady)
        let rd = node.ready()
        #expect(rd.storageFailure == node.storageFailure && rd.storageFailure != nil)
        #expect(rd.entries.isEmpty && rd.hardState == nil && rd.resetLog == nil && rd.softState == nil)
        #expect(rd.messages.isEmpty && rd.messagesAfterPersist.isEmpty && rd.committedEntries.isEmpty)
        #expect(!node.hasReady)
    }

    static func expectStorageFailed(_ body: () throws(RaftError) -> Void) {
        do {
            try body()
            Issue.record("expected storage_failed")
        } catch {
            #expect(error.code == .storageFailed)
        }
    }

    @Test func aFollowerWhoseReadFailsHaltsAndTheGroupGoesOn() throws {
        let c = try Self.group()
        let before = (last: c.storages["s2"]!.lastIndex, hardState: c.hardStates["s2"]!, term: c["s2"].term)
        c.storages["s2"]!.readsFail = true
        // The next append makes s2 check its log at prevIndex, on the failing storage.
        try c.propose("s1", "during")
        let append = try #require(c.inFlight.first { $0.to == "s2" })
        c.inFlight.removeAll { $0.to == "s2" }
        c["s2"].step(append.message, now: c.now)
        #expect(c["s2"].storageFailure != nil, "the step halted it")
        Self.expectOnlyFailure(c["s2"])
        // Nothing reached its storage or its hard state, and it ignores every later input.
        #expect(c.storages["s2"]!.lastIndex == before.last && c.hardStates["s2"] == before.hardState)
        c.isolated = ["s2"]
        c.stabilize()
        c.advance(.seconds(5))
        #expect(c["s2"].term == before.term && c["s2"].role != .leader && !c["s2"].hasReady)
        // s1 and s3 are a majority: records still commit.
        try c.propose("s1", "after")
        c.stabilize()
        #expect(c.leaders == ["s1"] && c["s1"].commitIndex == c["s1"].lastIndex && c["s3"].commitIndex == c["s1"].lastIndex)

        // The shell reopens it once reads work: a new core on the same storage catches up.
        c.storages["s2"]!.readsFail = false
        c.add("s2", configuration: c["s1"].configuration, storage: c.storages["s2"]!, hardState: c.hardStates["s2"]!)
        c.isolated = []
        c.advance(.seconds(1))
        #expect(c.terms("s2") == c.terms("s1") && c["s2"].commitIndex == c["s1"].commitIndex)
    }

    @Test func aLeaderWhoseReadFailsHaltsRefusesProposalsAndAnotherLeads() throws {
        let c = try Self.group()
        let committed = c["s1"].commitIndex
        c.storages["s1"]!.readsFail = true
        // Taken in memory; the ready that would send it reads the term at prevIndex from
        // storage, and halts.
        try c["s1"].propose([Array("lost".utf8)], timestamp: 0, now: c.now)
        Self.expectOnlyFailure(c["s1"])
        Self.expectStorageFailed { () throws(RaftError) in _ = try c["s1"].propose([Array("refused".utf8)], timestamp: 0, now: c.now) }
        Self.expectStorageFailed { () throws(RaftError) in try c["s1"].transferLeadership(now: c.now) }
        // Reads through the node's queries throw too; they change nothing.
        #expect(throws: MemoryLogStorage.ReadFault.self) { try c["s1"].term(at: 1) }

        // The others elect a leader; "lost" never left s1, so it commits nowhere.
        c.isolated = ["s1"]
        c.advance(.seconds(5))
        let leader = try #require(c.leaders.first { $0 != "s1" })
        try c.propose(leader, "next")
        c.stabilize()
        #expect(c[leader].commitIndex > committed)
        let texts = (c.applied[leader] ?? []).filter { $0.kind == .record }.map { String(decoding: $0.data, as: UTF8.self) }
        #expect(!texts.contains("lost") && texts.contains("next"))

        // Reopened on its storage, s1 follows the new leader with an equal log.
        c.storages["s1"]!.readsFail = false
        c.add("s1", configuration: c[leader].configuration, storage: c.storages["s1"]!, hardState: c.hardStates["s1"]!)
        c.isolated = []
        c.advance(.seconds(1))
        #expect(c.leaders == [leader] && c.terms("s1") == c.terms(leader) && c["s1"].commitIndex == c[leader].commitIndex)
    }
}
