import TandemCore

/// One node as the membership view shows it, reduced to what routing needs.
public struct NodeHealth: Hashable, Sendable {
    public var name: String
    public var region: String
    /// Could take contacts: alive or suspect in SWIM (a suspicion is not yet a failure), its
    /// contact-center instance healthy, and not a witness.
    public var serving: Bool
    /// Out because membership holds it dead (or left) in its view, rather than for its instance
    /// health or missing from the view: when it is live again, its hold-down starts with the
    /// return membership announces (`HealthTracker.returned`), not with this observation.
    public var dead: Bool

    public init(name: String, region: String, serving: Bool, dead: Bool = false) {
        self.name = name
        self.region = region
        self.serving = serving
        self.dead = dead
    }
}

/// Health with hold-down: a node that stops serving is out at once; a node that comes back is in
/// only after it has served continuously for `holdDown`, so a flapping node does not drag
/// contacts back and forth.
///
/// A node this tracker has never seen before is in at once (a new cluster, or a node joining
/// for the first time, has nothing to hold down). The tracker's own node holds itself down
/// whenever the others see it come back, so that it and they agree: from its start when it
/// restarts (`selfReturning`), and again from `holdSelfDown(since:)` — when it rejoins after the
/// restart, or refutes its own death (after a stall, a partition, a false death), which is when
/// the others see it return and start their hold-down of it.
///
/// Pure: time comes in as `now`.
public struct HealthTracker: Sendable {
    public let holdDown: Duration
    struct Entry: Sendable {
        var region: String
        var serving: Bool
        /// When it last started serving; nil for "since before we knew it" (no hold-down).
        var since: Instant?
        /// The last return membership reported (`returned(_:at:)`), so each counts once.
        var returnedAt: Instant?
        /// Out because membership held it dead in the view (`NodeHealth.dead`).
        var dead = false
    }
    private(set) var entries: [String: Entry] = [:]
    private let selfName: String?
    private let selfRegion: String

    public init(holdDown: Duration, selfName: String? = nil, selfRegion: String = "", selfReturning: Bool = false, now: Instant) {
        self.holdDown = holdDown
        self.selfName = selfName
        self.selfRegion = selfRegion
        if selfReturning { holdSelfDown(since: now) }
    }

    /// The others see this node return at `since` (it rejoined after a restart, or refuted its
    /// own death): it holds itself down from then, as they do. Without it, a node back from a
    /// stall or a partition took its own contacts at once while every other node sent them
    /// elsewhere for the hold-down (chaos check seed 973408: breaks of 2.9–6.7 s, the longer ones
    /// where a node flapped under load and each flap restarted the others' hold-down only).
    public mutating func holdSelfDown(since: Instant) {
        guard let selfName else { return }
        let region = entries[selfName]?.region ?? selfRegion
        entries[selfName] = Entry(region: region, serving: true, since: since)
    }

    /// Membership says `name` came back at `at` (it restarted, or refuted its death): held down
    /// from then, whether or not this node saw it stop serving.
    public mutating func returned(_ name: String, at: Instant) {
        guard var e = entries[name], e.returnedAt != at else { return }
        e.returnedAt = at
        if e.since.map({ $0 < at }) ?? true { e.since = at }
        entries[name] = e
    }

    /// Takes the current membership view. Nodes missing from it (forgotten by SWIM) count as not
    /// serving, and are remembered, so they are held down when they return.
    public mutating func observe(_ nodes: [NodeHealth], now: Instant) {
        var seen = Set<String>()
        for n in nodes {
            seen.insert(n.name)
            guard var e = entries[n.name] else {
                entries[n.name] = Entry(region: n.region, serving: n.serving, since: nil)
                continue
            }
            e.region = n.region
            // Live again after a death this node applied: the hold-down is the return's, which
            // the member announces (`returned`) and every node counts from when it hears it. A
            // node that applied a stale death (its notice crossed the refutation) sees the member
            // live again with no return announced, and the member does not hold itself down:
            // holding it here alone broke agreement for a hold-down (chaos check seed 973408,
            // 600 s: 7.0 s after `kill r3`).
            if n.serving && !e.serving && !e.dead { e.since = now }
            e.serving = n.serving
            e.dead = n.dead
            entries[n.name] = e
        }
        for (name, e) in entries where !seen.contains(name) && (e.serving || e.dead) {
            entries[name]!.serving = false
            entries[name]!.dead = false  // forgotten: held down when it shows again
        }
    }

    /// True when this node should not trust its own view to fail others over: with three or more
    /// members (e.g. two regions and a witness), a node that sees at most half of them live,
    /// itself included, is on the minority side of a partition (or alone), where every other
    /// node looks dead. It then keeps its last view, so the two sides of a partition do not both
    /// take all contacts; the majority side fails the minority over. `known` counts members that
    /// have not left (dead ones included, until membership forgets them).
    public static func inMinority(live: Int, known: Int) -> Bool { known >= 3 && live * 2 <= known }

    /// Nodes that may take contacts now, by region (every region the tracker knows appears).
    public func view(now: Instant) -> HealthView {
        var nodes: [String: [String]] = [:]
        for (name, e) in entries {
            if nodes[e.region] == nil { nodes[e.region] = [] }
            if e.serving && e.since.map({ now - $0 >= holdDown }) ?? true { nodes[e.region]!.append(name) }
        }
        for r in nodes.keys { nodes[r]!.sort() }
        return HealthView(nodes: nodes)
    }

    /// The next time the view changes with no new observation (a hold-down ending), if any.
    public func nextChange(after now: Instant) -> Instant? {
        var next: Instant?
        for e in entries.values where e.serving {
            guard let since = e.since else { continue }
            let at = since + holdDown
            if at > now, next.map({ at < $0 }) ?? true { next = at }
        }
        return next
    }
}
