import TandemCore

// The contact center's assignment state — agents' sessions and statuses, contacts, each queue's
// line, offers — as ONE deterministic state machine replicated by a Raft log.
//
// Where the state lives, and why (also in docs/DESIGN-NOTES.md, "Contact center (issue 17)"):
// - Every command (a definition, an agent's login/logout/status/heartbeat, a contact's create,
//   accept, reject, hold, resume, transfer, end, acw-complete, and `tick`) is an entry of one
//   system stream of one partition (`_cc`). Every replica applies committed entries in log order
//   with the entry's timestamp as the time, so all replicas hold the same state, and only the
//   leader answers clients, with the result of its own apply of the committed entry.
// - That gives the invariants by construction, not by coordination code: an offer is decided by
//   the one sequence of commands, so an agent is never offered past its concurrency and a contact
//   is never offered twice, whichever region the requests came from; a minority side of a
//   partition cannot commit, so it cannot decide anything (it answers 503 and its clients retry
//   on the majority); a kill -9 loses nothing a client was told, because answers follow commit.
//   Oldest-first holds because lines are ordered by a position taken at enqueue in log order.
// - Alternatives rejected: CRDT tables cannot express "at most one agent" (two regions would
//   both assign a contact during a partition, and merge cannot un-ring a phone); single-writer
//   ownership by the agent's region makes a queue shared by regions a distributed transaction on
//   every offer, and a failed region's contacts would wait for an ownership hand-over; a Raft log
//   per queue cannot keep an agent who serves several queues under its concurrency without a
//   cross-log protocol. One log is one leader's throughput (43–59k puts/s measured on one partition,
//   against ~5 entries per contact at 1,000 contacts/s) and a cross-region commit per command
//   (one RTT to the nearest majority, ~20–80 ms; offers wait for it, which the enqueue →
//   offer p99 of 20 ms allows only when the leader's region has a near peer — a place the
//   lead's measurement will tell; sharding by queue group is the way out if it does not).
// - Definitions (settings, queues, routing profiles, agents' configurations, custom statuses)
//   are commands of the same log: every assignment reads them, and two replicas must decide
//   entry n with the same version of them, which a table replicated beside the log cannot
//   promise. Customer profiles and 15-minute history are CRDT tables (availability over
//   consistency: a stale preferred agent or a row written twice costs nothing, and they must be
//   writable in a region cut off from the majority); the node reads the profile before it
//   proposes `createContact` and writes the rows `intervalClosed` hands it.
//
// Rules of this file:
// - `apply(_:at:)` first checks the command against the state (`refusal(for:)`, which changes
//   nothing) and only then performs it (`perform`, which cannot fail): a refused command leaves
//   the state exactly as it was, which the simulation checks byte for byte.
// - No clock, no I/O, no randomness. Time is the command's (`at`, wall ms from the leader), made
//   monotonic (`now = max(now, at)`) so a new leader whose clock is a little behind cannot move
//   a deadline backwards. Timers are deadlines checked by `tick`, which the leader proposes.
// - Every iteration that can change the outcome runs in a fixed order (sorted ids, positions):
//   dictionary order differs per process.
// - Assignment runs after every successful command: agents that can take a contact, longest
//   idle first, each take the best contact they are eligible for (their profile's priority, then
//   the oldest position), one contact per agent per round so concurrency spreads work instead of
//   piling it on the idlest agent, until a round offers nothing.

public struct ContactCenterState: Sendable {
    public internal(set) var settings = CenterSettings()
    public internal(set) var statuses: [String: StatusType] = BuiltInStatus.all
    public internal(set) var queues: [String: QueueDefinition] = [:]
    public internal(set) var routingProfiles: [String: RoutingProfile] = [:]
    public internal(set) var agents: [String: Agent] = [:]
    /// Every contact not yet ended, and ended ones for `endedRetentionMs`.
    public internal(set) var contacts: [String: Contact] = [:]
    public internal(set) var regionsNotServing: Set<String> = []
    /// The time of the last command applied (monotonic).
    public internal(set) var now: UInt64 = 0
    /// The next place in line to hand out.
    var nextPosition: UInt64 = 1
    /// Start of the current metrics interval, and its totals by (queue, region).
    public internal(set) var intervalStart: UInt64 = 0
    var intervalTotals: [IntervalKey: IntervalTotals] = [:]

    // Derived from the above; rebuilt on restore, never encoded.
    /// Each queue's line, sorted by position.
    var lines: [String: [Waiting]] = [:]
    var signedIn: Set<String> = []
    var queuedCount = 0
    /// The free-agent index: agents that may be offered a contact now (`isFree`), sorted by
    /// (idle since, id) — the order assignment asks them in — with each one's key. Kept up to
    /// date from `touched` (the agents a command changed) before every assignment, so a command
    /// costs a few binary searches, not a pass over 10,000 agents.
    var free: [FreeAgent] = []
    var freeKeys: [String: UInt64] = [:]
    /// Agents changed since the index was last brought up to date.
    var touched: Set<String> = []

    struct FreeAgent: Sendable, Equatable, Comparable {
        var idleSince: UInt64
        var id: String
        static func < (a: FreeAgent, b: FreeAgent) -> Bool { (a.idleSince, a.id) < (b.idleSince, b.id) }
    }

    struct Waiting: Sendable, Equatable {
        var position: UInt64
        var contactId: String
    }

    struct IntervalKey: Hashable, Sendable, Comparable {
        var queue: String
        var region: String
        static func < (a: IntervalKey, b: IntervalKey) -> Bool { (a.queue, a.region) < (b.queue, b.region) }
    }

    public init(settings: CenterSettings = CenterSettings()) {
        precondition(settings.isValid, "invalid contact-center settings")
        self.settings = settings
    }

    /// Time since `t`; zero if `t` is later (only a damaged snapshot could make it so).
    func elapsed(since t: UInt64) -> UInt64 { now > t ? now - t : 0 }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Applying a command

    /// Applies one committed command at its entry's time. On a refusal nothing changed.
    public mutating func apply(_ command: Command, at: UInt64) -> Result<[CenterEvent], Refusal> {
        let time = max(at, now)
        if let refusal = refusal(for: command, at: time) { return .failure(refusal) }
        now = time
        var events: [CenterEvent] = []
        rollInterval(into: &events)
        perform(command, into: &events)
        dispatch(into: &events)
        return .success(events)
    }

    /// Why `command` cannot be applied now, or nil. Reads only.
    public func refusal(for command: Command, at time: UInt64) -> Refusal? {
        switch command {
        case .putSettings(let s):
            guard s.isValid else { return .badRequest("timeouts must be positive, the interval at least 1 s, misses at least 1") }
        case .putQueue(let q):
            if let bad = badName(q.id, "queue") { return bad }
            guard q.maxContacts >= 0 else { return .badRequest("maxContacts must not be negative") }
        case .putRoutingProfile(let p):
            if let bad = badName(p.id, "routing profile") { return bad }
            guard !p.queues.isEmpty, p.queues.count <= CommandLimits.maxProfileQueues else {
                return .badRequest("a routing profile has 1 to \(CommandLimits.maxProfileQueues) queues")
            }
            var seen: Set<String> = []
            for pq in p.queues {
                guard queues[pq.queue] != nil else { return .notFound("queue", pq.queue) }
                guard seen.insert(pq.queue).inserted else { return .badRequest("queue \(pq.queue) listed twice") }
                guard (1...99).contains(pq.priority), pq.delayMs <= 9_999_000 else {
                    return .badRequest("priority is 1…99 and delay at most 9,999 s (Connect's ranges)")
                }
            }
            guard p.concurrency.values.contains(where: { $0 > 0 }) else { return .badRequest("no channel has a concurrency") }
            for (channel, n) in p.concurrency where n < 0 || n > channel.maxConcurrency {
                return .badRequest("\(channel.rawValue) concurrency is 0…\(channel.maxConcurrency)")
            }
        case .putAgent(let d):
            if let bad = badName(d.id, "agent") { return bad }
            guard routingProfiles[d.routingProfile] != nil else { return .notFound("routing profile", d.routingProfile) }
            guard d.skills.count <= CommandLimits.maxSkills, d.skills.values.allSatisfy({ (1...5).contains($0) }) else {
                return .badRequest("skill proficiency is 1…5, at most \(CommandLimits.maxSkills) skills")
            }
        case .putStatus(let name, let type):
            if let bad = badName(name, "status") { return bad }
            guard BuiltInStatus.all[name] == nil else { return .badRequest("\(name) is a built-in status") }
            guard type == .custom else { return .badRequest("added statuses are CUSTOM") }
        case .setRegionServing(let region, _):
            if let bad = badName(region, "region") { return bad }
        case .login(let id, let region, let status):
            guard let agent = agents[id] else { return .notFound("agent", id) }
            if let bad = badName(region, "region") { return bad }
            guard statuses[status] != nil else { return .badRequest("unknown status \(status)") }
            if let current = agent.region, current != region {
                return .conflict("agent \(id) is signed into \(current)", state: agent.status)
            }
        case .logout(let id), .heartbeat(let id):
            guard let agent = agents[id] else { return .notFound("agent", id) }
            guard agent.signedIn else { return .conflict("agent \(id) is not signed in", state: agent.status) }
        case .setStatus(let id, let status):
            guard let agent = agents[id] else { return .notFound("agent", id) }
            guard statuses[status] != nil else { return .badRequest("unknown status \(status)") }
            guard agent.signedIn else { return .conflict("agent \(id) is not signed in", state: agent.status) }
        case .createContact(let n):
            if let bad = badName(n.id, "contact") { return bad }
            if let existing = contacts[n.id] { return .conflict("contact \(n.id) exists", state: existing.state.rawValue) }
            guard queues[n.queue] != nil else { return .notFound("queue", n.queue) }
            if let bad = badName(n.region, "region") { return bad }
            if let bad = badContactData(n.attributes, n.requiredSkills) { return bad }
            if isFull(n.queue) { return .conflict("queue \(n.queue) is full", state: "FULL") }
        case .accept(let cid, let aid), .reject(let cid, let aid):
            guard let contact = contacts[cid] else { return .notFound("contact", cid) }
            guard agents[aid] != nil else { return .notFound("agent", aid) }
            guard contact.state == .offered, contact.agent == aid else {
                return .conflict("agent \(aid) holds no offer for contact \(cid)", state: contact.state.rawValue)
            }
        case .hold(let cid):
            guard let contact = contacts[cid] else { return .notFound("contact", cid) }
            guard contact.state == .connected else {
                return .conflict("only a connected contact can be held", state: contact.state.rawValue)
            }
        case .resume(let cid):
            guard let contact = contacts[cid] else { return .notFound("contact", cid) }
            guard contact.state == .onHold else { return .conflict("only a held contact can be resumed", state: contact.state.rawValue) }
        case .transfer(let cid, let newId, let target):
            guard let contact = contacts[cid] else { return .notFound("contact", cid) }
            guard contact.state == .connected || contact.state == .onHold else {
                return .conflict("only a connected or held contact can be transferred", state: contact.state.rawValue)
            }
            if let bad = badName(newId, "contact") { return bad }
            if let existing = contacts[newId] { return .conflict("contact \(newId) exists", state: existing.state.rawValue) }
            guard target.queue != nil || target.agent != nil else { return .badRequest("a transfer names a queue or an agent") }
            if let q = target.queue, queues[q] == nil { return .notFound("queue", q) }
            if let a = target.agent, agents[a] == nil { return .notFound("agent", a) }
            if let r = target.region, let bad = badName(r, "region") { return bad }
            let destination = target.queue ?? contact.queue
            if isFull(destination) { return .conflict("queue \(destination) is full", state: "FULL") }
        case .end(let cid):
            guard let contact = contacts[cid] else { return .notFound("contact", cid) }
            guard [.queued, .offered, .connected, .onHold].contains(contact.state) else {
                return .conflict("contact \(cid) has already ended", state: contact.state.rawValue)
            }
        case .completeAfterContactWork(let cid):
            guard let contact = contacts[cid] else { return .notFound("contact", cid) }
            guard contact.state == .afterContactWork else {
                return .conflict("contact \(cid) is not in after-contact work", state: contact.state.rawValue)
            }
        case .tick:
            break
        }
        return nil
    }

    private func badName(_ s: String, _ what: String) -> Refusal? {
        s.isEmpty || !ByteWriter.fitsShortString(s) ? .badRequest("a \(what) name is 1 to 255 bytes") : nil
    }

    private func badContactData(_ attributes: [String: String], _ skills: [String: UInt8]) -> Refusal? {
        guard attributes.count <= CommandLimits.maxAttributes, skills.count <= CommandLimits.maxSkills else {
            return .badRequest("at most \(CommandLimits.maxAttributes) attributes and \(CommandLimits.maxSkills) skills")
        }
        for (k, v) in attributes where k.isEmpty || !ByteWriter.fitsShortString(k) || v.utf8.count > CommandLimits.maxAttributeValueBytes {
            return .badRequest("attribute names are 1 to 255 bytes, values at most \(CommandLimits.maxAttributeValueBytes)")
        }
        for (k, level) in skills where k.isEmpty || !ByteWriter.fitsShortString(k) || !(1...5).contains(level) {
            return .badRequest("skill proficiency is 1…5")
        }
        return nil
    }

    /// Performs a command `refusal(for:)` accepted. Cannot fail.
    private mutating func perform(_ command: Command, into events: inout [CenterEvent]) {
        switch command {
        case .putSettings(let s):
            settings = s
        case .putQueue(let q):
            queues[q.id] = q
            if lines[q.id] == nil { lines[q.id] = [] }
        case .putRoutingProfile(let p):
            routingProfiles[p.id] = p
            // Concurrency may have changed for every agent on the profile (rare: a definition).
            for (id, agent) in agents where agent.definition.routingProfile == p.id { touched.insert(id) }
        case .putAgent(let d):
            if var agent = agents[d.id] {
                let before = snapshot(agent)
                agent.definition = d
                agents[d.id] = agent
                touched.insert(d.id)
                emitAgentChange(d.id, before: before, into: &events)
            } else {
                agents[d.id] = Agent(
                    definition: d, region: nil, status: BuiltInStatus.offline, statusSince: now, nextStatus: nil, contacts: [],
                    missedOffers: 0, lastHeartbeat: now, idleSince: now)
            }
        case .putStatus(let name, let type):
            statuses[name] = type
        case .setRegionServing(let region, let serving):
            if serving { regionsNotServing.remove(region) } else { regionsNotServing.insert(region) }
        case .login(let id, let region, let status):
            let before = snapshot(agents[id]!)
            let wasSignedIn = agents[id]!.signedIn
            agents[id]!.region = region
            agents[id]!.lastHeartbeat = now
            signedIn.insert(id)
            touched.insert(id)
            changeStatus(id, to: status)
            if wasSignedIn {
                emitAgentChange(id, before: before, into: &events)
            } else {
                events.append(.agent(agentEvent(.login, id, previous: before)))
            }
        case .logout(let id):
            signOut(id, into: &events)
        case .setStatus(let id, let status):
            let before = snapshot(agents[id]!)
            changeStatus(id, to: status)
            emitAgentChange(id, before: before, into: &events)
        case .heartbeat(let id):
            agents[id]!.lastHeartbeat = now
            events.append(.agent(agentEvent(.heartbeat, id, previous: nil)))
        case .createContact(let n):
            let preferred = n.preferredAgent.flatMap { agents[$0] != nil ? $0 : nil }
            let contact = Contact(
                id: n.id, initialContactId: n.id, previousContactId: nil, channel: n.channel, initiationMethod: n.initiationMethod,
                state: .incoming, queue: n.queue, agent: nil, region: n.region, attributes: n.attributes, requiredSkills: n.requiredSkills,
                preferredAgent: preferred, targetAgent: nil, position: 0, createdAt: now, queuedAt: now, ringDeadline: nil,
                connectedAt: nil, disconnectedAt: nil, endedAt: nil, abandoned: false, lastDeclinedBy: nil, declinedAt: 0,
                steps: [ContactStep(name: ContactState.incoming.rawValue, at: now)])
            admit(contact, into: &events)
        case .accept(let cid, let aid):
            let before = snapshot(agents[aid]!)
            var c = contacts[cid]!
            c.state = .connected
            c.connectedAt = now
            c.ringDeadline = nil
            c.record(ContactState.connected.rawValue, at: now, agent: aid)
            contacts[cid] = c
            let wait = elapsed(since: c.queuedAt)
            let serviceLevel = queues[c.queue]?.serviceLevelMs ?? 0
            count(c) {
                $0.answered += 1
                $0.answerWaitMs += wait
                if wait <= serviceLevel { $0.answeredWithinServiceLevel += 1 }
            }
            agents[aid]!.missedOffers = 0
            events.append(.contact(ContactEvent(type: .connectedToAgent, at: now, contact: c, agentId: aid)))
            emitAgentChange(aid, before: before, into: &events)
        case .reject(let cid, let aid):
            let before = snapshot(agents[aid]!)
            decline(cid, by: aid, as: .rejected, into: &events)
            emitAgentChange(aid, before: before, into: &events)
        case .hold(let cid):
            setConnection(cid, .onHold, event: .hold, into: &events)
        case .resume(let cid):
            setConnection(cid, .connected, event: .resume, into: &events)
        case .transfer(let cid, let newId, let target):
            let old = contacts[cid]!
            let aid = old.agent!
            let before = snapshot(agents[aid]!)
            contacts[cid]!.state = .afterContactWork
            contacts[cid]!.disconnectedAt = now
            contacts[cid]!.record(ContactEventType.transferred.rawValue, at: now, agent: aid)
            events.append(.contact(ContactEvent(type: .transferred, at: now, contact: contacts[cid]!, agentId: aid, detail: newId)))
            emitAgentChange(aid, before: before, into: &events)
            let contact = Contact(
                id: newId, initialContactId: old.initialContactId, previousContactId: old.id, channel: old.channel,
                initiationMethod: target.agent != nil ? .transfer : .queueTransfer, state: .incoming, queue: target.queue ?? old.queue,
                agent: nil, region: target.region ?? old.region, attributes: old.attributes, requiredSkills: old.requiredSkills,
                preferredAgent: nil, targetAgent: target.agent, position: 0, createdAt: now, queuedAt: now, ringDeadline: nil,
                connectedAt: nil, disconnectedAt: nil, endedAt: nil, abandoned: false, lastDeclinedBy: nil, declinedAt: 0,
                steps: [ContactStep(name: ContactState.incoming.rawValue, at: now)])
            admit(contact, into: &events)
        case .end(let cid):
            let c = contacts[cid]!
            switch c.state {
            case .queued:
                removeFromLine(c)
                abandon(cid, into: &events)
            case .offered:
                let aid = c.agent!
                let before = snapshot(agents[aid]!)
                release(cid, from: aid)
                events.append(.offerWithdrawn(contactId: cid, agentId: aid))
                abandon(cid, into: &events)
                emitAgentChange(aid, before: before, into: &events)
            default:
                let aid = c.agent!
                let before = snapshot(agents[aid]!)
                contacts[cid]!.state = .afterContactWork
                contacts[cid]!.disconnectedAt = now
                contacts[cid]!.record(ContactState.afterContactWork.rawValue, at: now, agent: aid)
                events.append(
                    .contact(ContactEvent(type: .disconnected, at: now, contact: contacts[cid]!, agentId: aid, detail: "DISCONNECTED")))
                emitAgentChange(aid, before: before, into: &events)
            }
        case .completeAfterContactWork(let cid):
            completeAfterContactWork(cid, into: &events)
        case .tick:
            expireTimers(into: &events)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Contacts

    /// Queues a new contact (created or transferred): INITIATED, then QUEUED.
    private mutating func admit(_ contact: Contact, into events: inout [CenterEvent]) {
        var c = contact
        events.append(.contact(ContactEvent(type: .initiated, at: now, contact: c)))
        c.state = .queued
        c.position = nextPosition
        nextPosition += 1
        c.queuedAt = now
        c.record(ContactState.queued.rawValue, at: now)
        contacts[c.id] = c
        insertIntoLine(c)
        count(c) { $0.enqueued += 1 }
        events.append(.contact(ContactEvent(type: .queued, at: now, contact: c)))
    }

    private mutating func abandon(_ cid: String, into events: inout [CenterEvent]) {
        var c = contacts[cid]!
        c.state = .ended
        c.agent = nil
        c.ringDeadline = nil
        c.abandoned = true
        c.disconnectedAt = now
        c.endedAt = now
        c.record(ContactState.ended.rawValue, at: now)
        contacts[cid] = c
        count(c) { $0.abandoned += 1 }
        events.append(.contact(ContactEvent(type: .disconnected, at: now, contact: c, detail: "ABANDONED")))
    }

    private mutating func setConnection(_ cid: String, _ state: ContactState, event: ContactEventType, into events: inout [CenterEvent]) {
        let aid = contacts[cid]!.agent!
        let before = snapshot(agents[aid]!)
        contacts[cid]!.state = state
        contacts[cid]!.record(state.rawValue, at: now, agent: aid)
        events.append(.contact(ContactEvent(type: event, at: now, contact: contacts[cid]!, agentId: aid)))
        emitAgentChange(aid, before: before, into: &events)
    }

    private mutating func completeAfterContactWork(_ cid: String, into events: inout [CenterEvent]) {
        let aid = contacts[cid]!.agent!
        let before = snapshot(agents[aid]!)
        var c = contacts[cid]!
        c.state = .ended
        c.endedAt = now
        c.record(ContactState.ended.rawValue, at: now, agent: aid)
        contacts[cid] = c
        let handleTime = elapsed(since: c.connectedAt ?? now)
        count(c) {
            $0.handled += 1
            $0.handleTimeMs += handleTime
        }
        release(cid, from: aid)
        events.append(.contact(ContactEvent(type: .afterContactWorkCompleted, at: now, contact: c, agentId: aid)))
        emitAgentChange(aid, before: before, into: &events)
    }

    /// A ringing offer ends unanswered (`.missed` or `.rejected`): the contact goes back to its
    /// place in line and is not offered to that agent again for `reofferDelayMs`.
    private mutating func decline(_ cid: String, by aid: String, as outcome: ContactEventType, into events: inout [CenterEvent]) {
        release(cid, from: aid)
        var c = contacts[cid]!
        c.record(outcome.rawValue, at: now, agent: aid)
        c.lastDeclinedBy = aid
        c.declinedAt = now
        contacts[cid] = c
        requeue(cid)
        events.append(.contact(ContactEvent(type: outcome, at: now, contact: contacts[cid]!, agentId: aid)))
    }

    /// Back in line at the contact's original position, its age kept.
    private mutating func requeue(_ cid: String) {
        contacts[cid]!.state = .queued
        contacts[cid]!.agent = nil
        contacts[cid]!.ringDeadline = nil
        contacts[cid]!.record(ContactState.queued.rawValue, at: now)
        insertIntoLine(contacts[cid]!)
    }

    private func isFull(_ queue: String) -> Bool {
        guard let q = queues[queue], q.maxContacts > 0 else { return false }
        return (lines[queue]?.count ?? 0) >= q.maxContacts
    }

    mutating func insertIntoLine(_ c: Contact) {
        var line = lines[c.queue] ?? []
        line.insert(Waiting(position: c.position, contactId: c.id), at: line.insertionIndex(of: c.position))
        lines[c.queue] = line
        queuedCount += 1
    }

    private mutating func removeFromLine(_ c: Contact) {
        guard let i = lines[c.queue]?.firstIndex(at: c.position) else { return }
        lines[c.queue]!.remove(at: i)
        queuedCount -= 1
    }

    private mutating func count(_ c: Contact, _ change: (inout IntervalTotals) -> Void) {
        let key = IntervalKey(queue: c.queue, region: c.region)
        var totals = intervalTotals[key] ?? IntervalTotals(queue: c.queue, region: c.region)
        change(&totals)
        intervalTotals[key] = totals
    }

    /// Closes the metrics interval when the command's time is past it.
    private mutating func rollInterval(into events: inout [CenterEvent]) {
        guard now >= intervalStart &+ settings.intervalMs else { return }
        if !intervalTotals.isEmpty {
            let totals = intervalTotals.keys.sorted().map { intervalTotals[$0]! }
            events.append(.intervalClosed(start: intervalStart, end: intervalStart + settings.intervalMs, totals: totals))
        }
        intervalTotals = [:]
        intervalStart = now - now % settings.intervalMs
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Agents

    public func statusType(of status: String) -> StatusType { statuses[status] ?? .offline }

    func hasActiveContacts(_ agent: Agent) -> Bool { agent.contacts.contains { contacts[$0]?.state.isActive ?? false } }

    /// Sets a status now, or as the next status while the agent is on a contact.
    private mutating func changeStatus(_ id: String, to status: String) {
        var agent = agents[id]!
        if status == BuiltInStatus.available { agent.missedOffers = 0 }
        if hasActiveContacts(agent) {
            agent.nextStatus = status == agent.status ? nil : status
        } else {
            setStatusNow(&agent, status)
        }
        agents[id] = agent
        touched.insert(id)
    }

    private func setStatusNow(_ agent: inout Agent, _ status: String) {
        agent.nextStatus = nil
        guard status != agent.status else { return }
        if statusType(of: status) == .routable && statusType(of: agent.status) != .routable { agent.idleSince = now }
        agent.status = status
        agent.statusSince = now
    }

    /// Takes a contact off an agent; the agent's next status applies once nothing active is left.
    private mutating func release(_ cid: String, from aid: String) {
        var agent = agents[aid]!
        if let i = agent.contacts.firstIndex(of: cid) { agent.contacts.remove(at: i) }
        agent.idleSince = now
        if let next = agent.nextStatus, !hasActiveContacts(agent) { setStatusNow(&agent, next) }
        agents[aid] = agent
        touched.insert(aid)
    }

    /// Signs an agent out (asked, or its heartbeats stopped): ringing offers go back in line;
    /// contacts it is working on stay with it (the call is in the media server, not lost) until
    /// they end.
    private mutating func signOut(_ id: String, into events: inout [CenterEvent]) {
        let before = snapshot(agents[id]!)
        for cid in agents[id]!.contacts where contacts[cid]?.state == .offered {
            release(cid, from: id)
            contacts[cid]!.record("WITHDRAWN", at: now, agent: id)
            requeue(cid)
            events.append(.offerWithdrawn(contactId: cid, agentId: id))
        }
        var agent = agents[id]!
        agent.region = nil
        agent.nextStatus = nil
        if agent.status != BuiltInStatus.offline {
            agent.status = BuiltInStatus.offline
            agent.statusSince = now
        }
        agents[id] = agent
        signedIn.remove(id)
        touched.insert(id)
        events.append(.agent(agentEvent(.logout, id, previous: before)))
    }

    /// The agent may be offered a contact of `channel` now: counting offers, one voice contact
    /// and nothing else beside it (Connect's default without cross-channel concurrency), or up to
    /// the profile's limit per channel.
    func hasCapacity(_ agent: Agent, for channel: Channel, held: [Channel: Int]) -> Bool {
        guard let limit = routingProfiles[agent.definition.routingProfile]?.concurrency[channel], limit > 0 else { return false }
        if channel == .voice { return agent.contacts.isEmpty }
        return (held[.voice] ?? 0) == 0 && (held[channel] ?? 0) < limit
    }

    func heldByChannel(_ agent: Agent) -> [Channel: Int] {
        var held: [Channel: Int] = [:]
        for cid in agent.contacts { if let c = contacts[cid] { held[c.channel, default: 0] += 1 } }
        return held
    }

    /// Room for one more contact of some channel its profile handles.
    func hasFreeSlot(_ agent: Agent) -> Bool {
        guard let profile = routingProfiles[agent.definition.routingProfile] else { return false }
        let held = heldByChannel(agent)
        return profile.concurrency.keys.contains { hasCapacity(agent, for: $0, held: held) }
    }

    func isRoutable(_ agent: Agent) -> Bool {
        agent.signedIn && agent.nextStatus == nil && statusType(of: agent.status) == .routable
    }

    func snapshot(_ agent: Agent) -> AgentSnapshot {
        AgentSnapshot(
            status: agent.status, statusType: statusType(of: agent.status), statusSince: agent.statusSince, nextStatus: agent.nextStatus,
            region: agent.region, routingProfile: agent.definition.routingProfile,
            contacts: agent.contacts.compactMap { cid in
                contacts[cid].map { AgentContactSnapshot(contactId: cid, channel: $0.channel, state: $0.state) }
            })
    }

    private func agentEvent(_ type: AgentEventType, _ id: String, previous: AgentSnapshot?) -> AgentEvent {
        let agent = agents[id]!
        return AgentEvent(
            type: type, agentId: id, at: now, region: agent.region ?? previous?.region, previous: previous, current: snapshot(agent))
    }

    private func emitAgentChange(_ id: String, before: AgentSnapshot, into events: inout [CenterEvent]) {
        guard snapshot(agents[id]!) != before else { return }
        events.append(.agent(agentEvent(.stateChange, id, previous: before)))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Timers

    private mutating func expireTimers(into events: inout [CenterEvent]) {
        // Offers that rang out: the contact goes back to its place, the agent counts a miss.
        let rangOut = contacts.values.filter { $0.state == .offered && ($0.ringDeadline ?? .max) <= now }
            .sorted { ($0.ringDeadline!, $0.id) < ($1.ringDeadline!, $1.id) }
        for c in rangOut {
            let aid = c.agent!
            let before = snapshot(agents[aid]!)
            decline(c.id, by: aid, as: .missed, into: &events)
            agents[aid]!.missedOffers += 1
            if agents[aid]!.missedOffers >= settings.missesBeforeNonRoutable && agents[aid]!.status != BuiltInStatus.missed {
                changeStatus(aid, to: BuiltInStatus.missed)
            }
            emitAgentChange(aid, before: before, into: &events)
        }
        // Agents whose client stopped sending heartbeats.
        let silent = signedIn.filter { agents[$0]!.lastHeartbeat &+ settings.heartbeatTimeoutMs <= now }.sorted()
        for id in silent { signOut(id, into: &events) }
        // After-contact work that timed out.
        let wrapUps = contacts.values.filter { c in
            guard c.state == .afterContactWork, let aid = c.agent, let timeout = agents[aid]?.definition.acwTimeoutMs, timeout > 0 else {
                return false
            }
            return (c.disconnectedAt ?? now) &+ timeout <= now
        }.map(\.id).sorted()
        for cid in wrapUps { completeAfterContactWork(cid, into: &events) }
        // Ended contacts leave the state once their retention is over (history is the shell's).
        for c in contacts.values where c.state == .ended && (c.endedAt ?? now) &+ settings.endedRetentionMs <= now {
            contacts[c.id] = nil
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Assignment

    /// Whether `contact` may be offered to `agent` now, apart from capacity and the profile's
    /// delay (which `bestContact` checks): transfer target, preferred agent, skills, region, a
    /// recent decline.
    func mayOffer(_ c: Contact, to agent: Agent) -> Bool {
        if let target = c.targetAgent { return agent.id == target }
        if let preferred = c.preferredAgent, preferred != agent.id, now < c.createdAt &+ settings.preferredAgentWindowMs,
            let p = agents[preferred], p.signedIn, statusType(of: p.status) == .routable
        {
            return false
        }
        if c.lastDeclinedBy == agent.id && now < c.declinedAt &+ settings.reofferDelayMs { return false }
        for (skill, level) in c.requiredSkills where (agent.definition.skills[skill] ?? 0) < level { return false }
        if agent.region != c.region && now < c.queuedAt &+ settings.crossRegionDelayMs && !regionsNotServing.contains(c.region) {
            return false
        }
        return true
    }

    /// The contact `agent` should be offered next: the best priority of its profile among
    /// contacts it may take, then the oldest place in line.
    func bestContact(for agent: Agent) -> (id: String, priority: Int, position: UInt64)? {
        guard let profile = routingProfiles[agent.definition.routingProfile] else { return nil }
        let held = heldByChannel(agent)
        var best: (id: String, priority: Int, position: UInt64)?
        for pq in profile.queues {
            if let b = best, pq.priority > b.priority { break }
            guard let line = lines[pq.queue] else { continue }
            for w in line {
                if let b = best, w.position > b.position { break }
                let c = contacts[w.contactId]!
                // Lines are in enqueue order, so queue times rise along them: once one has not
                // waited the profile's delay, none after it has.
                if now < c.queuedAt &+ pq.delayMs { break }
                guard hasCapacity(agent, for: c.channel, held: held), mayOffer(c, to: agent) else { continue }
                best = (c.id, pq.priority, w.position)
                break
            }
        }
        return best
    }

    /// Offers waiting contacts to free agents. Round one asks every free agent, longest idle
    /// first, walking the index (an agent offered a contact moves to its back, as its idle time
    /// is now, and is not asked twice in a round); later rounds ask only the agents that took a
    /// contact in the previous one and still have a free slot — the others found nothing they
    /// may take, and offers only take contacts away. Stops as soon as nothing waits, so with
    /// free agents a new contact costs one lookup, and with none free nothing at all.
    private mutating func dispatch(into events: inout [CenterEvent]) {
        guard queuedCount > 0 else { return }
        updateFreeIndex()
        var next: [FreeAgent] = []
        var askedThisRound: Set<String> = []
        var cursor: FreeAgent?
        while queuedCount > 0 {
            var i = cursor.map { free.index(after: $0) } ?? 0
            while i < free.count && askedThisRound.contains(free[i].id) { i += 1 }
            guard i < free.count else { break }
            let candidate = free[i]
            cursor = candidate
            guard let choice = bestContact(for: agents[candidate.id]!) else { continue }
            askedThisRound.insert(candidate.id)
            offer(choice.id, to: candidate.id, into: &events)
            updateFreeIndex()
            if let idle = freeKeys[candidate.id] { next.append(FreeAgent(idleSince: idle, id: candidate.id)) }
        }
        while queuedCount > 0 && !next.isEmpty {
            let round = next.sorted()
            next = []
            for candidate in round {
                guard queuedCount > 0 else { break }
                guard let choice = bestContact(for: agents[candidate.id]!) else { continue }
                offer(choice.id, to: candidate.id, into: &events)
                updateFreeIndex()
                if let idle = freeKeys[candidate.id] { next.append(FreeAgent(idleSince: idle, id: candidate.id)) }
            }
        }
    }

    /// May be offered a contact now: signed in, routable, no next status, a free slot.
    func isFree(_ agent: Agent) -> Bool { isRoutable(agent) && hasFreeSlot(agent) }

    /// Brings the free-agent index up to date for the agents changed since the last time.
    mutating func updateFreeIndex() {
        guard !touched.isEmpty else { return }
        for id in touched {
            let agent = agents[id]
            let want = agent.flatMap { isFree($0) ? FreeAgent(idleSince: $0.idleSince, id: id) : nil }
            let had = freeKeys[id].map { FreeAgent(idleSince: $0, id: id) }
            guard want != had else { continue }
            if let had, let i = free.position(of: had) { free.remove(at: i) }
            if let want { free.insert(want, at: free.insertionIndex(of: want)) }
            freeKeys[id] = want?.idleSince
        }
        touched = []
    }

    /// Rebuilds the index from every agent (after restoring a snapshot).
    mutating func rebuildFreeIndex() {
        free = agents.values.filter { isFree($0) }.map { FreeAgent(idleSince: $0.idleSince, id: $0.id) }.sorted()
        freeKeys = Dictionary(uniqueKeysWithValues: free.map { ($0.id, $0.idleSince) })
        touched = []
    }

    /// Whether the index (brought up to date) holds exactly the free agents, in order: what a
    /// pass over every agent would find. For tests.
    mutating func freeIndexIsConsistent() -> Bool {
        updateFreeIndex()
        let scanned = agents.values.filter { isFree($0) }.map { FreeAgent(idleSince: $0.idleSince, id: $0.id) }.sorted()
        return scanned == free && freeKeys == Dictionary(uniqueKeysWithValues: scanned.map { ($0.id, $0.idleSince) })
    }

    private mutating func offer(_ cid: String, to aid: String, into events: inout [CenterEvent]) {
        let before = snapshot(agents[aid]!)
        removeFromLine(contacts[cid]!)
        var c = contacts[cid]!
        c.state = .offered
        c.agent = aid
        c.ringDeadline = now &+ settings.ringTimeoutMs
        c.record(ContactState.offered.rawValue, at: now, agent: aid)
        contacts[cid] = c
        var agent = agents[aid]!
        agent.contacts.insert(cid, at: agent.contacts.sortedInsertionIndex(of: cid))
        agent.idleSince = now
        agents[aid] = agent
        touched.insert(aid)
        events.append(.offered(Offer(contactId: cid, agentId: aid, channel: c.channel, queue: c.queue, ringDeadline: c.ringDeadline!)))
        emitAgentChange(aid, before: before, into: &events)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Reading

    public func agent(_ id: String) -> Agent? { agents[id] }
    public func contact(_ id: String) -> Contact? { contacts[id] }

    /// The offers ringing for an agent, oldest first.
    public func offers(for agentId: String) -> [Offer] {
        guard let agent = agents[agentId] else { return [] }
        return agent.contacts.compactMap { contacts[$0] }.filter { $0.state == .offered }.sorted { $0.position < $1.position }
            .map { Offer(contactId: $0.id, agentId: agentId, channel: $0.channel, queue: $0.queue, ringDeadline: $0.ringDeadline!) }
    }

    /// The contacts waiting in a queue, in line order.
    public func line(_ queue: String) -> [Contact] { (lines[queue] ?? []).map { contacts[$0.contactId]! } }

    /// The interval totals so far, by (queue, region), sorted.
    public var currentIntervalTotals: [IntervalTotals] { intervalTotals.keys.sorted().map { intervalTotals[$0]! } }
}

extension Array where Element == ContactCenterState.Waiting {
    /// Where an entry with `position` goes (binary search; positions are unique).
    func insertionIndex(of position: UInt64) -> Int {
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid].position < position { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func firstIndex(at position: UInt64) -> Int? {
        let i = insertionIndex(of: position)
        return i < count && self[i].position == position ? i : nil
    }
}

extension Array where Element == ContactCenterState.FreeAgent {
    /// Where `key` goes (binary search; keys are unique, as ids are).
    func insertionIndex(of key: Element) -> Int {
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func position(of key: Element) -> Int? {
        let i = insertionIndex(of: key)
        return i < count && self[i] == key ? i : nil
    }

    /// The first index whose key is after `key`.
    func index(after key: Element) -> Int {
        let i = insertionIndex(of: key)
        return i < count && self[i] == key ? i + 1 : i
    }
}

extension Array where Element == String {
    func sortedInsertionIndex(of s: String) -> Int {
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid] < s { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
