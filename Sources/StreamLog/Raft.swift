import TandemCore

// Raft for one stream partition, as a pure state machine in the etcd/raft style.
//
// Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm" (USENIX ATC 2014),
// and Ongaro's thesis "Consensus: Bridging Theory and Practice" (2014), with the additions etcd
// runs in production: pre-vote (§9.6), check-quorum (§6.2), leadership transfer (§3.10),
// single-server membership changes (§4.1), fast log backtracking, pipelined replication with a
// bounded window, and the leader writing to its disk in parallel with replication (§10.2.1).
//
// Ours: *witnesses* (members that vote and store the log but never campaign, so two regions
// plus a witness survive the loss of a region), and `installStart` instead of snapshots — a
// stream's trimmed prefix has expired, so a follower behind the trim point only needs to be
// told where the log now starts.
//
// The shell's loop (see `RaftReady`):
//
//     feed inputs: tick(now:) at nextDeadline, step(_:now:), propose(...)
//     while node.hasReady {
//         let rd = node.ready()
//         send rd.messages                          // leader replication: need not wait for disk
//         write rd.resetLog, rd.entries, rd.hardState; fsync in the background
//         apply rd.committedEntries                 // committed by a quorum already
//         when that write and every earlier one is durable:
//             node.appended(through: rd.persistedPosition, now:)   // if non-nil
//             send rd.messagesAfterPersist          // votes and acks: only once on disk
//     }
//
// Nothing here reads a clock, touches a disk or a socket, or draws global randomness.
//
// Storage reads can fail (`LogStorage` throws: an unreadable or damaged segment). The rule:
// - An input (tick, step, propose…, appended, or ready itself) whose read fails *halts* the
//   node where it stood. The input is abandoned half done, so nothing it decided may leave the
//   node: the next `ready()` carries only `storageFailure` (no entries, no hard state, no
//   messages, no committed entries), `hasReady` is false after it, and every later input is
//   ignored (`propose` and the other requests throw `storageFailed`).
// - The shell then stops the replica, as for a failed fsync, and later reopens it from disk
//   with a new `RaftNode`. To the group that is a crash right after the last ready the shell
//   carried out, which Raft is built to survive: what was durable stays durable, and what was
//   only in memory (unsent messages, unwritten votes and entries) is as if never decided.
// - Queries that read the log (`term(at:)`, `entries`, `holds`) change nothing: they throw,
//   and the shell treats that failure the same way.

// ==== ------------------------------------------------------------------------------------
// MARK: Settings and value types

/// Timing and limits of one Raft group. Each profile states the network it assumes.
public struct RaftSettings: Sendable, Equatable {
    /// A follower that hears nothing from a leader for a random time in
    /// [electionTimeout, 2 × electionTimeout) starts an election (the randomness splits votes
    /// rarely, §5.2). Also the check-quorum period and the leadership-transfer deadline.
    public var electionTimeout: Duration
    /// How often the leader proves it is alive; well under the election timeout.
    public var heartbeatInterval: Duration
    /// Ask "would you vote for me?" before bumping the term, so a node that was cut off cannot
    /// depose a healthy leader when it comes back (thesis §9.6).
    public var preVote: Bool
    /// A leader that has not heard from a quorum within an election timeout steps down, and
    /// followers that hear from a leader ignore vote requests (leases for free, thesis §6.2).
    public var checkQuorum: Bool
    /// AppendEntries batches in flight to one follower before waiting for acks (pipelining).
    public var maxInflightBatches: Int
    /// Data bytes in one AppendEntries batch, and in one `committedEntries` slice.
    public var maxBatchBytes: Int

    public init(
        electionTimeout: Duration, heartbeatInterval: Duration, preVote: Bool = true,
        checkQuorum: Bool = true, maxInflightBatches: Int = 16, maxBatchBytes: Int = 1 << 20
    ) {
        precondition(heartbeatInterval < electionTimeout, "heartbeat must be shorter than the election timeout")
        precondition(maxInflightBatches > 0 && maxBatchBytes > 0)
        self.electionTimeout = electionTimeout
        self.heartbeatInterval = heartbeatInterval
        self.preVote = preVote
        self.checkQuorum = checkQuorum
        self.maxInflightBatches = maxInflightBatches
        self.maxBatchBytes = maxBatchBytes
    }

    /// One data center: RTT under a millisecond, fsync a few milliseconds.
    public static let lan = RaftSettings(electionTimeout: .seconds(1), heartbeatInterval: .milliseconds(100))
    /// Voters in different regions: RTT up to ~200 ms, so a heartbeat or two may be in flight.
    public static let wan = RaftSettings(electionTimeout: .seconds(3), heartbeatInterval: .milliseconds(300))
    /// A good, quiet network where fail-over in well under a second matters (and the simulator).
    public static let fast = RaftSettings(electionTimeout: .milliseconds(150), heartbeatInterval: .milliseconds(30))
}

/// Who is in the group. Quorums count voters and witnesses alike; only voters may lead.
public struct RaftConfiguration: Sendable, Equatable, CustomStringConvertible {
    public private(set) var voters: [NodeID]
    public private(set) var witnesses: [NodeID]

    public init(voters: [NodeID], witnesses: [NodeID] = []) {
        // Sorted, so every node iterates members in the same order (determinism).
        self.voters = voters.sorted()
        self.witnesses = witnesses.sorted()
    }

    public var members: [NodeID] { voters + witnesses }
    public func contains(_ id: NodeID) -> Bool { voters.contains(id) || witnesses.contains(id) }
    /// A majority of all members.
    public var quorum: Int { members.count / 2 + 1 }
    public var description: String { "voters \(voters) witnesses \(witnesses)" }

    /// The same configuration with ids written by address before ids were names (`NodeID`)
    /// replaced by the names they map to.
    public func resolving(_ legacy: LegacyAddresses) -> RaftConfiguration {
        RaftConfiguration(voters: legacy.resolve(voters), witnesses: legacy.resolve(witnesses))
    }
}

/// A single-server membership change (thesis §4.1): one at a time, so any two consecutive
/// configurations share a majority and no joint consensus is needed.
public enum ConfigurationChange: Sendable, Equatable {
    case addVoter(NodeID)
    case addWitness(NodeID)
    case remove(NodeID)
}

/// What must be on disk before this node answers anyone (Figure 2's persistent state).
/// `commit` is not needed for safety; keeping it lets a restarted node serve reads sooner.
/// It is written only along with a new term or vote (`RaftReady.hardState`): on its own it
/// would cost a sync per commit.
public struct HardState: Sendable, Equatable {
    public var term: UInt64
    public var vote: NodeID?
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID? = nil, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    /// Same term and vote: nothing that must be written.
    func sameVote(_ other: HardState) -> Bool { term == other.term && vote == other.vote }
}

public enum RaftRole: String, Sendable {
    case follower, preCandidate, candidate, leader
}

/// What the shell reports or routes by; not persisted.
public struct SoftState: Sendable, Equatable {
    public var leader: NodeID?
    public var role: RaftRole
}

public struct LogPosition: Sendable, Equatable, CustomStringConvertible {
    public var index: UInt64
    public var term: UInt64
    public init(index: UInt64, term: UInt64) {
        self.index = index
        self.term = term
    }
    public var description: String { "\(index)@\(term)" }
}

public struct RaftOutgoing: Sendable, Equatable {
    public var to: NodeID
    public var message: RaftMessage
}

/// Everything the core asks the shell to do since the last `ready()`.
///
/// Persistence and sending rule (etcd's, with the leader optimisation of thesis §10.2.1):
/// - `messages` may be sent at once. They are only the leader's replication traffic
///   (AppendEntries, heartbeats, installStart, TimeoutNow); the leader's term and vote were made
///   durable before it could win, and the leader counts itself toward a commit quorum only for
///   entries the shell has reported durable through `appended`.
/// - `messagesAfterPersist` may be sent only once this ready's `resetLog`, `entries` and
///   `hardState`, *and every earlier ready's*, are durable: vote grants (the vote must survive a
///   crash), append acks (the acked entries must), and everything else a non-leader says.
public struct RaftReady: Sendable {
    /// Changed leader or role, if any.
    public var softState: SoftState?
    /// Write when non-nil (after the entries): the term or vote changed. A commit index that
    /// moved alone is not here (see `HardState`).
    public var hardState: HardState?
    /// Discard the whole durable log first; it now continues after this position.
    public var resetLog: LogPosition?
    /// Append after truncating every durable entry at or after `entries.first.index`.
    public var entries: [LogEntry] = []
    public var messages: [RaftOutgoing] = []
    public var messagesAfterPersist: [RaftOutgoing] = []
    /// Committed entries, in order, to make visible to readers (and to acknowledge puts).
    public var committedEntries: [LogEntry] = []
    /// A storage read failed and the node halted (see the rule at the top of this file): when
    /// set, everything else here is empty, and the shell must stop the replica.
    public var storageFailure: StorageReadFailure?

    public var mustPersist: Bool { hardState != nil || resetLog != nil || !entries.isEmpty }
    /// What to pass to `RaftNode.appended(through:now:)` once the write is durable.
    public var persistedPosition: LogPosition? {
        entries.last.map { LogPosition(index: $0.index, term: $0.term) } ?? resetLog
    }
}

/// Counters the shell exports as metrics.
public struct RaftMetrics: Sendable, Equatable {
    public var preVotesStarted = 0
    public var electionsStarted = 0
    public var electionsWon = 0
    public var termChanges = 0
    public var leaderChanges = 0
    public var votesGranted = 0
    public var votesRejected = 0
    /// Vote requests ignored because this node still hears from a leader.
    public var votesIgnoredInLease = 0
    public var staleMessagesDropped = 0
    public var appendsRejected = 0
    public var checkQuorumStepDowns = 0
    public var transfersStarted = 0
    public var transfersAborted = 0
    public var installStartsSent = 0
    public var installStartsReceived = 0
    public var entriesProposed = 0
    public var entriesCommitted = 0
    public init() {}
}

/// The leader's view of one follower (etcd's `tracker.Progress`).
public struct FollowerProgress: Sendable, Equatable {
    public enum State: String, Sendable {
        /// Unsure where the follower's log matches: one AppendEntries at a time.
        case probe
        /// Matching: stream batches optimistically, up to `maxInflightBatches`.
        case replicate
    }
    /// Highest index known durable on the follower and equal to ours; replication lag is
    /// `lastIndex - match`.
    public internal(set) var match: UInt64 = 0
    /// Next index to send.
    public internal(set) var next: UInt64
    public internal(set) var state: State = .probe
    /// In probe state, a message is out and we wait for its answer (or a heartbeat answer).
    var paused = false
    /// Last index of each batch in flight (replicate state).
    var inflight: [UInt64] = []
    /// Heard from since the last check-quorum.
    var recentActive = true
    /// `match` at the previous heartbeat response (to notice a stalled pipeline).
    var matchAtHeartbeat: UInt64 = 0
    /// The leader's durable index as last told to this follower (in an append or `persisted`).
    var persistedSent: UInt64 = 0

    mutating func becomeProbe() {
        state = .probe
        next = match + 1
        inflight = []
        paused = false
    }
}

/// Why a proposal or an administrative request was refused.
public struct RaftError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// Send it to `leaderHint` (if known) instead.
        public static let notLeader = Code("not_leader")
        /// A leadership transfer is under way; retry shortly (on the new leader).
        public static let transferInProgress = Code("transfer_in_progress")
        /// The previous configuration change has not committed, or this leader has not yet
        /// committed an entry of its term (thesis §4.1, and the bug fix of 2015).
        public static let configurationChangePending = Code("configuration_change_pending")
        public static let invalidRequest = Code("invalid_request")
        /// A storage read failed and the node halted; the shell stops and reopens the replica.
        public static let storageFailed = Code("storage_failed")
    }

    public var code: Code
    public var leaderHint: NodeID?
    public var message: String

    public init(_ code: Code, leaderHint: NodeID? = nil, _ message: String) {
        self.code = code
        self.leaderHint = leaderHint
        self.message = message
    }

    public var description: String { "\(code): \(message)" + (leaderHint.map { " (leader \($0))" } ?? "") }
}

// ==== ------------------------------------------------------------------------------------
// MARK: The log: durable storage overlaid by unstable entries

/// The log as the core sees it. `storage` is what is durable; `unstable` holds entries that are
/// proposed or received but not yet reported durable, starting at `offset`. Reads at or after
/// `offset` come from `unstable` only, so a durable suffix that a new leader overwrote is
/// masked until the shell has truncated it.
struct RaftLog {
    let storage: LogStorage
    var unstable: [LogEntry] = []
    var offset: UInt64
    /// Last unstable index handed to the shell in a `RaftReady`.
    var handedOut: UInt64
    /// installStart received: storage is to be discarded; the log continues after this.
    var pendingReset: LogPosition?
    var resetHandedOut = false

    init(storage: LogStorage) {
        self.storage = storage
        offset = storage.lastIndex + 1
        handedOut = storage.lastIndex
    }

    var firstIndex: UInt64 { pendingReset.map { $0.index + 1 } ?? storage.firstIndex }
    var lastIndex: UInt64 { offset + UInt64(unstable.count) - 1 }
    var lastTerm: UInt64 { get throws { try term(at: lastIndex) ?? 0 } }
    /// Everything through here is durable (the leader's own "match").
    var durableIndex: UInt64 { pendingReset == nil ? offset - 1 : 0 }

    /// Term at `index`, for `firstIndex - 1 ... lastIndex`; nil elsewhere.
    func term(at index: UInt64) throws -> UInt64? {
        if let r = pendingReset, index <= r.index { return index == r.index ? r.term : nil }
        if index >= offset {
            let k = index - offset
            return k < UInt64(unstable.count) ? unstable[Int(k)].term : nil
        }
        return try storage.term(at: index)
    }

    func entries(from: UInt64, to: UInt64, maxBytes: Int) throws -> [LogEntry] {
        let hi = min(to, lastIndex)
        guard from <= hi else { return [] }
        var out: [LogEntry] = []
        if from < offset {
            out = try storage.entries(from: from, to: min(hi, offset - 1), maxBytes: maxBytes)
            // Storage stopped early on the byte limit (or the range was trimmed under us).
            guard let last = out.last, last.index == min(hi, offset - 1) else { return out }
        }
        var bytes = out.reduce(0) { $0 + $1.data.count }
        var i = max(from, offset)
        while i <= hi {
            let e = unstable[Int(i - offset)]
            if !out.isEmpty && bytes + e.data.count > maxBytes { break }
            bytes += e.data.count
            out.append(e)
            i += 1
        }
        return out
    }

    /// True when the candidate's log is at least as up to date as ours (§5.4.1).
    func isUpToDate(lastIndex otherIndex: UInt64, lastTerm otherTerm: UInt64) throws -> Bool {
        let lastTerm = try self.lastTerm
        return otherTerm > lastTerm || (otherTerm == lastTerm && otherIndex >= lastIndex)
    }

    /// Appends a gap-free run starting at or before `lastIndex + 1`, dropping what it replaces.
    mutating func append(_ entries: [LogEntry]) {
        guard let first = entries.first?.index else { return }
        precondition(first >= firstIndex && first <= lastIndex + 1, "append at \(first) to \(firstIndex)...\(lastIndex)")
        if first <= offset {
            // Replaces part of the durable log: the shell truncates from `first`.
            unstable = entries
            offset = first
        } else {
            unstable.removeLast(Int(lastIndex + 1 - first))
            unstable.append(contentsOf: entries)
        }
        handedOut = min(handedOut, first - 1)
    }

    /// Unstable entries not yet handed to the shell.
    mutating func takeNew() -> [LogEntry] {
        guard handedOut < lastIndex else { return [] }
        let from = max(handedOut + 1, offset)
        handedOut = lastIndex
        return Array(unstable[Int(from - offset)...])
    }

    /// The shell reports `position` durable. A report about entries that were replaced since
    /// (the term no longer matches) is ignored: the replacement's own report will come.
    mutating func stable(through position: LogPosition) throws {
        if let r = pendingReset {
            // Only the reset itself, or an entry written after it, proves the reset durable.
            guard resetHandedOut, try position == r || (position.index > r.index && term(at: position.index) == position.term)
            else { return }
            pendingReset = nil
        }
        guard try term(at: position.index) == position.term else { return }
        let through = min(position.index, handedOut)
        guard through >= offset else { return }
        unstable.removeFirst(Int(through - offset + 1))
        offset = through + 1
    }

    /// installStart: forget everything; the log continues after `position`.
    mutating func reset(after position: LogPosition) {
        unstable = []
        offset = position.index + 1
        handedOut = position.index
        pendingReset = position
        resetHandedOut = false
    }

    mutating func takeReset() -> LogPosition? {
        guard let r = pendingReset, !resetHandedOut else { return nil }
        resetHandedOut = true
        return r
    }

    var hasNew: Bool { handedOut < lastIndex || (pendingReset != nil && !resetHandedOut) }

    /// The last index at or before `index` whose term is at most `term`; where a log with an
    /// entry (`index`, `term`) could match ours. Below what we hold, `index` itself.
    func lastIndex(atOrBefore index: UInt64, withTermAtMost term: UInt64) throws -> LogPosition {
        var i = min(index, lastIndex)
        while true {
            guard let t = try self.term(at: i) else { return LogPosition(index: i, term: 0) }
            if t <= term || i == 0 { return LogPosition(index: i, term: t) }
            i -= 1
        }
    }
}

// ==== ------------------------------------------------------------------------------------
// MARK: The node

/// One member of one Raft group.
///
/// A class because it reads a shared `LogStorage`; everything else it owns is plain state.
/// Inputs: `tick`, `step`, `propose`, `proposeConfigurationChange`, `transferLeadership`,
/// `appended`. Outputs: `ready()` (then the shell does what `RaftReady` says) and `nextDeadline`.
public final class RaftNode {
    public let id: NodeID
    public let settings: RaftSettings
    /// The latest configuration in the log, committed or not (§4.1: a server uses the newest
    /// configuration it has, as soon as it has it).
    public private(set) var configuration: RaftConfiguration
    public private(set) var term: UInt64
    public private(set) var vote: NodeID?
    public private(set) var commitIndex: UInt64
    /// Last index handed out in `committedEntries`.
    public private(set) var appliedIndex: UInt64
    public private(set) var role: RaftRole = .follower
    public private(set) var leader: NodeID?
    public private(set) var metrics = RaftMetrics()
    /// On the leader: each other member's replication state (for lag reporting).
    public private(set) var progress: [NodeID: FollowerProgress] = [:]
    /// When a leadership transfer is under way: to whom, and when it is abandoned.
    public private(set) var transfer: (target: NodeID, deadline: Instant)?
    /// Configuration entries written before ids were names name members by address: these map
    /// them to names as entries are appended (an old entry a leader sends from its log, or a
    /// restarted replica's own). Set by the shell before the first input; data, not a lookup.
    public var legacyAddresses = LegacyAddresses()
    /// A storage read failed: the node has halted (see the rule at the top of this file).
    public private(set) var storageFailure: StorageReadFailure?
    /// The halt went out in a `ready()`; nothing more will.
    private var storageFailureReported = false

    var log: RaftLog
    private var rng: SeededGenerator
    private var now: Instant
    private var electionDeadline: Instant
    private var leaderContactAt: Instant = .zero
    private var heartbeatDue: Instant = .zero
    private var checkQuorumDue: Instant = .zero
    /// Votes received in the current (pre-)election.
    private var votes: [NodeID: Bool] = [:]
    /// Configuration entries in the log, oldest first, so truncating one restores the one before.
    private var configurations: [(index: UInt64, configuration: RaftConfiguration)]
    private var lastTimestamp: UInt64 = 0
    /// Follower: how far the current term's leader said its log is durable, and how far our
    /// log is known to equal its (the end of the appends we accepted from it this term). Both
    /// reset whenever the term or the leader changes.
    private var leaderDurable: UInt64 = 0
    /// A leader told this node that its committed configuration at this index leaves it out
    /// (`RaftMessage.Body.removed`); forgotten as soon as a leader replicates to it again.
    private var removedAt: UInt64?
    private var matchesLeaderThrough: UInt64 = 0

    private var outbox: [RaftOutgoing] = []
    private var outboxAfterPersist: [RaftOutgoing] = []
    /// New entries not yet offered to the followers. Sending waits for `ready()`, so every
    /// proposal made between two readies travels in one append per follower (one frame, one
    /// write) instead of one each.
    private var appendPending = false
    private var reportedHardState: HardState
    private var reportedSoftState: SoftState

    /// - Parameters:
    ///   - configuration: the last configuration entry in `storage` (at `configurationIndex`),
    ///     or the one the group was created with (index 0).
    ///   - hardState: as last persisted (zero for a new node).
    ///   - applied: what the shell has already applied; committed entries after it are handed
    ///     out again.
    ///   - laterConfigurations: configuration entries in `storage` after `configurationIndex`,
    ///     oldest first (so a restarted member uses the newest one, and truncating one restores
    ///     the one before).
    public init(
        id: NodeID, configuration: RaftConfiguration, configurationIndex: UInt64 = 0,
        laterConfigurations: [(index: UInt64, configuration: RaftConfiguration)] = [],
        hardState: HardState, storage: LogStorage, settings: RaftSettings,
        applied: UInt64 = 0, seed: UInt64, now: Instant
    ) {
        self.id = id
        self.settings = settings
        self.configurations =
            [(configurationIndex, configuration)]
            + laterConfigurations.filter { $0.index > configurationIndex && $0.index <= storage.lastIndex }.sorted { $0.index < $1.index }
        self.configuration = configurations.last!.configuration
        self.term = hardState.term
        self.vote = hardState.vote
        self.log = RaftLog(storage: storage)
        // The commit index may have been written ahead of entries a crash then lost; what was
        // trimmed was committed.
        self.commitIndex = max(min(hardState.commit, storage.lastIndex), storage.firstIndex - 1)
        self.appliedIndex = min(max(applied, storage.firstIndex - 1), commitIndex)
        self.rng = SeededGenerator(seed: seed)
        self.now = now
        self.electionDeadline = now
        self.reportedHardState = hardState
        self.reportedSoftState = SoftState(leader: nil, role: .follower)
        resetElectionDeadline()
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Queries

    public var hardState: HardState { HardState(term: term, vote: vote, commit: commitIndex) }
    public var softState: SoftState { SoftState(leader: leader, role: role) }
    /// Everything through here is on this node's disk (the leader's own match).
    public var persistedIndex: UInt64 { log.durableIndex }
    public var firstIndex: UInt64 { log.firstIndex }
    public var lastIndex: UInt64 { log.lastIndex }
    /// Term of the entry at `index`, unstable or durable.
    public func term(at index: UInt64) throws -> UInt64? { try log.term(at: index) }

    /// Whether the entries at `range` are still those the leader of `term` appended there (a
    /// put's records, to answer it). One leader per term, and it appends a put's records in one
    /// run: the same term at both ends means the whole run is still that put. Still leading in
    /// `term` says the same without two lookups (a leader never rewrites its own log).
    public func holds(_ range: ClosedRange<UInt64>, appendedIn term: UInt64) throws -> Bool {
        if role == .leader && self.term == term { return true }
        return try log.term(at: range.lowerBound) == term && log.term(at: range.upperBound) == term
    }
    public func entries(from: UInt64, to: UInt64, maxBytes: Int = .max) throws -> [LogEntry] {
        try log.entries(from: from, to: to, maxBytes: maxBytes)
    }
    /// Voters campaign; witnesses and non-members never do.
    public var isPromotable: Bool { configuration.voters.contains(id) && !toldRemoved }
    /// A leader said its committed configuration leaves this node out, and this node knows of no
    /// newer configuration (one adding it back).
    private var toldRemoved: Bool { removedAt.map { configurations.last!.index <= $0 } ?? false }
    /// The newest configuration in the log has committed (no change is pending).
    public var configurationCommitted: Bool { configurations.last!.index <= commitIndex }
    /// This node was a member, a configuration removed it, that removal has committed, and
    /// its log ends at that entry: the shell may drop the replica's data. Ending there matters:
    /// the leader sends a member it removes nothing past the removing entry, so this node has
    /// acked nothing a later configuration adding it back could have counted; and everything
    /// up to the removal is on a majority of the members that remain. A replica that was
    /// never a member in its log (opened for a leader that is adding it, or started over after
    /// installStart) is not "removed", however its configuration reads. A member removed while
    /// it could not hear is removed once a leader says so (`toldRemoved`): it acked nothing
    /// since, and the removal's commit put everything before it on a majority of the rest.
    public var isRemoved: Bool {
        if toldRemoved { return true }
        let newest = configurations.last!
        guard !newest.configuration.contains(id), newest.index <= commitIndex, log.lastIndex == newest.index else { return false }
        return wasMember
    }
    /// A configuration before the newest included this node.
    private var wasMember: Bool { configurations.dropLast().contains { $0.configuration.contains(id) } }

    /// When `tick` must next be called.
    public var nextDeadline: Instant {
        guard role == .leader else { return electionDeadline }
        var t = min(heartbeatDue, checkQuorumDue)
        if let tr = transfer { t = min(t, tr.deadline) }
        return t
    }

    public var hasReady: Bool {
        if storageFailure != nil { return !storageFailureReported }
        return !outbox.isEmpty || !outboxAfterPersist.isEmpty || appendPending || log.hasNew || commitIndex > appliedIndex
            || !hardState.sameVote(reportedHardState) || softState != reportedSoftState
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Ready

    /// Takes everything the shell must do now (see `RaftReady` for the order).
    public func ready() -> RaftReady {
        if storageFailure == nil {
            do {
                return try takeReady()
            } catch {
                halt(error)
            }
        }
        // Halted: only the failure, once; what was decided since the last ready stays here.
        storageFailureReported = true
        return RaftReady(storageFailure: storageFailure)
    }

    private func takeReady() throws -> RaftReady {
        var rd = RaftReady()
        if appendPending {
            appendPending = false
            if role == .leader { for peer in replicationTargets { try sendAppend(to: peer) } }
        }
        if softState != reportedSoftState {
            reportedSoftState = softState
            rd.softState = softState
        }
        if !hardState.sameVote(reportedHardState) {
            reportedHardState = hardState
            rd.hardState = hardState
        }
        rd.resetLog = log.takeReset()
        rd.entries = log.takeNew()
        rd.messages = outbox
        rd.messagesAfterPersist = outboxAfterPersist
        outbox = []
        outboxAfterPersist = []
        if appliedIndex + 1 < log.firstIndex { appliedIndex = log.firstIndex - 1 }  // trimmed or reset
        if commitIndex > appliedIndex {
            rd.committedEntries = try log.entries(from: appliedIndex + 1, to: commitIndex, maxBytes: settings.maxBatchBytes)
            appliedIndex = rd.committedEntries.last?.index ?? appliedIndex
        }
        return rd
    }

    /// The shell made everything through `position` durable (a ready's `persistedPosition`).
    public func appended(through position: LogPosition, now: Instant) {
        self.now = now
        haltOnStorageFailure {
            try log.stable(through: position)
            if role == .leader {
                // The leader counts itself only for what is on its disk, so this may commit.
                try maybeCommit()
                tellFollowersDurable()
            } else {
                try commitFromLeaderDurability()
            }
        }
    }

    /// Runs an input; a storage read failing inside it halts the node (see the top of this file).
    private func haltOnStorageFailure(_ input: () throws -> Void) {
        guard storageFailure == nil else { return }
        do {
            try input()
        } catch {
            halt(error)
        }
    }

    private func halt(_ error: Error) {
        storageFailure = storageFailure ?? StorageReadFailure("\(id): \(error)")
    }

    /// For the requests that throw `RaftError`: refuse them on a halted node.
    private func checkNotHalted() throws(RaftError) {
        if let storageFailure { throw RaftError(.storageFailed, storageFailure.description) }
    }

    /// A request's body: a storage read failing inside it halts the node and fails the request.
    private func haltingRequest<T>(_ body: () throws -> T) throws(RaftError) -> T {
        do {
            return try body()
        } catch {
            halt(error)
            throw RaftError(.storageFailed, storageFailure!.description)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Time

    public func tick(now: Instant) {
        self.now = now
        haltOnStorageFailure { try tickLeaderOrNot() }
    }

    private func tickLeaderOrNot() throws {
        guard role == .leader else {
            if now >= electionDeadline {
                if isPromotable {
                    try campaign(preVote: settings.preVote, transfer: false)
                } else {
                    try askWhetherRemoved()
                    resetElectionDeadline()
                }
            }
            return
        }
        if now >= heartbeatDue {
            heartbeatDue = now + settings.heartbeatInterval
            for peer in replicationTargets { send(to: peer, .heartbeat(commit: min(progress[peer]!.match, commitIndex))) }
        }
        if now >= checkQuorumDue {
            checkQuorumDue = now + settings.electionTimeout
            // §6.2: a leader cut off from a quorum steps down, so clients look elsewhere and
            // the followers it still reaches are free to elect a new one.
            let active = configuration.members.filter { $0 == id || progress[$0]?.recentActive == true }.count
            if settings.checkQuorum && active < configuration.quorum {
                metrics.checkQuorumStepDowns += 1
                becomeFollower(term: term, leader: nil)
                return
            }
            releaseRemovedMembers(dropSilent: true)
            for peer in replicationTargets { progress[peer]!.recentActive = false }
        }
        if let tr = transfer, now >= tr.deadline {
            // §3.10: the target did not take over within an election timeout; resume service.
            transfer = nil
            metrics.transfersAborted += 1
        }
    }

    private func resetElectionDeadline() {
        let t = settings.electionTimeout
        electionDeadline = now + t + t * rng.unit()
    }

    /// Whether this node still hears from a leader, and so ignores anyone who wants an election.
    private var inLease: Bool {
        guard settings.checkQuorum || settings.preVote else { return false }
        if role == .leader { return true }
        return leader != nil && now < leaderContactAt + settings.electionTimeout
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Client requests

    /// Appends records (leader only). Returns the indexes they took; they are acknowledged
    /// when they come back in `committedEntries` with this node still at the same term.
    /// `timestamp` is raised to the previous entry's if lower, so timestamps never decrease.
    @discardableResult
    public func propose(_ records: [[UInt8]], timestamp: UInt64, now: Instant) throws(RaftError) -> ClosedRange<UInt64> {
        self.now = now
        try checkNotHalted()
        try checkCanPropose()
        guard !records.isEmpty, records.count <= RaftMessage.maxEntries,
            records.allSatisfy({ $0.count <= RaftMessage.maxEntryBytes })
        else {
            throw RaftError(.invalidRequest, "empty batch, too many records, or a record over \(RaftMessage.maxEntryBytes) bytes")
        }
        let first = log.lastIndex + 1
        try haltingRequest {
            try appendAsLeader(records.map { LogEntry(index: 0, term: 0, kind: .record, timestamp: timestamp, data: $0) })
        }
        metrics.entriesProposed += records.count
        return first...log.lastIndex
    }

    /// Proposes one single-server change. Refused while another change is uncommitted or before
    /// this leader has committed an entry of its own term (without that, a change could be
    /// decided by a configuration an earlier leader was about to overwrite — Ongaro, raft-dev 2015).
    @discardableResult
    public func proposeConfigurationChange(_ change: ConfigurationChange, now: Instant) throws(RaftError) -> UInt64 {
        self.now = now
        try checkNotHalted()
        try checkCanPropose()
        guard try haltingRequest({ try log.term(at: commitIndex) }) == term, configurations.last!.index <= commitIndex else {
            throw RaftError(.configurationChangePending, "a configuration change or this term's first commit is pending")
        }
        var voters = configuration.voters
        var witnesses = configuration.witnesses
        switch change {
        case .addVoter(let m), .addWitness(let m):
            // Turning a witness into a voter (or back) is a change of one server too.
            voters.removeAll { $0 == m }
            witnesses.removeAll { $0 == m }
            if case .addVoter = change { voters.append(m) } else { witnesses.append(m) }
        case .remove(let m):
            guard configuration.contains(m) else { throw RaftError(.invalidRequest, "\(m) is not a member") }
            voters.removeAll { $0 == m }
            witnesses.removeAll { $0 == m }
        }
        guard !voters.isEmpty else { throw RaftError(.invalidRequest, "the last voter cannot be removed") }
        let next = RaftConfiguration(voters: voters, witnesses: witnesses)
        guard next != configuration else { throw RaftError(.invalidRequest, "no change") }
        try haltingRequest {
            try appendAsLeader([LogEntry(index: 0, term: 0, kind: .configuration, timestamp: lastTimestamp, data: next.encoded())])
        }
        return log.lastIndex
    }

    /// Hands leadership to `target`, or to the most caught-up voter when nil (never a
    /// witness). The leader stops taking proposals, brings the target up to date, then tells it
    /// to campaign at once; after an election timeout without success it carries on.
    public func transferLeadership(to target: NodeID? = nil, now: Instant) throws(RaftError) {
        self.now = now
        try checkNotHalted()
        guard role == .leader else { throw RaftError(.notLeader, leaderHint: leader, "not the leader") }
        let candidates = configuration.voters.filter { $0 != id }
        guard let chosen = target ?? candidates.max(by: { progress[$0]!.match < progress[$1]!.match }) else {
            throw RaftError(.invalidRequest, "no other voter to transfer to")
        }
        guard candidates.contains(chosen) else { throw RaftError(.invalidRequest, "\(chosen) is not a voter other than the leader") }
        transfer = (chosen, now + settings.electionTimeout)
        metrics.transfersStarted += 1
        if progress[chosen]!.match < log.lastIndex {
            // Catch it up now, resending anything lost on the way rather than waiting on acks.
            progress[chosen]!.becomeProbe()
        }
        if progress[chosen]!.match == log.lastIndex {
            send(to: chosen, .timeoutNow)
        } else {
            try haltingRequest { try sendAppend(to: chosen) }
        }
    }

    private func checkCanPropose() throws(RaftError) {
        guard role == .leader else { throw RaftError(.notLeader, leaderHint: leader, "not the leader") }
        // Entries proposed now would only have to be re-proposed on the new leader (§3.10).
        guard transfer == nil else { throw RaftError(.transferInProgress, leaderHint: transfer?.target, "leadership transfer in progress") }
    }

    private func appendAsLeader(_ entries: [LogEntry]) throws {
        var stamped = entries
        var index = log.lastIndex
        for k in stamped.indices {
            index += 1
            stamped[k].index = index
            stamped[k].term = term
            lastTimestamp = max(lastTimestamp, stamped[k].timestamp)
            stamped[k].timestamp = lastTimestamp
        }
        appendToLog(stamped)
        appendPending = true
        try maybeCommit()  // a group of one commits as soon as its own write is durable
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Messages

    public func step(_ m: RaftMessage, now: Instant) {
        self.now = now
        guard m.from != id else { return }
        haltOnStorageFailure { try handle(m) }
    }

    private func handle(_ m: RaftMessage) throws {
        // A node our committed configuration left out asks for a vote: it was removed while it
        // could not hear (down, cut off) and campaigns on its old configuration. The leader tells
        // it, so it stops and its shell can drop the data. Only the leader: its log holds every
        // configuration that may still count (a follower's may lack the one adding the node back,
        // whose leader already counts the node's acks).
        switch m.body {
        case .preVote, .requestVote:
            if role == .leader && configurationCommitted && !configuration.contains(m.from) {
                send(to: m.from, .removed(configurationIndex: configurations.last!.index))
                return
            }
        default: break
        }

        if m.term > term {
            switch m.body {
            case .preVote, .requestVote(_, _, transfer: false):
                // §6 / §9.6: while we hear from a leader, someone else's election is a
                // partitioned or removed node trying to disrupt; ignore it outright.
                if inLease {
                    metrics.votesIgnoredInLease += 1
                    return
                }
            default: break
            }
            switch m.body {
            case .preVote:
                break  // a pre-vote never changes anyone's term
            case .preVoteResponse(granted: true):
                break  // carries the term we would campaign for, not a newer leader's
            case .append, .heartbeat, .installStart, .persisted:
                becomeFollower(term: m.term, leader: m.from)
            default:
                becomeFollower(term: m.term, leader: nil)
            }
        } else if m.term < term {
            metrics.staleMessagesDropped += 1
            switch m.body {
            case .append, .heartbeat, .installStart, .persisted:
                // A deposed leader that came back: our term makes it step down. (With pre-vote,
                // its followers never bumped their terms, so without this it could stay stuck.)
                send(to: m.from, .heartbeatResponse)
            case .preVote:
                send(to: m.from, .preVoteResponse(granted: false))
            default: break
            }
            return
        }

        switch m.body {
        case .preVote(let lastIndex, let lastTerm):
            let granted = try m.term > term && log.isUpToDate(lastIndex: lastIndex, lastTerm: lastTerm)
            send(to: m.from, .preVoteResponse(granted: granted), term: granted ? m.term : term)

        case .requestVote(let lastIndex, let lastTerm, _):
            // One vote per term (§5.2), only for a log at least as complete as ours (§5.4.1).
            let canVote = vote == m.from || (vote == nil && leader == nil)
            let granted = try canVote && log.isUpToDate(lastIndex: lastIndex, lastTerm: lastTerm)
            if granted {
                vote = m.from
                resetElectionDeadline()
                metrics.votesGranted += 1
            } else {
                metrics.votesRejected += 1
            }
            send(to: m.from, .voteResponse(granted: granted))

        case .preVoteResponse(let granted):
            guard role == .preCandidate, m.term == (granted ? term + 1 : term) else { return }
            try tally(m.from, granted)

        case .voteResponse(let granted):
            guard role == .candidate else { return }
            try tally(m.from, granted)

        case .append(let prevIndex, let prevTerm, let entries, let commit, let persisted):
            guard followLeader(m.from) else { return }
            try handleAppend(from: m.from, prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit)
            leaderDurable = max(leaderDurable, persisted)
            try commitFromLeaderDurability()

        case .persisted(let index):
            guard followLeader(m.from) else { return }
            leaderDurable = max(leaderDurable, index)
            try commitFromLeaderDurability()

        case .removed(let index):
            // Not while a leader replicates to us: then this notice is older than our being
            // added back (it came late), and acting on it could drop entries we acked.
            guard leader == nil || now >= leaderContactAt + settings.electionTimeout else { return }
            removedAt = max(removedAt ?? 0, index)

        case .heartbeat(let commit):
            guard followLeader(m.from) else { return }
            // The leader sends at most our match index, so this never passes our log.
            advanceCommit(to: min(commit, log.lastIndex))
            send(to: m.from, .heartbeatResponse)

        case .installStart(let index, let entryTerm, let configuration):
            guard followLeader(m.from) else { return }
            try handleInstallStart(from: m.from, position: LogPosition(index: index, term: entryTerm), configuration: configuration)

        case .timeoutNow:
            // A transfer: campaign at once, skipping pre-vote (the leader agreed to go).
            guard role == .follower, isPromotable else { return }
            try campaign(preVote: false, transfer: true)

        case .appendResponse(let success, let index, let hintIndex, let hintTerm):
            guard role == .leader, progress[m.from] != nil else { return }
            try handleAppendResponse(from: m.from, success: success, index: index, hint: LogPosition(index: hintIndex, term: hintTerm))

        case .heartbeatResponse:
            guard role == .leader, var pr = progress[m.from] else { return }
            pr.recentActive = true
            pr.paused = false
            // Batches lost in replicate state are not resent by themselves (only a later batch
            // with a gap would be rejected). A follower that is behind and made no progress
            // over a whole heartbeat interval is probed again from its match.
            if pr.state == .replicate && pr.match < log.lastIndex && pr.match == pr.matchAtHeartbeat { pr.becomeProbe() }
            pr.matchAtHeartbeat = pr.match
            progress[m.from] = pr
            if pr.match < log.lastIndex { try sendAppend(to: m.from) }
        }
    }

    /// A message from the leader of our term: follow it. False if we are that term's leader
    /// ourselves, which election safety says cannot happen.
    private func followLeader(_ from: NodeID) -> Bool {
        if role == .leader {
            assertionFailure("two leaders in term \(term): \(id) and \(from)")
            return false
        }
        if role != .follower || leader != from { becomeFollower(term: term, leader: from) }
        removedAt = nil
        leaderContactAt = now
        resetElectionDeadline()
        return true
    }

    private func handleAppend(from leaderID: NodeID, prevIndex: UInt64, prevTerm: UInt64, entries: [LogEntry], commit: UInt64) throws {
        if prevIndex < commitIndex {
            // A late duplicate: what we committed matches the leader; say how far.
            send(to: leaderID, .appendResponse(success: true, index: commitIndex, hintIndex: 0, hintTerm: 0))
            return
        }
        guard try log.term(at: prevIndex) == prevTerm else {
            // §5.3 with etcd's fast backtracking: point the leader at the last entry whose term
            // is at most `prevTerm`, so it skips a whole term of mismatches per round trip.
            metrics.appendsRejected += 1
            let hint = try log.lastIndex(atOrBefore: prevIndex, withTermAtMost: prevTerm)
            send(to: leaderID, .appendResponse(success: false, index: prevIndex, hintIndex: hint.index, hintTerm: hint.term))
            return
        }
        // Skip what we already have; the first entry whose term differs (or is missing) and
        // everything after it replace our suffix (§5.3: delete the conflict and all that follow).
        if let k = try entries.firstIndex(where: { try log.term(at: $0.index) != $0.term }) {
            precondition(
                entries[k].index > commitIndex,
                "\(id): leader \(leaderID) overwrites committed entry \(entries[k].index) (commit \(commitIndex))")
            appendToLog(Array(entries[k...]))
        }
        // Only what this message proved matches: a longer stale suffix may follow it.
        let lastNew = prevIndex + UInt64(entries.count)
        // In this term only this leader writes entries, and never changes its own: what
        // matched it once keeps matching until the term ends.
        matchesLeaderThrough = max(matchesLeaderThrough, lastNew)
        advanceCommit(to: min(commit, lastNew))
        send(to: leaderID, .appendResponse(success: true, index: lastNew, hintIndex: 0, hintTerm: 0))
    }

    private func handleInstallStart(from leaderID: NodeID, position: LogPosition, configuration: RaftConfiguration) throws {
        if try log.term(at: position.index) == position.term || position.index <= commitIndex {
            // Not behind after all (a duplicate, or our log reached it meanwhile).
            send(
                to: leaderID,
                .appendResponse(success: true, index: max(commitIndex, min(position.index, log.lastIndex)), hintIndex: 0, hintTerm: 0))
            return
        }
        metrics.installStartsReceived += 1
        // Everything up to there was committed and has expired on the leader: start over after it.
        log.reset(after: position)
        commitIndex = position.index
        appliedIndex = max(appliedIndex, position.index)
        configurations = [(position.index, configuration)]
        self.configuration = configuration
        send(to: leaderID, .appendResponse(success: true, index: position.index, hintIndex: 0, hintTerm: 0))
    }

    private func handleAppendResponse(from peer: NodeID, success: Bool, index: UInt64, hint: LogPosition) throws {
        var pr = progress[peer]!
        pr.recentActive = true
        // Entries this follower just acked that were already committed by other acks: the
        // batches it got carried an older commit index, so tell it now rather than with the
        // next batch or heartbeat (readers on followers wait for exactly this).
        // (Only for an ack that moves its match: the ack of that empty append must not loop.)
        let alreadyCommitted = success && index > pr.match && index <= commitIndex
        if success {
            if index > pr.match {
                pr.match = index
                pr.next = max(pr.next, index + 1)
                pr.inflight.removeAll { $0 <= index }
                if pr.state == .probe {
                    pr.state = .replicate
                    pr.inflight = []
                }
            }
            pr.paused = false
            progress[peer] = pr
            try maybeCommit()
            if transfer?.target == peer && pr.match == log.lastIndex {
                send(to: peer, .timeoutNow)
            }
            if !configuration.contains(peer) {
                releaseRemovedMembers()
                guard progress[peer] != nil else { return }
            }
        } else {
            // Stale rejections (of something already superseded) change nothing.
            if pr.state == .replicate && index <= pr.match { return }
            if pr.state == .probe && index != pr.next - 1 { return }
            // Back to probing, from where the follower's hint says the logs could match.
            let probe = hint.term > 0 ? try log.lastIndex(atOrBefore: hint.index, withTermAtMost: hint.term).index : hint.index
            pr.becomeProbe()
            pr.next = max(pr.match + 1, min(index, probe + 1))
            progress[peer] = pr
        }
        try sendAppend(to: peer, commitOnly: alreadyCommitted)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Replication (leader)

    private var peers: [NodeID] { configuration.members.filter { $0 != id } }
    /// Leader: everyone it replicates to — the members, and a member the newest (uncommitted)
    /// configuration removes, until that commits (so the removed member can learn that it is
    /// out, and the shell can drop its data: `isRemoved`). Sorted, for determinism.
    private var replicationTargets: [NodeID] { progress.keys.sorted() }

    /// Sends what `peer` lacks, if its window allows. `installStart` when that has been trimmed.
    /// `commitOnly`: an empty append may go just to carry a new commit index.
    private func sendAppend(to peer: NodeID, commitOnly: Bool = false) throws {
        guard var pr = progress[peer] else { return }
        if pr.state == .probe && pr.paused { return }
        if pr.state == .replicate && pr.inflight.count >= settings.maxInflightBatches { return }
        let prevIndex = pr.next - 1
        guard prevIndex >= log.firstIndex - 1, let prevTerm = try log.term(at: prevIndex) else {
            // Behind our first retained entry: those records expired, so it starts after them.
            let boundary = log.firstIndex - 1
            let config = configurations.last(where: { $0.index <= boundary })?.configuration ?? configurations[0].configuration
            send(to: peer, .installStart(index: boundary, term: try log.term(at: boundary)!, configuration: config))
            metrics.installStartsSent += 1
            pr.state = .probe
            pr.next = boundary + 1
            pr.paused = true
            progress[peer] = pr
            return
        }
        // A member the newest configuration removes gets nothing past that entry (`isRemoved`).
        let last = configuration.contains(peer) ? log.lastIndex : configurations.last!.index
        var entries = try log.entries(from: pr.next, to: last, maxBytes: settings.maxBatchBytes)
        if entries.count > RaftMessage.maxEntries { entries.removeLast(entries.count - RaftMessage.maxEntries) }
        // An empty append in replicate state says nothing a heartbeat does not, except that the
        // commit index moved; send it only for that, and only when nothing is in flight (so it
        // cannot be rejected for a gap).
        if pr.state == .replicate && entries.isEmpty && (!commitOnly || !pr.inflight.isEmpty) { return }
        send(
            to: peer, .append(prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commitIndex, persisted: log.durableIndex))
        pr.persistedSent = max(pr.persistedSent, log.durableIndex)
        switch pr.state {
        case .probe: pr.paused = true
        case .replicate:
            if let last = entries.last {
                pr.next = last.index + 1
                pr.inflight.append(last.index)
            }
        }
        progress[peer] = pr
    }

    /// §5.3–5.4.2: the highest index on a quorum (counting this node only for what is on its
    /// disk), committed only if it is of the current term — Figure 8: an older-term entry on a
    /// majority can still be overwritten; it commits indirectly, under one of ours.
    private func maybeCommit() throws {
        guard role == .leader else { return }
        let matches = configuration.members.map { $0 == id ? log.durableIndex : progress[$0]?.match ?? 0 }.sorted(by: >)
        let quorumIndex = matches[configuration.quorum - 1]
        guard quorumIndex > commitIndex, try log.term(at: quorumIndex) == term else { return }
        advanceCommit(to: quorumIndex)
        // Tell caught-up followers at once rather than at the next heartbeat.
        for peer in replicationTargets where progress[peer]!.state == .replicate && progress[peer]!.inflight.isEmpty {
            try sendAppend(to: peer, commitOnly: true)
        }
        releaseRemovedMembers()
        // A leader removed from the configuration steps down once its removal commits (§4.2.2).
        if !configuration.contains(id) && configurations.last!.index <= commitIndex {
            becomeFollower(term: term, leader: nil)
        }
    }

    /// Follower: an entry of the current term that both this node and the leader hold on disk
    /// is committed when the two of them are a majority (3 members; §5.4.2: an entry of the
    /// leader's term stored on a majority is committed, since no later leader can be elected
    /// without it). Learning it here saves the round trip of our ack to the leader and the
    /// leader's commit index back: a put forwarded through this node is answered one round
    /// trip earlier (what matters where regions are far apart).
    ///
    /// Why this is safe: the leader's log is durable through `leaderDurable` and ours equals
    /// it through `matchesLeaderThrough` (both said by this term's leader), and ours is durable
    /// through `log.durableIndex`; so everything up to the least of the three is on both disks,
    /// and it ends in an entry of this term. The majority is counted in the configuration in
    /// force at that index — the leader's and ours alike, since the logs agree there. Any
    /// configuration a later leader could be elected under differs from it by one server
    /// (single-server changes; the next change waits for a commit of its leader's term), and
    /// with at most 3 members every majority of a neighbouring configuration still includes
    /// this node or the leader — the same argument that lets the leader count the pair.
    private func commitFromLeaderDurability() throws {
        guard role == .follower, let leader else { return }
        let both = min(leaderDurable, matchesLeaderThrough, log.durableIndex)
        guard both > commitIndex, try log.term(at: both) == term else { return }
        guard let config = configurations.last(where: { $0.index <= both })?.configuration,
            config.contains(id), config.contains(leader), config.quorum <= 2
        else { return }
        advanceCommit(to: both)
    }

    /// A former member whose newest configuration leaves it out, with no leader talking to it:
    /// it got the entry removing it but not (down, cut off) the commit that makes the removal
    /// final, so it cannot tell whether it is out, and it cannot campaign. It asks the members
    /// with a pre-vote at its own term (which moves no one's state); a leader whose removal of
    /// it committed answers `removed`, the others a refusal it ignores.
    private func askWhetherRemoved() throws {
        guard !configuration.contains(id), !toldRemoved, wasMember else { return }
        let lastTerm = try log.lastTerm
        for peer in configuration.members where peer != id {
            send(to: peer, .preVote(lastIndex: log.lastIndex, lastTerm: lastTerm))
        }
    }

    /// Leader, after its own fsync: followers that got entries before they were durable here
    /// hear that they now are, so they can commit without waiting for our count of their ack
    /// (`commitFromLeaderDurability`). Only in groups where two members are a majority, and
    /// only to followers whose own ack has not already covered those entries.
    private func tellFollowersDurable() {
        guard configuration.quorum <= 2 else { return }
        let durable = log.durableIndex
        for peer in replicationTargets {
            guard var pr = progress[peer], pr.state == .replicate else { continue }
            let sent = min(durable, pr.next - 1)
            guard sent > pr.persistedSent, sent > pr.match else { continue }
            send(to: peer, .persisted(index: durable))
            pr.persistedSent = durable
            progress[peer] = pr
        }
    }

    /// Members the committed newest configuration removed: one that holds everything through
    /// its removal gets a last heartbeat carrying the commit index (so it knows it is out, see
    /// `isRemoved`) and nothing more; one silent for a check-quorum period is dropped as well.
    private func releaseRemovedMembers(dropSilent: Bool = false) {
        guard role == .leader, configurationCommitted else { return }
        let removal = configurations.last!.index
        for peer in replicationTargets where !configuration.contains(peer) {
            let pr = progress[peer]!
            if pr.match >= removal {
                send(to: peer, .heartbeat(commit: min(pr.match, commitIndex)))
                progress[peer] = nil
            } else if dropSilent && !pr.recentActive {
                progress[peer] = nil
            }
        }
    }

    private func advanceCommit(to index: UInt64) {
        guard index > commitIndex else { return }
        metrics.entriesCommitted += Int(index - commitIndex)
        commitIndex = index
    }

    /// Appends to the log and keeps the configuration equal to the newest one in it.
    private func appendToLog(_ entries: [LogEntry]) {
        guard let first = entries.first?.index else { return }
        log.append(entries)
        var changed = false
        while configurations.count > 1 && configurations.last!.index >= first {
            configurations.removeLast()
            changed = true
        }
        for e in entries where e.kind == .configuration {
            // A configuration entry that does not decode is a bug on the leader; keep the last good one.
            if let c = try? RaftConfiguration.decode(e.data) {
                configurations.append((e.index, c.resolving(legacyAddresses)))
                changed = true
            }
        }
        guard changed else { return }
        configuration = configurations.last!.configuration
        if role == .leader {
            for peer in peers where progress[peer] == nil {
                progress[peer] = FollowerProgress(next: log.lastIndex + 1)
            }
            // A member the new configuration removes keeps getting entries until that commits
            // (`maybeCommit` drops it); one removed by a configuration that was overwritten
            // meanwhile is dropped at once.
            let outgoing = configurations.count > 1 ? configurations[configurations.count - 2].configuration : configuration
            for peer in progress.keys where !configuration.contains(peer) && (configurationCommitted || !outgoing.contains(peer)) {
                progress[peer] = nil
            }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Elections

    private func campaign(preVote: Bool, transfer: Bool) throws {
        let lastTerm = try log.lastTerm  // read before anything changes
        leader = nil
        leaderDurable = 0
        matchesLeaderThrough = 0
        votes = [id: true]
        if preVote {
            role = .preCandidate
            metrics.preVotesStarted += 1
        } else {
            role = .candidate
            term += 1
            vote = id
            metrics.termChanges += 1
            metrics.electionsStarted += 1
        }
        resetElectionDeadline()
        let body: RaftMessage.Body =
            preVote
            ? .preVote(lastIndex: log.lastIndex, lastTerm: lastTerm)
            : .requestVote(lastIndex: log.lastIndex, lastTerm: lastTerm, transfer: transfer)
        for peer in peers { send(to: peer, body, term: preVote ? term + 1 : term) }
        try tally(id, true)
    }

    private func tally(_ from: NodeID, _ granted: Bool) throws {
        votes[from] = granted
        let members = configuration.members
        let yes = members.filter { votes[$0] == true }.count
        let no = members.filter { votes[$0] == false }.count
        if yes >= configuration.quorum {
            if role == .preCandidate { try campaign(preVote: false, transfer: false) } else { try becomeLeader() }
        } else if no > members.count - configuration.quorum {
            becomeFollower(term: term, leader: nil)
        }
    }

    private func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID?) {
        if newTerm != term || newLeader != leader {
            leaderDurable = 0
            matchesLeaderThrough = 0
        }
        if newTerm > term {
            term = newTerm
            vote = nil
            metrics.termChanges += 1
        }
        if newLeader != leader && newLeader != nil { metrics.leaderChanges += 1 }
        role = .follower
        leader = newLeader
        if newLeader != nil { leaderContactAt = now }
        votes = [:]
        transfer = nil
        progress = [:]
        resetElectionDeadline()
    }

    private func becomeLeader() throws {
        role = .leader
        leader = id
        votes = [:]
        metrics.electionsWon += 1
        metrics.leaderChanges += 1
        progress = [:]
        for peer in peers { progress[peer] = FollowerProgress(next: log.lastIndex + 1) }
        heartbeatDue = now + settings.heartbeatInterval
        checkQuorumDue = now + settings.electionTimeout
        lastTimestamp = try log.entries(from: log.lastIndex, to: log.lastIndex, maxBytes: 0).last?.timestamp ?? 0
        // §5.4.2 / §8: an entry of our own term commits everything before it, and tells
        // everyone who leads; without it earlier entries could wait for the next proposal.
        try appendAsLeader([LogEntry(index: 0, term: 0, kind: .noop, timestamp: lastTimestamp)])
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Output

    private func send(to peer: NodeID, _ body: RaftMessage.Body, term messageTerm: UInt64? = nil) {
        let out = RaftOutgoing(to: peer, message: RaftMessage(from: id, term: messageTerm ?? term, body: body))
        if role == .leader {
            // The leader's term is durable (it persisted its vote before asking for any);
            // acks it counts are the followers' and its own `appended` reports.
            outbox.append(out)
        } else {
            outboxAfterPersist.append(out)
        }
    }
}
