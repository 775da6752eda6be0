import ContactCenter
import Foundation
import Logging
import StreamLog
import TandemCore
import Transport

/// The contact center on one node: the shell around `ContactCenter.ContactCenterState` (the
/// rules live there; docs/DESIGN-NOTES.md "Contact center (issue 17)" says where each piece of
/// state lives and why).
///
/// - **One log.** Every accepted command is one record (key `cc`) of partition 0 of the
///   reserved stream `_cc`, created on first use (an idle Raft group costs heartbeats). Every
///   replica applies the committed records to its own state in log order, with the entry's
///   timestamp as the time (`catchUp`), so all replicas hold the same state.
/// - **The leader decides.** A request on any node becomes a request to the `_cc` leader
///   (forwarded as a peer frame, `CenterFrameKind.request`); the leader stamps the command with
///   its clock (entry timestamp = the command's time; the core never reads a clock), and
///   answers once its own replica has applied the committed entry, with that apply's outcome.
/// - **Nothing refused is replicated.** Before proposing, the leader applies the command to a
///   *speculative* copy of the state: the applied state plus every entry in its log after it
///   (its own proposals not yet committed). A command that copy refuses is answered at once
///   (4xx) and never enters the log; one it accepts is proposed with the same time, so the
///   committed apply gives the same outcome (apply is deterministic and the copy saw the same
///   prefix). The copy is rebuilt from the log whenever the term or the log's end moved
///   under it (a new leader, a configuration entry, a proposal that failed).
/// - **Timers are entries.** The leader proposes `tick` every `tickInterval` while anything
///   waits on a deadline, `setRegionServing` when a region's last data node dies or one returns,
///   and agents' heartbeats at most once per a third of the heartbeat timeout (the beats in
///   between are answered from memory).
final class Center {
    static let stream = "_cc"
    static let recordKey = "cc"
    static let tickInterval: Duration = .milliseconds(100)
    static let forwardWait: Duration = .seconds(2)
    static let maxHops = 3

    let loop: EventLoop
    let streams: Streams
    let logger: Logger
    let peers: PeerLinks
    var selfID: NodeID { streams.selfID }
    var region = ""
    /// The routing decision for a new contact (customer key, edge) → region, set by the node.
    var decideRegion: (String, String?) -> Result<String, TandemError> = { _, _ in .failure(TandemError(.unavailable, "no routes")) }

    /// The state as applied from the committed log, and through which index.
    private(set) var state = ContactCenterState()
    private(set) var applied: UInt64 = 0
    var appliedTerm: UInt64 = 0
    private(set) var incarnation: UInt64?
    /// Snapshots (`CenterSnapshots.swift`): the last one written or loaded here.
    var snapshotIndex: UInt64 = 0
    var snapshotEvery: UInt64 = 20_000
    var snapshotting = false
    var fetching = false
    /// A record this node cannot read (a newer version's command): applying stops there rather
    /// than guess, and the node answers 503 until it is upgraded.
    private(set) var halted: String?

    /// The leader's speculative state (see above) and the log position and term it stands for.
    private var spec: ContactCenterState?
    private var specIndex: UInt64 = 0
    private var specTerm: UInt64 = 0

    /// Requests waiting for the local apply of the entry proposed at an index in a term.
    private var answers: [UInt64: Pending] = [:]

    /// A proposal waiting for its apply: answered once, by `done` (the committed apply's
    /// outcome) or by `failed` (not written, or the outcome is unknown).
    private final class Pending {
        let term: UInt64
        private var done: ((Result<[CenterEvent], Refusal>) -> Void)?
        private var failed: ((Answer) -> Void)?
        init(term: UInt64, done: @escaping (Result<[CenterEvent], Refusal>) -> Void, failed: @escaping (Answer) -> Void) {
            self.term = term
            self.done = done
            self.failed = failed
        }
        func finish(_ result: Result<[CenterEvent], Refusal>) {
            let d = done
            done = nil
            failed = nil
            d?(result)
        }
        func fail(_ answer: Answer) {
            let f = failed
            done = nil
            failed = nil
            f?(answer)
        }
    }
    /// Long polls for offers, by agent.
    private var offerPolls: [String: [(deadline: Instant, wake: () -> Void)]] = [:]
    /// When this leader last proposed each agent's heartbeat.
    private var heartbeatProposed: [String: Instant] = [:]
    private var creating = false
    /// `_agent-events` and `_contact-events` (see `CenterEvents`).
    let events = CenterEvents()
    static let markKey = "mark"
    private let timer: LoopTimer
    private var rounds = 0

    struct Stats {
        var commands = 0
        var refused = 0
        var forwarded = 0
        var served = 0
        var ticks = 0
        var heartbeatsCoalesced = 0
        /// A committed command the speculative state had accepted was refused on apply: a bug.
        var divergences = 0
        var applied = 0
        var snapshots = 0
        var snapshotsFetched = 0
        var errors: [String: Int] = [:]
    }
    var stats = Stats()

    init(loop: EventLoop, streams: Streams, peers: PeerLinks, logger: Logger) {
        self.loop = loop
        self.streams = streams
        self.peers = peers
        self.logger = logger
        timer = LoopTimer(loop: loop)
    }

    func start() {
        timer.start(after: .milliseconds(20), repeating: .milliseconds(20)) { [weak self] in self?.housekeeping() }
    }

    func shutdown() {
        timer.stop()
        for (_, a) in answers {
            a.fail(Center.error(503, "shutting_down", "node is stopping; the command may or may not apply", retryable: true))
        }
        answers = [:]
    }

    private func housekeeping() {
        rounds += 1
        catchUp()
        expirePolls()
        if rounds % 5 == 0, let part = leaderPartition() { leaderDuties(part) }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Requests

    /// What a client asks of the center: a command, or a read the leader answers from its state.
    enum Request {
        case command(Command)
        /// An agent's heartbeat: proposed at most once per a third of the timeout.
        case heartbeat(agent: String)
        case agent(String)
        case contact(String)
        case offers(agent: String, waitMs: Int)
        case queueMetrics(String)
        case realtimeMetrics
    }

    /// An answer: the HTTP status and JSON body.
    typealias Answer = (status: Int, body: JSON)
    /// Builds the answer to a request from the outcome and the state right after it (set by the
    /// REST layer).
    var answer: (Request, Result<[CenterEvent], Refusal>, ContactCenterState) -> Answer = { _, _, _ in (500, .null) }

    /// Handles a request here if this node leads `_cc` (or it is a metrics read this replica
    /// can answer), else forwards it to the leader.
    func handle(_ request: Request, hops: Int = 0, deadline: Instant? = nil, _ done: @escaping (Answer) -> Void) {
        let deadline = deadline ?? loop.now + Center.forwardWait
        if let halted { return done(Center.error(503, "halted", halted)) }
        switch request {
        case .queueMetrics, .realtimeMetrics:
            if let part = localPartition(), part.raft.leader != nil {
                catchUp()
                return done(answer(request, .success([]), state))
            }
        default: break
        }
        guard let d = streams.definitions[Center.stream] else { return create(request, hops: hops, deadline: deadline, done) }
        let part = localPartition()
        if let part, part.canPropose { return lead(request, part, done) }
        let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: 0)
        var target = part?.raft.leader ?? streams.leaderHints[gid]
        if target == nil || target == selfID {
            let alive = Set(streams.members().filter(\.alive).map(\.id))
            let others = d.voters[0].filter { alive.contains($0) && $0 != selfID }
            target = others.isEmpty ? nil : others[Int(loop.now.nanoseconds / 1_000_000 / 20) % others.count]
        }
        guard let target, target != selfID, hops < Center.maxHops, let address = streams.addressOf(target) else {
            return retry(request, hops: hops, deadline: deadline, done)
        }
        forward(request, to: target, address: address, hops: hops, deadline: deadline, done)
    }

    private func retry(_ request: Request, hops: Int, deadline: Instant, _ done: @escaping (Answer) -> Void) {
        guard loop.now < deadline else {
            stats.errors["no_leader", default: 0] += 1
            return done(
                Center.error(503, "no_leader", "the contact center's log has no leader reachable from here; retry", retryable: true))
        }
        streams.after(.milliseconds(20)) { [weak self] in self?.handle(request, hops: hops, deadline: deadline, done) }
    }

    /// `_cc` does not exist yet: the first data member by name creates it (one creator, so two
    /// nodes' first requests cannot create two incarnations); the others send it the request.
    private func create(_ request: Request, hops: Int, deadline: Instant, _ done: @escaping (Answer) -> Void) {
        let creator = streams.members().filter { $0.alive && !$0.left && $0.role != .witness }.map(\.id).min()
        if creator == selfID || creator == nil {
            if !creating {
                creating = true
                streams.createSystemStream(Center.stream, partitions: 1, retentionHours: 8760) { [weak self] result in
                    self?.creating = false
                    if case .failure(let e) = result {
                        self?.logger.warning("cannot create the contact center's log", metadata: ["error": "\(e.message)"])
                    }
                }
            }
            return retry(request, hops: hops, deadline: deadline, done)
        }
        guard let creator, hops < Center.maxHops, let address = streams.addressOf(creator) else {
            return retry(request, hops: hops, deadline: deadline, done)
        }
        forward(request, to: creator, address: address, hops: hops, deadline: deadline, done)
    }

    private func forward(
        _ request: Request, to target: NodeID, address: String, hops: Int, deadline: Instant, _ done: @escaping (Answer) -> Void
    ) {
        stats.forwarded += 1
        let waitMs = UInt32(max(0, (deadline - loop.now).milliseconds))
        var pollMs: Int64 = 0
        if case .offers(_, let w) = request { pollMs = Int64(w) }
        let payload = CenterWire.encode(request, hops: hops + 1, waitMs: waitMs)
        peers.request(
            to: address, kind: CenterFrameKind.request, payload: payload,
            timeout: .milliseconds(Int64(waitMs) + pollMs) + Streams.commitTimeout + .seconds(1)
        ) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let frame):
                guard let (status, body) = try? StreamWire.decodeReadResult(frame.payload), let j = try? JSON.parse(body) else {
                    self.peers.countMalformed()
                    return done(Center.error(502, "bad_peer_answer", "malformed answer from \(target)", retryable: true))
                }
                if status == 503, j["error"]?.stringValue == "no_leader", self.loop.now < deadline {
                    return self.retry(request, hops: hops, deadline: deadline, done)
                }
                done((status, j))
            case .failure(let error):
                if error.code == .notDelivered { return self.retry(request, hops: hops, deadline: deadline, done) }
                if case .command = request {
                    // Sent, no answer: the leader may have appended it. The client decides (a
                    // retried create with the same contactId is refused as existing if it was).
                    return done(
                        Center.error(
                            503, "unknown_outcome", "no answer from \(target); the command may or may not have been applied",
                            retryable: true))
                }
                self.retry(request, hops: hops, deadline: deadline, done)
            }
        }
    }

    /// A request another node forwarded here.
    func serve(_ frame: Frame, reply: @escaping ([UInt8]) -> Void) {
        guard let (request, hops, waitMs) = try? CenterWire.decode(frame.payload) else {
            peers.countMalformed()
            return reply(
                StreamWire.encodeReadResult(status: 400, body: Array(Center.error(400, "malformed", "bad frame").body.serialized.utf8)))
        }
        stats.served += 1
        handle(request, hops: hops, deadline: loop.now + .milliseconds(Int64(waitMs))) { answer in
            reply(StreamWire.encodeReadResult(status: answer.status, body: Array(answer.body.serialized.utf8)))
        }
    }

    static func error(_ status: Int, _ code: String, _ message: String, retryable: Bool? = nil) -> Answer {
        var fields: [(String, JSON)] = [("error", .string(code)), ("message", .string(message))]
        if let retryable { fields.append(("retryable", .bool(retryable))) }
        return (status, .object(fields))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: On the leader

    private func localPartition() -> StreamPartition? { streams.localPartition(Center.stream, 0) }

    private func leaderPartition() -> StreamPartition? {
        guard let part = localPartition(), part.canPropose else { return nil }
        return part
    }

    private func lead(_ request: Request, _ part: StreamPartition, _ done: @escaping (Answer) -> Void) {
        catchUp()
        if let halted { return done(Center.error(503, "halted", halted)) }
        let reply: (Result<[CenterEvent], Refusal>) -> Void = { [weak self] result in
            guard let self else { return }
            done(self.answer(request, result, self.state))
        }
        switch request {
        case .command(let command):
            propose(command, part, reply) { done($0) }
        case .heartbeat(let agent):
            if let last = heartbeatProposed[agent], loop.now - last < heartbeatEvery, state.agent(agent)?.signedIn == true {
                stats.heartbeatsCoalesced += 1
                return reply(.success([]))
            }
            heartbeatProposed[agent] = loop.now
            propose(.heartbeat(agent: agent), part, reply) { done($0) }
        case .offers(let agent, let waitMs):
            guard state.agent(agent) != nil else { return reply(.success([])) }
            // An agent polling for offers is alive: the poll counts as its heartbeat.
            if state.agent(agent)?.signedIn == true {
                let last = heartbeatProposed[agent]
                if last == nil || loop.now - last! >= heartbeatEvery {
                    heartbeatProposed[agent] = loop.now
                    propose(.heartbeat(agent: agent), part, { _ in }, failed: { _ in })
                }
            }
            guard state.offers(for: agent).isEmpty, waitMs > 0 else { return reply(.success([])) }
            offerPolls[agent, default: []].append((loop.now + .milliseconds(Int64(waitMs)), { reply(.success([])) }))
        case .agent, .contact, .queueMetrics, .realtimeMetrics:
            reply(.success([]))
        }
    }

    private var heartbeatEvery: Duration { .milliseconds(Int64(state.settings.heartbeatTimeoutMs / 3)) }

    /// Checks `command` against the speculative state, then proposes it stamped with this
    /// leader's clock; `done` runs with the committed apply's outcome, `failed` when the entry
    /// could not be written (or its outcome is unknown).
    private func propose(
        _ command: Command, _ part: StreamPartition, _ done: @escaping (Result<[CenterEvent], Refusal>) -> Void,
        failed: @escaping (Answer) -> Void
    ) {
        let record: [UInt8]
        do {
            record = StreamRecord.encode(key: Center.recordKey, data: try CommandCodec.encode(command))
        } catch {
            stats.errors["too_large", default: 0] += 1
            return failed(Center.error(error.code.httpStatus, error.code.name, error.message))
        }
        guard part.pendingPuts < streams.maxPendingPuts else {
            stats.errors["overloaded", default: 0] += 1
            return failed(
                Center.error(503, "overloaded", "\(part.pendingPuts) commands wait for their commit; retry shortly", retryable: true))
        }
        guard syncSpec(part) else { return failed(Center.error(503, "disk_failed", "cannot read the log here; retry", retryable: true)) }
        let at = max(Tables.wallMs(), spec!.now)
        if case .failure(let refusal) = spec!.apply(command, at: at) {
            stats.refused += 1
            return done(.failure(refusal))
        }
        let pending = Pending(term: part.raft.term, done: done, failed: failed)
        var index: UInt64 = 0
        do {
            try part.propose([record], wallMs: at, commitTimeout: Streams.commitTimeout) { [weak self] result in
                guard let self else { return }
                switch result {
                case .success: self.catchUp()
                case .failure(let f):
                    // Not written (or not known to be): the speculative state is rebuilt from
                    // the log next time.
                    self.spec = nil
                    if self.answers[index] === pending { self.answers[index] = nil }
                    pending.fail(Center.error(f.status, f.code, f.message, retryable: f.retryable))
                }
            }
        } catch {
            spec = nil
            return failed(Center.error(503, "no_leader", "leadership moved; retry", retryable: true))
        }
        stats.commands += 1
        index = part.raft.lastIndex
        specIndex = index
        answers[index] = pending
    }

    /// Brings the speculative state to the end of the log in this term. False if the log could
    /// not be read.
    private func syncSpec(_ part: StreamPartition) -> Bool {
        let last = part.raft.lastIndex
        if spec != nil && specTerm == part.raft.term && specIndex == last { return true }
        var s = state
        var next = applied + 1
        do {
            while next <= last {
                let entries = try part.raft.entries(from: next, to: last, maxBytes: 4 << 20)
                guard !entries.isEmpty else { break }
                for e in entries {
                    if let command = Center.command(in: e) { _ = s.apply(command, at: e.timestamp) }
                    next = e.index + 1
                }
            }
        } catch {
            spec = nil
            return false
        }
        spec = s
        specIndex = last
        specTerm = part.raft.term
        return true
    }

    /// Every 100 ms on the leader: a tick while anything waits on a deadline; regions that
    /// stopped or resumed serving.
    private func leaderDuties(_ part: StreamPartition) {
        guard halted == nil else { return }
        if !state.contacts.isEmpty || state.agents.values.contains(where: \.signedIn) {
            stats.ticks += 1
            propose(.tick, part, { _ in }, failed: { _ in })
        }
        // A region is serving while it has a live data node (membership's view, suspects
        // counted alive as placement counts them).
        var serving: [String: Bool] = [:]
        for m in streams.members() where m.role != .witness && !m.left {
            serving[m.region] = (serving[m.region] ?? false) || m.alive
        }
        let current = spec?.regionsNotServing ?? state.regionsNotServing
        for (r, up) in serving.sorted(by: { $0.key < $1.key }) where up == current.contains(r) {
            logger.notice("contact center: region \(up ? "serving again" : "not serving")", metadata: ["region": "\(r)"])
            propose(.setRegionServing(region: r, serving: up), part, { _ in }, failed: { _ in })
        }
        events.leaderRound(streams: streams, term: part.raft.term, nowMs: Tables.wallMs()) { through in
            proposeMark(through, part)
        }
    }

    /// Proposes an events mark (not a command: the core never sees it). The speculative state
    /// is unchanged by it, so it stays in step with the log's end.
    private func proposeMark(_ through: UInt64, _ part: StreamPartition) {
        let inStep = spec != nil && specTerm == part.raft.term && specIndex == part.raft.lastIndex
        var w = ByteWriter(capacity: 8)
        w.u64(through)
        do {
            try part.propose(
                [StreamRecord.encode(key: Center.markKey, data: w.bytes)], wallMs: max(Tables.wallMs(), spec?.now ?? state.now),
                commitTimeout: Streams.commitTimeout
            ) { _ in }
        } catch {
            return
        }
        if inStep { specIndex = part.raft.lastIndex }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Applying the log

    /// The command a log entry carries, if it is one of ours.
    static func command(in e: LogEntry) -> Command? {
        guard e.kind == .record, let (key, data) = StreamRecord.decode(e.data), key == recordKey else { return nil }
        return try? CommandCodec.decode(Array(data))
    }

    /// Applies what this replica has committed and not yet applied, in log order.
    func catchUp() {
        guard halted == nil, let d = streams.definitions[Center.stream], let part = localPartition() else { return }
        if incarnation != d.incarnation {
            incarnation = d.incarnation
            adopt(ContactCenterState(), index: 0, term: 0)
            snapshotIndex = 0
            loadSnapshot(part, incarnation: d.incarnation)
        }
        let commit = part.commitIndex
        guard applied < commit else { return }
        if applied + 1 < part.raft.firstIndex {
            // The entries this replica needs next are gone from its log: another's snapshot.
            return fetchSnapshot(part, incarnation: d.incarnation)
        }
        defer { maybeSnapshot(part) }
        while applied < commit {
            let entries: [LogEntry]
            do {
                entries = try part.log.readEntries(from: applied + 1, to: commit, maxBytes: 4 << 20)
            } catch {
                part.readFailed(error)
                return
            }
            guard !entries.isEmpty else { return }
            for e in entries { apply(e) }
        }
    }

    /// Replaces the applied state (a snapshot, or a new incarnation's empty one).
    func adopt(_ s: ContactCenterState, index: UInt64, term: UInt64) {
        state = s
        applied = index
        appliedTerm = term
        spec = nil
        events.reset()
    }

    private func apply(_ e: LogEntry) {
        defer {
            applied = e.index
            appliedTerm = e.term
        }
        var result: Result<[CenterEvent], Refusal>?
        if e.kind == .record, let (key, data) = StreamRecord.decode(e.data), key == Center.markKey {
            var r = ByteReader(Array(data))
            if let through = try? r.u64() { events.marked(through: through) }
        } else if e.kind == .record, let (key, data) = StreamRecord.decode(e.data), key == Center.recordKey {
            do {
                let command = try CommandCodec.decode(Array(data))
                result = state.apply(command, at: e.timestamp)
                stats.applied += 1
            } catch {
                halted = "entry \(e.index) holds a command this node cannot read (\(error.message)); upgrade it"
                logger.critical("contact center stopped applying", metadata: ["why": "\(halted!)"])
            }
        }
        if let waiting = answers.removeValue(forKey: e.index) {
            if waiting.term == e.term, let result {
                if case .failure = result { stats.divergences += 1 }
                waiting.finish(result)
            } else {
                waiting.fail(
                    Center.error(
                        503, "leader_changed", "the leader changed before the command committed; it was not applied", retryable: true))
            }
        }
        if case .success(let produced)? = result {
            events.note(produced, index: e.index)
            for case .offered(let offer) in produced { wakeOffers(offer.agentId) }
        }
    }

    private func wakeOffers(_ agent: String) {
        guard let polls = offerPolls.removeValue(forKey: agent) else { return }
        for p in polls { p.wake() }
    }

    private func expirePolls() {
        let now = loop.now
        for (agent, polls) in offerPolls where polls.contains(where: { $0.deadline <= now }) {
            let late = polls.filter { $0.deadline <= now }
            let keep = polls.filter { $0.deadline > now }
            offerPolls[agent] = keep.isEmpty ? nil : keep
            for p in late { p.wake() }
        }
    }
}

/// The peer frame that carries a center request to the leader (answered with a status and a
/// JSON body, as a proxied stream read is).
enum CenterFrameKind {
    static let request: UInt8 = 20
}

/// `version u8 | hops u8 | waitMs u32 | kind u8 | fields`.
enum CenterWire {
    static let version: UInt8 = 1

    static func encode(_ request: Center.Request, hops: Int, waitMs: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.u8(version)
        w.u8(UInt8(clamping: hops))
        w.u32(waitMs)
        switch request {
        case .command(let c):
            w.u8(0)
            // Encoded before (the leader re-encodes it to propose): a command too large fails there.
            w.blob((try? CommandCodec.encode(c)) ?? [])
        case .heartbeat(let a):
            w.u8(1)
            w.shortString(a)
        case .agent(let a):
            w.u8(2)
            w.shortString(a)
        case .contact(let c):
            w.u8(3)
            w.shortString(c)
        case .offers(let a, let waitMs):
            w.u8(4)
            w.shortString(a)
            w.u32(UInt32(clamping: waitMs))
        case .queueMetrics(let q):
            w.u8(5)
            w.shortString(q)
        case .realtimeMetrics:
            w.u8(6)
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(TandemError) -> (Center.Request, Int, UInt32) {
        var r = ByteReader(bytes)
        guard try r.u8() == version else { throw TandemError(.unsupportedVersion, "center frame version") }
        let hops = Int(try r.u8())
        let waitMs = try r.u32()
        let request: Center.Request
        switch try r.u8() {
        case 0: request = .command(try CommandCodec.decode(try r.blob(limit: CommandLimits.maxEncodedBytes)))
        case 1: request = .heartbeat(agent: try r.shortString())
        case 2: request = .agent(try r.shortString())
        case 3: request = .contact(try r.shortString())
        case 4: request = .offers(agent: try r.shortString(), waitMs: Int(try r.u32()))
        case 5: request = .queueMetrics(try r.shortString())
        case 6: request = .realtimeMetrics
        default: throw TandemError(.malformed, "unknown center request")
        }
        return (request, hops, min(waitMs, 30_000))
    }
}

extension Center {
    func metrics(_ out: inout MetricsText) {
        out.add("tandem_cc_commands_total", .counter, "Commands this node proposed to _cc as its leader.", stats.commands)
        out.add("tandem_cc_refused_total", .counter, "Commands the leader refused before proposing (never in the log).", stats.refused)
        out.add("tandem_cc_applied_total", .counter, "Commands this replica applied from the committed log.", stats.applied)
        out.add("tandem_cc_applied_index", .gauge, "Last _cc entry this replica applied.", Int(applied))
        out.add("tandem_cc_forwarded_total", .counter, "Requests this node sent on towards the _cc leader.", stats.forwarded)
        out.add("tandem_cc_served_total", .counter, "Requests other nodes forwarded here.", stats.served)
        out.add("tandem_cc_ticks_total", .counter, "Ticks this node proposed as leader.", stats.ticks)
        out.add("tandem_cc_heartbeats_coalesced_total", .counter, "Agent heartbeats answered without an entry.", stats.heartbeatsCoalesced)
        out.add(
            "tandem_cc_divergences_total", .counter, "Committed commands refused on apply after the leader had accepted them (a bug).",
            stats.divergences)
        out.add("tandem_cc_snapshots_total", .counter, "Snapshots of the state this replica wrote.", stats.snapshots)
        out.add("tandem_cc_snapshots_fetched_total", .counter, "Snapshots this replica loaded from another.", stats.snapshotsFetched)
        out.add("tandem_cc_halted", .gauge, "1 while this replica cannot apply the log (see the log).", halted == nil ? 0 : 1)
        out.add(
            "tandem_cc_errors_total", .counter, "Contact-center error answers, by code.",
            samples: stats.errors.keys.sorted().map { ([("code", $0)], stats.errors[$0]!) })
    }
}
