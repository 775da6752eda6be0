import StreamLog
import TandemCore
import Testing

/// The placement rules the streams shell calls: where a new stream's partitions go, what a node
/// opens and closes after reading the catalog, how a departed voter is replaced, and whom a
/// leader hands its partition to.
@Suite struct PlacementTests {
    static let nodes = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000", "10.0.0.4:7000", "10.0.0.5:7000"]

    // MARK: placement

    @Test func rendezvousOrderIsTheStoredOne() {
        // Placements already stored depend on this order: the hash and its direction must not change.
        #expect(Placement.ranked("orders", 0, ["a", "b", "c", "d"]) == ["c", "b", "a", "d"])
        // The order of the candidates given does not matter.
        #expect(Placement.ranked("orders", 0, ["d", "c", "b", "a"]) == Placement.ranked("orders", 0, ["a", "b", "c", "d"]))
    }

    @Test func placementSpreadsVotersAndPreferredLeaders() {
        let placed = Placement.place(stream: "orders", partitions: 200, dataNodes: Self.nodes, witnesses: [])
        #expect(placed.voters.count == 200 && placed.witnesses.allSatisfy { $0.isEmpty })
        for (p, v) in placed.voters.enumerated() {
            #expect(v == Array(Placement.ranked("orders", p, Self.nodes).prefix(3)))
            #expect(Set(v).count == 3)
        }
        // Preferred leaders (first voters) spread: 200 partitions over 5 nodes, each leads 40 ± 20.
        var leads: [String: Int] = [:]
        for v in placed.voters { leads[v[0], default: 0] += 1 }
        #expect(leads.count == 5 && leads.values.allSatisfy { (20...60).contains($0) }, "\(leads)")
    }

    @Test func dataNodesAreVotersAndWitnessesOnlyFillIn() {
        // Enough data nodes: no witness is placed.
        let full = Placement.place(stream: "s", partitions: 8, dataNodes: Self.nodes, witnesses: ["w1", "w2"])
        #expect(full.voters.allSatisfy { v in v.count == 3 && v.allSatisfy { Self.nodes.contains($0) } })
        #expect(full.witnesses.allSatisfy { $0.isEmpty })
        // Two data nodes: both vote, one witness (in rendezvous order) completes the group of three.
        let two = Placement.place(stream: "s", partitions: 8, dataNodes: ["a", "b"], witnesses: ["w1", "w2"])
        for p in 0..<8 {
            #expect(Set(two.voters[p]) == ["a", "b"])
            #expect(two.witnesses[p] == [Placement.ranked("s", p, ["w1", "w2"])[0]])
        }
        // No data node: no voter (the shell refuses such a stream).
        let none = Placement.place(stream: "s", partitions: 2, dataNodes: [], witnesses: ["w1"])
        #expect(none.voters == [[], []] && none.witnesses == [["w1"], ["w1"]])
    }

    // MARK: reconcile

    static func definition(_ name: String, incarnation: UInt64, voters: [[String]], witnesses: [[String]]? = nil) -> StreamDefinition {
        StreamDefinition(
            name: name, partitions: voters.count, retentionHours: 24, incarnation: incarnation, voters: voters,
            witnesses: witnesses ?? voters.map { _ in [] })
    }

    @Test func reconcileOpensWhatThePlacementGivesThisNode() {
        let d = Self.definition("s", incarnation: 7, voters: [["a", "b", "c"], ["b", "c", "d"]], witnesses: [[], ["a"]])
        let plan = Placement.reconcile(definitions: ["s": d], held: [], selfID: "a")
        #expect(plan.close.isEmpty)
        #expect(
            plan.open == [
                .init(
                    partition: PartitionRef(stream: "s", incarnation: 7, partition: 0),
                    configuration: RaftConfiguration(voters: ["a", "b", "c"])),
                .init(
                    partition: PartitionRef(stream: "s", incarnation: 7, partition: 1),
                    configuration: RaftConfiguration(voters: ["b", "c", "d"], witnesses: ["a"]))
            ])
        // Held already (open, or stopped by its disk): nothing to open.
        let held: Set = [PartitionRef(stream: "s", incarnation: 7, partition: 0), PartitionRef(stream: "s", incarnation: 7, partition: 1)]
        #expect(Placement.reconcile(definitions: ["s": d], held: held, selfID: "a") == .init())
    }

    @Test func reconcileClosesOtherIncarnationsAndDeletedStreams() {
        let old: Set = [
            PartitionRef(stream: "s", incarnation: 7, partition: 0), PartitionRef(stream: "s", incarnation: 7, partition: 1),
            PartitionRef(stream: "gone", incarnation: 3, partition: 0)
        ]
        // `s` was re-created (incarnation 9) with this node on partition 1 only; `gone` was deleted.
        let d = Self.definition("s", incarnation: 9, voters: [["b", "c", "d"], ["a", "b", "c"]])
        let plan = Placement.reconcile(definitions: ["s": d], held: old, selfID: "a")
        #expect(plan.close == old.sorted())
        #expect(plan.open.map(\.partition) == [PartitionRef(stream: "s", incarnation: 9, partition: 1)])
    }

    @Test func reconcileNeverClosesAStreamWhoseDefinitionItCannotRead() {
        // `new` is in the catalog in a form this node cannot decode (a newer version wrote it):
        // that is not a delete, and closing would remove the data.
        let held: Set = [PartitionRef(stream: "new", incarnation: 5, partition: 0)]
        #expect(Placement.reconcile(definitions: [:], unreadable: ["new"], held: held, selfID: "a") == .init())
        #expect(Placement.reconcile(definitions: [:], held: held, selfID: "a").close == held.sorted())
    }

    @Test func reconcileLeavesAReplicaThePlacementNoLongerListsToItsGroup() {
        // Same incarnation, placement rewritten without this node: only the group can say it was
        // removed, so the replica stays open until it does.
        let d = Self.definition("s", incarnation: 7, voters: [["b", "c", "d"]])
        let held: Set = [PartitionRef(stream: "s", incarnation: 7, partition: 0)]
        #expect(Placement.reconcile(definitions: ["s": d], held: held, selfID: "a") == .init())
    }

    // MARK: replacement

    static func step(_ voters: [String], placed: [String] = ["a", "b", "c"], gone: Set<String>, live: [String], selfID: String = "a")
        -> ConfigurationChange?
    {
        Placement.replacementStep(
            stream: "s", partition: 0, configuration: RaftConfiguration(voters: voters), placed: placed,
            gone: gone, live: live, selfID: selfID)
    }

    @Test func replacementRemovesBeforeItAdds() {
        #expect(Self.step(["a", "b", "c"], gone: ["c"], live: ["a", "b", "d", "e"]) == .remove("c"))
        #expect(Self.step(["a", "b"], gone: ["c"], live: ["a", "b", "d", "e"]) == .addVoter(Placement.ranked("s", 0, ["d", "e"])[0]))
    }

    @Test func replacementNeverRemovesTheLeaderItself() {
        #expect(Self.step(["a", "b", "c"], gone: ["a"], live: ["b", "c", "d"], selfID: "a") == nil)
        // Another departed voter still goes.
        #expect(Self.step(["a", "b", "c"], gone: ["a", "b"], live: ["c", "d"], selfID: "a") == .remove("b"))
    }

    @Test func replacementAddsTheNextLiveDataNodeUpToThePlacedSize() {
        let live = ["a", "b", "d", "e", "f"]
        let order = Placement.ranked("s", 0, ["d", "e", "f"])
        #expect(Self.step(["a", "b"], gone: ["c"], live: live) == .addVoter(order[0]))
        // A candidate that is itself gone is skipped, whatever the live list says.
        #expect(Self.step(["a", "b"], gone: ["c", order[0]], live: live) == .addVoter(order[1]))
        // Back at the placed size (here 2: two data nodes and a witness were placed): no more.
        #expect(Self.step(["a", "d"], placed: ["a", "b"], gone: ["b"], live: live) == nil)
        #expect(Self.step(["a", "b", order[0]], gone: ["c"], live: live) == nil)
        // Nobody to add: the group stays smaller.
        #expect(Self.step(["a", "b"], gone: ["c"], live: ["a", "b"]) == nil)
    }

    @Test func theStoredPlacementKeepsThePreferenceOrder() {
        // "b" left, "d" joined: those who stay keep their order, the newcomer goes last.
        let stored = Placement.stored(
            voters: ["c", "b", "a"], witnesses: ["w"], configuration: RaftConfiguration(voters: ["a", "c", "d"], witnesses: ["w"]))
        #expect(stored?.voters == ["c", "a", "d"] && stored?.witnesses == ["w"])
        // The same members in another order: nothing to store.
        #expect(Placement.stored(voters: ["c", "b", "a"], witnesses: [], configuration: RaftConfiguration(voters: ["a", "b", "c"])) == nil)
    }

    // MARK: leader spreading

    static func handoff(
        _ preferred: [String], alive: Set<String> = ["a", "b", "c"], selfID: String = "c", ledFor: Duration? = .seconds(5),
        match: [String: UInt64] = ["a": 10, "b": 10], lastIndex: UInt64 = 10
    ) -> String? {
        Placement.handoffTarget(preferred: preferred, alive: alive, selfID: selfID, ledFor: ledFor, match: match, lastIndex: lastIndex)
    }

    @Test func spreadingPicksTheFirstAlivePreferredVoterThatIsCaughtUp() {
        #expect(Self.handoff(["a", "b", "c"]) == "a")
        // The first is down: the next alive one.
        #expect(Self.handoff(["a", "b", "c"], alive: ["b", "c"]) == "b")
        // Behind the leader's last index: not yet (and not the next one down instead).
        #expect(Self.handoff(["a", "b", "c"], match: ["a": 9, "b": 10]) == nil)
        // This node is the first alive preferred: it keeps leading.
        #expect(Self.handoff(["c", "a", "b"]) == nil)
        // Too early in the term, or not known how long: no handoff.
        #expect(Self.handoff(["a", "b", "c"], ledFor: .seconds(2)) == nil)
        #expect(Self.handoff(["a", "b", "c"], ledFor: nil) == nil)
        #expect(Self.handoff(["a", "b", "c"], ledFor: Placement.handoffAfter) == "a")
    }
}
