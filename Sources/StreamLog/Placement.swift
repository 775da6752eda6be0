import TandemCore

/// A stream's definition as the node's catalog stores it.
public struct StreamDefinition: Equatable, Sendable {
    public var name: String
    public var partitions: Int
    public var retentionHours: Int
    /// Creation time (ms): names the incarnation, so a re-created stream never meets the old one.
    public var incarnation: UInt64
    /// Per partition: voters in preference order (the first is the preferred leader), and witnesses.
    public var voters: [[NodeID]]
    public var witnesses: [[NodeID]]
    /// How record keys map to partitions: fixed for the stream's life.
    public var keyHash: KeyHash

    public init(
        name: String, partitions: Int, retentionHours: Int, incarnation: UInt64, voters: [[NodeID]], witnesses: [[NodeID]],
        keyHash: KeyHash = .fnv1a
    ) {
        self.name = name
        self.partitions = partitions
        self.retentionHours = retentionHours
        self.incarnation = incarnation
        self.voters = voters
        self.witnesses = witnesses
        self.keyHash = keyHash
    }

    /// Partition `p`'s starting configuration as placed.
    public func configuration(_ p: Int) -> RaftConfiguration { RaftConfiguration(voters: voters[p], witnesses: witnesses[p]) }

    /// The definition with members stored by address (by nodes before ids were names) named by
    /// the names those addresses map to.
    public func resolving(_ legacy: LegacyAddresses) -> StreamDefinition {
        var d = self
        d.voters = voters.map(legacy.resolve)
        d.witnesses = witnesses.map(legacy.resolve)
        return d
    }

    /// Every member any partition lists.
    public var members: Set<NodeID> { Set(voters.joined()).union(witnesses.joined()) }
}

/// One partition of one stream incarnation.
public struct PartitionRef: Hashable, Sendable, Comparable {
    public var stream: String
    public var incarnation: UInt64
    public var partition: Int

    public init(stream: String, incarnation: UInt64, partition: Int) {
        self.stream = stream
        self.incarnation = incarnation
        self.partition = partition
    }

    public static func < (a: PartitionRef, b: PartitionRef) -> Bool {
        (a.stream, a.incarnation, a.partition) < (b.stream, b.incarnation, b.partition)
    }
}

/// Where a stream's partitions live and how they stay there: the rules the node's streams shell
/// calls (every function here is pure; the shell supplies members, clocks and Raft state).
///
/// - A new stream is placed once, by the node that creates it, and stored with it. Per
///   partition, members are picked one at a time: a member in a region the group does not
///   cover yet first (so with three regions a region's loss never takes a partition's
///   majority), a data node before a witness, then the member holding the fewest of this
///   stream's replicas (so load spreads evenly by construction, not by luck), then rendezvous
///   order. The first voter (the preferred leader) is the picked data node leading the fewest
///   partitions so far.
/// - A voter gone for good is replaced by its partition's leader, one single-server change at a
///   time (a newcomer from a region the group lacks first), and the leader stores the group's
///   new configuration back in the definition.
/// - A group whose members share a region while a live member of another region could take
///   one's place is re-placed the same way (`rebalanceStep`: add the newcomer, then remove the
///   duplicate): streams created before a region had nodes spread once it has.
/// - The first voter is the partition's *preferred* leader: leaders hand over to it, so
///   leadership spreads over nodes and regions as the placement spreads the voters.
public enum Placement {
    public static let replicationFactor = 3
    /// How long a leader leads before it hands over to the preferred voter: a flapping node
    /// cannot bounce leadership around.
    public static let handoffAfter: Duration = .seconds(3)

    /// A member placement may pick.
    public struct Candidate: Sendable, Equatable {
        public var id: NodeID
        public var region: String
        /// Votes and holds the log but never leads or serves.
        public var witness: Bool

        public init(_ id: NodeID, region: String, witness: Bool = false) {
            self.id = id
            self.region = region
            self.witness = witness
        }
    }

    /// A member's rendezvous weight for partition `p` of `stream`: FNV-1a over
    /// `stream/p/id`, then splitmix64's finaliser. FNV-1a alone leaves the high bits nearly equal
    /// for ids differing in their last byte (`n1` … `n6`), so one order won most partitions.
    static func weight(_ stream: String, _ p: Int, _ id: NodeID) -> UInt64 {
        splitmix64Mix(stableHash64(Array("\(stream)/\(p)/\(id.rawValue)".utf8)))
    }

    /// Rendezvous order of `candidates` for partition `p` of `stream`, highest weight first
    /// (ties, which need a 64-bit collision, by id).
    public static func ranked(_ stream: String, _ p: Int, _ candidates: [NodeID]) -> [NodeID] {
        candidates.map { ($0, weight(stream, p, $0)) }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.map(\.0)
    }

    /// Placement of a new stream over `candidates` (the live members): per partition, up to
    /// `replicationFactor` members picked one at a time by
    /// 1. a region the partition has no member in yet,
    /// 2. a data node before a witness (witnesses vote but cannot lead or serve),
    /// 3. fewest replicas of this stream so far,
    /// 4. rendezvous weight;
    /// and of the data nodes picked, the one leading the fewest partitions so far goes first.
    /// So three regions give every partition one member in each; two regions and a witness
    /// give one data node in each and the witness; one region gives three data nodes there,
    /// witnesses filling in below three. The first pick is always a data node when there is
    /// one (a partition with none gets no voter; the caller refuses it).
    public static func place(stream: String, partitions: Int, candidates: [Candidate]) -> (voters: [[NodeID]], witnesses: [[NodeID]]) {
        var voters: [[NodeID]] = []
        var witnesses: [[NodeID]] = []
        var load: [NodeID: Int] = [:]
        var leads: [NodeID: Int] = [:]
        let unique = Dictionary(candidates.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }).values.sorted { $0.id < $1.id }
        for p in 0..<partitions {
            var picked: [Candidate] = []
            var regions: Set<String> = []
            let weights = Dictionary(uniqueKeysWithValues: unique.map { ($0.id, weight(stream, p, $0.id)) })
            while picked.count < replicationFactor {
                let best = unique.filter { c in !picked.contains { $0.id == c.id } }.min { a, b in
                    let ka = (regions.contains(a.region) ? 1 : 0, a.witness ? 1 : 0, load[a.id, default: 0])
                    let kb = (regions.contains(b.region) ? 1 : 0, b.witness ? 1 : 0, load[b.id, default: 0])
                    if ka != kb { return ka < kb }
                    return weights[a.id]! != weights[b.id]! ? weights[a.id]! > weights[b.id]! : a.id < b.id
                }
                guard let best else { break }
                picked.append(best)
                regions.insert(best.region)
                load[best.id, default: 0] += 1
            }
            // The preferred leader: the picked data node leading the fewest partitions so far.
            var data = picked.filter { !$0.witness }.map(\.id)
            if let lead = data.indices.min(by: { leads[data[$0], default: 0] < leads[data[$1], default: 0] }) {
                data.insert(data.remove(at: lead), at: 0)
                leads[data[0], default: 0] += 1
            }
            voters.append(data)
            witnesses.append(picked.filter(\.witness).map(\.id))
        }
        return (voters, witnesses)
    }

    /// `place` with every member in one region.
    public static func place(stream: String, partitions: Int, dataNodes: [NodeID], witnesses: [NodeID])
        -> (voters: [[NodeID]], witnesses: [[NodeID]])
    {
        place(
            stream: stream, partitions: partitions,
            candidates: dataNodes.map { Candidate($0, region: "") } + witnesses.map { Candidate($0, region: "", witness: true) })
    }

    /// What a node does after reading the catalog.
    public struct ReconcilePlan: Equatable, Sendable {
        /// Replicas held here whose stream was deleted or re-created (another incarnation):
        /// closed, and their data removed.
        public var close: [PartitionRef] = []
        /// Replicas the placement gives this node that it does not hold, with the configuration
        /// each starts from (the placement's).
        public var open: [Opening] = []

        public init(close: [PartitionRef] = [], open: [Opening] = []) {
            self.close = close
            self.open = open
        }

        public struct Opening: Equatable, Sendable {
            public var partition: PartitionRef
            public var configuration: RaftConfiguration

            public init(partition: PartitionRef, configuration: RaftConfiguration) {
                self.partition = partition
                self.configuration = configuration
            }
        }
    }

    /// Given the catalog's definitions (by name) and the replicas `held` here (open or stopped
    /// by a disk failure), which to close and which to open. Only the incarnation decides a
    /// close: a replica the placement no longer lists stays until its group says it was
    /// removed (the shell's `dropRemovedReplicas`), since only the group knows. Sorted, so
    /// the plan is the same whatever order the catalog was read in.
    ///
    /// `unreadable`: streams whose catalog item is there but this node cannot decode (written by
    /// a newer version, or damaged). Their replicas are never closed on that account: a definition
    /// we cannot read is not a deleted stream, and closing removes the data.
    public static func reconcile(
        definitions: [String: StreamDefinition], unreadable: Set<String> = [], held: Set<PartitionRef>,
        selfID: NodeID
    ) -> ReconcilePlan {
        var plan = ReconcilePlan()
        plan.close = held.filter { !unreadable.contains($0.stream) && definitions[$0.stream]?.incarnation != $0.incarnation }.sorted()
        for d in definitions.values.sorted(by: { $0.name < $1.name }) {
            for p in 0..<d.partitions where d.voters[p].contains(selfID) || d.witnesses[p].contains(selfID) {
                let ref = PartitionRef(stream: d.name, incarnation: d.incarnation, partition: p)
                guard !held.contains(ref) else { continue }
                plan.open.append(.init(partition: ref, configuration: d.configuration(p)))
            }
        }
        return plan
    }

    /// The next change replacing `gone` voters of one partition, or nil when there is none.
    ///
    /// Remove first, then add. A departed voter never acks again: adding the newcomer first
    /// would make 4 voters with quorum 3 of which only 3 are alive, one of them empty — every
    /// commit would wait for the newcomer to copy the whole log, and one more failure would
    /// stop the group. Removed first, the group is 2 voters with quorum 2 (no less tolerant
    /// than 3 with one gone), and the newcomer then joins a group of 3 with quorum 2 and
    /// catches up without holding commits back. Adds only back up to the stored placement's
    /// size (or the replication factor): the newcomer is a live data node not in the group, from
    /// a region the group's members (`regions`: every known member's) do not cover if there is
    /// one, then in rendezvous order; with none, the group stays smaller.
    public static func replacementStep(
        stream: String, partition: Int, configuration: RaftConfiguration, placed: [NodeID],
        gone: Set<NodeID>, live: [Candidate], regions: [NodeID: String] = [:], selfID: NodeID
    ) -> ConfigurationChange? {
        // The leader never removes itself here: it hands leadership over when it leaves.
        if let departed = configuration.voters.first(where: { gone.contains($0) && $0 != selfID }) {
            return .remove(departed)
        }
        guard configuration.voters.count < min(replicationFactor, placed.count) else { return nil }
        let regionOf = regions.merging(live.map { ($0.id, $0.region) }, uniquingKeysWith: { a, _ in a })
        let covered = Set(configuration.members.compactMap { regionOf[$0] })
        let candidates = live.filter { !$0.witness && !configuration.contains($0.id) && !gone.contains($0.id) }
        return best(stream, partition, candidates, covered: covered).map { .addVoter($0.id) }
    }

    /// The candidate in a region outside `covered` first, then a data node, then by rendezvous weight.
    static func best(_ stream: String, _ p: Int, _ candidates: [Candidate], covered: Set<String>) -> Candidate? {
        candidates.min { a, b in
            let ka = (covered.contains(a.region) ? 1 : 0, a.witness ? 1 : 0)
            let kb = (covered.contains(b.region) ? 1 : 0, b.witness ? 1 : 0)
            if ka != kb { return ka < kb }
            let (wa, wb) = (weight(stream, p, a.id), weight(stream, p, b.id))
            return wa != wb ? wa > wb : a.id < b.id
        }
    }

    /// The next change that spreads a healthy group over more regions, or nil: when two of its
    /// members share a region and a live member of a region it does not cover exists (a
    /// stream placed before that region had nodes, or before a witness joined), add that
    /// member (a data node first; a witness as a witness), and once the group is larger than
    /// the replication factor, remove a member of a shared region — a witness before a data
    /// node, never this node (the leader) and the preferred leader (`placed.first`) last.
    /// Add first: every member is alive here (a group with a member down is left to
    /// `replacementStep`), so the larger group's quorum is there and no copy is lost meanwhile.
    /// `live`: the live members, witnesses included. Every step makes the group's regions more
    /// distinct or its size smaller, so the steps end.
    public static func rebalanceStep(
        stream: String, partition: Int, configuration: RaftConfiguration, placed: [NodeID],
        live: [Candidate], selfID: NodeID
    ) -> ConfigurationChange? {
        let byID = Dictionary(live.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        // Only a group whose members are all live and known.
        guard let members = Optional(configuration.members.compactMap { byID[$0] }), members.count == configuration.members.count
        else { return nil }
        var perRegion: [String: Int] = [:]
        for m in members { perRegion[m.region, default: 0] += 1 }
        let shared = Set(perRegion.filter { $0.value > 1 }.keys)
        guard !shared.isEmpty else { return nil }
        if members.count > replicationFactor {
            let removable = members.filter { shared.contains($0.region) && $0.id != selfID }
            return removable.min { a, b in
                let ka = (a.witness ? 0 : 1, a.id == placed.first ? 1 : 0)
                let kb = (b.witness ? 0 : 1, b.id == placed.first ? 1 : 0)
                if ka != kb { return ka < kb }
                let (wa, wb) = (weight(stream, partition, a.id), weight(stream, partition, b.id))
                return wa != wb ? wa < wb : a.id > b.id
            }.map { .remove($0.id) }
        }
        let covered = Set(perRegion.keys)
        let outside = live.filter { !covered.contains($0.region) && !configuration.contains($0.id) }
        guard let newcomer = best(stream, partition, outside, covered: covered) else { return nil }
        return newcomer.witness ? .addWitness(newcomer.id) : .addVoter(newcomer.id)
    }

    /// The placement to store for a partition whose committed configuration differs from the
    /// stored one (after a replacement), or nil when they hold the same members. Those who stay
    /// keep their preference order (the preferred leader stays preferred); newcomers go last.
    public static func stored(voters: [NodeID], witnesses: [NodeID], configuration: RaftConfiguration)
        -> (voters: [NodeID], witnesses: [NodeID])?
    {
        guard Set(configuration.voters) != Set(voters) || Set(configuration.witnesses) != Set(witnesses) else { return nil }
        return (
            voters.filter { configuration.voters.contains($0) } + configuration.voters.filter { !voters.contains($0) },
            witnesses.filter { configuration.witnesses.contains($0) } + configuration.witnesses.filter { !witnesses.contains($0) }
        )
    }

    /// Whom a leader hands its partition to, or nil to keep it: the first alive voter of the
    /// preference order, once this node has led for `handoffAfter` and that voter's log matches
    /// the leader's to its last index (so the handover loses no time catching up). Nil when
    /// that voter is this node, and when it lags (not the next one down: the preferred node is
    /// the one the placement spread the leaders over).
    /// - `ledFor`: how long this node has led (nil: not known).
    /// - `match`: the leader's view of each follower's match index.
    public static func handoffTarget(
        preferred: [NodeID], alive: Set<NodeID>, selfID: NodeID, ledFor: Duration?,
        match: [NodeID: UInt64], lastIndex: UInt64
    ) -> NodeID? {
        guard let ledFor, ledFor >= handoffAfter,
            let target = preferred.first(where: { alive.contains($0) }), target != selfID,
            match[target] == lastIndex
        else { return nil }
        return target
    }
}
