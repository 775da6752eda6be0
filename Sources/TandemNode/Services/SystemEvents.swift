import Foundation
import Routing
import TandemCore
import Transport

/// The stream `_events`: what the cluster did, one JSON record per event (`"type"` such as
/// `member.dead`, `route.changed`, `region.drained`, `processor.deadLettered`, plus `id`, `time`,
/// `node` and the event's fields), read through the ordinary stream API or consumed by a
/// processor — how a user runs "on failover, call my platform's API" without polling.
///
/// Events every node observes (membership, routes) are written once, by the leader of `_events`:
/// every node keeps what it observed for `keep`, and the leader writes what it holds. When
/// leadership moves, the new leader writes what it observed in the last `keep` — so an event seen
/// just before the move is not lost, and may come twice; the `id` (a hash of the type and fields,
/// the same on every node that saw the same change) tells duplicates apart. Events only one node
/// sees (a processor's dead letters) are written by that node at once.
final class SystemEvents {
    static let keep: Duration = .seconds(10)
    private let loop: EventLoop
    private let streams: Streams
    var selfName = ""
    private var held: [(at: Instant, id: String, written: Bool, record: [UInt8])] = []
    private var creating = false
    private(set) var written = 0
    private(set) var writeFailures = 0

    init(loop: EventLoop, streams: Streams) {
        self.loop = loop
        self.streams = streams
    }

    func start() {}

    /// Records an event; `everyNode` false: one the whole cluster observes (written by the leader).
    func emit(_ type: String, _ fields: [(String, JSON)], everyNode: Bool = false) {
        guard !streams.isWitness else { return }
        let id = String(stableHash64(Array((type + JSON.object(fields).serialized).utf8)), radix: 16)
        let body = JSON.object(
            [("type", .string(type)), ("id", .string(id)), ("time", .number("\(Tables.wallMs())")), ("node", .string(selfName))] + fields)
        let record = StreamRecord.encode(key: type, data: Array(body.serialized.utf8))
        if everyNode {
            put([record]) { _ in }
            return
        }
        held.append((loop.now, id, false, record))
        flush()
    }

    /// Every 100 ms: creates `_events` if no node has, writes held events if this node leads it,
    /// forgets what is older than `keep`.
    func tick() {
        let now = loop.now
        held.removeAll { now - $0.at > SystemEvents.keep }
        ensureStream()
        flush()
    }

    private func ensureStream() {
        guard streams.definitions[Self.stream] == nil, !creating, !streams.isWitness else { return }
        // One node creates it: the first by name among the live members that serve.
        let candidates = streams.members().filter { $0.alive && !$0.left && $0.role != .witness }.map(\.id.rawValue) + [selfName]
        guard candidates.min() == selfName else { return }
        creating = true
        streams.createSystemStream(Self.stream, partitions: 1, retentionHours: 168) { [weak self] _ in self?.creating = false }
    }

    static let stream = "_events"

    private func flush() {
        guard streams.leads(Self.stream, 0) else { return }
        let due = held.indices.filter { !held[$0].written }
        guard !due.isEmpty else { return }
        for i in due { held[i].written = true }
        let ids = Set(due.map { held[$0].id })
        put(due.map { held[$0].record }) { [weak self] ok in
            guard let self, !ok else { return }
            // Not written: hold them again for the next flush.
            for i in self.held.indices where ids.contains(self.held[i].id) { self.held[i].written = false }
        }
    }

    private func put(_ records: [[UInt8]], _ done: @escaping (Bool) -> Void) {
        streams.putRecords(Self.stream, records.map { (key: "event", hashKey: nil, record: $0) }) { [weak self] result in
            let ok = (try? result.get())?.allSatisfy { if case .success = $0.result { true } else { false } } ?? false
            if ok { self?.written += records.count } else { self?.writeFailures += 1 }
            done(ok)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: What is observed

    /// A route table replaced another: `route.changed` with both fingerprints, what changed and
    /// the regions now eligible; `region.drained`/`region.undrained` when the drain set moved.
    func routeChanged(from old: RouteTable, to new: RouteTable) {
        var reasons: [JSON] = []
        if old.inputs.health != new.inputs.health { reasons.append(.string("health")) }
        if old.inputs.split != new.inputs.split { reasons.append(.string("split")) }
        if old.inputs.edges != new.inputs.edges { reasons.append(.string("edges")) }
        if old.inputs.capacity != new.inputs.capacity { reasons.append(.string("capacity")) }
        if old.inputs.regionRTT != new.inputs.regionRTT { reasons.append(.string("rtt")) }
        let regions: [JSON] = new.regions.enumerated().map { i, r in
            .object([
                ("region", .string(r)), ("eligible", .bool(new.eligible[i])),
                ("weight", .number("\(new.inputs.split.weights[r] ?? 1)")),
                ("nodes", .array((new.inputs.health.nodes[r] ?? []).map { .string($0) }))
            ])
        }
        emit(
            "route.changed",
            [
                ("from", .string(fingerprintText(old.fingerprint))), ("to", .string(fingerprintText(new.fingerprint))),
                ("reason", .array(reasons)), ("regions", .array(regions))
            ])
        for r in new.inputs.split.drained.subtracting(old.inputs.split.drained).sorted() {
            emit("region.drained", [("region", .string(r))])
        }
        for r in old.inputs.split.drained.subtracting(new.inputs.split.drained).sorted() {
            emit("region.undrained", [("region", .string(r))])
        }
    }
}
