import TandemCore
import Testing

@testable import ContactCenter

/// Random histories of commands — contacts arriving, offers accepted, rejected and ringing out,
/// holds, transfers, hang-ups, logins and logouts, statuses, heartbeats that stop, regions that
/// stop serving, ticks — each passed through the log encoding, with the invariants checked after
/// every step:
/// - no agent over its concurrency (per channel, voice alone);
/// - every created contact in exactly one place: once in one line, or held by exactly one
///   agent, or ended (in the state, or reported ended before it left);
/// - every offer took the agent's best eligible contact (priority, then oldest in line), and no
///   routable agent is left with a contact it could take (assignment is maximal);
/// - a refused command changed nothing (byte-identical snapshot);
/// - the free-agent index holds exactly the agents a pass over all of them finds free, in order;
/// - determinism: a second replica applying the same log gets the same results and a
///   byte-identical snapshot; restoring a snapshot mid-run and continuing ends the same.
@Suite struct SimulationTests {
    @Test(arguments: 0..<40)
    func randomHistoriesKeepTheInvariants(seed: UInt64) throws {
        var sim = Simulation(seed: seed)
        try sim.run(steps: 400)
        #expect(sim.refusals > 0 && sim.offers > 0 && sim.accepted > 0, "the history exercised refusals, offers and answers")
    }
}

struct Simulation {
    var rng: SeededGenerator
    var state: ContactCenterState
    var t: UInt64 = 1_700_000_000_000
    var log: [(Command, UInt64)] = []
    var results: [Result<[CenterEvent], Refusal>] = []
    var created: [String] = []
    var reportedEnded: Set<String> = []
    var nextContact = 0
    var refusals = 0
    var offers = 0
    var accepted = 0
    var restoredAt: (step: Int, state: ContactCenterState)?
    let initialSettings: CenterSettings
    let agentIds = (0..<8).map { "a\($0)" }
    let regions = ["r0", "r1", "r2"]

    init(seed: UInt64) {
        rng = SeededGenerator(seed: seed)
        var settings = CenterSettings()
        settings.ringTimeoutMs = 8_000
        settings.heartbeatTimeoutMs = 20_000
        settings.crossRegionDelayMs = 5_000
        settings.preferredAgentWindowMs = 6_000
        settings.reofferDelayMs = 10_000
        settings.endedRetentionMs = 30_000
        settings.intervalMs = 60_000
        settings.missesBeforeNonRoutable = 2
        state = ContactCenterState(settings: settings)
        initialSettings = settings
    }

    mutating func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[Int(rng.next() % UInt64(items.count))] }
    mutating func chance(_ p: Double) -> Bool { rng.chance(p) }

    mutating func setUp() throws {
        let setup: [Command] = [
            .putStatus(name: "Break", type: .custom),
            .putQueue(QueueDefinition(id: "q0", serviceLevelMs: 5_000)),
            .putQueue(QueueDefinition(id: "q1", serviceLevelMs: 10_000, maxContacts: 6)),
            .putRoutingProfile(
                RoutingProfile(
                    id: "p0", queues: [ProfileQueue(queue: "q0", priority: 1), ProfileQueue(queue: "q1", priority: 2, delayMs: 3_000)],
                    concurrency: [.voice: 1, .chat: 3, .task: 2])),
            .putRoutingProfile(
                RoutingProfile(id: "p1", queues: [ProfileQueue(queue: "q1", priority: 1)], concurrency: [.voice: 1, .chat: 2])),
            .putRoutingProfile(
                RoutingProfile(
                    id: "p2", queues: [ProfileQueue(queue: "q0", priority: 1), ProfileQueue(queue: "q1", priority: 1)],
                    concurrency: [.voice: 1]))
        ]
        for command in setup { try step(command) }
        for id in agentIds {
            let profile = pick(["p0", "p1", "p2"])!
            let skills: [String: UInt8] = chance(0.6) ? ["fr": UInt8(1 + rng.next() % 5)] : [:]
            try step(.putAgent(AgentDefinition(id: id, routingProfile: profile, skills: skills, acwTimeoutMs: chance(0.3) ? 4_000 : 0)))
        }
    }

    mutating func run(steps: Int) throws {
        try setUp()
        let restoreStep = log.count + Int(rng.next() % UInt64(steps))
        for _ in 0..<steps {
            if log.count == restoreStep { restoredAt = (log.count, try ContactCenterState(snapshot: state.encodedSnapshot())) }
            t += rng.next() % 2_500
            try step(randomCommand())
        }
        try checkReplicas()
    }

    mutating func randomCommand() -> Command {
        let contacts = state.contacts.keys.sorted().map { state.contacts[$0]! }
        func inState(_ s: ContactState) -> [Contact] { contacts.filter { $0.state == s } }
        let signedIn = agentIds.filter { state.agents[$0]?.signedIn == true }
        let roll = rng.next() % 100
        switch roll {
        case 0..<16:
            nextContact += 1
            return .createContact(
                NewContact(
                    id: "c\(nextContact)", channel: pick(Channel.allCases)!, queue: chance(0.03) ? "nowhere" : pick(["q0", "q1"])!,
                    region: pick(regions)!, requiredSkills: chance(0.2) ? ["fr": 3] : [:],
                    preferredAgent: chance(0.2) ? pick(agentIds) : nil))
        case 16..<32:
            guard let c = pick(inState(.offered)) else { return .tick }
            return .accept(contact: c.id, agent: chance(0.9) ? c.agent! : pick(agentIds)!)
        case 32..<37:
            guard let c = pick(inState(.offered)) else { return .tick }
            return .reject(contact: c.id, agent: c.agent!)
        case 37..<41:
            return .hold(contact: pick(contacts)?.id ?? "none")
        case 41..<45:
            return .resume(contact: pick(contacts)?.id ?? "none")
        case 45..<51:
            guard let c = pick(inState(.connected) + inState(.onHold)) ?? pick(contacts) else { return .tick }
            nextContact += 1
            let target =
                chance(0.5)
                ? TransferTarget(queue: pick(["q0", "q1"]), region: chance(0.3) ? pick(regions) : nil)
                : TransferTarget(agent: pick(agentIds))
            return .transfer(contact: c.id, newContactId: "c\(nextContact)", to: target)
        case 51..<61:
            return .end(contact: pick(contacts.filter { $0.state != .ended })?.id ?? "none")
        case 61..<69:
            return .completeAfterContactWork(contact: pick(inState(.afterContactWork))?.id ?? pick(contacts)?.id ?? "none")
        case 69..<75:
            return .login(agent: pick(agentIds)!, region: pick(regions)!, status: pick(["Available", "Available", "Break"])!)
        case 75..<78:
            return .logout(agent: pick(agentIds)!)
        case 78..<84:
            return .setStatus(agent: pick(agentIds)!, status: pick(["Available", "Available", "Break", "Offline", "Bogus"])!)
        case 84..<89:
            return .heartbeat(agent: pick(signedIn) ?? pick(agentIds)!)
        case 89..<90:
            return .setRegionServing(region: pick(regions)!, serving: chance(0.5))
        default:
            t += rng.next() % 6_000
            return .tick
        }
    }

    mutating func step(_ original: Command) throws {
        // Through the log's encoding, as a replica would read it.
        let command = try CommandCodec.decode(try CommandCodec.encode(original))
        #expect(command == original)
        let before = state.encodedSnapshot()
        let result = state.apply(command, at: t)
        log.append((command, t))
        results.append(result)
        switch result {
        case .failure:
            refusals += 1
            let unchanged = state.encodedSnapshot() == before
            #expect(unchanged, "refused \(command) changed the state")
        case .success(let events):
            if case .accept = command { accepted += 1 }
            for case .contact(let e) in events where e.contact.state == .ended { reportedEnded.insert(e.contact.id) }
            if case .createContact(let n) = command { created.append(n.id) }
            if case .transfer(_, let newId, _) = command { created.append(newId) }
            for case .offered(let offer) in events {
                offers += 1
                checkBestChoice(offer)
            }
        }
        checkInvariants(after: command)
        let indexed = state.freeIndexIsConsistent()
        #expect(indexed, "after \(command) the free-agent index differs from a pass over every agent")
    }

    /// No contact still waiting was a better choice for the agent that got this offer: same
    /// channel (so capacity cannot explain the choice), eligible, and earlier by the agent's
    /// profile (a better priority, or the same priority and an older place in line).
    func checkBestChoice(_ offer: Offer) {
        let agent = state.agents[offer.agentId]!
        let chosen = state.contacts[offer.contactId]!
        let profile = state.routingProfiles[agent.definition.routingProfile]!
        let chosenPriority = profile.queues.first { $0.queue == chosen.queue }!.priority
        for pq in profile.queues {
            for w in state.lines[pq.queue] ?? [] {
                let other = state.contacts[w.contactId]!
                let earlier = pq.priority < chosenPriority || (pq.priority == chosenPriority && other.position < chosen.position)
                guard earlier, other.channel == chosen.channel, state.now >= other.queuedAt + pq.delayMs else { continue }
                let wasBetter = state.mayOffer(other, to: agent)  // bound first: the expectation would print the whole state
                #expect(!wasBetter, "\(offer.agentId) was offered \(chosen.id) while \(other.id) was ahead of it")
            }
        }
    }

    func checkInvariants(after command: Command) {
        // Concurrency.
        var holders: [String: [String]] = [:]
        for id in agentIds {
            guard let agent = state.agents[id] else { continue }
            let profile = state.routingProfiles[agent.definition.routingProfile]!
            let held = state.heldByChannel(agent)
            for (channel, n) in held {
                #expect(n <= profile.concurrency[channel] ?? 0, "\(id) holds \(n) \(channel) contacts after \(command)")
            }
            if (held[.voice] ?? 0) > 0 { #expect(agent.contacts.count == 1, "\(id) holds something beside a voice call") }
            for cid in agent.contacts { holders[cid, default: []].append(id) }
            #expect(state.signedIn.contains(id) == agent.signedIn)
        }
        // One place per contact.
        var inLines: [String: Int] = [:]
        var queued = 0
        for (queue, line) in state.lines {
            #expect(zip(line, line.dropFirst()).allSatisfy { $0.position < $1.position }, "line \(queue) out of order")
            for w in line {
                inLines[w.contactId, default: 0] += 1
                #expect(state.contacts[w.contactId]?.queue == queue)
            }
            queued += line.count
        }
        #expect(queued == state.queuedCount)
        for id in created {
            guard let c = state.contacts[id] else {
                #expect(reportedEnded.contains(id), "contact \(id) vanished without ending")
                continue
            }
            let lines = inLines[id] ?? 0
            let agents = holders[id] ?? []
            switch c.state {
            case .queued:
                #expect(lines == 1 && agents.isEmpty && c.agent == nil, "queued \(id): \(lines) lines, agents \(agents)")
            case .offered, .connected, .onHold, .afterContactWork:
                #expect(lines == 0 && agents == [c.agent!], "\(c.state) \(id): \(lines) lines, agents \(agents)")
            case .ended:
                #expect(lines == 0 && agents.isEmpty, "ended \(id) still placed")
            case .incoming:
                Issue.record("\(id) rests in INCOMING")
            }
        }
        // Maximal assignment: a routable agent with room has nothing it could take.
        for id in state.signedIn.sorted() {
            let agent = state.agents[id]!
            guard state.isRoutable(agent) else { continue }
            let missed = state.bestContact(for: agent)?.id
            #expect(missed == nil, "\(id) could take \(missed ?? "") after \(command)")
        }
        let inQueue = state.centerMetrics().global.contactsInQueue
        #expect(inQueue == state.queuedCount)
    }

    /// A second replica applying the same log, and one restored from a snapshot mid-run.
    func checkReplicas() throws {
        var replica = ContactCenterState(settings: initialSettings)
        for (i, (command, at)) in log.enumerated() {
            let result = replica.apply(try CommandCodec.decode(try CommandCodec.encode(command)), at: at)
            let same = result == results[i]
            #expect(same, "replica diverged at entry \(i)")
        }
        let identical = replica.encodedSnapshot() == state.encodedSnapshot()
        #expect(identical, "replicas' snapshots differ")
        if let (from, snapshotState) = restoredAt {
            var restored = snapshotState
            for (command, at) in log[from...] { _ = restored.apply(command, at: at) }
            let identical = restored.encodedSnapshot() == state.encodedSnapshot()
            #expect(identical, "snapshot → restore → continue differs")
        }
    }
}
