import TandemCore

// Commands as `_cc` log entries: `0xCC | version u8 | kind u8 | fields`, big-endian, names as
// short strings (≤ 255 bytes), maps sorted by key so one command always encodes to the same
// bytes. Every limit is checked before the work it bounds: encoding refuses what decoding would
// refuse (so a node never proposes an entry no replica can read), and decoding checks the entry's
// size, then each count against its limit and against the bytes left, before it allocates.
// Version 1; a replica meeting a newer version stops applying (it must not guess), which is why
// a release that changes this format is rolled out before anything proposes the new version.

public enum CommandLimits {
    public static let maxEncodedBytes = 64 * 1024
    public static let maxAttributes = 64
    public static let maxAttributeValueBytes = 1024
    public static let maxSkills = 64
    public static let maxProfileQueues = 64
}

public enum CommandCodec {
    static let magic: UInt8 = 0xCC
    public static let version: UInt8 = 1

    public static func encode(_ command: Command) throws(TandemError) -> [UInt8] {
        try check(command)
        var w = ByteWriter(capacity: 128)
        w.u8(magic)
        w.u8(version)
        switch command {
        case .putSettings(let s):
            w.u8(0)
            w.settings(s)
        case .putQueue(let q):
            w.u8(1)
            w.shortString(q.id)
            w.u64(q.serviceLevelMs)
            w.u32(UInt32(clamping: q.maxContacts))
        case .putRoutingProfile(let p):
            w.u8(2)
            w.profile(p)
        case .putAgent(let d):
            w.u8(3)
            w.agentDefinition(d)
        case .putStatus(let name, let type):
            w.u8(4)
            w.shortString(name)
            w.u8(type.code)
        case .setRegionServing(let region, let serving):
            w.u8(5)
            w.shortString(region)
            w.bool(serving)
        case .login(let agent, let region, let status):
            w.u8(6)
            w.shortString(agent)
            w.shortString(region)
            w.shortString(status)
        case .logout(let agent):
            w.u8(7)
            w.shortString(agent)
        case .setStatus(let agent, let status):
            w.u8(8)
            w.shortString(agent)
            w.shortString(status)
        case .heartbeat(let agent):
            w.u8(9)
            w.shortString(agent)
        case .createContact(let n):
            w.u8(10)
            w.shortString(n.id)
            w.u8(n.channel.code)
            w.u8(n.initiationMethod.code)
            w.shortString(n.queue)
            w.shortString(n.region)
            w.attributes(n.attributes)
            w.skills(n.requiredSkills)
            w.optionalString(n.preferredAgent)
        case .accept(let contact, let agent):
            w.u8(11)
            w.shortString(contact)
            w.shortString(agent)
        case .reject(let contact, let agent):
            w.u8(12)
            w.shortString(contact)
            w.shortString(agent)
        case .hold(let contact):
            w.u8(13)
            w.shortString(contact)
        case .resume(let contact):
            w.u8(14)
            w.shortString(contact)
        case .transfer(let contact, let newId, let target):
            w.u8(15)
            w.shortString(contact)
            w.shortString(newId)
            w.optionalString(target.queue)
            w.optionalString(target.agent)
            w.optionalString(target.region)
        case .end(let contact):
            w.u8(16)
            w.shortString(contact)
        case .completeAfterContactWork(let contact):
            w.u8(17)
            w.shortString(contact)
        case .tick:
            w.u8(18)
        }
        guard w.count <= CommandLimits.maxEncodedBytes else { throw TandemError(.tooLarge, "command of \(w.count) bytes") }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(TandemError) -> Command {
        guard bytes.count <= CommandLimits.maxEncodedBytes else { throw TandemError(.tooLarge, "command of \(bytes.count) bytes") }
        var r = ByteReader(bytes)
        guard try r.u8() == magic else { throw TandemError(.malformed, "not a contact-center command") }
        let v = try r.u8()
        guard v == version else { throw TandemError(.unsupportedVersion, "contact-center command version \(v)") }
        let command: Command
        switch try r.u8() {
        case 0: command = .putSettings(try r.settings())
        case 1: command = .putQueue(QueueDefinition(id: try r.shortString(), serviceLevelMs: try r.u64(), maxContacts: Int(try r.u32())))
        case 2: command = .putRoutingProfile(try r.profile())
        case 3: command = .putAgent(try r.agentDefinition())
        case 4:
            let name = try r.shortString()
            command = .putStatus(name: name, type: try r.statusType())
        case 5: command = .setRegionServing(region: try r.shortString(), serving: try r.bool())
        case 6: command = .login(agent: try r.shortString(), region: try r.shortString(), status: try r.shortString())
        case 7: command = .logout(agent: try r.shortString())
        case 8: command = .setStatus(agent: try r.shortString(), status: try r.shortString())
        case 9: command = .heartbeat(agent: try r.shortString())
        case 10:
            let id = try r.shortString()
            let channel = try r.channel()
            guard let method = InitiationMethod(code: try r.u8()) else { throw TandemError(.malformed, "unknown initiation method") }
            command = .createContact(
                NewContact(
                    id: id, channel: channel, initiationMethod: method, queue: try r.shortString(), region: try r.shortString(),
                    attributes: try r.attributes(), requiredSkills: try r.skills(), preferredAgent: try r.optionalString()))
        case 11: command = .accept(contact: try r.shortString(), agent: try r.shortString())
        case 12: command = .reject(contact: try r.shortString(), agent: try r.shortString())
        case 13: command = .hold(contact: try r.shortString())
        case 14: command = .resume(contact: try r.shortString())
        case 15:
            let contact = try r.shortString()
            let newId = try r.shortString()
            command = .transfer(
                contact: contact, newContactId: newId,
                to: TransferTarget(queue: try r.optionalString(), agent: try r.optionalString(), region: try r.optionalString()))
        case 16: command = .end(contact: try r.shortString())
        case 17: command = .completeAfterContactWork(contact: try r.shortString())
        case 18: command = .tick
        case let k: throw TandemError(.malformed, "unknown contact-center command \(k)")
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes after a contact-center command") }
        return command
    }

    /// The limits decoding enforces, checked before encoding.
    static func check(_ command: Command) throws(TandemError) {
        func name(_ s: String?) throws(TandemError) {
            if let s, !ByteWriter.fitsShortString(s) { throw TandemError(.tooLarge, "a name longer than 255 bytes") }
        }
        switch command {
        case .putSettings, .tick: break
        case .putQueue(let q): try name(q.id)
        case .putRoutingProfile(let p):
            try name(p.id)
            guard p.queues.count <= CommandLimits.maxProfileQueues else { throw TandemError(.tooLarge, "too many queues in a profile") }
            for q in p.queues {
                try name(q.queue)
                guard (0...255).contains(q.priority) else { throw TandemError(.invalidArgument, "priority out of range") }
            }
            for n in p.concurrency.values where !(0...255).contains(n) { throw TandemError(.invalidArgument, "concurrency out of range") }
        case .putAgent(let d):
            try name(d.id)
            try name(d.name)
            try name(d.routingProfile)
            try skills(d.skills)
        case .putStatus(let n, _): try name(n)
        case .setRegionServing(let r, _): try name(r)
        case .login(let a, let r, let s):
            try name(a)
            try name(r)
            try name(s)
        case .logout(let a), .heartbeat(let a), .hold(let a), .resume(let a), .end(let a), .completeAfterContactWork(let a): try name(a)
        case .setStatus(let a, let s), .accept(let a, let s), .reject(let a, let s):
            try name(a)
            try name(s)
        case .createContact(let n):
            for s in [n.id, n.queue, n.region, n.preferredAgent ?? ""] { try name(s) }
            guard n.attributes.count <= CommandLimits.maxAttributes else { throw TandemError(.tooLarge, "too many attributes") }
            for (k, v) in n.attributes {
                try name(k)
                guard v.utf8.count <= CommandLimits.maxAttributeValueBytes else { throw TandemError(.tooLarge, "attribute value too long") }
            }
            try skills(n.requiredSkills)
        case .transfer(let c, let n, let t):
            for s in [c, n, t.queue, t.agent, t.region] { try name(s) }
        }
        func skills(_ s: [String: UInt8]) throws(TandemError) {
            guard s.count <= CommandLimits.maxSkills else { throw TandemError(.tooLarge, "too many skills") }
            for k in s.keys { try name(k) }
        }
    }
}

// ==== ------------------------------------------------------------------------------------
// MARK: Shared field encodings (commands and snapshots)

extension ByteWriter {
    mutating func optionalString(_ s: String?) {
        bool(s != nil)
        if let s { shortString(s) }
    }

    mutating func optionalU64(_ v: UInt64?) {
        bool(v != nil)
        if let v { u64(v) }
    }

    mutating func attributes(_ a: [String: String]) {
        u16(UInt16(a.count))
        for k in a.keys.sorted() {
            shortString(k)
            blob(Array(a[k]!.utf8))
        }
    }

    mutating func skills(_ s: [String: UInt8]) {
        u16(UInt16(s.count))
        for k in s.keys.sorted() {
            shortString(k)
            u8(s[k]!)
        }
    }

    mutating func settings(_ s: CenterSettings) {
        u64(s.ringTimeoutMs)
        u32(UInt32(clamping: s.missesBeforeNonRoutable))
        u64(s.heartbeatTimeoutMs)
        u64(s.crossRegionDelayMs)
        u64(s.preferredAgentWindowMs)
        u64(s.reofferDelayMs)
        u64(s.endedRetentionMs)
        u64(s.intervalMs)
    }

    mutating func profile(_ p: RoutingProfile) {
        shortString(p.id)
        u16(UInt16(p.queues.count))
        for q in p.queues {
            shortString(q.queue)
            u8(UInt8(clamping: q.priority))
            u64(q.delayMs)
        }
        let channels = p.concurrency.keys.sorted()
        u8(UInt8(channels.count))
        for c in channels {
            u8(c.code)
            u8(UInt8(clamping: p.concurrency[c]!))
        }
    }

    mutating func agentDefinition(_ d: AgentDefinition) {
        shortString(d.id)
        shortString(d.name)
        shortString(d.routingProfile)
        skills(d.skills)
        u64(d.acwTimeoutMs)
    }
}

extension ByteReader {
    mutating func optionalString() throws(TandemError) -> String? { try bool() ? try shortString() : nil }
    mutating func optionalU64() throws(TandemError) -> UInt64? { try bool() ? try u64() : nil }

    mutating func channel() throws(TandemError) -> Channel {
        guard let c = Channel(code: try u8()) else { throw TandemError(.malformed, "unknown channel") }
        return c
    }

    mutating func statusType() throws(TandemError) -> StatusType {
        guard let t = StatusType(code: try u8()) else { throw TandemError(.malformed, "unknown status type") }
        return t
    }

    mutating func attributes() throws(TandemError) -> [String: String] {
        let n = try count16(limit: CommandLimits.maxAttributes, minElementSize: 5)
        var a: [String: String] = [:]
        for _ in 0..<n {
            let k = try shortString()
            guard let v = String(validating: try blob(limit: CommandLimits.maxAttributeValueBytes), as: UTF8.self) else {
                throw TandemError(.malformed, "attribute value is not UTF-8")
            }
            a[k] = v
        }
        guard a.count == n else { throw TandemError(.malformed, "an attribute named twice") }
        return a
    }

    mutating func skills() throws(TandemError) -> [String: UInt8] {
        let n = try count16(limit: CommandLimits.maxSkills, minElementSize: 2)
        var s: [String: UInt8] = [:]
        for _ in 0..<n { s[try shortString()] = try u8() }
        guard s.count == n else { throw TandemError(.malformed, "a skill named twice") }
        return s
    }

    mutating func settings() throws(TandemError) -> CenterSettings {
        var s = CenterSettings()
        s.ringTimeoutMs = try u64()
        s.missesBeforeNonRoutable = Int(try u32())
        s.heartbeatTimeoutMs = try u64()
        s.crossRegionDelayMs = try u64()
        s.preferredAgentWindowMs = try u64()
        s.reofferDelayMs = try u64()
        s.endedRetentionMs = try u64()
        s.intervalMs = try u64()
        return s
    }

    mutating func profile() throws(TandemError) -> RoutingProfile {
        let id = try shortString()
        let n = try count16(limit: CommandLimits.maxProfileQueues, minElementSize: 10)
        var queues: [ProfileQueue] = []
        for _ in 0..<n { queues.append(ProfileQueue(queue: try shortString(), priority: Int(try u8()), delayMs: try u64())) }
        let channels = Int(try u8())
        guard channels <= Channel.allCases.count else { throw TandemError(.malformed, "too many channels") }
        var concurrency: [Channel: Int] = [:]
        for _ in 0..<channels { concurrency[try channel()] = Int(try u8()) }
        guard concurrency.count == channels else { throw TandemError(.malformed, "a channel named twice") }
        return RoutingProfile(id: id, queues: queues, concurrency: concurrency)
    }

    mutating func agentDefinition() throws(TandemError) -> AgentDefinition {
        AgentDefinition(
            id: try shortString(), name: try shortString(), routingProfile: try shortString(), skills: try skills(), acwTimeoutMs: try u64()
        )
    }
}
