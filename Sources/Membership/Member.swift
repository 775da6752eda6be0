import TandemCore

/// A member's status in one node's view. The order matters for SWIM's override rules:
/// at the same incarnation `suspect` overrides `alive`, and `dead`/`left` override both.
public enum MemberStatus: UInt8, Sendable, CustomStringConvertible, CaseIterable {
    case alive = 0
    case suspect = 1
    case dead = 2
    /// Left gracefully: it said goodbye itself, so nobody retries it.
    case left = 3

    public var description: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .dead: "dead"
        case .left: "left"
        }
    }

    /// Still in the cluster: probed, gossiped to, counted in `n`.
    public var isLive: Bool { self == .alive || self == .suspect }
}

/// What a node is for. Carried on the wire as its raw value; anything else is malformed.
public enum NodeRole: String, Hashable, Sendable {
    /// A full node: serves clients, holds table and stream replicas, takes contacts.
    case voter
    /// Votes in Raft and counts toward a partition's majority; serves no clients, takes no contacts.
    case witness
}

/// What a member says about itself, carried in every `alive` message and push-pull entry.
public struct MemberMeta: Hashable, Sendable {
    /// The region this node serves (`us-east-1`).
    public var region: String
    /// `host:port` of its HTTP API, so any node can point a client at any other.
    public var api: String
    public var role: NodeRole
    /// The incarnation at which this node last came back (0: never): its restart, or its
    /// refutation of a death notice. Others hold a returned node down in routing from when they
    /// first see this number rise — whether or not they themselves applied its death, so that
    /// every node holds it down at about the same time (chaos check seed 44933, 30 min at 10 %
    /// loss: nodes that never applied a death, because the refutation outran the notice or
    /// their view was frozen as a minority, served the returned node for 8–10 s while the
    /// others held it down).
    public var returned: UInt64

    public init(region: String, api: String, role: NodeRole = .voter, returned: UInt64 = 0) {
        self.region = region
        self.api = api
        self.role = role
        self.returned = returned
    }
}

/// One member as gossiped: the unit of push-pull state and of `alive` updates.
public struct MemberState: Hashable, Sendable {
    public var name: String
    /// `host:port` of its gossip (UDP) and peer (TCP) port.
    public var address: String
    public var incarnation: UInt64
    public var status: MemberStatus
    public var meta: MemberMeta

    public init(name: String, address: String, incarnation: UInt64, status: MemberStatus, meta: MemberMeta) {
        self.name = name
        self.address = address
        self.incarnation = incarnation
        self.status = status
        self.meta = meta
    }
}

/// A member as a node keeps it: the gossiped state plus local bookkeeping.
public struct Member: Sendable {
    public var state: MemberState
    /// When `state.status` last changed in this view (for reaping and the dead-retry window).
    public var statusChangedAt: Instant
    /// The member's last reported network coordinate, from its acks.
    public var coordinate: VivaldiCoordinate?
    /// When this node saw the member's `meta.returned` rise (nil: not since it first saw it).
    public var returnedAt: Instant?

    public var name: String { state.name }
    public var status: MemberStatus { state.status }
    public var incarnation: UInt64 { state.incarnation }
}
