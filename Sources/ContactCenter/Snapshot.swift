import TandemCore

// A snapshot of the whole state, so the `_cc` log can be trimmed: a replica that joins late or
// restarts loads the newest snapshot and applies the entries after its index.
//
// Format: `0xCD | version u8 | now | nextPosition | intervalStart | settings | statuses |
// queues | routing profiles | agents | contacts | regions not serving | interval totals`, every
// map in sorted key order, so two replicas that applied the same entries write byte-identical
// snapshots (the simulation compares them; a digest of it is a cheap divergence check between
// replicas). Derived indexes (each queue's line, who is signed in) are not written; they are
// rebuilt on load from the contacts and agents.
//
// The shell's part (next session): every N entries (or M bytes of log) the leader and each
// follower write `(index, term, encodedSnapshot())` durably beside the partition and trim the
// log below it (Raft's `installStart` generalised: a follower behind the trim point is sent the
// snapshot, then the entries after it). Decoding checks each count against the bytes left
// before it allocates; a snapshot is trusted no further than a log entry would be.

extension ContactCenterState {
    static let snapshotMagic: UInt8 = 0xCD
    public static let snapshotVersion: UInt8 = 1

    public func encodedSnapshot() -> [UInt8] {
        var w = ByteWriter(capacity: 4096 + contacts.count * 256)
        w.u8(Self.snapshotMagic)
        w.u8(Self.snapshotVersion)
        w.u64(now)
        w.u64(nextPosition)
        w.u64(intervalStart)
        w.settings(settings)
        let added = statuses.keys.filter { BuiltInStatus.all[$0] == nil }.sorted()
        w.u32(UInt32(added.count))
        for name in added {
            w.shortString(name)
            w.u8(statuses[name]!.code)
        }
        w.u32(UInt32(queues.count))
        for id in queues.keys.sorted() {
            let q = queues[id]!
            w.shortString(q.id)
            w.u64(q.serviceLevelMs)
            w.u32(UInt32(clamping: q.maxContacts))
        }
        w.u32(UInt32(routingProfiles.count))
        for id in routingProfiles.keys.sorted() { w.profile(routingProfiles[id]!) }
        w.u32(UInt32(agents.count))
        for id in agents.keys.sorted() { w.agent(agents[id]!) }
        w.u32(UInt32(contacts.count))
        for id in contacts.keys.sorted() { w.contact(contacts[id]!) }
        let down = regionsNotServing.sorted()
        w.u32(UInt32(down.count))
        for r in down { w.shortString(r) }
        w.u32(UInt32(intervalTotals.count))
        for key in intervalTotals.keys.sorted() { w.totals(intervalTotals[key]!) }
        return w.bytes
    }

    public init(snapshot bytes: [UInt8]) throws(TandemError) {
        var r = ByteReader(bytes)
        guard try r.u8() == Self.snapshotMagic else { throw TandemError(.malformed, "not a contact-center snapshot") }
        let v = try r.u8()
        guard v == Self.snapshotVersion else { throw TandemError(.unsupportedVersion, "contact-center snapshot version \(v)") }
        self.init()
        now = try r.u64()
        nextPosition = try r.u64()
        intervalStart = try r.u64()
        settings = try r.settings()
        guard settings.isValid else { throw TandemError(.malformed, "invalid settings in a contact-center snapshot") }
        for _ in 0..<(try r.count32(minElementSize: 2)) {
            let name = try r.shortString()
            statuses[name] = try r.statusType()
        }
        for _ in 0..<(try r.count32(minElementSize: 13)) {
            let q = QueueDefinition(id: try r.shortString(), serviceLevelMs: try r.u64(), maxContacts: Int(try r.u32()))
            queues[q.id] = q
            lines[q.id] = []
        }
        for _ in 0..<(try r.count32(minElementSize: 4)) {
            let p = try r.profile()
            routingProfiles[p.id] = p
        }
        for _ in 0..<(try r.count32(minElementSize: 40)) {
            let a = try r.agent()
            agents[a.id] = a
            if a.signedIn { signedIn.insert(a.id) }
        }
        for _ in 0..<(try r.count32(minElementSize: 60)) {
            let c = try r.contact()
            contacts[c.id] = c
        }
        for _ in 0..<(try r.count32(minElementSize: 1)) { regionsNotServing.insert(try r.shortString()) }
        for _ in 0..<(try r.count32(minElementSize: 2)) {
            let t = try r.totals()
            intervalTotals[IntervalKey(queue: t.queue, region: t.region)] = t
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes after a contact-center snapshot") }
        // Rebuild the lines, and check the references the rules rely on (a `!` in the rules must
        // never meet a snapshot that lies).
        for id in contacts.keys.sorted() {
            let c = contacts[id]!
            guard queues[c.queue] != nil else { throw TandemError(.malformed, "contact \(id) in unknown queue") }
            if c.state == .queued { insertIntoLine(c) }
            if [.offered, .connected, .onHold, .afterContactWork].contains(c.state) {
                guard let aid = c.agent, agents[aid]?.contacts.contains(id) == true else {
                    throw TandemError(.malformed, "contact \(id) held by no agent")
                }
            }
        }
        for a in agents.values {
            guard routingProfiles[a.definition.routingProfile] != nil else { throw TandemError(.malformed, "agent \(a.id) has no profile") }
            for cid in a.contacts where contacts[cid]?.agent != a.id {
                throw TandemError(.malformed, "agent \(a.id) holds contact \(cid) it is not on")
            }
        }
        rebuildFreeIndex()
    }
}

extension ByteWriter {
    mutating func agent(_ a: Agent) {
        agentDefinition(a.definition)
        optionalString(a.region)
        shortString(a.status)
        u64(a.statusSince)
        optionalString(a.nextStatus)
        u16(UInt16(a.contacts.count))
        for c in a.contacts { shortString(c) }
        u32(UInt32(clamping: a.missedOffers))
        u64(a.lastHeartbeat)
        u64(a.idleSince)
    }

    mutating func contact(_ c: Contact) {
        shortString(c.id)
        shortString(c.initialContactId)
        optionalString(c.previousContactId)
        u8(c.channel.code)
        u8(c.initiationMethod.code)
        u8(c.state.code)
        shortString(c.queue)
        optionalString(c.agent)
        shortString(c.region)
        attributes(c.attributes)
        skills(c.requiredSkills)
        optionalString(c.preferredAgent)
        optionalString(c.targetAgent)
        u64(c.position)
        u64(c.createdAt)
        u64(c.queuedAt)
        optionalU64(c.ringDeadline)
        optionalU64(c.connectedAt)
        optionalU64(c.disconnectedAt)
        optionalU64(c.endedAt)
        bool(c.abandoned)
        optionalString(c.lastDeclinedBy)
        u64(c.declinedAt)
        u16(UInt16(c.steps.count))
        for s in c.steps {
            shortString(s.name)
            u64(s.at)
            optionalString(s.agent)
        }
    }

    mutating func totals(_ t: IntervalTotals) {
        shortString(t.queue)
        shortString(t.region)
        for n in [t.enqueued, t.answered, t.answeredWithinServiceLevel, t.abandoned, t.handled] { u64(UInt64(n)) }
        u64(t.handleTimeMs)
        u64(t.answerWaitMs)
    }
}

extension ByteReader {
    /// A u32 count that will drive a loop, bounded by what could fit in the bytes left.
    mutating func count32(minElementSize: Int) throws(TandemError) -> Int {
        let n = Int(try u32())
        guard n <= remaining / max(1, minElementSize) else { throw TandemError(.malformed, "count \(n) cannot fit in \(remaining) bytes") }
        return n
    }

    mutating func agent() throws(TandemError) -> Agent {
        let definition = try agentDefinition()
        let region = try optionalString()
        let status = try shortString()
        let statusSince = try u64()
        let nextStatus = try optionalString()
        let n = try count16(limit: 1024, minElementSize: 1)
        var contacts: [String] = []
        for _ in 0..<n { contacts.append(try shortString()) }
        return Agent(
            definition: definition, region: region, status: status, statusSince: statusSince, nextStatus: nextStatus, contacts: contacts,
            missedOffers: Int(try u32()), lastHeartbeat: try u64(), idleSince: try u64())
    }

    mutating func contact() throws(TandemError) -> Contact {
        let id = try shortString()
        let initial = try shortString()
        let previous = try optionalString()
        let channel = try channel()
        guard let method = InitiationMethod(code: try u8()) else { throw TandemError(.malformed, "unknown initiation method") }
        guard let state = ContactState(code: try u8()) else { throw TandemError(.malformed, "unknown contact state") }
        var c = Contact(
            id: id, initialContactId: initial, previousContactId: previous, channel: channel, initiationMethod: method, state: state,
            queue: try shortString(), agent: try optionalString(), region: try shortString(), attributes: try attributes(),
            requiredSkills: try skills(), preferredAgent: try optionalString(), targetAgent: try optionalString(), position: try u64(),
            createdAt: try u64(), queuedAt: try u64(), ringDeadline: try optionalU64(), connectedAt: try optionalU64(),
            disconnectedAt: try optionalU64(), endedAt: try optionalU64(), abandoned: try bool(), lastDeclinedBy: try optionalString(),
            declinedAt: try u64(), steps: [])
        let n = try count16(limit: Contact.maxSteps, minElementSize: 10)
        for _ in 0..<n { c.steps.append(ContactStep(name: try shortString(), at: try u64(), agent: try optionalString())) }
        return c
    }

    mutating func totals() throws(TandemError) -> IntervalTotals {
        var t = IntervalTotals(queue: try shortString(), region: try shortString())
        t.enqueued = Int(clamping: try u64())
        t.answered = Int(clamping: try u64())
        t.answeredWithinServiceLevel = Int(clamping: try u64())
        t.abandoned = Int(clamping: try u64())
        t.handled = Int(clamping: try u64())
        t.handleTimeMs = try u64()
        t.answerWaitMs = try u64()
        return t
    }
}
