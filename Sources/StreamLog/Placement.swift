import TandemCore

/// A stream's definition as the node's catalog stores it.
public struct StreamDefinition: Equatable, Sendable {
    public var name: String
    public var partitions: Int
    public var retentionHours: Int
    /// Creation time (ms): names the incarnation, so a re-created stream never meets the old one.
    public var incarnation: UInt64
    /// Per partition: voters in preference order (the first is the preferred leader), and witnesses.
    public var voters: [[String]]
    public var witnesses: [[String]]
    /// How record keys map to partitions: fixed for the stream's life.
    public var keyHash: KeyHash

    public init(
        name: String, partitions: Int, retentionHours: Int, incarnation: UInt64, voters: [[String]], witnesses: [[String]],
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
/// - A new stream is placed once, by the node that creates it, and stored with it: per
///   partition, rendezvous hashing over the live members, so placements spread evenly and a
///   member joining or leaving moves only the partitions it ranks first for.
/// - A voter gone for good is replaced by its partition's leader, one single-server change at a
///   time, and the leader stores the group's new configuration back in the definition.
/// - The first voter is the partition's *preferred* leader: leaders hand over to it, so
///   leadership spreads over nodes and regions as the hash spreads the voters.
public enum Placement {
    public static let replicationFactor = 3
    /// How long a leader leads before it hands over to the preferred voter: a flapping node
    /// cannot bounce leadership around.
    public static let handoffAfter: Duration = .seconds(3)

    /// Rendezvous order of `candidates` for partition `p` of `stream`: highest
    /// `stableHash64("stream/p/address")` first. Stable across versions: placements and
    /// replacements already stored depend on it.
    public static func ranked(_ stream: String, _ p: Int, _ candidates: [String]) -> [String] {
        candidates.map { ($0, stableHash64(Array("\(stream)/\(p)/\($0)".utf8))) }.sorted { $0.1 > $1.1 }.map(\.0)
    }

    /// Placement of a new stream over the live members: per partition up to
    /// `replicationFactor` voters from `dataNodes` in rendezvous order; with fewer data nodes,
    /// `witnesses` (also in rendezvous order) fill the group up, since they vote but hold no
    /// records and cannot lead. A partition with no data node gets no voter (the caller refuses).
    public static func place(stream: String, partitions: Int, dataNodes: [String], witnesses: [String])
        -> (voters: [[String]], witnesses: [[String]])
    {
        var voters: [[String]] = []
        var placedWitnesses: [[String]] = []
        for p in 0..<partitions {
            let v = Array(ranked(stream, p, dataNodes).prefix(replicationFactor))
            voters.append(v)
            placedWitnesses.append(Array(ranked(stream, p, witnesses).prefix(max(0, replicationFactor - v.count))))
        }
        return (voters, placedWitnesses)
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
        selfID: String
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
    /// size (or the replication factor): the newcomer is the next live non-witness member in
    /// rendezvous order that is not in the group; with none, the group stays smaller.
    public static func replacementStep(
        stream: String, partition: Int, configuration: RaftConfiguration, placed: [String],
        gone: Set<String>, live: [String], selfID: String
    ) -> ConfigurationChange? {
        // The leader never removes itself here: it hands leadership over when it leaves.
        if let departed = configuration.voters.first(where: { gone.contains($0) && $0 != selfID }) {
            return .remove(departed)
        }
        guard configuration.voters.count < min(replicationFactor, placed.count) else { return nil }
        let candidates = live.filter { !configuration.contains($0) && !gone.contains($0) }
        return ranked(stream, partition, candidates).first.map { .addVoter($0) }
    }

    /// The placement to store for a partition whose committed configuration differs from the
    /// stored one (after a replacement), or nil when they hold the same members. Those who stay
    /// keep their preference order (the preferred leader stays preferred); newcomers go last.
    public static func stored(voters: [String], witnesses: [String], configuration: RaftConfiguration)
        -> (voters: [String], witnesses: [String])?
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
        preferred: [String], alive: Set<String>, selfID: String, ledFor: Duration?,
        match: [String: UInt64], lastIndex: UInt64
    ) -> String? {
        guard let ledFor, ledFor >= handoffAfter,
            let target = preferred.first(where: { alive.contains($0) }), target != selfID,
            match[target] == lastIndex
        else { return nil }
        return target
    }
}
