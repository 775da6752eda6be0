// The commands of the contact center: each is one entry of the `_cc` log. Ids (a new contact's,
// a transfer's) come in the command, chosen by the node that took the request, so applying a
// command never invents anything and every replica ends in the same state.

public struct NewContact: Sendable, Equatable {
    public var id: String
    public var channel: Channel
    public var initiationMethod: InitiationMethod
    public var queue: String
    /// The region the routing decision placed the contact in.
    public var region: String
    public var attributes: [String: String]
    public var requiredSkills: [String: UInt8]
    /// From the customer's profile (a CRDT table the node reads before proposing): the
    /// preferred or last agent. An agent this center does not know is ignored, not refused: a
    /// stale profile must not fail a call.
    public var preferredAgent: String?

    public init(
        id: String, channel: Channel, initiationMethod: InitiationMethod = .inbound, queue: String, region: String,
        attributes: [String: String] = [:], requiredSkills: [String: UInt8] = [:], preferredAgent: String? = nil
    ) {
        self.id = id
        self.channel = channel
        self.initiationMethod = initiationMethod
        self.queue = queue
        self.region = region
        self.attributes = attributes
        self.requiredSkills = requiredSkills
        self.preferredAgent = preferredAgent
    }
}

/// Where a transfer goes: a queue (in the contact's region or another), or one agent (through
/// the contact's queue unless a queue is named).
public struct TransferTarget: Sendable, Equatable {
    public var queue: String?
    public var agent: String?
    public var region: String?

    public init(queue: String? = nil, agent: String? = nil, region: String? = nil) {
        self.queue = queue
        self.agent = agent
        self.region = region
    }
}

public enum Command: Sendable, Equatable {
    // Definitions
    case putSettings(CenterSettings)
    case putQueue(QueueDefinition)
    case putRoutingProfile(RoutingProfile)
    case putAgent(AgentDefinition)
    /// Adds or changes a status an agent may set (built-ins cannot change).
    case putStatus(name: String, type: StatusType)
    /// A region's instance stopped (or resumed) serving: its queued contacts may be offered to
    /// any region's agents at once, without waiting for `crossRegionDelayMs`.
    case setRegionServing(region: String, serving: Bool)

    // Agents
    case login(agent: String, region: String, status: String)
    case logout(agent: String)
    case setStatus(agent: String, status: String)
    case heartbeat(agent: String)

    // Contacts
    case createContact(NewContact)
    case accept(contact: String, agent: String)
    case reject(contact: String, agent: String)
    case hold(contact: String)
    case resume(contact: String)
    case transfer(contact: String, newContactId: String, to: TransferTarget)
    /// The caller or the agent hung up: a queued or ringing contact is abandoned, a connected
    /// one goes to after-contact work.
    case end(contact: String)
    case completeAfterContactWork(contact: String)

    /// Time passed: ring timeouts, missed heartbeats, ACW timeouts, delays that ran out. The
    /// leader proposes one periodically; its time is the entry's.
    case tick
}
