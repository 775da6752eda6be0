import Foundation
import Storage
import StreamLog
import TandemCore
import Transport

extension Histogram {
    /// Latency in milliseconds, for `/metrics`.
    static func latencyMs() -> Histogram { Histogram(bounds: [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000]) }

    mutating func record(_ d: Duration) { record(d.milliseconds) }
}

/// One partition replica on this node: a `RaftNode`, its `SegmentLog` and hard-state file, and
/// the shell loop around them (ready → write + send → apply → fsync on the pool → appended).
///
/// Group commit: `ready()` entries go to the page cache at once; a single fsync runs at a time
/// on libuv's thread pool and covers every write made before it started, so under load one
/// fsync acknowledges many appends. Votes and acks (`messagesAfterPersist`) and
/// `appended(through:)` wait for the fsync that covers them; the leader's replication traffic
/// does not (thesis §10.2.1).
final class StreamPartition {
    let id: GroupID
    let raft: RaftNode
    let log: SegmentLog
    let directory: String
    /// Voters in preference order: the first is where this partition's leader should live.
    var preferred: [NodeID]
    private let hardStateFile: RaftHardStateFile
    /// Configuration entries in the log (index, term, configuration), so a restarted replica
    /// uses the newest one rather than the placement it was created with.
    private let configurationFile: RaftConfigurationFile
    private var configurationHistory: [RaftConfigurationFile.Record]
    private let loop: EventLoop
    private let tickTimer: LoopTimer
    private let driveTimer: LoopTimer
    /// Runs a small sync on the loop (see `syncOnLoop`), after this turn's messages went out.
    private let syncTimer: LoopTimer
    /// The last sync took longer than `slowSync`: the next one goes to the pool.
    private var lastSyncSlow = false
    private var driveScheduled = false
    private var scheduledTick: Instant?
    /// Carries messages to peers (batched per destination by `Streams`).
    private let send: (NodeID, GroupID, RaftMessage) -> Void
    /// Told once when the log or hard state cannot be written, synced or read back (see
    /// `stopForDiskFailure`).
    private let onDiskFailure: (String) -> Void
    /// The disk failed (a write, a sync or a read): this replica no longer votes, acknowledges,
    /// leads or answers; `Streams` reopens it from disk once the disk works again.
    private(set) var stopped = false
    private(set) var stopReason: String?
    private(set) var stoppedByFullDisk = false

    /// How a replica reads files that named members by address (before ids were names).
    struct Legacy {
        /// Addresses known nodes had, and their names.
        var addresses = LegacyAddresses()
        /// Names of the members known (a node named like an address is not an address).
        var known: Set<NodeID> = []
        /// Membership has not synced yet: an address it cannot name may be a member not heard
        /// of yet, so the replica does not open (`NamesNotKnownYet`). Once synced, an address
        /// no member had stays as it is (a node gone before the upgrade: replaced as any
        /// member no longer listed).
        var waitForNames = false
    }
    struct NamesNotKnownYet: Error {}

    /// A write made to the page cache, waiting for the fsync that covers it.
    private struct PendingWrite {
        var position: LogPosition?
        var hardState: HardState?
        var messages: [RaftOutgoing]
        var at: Instant
    }
    private var unsynced: [PendingWrite] = []
    private var unsyncedEntries = 0
    private var syncing = false
    /// Term and vote as last written (the commit index is written only along with them: it is
    /// not needed for safety, and writing it on every commit would cost an fsync each).
    private var storedHardState: HardState

    /// Puts proposed here, waiting to commit (in proposal order).
    struct Waiter {
        var range: ClosedRange<UInt64>
        var term: UInt64
        var proposedAt: Instant
        var deadline: Instant
        var done: (Result<ClosedRange<UInt64>, PutFailure>) -> Void
    }
    private var waiters: [Waiter] = []
    /// Puts this replica forwarded to the leader, by put number (the tag on their first
    /// record): answered as soon as this replica has committed them, which with the follower
    /// commit rule (`RaftNode.commitFromLeaderDurability`) is about one round trip before the
    /// leader's answer could arrive. `at` is where the tagged record was seen in the log.
    private struct Forwarded {
        var count: Int
        var at: LogPosition?
        var done: (ClosedRange<UInt64>) -> Void
    }
    private var forwarded: [UInt64: Forwarded] = [:]
    /// This process's origin in record tags (random per process, see `StreamRecord`).
    let origin: UInt64
    /// Long-polling readers, woken when the commit index moves.
    private var readWaiters: [(deadline: Instant, wake: () -> Void)] = []

    // Metrics.
    private(set) var appendLatency = Histogram.latencyMs()
    private(set) var fsyncLatency = Histogram.latencyMs()
    private(set) var fsyncs = 0
    /// Of those, run on the loop (see `syncOnLoop`).
    private(set) var syncsOnLoop = 0
    private(set) var writesSynced = 0
    private(set) var leaderSince: Instant?

    /// `keepingThrough`: reopening after a disk failure, the last index the log had synced
    /// (`SegmentLog.init` cuts what came after it).
    init(
        id: GroupID, directory: String, configuration: RaftConfiguration, logSettings: SegmentLog.Settings = SegmentLog.Settings(),
        preferred: [NodeID], selfID: NodeID, origin: UInt64 = 0,
        settings: RaftSettings, loop: EventLoop, keepingThrough: UInt64? = nil, legacy: Legacy = Legacy(),
        send: @escaping (NodeID, GroupID, RaftMessage) -> Void, onDiskFailure: @escaping (String) -> Void
    ) throws {
        self.id = id
        self.directory = directory
        self.preferred = preferred
        self.origin = origin
        self.loop = loop
        self.send = send
        self.onDiskFailure = onDiskFailure
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let log = try SegmentLog(directory: directory + "/log", settings: logSettings, keepingThrough: keepingThrough)
        self.log = log
        hardStateFile = RaftHardStateFile(path: directory + "/hardstate")
        var loaded = try hardStateFile.load()
        configurationFile = RaftConfigurationFile(path: directory + "/configurations")
        // Only entries still in the log (an unsynced one may have been lost, or replaced);
        // those below the first index were committed before they were trimmed.
        let storedHistory = try configurationFile.load().filter { r in
            try r.index <= log.lastIndex && (r.index < log.firstIndex || log.term(at: r.index) == r.term)
        }
        // Files written before node ids were names hold addresses: renamed, and stored again
        // before anything acts on them (a vote repeated under the other name would be a second
        // vote in the term).
        let configuration = configuration.resolving(legacy.addresses)
        configurationHistory = storedHistory.map {
            RaftConfigurationFile.Record(index: $0.index, term: $0.term, configuration: $0.configuration.resolving(legacy.addresses))
        }
        let storedVote = loaded?.vote
        loaded?.vote = storedVote.map(legacy.addresses.resolve)
        let named = [loaded?.vote].compactMap { $0 } + configuration.members + configurationHistory.flatMap(\.configuration.members)
        if legacy.waitForNames, named.contains(where: { legacy.addresses.unresolved($0, known: legacy.known) }) {
            throw NamesNotKnownYet()
        }
        if let loaded, loaded.vote != storedVote { try hardStateFile.store(loaded) }
        if configurationHistory != storedHistory { try configurationFile.store(configurationHistory) }
        let hs = loaded ?? HardState()
        if configurationHistory.isEmpty && log.lastIndex == 0 {
            // A replica starting empty (new, or added back after its data was dropped) records the
            // configuration it starts with (as "index 0"): should its group remove it while it is
            // down, it can reopen on it later and ask (`Streams.openStaleReplicas`).
            configurationHistory = [RaftConfigurationFile.Record(index: 0, term: 0, configuration: configuration)]
            try configurationFile.store(configurationHistory)
        }
        if keepingThrough != nil {
            // After a failed sync, what these files show may sit only in the page cache (a
            // rename whose directory fsync failed): write them again, durably, before acting on
            // them, so a vote this replica repeats cannot be undone by a power cut.
            if let loaded { try hardStateFile.store(loaded) }
            try configurationFile.store(configurationHistory)
        }
        storedHardState = hs
        var start = loop.now
        // A brand-new group on its preferred node campaigns early (its election deadline is
        // drawn from an earlier start), so a new stream gets a leader, and the leader its
        // preferred node, without waiting out a whole election timeout.
        if loaded == nil && preferred.first == selfID {
            let back = settings.electionTimeout.nanoseconds * 2 - Duration.milliseconds(50).nanoseconds
            start = Instant(nanoseconds: start.nanoseconds - UInt64(max(0, back)))
        }
        raft = RaftNode(
            id: selfID, configuration: configuration,
            laterConfigurations: configurationHistory.map { ($0.index, $0.configuration) },
            hardState: hs, storage: log, settings: settings,
            applied: hs.commit, seed: UInt64.random(in: .min ... .max), now: start)
        raft.legacyAddresses = legacy.addresses
        tickTimer = LoopTimer(loop: loop)
        driveTimer = LoopTimer(loop: loop)
        syncTimer = LoopTimer(loop: loop)
        drive()
    }

    deinit {
        tickTimer.stop()
        driveTimer.stop()
        syncTimer.stop()
    }

    var isLeader: Bool { raft.role == .leader }
    var canPropose: Bool { raft.role == .leader && raft.transfer == nil }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Inputs

    func step(_ m: RaftMessage) {
        guard !stopped else { return }
        raft.step(m, now: loop.now)
        drive()
    }

    /// Proposes records (leader only); `done` runs once they commit or cannot.
    func propose(
        _ records: [[UInt8]], wallMs: UInt64, commitTimeout: Duration,
        _ done: @escaping (Result<ClosedRange<UInt64>, PutFailure>) -> Void
    ) throws(RaftError) {
        let now = loop.now
        guard !stopped else { throw RaftError(.notLeader, "this replica stopped: its disk failed") }
        let range: ClosedRange<UInt64>
        do {
            range = try raft.propose(records, timestamp: wallMs, now: now)
        } catch {
            if error.code == .storageFailed { driveSoon() }  // the core halted: stop the replica
            throw error
        }
        waiters.append(Waiter(range: range, term: raft.term, proposedAt: now, deadline: now + commitTimeout, done: done))
        driveSoon()
    }

    /// Proposals made while the loop handles one round of I/O (many puts arrive together) go
    /// out as one log append and one AppendEntries per follower: drive at the next timer phase,
    /// after every request read in this round has been proposed.
    private func driveSoon() {
        guard !driveScheduled else { return }
        driveScheduled = true
        driveTimer.start(after: .zero) { [weak self] in
            guard let self else { return }
            self.driveScheduled = false
            self.drive()
        }
    }

    /// A put of `count` records forwarded to the leader with tag `put` on its first record:
    /// `done` runs once this replica has committed them (the leader's answer is the fallback;
    /// the caller makes sure only the first of the two reaches the client).
    func awaitForwarded(put: UInt64, count: Int, _ done: @escaping (ClosedRange<UInt64>) -> Void) {
        forwarded[put] = Forwarded(count: count, at: nil, done: done)
    }

    /// The leader answered (or the forward failed): stop watching for the put.
    func forgetForwarded(put: UInt64) {
        forwarded[put] = nil
    }

    func waitForCommit(until deadline: Instant, _ wake: @escaping () -> Void) {
        readWaiters.append((deadline, wake))
    }

    /// Expires puts and long polls past their deadlines (called from the housekeeping timer).
    func expire(now: Instant) {
        if waiters.contains(where: { $0.deadline <= now }) {
            let (late, keep) = (waiters.filter { $0.deadline <= now }, waiters.filter { $0.deadline > now })
            waiters = keep
            for w in late {
                w.done(
                    .failure(
                        PutFailure(
                            status: 503, code: "timeout",
                            message: "not committed in time (it may still commit); retry with care", retryable: true)))
            }
        }
        if readWaiters.contains(where: { $0.deadline <= now }) {
            let late = readWaiters.filter { $0.deadline <= now }
            readWaiters.removeAll { $0.deadline <= now }
            for r in late { r.wake() }
        }
    }

    /// Proposes one single-server membership change (leader only; see `Streams.replaceDepartedVoters`).
    func proposeChange(_ change: ConfigurationChange) throws(RaftError) {
        guard !stopped else { throw RaftError(.notLeader, "this replica stopped: its disk failed") }
        do {
            try raft.proposeConfigurationChange(change, now: loop.now)
        } catch {
            if error.code == .storageFailed { driveSoon() }  // the core halted: stop the replica
            throw error
        }
        drive()
    }

    /// Hands leadership away (graceful shutdown) or to `target` (spreading leaders).
    func transferLeadership(to target: NodeID?) {
        guard raft.role == .leader else { return }
        try? raft.transferLeadership(to: target, now: loop.now)
        drive()
    }

    /// Durably records the commit index as well (graceful shutdown: readers restart with it).
    func close() {
        guard !stopped else { return }
        tickTimer.stop()
        driveTimer.stop()
        syncTimer.stop()
        let hs = raft.hardState
        // Not from a halted core: what it decided after its last ready must not leave it.
        if hs != storedHardState, raft.persistedIndex >= hs.commit, raft.storageFailure == nil {
            try? hardStateFile.store(hs)
        }
        for w in waiters { w.done(.failure(PutFailure(status: 503, code: "shutting_down", message: "node is stopping", retryable: true))) }
        waiters = []
        for r in readWaiters { r.wake() }
        readWaiters = []
        // Forwarded puts still get the leader's answer.
        forwarded = [:]
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: The shell loop

    private func drive() {
        guard !stopped else { return }
        var committed = false
        while raft.hasReady {
            let rd = raft.ready()
            // A read of the log failed and the core halted (the rule atop Raft.swift): nothing
            // in this ready may be acted on; stop as for a failed fsync.
            if let failure = rd.storageFailure { return stopForDiskFailure(failure, "cannot read the log") }
            if let soft = rd.softState {
                leaderSince = soft.role == .leader ? loop.now : nil
            }
            if !forwarded.isEmpty { noteForwarded(rd.entries) }
            do {
                if let reset = rd.resetLog { try log.reset(after: reset.index, term: reset.term) }
                if !rd.entries.isEmpty { try log.append(rd.entries) }
                try noteConfigurations(rd)
            } catch {
                return stopForDiskFailure(error, "cannot write the log")
            }
            for m in rd.messages { send(m.to, id, m.message) }
            if !rd.committedEntries.isEmpty {
                committed = true
                do {
                    try applyCommitted(through: rd.committedEntries.last!.index)
                } catch {
                    return stopForDiskFailure(error, "cannot read the log")
                }
            }
            if rd.mustPersist || !unsynced.isEmpty || syncing {
                // Messages after persist also wait for every *earlier* write to be durable.
                unsynced.append(
                    PendingWrite(
                        position: rd.persistedPosition, hardState: rd.hardState,
                        messages: rd.messagesAfterPersist, at: loop.now))
                unsyncedEntries += rd.entries.count
            } else {
                for m in rd.messagesAfterPersist { send(m.to, id, m.message) }
            }
        }
        if committed { wakeReaders() }
        if !unsynced.isEmpty && !syncing { startSync() }
        scheduleTick()
    }

    /// Keeps the configuration file equal to the configuration entries in the log. Written on
    /// the spot (rare); an entry a crash then loses is ignored on open.
    private func noteConfigurations(_ rd: RaftReady) throws {
        var history = configurationHistory
        if let reset = rd.resetLog {
            history = [RaftConfigurationFile.Record(index: reset.index, term: reset.term, configuration: raft.configuration)]
        }
        if let first = rd.entries.first?.index { history.removeAll { $0.index >= first } }
        for e in rd.entries where e.kind == .configuration {
            if let c = try? RaftConfiguration.decode(e.data) {
                history.append(RaftConfigurationFile.Record(index: e.index, term: e.term, configuration: c))
            }
        }
        guard history != configurationHistory else { return }
        configurationHistory = history
        try configurationFile.store(history)
    }

    private func scheduleTick() {
        let next = raft.nextDeadline
        if let s = scheduledTick, s <= next, s > loop.now { return }
        scheduledTick = next
        let now = loop.now
        tickTimer.start(after: next > now ? next - now : .zero) { [weak self] in
            guard let self else { return }
            self.scheduledTick = nil
            self.raft.tick(now: self.loop.now)
            self.drive()
        }
    }

    /// Where the leader's appends bring back the first record of a put this replica forwarded.
    private func noteForwarded(_ entries: [LogEntry]) {
        for e in entries where e.kind == .record && e.data.first == StreamRecord.taggedVersion {
            guard let tag = StreamRecord.tag(e.data), tag.origin == origin, forwarded[tag.put] != nil else { continue }
            forwarded[tag.put]!.at = LogPosition(index: e.index, term: e.term)
        }
    }

    /// Answers forwarded puts whose records this replica has now committed. A put whose entry
    /// was overwritten is left to the leader's answer.
    private func answerForwarded(through index: UInt64) throws {
        for (put, f) in forwarded {
            guard let at = f.at else { continue }
            let last = at.index + UInt64(f.count) - 1
            guard last <= index, try raft.holds(at.index...last, appendedIn: at.term) else { continue }
            forwarded[put] = nil
            f.done(at.index...last)
        }
    }

    /// Answers the puts whose records are now committed, or lost to a leader change.
    private func applyCommitted(through index: UInt64) throws {
        if !forwarded.isEmpty { try answerForwarded(through: index) }
        guard !waiters.isEmpty else { return }
        let now = loop.now
        var keep: [Waiter] = []
        // On a failed read the waiters not yet answered stay, for `stopForDiskFailure` to fail.
        defer { waiters = keep }
        for (k, w) in waiters.enumerated() {
            guard w.range.upperBound <= index else {
                keep.append(w)
                continue
            }
            let held: Bool
            do {
                held = try raft.holds(w.range, appendedIn: w.term)
            } catch {
                keep.append(contentsOf: waiters[k...])
                throw error
            }
            if held {
                appendLatency.record(now - w.proposedAt)
                w.done(.success(w.range))
            } else {
                w.done(
                    .failure(
                        PutFailure(
                            status: 503, code: "leader_changed",
                            message: "the leader changed before the records committed; they were not written", retryable: true)))
            }
        }
    }

    private func wakeReaders() {
        guard !readWaiters.isEmpty else { return }
        let woken = readWaiters
        readWaiters = []
        for r in woken { r.wake() }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Group commit

    private final class SyncJob: @unchecked Sendable {
        let log: SegmentLog
        let hardStateFile: RaftHardStateFile
        let hardState: HardState?
        let taken: [PendingWrite]
        let started: Instant
        var error: Error?
        weak var owner: StreamPartition?
        init(
            log: SegmentLog, hardStateFile: RaftHardStateFile, hardState: HardState?, taken: [PendingWrite], started: Instant,
            owner: StreamPartition
        ) {
            self.taken = taken
            self.started = started
            self.log = log
            self.hardStateFile = hardStateFile
            self.hardState = hardState
            self.owner = owner
        }

        func run() {
            do {
                // Entries first, then term and vote (Raft's order: a vote names a log).
                try log.sync()
                if let hardState {
                    try hardStateFile.store(hardState)
                }
            } catch {
                self.error = error
            }
        }
    }

    /// Where a sync runs. On the pool the loop goes on reading while the disk works, which is
    /// what throughput needs. But handing a sync to a pool thread and back costs two thread
    /// wake-ups, and on the 2-core VM the figures come from they took about as long as the
    /// fdatasync itself (38 + 43 µs at the median, 335 + 375 µs at p99, against 214 µs). So a
    /// sync of a few entries, with no term or vote to store (those take several fsyncs), runs on
    /// the loop, which has nothing else queued at such rates. Many entries mean the loop is busy:
    /// they go to the pool, and the next batch grows while they sync. After a slow sync the next
    /// ones go to the pool until one is quick again: a stalling disk must not hold up gossip and
    /// reads, while a single hiccup (seen: 14 ms once in 10 s) should not cost the fast path.
    private func syncOnLoop(entries: Int, storesHardState: Bool) -> Bool {
        !storesHardState && entries <= StreamPartition.loopSyncMaxEntries && !lastSyncSlow
    }
    static let loopSyncMaxEntries = 4
    static let slowSync = Duration.milliseconds(10)

    private func startSync() {
        let taken = unsynced
        let takenEntries = unsyncedEntries
        unsynced = []
        unsyncedEntries = 0
        syncing = true
        let started = loop.now
        let hs = taken.last { $0.hardState != nil }?.hardState
        let job = SyncJob(log: log, hardStateFile: hardStateFile, hardState: hs, taken: taken, started: started, owner: self)
        if syncOnLoop(entries: takenEntries, storesHardState: hs != nil) {
            syncTimer.start(after: .zero) { [weak self] in
                job.run()
                self?.syncsOnLoop += 1
                self?.synced(job.taken, job: job, started: job.started)
            }
            return
        }
        loop.work({ job.run() }, then: { job.owner?.synced(job.taken, job: job, started: job.started) })
    }

    private func synced(_ taken: [PendingWrite], job: SyncJob, started: Instant) {
        syncing = false
        guard !stopped else { return }
        if let error = job.error { return stopForDiskFailure(error, "fsync failed") }
        let now = loop.now
        fsyncLatency.record(now - started)
        lastSyncSlow = now - started > StreamPartition.slowSync
        fsyncs += 1
        writesSynced += taken.count
        if let hs = job.hardState { storedHardState = hs }
        let durable = log.durableIndex
        for w in taken {
            if let p = w.position {
                // A suffix cut while the fsync ran may have replaced these entries: then they
                // are not what was synced, and saying so (acks) would be a lie. Dropping is loss.
                let stillThere: Bool
                do {
                    stillThere = try p.index <= durable && (log.term(at: p.index) == p.term || p.index < log.firstIndex)
                } catch {
                    return stopForDiskFailure(error, "cannot read the log")
                }
                guard stillThere else { continue }
                raft.appended(through: p, now: now)
            }
            for m in w.messages { send(m.to, id, m.message) }
        }
        drive()
    }

    /// The log or hard state could not be made durable, or the log could not be read back (then
    /// Raft has halted, or the shell could not check what it was about to report). Raft must not
    /// go on as if it had been:
    /// the votes and acks waiting for this sync would claim entries the disk may not hold, and
    /// retrying the fsync proves nothing (after a failure the kernel may have dropped the dirty
    /// pages and a second fsync succeeds without them). So the replica stops at once: no more
    /// votes, acks, heartbeats or answers; its followers elect another leader, and puts waiting
    /// here are told the outcome is unknown (the other replicas may still commit them).
    /// `Streams` reopens it from disk, cutting everything after the last good sync.
    /// A read of this replica's log failed (a client read, not the core's): the replica stops as
    /// for a failed fsync, since what the disk holds is no longer known; `Streams` reopens it.
    func readFailed(_ error: Error) { stopForDiskFailure(error, "cannot read the log") }

    private func stopForDiskFailure(_ error: Error, _ context: String) {
        guard !stopped else { return }
        let why = "\(context): \(error)"
        stopped = true
        stopReason = why
        stoppedByFullDisk = (error as? TandemError)?.code == .diskFull
        tickTimer.stop()
        driveTimer.stop()
        unsynced = []
        let failure = PutFailure.disk(
            id, full: stoppedByFullDisk,
            "cannot use its log on this node (\(why)); the records were not acknowledged here and may still commit on other replicas; retry"
        )
        for w in waiters { w.done(.failure(failure)) }
        waiters = []
        for r in readWaiters { r.wake() }
        readWaiters = []
        onDiskFailure(why)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Views

    var commitIndex: UInt64 { raft.commitIndex }
    /// A sync job is out on the thread pool.
    var isSyncing: Bool { syncing }
    var pendingPuts: Int { waiters.count }
}
