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
/// checkpoints, leader placement and metrics. The Raft rules live in `StreamLog.RaftNode`;
/// one partition's shell loop is `StreamPartition`.
///
/// Design choices:
/// - **Catalog**: stream definitions are items of the reserved global table `_streams`, written
///   in-process through the tables API, so they replicate, repair and survive restarts like any
///   table item; every node polls it and opens or closes its partitions accordingly. Checkpoints
///   are items of `_checkpoints` (id `stream:consumer:partition`), last writer wins.
/// - **Placement**, decided once by the node that creates the stream and stored with it: per
///   partition, rendezvous hashing (highest `stableHash64(stream/partition/address)` first)
///   over the live non-witness members picks up to 3 voters; with fewer than 3, witnesses fill
///   in. The first voter is the *preferred* leader: a leader elsewhere hands over to it once it
///   is alive and caught up, so leaders spread over nodes and regions as the hash spreads them.
/// - **Forwarding**: a node that is not the leader forwards a put to the leader it knows (a
///   non-replica to a live replica), at most 3 hops, retrying until a bounded deadline (2 s)
///   while there is no leader; then 503 `no_leader`, retryable.
/// - **Group commit**: see `StreamPartition` (one fsync in flight per partition covers every
///   append made before it started).
final class Streams {
    static let catalogTable = "_streams"
    static let checkpointTable = "_checkpoints"
    static let replicationFactor = 3
    static let noLeaderWait: Duration = .seconds(2)
    static let commitTimeout: Duration = .seconds(5)
    /// Puts (requests, not records) waiting for their commit on a partition's leader before new
    /// ones get 503 `overloaded` (Kinesis: ProvisionedThroughputExceededException).
    var maxPendingPuts = 10_000
    static let maxWaitMs = 20_000
    static let maxReadBytes = 2 << 20

    struct Definition: Equatable {
        var name: String
        var partitions: Int
        var retentionHours: Int
        /// Creation time (ms): names the incarnation, so a re-created stream never meets the old one.
        var incarnation: UInt64
        /// Per partition: voters in preference order, and witnesses.
        var voters: [[String]]
        var witnesses: [[String]]
        /// The placement as stored (to notice when a leader rewrites it after a replacement).
        var placementText = ""
    }

    struct MemberInfo {
        var name: String
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
    let selfID: String
    let isWitness: Bool
    let settings: RaftSettings
    let root: String
    private let tables: Tables
    private let peers: PeerLinks
    /// The members (self included), set by the node.
    var members: () -> [MemberInfo] = { [] }

    private(set) var definitions: [String: Definition] = [:]
    private(set) var partitions: [GroupID: StreamPartition] = [:]
    private(set) var stoppedReplicas: [GroupID: StoppedReplica] = [:]
    private var leaderHints: [GroupID: String] = [:]
    private(set) var stats = Stats()

    /// Tags of puts this node forwards as a replica (see `StreamRecord`): random per process,
    /// then a count.
    private let origin = UInt64.random(in: 1 ... .max)
    private var putsTagged: UInt64 = 0

    private var outbox: [String: (buffer: [UInt8], count: Int)] = [:]
    private let flushTimer: LoopTimer
    private var flushScheduled = false
    private let housekeeping: LoopTimer
    private var housekeepingRounds = 0
    private var timers: [ObjectIdentifier: LoopTimer] = [:]
    private var stopping = false
    private let startedAt: Instant

    /// A retention hour in ms and the segment size: fixed, except in tests (`--stream-hour-ms`).
    let hourMs: UInt64
    let segmentBytes: Int
    /// False only for the benchmark's before/after comparison (`--stream-leader-answers-only`).
    let replicasAnswerForwardedPuts: Bool

    init(loop: EventLoop, logger: Logger, selfID: String, isWitness: Bool, profile: String, dataDir: String,
         tables: Tables, peers: PeerLinks, hourMs: UInt64 = 3_600_000, segmentBytes: Int = 64 << 20,
         replicasAnswerForwardedPuts: Bool = true) {
        self.hourMs = hourMs
        self.replicasAnswerForwardedPuts = replicasAnswerForwardedPuts
        self.segmentBytes = segmentBytes
        self.loop = loop
        self.logger = logger
        self.selfID = selfID
        self.isWitness = isWitness
        self.settings = switch profile {
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
    private func after(_ delay: Duration, _ body: @escaping () -> Void) {
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

    static func validName(_ s: String) -> Bool {
        (1...128).contains(s.utf8.count) && !s.hasPrefix("_")
            && s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "_.-".unicodeScalars.contains($0) }
    }

    static func decode(_ j: JSON) -> Definition? {
        func int(_ k: String) -> Int? { if case .number(let t)? = j[k] { Int(t) } else { nil } }
        guard let name = j["name"]?.stringValue, let partitions = int("partitions"), let retention = int("retentionHours"),
              let inc = j["incarnation"]?.stringValue.flatMap({ UInt64($0) }), let placementText = j["placement"]?.stringValue,
              case .array(let placement)? = try? JSON.parse(Array(placementText.utf8)), placement.count == partitions else { return nil }
        var voters: [[String]] = []
        var witnesses: [[String]] = []
        for p in placement {
            guard case .array(let v)? = p["voters"], case .array(let w)? = p["witnesses"] else { return nil }
            voters.append(v.compactMap(\.stringValue))
            witnesses.append(w.compactMap(\.stringValue))
        }
        return Definition(name: name, partitions: partitions, retentionHours: retention, incarnation: inc, voters: voters, witnesses: witnesses,
                          placementText: placementText)
    }

    /// The catalog item for a definition (its placement as a JSON string).
    static func item(name: String, partitions: Int, retentionHours: Int, incarnation: UInt64,
                     voters: [[String]], witnesses: [[String]]) -> JSON {
        let placement = JSON.array(zip(voters, witnesses).map { v, w in
            .object([("voters", .array(v.map { .string($0) })), ("witnesses", .array(w.map { .string($0) }))])
        })
        return JSON.object([("name", .string(name)), ("partitions", .number(String(partitions))),
                            ("retentionHours", .number(String(retentionHours))), ("incarnation", .string(String(incarnation))),
                            ("placement", .string(placement.serialized))])
    }

    /// Rendezvous order of `candidates` for partition `p` of `stream` (highest hash first).
    static func ranked(_ stream: String, _ p: Int, _ candidates: [String]) -> [String] {
        candidates.map { ($0, stableHash64(Array("\(stream)/\(p)/\($0)".utf8))) }.sorted { $0.1 > $1.1 }.map(\.0)
    }

    /// Rendezvous placement for a new stream (see the type doc).
    func place(_ name: String, partitions: Int) -> (voters: [[String]], witnesses: [[String]]) {
        let live = members().filter(\.alive)
        let full = live.filter { $0.role != .witness }.map(\.address)
        let witness = live.filter { $0.role == .witness }.map(\.address)
        var voters: [[String]] = []
        var witnesses: [[String]] = []
        for p in 0..<partitions {
            func ranked(_ xs: [String]) -> [String] { Streams.ranked(name, p, xs) }
            let v = Array(ranked(full).prefix(Streams.replicationFactor))
            voters.append(v)
            witnesses.append(Array(ranked(witness).prefix(max(0, Streams.replicationFactor - v.count))))
        }
        return (voters, witnesses)
    }

    /// Reads the catalog table; opens the partitions this node replicates, closes the others.
    func reconcile() {
        var defs: [String: Definition] = [:]
        var deleted: Set<String> = []
        for (key, state) in tables.replicas[Streams.catalogTable]?.items ?? [:] {
            guard let visible = state.visible else {
                if case .string(let name) = key.partition { deleted.insert(name) }
                continue
            }
            let j = PlainJSON.json(visible)
            // Parse each definition once per incarnation and placement (a leader rewrites the
            // placement after replacing a departed voter).
            if let name = j["name"]?.stringValue, let known = definitions[name], j["incarnation"]?.stringValue == String(known.incarnation),
               j["placement"]?.stringValue == known.placementText {
                defs[name] = known
            } else if let d = Streams.decode(j) {
                defs[d.name] = d
            }
        }
        definitions = defs
        for (gid, part) in partitions where defs[gid.stream]?.incarnation != gid.incarnation {
            part.close()
            partitions[gid] = nil
            leaderHints[gid] = nil
            removeDirectory(part.directory)
            logger.info("closed stream partition", metadata: ["partition": "\(gid)"])
        }
        for gid in stoppedReplicas.keys where defs[gid.stream]?.incarnation != gid.incarnation {
            stoppedReplicas[gid] = nil
            removeDirectory(directory(gid))
        }
        sweepDeadIncarnations(defs, deleted: deleted)
        for (gid, part) in partitions {
            if let d = defs[gid.stream], gid.partition < d.partitions { part.preferred = d.voters[gid.partition] }
        }
        for d in defs.values {
            for p in 0..<d.partitions where d.voters[p].contains(selfID) || d.witnesses[p].contains(selfID) {
                let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
                guard partitions[gid] == nil, stoppedReplicas[gid] == nil else { continue }
                open(gid, d, configuration: RaftConfiguration(voters: d.voters[p], witnesses: d.witnesses[p]))
            }
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
    private func open(_ gid: GroupID, _ d: Definition, configuration: RaftConfiguration,
                      keepingThrough: UInt64? = nil) -> StreamPartition? {
        do {
            let part = try StreamPartition(
                id: gid, directory: directory(gid),
                configuration: configuration,
                // Segments also roll by age (a quarter of the retention), so a quiet partition's
                // old records expire without waiting for a full segment.
                logSettings: SegmentLog.Settings(segmentBytesMax: segmentBytes, segmentAgeMaxMs: UInt64(d.retentionHours) * hourMs / 4),
                preferred: d.voters[gid.partition], selfID: selfID, origin: origin, settings: settings, loop: loop,
                keepingThrough: keepingThrough,
                send: { [unowned self] to, g, m in self.send(to, g, m) },
                onDiskFailure: { [unowned self] why in self.replicaStopped(gid, why) })
            if part.stopped {  // failed in its first drive, before it was ours
                noteStopped(gid, part, part.stopReason ?? "disk failure")
                return nil
            }
            partitions[gid] = part
            return part
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
        stoppedReplicas[gid] = StoppedReplica(durableThrough: durable, reason: why, full: part.stoppedByFullDisk, since: loop.now, old: part)
        logger.critical("stream partition stopped: its disk failed; it votes and acknowledges nothing until it reopens (tried every second)",
                        metadata: ["partition": "\(gid)", "error": "\(why)", "durableThrough": "\(durable)"])
    }

    /// Reopens stopped replicas as a restart would, but cutting what their logs wrote after the
    /// last good sync. While the disk still fails the reopen's own fsyncs fail and it waits for
    /// the next round.
    private func reopenStopped() {
        for (gid, stopped) in stoppedReplicas.sorted(by: { $0.key.description < $1.key.description }) {
            guard let d = definitions[gid.stream], d.incarnation == gid.incarnation, gid.partition < d.partitions,
                  !(stopped.old?.isSyncing ?? false) else { continue }
            stoppedReplicas[gid]?.old = nil
            stoppedReplicas[gid]?.attempts += 1
            let config = RaftConfiguration(voters: d.voters[gid.partition], witnesses: d.witnesses[gid.partition])
            guard let part = open(gid, d, configuration: config, keepingThrough: stopped.durableThrough) else { continue }
            stoppedReplicas[gid] = nil
            stats.replicasReopened += 1
            logger.notice("stream partition reopened after a disk failure", metadata: [
                "partition": "\(gid)", "stoppedMs": "\(Int((loop.now - stopped.since).milliseconds))",
                "unsyncedEntriesDropped": "\(part.log.recovery.unsyncedEntriesDropped)",
            ])
        }
    }

    /// A leader's message for a partition this node does not hold, from a voter of its
    /// placement: the leader added this node (a replacement, before the definition says so).
    /// The replica opens with an empty configuration and learns the real one from the log.
    private func openAddedReplica(_ g: GroupID, _ m: RaftMessage) -> StreamPartition? {
        guard !isWitness, !stopping, stoppedReplicas[g] == nil, let d = definitions[g.stream], d.incarnation == g.incarnation, g.partition < d.partitions,
              d.voters[g.partition].contains(m.from) else { return nil }
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
    /// change at a time (`replacementStep`). Once the group's configuration has committed and
    /// differs from the stored placement, the leader writes the placement back to the catalog,
    /// so `describe`, forwarding and the new member see it.
    ///
    /// Gone for good: its member left the cluster (graceful leave), or the membership layer
    /// no longer lists it at all (it forgets members dead or left for longer than it keeps
    /// them) — the latter only once this node has been up long enough to have heard of everyone.
    private func replaceDepartedVoters() {
        let all = members()
        var gone = Set(all.filter(\.left).map(\.address))
        if loop.now - startedAt >= Streams.forgottenAfterUptime {
            let known = Set(all.map(\.address))
            for p in partitions.values { gone.formUnion(p.raft.configuration.voters.filter { !known.contains($0) }) }
        }
        let live = all.filter { $0.alive && !$0.left && $0.role != .witness }.map(\.address)
        for p in partitions.values where p.canPropose {
            guard let d = definitions[p.id.stream], d.incarnation == p.id.incarnation else { continue }
            let config = p.raft.configuration
            guard p.raft.configurationCommitted else { continue }
            if let change = Streams.replacementStep(stream: d.name, partition: p.id.partition, configuration: config,
                                                    placed: d.voters[p.id.partition], gone: gone, live: live, selfID: selfID) {
                do {
                    try p.proposeChange(change)
                    logger.info("replacing a departed voter", metadata: ["partition": "\(p.id)", "change": "\(change)"])
                } catch {
                    // Not yet (this term's first commit pending, a transfer): next round.
                }
            } else if Set(config.voters) != Set(d.voters[p.id.partition]) || Set(config.witnesses) != Set(d.witnesses[p.id.partition]) {
                writeBackPlacement(d, p.id.partition, config)
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
                  !d.voters[gid.partition].contains(selfID), !d.witnesses[gid.partition].contains(selfID) else { continue }
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
        let fm = FileManager.default
        for d in definitions.values where !staleScanned.contains("\(d.name)/\(d.incarnation)") {
            staleScanned.insert("\(d.name)/\(d.incarnation)")
            let dir = "\(root)/\(d.name)/\(d.incarnation)"
            for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] {
                guard let p = Int(name), p >= 0, p < d.partitions, !d.voters[p].contains(selfID), !d.witnesses[p].contains(selfID) else { continue }
                let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
                guard partitions[gid] == nil, stoppedReplicas[gid] == nil, fm.fileExists(atPath: "\(dir)/\(name)/log"),
                      let initial = try? RaftConfigurationFile(path: "\(dir)/\(name)/configurations").load().first(where: { $0.index == 0 })
                else { continue }
                logger.info("reopening a replica the placement no longer lists, to learn whether it was removed", metadata: ["partition": "\(gid)"])
                open(gid, d, configuration: initial.configuration)
            }
        }
    }

    private var staleScanned: Set<String> = []
    private struct SweptCatalog: Equatable {
        var live: [String: UInt64]
        var deleted: Set<String>
    }
    private var sweptCatalog: SweptCatalog?

    /// How long a node runs before a voter missing from its member list counts as gone.
    static let forgottenAfterUptime: Duration = .seconds(60)

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
    static func replacementStep(stream: String, partition: Int, configuration: RaftConfiguration, placed: [String],
                                gone: Set<String>, live: [String], selfID: String) -> ConfigurationChange? {
        // The leader never removes itself here: it hands leadership over when it leaves.
        if let departed = configuration.voters.first(where: { gone.contains($0) && $0 != selfID }) {
            return .remove(departed)
        }
        guard configuration.voters.count < min(replicationFactor, placed.count) else { return nil }
        let candidates = live.filter { !configuration.contains($0) && !gone.contains($0) }
        return ranked(stream, partition, candidates).first.map { .addVoter($0) }
    }

    private var placementWrittenAt: [String: Instant] = [:]

    /// Stores partition `pi`'s committed configuration in the stream's definition. Different
    /// partitions' leaders may write the same item concurrently (last writer wins): each keeps
    /// rewriting while the stored placement differs from its group, so they converge.
    private func writeBackPlacement(_ d: Definition, _ pi: Int, _ config: RaftConfiguration) {
        if let last = placementWrittenAt[d.name], loop.now - last < .seconds(1) { return }
        placementWrittenAt[d.name] = loop.now
        var voters = d.voters
        var witnesses = d.witnesses
        // Keep the preference order of those who stay; newcomers go last.
        voters[pi] = d.voters[pi].filter { config.voters.contains($0) } + config.voters.filter { !d.voters[pi].contains($0) }
        witnesses[pi] = d.witnesses[pi].filter { config.witnesses.contains($0) } + config.witnesses.filter { !d.witnesses[pi].contains($0) }
        let item = Streams.item(name: d.name, partitions: d.partitions, retentionHours: d.retentionHours, incarnation: d.incarnation,
                                voters: voters, witnesses: witnesses)
        logger.info("storing a partition's new placement", metadata: ["partition": "\(d.name)/\(pi)", "voters": "\(voters[pi])"])
        writeItem(Streams.catalogTable, d.name, item) { [weak self] r in
            if r.status != 200 { self?.logger.warning("cannot store placement", metadata: ["stream": "\(d.name)", "status": "\(r.status)"]) }
            self?.reconcile()
        }
    }

    private func definition(_ name: String) throws(TandemError) -> Definition {
        guard let d = definitions[name] else { throw TandemError(.notFound, "no stream '\(name)'") }
        return d
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
    /// seconds into a term (so a flapping node cannot bounce leadership around).
    private func spreadLeaders() {
        let alive = Set(members().filter(\.alive).map(\.address))
        let now = loop.now
        for p in partitions.values where p.isLeader {
            guard let since = p.leaderSince, now - since >= .seconds(3),
                  let target = p.preferred.first(where: { alive.contains($0) }), target != selfID,
                  p.raft.progress[target]?.match == p.raft.lastIndex else { continue }
            logger.info("moving partition leader to its preferred node", metadata: ["partition": "\(p.id)", "to": "\(target)"])
            p.transferLeadership(to: target)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Raft transport (one frame per destination per loop turn)

    private func send(_ to: String, _ g: GroupID, _ m: RaftMessage) {
        var w = ByteWriter(capacity: 64)
        g.encode(into: &w)
        w.blob(m.encode())
        // Appended in place: a copy taken out of the dictionary and put back copied the whole
        // pending buffer on every message.
        outbox[to, default: ([], 0)].buffer.append(contentsOf: w.bytes)
        outbox[to, default: ([], 0)].count += 1
        let (bytes, count) = (outbox[to]!.buffer.count, outbox[to]!.count)
        if bytes >= 1 << 20 || count >= StreamWire.maxMessagesPerFrame {
            flush(to)
        } else if !flushScheduled {
            flushScheduled = true
            flushTimer.start(after: .zero) { [weak self] in
                guard let self else { return }
                self.flushScheduled = false
                for to in Array(self.outbox.keys) { self.flush(to) }
            }
        }
    }

    private func flush(_ to: String) {
        guard let entry = outbox.removeValue(forKey: to), entry.count > 0 else { return }
        var w = ByteWriter(capacity: entry.buffer.count + 3)
        w.u8(StreamWire.version)
        w.u16(UInt16(entry.count))
        w.raw(entry.buffer)
        peers.send(to: to, kind: StreamFrameKind.raft, payload: w.bytes)
    }

    /// A stream frame from a peer.
    func serve(_ frame: Frame, reply: @escaping ([UInt8]) -> Void) {
        do {
            switch frame.kind {
            case StreamFrameKind.raft:
                var reconciled = false
                for (g, m) in try StreamWire.decodeRaftBatch(frame.payload) {
                    if partitions[g] == nil && !reconciled {
                        // The catalog item may have arrived after the first vote request.
                        reconciled = true
                        reconcile()
                    }
                    guard let p = partitions[g] ?? openAddedReplica(g, m) else {
                        stats.unknownGroupMessages += 1
                        continue
                    }
                    p.step(m)
                }
            case StreamFrameKind.put:
                let req = try StreamWire.decodePut(frame.payload)
                stats.putsServedForPeers += 1
                let deadline = loop.now + .milliseconds(Int64(min(req.waitMs, 10_000)))
                submit(req.group, req.records, deadline: deadline, hops: req.hops) { [weak self] result in
                    let leader = self?.partitions[req.group]?.raft.leader ?? self?.leaderHints[req.group]
                    reply(StreamWire.encodePutResult(result, leader: leader))
                }
            case StreamFrameKind.read:
                let req = try StreamWire.decodeRead(frame.payload)
                read(req.stream, req.partition, req.query, proxied: true) { status, body in
                    reply(StreamWire.encodeReadResult(status: status, body: body))
                }
            default:
                stats.malformedFrames += 1
            }
        } catch {
            stats.malformedFrames += 1
            peers.countMalformed()
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Put path

    typealias PutResult = Result<ClosedRange<UInt64>, PutFailure>

    /// Proposes `records` (already encoded) to partition `g`: here if this node leads it, else
    /// through the leader. Waits for a leader until `deadline`; answers after commit.
    func submit(_ g: GroupID, _ records: [[UInt8]], deadline: Instant, hops: Int, attempt: Int = 0,
                _ done: @escaping (PutResult) -> Void) {
        guard let d = definitions[g.stream], d.incarnation == g.incarnation, g.partition < d.partitions else {
            return done(.failure(PutFailure(status: 404, code: "not_found", message: "no stream '\(g.stream)' (or it was re-created)", retryable: false)))
        }
        let local = partitions[g]
        if let local, local.canPropose {
            // Puts waiting for their commit are bounded per partition: past the bound the leader
            // (or its followers) is behind, and a client is told to back off instead of queueing.
            guard local.pendingPuts < maxPendingPuts else {
                return done(.failure(PutFailure(status: 503, code: "overloaded", message: "\(local.pendingPuts) puts to \(g.description) are waiting for their commit; retry shortly", retryable: true)))
            }
            do {
                return try local.propose(records, wallMs: Tables.wallMs(), commitTimeout: Streams.commitTimeout, done)
            } catch {
                // Lost leadership in between: fall through and look for the leader.
            }
        }
        let now = loop.now
        let stoppedHere = stoppedReplicas[g]
        var target = local?.raft.leader ?? leaderHints[g]
        if local == nil && target == nil {
            // Not a replica and no hint: any live replica knows the leader (rotating on failure).
            // A replica stopped here by its disk knows nothing: ask the others.
            let alive = Set(members().filter(\.alive).map(\.address))
            let candidates = d.voters[g.partition].filter { alive.contains($0) && !(stoppedHere != nil && $0 == selfID) }
            if !candidates.isEmpty { target = candidates[attempt % candidates.count] }
        }
        func retry(_ done: @escaping (PutResult) -> Void) {
            guard loop.now < deadline else { return done(.failure(.noLeader(g.description))) }
            after(.milliseconds(10)) { [weak self] in self?.submit(g, records, deadline: deadline, hops: hops, attempt: attempt + 1, done) }
        }
        guard let target, target != selfID, hops < 3 else {
            if let stoppedHere, target == nil || target == selfID {
                // Nobody else to ask: say why at once rather than wait out the deadline.
                return done(.failure(PutFailure.disk(g, full: stoppedHere.full,
                    "cannot write its log on this node (\(stoppedHere.reason)); nothing was appended; retry when the disk recovers")))
            }
            return retry(done)
        }
        if peers.isBackingOff(target) {
            // Just failed to connect (a dead leader, most likely): look again shortly rather
            // than queue behind the reconnect backoff.
            if leaderHints[g] == target { leaderHints[g] = nil }
            return retry(done)
        }
        stats.putsForwarded += 1
        // Only one answer reaches the client: this replica's, once it has committed the put,
        // or the leader's (or the failure), whichever comes first.
        let once = AnswerOnce(done)
        var sent = records
        var put: UInt64?
        if let local, replicasAnswerForwardedPuts {
            // A replica will see the records come back in the leader's append: tagged, it
            // recognises them and answers once it has committed them — a round trip before
            // the leader's answer could arrive.
            putsTagged += 1
            put = putsTagged
            sent[0] = StreamRecord.tagged(records[0], origin: origin, put: putsTagged)
            local.awaitForwarded(put: putsTagged, count: records.count) { [weak self] range in
                self?.stats.putsAnsweredByReplica += 1
                once(.success(range))
            }
        }
        let waitMs = UInt32(max(0, (deadline - now).milliseconds))
        let payload = StreamWire.encode(StreamWire.PutRequest(group: g, hops: hops + 1, waitMs: waitMs, records: sent))
        peers.request(to: target, kind: StreamFrameKind.put, payload: payload,
                      timeout: .milliseconds(Int64(waitMs)) + Streams.commitTimeout + .seconds(1)) { [weak self, weak local] result in
            if let put { local?.forgetForwarded(put: put) }
            let done = once.callAsFunction
            guard let self else { return }
            switch result {
            case .success(let frame):
                guard let (answer, leader) = try? StreamWire.decodePutResult(frame.payload) else {
                    self.peers.countMalformed()
                    return done(.failure(PutFailure(status: 502, code: "bad_peer_answer", message: "malformed answer from \(target)", retryable: true)))
                }
                if let leader, leader != self.selfID { self.leaderHints[g] = leader } else { self.leaderHints[g] = nil }
                if case .failure(let f) = answer, f.code == "no_leader", self.loop.now < deadline { return retry(done) }
                done(answer)
            case .failure(let error):
                if self.leaderHints[g] == target { self.leaderHints[g] = nil }
                // Never sent (the link could not connect): look for the leader again.
                if error.code == .notDelivered { return retry(done) }
                // Sent, but no answer: the leader may have appended it. Proposing again could
                // append it twice, so the client learns the outcome is unknown (a Kinesis
                // client retrying a failed PutRecord faces the same choice).
                done(.failure(PutFailure(status: 503, code: "unknown_outcome",
                                         message: "no answer from \(target); the records may or may not have been appended", retryable: true)))
            }
        }
    }

    /// Passes on the first answer only.
    final class AnswerOnce {
        private var done: ((PutResult) -> Void)?
        init(_ done: @escaping (PutResult) -> Void) { self.done = done }
        func callAsFunction(_ result: PutResult) {
            guard let d = done else { return }
            done = nil
            d(result)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: HTTP

    /// Handles `/v1/streams…`; false if the path is not ours.
    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        let s = request.segments
        guard s.count >= 2, s[0] == "v1", s[1] == "streams" else { return false }
        let counted: (HTTPResponse) -> Void = { [weak self] r in
            if r.status >= 400, let self {
                let code = (try? JSON.parse(r.body))?["error"]?.stringValue ?? "\(r.status)"
                self.stats.errors[code, default: 0] += 1
            }
            respond(r)
        }
        do {
            if isWitness && !(request.method == "GET" && s.count <= 3) {
                throw TandemError(TandemError.Code("witness", httpStatus: 403), "a witness node votes in Raft but serves no clients")
            }
            switch (request.method, s.count) {
            case ("GET", 2): counted(listStreams())
            case ("PUT", 3): try createStream(s[2], request.body, counted)
            case ("GET", 3): counted(json(200, describe(try definition(s[2]))))
            case ("DELETE", 3): try deleteStream(s[2], counted)
            case ("POST", 4) where s[3] == "records": try put(s[2], request.body, counted)
            case ("GET", 6) where s[3] == "partitions" && s[5] == "records":
                guard let p = Int(s[4]) else { throw TandemError(.badRequest, "partition must be a number") }
                read(s[2], p, request.query, proxied: false) { status, body in counted(HTTPResponse(status: status, body: body)) }
            case ("GET", 6) where s[3] == "consumers" && s[5] == "checkpoints": try checkpoints(s[2], consumer: s[4], counted)
            case (_, 7) where s[3] == "consumers" && s[5] == "checkpoints":
                guard let p = Int(s[6]) else { throw TandemError(.badRequest, "partition must be a number") }
                try checkpoint(request, stream: s[2], consumer: s[4], partition: p, counted)
            default:
                counted(.error(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)"))
            }
        } catch let e as TandemError {
            counted(.error(e))
        } catch {
            counted(.error(400, "bad_request", "\(error)"))
        }
        return true
    }

    private func json(_ status: Int, _ j: JSON) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(j.serialized.utf8) + [0x0A])
    }

    private static func failure(_ f: PutFailure) -> HTTPResponse {
        .json(f.status, ["error": f.code, "message": f.message, "retryable": f.retryable])
    }

    private func name(of address: String?) -> JSON {
        guard let address else { return .null }
        return .string(members().first { $0.address == address }?.name ?? address)
    }

    private func summary(_ d: Definition) -> [(String, JSON)] {
        [("name", .string(d.name)), ("partitions", .number(String(d.partitions))),
         ("retentionHours", .number(String(d.retentionHours))), ("incarnation", .string(String(d.incarnation)))]
    }

    private func listStreams() -> HTTPResponse {
        json(200, .object([("streams", .array(definitions.keys.sorted().map { .object(summary(definitions[$0]!)) }))]))
    }

    /// The stream and, for each partition, what this node knows: the full Raft view where it
    /// holds a replica (with per-follower lag where it leads), the placement elsewhere.
    private func describe(_ d: Definition) -> JSON {
        var parts: [JSON] = []
        for p in 0..<d.partitions {
            let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
            var m: [(String, JSON)] = [("partition", .number(String(p))),
                                       ("replicas", .array(d.voters[p].map { name(of: $0) })),
                                       ("witnesses", .array(d.witnesses[p].map { name(of: $0) })),
                                       ("preferredLeader", name(of: d.voters[p].first))]
            if let part = partitions[gid] {
                let r = part.raft
                m += [("local", .bool(true)), ("role", .string(r.role.rawValue)), ("leader", name(of: r.leader)),
                      ("term", .number(String(r.term))), ("commitIndex", .number(String(r.commitIndex))),
                      ("firstIndex", .number(String(r.firstIndex))), ("lastIndex", .number(String(r.lastIndex)))]
                if r.role == .leader {
                    m.append(("followers", .array(r.progress.keys.sorted().map { f in
                        let match = r.progress[f]!.match
                        return .object([("node", name(of: f)), ("match", .number(String(match))),
                                        ("lagEntries", .number(String(r.lastIndex - min(match, r.lastIndex))))])
                    })))
                }
            } else if let stopped = stoppedReplicas[gid] {
                m += [("local", .bool(true)), ("role", .string("stopped")), ("stoppedReason", .string(stopped.reason)),
                      ("durableThrough", .number(String(stopped.durableThrough)))]
            } else {
                m += [("local", .bool(false)), ("leader", name(of: leaderHints[gid]))]
            }
            parts.append(.object(m))
        }
        return .object(summary(d) + [("partitionDetails", .array(parts))])
    }

    private func writeItem(_ table: String, _ key: String, _ body: JSON?, _ done: @escaping (HTTPResponse) -> Void) {
        let path = "/v1/tables/\(table)/items/\(key.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? key)"
        let request = HTTPRequest(method: body == nil ? "DELETE" : "PUT", path: path, query: [:], headers: [],
                                  body: body.map { Array($0.serialized.utf8) } ?? [])
        _ = tables.route(request, fromNode: true, done)
    }

    private func createStream(_ name: String, _ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) throws {
        guard Streams.validName(name) else {
            throw TandemError(.badRequest, "stream names are 1 to 128 letters, digits, '_', '.' and '-', not starting with '_'")
        }
        let j = body.isEmpty ? JSON.object([]) : try JSON.parse(body)
        func int(_ k: String, _ def: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let v = j[k] else { return def }
            guard case .number(let t) = v, let n = Int(t), range.contains(n) else {
                throw TandemError(.badRequest, "\(k) must be an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return n
        }
        let partitions = try int("partitions", 1, 1...256)
        let retention = try int("retentionHours", 24, 1...8760)
        if let existing = definitions[name] {
            guard existing.partitions == partitions && existing.retentionHours == retention else {
                throw TandemError(TandemError.Code("stream_exists", httpStatus: 409), "stream '\(name)' exists with other settings")
            }
            return respond(json(200, describe(existing)))
        }
        let (voters, witnesses) = place(name, partitions: partitions)
        guard voters.allSatisfy({ !$0.isEmpty }) else {
            throw TandemError(.unavailable, "no live non-witness member to place partitions on")
        }
        let item = Streams.item(name: name, partitions: partitions, retentionHours: retention, incarnation: Tables.wallMs(),
                                voters: voters, witnesses: witnesses)
        writeItem(Streams.catalogTable, name, item) { [weak self] r in
            guard let self else { return }
            guard r.status == 200 else { return respond(r) }
            self.reconcile()
            guard let d = self.definitions[name] else { return respond(.error(500, "internal", "stream written but not readable")) }
            self.logger.info("stream created", metadata: ["stream": "\(name)", "partitions": "\(partitions)"])
            respond(self.json(201, self.describe(d)))
        }
    }

    private func deleteStream(_ name: String, _ respond: @escaping (HTTPResponse) -> Void) throws {
        _ = try definition(name)
        writeItem(Streams.catalogTable, name, nil) { [weak self] r in
            guard r.status == 200 else { return respond(r) }
            self?.reconcile()
            respond(.json(200, ["deleted": name]))
        }
    }

    // MARK: put

    private func put(_ stream: String, _ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) throws {
        let d = try definition(stream)
        if let (key, record) = StreamRecord.encodeSimpleBody(body) {
            // One record in the usual shape: no JSON tree, no per-partition bookkeeping.
            let p = partition(forKey: key, partitions: d.partitions)
            let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
            return submit(gid, [record], deadline: loop.now + Streams.noLeaderWait, hops: 0) { [weak self] result in
                guard let self else { return }
                respond(self.putResponse([result], partitions: [p], batch: false))
            }
        }
        let j = try JSON.parse(body)
        let batch: Bool
        var items: [JSON]
        if case .array(let list)? = j["records"] {
            batch = true
            items = list
            guard (1...StreamWire.maxRecordsPerPut).contains(list.count) else {
                throw TandemError(.badRequest, "a batch holds 1 to \(StreamWire.maxRecordsPerPut) records")
            }
        } else {
            batch = false
            items = [j]
        }
        // Validate everything before anything is proposed: a batch is refused whole on bad input.
        var encoded: [(partition: Int, record: [UInt8])] = []
        for item in items {
            guard let key = item["key"]?.stringValue, !key.isEmpty, key.utf8.count <= StreamRecord.maxKeyBytes else {
                throw TandemError(.badRequest, "each record needs a \"key\": a string of 1 to \(StreamRecord.maxKeyBytes) bytes")
            }
            guard let text = item["data"]?.stringValue, let data = Base64.decode(text) else {
                throw TandemError(.badRequest, "each record needs \"data\": base64 text")
            }
            guard data.count <= StreamRecord.maxDataBytes else {
                throw TandemError(.tooLarge, "a record's data is at most \(StreamRecord.maxDataBytes) bytes")
            }
            encoded.append((partition(forKey: key, partitions: d.partitions), StreamRecord.encode(key: key, data: data)))
        }
        // One proposal per partition, records in request order within it.
        var byPartition: [Int: [Int]] = [:]
        for (i, e) in encoded.enumerated() { byPartition[e.partition, default: []].append(i) }
        var results = [PutResult?](repeating: nil, count: encoded.count)
        var remaining = byPartition.count
        let deadline = loop.now + Streams.noLeaderWait
        for (p, indexes) in byPartition {
            let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
            submit(gid, indexes.map { encoded[$0].record }, deadline: deadline, hops: 0) { [weak self] result in
                for (k, i) in indexes.enumerated() {
                    results[i] = result.map { range in (range.lowerBound + UInt64(k))...(range.lowerBound + UInt64(k)) }
                }
                remaining -= 1
                guard remaining == 0, let self else { return }
                respond(self.putResponse(results.map { $0! }, partitions: encoded.map(\.partition), batch: batch))
            }
        }
    }

    private func putResponse(_ results: [PutResult], partitions: [Int], batch: Bool) -> HTTPResponse {
        // Bytes appended directly: single puts are the hot path.
        var body: [UInt8] = []
        body.reserveCapacity(64 * results.count)
        func add(_ s: String) { body.append(contentsOf: s.utf8) }
        func record(_ result: PutResult, _ p: Int) {
            switch result {
            case .success(let r):
                add(#"{"partition":"#); add(String(p)); add(#","sequence":""#); add(Sequence.format(r.lowerBound)); add(#""}"#)
            case .failure(let f):
                add(JSON.object([("partition", .number(String(p))), ("error", .string(f.code)), ("message", .string(f.message)),
                                 ("retryable", .bool(f.retryable))]).serialized)
            }
        }
        if !batch {
            if case .failure(let f) = results[0] { return Streams.failure(f) }
            record(results[0], partitions[0])
        } else {
            let failed = results.filter { if case .failure = $0 { true } else { false } }.count
            add(#"{"failedRecordCount":\#(failed),"records":["#)
            for (k, (result, p)) in zip(results, partitions).enumerated() {
                if k > 0 { add(",") }
                record(result, p)
            }
            add("]}")
        }
        body.append(0x0A)
        return HTTPResponse(status: 200, body: body)
    }

    // MARK: read

    /// Serves a read on a replica (up to its commit index), or proxies it to a live replica.
    private func read(_ stream: String, _ p: Int, _ query: [String: String], proxied: Bool,
                      _ respond: @escaping (Int, [UInt8]) -> Void) {
        func fail(_ status: Int, _ code: String, _ message: String) {
            respond(status, Array(JSON.object([("error", .string(code)), ("message", .string(message))]).serialized.utf8) + [0x0A])
        }
        guard let d = definitions[stream] else { return fail(404, "not_found", "no stream '\(stream)'") }
        guard p >= 0 && p < d.partitions else { return fail(404, "not_found", "stream '\(stream)' has partitions 0 to \(d.partitions - 1)") }
        let limit = Int(query["limit"] ?? "1000") ?? -1
        guard (1...10_000).contains(limit) else { return fail(400, "bad_request", "limit must be 1 to 10000") }
        let waitMs = Int(query["waitMs"] ?? "0") ?? -1
        guard (0...Streams.maxWaitMs).contains(waitMs) else { return fail(400, "bad_request", "waitMs must be 0 to \(Streams.maxWaitMs)") }
        let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
        guard let part = partitions[gid] else {
            guard !proxied else { return fail(503, "not_a_replica", "this node holds no replica of \(gid)") }
            return proxyRead(d, p, query, attempt: 0, respond)
        }
        let from = query["from"] ?? "trim-horizon"
        let start: UInt64
        switch from {
        case "trim-horizon": start = part.raft.firstIndex
        case "latest": start = part.commitIndex + 1
        default:
            let parts = from.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return fail(400, "bad_request", "from is trim-horizon, latest, at:SEQ, after:SEQ or time:MS") }
            switch parts[0] {
            case "at": guard let s = Sequence.parse(parts[1]) else { return fail(400, "bad_request", "bad sequence '\(parts[1])'") }
                start = max(s, 1)
            case "after": guard let s = Sequence.parse(parts[1]), s < UInt64.max else { return fail(400, "bad_request", "bad sequence '\(parts[1])'") }
                start = s + 1
            case "time":
                guard let ms = UInt64(parts[1]) else { return fail(400, "bad_request", "time:MS takes milliseconds since the epoch") }
                start = ((try? part.log.index(atOrAfterTimestamp: ms)) ?? nil).map { min($0, part.commitIndex + 1) } ?? part.commitIndex + 1
            default: return fail(400, "bad_request", "from is trim-horizon, latest, at:SEQ, after:SEQ or time:MS")
            }
        }
        serveRead(part, start: start, limit: limit, deadline: loop.now + .milliseconds(Int64(waitMs)), respond)
    }

    private func serveRead(_ part: StreamPartition, start: UInt64, limit: Int, deadline: Instant,
                           _ respond: @escaping (Int, [UInt8]) -> Void) {
        let commit = part.commitIndex
        let from = max(start, part.raft.firstIndex)
        var out = "{\"records\":["
        var count = 0
        var last = from - 1
        var lastTimestamp: UInt64?
        if from <= commit {
            let entries: [LogEntry]
            do {
                entries = try part.log.readEntries(from: from, to: min(commit, from + UInt64(limit) - 1), maxBytes: Streams.maxReadBytes)
            } catch {
                return respond(500, Array("{\"error\":\"io_error\",\"message\":\"\(error)\"}\n".utf8))
            }
            for e in entries {
                last = e.index
                guard e.kind == .record, let (key, data) = StreamRecord.decode(e.data) else { continue }
                if count > 0 { out += "," }
                out += "{\"sequence\":\"\(Sequence.format(e.index))\",\"key\":\(JSON.string(key).serialized),\"data\":\"\(Base64.encode(Array(data)))\",\"timestamp\":\(e.timestamp)}"
                count += 1
                lastTimestamp = e.timestamp
            }
        }
        if count == 0 && loop.now < deadline && !stopping {
            // Long poll: come back when the commit index moves (or at the deadline).
            let next = last + 1
            part.waitForCommit(until: deadline) { [weak self, weak part] in
                guard let self, let part, self.partitions[part.id] === part else {
                    return respond(503, Array("{\"error\":\"unavailable\",\"message\":\"partition closed\",\"retryable\":true}\n".utf8))
                }
                self.serveRead(part, start: next, limit: limit, deadline: deadline, respond)
            }
            return
        }
        var behind: UInt64 = 0
        if last < commit, let ts = lastTimestamp, let tip = (try? part.raft.entries(from: commit, to: commit, maxBytes: 1))?.first {
            behind = tip.timestamp > ts ? tip.timestamp - ts : 0
        }
        out += "],\"next\":\"after:\(Sequence.format(last))\",\"behindMs\":\(behind)}\n"
        respond(200, Array(out.utf8))
    }

    private func proxyRead(_ d: Definition, _ p: Int, _ query: [String: String], attempt: Int,
                           _ respond: @escaping (Int, [UInt8]) -> Void) {
        let alive = Set(members().filter(\.alive).map(\.address))
        let replicas = d.voters[p].filter { alive.contains($0) && $0 != selfID }
        guard attempt < replicas.count else {
            return respond(503, Array("{\"error\":\"unavailable\",\"message\":\"no live replica of \(d.name)/\(p)\",\"retryable\":true}\n".utf8))
        }
        stats.readsProxied += 1
        let waitMs = Int64(query["waitMs"].flatMap { Int($0) } ?? 0)
        peers.request(to: replicas[attempt], kind: StreamFrameKind.read, payload: StreamWire.encodeRead(stream: d.name, partition: p, query: query),
                      timeout: .milliseconds(waitMs) + .seconds(3)) { [weak self] result in
            guard let self else { return }
            if case .success(let frame) = result, let (status, body) = try? StreamWire.decodeReadResult(frame.payload), status != 503 {
                return respond(status, body)
            }
            self.proxyRead(d, p, query, attempt: attempt + 1, respond)
        }
    }

    // MARK: consumer checkpoints

    private static func checkpointID(_ stream: String, _ consumer: String, _ p: Int) -> String { "\(stream):\(consumer):\(p)" }

    private func checkpointJSON(_ stream: String, _ consumer: String, _ p: Int) -> JSON? {
        let key = ItemKey(partition: .string(Streams.checkpointID(stream, consumer, p)))
        guard let v = tables.replicas[Streams.checkpointTable]?.state(key)?.visible, let seq = PlainJSON.json(v)["sequence"]?.stringValue else { return nil }
        return .object([("stream", .string(stream)), ("consumer", .string(consumer)), ("partition", .number(String(p))), ("sequence", .string(seq))])
    }

    private func checkpoints(_ stream: String, consumer: String, _ respond: @escaping (HTTPResponse) -> Void) throws {
        let d = try definition(stream)
        respond(json(200, .object([("checkpoints", .array((0..<d.partitions).compactMap { checkpointJSON(stream, consumer, $0) }))])))
    }

    private func checkpoint(_ request: HTTPRequest, stream: String, consumer: String, partition p: Int,
                            _ respond: @escaping (HTTPResponse) -> Void) throws {
        let d = try definition(stream)
        guard p >= 0 && p < d.partitions else { throw TandemError(.notFound, "stream '\(stream)' has partitions 0 to \(d.partitions - 1)") }
        guard Streams.validName(consumer) else { throw TandemError(.badRequest, "consumer names are 1 to 128 letters, digits, '_', '.' and '-'") }
        switch request.method {
        case "GET":
            guard let c = checkpointJSON(stream, consumer, p) else { throw TandemError(.notFound, "no checkpoint for \(consumer) on \(stream)/\(p)") }
            respond(json(200, c))
        case "PUT":
            guard let text = try JSON.parse(request.body)["sequence"]?.stringValue, let seq = Sequence.parse(text) else {
                throw TandemError(.badRequest, "body is {\"sequence\": \"<a sequence number>\"}")
            }
            let id = Streams.checkpointID(stream, consumer, p)
            let item = JSON.object([("id", .string(id)), ("sequence", .string(Sequence.format(seq)))])
            writeItem(Streams.checkpointTable, id, item) { [weak self] r in
                guard let self else { return }
                guard r.status == 200 else { return respond(r) }
                respond(self.json(200, self.checkpointJSON(stream, consumer, p) ?? .null))
            }
        default:
            throw TandemError(.methodNotAllowed, "\(request.method) is not allowed on a checkpoint")
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Metrics

    func metricsText() -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) { out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        let sorted = partitions.values.sorted { ($0.id.stream, $0.id.partition) < ($1.id.stream, $1.id.partition) }
        func labels(_ p: StreamPartition) -> String { "stream=\"\(p.id.stream)\",partition=\"\(p.id.partition)\"" }
        family("tandem_stream_partition_leader", "gauge", "1 if this node leads the partition.")
        for p in sorted { out += "tandem_stream_partition_leader{\(labels(p))} \(p.isLeader ? 1 : 0)\n" }
        family("tandem_stream_partition_term", "gauge", "Raft term of this replica.")
        for p in sorted { out += "tandem_stream_partition_term{\(labels(p))} \(p.raft.term)\n" }
        family("tandem_stream_partition_commit_index", "gauge", "Commit index of this replica.")
        for p in sorted { out += "tandem_stream_partition_commit_index{\(labels(p))} \(p.raft.commitIndex)\n" }
        family("tandem_stream_partition_last_index", "gauge", "Last index in this replica's log.")
        for p in sorted { out += "tandem_stream_partition_last_index{\(labels(p))} \(p.raft.lastIndex)\n" }
        family("tandem_stream_follower_lag_entries", "gauge", "On the leader: entries each follower is behind.")
        for p in sorted where p.isLeader {
            for (f, pr) in p.raft.progress.sorted(by: { $0.key < $1.key }) {
                out += "tandem_stream_follower_lag_entries{\(labels(p)),follower=\"\(f)\"} \(p.raft.lastIndex - min(pr.match, p.raft.lastIndex))\n"
            }
        }
        family("tandem_stream_elections_total", "counter", "Elections this replica started.")
        for p in sorted { out += "tandem_stream_elections_total{\(labels(p))} \(p.raft.metrics.electionsStarted)\n" }
        family("tandem_stream_elections_won_total", "counter", "Elections this replica won.")
        for p in sorted { out += "tandem_stream_elections_won_total{\(labels(p))} \(p.raft.metrics.electionsWon)\n" }
        family("tandem_stream_leader_changes_total", "counter", "Leader changes seen by this replica.")
        for p in sorted { out += "tandem_stream_leader_changes_total{\(labels(p))} \(p.raft.metrics.leaderChanges)\n" }
        family("tandem_stream_fsyncs_total", "counter", "Group-commit fsyncs.")
        for p in sorted { out += "tandem_stream_fsyncs_total{\(labels(p))} \(p.fsyncs)\n" }
        family("tandem_stream_fsyncs_on_loop_total", "counter", "Group-commit fsyncs small enough to run on the event loop instead of the thread pool.")
        for p in sorted { out += "tandem_stream_fsyncs_on_loop_total{\(labels(p))} \(p.syncsOnLoop)\n" }
        family("tandem_stream_synced_writes_total", "counter", "Raft ready writes made durable (many per fsync under load).")
        for p in sorted { out += "tandem_stream_synced_writes_total{\(labels(p))} \(p.writesSynced)\n" }
        family("tandem_stream_append_latency_ms", "histogram", "On the leader: propose to commit, in ms.")
        for p in sorted { out += p.appendLatency.render("tandem_stream_append_latency_ms", labels: labels(p)) }
        family("tandem_stream_fsync_latency_ms", "histogram", "Group-commit fsync duration, in ms.")
        for p in sorted { out += p.fsyncLatency.render("tandem_stream_fsync_latency_ms", labels: labels(p)) }
        family("tandem_stream_errors_total", "counter", "Stream API errors by code (bad input, no leader, ...).")
        for (code, n) in stats.errors.sorted(by: { $0.key < $1.key }) { out += "tandem_stream_errors_total{code=\"\(code)\"} \(n)\n" }
        family("tandem_stream_puts_forwarded_total", "counter", "Puts forwarded to another node.")
        out += "tandem_stream_puts_forwarded_total \(stats.putsForwarded)\n"
        family("tandem_stream_puts_answered_by_replica_total", "counter",
               "Puts this node forwarded and answered itself once its replica had committed them (before the leader's answer).")
        out += "tandem_stream_puts_answered_by_replica_total \(stats.putsAnsweredByReplica)\n"
        family("tandem_stream_puts_for_peers_total", "counter", "Forwarded puts served for other nodes.")
        out += "tandem_stream_puts_for_peers_total \(stats.putsServedForPeers)\n"
        family("tandem_stream_reads_proxied_total", "counter", "Reads proxied to a replica.")
        out += "tandem_stream_reads_proxied_total \(stats.readsProxied)\n"
        family("tandem_stream_unknown_group_messages_total", "counter", "Raft messages for partitions this node does not hold.")
        out += "tandem_stream_unknown_group_messages_total \(stats.unknownGroupMessages)\n"
        family("tandem_stream_malformed_frames_total", "counter", "Malformed stream peer frames.")
        out += "tandem_stream_malformed_frames_total \(stats.malformedFrames)\n"
        family("tandem_stream_disk_failures_total", "counter", "Replicas stopped because their log could not be written or synced.")
        out += "tandem_stream_disk_failures_total \(stats.diskFailures)\n"
        family("tandem_stream_replicas_reopened_total", "counter", "Stopped replicas reopened once their disk worked again.")
        out += "tandem_stream_replicas_reopened_total \(stats.replicasReopened)\n"
        family("tandem_stream_replicas_stopped", "gauge", "Replicas stopped by a disk failure right now.")
        out += "tandem_stream_replicas_stopped \(stoppedReplicas.count)\n"
        return out
    }
}
