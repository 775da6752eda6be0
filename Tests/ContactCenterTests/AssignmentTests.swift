import Testing

@testable import ContactCenter

/// Routing rules, from Amazon Connect's documentation where it has one ("How routing works",
/// "Queue priority and delay examples").
@Suite struct AssignmentTests {
    @Test func theLongestIdleAgentIsOfferedTheContact() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-2")
        c.agent("a-1", after: 1_000)  // available later: less idle, though its name sorts first
        let events = c.call("c-1", after: 1_000)
        #expect(events.offers.map(\.agentId) == ["a-2"])
        #expect(events.contactTypes("c-1") == [.initiated, .queued])
        #expect(c.state(of: "c-1") == .offered)
        #expect(c.state.offers(for: "a-2").first?.ringDeadline == c.t + 20_000)
    }

    @Test func handlingAContactDropsTheAgentToTheBottomOfTheList() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        c.agent("a-2", after: 1_000)
        c.call("c-1", after: 1_000)  // a-1, the idlest
        c.ok(.accept(contact: "c-1", agent: "a-1"))
        c.ok(.end(contact: "c-1"), after: 1_000)
        c.ok(.completeAfterContactWork(contact: "c-1"), after: 1_000)
        #expect(c.call("c-2", after: 1_000).offers.map(\.agentId) == ["a-2"])
    }

    /// Connect, example 1: Sales priority 1, Support priority 2, both delay 0 — support contacts
    /// reach these agents only when no sales contact waits.
    @Test func aHigherPriorityQueueIsServedFirstEvenWhenItsContactIsYounger() {
        var c = Center()
        c.standardDefinitions()
        c.ok(
            .putRoutingProfile(
                RoutingProfile(
                    id: "sales", queues: [ProfileQueue(queue: "billing", priority: 1), ProfileQueue(queue: "support", priority: 2)])))
        c.ok(.putStatus(name: "Break", type: .custom))
        c.ok(.putAgent(AgentDefinition(id: "a-1", routingProfile: "sales")))
        c.ok(.login(agent: "a-1", region: "us-east-1", status: "Break"))
        c.call("support-1", queue: "support")
        c.call("billing-1", after: 1_000)
        let events = c.ok(.setStatus(agent: "a-1", status: BuiltInStatus.available), after: 1_000)
        #expect(events.offers.map(\.contactId) == ["billing-1"])
    }

    /// Connect, example 2: same priority, Support with a 30 s delay — a support contact becomes
    /// eligible for these agents once it has waited 30 s.
    @Test func aQueueDelayHoldsContactsBackUntilTheyHaveWaitedIt() {
        var c = Center()
        c.standardDefinitions()
        c.ok(
            .putRoutingProfile(
                RoutingProfile(
                    id: "sales",
                    queues: [ProfileQueue(queue: "billing", priority: 1), ProfileQueue(queue: "support", priority: 1, delayMs: 30_000)]
                )))
        c.ok(.putAgent(AgentDefinition(id: "a-1", routingProfile: "sales")))
        c.ok(.login(agent: "a-1", region: "us-east-1", status: BuiltInStatus.available))
        #expect(c.call("support-1", queue: "support").offers.isEmpty)
        #expect(c.ok(.tick, after: 29_999).offers.isEmpty)
        #expect(c.ok(.tick, after: 1).offers.map(\.contactId) == ["support-1"])
    }

    @Test func oldestFirstWithinAPriorityAcrossQueues() {
        var c = Center()
        c.standardDefinitions()
        c.ok(
            .putRoutingProfile(
                RoutingProfile(
                    id: "both", queues: [ProfileQueue(queue: "billing", priority: 1), ProfileQueue(queue: "support", priority: 1)])))
        c.ok(.putAgent(AgentDefinition(id: "a-1", routingProfile: "both")))
        c.ok(.login(agent: "a-1", region: "us-east-1", status: "Offline"))
        c.call("b-1", queue: "billing", after: 1_000)
        c.call("s-1", queue: "support", after: 1_000)
        c.call("b-2", queue: "billing", after: 1_000)
        #expect(c.ok(.setStatus(agent: "a-1", status: "Available")).offers.map(\.contactId) == ["b-1"])
        for (expected, next) in [("b-1", "s-1"), ("s-1", "b-2")] {
            c.ok(.accept(contact: expected, agent: "a-1"))
            c.ok(.end(contact: expected))
            #expect(c.ok(.completeAfterContactWork(contact: expected)).offers.map(\.contactId) == [next])
        }
    }

    @Test func aMissedOfferGoesBackToItsPlaceAndMissesMakeTheAgentNonRoutable() {
        var settings = Center.quiet
        settings.missesBeforeNonRoutable = 2
        var c = Center(settings: settings)
        c.standardDefinitions()
        c.agent("a-1")
        c.call("c-1", after: 1_000)
        c.ok(.setStatus(agent: "a-1", status: "Offline"))  // not routable: c-2 waits behind c-1
        c.call("c-2", after: 1_000)
        c.ok(.setStatus(agent: "a-1", status: "Available"))
        let place = c.state.contact("c-1")!.position
        let missed = c.ok(.tick, after: 20_000)
        #expect(missed.contactTypes("c-1") == [.missed])
        #expect(c.state.line("billing").map(\.id) == ["c-1"])
        #expect(c.state.contact("c-1")?.position == place, "c-1 keeps its place, ahead of c-2")
        // Not offered c-1 again at once (it just rang out there); c-2 instead.
        #expect(missed.offers.map(\.contactId) == ["c-2"])
        #expect(c.state.agent("a-1")?.missedOffers == 1)
        let second = c.ok(.tick, after: 20_000)
        #expect(second.contactTypes("c-2") == [.missed])
        #expect(c.state.agent("a-1")?.status == BuiltInStatus.missed)
        #expect(second.offers.isEmpty)
        // A second agent takes the oldest first.
        c.agent("a-2")
        #expect(c.state.contact("c-1")?.agent == "a-2")
        // Setting Available again clears the misses.
        c.ok(.setStatus(agent: "a-1", status: "Available"))
        #expect(c.state.agent("a-1")?.missedOffers == 0)
    }

    @Test func aRejectedContactIsOfferedToAnotherAgentNotBackToTheSameOne() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        c.agent("a-2", after: 1_000)
        c.ok(.setStatus(agent: "a-2", status: "Offline"))
        c.call("c-1", after: 1_000)
        let rejected = c.ok(.reject(contact: "c-1", agent: "a-1"))
        #expect(rejected.contactTypes("c-1") == [.rejected])
        #expect(rejected.offers.isEmpty, "not re-offered to a-1 within reofferDelayMs")
        #expect(c.ok(.setStatus(agent: "a-2", status: "Available")).offers.map(\.agentId) == ["a-2"])
        #expect(c.state.agent("a-1")?.missedOffers == 0, "a rejection is not a miss")
    }

    @Test func concurrencyPerChannelAndVoiceAlone() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        for i in 1...4 { c.call("chat-\(i)", channel: .chat, after: 1) }
        #expect(c.state.agent("a-1")?.contacts == ["chat-1", "chat-2", "chat-3"], "three chats at once, the fourth waits")
        #expect(c.state(of: "chat-4") == .queued)
        c.call("voice-1", after: 1)
        #expect(c.state(of: "voice-1") == .queued, "no voice beside chats")
        for i in 1...3 {
            c.ok(.accept(contact: "chat-\(i)", agent: "a-1"))
            c.ok(.end(contact: "chat-\(i)"))
            c.ok(.completeAfterContactWork(contact: "chat-\(i)"))
        }
        // The fourth chat is older than the voice call: it goes first, and blocks the voice call.
        #expect(c.state(of: "chat-4") == .offered)
        #expect(c.state(of: "voice-1") == .queued)
        c.ok(.accept(contact: "chat-4", agent: "a-1"))
        c.ok(.end(contact: "chat-4"))
        c.ok(.completeAfterContactWork(contact: "chat-4"))
        #expect(c.state(of: "voice-1") == .offered)
        c.call("chat-5", channel: .chat)
        #expect(c.state(of: "chat-5") == .queued, "no chat beside a voice call")
    }

    @Test func aChannelOutsideTheProfileIsNeverOffered() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        c.call("task-1", channel: .task)
        #expect(c.state(of: "task-1") == .queued)
    }

    @Test func agentsInTheContactsRegionFirstThenAnyRegionAfterTheDelay() {
        var settings = Center.quiet
        settings.crossRegionDelayMs = 10_000
        var c = Center(settings: settings)
        c.standardDefinitions()
        c.agent("eu", region: "eu-west-1")
        c.agent("us", region: "us-east-1", after: 1_000)
        #expect(c.call("c-1", region: "us-east-1", after: 1_000).offers.map(\.agentId) == ["us"], "the idler eu agent waits")
        #expect(c.call("c-2", region: "us-east-1").offers.isEmpty)
        #expect(c.ok(.tick, after: 9_999).offers.isEmpty)
        #expect(c.ok(.tick, after: 1).offers.map(\.agentId) == ["eu"])
    }

    @Test func aRegionThatStoppedServingHasItsContactsOfferedEverywhereAtOnce() {
        var c = Center()
        c.standardDefinitions()
        c.agent("eu", region: "eu-west-1")
        c.call("c-1", region: "us-east-1")
        #expect(c.state(of: "c-1") == .queued)
        let events = c.ok(.setRegionServing(region: "us-east-1", serving: false), after: 500)
        #expect(events.offers.map(\.contactId) == ["c-1"])
    }

    @Test func thePreferredAgentFirstForItsWindow() {
        var settings = Center.quiet
        settings.preferredAgentWindowMs = 20_000
        var c = Center(settings: settings)
        c.standardDefinitions()
        c.ok(.putStatus(name: "Break", type: .custom))
        c.agent("idle")
        c.agent("fav", after: 1_000)
        c.ok(.setStatus(agent: "fav", status: "Break"))
        // fav is signed in but not routable: no wait for it.
        #expect(c.call("c-1", preferred: "fav").offers.map(\.agentId) == ["idle"])
        c.ok(.accept(contact: "c-1", agent: "idle"))
        c.ok(.setStatus(agent: "fav", status: "Available"))
        c.agent("idle2")
        #expect(c.call("c-2", preferred: "fav", after: 1).offers.map(\.agentId) == ["fav"])
        c.ok(.reject(contact: "c-2", agent: "fav"))
        // Rejected by fav; others wait out the window.
        #expect(c.state(of: "c-2") == .queued)
        c.ok(.tick, after: 19_998)
        #expect(c.state(of: "c-2") == .queued)
        #expect(c.ok(.tick, after: 2).offers.map(\.agentId) == ["idle2"])
    }

    @Test func anUnknownPreferredAgentIsIgnored() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        #expect(c.call("c-1", preferred: "gone").offers.map(\.agentId) == ["a-1"])
        #expect(c.state.contact("c-1")?.preferredAgent == nil)
    }

    @Test func skillsBelowTheRequiredProficiencyAreNotOffered() {
        var c = Center()
        c.standardDefinitions()
        c.agent("junior", skills: ["french": 2])
        c.agent("senior", skills: ["french": 4], after: 1_000)
        #expect(c.call("c-1", skills: ["french": 3], after: 1_000).offers.map(\.agentId) == ["senior"])
    }

    @Test func aQueueAtItsMaximumRefusesNewContacts() {
        var c = Center()
        c.ok(.putQueue(QueueDefinition(id: "small", maxContacts: 1)))
        c.call("c-1", queue: "small")
        let refusal = c.refused(.createContact(NewContact(id: "c-2", channel: .voice, queue: "small", region: "r")))
        #expect(refusal?.status == 409)
        #expect(refusal?.currentState == "FULL")
    }
}
