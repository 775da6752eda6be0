import Foundation
import GlobalTable
import Logging
import Membership
import Storage
import StreamLog
import TandemCore
import Transport

/// Streams on one node: the catalog, the partition replicas this node holds, the put path
/// (forwarding to the leader), the read path (any replica, up to its commit index), consumer
/// checkpoints, leader placement and metrics. The Raft rules live in `StreamLog.RaftNode`, the
/// placement rules in `StreamLog.Placement`; one partition's shell loop is `StreamPartition`.
///
/// Files: this one holds the replicas (catalog reconcile, disk failures, replacement, leader
/// spreading, the Raft transport); `StreamCatalog` the catalog's items; `StreamsService` the
/// typed calls the REST (`StreamsREST`) and Kinesis (`KinesisAPI`) APIs make; `StreamsPut`
/// and `StreamsRead` the put and read paths; `StreamsMetrics` the metrics.
///
/// Design choices:
/// - **Catalog**: stream definitions are items of the reserved global table `_streams`, written
///   in-process through the tables API, so they replicate, repair and survive restarts like any
///   table item; every node polls it and opens or closes its partitions accordingly. Checkpoints
///   are items of `_checkpoints` (id `stream:consumer:partition`), last writer wins.
/// - **Placement**, decided once by the node that creates the stream and stored with it
///   (`Placement.place`: distinct regions first, then the least loaded data node, then a
///   rendezvous weight; witnesses fill in a missing region or below 3). Groups whose members
///   share a region spread once another region has a live node (`Placement.rebalanceStep`).
///   The first voter is the *preferred* leader: a leader elsewhere hands over to it once it is
///   alive and caught up (`Placement.handoffTarget`), so leaders spread over nodes and regions.
/// - **Forwarding**: a node that is not the leader forwards a put to the leader it knows (a
///   non-replica to a live replica), at most 3 hops, retrying until a bounded deadline (2 s)
///   while there is no leader; then 503 `no_leader`, retryable.
/// - **Group commit**: see `StreamPartition` (one fsync in flight per partition covers every
///   append made before it started).
final class Streams {
    static let catalogTable = "_streams"
    static let checkpointTable = "_checkpoints"
    static let noLeaderWait: Duration = .seconds(2)
    static let commitTimeout: Duration = .seconds(5)
    /// Puts (requests, not records) waiting for their commit on a partition's leader before new
    /// ones get 503 `overloaded` (Kinesis: ProvisionedThroughputExceededException).
    var maxPendingPuts = 10_000
    static let maxWaitMs = 20_000
    static let maxReadBytes = 2 << 20

    typealias Definition = StreamDefinition

    struct MemberInfo {
        /// Its name: what placements, Raft configurations and votes store.
        var id: NodeID
        var address: String
        var api: String
        var region: String
        var role: NodeRole
        var alive: Bool
        /// Left the cluster gracefully: gone for good, so its partition replicas are replaced.
        var left = false
    }

    struct Stats {
        var putsForwarded = 0
        /// Forwarded puts answered by this replica as soon as it had committed them.
        var putsAnsweredByReplica = 0
        var putsServedForPeers = 0
        var readsProxied = 0
        var unknownGroupMessages = 0
        var malformedFrames = 0
        var errors: [String: Int] = [:]
        var diskFailures = 0
        var replicasReopened = 0
    }

    /// A replica stopped by a disk failure (`StreamPartition.stopForDiskFailure`), reopened
    /// from disk every second until that works.
    struct StoppedReplica {
        /// The last index its log had synced: what comes after is cut on reopen.
        var durableThrough: UInt64
        var reason: String
        /// Stopped by a full disk (answered 507 `disk_full`) rather than a failing one.
        var full: Bool
        var since: Instant
        var attempts = 0
        /// The stopped replica, kept until a sync it had started on the pool has returned: a
        /// reopen must not race a job still writing through the old log.
        var old: StreamPartition?
    }

    let loop: EventLoop
    let logger: Logger
    let selfID: NodeID
    let isWitness: Bool
    let settings: RaftSettings
    let root: String
    let tables: Tables
    let peers: PeerLinks
    /// The members (self included), set by the node.
    var members: () -> [MemberInfo] = { [] }
    /// A member's peer address (nil: not known), set by the node; a lookup, not a scan.
    var addressOf: (NodeID) -> String? = { _ in nil }
    /// The addresses known nodes had, for records older nodes stored by address.
    var legacyAddresses: () -> LegacyAddresses = { LegacyAddresses() }
    /// Whether membership has merged a peer's whole view: until then an address in a stored
    /// record may belong to a member not heard of yet.
    var membershipSynced: () -> Bool = { true }
    /// After a start, how long a replica whose files name a member by an address no member has
    /// shown yet waits for that member, even once membership has synced: a sync with the first
    /// peer back does not list the nodes still restarting (LegacyAddressProcessTests: a
    /// configuration kept the address of the node that restarted last). Longer, the address
    /// is taken as a node gone before the upgrade.
    var legacyNamesGrace: Duration = .seconds(30)

    private(set) var definitions: [String: Definition] = [:]
    private(set) var partitions: [GroupID: StreamPartition] = [:]
    private(set) var stoppedReplicas: [GroupID: StoppedReplica] = [:]
    var leaderHints: [GroupID: NodeID] = [:]
    var stats = Stats()

    /// Tags of puts this node forwards as a replica (see `StreamRecord`): random per process,
    /// then a count.
    let origin = UInt64.random(in: 1 ... .max)
    var putsTagged: UInt64 = 0

    var outbox: [NodeID: (buffer: [UInt8], count: Int)] = [:]
    let flushTimer: LoopTimer
    var flushScheduled = false
    private let housekeeping: LoopTimer
    private var housekeepingRounds = 0
    private var timers: [ObjectIdentifier: LoopTimer] = [:]
    private(set) var stopping = false
    private let startedAt: Instant

    /// A retention hour in ms and the segment size: fixed, except in tests (`--stream-hour-ms`).
    let hourMs: UInt64
    let segmentBytes: Int
    /// False only for the benchmark's before/after comparison (`--stream-leader-answers-only`).
    let replicasAnswerForwardedPuts: Bool

    init(
        loop: EventLoop, logger: Logger, selfID: NodeID, isWitness: Bool, profile: String, dataDir: String,
        tables: Tables, peers: PeerLinks, hourMs: UInt64 = 3_600_000, segmentBytes: Int = 64 << 20,
        replicasAnswerForwardedPuts: Bool = true
    ) {
        self.hourMs = hourMs
        self.replicasAnswerForwardedPuts = replicasAnswerForwardedPuts
        self.segmentBytes = segmentBytes
        self.loop = loop
        self.logger = logger
        self.selfID = selfID
        self.isWitness = isWitness
        self.settings =
            switch profile {
            case "fast": .fast
            case "wan": .wan
            default: .lan
            }
        self.root = dataDir + "/streams"
        self.tables = tables
        self.peers = peers
        flushTimer = LoopTimer(loop: loop)
        housekeeping = LoopTimer(loop: loop)
        startedAt = loop.now
    }

    func start() {
        reconcile()
        housekeeping.start(after: .milliseconds(50), repeating: .milliseconds(50)) { [weak self] in self?.tick() }
    }

    /// Graceful shutdown: hand every partition this node leads to the most caught-up voter, so
    /// puts move on without waiting out an election timeout.
    func shutdown() {
        stopping = true
        for p in partitions.values where p.isLeader {
            logger.info("handing partition leadership away", metadata: ["partition": "\(p.id)"])
            p.transferLeadership(to: nil)
        }
    }

    private func tick() {
        housekeepingRounds += 1
        let now = loop.now
        for p in partitions.values { p.expire(now: now) }
        if housekeepingRounds % 4 == 0 { reconcile() }
        if housekeepingRounds % 20 == 10 { reopenStopped() }
        if housekeepingRounds % 20 == 0 && !stopping { spreadLeaders() }
        if housekeepingRounds % 10 == 5 && !stopping { replaceDepartedVoters() }
        if housekeepingRounds % 10 == 0 { dropRemovedReplicas() }
        // Every minute (every eighth of a retention hour when tests shorten it).
        if housekeepingRounds % Int(max(1, min(1200, hourMs / 8 / 50))) == 0 { applyRetention() }
    }

    /// Runs `body` once after `delay` on the loop.
    func after(_ delay: Duration, _ body: @escaping () -> Void) {
        let t = LoopTimer(loop: loop)
        let key = ObjectIdentifier(t)
        timers[key] = t
        t.start(after: delay) { [weak self] in
            self?.timers[key] = nil
            body()
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Catalog

    /// Reads the catalog table; opens the partitions this node replicates, closes those of
    /// deleted or re-created streams (`Placement.reconcile`).
    func reconcile() {
        // A catalog the store cannot read is not an empty one: nothing is opened or closed.
        guard let (stored, deleted, unreadable) = try? readCatalog() else { return }
        // Placements stored by older nodes name members by address: read by name, and stored
        // again by name once every address is known (docs/DESIGN-NOTES.md, Node identity).
        let legacy = legacyAddresses()
        let defs = stored.mapValues { $0.resolving(legacy) }
        let known = Set(members().map(\.id))
        for (name, d) in defs.sorted(by: { $0.key < $1.key })
        where d != stored[name] && !d.members.contains(where: { legacy.unresolved($0, known: known) }) && !isWitness {
            migratePlacement(d)
        }
        definitions = defs
        for name in unreadable.subtracting(unreadableLogged) {
            logger.warning(
                "cannot read a stream's catalog item (a newer version's, or damaged); its replicas here are kept as they are",
                metadata: ["stream": "\(name)"])
        }
        unreadableLogged = unreadable
        let held = Set(partitions.keys.map(\.ref)).union(stoppedReplicas.keys.map(\.ref))
        let plan = Placement.reconcile(definitions: defs, unreadable: unreadable, held: held, selfID: selfID)
        for ref in plan.close {
            let gid = GroupID(ref)
            if let part = partitions.removeValue(forKey: gid) {
                part.close()
                leaderHints[gid] = nil
                removeDirectory(part.directory)
                logger.info("closed stream partition", metadata: ["partition": "\(gid)"])
            } else if stoppedReplicas.removeValue(forKey: gid) != nil {
                removeDirectory(directory(gid))
            }
        }
        sweepDeadIncarnations(defs, deleted: deleted)
        for (gid, part) in partitions {
            if let d = defs[gid.stream], gid.partition < d.partitions { part.preferred = d.voters[gid.partition] }
        }
        for opening in plan.open {
            open(GroupID(opening.partition), defs[opening.partition.stream]!, configuration: opening.configuration)
        }
        openStaleReplicas()
    }

    /// Removes what is left on disk of streams the catalog says were deleted or re-created,
    /// where no open replica was closed with it: the `hardstate` a replica keeps after its group
    /// removed it, or the whole directory of a node that was down while its stream was deleted.
    /// A name the catalog does not hold at all is left alone: its definition may not have
    /// replicated here yet.
    private func sweepDeadIncarnations(_ defs: [String: Definition], deleted: Set<String>) {
        // Only when the catalog changed (reconcile runs every 200 ms; the disk need not be listed as often).
        let catalog = SweptCatalog(live: defs.mapValues(\.incarnation), deleted: deleted)
        guard catalog != sweptCatalog else { return }
        sweptCatalog = catalog
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: root) else { return }
        for name in names where defs[name] != nil || deleted.contains(name) {
            let live = defs[name].map { String($0.incarnation) }
            for incarnation in (try? fm.contentsOfDirectory(atPath: "\(root)/\(name)")) ?? [] where incarnation != live {
                try? fm.removeItem(atPath: "\(root)/\(name)/\(incarnation)")
                logger.info("removed the data of a deleted stream", metadata: ["stream": "\(name)", "incarnation": "\(incarnation)"])
            }
            if live == nil { try? fm.removeItem(atPath: "\(root)/\(name)") }
        }
    }

    private func directory(_ gid: GroupID) -> String { "\(root)/\(gid.stream)/\(gid.incarnation)/\(gid.partition)" }

    private func removeDirectory(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
        let streamDir = (path as NSString).deletingLastPathComponent
        if (try? FileManager.default.contentsOfDirectory(atPath: streamDir))?.isEmpty ?? false {
            try? FileManager.default.removeItem(atPath: streamDir)
        }
    }

    /// `keepingThrough`: reopening a replica stopped by a disk failure (see `reopenStopped`).
    @discardableResult
    private func open(
        _ gid: GroupID, _ d: Definition, configuration: RaftConfiguration,
        keepingThrough: UInt64? = nil
    ) -> StreamPartition? {
        do {
            let part = try StreamPartition(
                id: gid, directory: directory(gid),
                configuration: configuration,
                // Segments also roll by age (a quarter of the retention), so a quiet partition's
                // old records expire without waiting for a full segment.
                logSettings: SegmentLog.Settings(segmentBytesMax: segmentBytes, segmentAgeMaxMs: UInt64(d.retentionHours) * hourMs / 4),
                preferred: d.voters[gid.partition], selfID: selfID, origin: origin, settings: settings, loop: loop,
                keepingThrough: keepingThrough,
                legacy: StreamPartition.Legacy(
                    addresses: legacyAddresses(), known: Set(members().map(\.id)),
                    waitForNames: !membershipSynced() || loop.now - startedAt < legacyNamesGrace),
                send: { [weak self] to, g, m in self?.send(to, g, m) },
                onDiskFailure: { [weak self] why in self?.replicaStopped(gid, why) })
            if part.stopped {  // failed in its first drive, before it was ours
                noteStopped(gid, part, part.stopReason ?? "disk failure")
                return nil
            }
            partitions[gid] = part
            return part
        } catch is StreamPartition.NamesNotKnownYet {
            // Its files name a member by an address no member has shown yet: opened once
            // membership has synced and that member shows (or the grace ends; reconcile
            // retries every 200 ms).
            return nil
        } catch {
            if keepingThrough != nil {
                stoppedReplicas[gid]?.reason = "reopening: \(error)"
            } else {
                logger.error("cannot open stream partition", metadata: ["partition": "\(gid)", "error": "\(error)"])
            }
            return nil
        }
    }

    /// A replica's disk failed (it has stopped itself): take it out of service here, keep its
    /// files, and reopen it once the disk works (`reopenStopped`). The node and its other
    /// partitions and tables go on; the group elects a leader among the other replicas.
    private func replicaStopped(_ gid: GroupID, _ why: String) {
        guard let part = partitions[gid], part.stopped else { return }
        partitions[gid] = nil
        noteStopped(gid, part, why)
    }

    private func noteStopped(_ gid: GroupID, _ part: StreamPartition, _ why: String) {
        let durable = part.log.durableIndex
        leaderHints[gid] = nil
        stats.diskFailures += 1
        stoppedReplicas[gid] = StoppedReplica(
            durableThrough: durable, reason: why, full: part.stoppedByFullDisk, since: loop.now, old: part)
        logger.critical(
            "stream partition stopped: its disk failed; it votes and acknowledges nothing until it reopens (tried every second)",
            metadata: ["partition": "\(gid)", "error": "\(why)", "durableThrough": "\(durable)"])
    }

    /// Reopens stopped replicas as a restart would, but cutting what their logs wrote after the
    /// last good sync. While the disk still fails the reopen's own fsyncs fail and it waits for
    /// the next round.
    private func reopenStopped() {
        for (gid, stopped) in stoppedReplicas.sorted(by: { $0.key.description < $1.key.description }) {
            guard let d = definitions[gid.stream], d.incarnation == gid.incarnation, gid.partition < d.partitions,
                !(stopped.old?.isSyncing ?? false)
            else { continue }
            stoppedReplicas[gid]?.old = nil
            stoppedReplicas[gid]?.attempts += 1
            let config = RaftConfiguration(voters: d.voters[gid.partition], witnesses: d.witnesses[gid.partition])
            guard let part = open(gid, d, configuration: config, keepingThrough: stopped.durableThrough) else { continue }
            stoppedReplicas[gid] = nil
            stats.replicasReopened += 1
            logger.notice(
                "stream partition reopened after a disk failure",
                metadata: [
                    "partition": "\(gid)", "stoppedMs": "\(Int((loop.now - stopped.since).milliseconds))",
                    "unsyncedEntriesDropped": "\(part.log.recovery.unsyncedEntriesDropped)"
                ])
        }
    }

    /// A leader's message for a partition this node does not hold, from a voter of its
    /// placement: the leader added this node (a replacement, or a witness or voter added to
    /// spread the group over regions, before the definition says so). The replica opens with
    /// an empty configuration and learns the real one from the log.
    func openAddedReplica(_ g: GroupID, _ m: RaftMessage) -> StreamPartition? {
        guard !stopping, stoppedReplicas[g] == nil, let d = definitions[g.stream], d.incarnation == g.incarnation,
            g.partition < d.partitions,
            d.voters[g.partition].contains(m.from)
        else { return nil }
        switch m.body {
        case .append, .heartbeat, .installStart: break
        default: return nil
        }
        logger.info("opening a partition replica this node was added to", metadata: ["partition": "\(g)", "leader": "\(m.from)"])
        return open(g, d, configuration: RaftConfiguration(voters: []))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Re-placement

    /// A voter that is gone for good is replaced by the partition's leader, one single-server
    /// change at a time (`Placement.replacementStep`). Once the group's configuration has committed and
    /// differs from the stored placement, the leader writes the placement back to the catalog,
    /// so `describe`, forwarding and the new member see it.
    ///
    /// Gone for good: its member left the cluster (graceful leave), or the membership layer
    /// no longer lists it at all (it forgets members dead or left for longer than it keeps
    /// them) — the latter only once this node has been up long enough to have heard of everyone.
    private func replaceDepartedVoters() {
        let all = members()
        var gone = Set(all.filter(\.left).map(\.id))
        if loop.now - startedAt >= Streams.forgottenAfterUptime {
            let known = Set(all.map(\.id))
            for p in partitions.values { gone.formUnion(p.raft.configuration.voters.filter { !known.contains($0) }) }
        }
        let live = all.filter { $0.alive && !$0.left }.map { Placement.Candidate($0.id, region: $0.region, witness: $0.role == .witness) }
        let regions = Dictionary(all.map { ($0.id, $0.region) }, uniquingKeysWith: { a, _ in a })
        for p in partitions.values where p.canPropose {
            guard let d = definitions[p.id.stream], d.incarnation == p.id.incarnation else { continue }
            let config = p.raft.configuration
            guard p.raft.configurationCommitted else { continue }
            if let change = Placement.replacementStep(
                stream: d.name, partition: p.id.partition, configuration: config,
                placed: d.voters[p.id.partition], gone: gone, live: live.filter { !$0.witness }, regions: regions, selfID: selfID)
            {
                do {
                    try p.proposeChange(change)
                    logger.info("replacing a departed voter", metadata: ["partition": "\(p.id)", "change": "\(change)"])
                } catch {
                    // Not yet (this term's first commit pending, a transfer): next round.
                }
            } else if let change = Placement.rebalanceStep(
                stream: d.name, partition: p.id.partition, configuration: config, placed: d.voters[p.id.partition],
                live: live, selfID: selfID)
            {
                do {
                    try p.proposeChange(change)
                    logger.info("spreading a partition over more regions", metadata: ["partition": "\(p.id)", "change": "\(change)"])
                } catch {
                    // Not yet: next round.
                }
            } else if let stored = Placement.stored(
                voters: d.voters[p.id.partition], witnesses: d.witnesses[p.id.partition],
                configuration: config)
            {
                writeBackPlacement(d, p.id.partition, stored)
            }
        }
    }

    /// A replica whose group removed this node drops its data: once its Raft log says so
    /// (`RaftNode.isRemoved`: the removal committed, and the log ends at it, so this node acked
    /// nothing since that a later configuration could count) and the stored placement agrees.
    /// Term and vote stay (the `hardstate` file, a few bytes): should the group add this node
    /// back, its new replica must not vote twice in a term it already voted in.
    private func dropRemovedReplicas() {
        for (gid, part) in partitions where part.raft.isRemoved {
            guard let d = definitions[gid.stream], d.incarnation == gid.incarnation, gid.partition < d.partitions,
                !d.voters[gid.partition].contains(selfID), !d.witnesses[gid.partition].contains(selfID)
            else { continue }
            part.close()
            partitions[gid] = nil
            leaderHints[gid] = nil
            try? FileManager.default.removeItem(atPath: part.directory + "/log")
            try? FileManager.default.removeItem(atPath: part.directory + "/configurations")
            logger.info("dropped the data of a partition this node was removed from", metadata: ["partition": "\(gid)"])
        }
    }

    /// Replicas on disk that the stored placement no longer lists, reopened on the configuration
    /// they knew (once per stream incarnation and process, when its definition is first seen):
    /// the group removed this node while it was down, so its log lacks the removal, and only the
    /// group can say whether it is out. Its members answer the
    /// replica's vote requests with `removed` (`RaftNode.isRemoved`), and `dropRemovedReplicas`
    /// then drops the data. (Still a member after all — a placement being rewritten — it simply
    /// serves again.) A replica whose data was already dropped holds only `hardstate`; one from
    /// before configurations were recorded at creation cannot be reopened and is left as it is.
    private func openStaleReplicas() {
        // Once per incarnation: not before stored addresses can be told (see `open`).
        guard membershipSynced() else { return }
        let fm = FileManager.default
        for d in definitions.values where !staleScanned.contains("\(d.name)/\(d.incarnation)") {
            staleScanned.insert("\(d.name)/\(d.incarnation)")
            let dir = "\(root)/\(d.name)/\(d.incarnation)"
            for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] {
                guard let p = Int(name), p >= 0, p < d.partitions, !d.voters[p].contains(selfID), !d.witnesses[p].contains(selfID) else {
                    continue
                }
                let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
                guard partitions[gid] == nil, stoppedReplicas[gid] == nil, fm.fileExists(atPath: "\(dir)/\(name)/log"),
                    let initial = try? RaftConfigurationFile(path: "\(dir)/\(name)/configurations").load().first(where: { $0.index == 0 })
                else { continue }
                logger.info(
                    "reopening a replica the placement no longer lists, to learn whether it was removed", metadata: ["partition": "\(gid)"])
                open(gid, d, configuration: initial.configuration)
            }
        }
    }

    private var staleScanned: Set<String> = []
    /// Catalog items this node could not decode, warned about once each.
    private var unreadableLogged: Set<String> = []
    private struct SweptCatalog: Equatable {
        var live: [String: UInt64]
        var deleted: Set<String>
    }
    private var sweptCatalog: SweptCatalog?

    /// How long a node runs before a voter missing from its member list counts as gone.
    static let forgottenAfterUptime: Duration = .seconds(60)

    private var placementWrittenAt: [String: Instant] = [:]

    /// Stores a definition read from an older node's addresses by names (any node may: they
    /// all write the same item, so last writer wins changes nothing).
    private func migratePlacement(_ d: Definition) {
        if let last = placementWrittenAt[d.name], loop.now - last < .seconds(1) { return }
        placementWrittenAt[d.name] = loop.now
        logger.notice("storing a stream's placement by node names (it named nodes by address)", metadata: ["stream": "\(d.name)"])
        writeDefinition(d) { [weak self] error in
            if let error { self?.logger.warning("cannot store placement", metadata: ["stream": "\(d.name)", "error": "\(error)"]) }
        }
    }

    /// Stores partition `pi`'s committed configuration (`Placement.stored`) in the stream's
    /// definition. Different partitions' leaders may write the same item concurrently (last
    /// writer wins): each keeps rewriting while the stored placement differs from its group, so
    /// they converge.
    private func writeBackPlacement(_ d: Definition, _ pi: Int, _ stored: (voters: [NodeID], witnesses: [NodeID])) {
        if let last = placementWrittenAt[d.name], loop.now - last < .seconds(1) { return }
        placementWrittenAt[d.name] = loop.now
        var updated = d
        updated.voters[pi] = stored.voters
        updated.witnesses[pi] = stored.witnesses
        logger.info("storing a partition's new placement", metadata: ["partition": "\(d.name)/\(pi)", "voters": "\(stored.voters)"])
        writeDefinition(updated) { [weak self] error in
            if let error { self?.logger.warning("cannot store placement", metadata: ["stream": "\(d.name)", "error": "\(error)"]) }
            self?.reconcile()
        }
    }

    private func applyRetention() {
        let now = Tables.wallMs()
        for p in partitions.values {
            guard let d = definitions[p.id.stream] else { continue }
            let cutoff = now - min(now, UInt64(d.retentionHours) * hourMs)
            _ = try? p.log.trimOlderThan(timestampMs: cutoff, below: p.commitIndex + 1)
        }
    }

    /// Leaders move to their partition's preferred node when it is alive and caught up, a few
    /// seconds into a term (`Placement.handoffTarget`).
    private func spreadLeaders() {
        let alive = Set(members().filter(\.alive).map(\.id))
        let now = loop.now
        for p in partitions.values where p.isLeader {
            guard
                let target = Placement.handoffTarget(
                    preferred: p.preferred, alive: alive, selfID: selfID, ledFor: p.leaderSince.map { now - $0 },
                    match: p.raft.progress.mapValues(\.match), lastIndex: p.raft.lastIndex)
            else { continue }
            logger.info("moving partition leader to its preferred node", metadata: ["partition": "\(p.id)", "to": "\(target)"])
            p.transferLeadership(to: target)
        }
    }

}

extension GroupID {
    init(_ ref: PartitionRef) { self.init(stream: ref.stream, incarnation: ref.incarnation, partition: ref.partition) }
    var ref: PartitionRef { PartitionRef(stream: stream, incarnation: incarnation, partition: partition) }
}
