import StreamLog
import TandemCore
import Testing

/// The placement rules the streams shell calls: where a new stream's partitions go, what a node
/// opens and closes after reading the catalog, how a departed voter is replaced, and whom a
/// leader hands its partition to.
@Suite struct PlacementTests {
    static let nodes: [NodeID] = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000", "10.0.0.4:7000", "10.0.0.5:7000"]

    // MARK: placement

    @Test func rendezvousOrderIsMixedAndIndependentOfTheCandidatesOrder() {
        // The order of the candidates given does not matter.
        #expect(Placement.ranked("orders", 0, ["d", "c", "b", "a"]) == Placement.ranked("orders", 0, ["a", "b", "c", "d"]))
        // Ids that differ in their last byte only (the FNV-1a weakness the finaliser fixes): each
        // of six ranks first for about a sixth of 6,000 partitions.
        let ids: [NodeID] = ["n1", "n2", "n3", "n4", "n5", "n6"]
        var first: [NodeID: Int] = [:]
        for p in 0..<6000 { first[Placement.ranked("calls", p, ids)[0], default: 0] += 1 }
        #expect(first.count == 6 && first.values.allSatisfy { (850...1150).contains($0) }, "\(first)")
    }

    @Test func theIssuesShapeSixNodesInThreeRegions() {
        // 6 nodes in 3 regions, 8 partitions: the hash alone put all 8 on {n1,n2,n3} or {n4,n5,n6}.
        let candidates = (1...6).map { Placement.Candidate("n\($0)", region: "r\(($0 - 1) % 3)") }
        let placed = Placement.place(stream: "calls", partitions: 8, candidates: candidates)
        var load: [NodeID: Int] = [:]
        var leads: [NodeID: Int] = [:]
        for v in placed.voters {
            #expect(Set(v.map { Self.region(candidates, $0) }).count == 3, "\(v)")
            for id in v { load[id, default: 0] += 1 }
            leads[v[0], default: 0] += 1
        }
        #expect(load.count == 6 && load.values.allSatisfy { $0 == 4 }, "\(load)")
        #expect(leads.count == 6 && leads.values.allSatisfy { (1...2).contains($0) }, "\(leads)")
    }

    static func region(_ candidates: [Placement.Candidate], _ id: NodeID) -> String { candidates.first { $0.id == id }!.region }

    /// Every cluster shape of 1–5 regions with 1–4 data nodes each, with no witness, a witness in
    /// a region of its own, or one beside data nodes, for 1–40 partitions.
    @Test func placementOverManyClusterShapes() {
        var shapes = 0
        for regionCount in 1...5 {
            for sizes in Self.sizes(regionCount, 1...4) {
                for witnessAt in [nil, "rw", "r0"] as [String?] {
                    for partitions in [1, 3, 8, 40] {
                        shapes += 1
                        var candidates: [Placement.Candidate] = []
                        for (r, size) in sizes.enumerated() {
                            for i in 0..<size { candidates.append(.init("r\(r)n\(i)", region: "r\(r)")) }
                        }
                        if let witnessAt { candidates.append(.init("w", region: witnessAt, witness: true)) }
                        Self.check(candidates, partitions: partitions)
                    }
                }
            }
        }
        #expect(shapes > 1000)
    }

    /// Region sizes for `count` regions (each in `range`), not all combinations: the sorted ones.
    static func sizes(_ count: Int, _ range: ClosedRange<Int>) -> [[Int]] {
        guard count > 0 else { return [[]] }
        return sizes(count - 1, range).flatMap { rest in range.filter { size in size >= (rest.last ?? 0) }.map { rest + [$0] } }
    }

    static func check(_ candidates: [Placement.Candidate], partitions: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        let placed = Placement.place(stream: "s-\(candidates.count)", partitions: partitions, candidates: candidates)
        let shape = "\(candidates.map { "\($0.id)@\($0.region)\($0.witness ? "(w)" : "")" }) × \(partitions)"
        let regionOf = Dictionary(uniqueKeysWithValues: candidates.map { ($0.id, $0.region) })
        let regions = Set(candidates.map(\.region))
        let dataRegions = Set(candidates.filter { !$0.witness }.map(\.region))
        var load: [NodeID: Int] = [:]
        var leads: [NodeID: Int] = [:]
        for p in 0..<partitions {
            let v = placed.voters[p]
            let w = placed.witnesses[p]
            let members = v + w
            // Distinct members, as many as the replication factor allows.
            #expect(Set(members).count == members.count, "\(shape)", sourceLocation: sourceLocation)
            #expect(members.count == min(3, candidates.count), "\(shape)", sourceLocation: sourceLocation)
            // Voters are data nodes, witnesses witnesses; the preferred leader is a data node.
            #expect(v.allSatisfy { id in candidates.contains { $0.id == id && !$0.witness } }, sourceLocation: sourceLocation)
            #expect(w.allSatisfy { id in candidates.contains { $0.id == id && $0.witness } }, sourceLocation: sourceLocation)
            #expect(!v.isEmpty, "\(shape)", sourceLocation: sourceLocation)
            // Distinct regions first: as many as there are, up to three; each data region
            // before a witness-only one.
            let covered = Set(members.map { regionOf[$0]! })
            #expect(covered.count == min(3, regions.count), "\(shape): \(members)", sourceLocation: sourceLocation)
            #expect(Set(v.map { regionOf[$0]! }).count == min(3, dataRegions.count), "\(shape): \(v)", sourceLocation: sourceLocation)
            // Three regions: no region holds a majority of the group.
            if regions.count >= 3 {
                var per: [String: Int] = [:]
                for m in members { per[regionOf[m]!, default: 0] += 1 }
                #expect(per.values.allSatisfy { $0 < 2 }, "\(shape): \(members)", sourceLocation: sourceLocation)
            }
            for m in v { load[m, default: 0] += 1 }
            leads[v[0], default: 0] += 1
        }
        // Load spreads by construction: within a region, data nodes' replica counts differ by at
        // most one; preferred leaderships (chosen among each group's members) by at most two
        // over all data nodes.
        for r in regions {
            let counts = candidates.filter { $0.region == r && !$0.witness }.map { load[$0.id, default: 0] }
            if let lo = counts.min(), let hi = counts.max() { #expect(hi - lo <= 1, "\(shape): \(load)", sourceLocation: sourceLocation) }
        }
        let leadCounts = candidates.filter { !$0.witness }.map { leads[$0.id, default: 0] }
        #expect(leadCounts.max()! - leadCounts.min()! <= 2, "\(shape): \(leads)", sourceLocation: sourceLocation)
    }

    @Test func twoRegionsOfTwoAndAWitnessSurviveARegionsLoss() {
        let candidates: [Placement.Candidate] = [
            .init("a1", region: "a"), .init("a2", region: "a"), .init("b1", region: "b"), .init("b2", region: "b"),
            .init("w", region: "c", witness: true)
        ]
        let placed = Placement.place(stream: "s", partitions: 8, candidates: candidates)
        for p in 0..<8 {
            #expect(placed.witnesses[p] == ["w"])
            #expect(Set(placed.voters[p].map { Self.region(candidates, $0) }) == ["a", "b"])
        }
    }

    @Test func inOneRegionWitnessesOnlyFillIn() {
        // Enough data nodes: no witness is placed.
        let full = Placement.place(stream: "s", partitions: 8, dataNodes: Self.nodes, witnesses: ["w1", "w2"])
        #expect(full.voters.allSatisfy { v in v.count == 3 && v.allSatisfy { Self.nodes.contains($0) } })
        #expect(full.witnesses.allSatisfy { $0.isEmpty })
        // Two data nodes: both vote, one witness completes the group of three, the two taking turns.
        let two = Placement.place(stream: "s", partitions: 8, dataNodes: ["a", "b"], witnesses: ["w1", "w2"])
        var witnessLoad: [NodeID: Int] = [:]
        for p in 0..<8 {
            #expect(Set(two.voters[p]) == ["a", "b"])
            #expect(two.witnesses[p].count == 1)
            for w in two.witnesses[p] { witnessLoad[w, default: 0] += 1 }
        }
        #expect(witnessLoad == ["w1": 4, "w2": 4])
        // No data node: no voter (the shell refuses such a stream).
        let none = Placement.place(stream: "s", partitions: 2, dataNodes: [], witnesses: ["w1"])
        #expect(none.voters == [[], []] && none.witnesses == [["w1"], ["w1"]])
    }

    // MARK: spreading over regions

    static let spread: [Placement.Candidate] = [
        .init("a1", region: "a"), .init("a2", region: "a"), .init("a3", region: "a"), .init("b1", region: "b"), .init("c1", region: "c")
    ]

    static func rebalance(
        _ voters: [NodeID], witnesses: [NodeID] = [], placed: [NodeID]? = nil, live: [Placement.Candidate] = spread, selfID: NodeID = "a1"
    ) -> ConfigurationChange? {
        Placement.rebalanceStep(
            stream: "s", partition: 0, configuration: RaftConfiguration(voters: voters, witnesses: witnesses), placed: placed ?? voters,
            live: live, selfID: selfID)
    }

    @Test func aGroupInOneRegionSpreadsOnceOthersHaveNodesAddingFirst() {
        // Placed when only region a had nodes.
        let add = Self.rebalance(["a1", "a2", "a3"], placed: ["a1", "a2", "a3"])
        #expect(add == .addVoter("b1") || add == .addVoter("c1"))
        // Four members: a shared region's member goes — not this node (the leader), not the preferred one.
        let removal = Self.rebalance(["a1", "a2", "a3", "b1"], placed: ["a1", "a2", "a3"])
        #expect(removal == .remove("a2") || removal == .remove("a3"))
        #expect(Self.rebalance(["a1", "a2", "a3", "b1"], placed: ["a2", "a1", "a3"], selfID: "a1") == .remove("a3"))
        // Distinct regions: nothing to do; no other region to go to: nothing either.
        #expect(Self.rebalance(["a1", "b1", "c1"]) == nil)
        #expect(Self.rebalance(["a1", "a2", "b1", "c1"]) == .remove("a2"))
        #expect(Self.rebalance(["a1", "a2", "a3"], live: Array(Self.spread.prefix(3))) == nil)
        // A member down (not live): left to replacement.
        #expect(Self.rebalance(["a1", "a2", "a3"], live: Self.spread.filter { $0.id != "a3" }) == nil)
    }

    @Test func aWitnessInAThirdRegionJoinsAsAWitnessAndADataNodeOfTheSharedRegionGoes() {
        let live: [Placement.Candidate] = [
            .init("a1", region: "a"), .init("a2", region: "a"), .init("b1", region: "b"), .init("w", region: "c", witness: true)
        ]
        #expect(Self.rebalance(["a1", "a2", "b1"], live: live) == .addWitness("w"))
        #expect(Self.rebalance(["a1", "a2", "b1"], witnesses: ["w"], live: live) == .remove("a2"))
        #expect(Self.rebalance(["a1", "b1"], witnesses: ["w"], live: live) == nil)
    }

    @Test func rebalancingEndsWithOneMemberPerRegion() {
        // Applied step by step from every group of three in region a: it ends, in at most four
        // steps, with three regions and three members.
        for group in [["a1", "a2", "a3"], ["a2", "a3", "a1"]] as [[NodeID]] {
            var config = RaftConfiguration(voters: group)
            var steps = 0
            while let change = Placement.rebalanceStep(
                stream: "s", partition: 0, configuration: config, placed: group, live: Self.spread, selfID: group[0])
            {
                var voters = config.voters
                switch change {
                case .addVoter(let id): voters.append(id)
                case .remove(let id): voters.removeAll { $0 == id }
                case .addWitness: Issue.record("no witness here")
                }
                config = RaftConfiguration(voters: voters)
                steps += 1
                if steps > 10 { break }
            }
            #expect(
                steps == 4 && config.voters.count == 3 && Set(config.voters.map { Self.region(Self.spread, $0) }).count == 3, "\(config)")
            #expect(config.voters.contains(group[0]), "the leader removed itself")
        }
    }

    // MARK: reconcile

    static func definition(_ name: String, incarnation: UInt64, voters: [[NodeID]], witnesses: [[NodeID]]? = nil) -> StreamDefinition {
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

    static func step(
        _ voters: [NodeID], placed: [NodeID] = ["a", "b", "c"], gone: Set<NodeID>, live: [NodeID], selfID: NodeID = "a",
        regions: [NodeID: String] = [:]
    ) -> ConfigurationChange? {
        Placement.replacementStep(
            stream: "s", partition: 0, configuration: RaftConfiguration(voters: voters), placed: placed,
            gone: gone, live: live.map { Placement.Candidate($0, region: regions[$0] ?? "") }, regions: regions, selfID: selfID)
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
        let live: [NodeID] = ["a", "b", "d", "e", "f"]
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

    @Test func replacementPrefersARegionTheGroupLacks() {
        // c (region 3) left; d is in region 1 with a, e in region 3: e, whatever the hash says.
        let regions: [NodeID: String] = ["a": "1", "b": "2", "c": "3", "d": "1", "e": "3", "f": "2"]
        #expect(Self.step(["a", "b"], gone: ["c"], live: ["a", "b", "d", "e", "f"], regions: regions) == .addVoter("e"))
        // None in the missing region: the hash order among the rest.
        let order = Placement.ranked("s", 0, ["d", "f"])
        #expect(Self.step(["a", "b"], gone: ["c"], live: ["a", "b", "d", "f"], regions: regions) == .addVoter(order[0]))
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
        _ preferred: [NodeID], alive: Set<NodeID> = ["a", "b", "c"], selfID: NodeID = "c", ledFor: Duration? = .seconds(5),
        match: [NodeID: UInt64] = ["a": 10, "b": 10], lastIndex: UInt64 = 10
    ) -> NodeID? {
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
