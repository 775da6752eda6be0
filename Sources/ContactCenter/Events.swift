// What applying a command tells the world: the records of `agent-events` and `contact-events`
// (Amazon Connect's event types), offers for agents' long-polls, and closed metric intervals for
// the historical table. The core has no log index, so the shell names each event
// `<log index>-<position in the list>`: the same id on every replica, and a replay of an entry
// (a new leader re-emitting) produces the same ids, which consumers deduplicate on.

/// Version of the event records' shape, carried in every record the shell writes.
public let contactCenterEventSchemaVersion = 1

public enum AgentEventType: String, Sendable {
    case login = "LOGIN"
    case logout = "LOGOUT"
    case stateChange = "STATE_CHANGE"
    case heartbeat = "HEART_BEAT"
}

public enum ContactEventType: String, Sendable {
    case initiated = "INITIATED"
    case queued = "QUEUED"
    case connectedToAgent = "CONNECTED_TO_AGENT"
    case hold = "HOLD"
    case resume = "RESUME"
    case transferred = "TRANSFERRED"
    case disconnected = "DISCONNECTED"
    case afterContactWorkCompleted = "ACW_COMPLETED"
    case missed = "MISSED"
    case rejected = "REJECTED"
}

/// One contact as an agent snapshot shows it.
public struct AgentContactSnapshot: Sendable, Equatable {
    public var contactId: String
    public var channel: Channel
    public var state: ContactState
}

/// An agent as `STATE_CHANGE` shows it before and after (Connect's previous/current snapshots).
public struct AgentSnapshot: Sendable, Equatable {
    public var status: String
    public var statusType: StatusType
    public var statusSince: UInt64
    public var nextStatus: String?
    public var region: String?
    public var routingProfile: String
    public var contacts: [AgentContactSnapshot]
}

public struct AgentEvent: Sendable, Equatable {
    public var type: AgentEventType
    public var agentId: String
    public var at: UInt64
    /// The region the event happened in: where the agent is (or was) signed in.
    public var region: String?
    public var previous: AgentSnapshot?
    public var current: AgentSnapshot
}

public struct ContactEvent: Sendable, Equatable {
    public var type: ContactEventType
    public var at: UInt64
    /// The contact after the change.
    public var contact: Contact
    /// The agent concerned (the one that missed, rejected, was connected…).
    public var agentId: String?
    /// For TRANSFERRED: the new contact's id. For DISCONNECTED: `ABANDONED` (the caller hung up
    /// before an agent answered) or `DISCONNECTED` (the API's `end` does not say which side hung
    /// up, so Connect's customer/agent disconnect reasons are not told apart).
    public var detail: String?
}

/// A contact offered to an agent: what `GET /v1/agents/{id}/offers` returns.
public struct Offer: Sendable, Equatable {
    public var contactId: String
    public var agentId: String
    public var channel: Channel
    public var queue: String
    public var ringDeadline: UInt64
}

/// Totals of one queue in one region over one interval: a row of the historical table.
public struct IntervalTotals: Sendable, Equatable {
    public var queue: String
    public var region: String
    public var enqueued = 0
    public var answered = 0
    public var answeredWithinServiceLevel = 0
    public var abandoned = 0
    public var handled = 0
    public var handleTimeMs: UInt64 = 0
    public var answerWaitMs: UInt64 = 0

    public init(queue: String, region: String) {
        self.queue = queue
        self.region = region
    }
}

public enum CenterEvent: Sendable, Equatable {
    case agent(AgentEvent)
    case contact(ContactEvent)
    case offered(Offer)
    /// The offer is gone without an answer (the caller hung up, the agent signed out or missed).
    case offerWithdrawn(contactId: String, agentId: String)
    /// The interval `[start, end)` closed; one row per (queue, region) that saw any contact.
    case intervalClosed(start: UInt64, end: UInt64, totals: [IntervalTotals])
}
