import ContactCenter
import Foundation
import TandemCore

/// The contact center's event streams, `_agent-events` (LOGIN, LOGOUT, STATE_CHANGE with the
/// previous and current snapshot, HEART_BEAT) and `_contact-events` (INITIATED, QUEUED,
/// CONNECTED_TO_AGENT, HOLD, RESUME, TRANSFERRED, DISCONNECTED, ACW_COMPLETED, MISSED,
/// REJECTED): one JSON record per event, keyed by agent or contact, so processors and outside
/// readers see what Amazon Connect's agent and contact event streams would show.
///
/// Written at least once, by the `_cc` leader: every replica keeps the events its apply of the
/// committed log produced (the same on every replica, with the same ids `<index>-<position>`),
/// the leader writes those after the last *mark*, and once written proposes a mark (a `_cc`
/// record keyed `mark` holding the index) so every replica forgets them. A new leader writes
/// what it holds after the last mark: an event is never skipped, and may come twice under the
/// same `eventId`, which readers deduplicate on. Both streams are created on first use.
final class CenterEvents {
    static let agentStream = "_agent-events"
    static let contactStream = "_contact-events"
    /// Events held at most (a leader that cannot write for long drops the oldest, counted).
    static let keep = 200_000
    static let batch = 500

    struct Held {
        var index: UInt64
        var stream: String
        var key: String
        var record: [UInt8]
    }

    private(set) var held: [Held] = []
    /// The leader's progress: how many of `held` it has written, in which term.
    private var sent = 0
    private var sentTerm: UInt64 = 0
    private var writing = false
    private var creating = false
    private var markProposedAt: UInt64 = 0
    private(set) var written = 0
    private(set) var writeFailures = 0
    private(set) var dropped = 0

    /// Keeps the events of entry `index` (called on every replica as it applies).
    func note(_ events: [CenterEvent], index: UInt64) {
        for (position, event) in events.enumerated() {
            let id = "\(index)-\(position)"
            switch event {
            case .agent(let e):
                held.append(Held(index: index, stream: Self.agentStream, key: e.agentId, record: Self.record(e, id: id)))
            case .contact(let e):
                held.append(Held(index: index, stream: Self.contactStream, key: e.contact.id, record: Self.record(e, id: id)))
            default: break
            }
        }
        if held.count > Self.keep {
            let excess = held.count - Self.keep
            held.removeFirst(excess)
            sent = max(0, sent - excess)
            dropped += excess
        }
    }

    /// A mark was applied: the events of entries through `index` are in the streams.
    func marked(through index: UInt64) {
        let n = held.prefix { $0.index <= index }.count
        held.removeFirst(n)
        sent = max(0, sent - n)
    }

    /// Forgets everything (the log was re-created).
    func reset() {
        held = []
        sent = 0
    }

    /// On the leader, every 100 ms: writes the next batch; proposes a mark (at most once a
    /// second) for what is written. `propose` carries the mark's record into `_cc`.
    func leaderRound(streams: Streams, term: UInt64, nowMs: UInt64, propose: (UInt64) -> Void) {
        if sentTerm != term {
            sentTerm = term
            sent = 0
        }
        guard !held.isEmpty else { return }
        guard streams.definitions[Self.agentStream] != nil, streams.definitions[Self.contactStream] != nil else {
            return create(streams)
        }
        // Entries wholly written: mark them.
        if sent > 0, nowMs >= markProposedAt + 1_000 {
            let through = sent == held.count ? held[sent - 1].index : held[sent].index - 1
            if through >= held[0].index {
                markProposedAt = nowMs
                propose(through)
            }
        }
        guard !writing, sent < held.count else { return }
        writing = true
        let slice = held[sent..<min(held.count, sent + Self.batch)]
        let count = slice.count
        var remaining = 2
        var ok = true
        let finish: (Bool) -> Void = { [weak self] success in
            guard let self else { return }
            ok = ok && success
            remaining -= 1
            guard remaining == 0 else { return }
            self.writing = false
            if ok && self.sentTerm == term {
                self.sent = min(self.held.count, self.sent + count)
                self.written += count
            } else if !ok {
                self.writeFailures += 1
            }
        }
        for stream in [Self.agentStream, Self.contactStream] {
            let records = slice.filter { $0.stream == stream }.map { (key: $0.key, hashKey: UInt128?.none, record: $0.record) }
            guard !records.isEmpty else {
                finish(true)
                continue
            }
            streams.putRecords(stream, records) { result in
                let success = (try? result.get())?.allSatisfy { if case .success = $0.result { true } else { false } } ?? false
                finish(success)
            }
        }
    }

    private func create(_ streams: Streams) {
        guard !creating else { return }
        creating = true
        var remaining = 2
        for stream in [Self.agentStream, Self.contactStream] {
            streams.createSystemStream(stream, partitions: 1, retentionHours: 168) { [weak self] _ in
                remaining -= 1
                if remaining == 0 { self?.creating = false }
            }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Records

    static func record(_ e: AgentEvent, id: String) -> [UInt8] {
        var fields: [(String, JSON)] = [
            ("eventId", .string(id)), ("eventType", .string(e.type.rawValue)), ("timestamp", JSON(e.at)),
            ("region", e.region.map { .string($0) } ?? .null), ("schemaVersion", JSON(contactCenterEventSchemaVersion)),
            ("agentId", .string(e.agentId))
        ]
        if let p = e.previous { fields.append(("previous", snapshot(p))) }
        fields.append(("current", snapshot(e.current)))
        return StreamRecord.encode(key: e.agentId, data: Array(JSON.object(fields).serialized.utf8))
    }

    static func record(_ e: ContactEvent, id: String) -> [UInt8] {
        let c = e.contact
        let fields: [(String, JSON)] = [
            ("eventId", .string(id)), ("eventType", .string(e.type.rawValue)), ("timestamp", JSON(e.at)), ("region", .string(c.region)),
            ("schemaVersion", JSON(contactCenterEventSchemaVersion)), ("contactId", .string(c.id)),
            ("initialContactId", .string(c.initialContactId)), ("previousContactId", c.previousContactId.map { .string($0) } ?? .null),
            ("channel", .string(c.channel.rawValue)), ("initiationMethod", .string(c.initiationMethod.rawValue)),
            ("queue", .string(c.queue)), ("state", .string(c.state.rawValue)),
            ("agent", (e.agentId ?? c.agent).map { .string($0) } ?? .null),
            ("detail", e.detail.map { .string($0) } ?? .null)
        ]
        return StreamRecord.encode(key: c.id, data: Array(JSON.object(fields).serialized.utf8))
    }

    static func snapshot(_ s: AgentSnapshot) -> JSON {
        .object([
            ("status", .string(s.status)), ("statusType", .string(s.statusType.rawValue)), ("statusSince", JSON(s.statusSince)),
            ("nextStatus", s.nextStatus.map { .string($0) } ?? .null), ("region", s.region.map { .string($0) } ?? .null),
            ("routingProfile", .string(s.routingProfile)),
            (
                "contacts",
                .array(
                    s.contacts.map {
                        ["contactId": JSON($0.contactId), "channel": JSON($0.channel.rawValue), "state": JSON($0.state.rawValue)]
                    })
            )
        ])
    }
}
