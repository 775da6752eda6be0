import Testing

@testable import ContactCenter

/// A center and a clock: each command is applied at the harness's time, which tests move.
struct Center {
    var state: ContactCenterState
    var t: UInt64 = 1_700_000_000_000

    /// Settings whose heartbeat timeout (an hour) stays out of tests about something else.
    static var quiet: CenterSettings {
        var s = CenterSettings()
        s.heartbeatTimeoutMs = 3_600_000
        return s
    }

    init(settings: CenterSettings = Center.quiet) {
        state = ContactCenterState(settings: settings)
    }

    /// Applies a command that must be accepted, `after` ms later than the previous one.
    @discardableResult
    mutating func ok(_ command: Command, after ms: UInt64 = 0, sourceLocation: SourceLocation = #_sourceLocation) -> [CenterEvent] {
        t += ms
        switch state.apply(command, at: t) {
        case .success(let events): return events
        case .failure(let refusal):
            Issue.record("\(command) refused: \(refusal)", sourceLocation: sourceLocation)
            return []
        }
    }

    /// Applies a command that must be refused, and checks that nothing changed.
    mutating func refused(_ command: Command, sourceLocation: SourceLocation = #_sourceLocation) -> Refusal? {
        let before = state.encodedSnapshot()
        switch state.apply(command, at: t) {
        case .success:
            Issue.record("\(command) was accepted", sourceLocation: sourceLocation)
            return nil
        case .failure(let refusal):
            #expect(state.encodedSnapshot() == before, "a refusal changed the state", sourceLocation: sourceLocation)
            return refusal
        }
    }

    /// Queues billing (20 s service level) and support; profile `default` serves billing at
    /// priority 1 with voice 1 and chat 3.
    mutating func standardDefinitions() {
        ok(.putQueue(QueueDefinition(id: "billing", serviceLevelMs: 20_000)))
        ok(.putQueue(QueueDefinition(id: "support", serviceLevelMs: 20_000)))
        ok(
            .putRoutingProfile(
                RoutingProfile(id: "default", queues: [ProfileQueue(queue: "billing", priority: 1)], concurrency: [.voice: 1, .chat: 3])))
    }

    /// Defines an agent on `profile` and signs it in Available in `region`.
    mutating func agent(
        _ id: String, region: String = "us-east-1", profile: String = "default", skills: [String: UInt8] = [:], after ms: UInt64 = 0
    ) {
        ok(.putAgent(AgentDefinition(id: id, routingProfile: profile, skills: skills)), after: ms)
        ok(.login(agent: id, region: region, status: BuiltInStatus.available))
    }

    @discardableResult
    mutating func call(
        _ id: String, queue: String = "billing", channel: Channel = .voice, region: String = "us-east-1", skills: [String: UInt8] = [:],
        preferred: String? = nil, after ms: UInt64 = 0
    ) -> [CenterEvent] {
        ok(
            .createContact(
                NewContact(id: id, channel: channel, queue: queue, region: region, requiredSkills: skills, preferredAgent: preferred)),
            after: ms)
    }

    func state(of contact: String) -> ContactState? { state.contact(contact)?.state }
    func agentOf(_ contact: String) -> String? { state.contact(contact)?.agent }
}

extension Array where Element == CenterEvent {
    var offers: [Offer] { compactMap { if case .offered(let o) = $0 { o } else { nil } } }
    var contactEvents: [ContactEvent] { compactMap { if case .contact(let e) = $0 { e } else { nil } } }
    var agentEvents: [AgentEvent] { compactMap { if case .agent(let e) = $0 { e } else { nil } } }
    func contactTypes(_ id: String) -> [ContactEventType] { contactEvents.filter { $0.contact.id == id }.map(\.type) }
}
