import TandemCore

// The contact center's nouns, named as Amazon Connect names them where it has a name. Plain
// values: the rules that change them are in `ContactCenterState.swift`.

/// A media channel. Concurrency is counted per channel (`RoutingProfile.concurrency`).
public enum Channel: String, CaseIterable, Sendable, Comparable, Hashable {
    case voice = "VOICE"
    case chat = "CHAT"
    case task = "TASK"

    public static func < (a: Channel, b: Channel) -> Bool { a.code < b.code }

    /// Parses a channel name from the API: an unknown one is a 400.
    public static func named(_ name: String) -> Result<Channel, Refusal> {
        Channel(rawValue: name).map { .success($0) } ?? .failure(.badRequest("unknown channel \(name)"))
    }

    var code: UInt8 {
        switch self {
        case .voice: 0
        case .chat: 1
        case .task: 2
        }
    }

    init?(code: UInt8) {
        switch code {
        case 0: self = .voice
        case 1: self = .chat
        case 2: self = .task
        default: return nil
        }
    }

    /// Amazon Connect's limits: one voice call; chats and tasks up to 10 at once.
    public var maxConcurrency: Int { self == .voice ? 1 : 10 }
}

/// Amazon Connect's three status types: only a ROUTABLE status receives contacts.
public enum StatusType: String, Sendable, Hashable {
    case routable = "ROUTABLE"
    case custom = "CUSTOM"
    case offline = "OFFLINE"

    var code: UInt8 {
        switch self {
        case .routable: 0
        case .custom: 1
        case .offline: 2
        }
    }

    init?(code: UInt8) {
        switch code {
        case 0: self = .routable
        case 1: self = .custom
        case 2: self = .offline
        default: return nil
        }
    }
}

/// Built-in status names. `Missed` is where an agent lands after `missesBeforeNonRoutable`
/// unanswered offers in a row (Connect shows a system state of that name).
public enum BuiltInStatus {
    public static let available = "Available"
    public static let offline = "Offline"
    public static let missed = "Missed"
    static let all: [String: StatusType] = [available: .routable, offline: .offline, missed: .custom]
}

public enum InitiationMethod: String, Sendable, Hashable, CaseIterable {
    case inbound = "INBOUND"
    case outbound = "OUTBOUND"
    case transfer = "TRANSFER"
    case queueTransfer = "QUEUE_TRANSFER"
    case callback = "CALLBACK"
    case api = "API"

    var code: UInt8 { UInt8(InitiationMethod.allCases.firstIndex(of: self)!) }
    init?(code: UInt8) {
        guard Int(code) < InitiationMethod.allCases.count else { return nil }
        self = InitiationMethod.allCases[Int(code)]
    }
}

/// Where a contact is. INCOMING lasts only inside the command that creates it (it is queued in
/// the same step); MISSED and REJECTED are outcomes of one offer, recorded in the contact's
/// steps, after which the contact is QUEUED again — so they are not places a contact rests.
public enum ContactState: String, Sendable, Hashable, CaseIterable {
    case incoming = "INCOMING"
    case queued = "QUEUED"
    /// Offered to one agent, ringing until `ringDeadline` (Connect's CONNECTING).
    case offered = "CONNECTING"
    case connected = "CONNECTED"
    case onHold = "ON_HOLD"
    case afterContactWork = "ACW"
    case ended = "ENDED"

    var code: UInt8 { UInt8(ContactState.allCases.firstIndex(of: self)!) }
    init?(code: UInt8) {
        guard Int(code) < ContactState.allCases.count else { return nil }
        self = ContactState.allCases[Int(code)]
    }

    /// The agent holds the contact and works on it (talk, hold, wrap-up): Connect's "on contact".
    var isActive: Bool { self == .connected || self == .onHold || self == .afterContactWork }
}

/// Timing rules of the whole center. Part of the replicated state (a command changes them), so
/// every replica decides with the same numbers at the same log position.
public struct CenterSettings: Sendable, Equatable {
    /// How long an offer rings before it counts as missed.
    public var ringTimeoutMs: UInt64 = 20_000
    /// Missed offers in a row that set the agent to `Missed` (non-routable).
    public var missesBeforeNonRoutable: Int = 3
    /// No heartbeat for this long signs the agent out (its client is gone).
    public var heartbeatTimeoutMs: UInt64 = 30_000
    /// A contact waits this long for an agent in its own region before any region's agent may
    /// take it (unless its region is not serving: then at once).
    public var crossRegionDelayMs: UInt64 = 10_000
    /// A contact with a preferred agent is offered only to that agent for this long, while that
    /// agent is signed in with a routable status.
    public var preferredAgentWindowMs: UInt64 = 20_000
    /// A contact an agent rejected or missed is not offered to that agent again for this long.
    public var reofferDelayMs: UInt64 = 30_000
    /// Ended contacts stay readable in the state this long (the shell keeps history in a table).
    public var endedRetentionMs: UInt64 = 300_000
    /// Length of a metrics interval (Connect's historical reports use 15 minutes).
    public var intervalMs: UInt64 = 900_000

    public init() {}

    /// What `putSettings` accepts: positive timeouts, an interval of at least a second.
    public var isValid: Bool { ringTimeoutMs > 0 && heartbeatTimeoutMs > 0 && intervalMs >= 1_000 && missesBeforeNonRoutable >= 1 }
}

/// A queue definition: `PUT /v1/queues/{id}`.
public struct QueueDefinition: Sendable, Equatable {
    public var id: String
    /// Answered within this long counts toward the service level.
    public var serviceLevelMs: UInt64
    /// Contacts waiting in the queue, at most (0: no limit).
    public var maxContacts: Int

    public init(id: String, serviceLevelMs: UInt64 = 20_000, maxContacts: Int = 0) {
        self.id = id
        self.serviceLevelMs = serviceLevelMs
        self.maxContacts = maxContacts
    }
}

/// One queue of a routing profile. Lower priority numbers are served first; a contact becomes
/// eligible for this profile's agents once it has waited `delayMs` (Connect's priority and delay).
public struct ProfileQueue: Sendable, Equatable {
    public var queue: String
    public var priority: Int
    public var delayMs: UInt64

    public init(queue: String, priority: Int, delayMs: UInt64 = 0) {
        self.queue = queue
        self.priority = priority
        self.delayMs = delayMs
    }
}

/// `PUT /v1/routing-profiles/{id}`.
public struct RoutingProfile: Sendable, Equatable {
    public var id: String
    public var queues: [ProfileQueue]
    /// Contacts at once per channel; a channel absent here is not handled by the profile.
    public var concurrency: [Channel: Int]

    public init(id: String, queues: [ProfileQueue], concurrency: [Channel: Int] = [.voice: 1]) {
        self.id = id
        // Priority, then name: the order an agent's queues are searched in, the same everywhere.
        self.queues = queues.sorted { ($0.priority, $0.queue) < ($1.priority, $1.queue) }
        self.concurrency = concurrency
    }
}

/// `PUT /v1/agents/{id}`: the agent's configuration (not its session).
public struct AgentDefinition: Sendable, Equatable {
    public var id: String
    public var name: String
    public var routingProfile: String
    /// Skill → proficiency 1…5.
    public var skills: [String: UInt8]
    /// After-contact work ends by itself after this long (0: only when the agent completes it).
    public var acwTimeoutMs: UInt64

    public init(id: String, name: String = "", routingProfile: String, skills: [String: UInt8] = [:], acwTimeoutMs: UInt64 = 0) {
        self.id = id
        self.name = name
        self.routingProfile = routingProfile
        self.skills = skills
        self.acwTimeoutMs = acwTimeoutMs
    }
}

/// An agent: its definition and its session.
public struct Agent: Sendable, Equatable {
    public var definition: AgentDefinition
    /// The region the agent is signed into; nil when signed out.
    public var region: String?
    public var status: String
    public var statusSince: UInt64
    /// A status asked for while on a contact: applied when the agent's last active contact ends.
    /// While it is set the agent receives no new contacts (Connect's rule).
    public var nextStatus: String?
    /// Contact ids the agent holds (offered, connected, on hold, in ACW), sorted.
    public var contacts: [String]
    /// Offers missed in a row.
    public var missedOffers: Int
    public var lastHeartbeat: UInt64
    /// Routing order: the longest idle (smallest) is offered first. Moves to now when the agent
    /// becomes routable, is offered a contact, or finishes one (Connect: handling a contact
    /// drops the agent to the bottom of the list).
    public var idleSince: UInt64

    public var id: String { definition.id }
    public var signedIn: Bool { region != nil }
}

/// One recorded step of a contact: its state (or an offer's outcome) and when.
public struct ContactStep: Sendable, Equatable {
    public var name: String
    public var at: UInt64
    public var agent: String?
}

public struct Contact: Sendable, Equatable {
    public var id: String
    public var initialContactId: String
    public var previousContactId: String?
    public var channel: Channel
    public var initiationMethod: InitiationMethod
    public var state: ContactState
    public var queue: String
    public var agent: String?
    /// The region the contact arrived in (or was transferred to).
    public var region: String
    public var attributes: [String: String]
    /// Skill → minimum proficiency an agent needs.
    public var requiredSkills: [String: UInt8]
    /// The customer's preferred or last agent, offered first for `preferredAgentWindowMs`.
    public var preferredAgent: String?
    /// A transfer to an agent: only this agent may be offered the contact.
    public var targetAgent: String?
    /// Place in line: taken once when the contact is first queued and kept through missed
    /// offers, so a re-queued contact goes back where it was.
    public var position: UInt64
    public var createdAt: UInt64
    public var queuedAt: UInt64
    public var ringDeadline: UInt64?
    public var connectedAt: UInt64?
    public var disconnectedAt: UInt64?
    public var endedAt: UInt64?
    /// Ended before an agent answered.
    public var abandoned: Bool
    public var lastDeclinedBy: String?
    public var declinedAt: UInt64
    /// Steps in order, at most `Contact.maxSteps` (the oldest dropped first after the first).
    public var steps: [ContactStep]

    static let maxSteps = 64

    mutating func record(_ name: String, at: UInt64, agent: String? = nil) {
        if steps.count >= Contact.maxSteps { steps.remove(at: 1) }
        steps.append(ContactStep(name: name, at: at, agent: agent))
    }
}

/// Why a command was refused; the state is exactly as before. `status` is the HTTP status the
/// API answers with.
public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case notFound = "not_found"
        case conflict = "conflict"
        case badRequest = "bad_request"
    }

    public var kind: Kind
    public var message: String
    /// For conflicts: the current state that forbids the transition (a contact's or agent's).
    public var currentState: String?

    public var status: Int {
        switch kind {
        case .notFound: 404
        case .conflict: 409
        case .badRequest: 400
        }
    }

    public var description: String { "\(status) \(message)" + (currentState.map { " (state \($0))" } ?? "") }

    static func notFound(_ what: String, _ id: String) -> Refusal { Refusal(kind: .notFound, message: "unknown \(what) \(id)") }
    static func conflict(_ message: String, state: String) -> Refusal { Refusal(kind: .conflict, message: message, currentState: state) }
    static func badRequest(_ message: String) -> Refusal { Refusal(kind: .badRequest, message: message) }
}
