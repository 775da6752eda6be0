@testable import Storage
import StreamLog
@testable import TandemNode
@testable import TandemTestKit
import TandemCore
import Testing
@testable import Transport

/// Which single-server change replaces a partition's departed voters, step by step.
@Suite struct StreamReplacementTests {
    static func step(
        _ voters: [NodeID], witnesses: [NodeID] = [], placed: [NodeID], gone: Set<NodeID>, live: [NodeID],
        selfID: NodeID = "a"
    ) -> ConfigurationChange? {
        Placement.replacementStep(
            stream: "s", partition: 0, configuration: RaftConfiguration(voters: voters, witnesses: witnesses),
            placed: placed, gone: gone, live: live.map { Placement.Candidate($0, region: "") }, selfID: selfID)
    }

    @Test func removeTheDepartedVoterFirstThenAdd() {
        let placed: [NodeID] = ["a", "b", "c"]
        let live: [NodeID] = ["a", "b", "d", "e"]
        #expect(Self.step(["a", "b", "c"], placed: placed, gone: ["c"], live: live) == .remove("c"))
        // Once that committed: add the next live member in rendezvous order.
        let next = Placement.ranked("s", 0, ["d", "e"]).first!
        #expect(Self.step(["a", "b"], placed: placed, gone: ["c"], live: live) == .addVoter(next))
        // Back to three: nothing more (the leader then writes the placement back).
        #expect(Self.step(["a", "b", next], placed: placed, gone: ["c"], live: live) == nil)
    }

    @Test func twoDepartedVotersGoOneAtATime() {
        let placed: [NodeID] = ["a", "b", "c"]
        #expect(Self.step(["a", "b", "c"], placed: placed, gone: ["b", "c"], live: ["a", "d"]) == .remove("b"))
        #expect(Self.step(["a", "c"], placed: placed, gone: ["b", "c"], live: ["a", "d"]) == .remove("c"))
        #expect(Self.step(["a"], placed: placed, gone: ["b", "c"], live: ["a", "d"]) == .addVoter("d"))
    }

    @Test func withNoCandidateTheGroupStaysSmaller() {
        #expect(Self.step(["a", "b", "c"], placed: ["a", "b", "c"], gone: ["c"], live: ["a", "b"]) == .remove("c"))
        #expect(Self.step(["a", "b"], placed: ["a", "b", "c"], gone: ["c"], live: ["a", "b"]) == nil)
        // A gone member is never the candidate, even if something still lists it as live.
        #expect(Self.step(["a", "b"], placed: ["a", "b", "c"], gone: ["c"], live: ["a", "b", "c"]) == nil)
    }

    @Test func theLeaderDoesNotRemoveItselfAndSmallPlacementsStaySmall() {
        #expect(Self.step(["a", "b", "c"], placed: ["a", "b", "c"], gone: ["a"], live: ["b", "c", "d"]) == nil)
        // Two data nodes and a witness: replace up to two voters, not three.
        #expect(Self.step(["a", "b"], witnesses: ["w"], placed: ["a", "b"], gone: ["b"], live: ["a", "d", "e"]) == .remove("b"))
        #expect(Self.step(["a"], witnesses: ["w"], placed: ["a", "b"], gone: ["b"], live: ["a", "d", "e"]) != nil)
        #expect(Self.step(["a", "d"], witnesses: ["w"], placed: ["a", "b"], gone: ["b"], live: ["a", "d", "e"]) == nil)
        // Nobody gone, nothing to do.
        #expect(Self.step(["a", "b", "c"], placed: ["a", "b", "c"], gone: [], live: ["a", "b", "c", "d"]) == nil)
    }
}
