import TandemCore

/// One member as the node's membership view shows it (this node included), reduced to what
/// routing needs. Routing does not import Membership: the shell maps its status and role here.
public struct RouteMember: Hashable, Sendable {
    public enum Status: Hashable, Sendable {
        case alive, suspect, dead, left

        /// Could take contacts as far as SWIM knows: a suspicion is not yet a failure.
        public var isLive: Bool { self == .alive || self == .suspect }
    }

    public var name: String
    public var region: String
    public var status: Status
    /// A witness votes and counts toward a majority, but takes no contacts.
    public var witness: Bool
    /// When this node learned that the member came back (restarted, or refuted its death),
    /// whether or not it saw the member dead: a hold-down starts then.
    public var returnedAt: Instant?

    public init(name: String, region: String, status: Status, witness: Bool = false, returnedAt: Instant? = nil) {
        self.name = name
        self.region = region
        self.status = status
        self.witness = witness
        self.returnedAt = returnedAt
    }
}

/// The health view routing uses, assembled from the membership view and each node's published
/// instance health, with hold-down (`HealthTracker`) and the minority rule. Pure: the shell
/// feeds it what it sees and the time.
public struct RouteView: Sendable {
    /// Remembers each node's serving history across observations (the "previous view").
    public private(set) var tracker: HealthTracker
    /// The latest observation found this node on the minority side: it kept its previous view.
    public private(set) var minority = false

    public init(holdDown: Duration, selfName: String, selfRegion: String, selfReturning: Bool, now: Instant) {
        tracker = HealthTracker(
            holdDown: holdDown, selfName: selfName, selfRegion: selfRegion,
            selfReturning: selfReturning, now: now)
    }

    /// Takes one membership view. `instanceHealthy` holds the instance health each node published
    /// (a node with no entry counts as healthy).
    ///
    /// The minority rule: with three or more members that have not left (witnesses and dead ones
    /// included), a node that sees at most half of them `alive`, itself included, is on the
    /// minority side of a partition (or alone), where every other node looks dead. It ignores the
    /// observation and keeps its previous view, so the two sides of a partition do not both take
    /// all contacts; the majority side fails the minority over (`HealthTracker.inMinority`).
    /// Only `alive` counts (suspects are still served): across a partition the others turn
    /// suspect within a probe round of each other, long before the first is declared dead, so
    /// the minority freezes before it has removed anyone.
    public mutating func observe(_ members: [RouteMember], instanceHealthy: [String: Bool], now: Instant) {
        let known = members.filter { $0.status != .left }
        minority = HealthTracker.inMinority(live: known.filter { $0.status == .alive }.count, known: known.count)
        // Returns count even in a minority: the majority holds a returned node down from when
        // it sees it back, and a minority that froze its view through the node's death and
        // return must hold it down from then too, not serve it.
        for m in members where !m.witness {
            if let at = m.returnedAt { tracker.returned(m.name, at: at) }
        }
        guard !minority else { return }
        // Witnesses never take contacts, so they are not routing nodes at all (not even "down"
        // ones); left members stay in, as not serving, so they are held down if they return.
        var view: [NodeHealth] = []
        for m in members where !m.witness {
            view.append(
                NodeHealth(
                    name: m.name, region: m.region, serving: m.status.isLive && instanceHealthy[m.name] != false, dead: !m.status.isLive))
        }
        tracker.observe(view, now: now)
    }

    /// This node rejoined after a restart, or refuted its own death, at `at`: the others hold
    /// it down from then, and so does it (`HealthTracker.holdSelfDown`).
    public mutating func selfReturned(at: Instant) { tracker.holdSelfDown(since: at) }

    /// Nodes that may take contacts now, by region.
    public func health(now: Instant) -> HealthView { tracker.view(now: now) }
}
