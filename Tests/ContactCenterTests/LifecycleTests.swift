import Testing

@testable import ContactCenter

/// The contact's and the agent's state machines, transfers, hang-ups, timers, and what is refused.
@Suite struct LifecycleTests {
    @Test func aContactFromQueuedToEndedThroughEachStep() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        c.call("c-1", after: 1_000)
        let accepted = c.ok(.accept(contact: "c-1", agent: "a-1"), after: 3_000)
        #expect(accepted.contactTypes("c-1") == [.connectedToAgent])
        #expect(accepted.agentEvents.map(\.type) == [.stateChange])
        #expect(accepted.agentEvents.first?.previous?.contacts.first?.state == .offered)
        #expect(accepted.agentEvents.first?.current.contacts.first?.state == .connected)
        #expect(c.ok(.hold(contact: "c-1"), after: 1_000).contactTypes("c-1") == [.hold])
        #expect(c.ok(.resume(contact: "c-1"), after: 1_000).contactTypes("c-1") == [.resume])
        #expect(c.ok(.end(contact: "c-1"), after: 60_000).contactTypes("c-1") == [.disconnected])
        #expect(c.state(of: "c-1") == .afterContactWork)
        #expect(c.state.agent("a-1")?.contacts == ["c-1"], "after-contact work holds the slot")
        #expect(c.ok(.completeAfterContactWork(contact: "c-1"), after: 10_000).contactTypes("c-1") == [.afterContactWorkCompleted])
        let contact = c.state.contact("c-1")!
        #expect(contact.state == .ended)
        #expect(contact.steps.map(\.name) == ["INCOMING", "QUEUED", "CONNECTING", "CONNECTED", "ON_HOLD", "CONNECTED", "ACW", "ENDED"])
        #expect(contact.connectedAt! - contact.queuedAt == 3_000)
        #expect(c.state.agent("a-1")?.contacts == [])
    }

    @Test func aStatusSetOnAContactAppliesWhenItsWorkEnds() {
        var c = Center()
        c.standardDefinitions()
        c.ok(.putStatus(name: "Lunch", type: .custom))
        c.agent("a-1")
        c.call("c-1")
        c.ok(.accept(contact: "c-1", agent: "a-1"))
        let events = c.ok(.setStatus(agent: "a-1", status: "Lunch"))
        #expect(events.agentEvents.first?.current.nextStatus == "Lunch")
        #expect(c.state.agent("a-1")?.status == "Available")
        c.ok(.end(contact: "c-1"))
        c.call("c-2")
        #expect(c.state(of: "c-2") == .queued, "an agent with a next status gets no new contacts")
        c.ok(.completeAfterContactWork(contact: "c-1"))
        #expect(c.state.agent("a-1")?.status == "Lunch")
        #expect(c.state.agent("a-1")?.nextStatus == nil)
        #expect(c.state(of: "c-2") == .queued)
    }

    @Test func aCallerHangingUpWhileQueuedOrRingingAbandons() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        c.call("ringing")
        c.call("waiting")
        let hungUp = c.ok(.end(contact: "ringing"), after: 2_000)
        #expect(hungUp.contains(.offerWithdrawn(contactId: "ringing", agentId: "a-1")))
        #expect(hungUp.contactEvents.first { $0.contact.id == "ringing" }?.detail == "ABANDONED")
        #expect(c.state.contact("ringing")?.abandoned == true)
        #expect(hungUp.offers.map(\.contactId) == ["waiting"], "the freed agent takes the next contact")
        c.ok(.setStatus(agent: "a-1", status: "Offline"))
        c.call("queued")
        c.ok(.end(contact: "queued"), after: 1_000)
        #expect(c.state(of: "queued") == .ended)
        #expect(c.state.line("billing").isEmpty)
        let m = c.state.metrics(queue: "billing")!.global
        #expect(m.contactsAbandoned == 2)
        #expect(m.contactsEnqueued == 3)
    }

    @Test func transfersKeepTheInitialContactId() {
        var c = Center()
        c.standardDefinitions()
        c.ok(.putRoutingProfile(RoutingProfile(id: "support", queues: [ProfileQueue(queue: "support", priority: 1)])))
        c.agent("a-1")
        c.agent("s-1", profile: "support", after: 1)
        c.agent("s-2", region: "eu-west-1", profile: "support", after: 1)
        c.call("c-1")
        c.ok(.accept(contact: "c-1", agent: "a-1"))
        // To a queue.
        let toQueue = c.ok(.transfer(contact: "c-1", newContactId: "c-2", to: TransferTarget(queue: "support")), after: 1_000)
        #expect(toQueue.contactTypes("c-1") == [.transferred])
        #expect(toQueue.contactTypes("c-2") == [.initiated, .queued])
        #expect(c.state(of: "c-1") == .afterContactWork)
        let second = c.state.contact("c-2")!
        #expect((second.initialContactId, second.previousContactId, second.initiationMethod) == ("c-1", "c-1", .queueTransfer))
        #expect(second.agent == "s-1")
        c.ok(.accept(contact: "c-2", agent: "s-1"))
        // To an agent: only that agent is offered it, in whichever region.
        c.ok(.transfer(contact: "c-2", newContactId: "c-3", to: TransferTarget(agent: "s-2")), after: 1_000)
        let third = c.state.contact("c-3")!
        #expect((third.initialContactId, third.previousContactId, third.initiationMethod) == ("c-1", "c-2", .transfer))
        #expect(third.agent == "s-2")
        c.ok(.accept(contact: "c-3", agent: "s-2"))
        // To a queue in another region.
        c.ok(.transfer(contact: "c-3", newContactId: "c-4", to: TransferTarget(queue: "billing", region: "eu-west-1")))
        #expect(c.state.contact("c-4")?.region == "eu-west-1")
        #expect(c.state.contact("c-4")?.initialContactId == "c-1")
    }

    @Test func missedHeartbeatsSignTheAgentOutAndItsOffersGoBack() {
        var settings = Center.quiet
        settings.heartbeatTimeoutMs = 30_000
        settings.ringTimeoutMs = 60_000  // rings on past the sign-out
        var c = Center(settings: settings)
        c.standardDefinitions()
        c.agent("a-1")
        c.ok(.heartbeat(agent: "a-1"), after: 20_000)
        c.call("c-1")
        #expect(c.ok(.tick, after: 29_999).agentEvents.isEmpty)
        let events = c.ok(.tick, after: 1)
        #expect(events.agentEvents.map(\.type) == [.logout])
        #expect(events.contains(.offerWithdrawn(contactId: "c-1", agentId: "a-1")))
        #expect(c.state(of: "c-1") == .queued)
        #expect(c.state.agent("a-1")?.status == "Offline")
        #expect(c.refused(.heartbeat(agent: "a-1"))?.status == 409)
    }

    @Test func afterContactWorkEndsByItselfWhenTheAgentHasATimeout() {
        var c = Center()
        c.standardDefinitions()
        c.ok(.putAgent(AgentDefinition(id: "a-1", routingProfile: "default", acwTimeoutMs: 5_000)))
        c.ok(.login(agent: "a-1", region: "r", status: "Available"))
        c.call("c-1", region: "r")
        c.ok(.accept(contact: "c-1", agent: "a-1"))
        c.ok(.end(contact: "c-1"))
        #expect(c.ok(.tick, after: 4_999).contactEvents.isEmpty)
        #expect(c.ok(.tick, after: 1).contactTypes("c-1") == [.afterContactWorkCompleted])
    }

    @Test func endedContactsLeaveTheStateAfterTheirRetention() {
        var settings = Center.quiet
        settings.endedRetentionMs = 60_000
        var c = Center(settings: settings)
        c.standardDefinitions()
        c.call("c-1")
        c.ok(.end(contact: "c-1"))
        c.ok(.tick, after: 59_999)
        #expect(c.state.contact("c-1") != nil)
        c.ok(.tick, after: 1)
        #expect(c.state.contact("c-1") == nil)
    }

    @Test func refusalsNameTheReasonAndChangeNothing() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        c.agent("a-2")
        c.call("c-1")  // offered to a-1
        #expect(c.refused(.accept(contact: "nope", agent: "a-1"))?.status == 404)
        #expect(c.refused(.accept(contact: "c-1", agent: "ghost"))?.status == 404)
        let wrongAgent = c.refused(.accept(contact: "c-1", agent: "a-2"))
        #expect(wrongAgent?.status == 409)
        #expect(wrongAgent?.currentState == "CONNECTING")
        #expect(c.refused(.completeAfterContactWork(contact: "c-1"))?.currentState == "CONNECTING")
        #expect(c.refused(.hold(contact: "c-1"))?.status == 409)
        c.ok(.accept(contact: "c-1", agent: "a-1"))
        #expect(c.refused(.completeAfterContactWork(contact: "c-1"))?.currentState == "CONNECTED")
        #expect(c.refused(.resume(contact: "c-1"))?.currentState == "CONNECTED")
        c.ok(.end(contact: "c-1"))
        c.ok(.completeAfterContactWork(contact: "c-1"))
        let ended = c.refused(.accept(contact: "c-1", agent: "a-1"))
        #expect((ended?.status, ended?.currentState) == (409, "ENDED"))
        #expect(c.refused(.end(contact: "c-1"))?.currentState == "ENDED")
        #expect(c.refused(.setStatus(agent: "a-1", status: "Napping"))?.status == 400)
        #expect(c.refused(.setStatus(agent: "ghost", status: "Available"))?.status == 404)
        #expect(c.refused(.createContact(NewContact(id: "c-9", channel: .voice, queue: "nowhere", region: "r")))?.status == 404)
        #expect(c.refused(.createContact(NewContact(id: "c-1", channel: .voice, queue: "billing", region: "r")))?.status == 409)
        #expect(c.refused(.transfer(contact: "c-1", newContactId: "c-5", to: TransferTarget(queue: "billing")))?.status == 409)
        #expect(c.refused(.putAgent(AgentDefinition(id: "a-3", routingProfile: "none")))?.status == 404)
        #expect(c.refused(.putAgent(AgentDefinition(id: "a-3", routingProfile: "default", skills: ["x": 6])))?.status == 400)
        #expect(
            c.refused(
                .putRoutingProfile(RoutingProfile(id: "p", queues: [ProfileQueue(queue: "billing", priority: 1)], concurrency: [.voice: 2]))
            )?.status == 400)
        #expect(c.refused(.putRoutingProfile(RoutingProfile(id: "p", queues: [ProfileQueue(queue: "gone", priority: 1)])))?.status == 404)
        #expect(c.refused(.putStatus(name: "Available", type: .custom))?.status == 400)
        #expect(c.refused(.login(agent: "a-1", region: "eu-west-1", status: "Available"))?.status == 409)
        c.ok(.logout(agent: "a-2"))
        #expect(c.refused(.logout(agent: "a-2"))?.currentState == "Offline")
        #expect(c.refused(.setStatus(agent: "a-2", status: "Available"))?.status == 409)
        #expect(Channel.named("FAX") == .failure(Refusal(kind: .badRequest, message: "unknown channel FAX")))
        #expect(Channel.named("CHAT") == .success(.chat))
    }

    @Test func agentEventsCarryPreviousAndCurrentSnapshots() {
        var c = Center()
        c.standardDefinitions()
        c.ok(.putAgent(AgentDefinition(id: "a-1", routingProfile: "default")))
        let login = c.ok(.login(agent: "a-1", region: "eu-west-1", status: "Available"), after: 1_000).agentEvents
        #expect(login.map(\.type) == [.login])
        #expect(login.first?.previous?.status == "Offline" && login.first?.previous?.region == nil)
        #expect(login.first?.current.status == "Available" && login.first?.current.region == "eu-west-1")
        #expect(login.first?.region == "eu-west-1")
        let beat = c.ok(.heartbeat(agent: "a-1"), after: 1_000).agentEvents
        #expect(beat.map(\.type) == [.heartbeat])
        #expect(beat.first?.previous == nil)
        let same = c.ok(.setStatus(agent: "a-1", status: "Available"))
        #expect(same.isEmpty, "no change, no event")
        let change = c.ok(.setStatus(agent: "a-1", status: "Offline"), after: 1_000).agentEvents
        #expect(change.map(\.type) == [.stateChange])
        #expect(change.first?.current.statusType == .offline && change.first?.current.statusSince == c.t)
        let logout = c.ok(.logout(agent: "a-1")).agentEvents
        #expect(logout.map(\.type) == [.logout])
        #expect(logout.first?.region == "eu-west-1", "the region it left")
        #expect(logout.first?.current.region == nil)
    }

    @Test func timeNeverGoesBackwards() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        c.call("c-1")
        let offeredAt = c.t
        // A new leader whose clock is behind proposes a tick "earlier": deadlines do not move.
        _ = c.state.apply(.tick, at: offeredAt - 5_000)
        #expect(c.state.now == offeredAt)
        #expect(c.state.contact("c-1")?.ringDeadline == offeredAt + 20_000)
    }
}
