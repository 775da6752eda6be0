import TandemCore
import Testing

@testable import ContactCenter

@Suite struct CommandCodecTests {
    static let everyKind: [Command] = {
        var settings = Center.quiet
        settings.ringTimeoutMs = 12_345
        return [
            .putSettings(settings),
            .putQueue(QueueDefinition(id: "billing", serviceLevelMs: 20_000, maxContacts: 50)),
            .putRoutingProfile(
                RoutingProfile(
                    id: "p", queues: [ProfileQueue(queue: "b", priority: 2, delayMs: 30_000), ProfileQueue(queue: "a", priority: 1)],
                    concurrency: [.voice: 1, .chat: 10, .task: 3])),
            .putAgent(AgentDefinition(id: "a-1", name: "Ada", routingProfile: "p", skills: ["fr": 3, "de": 5], acwTimeoutMs: 9)),
            .putStatus(name: "Lunch", type: .custom),
            .setRegionServing(region: "eu", serving: false),
            .login(agent: "a-1", region: "eu", status: "Available"),
            .logout(agent: "a-1"),
            .setStatus(agent: "a-1", status: "Lunch"),
            .heartbeat(agent: "a-1"),
            .createContact(
                NewContact(
                    id: "c-1", channel: .chat, initiationMethod: .callback, queue: "b", region: "eu", attributes: ["k": "v", "é": "ü"],
                    requiredSkills: ["fr": 2], preferredAgent: "a-1")),
            .createContact(NewContact(id: "c-2", channel: .voice, queue: "b", region: "eu")),
            .accept(contact: "c-1", agent: "a-1"),
            .reject(contact: "c-1", agent: "a-1"),
            .hold(contact: "c-1"),
            .resume(contact: "c-1"),
            .transfer(contact: "c-1", newContactId: "c-3", to: TransferTarget(queue: "a", agent: nil, region: "us")),
            .transfer(contact: "c-1", newContactId: "c-4", to: TransferTarget(agent: "a-2")),
            .end(contact: "c-1"),
            .completeAfterContactWork(contact: "c-1"),
            .tick
        ]
    }()

    @Test func everyCommandRoundTripsToTheSameBytes() throws {
        for command in Self.everyKind {
            let bytes = try CommandCodec.encode(command)
            #expect(try CommandCodec.decode(bytes) == command)
            #expect(try CommandCodec.encode(try CommandCodec.decode(bytes)) == bytes)
        }
    }

    @Test func decodingRefusesWhatItCannotTrust() throws {
        let bytes = try CommandCodec.encode(Self.everyKind[10])
        for cut in 0..<bytes.count {
            #expect(throws: TandemError.self) { try CommandCodec.decode(Array(bytes[..<cut])) }
        }
        #expect(throws: TandemError.self) { try CommandCodec.decode(bytes + [0]) }
        var newer = bytes
        newer[1] = CommandCodec.version + 1
        #expect(throws: TandemError.self) { try CommandCodec.decode(newer) }
        #expect(throws: TandemError.self) { try CommandCodec.decode([0xCC, 1, 99]) }
        // A count far beyond the bytes that follow: refused before any allocation.
        var w = ByteWriter()
        for b: UInt8 in [0xCC, 1, 10] { w.u8(b) }
        w.shortString("c")
        w.u8(0)
        w.u8(0)
        w.shortString("q")
        w.shortString("r")
        w.u16(60)
        #expect(throws: TandemError.self) { try CommandCodec.decode(w.bytes) }
        #expect(throws: TandemError.self) { try CommandCodec.decode([UInt8](repeating: 0xCC, count: CommandLimits.maxEncodedBytes + 1)) }
    }

    @Test func encodingRefusesWhatDecodingWould() {
        let long = String(repeating: "x", count: 256)
        #expect(throws: TandemError.self) { try CommandCodec.encode(.logout(agent: long)) }
        let many = Dictionary(uniqueKeysWithValues: (0...CommandLimits.maxAttributes).map { ("k\($0)", "v") })
        #expect(throws: TandemError.self) {
            try CommandCodec.encode(.createContact(NewContact(id: "c", channel: .voice, queue: "q", region: "r", attributes: many)))
        }
        let bigValue = String(repeating: "v", count: CommandLimits.maxAttributeValueBytes + 1)
        #expect(throws: TandemError.self) {
            try CommandCodec.encode(
                .createContact(NewContact(id: "c", channel: .voice, queue: "q", region: "r", attributes: ["k": bigValue])))
        }
    }
}

@Suite struct SnapshotTests {
    @Test func aSnapshotRestoresTheSameStateAndContinuesTheSame() throws {
        var c = Center()
        c.standardDefinitions()
        c.ok(.putStatus(name: "Lunch", type: .custom))
        c.agent("a-1")
        c.agent("a-2", region: "eu-west-1")
        c.call("c-1", channel: .chat)
        c.call("c-2", queue: "support")
        c.ok(.accept(contact: "c-1", agent: "a-1"))
        c.ok(.setStatus(agent: "a-1", status: "Lunch"))
        c.ok(.setRegionServing(region: "ap", serving: false))
        let bytes = c.state.encodedSnapshot()
        var restored = try ContactCenterState(snapshot: bytes)
        #expect(restored.encodedSnapshot() == bytes)
        #expect(restored.line("support").map(\.id) == ["c-2"])
        for command: Command in [.end(contact: "c-1"), .completeAfterContactWork(contact: "c-1"), .tick] {
            c.t += 1_000
            let a = c.state.apply(command, at: c.t)
            let b = restored.apply(command, at: c.t)
            #expect(a == b)
        }
        #expect(restored.encodedSnapshot() == c.state.encodedSnapshot())
    }

    @Test func aDamagedSnapshotIsRefused() {
        var c = Center()
        c.standardDefinitions()
        c.agent("a-1")
        c.call("c-1")
        let bytes = c.state.encodedSnapshot()
        for cut in stride(from: 0, to: bytes.count, by: 7) {
            #expect(throws: TandemError.self) { try ContactCenterState(snapshot: Array(bytes[..<cut])) }
        }
        #expect(throws: TandemError.self) { try ContactCenterState(snapshot: bytes + [1]) }
    }
}

/// Definitions from Amazon Connect's real-time metrics (see Metrics.swift).
@Suite struct MetricsTests {
    @Test func queueAndRegionFigures() {
        var c = Center()
        c.standardDefinitions()
        c.ok(.putStatus(name: "Break", type: .custom))
        c.agent("talking")
        c.agent("idle", region: "eu-west-1", after: 1_000)
        c.agent("resting", after: 1)
        c.ok(.setStatus(agent: "resting", status: "Break"))
        c.agent("wrapping", after: 1)
        c.call("c-1", after: 1)  // talking
        c.ok(.accept(contact: "c-1", agent: "talking"), after: 5_000)
        c.call("c-2", after: 1)  // wrapping (idle is in another region)
        c.ok(.accept(contact: "c-2", agent: "wrapping"), after: 30_000)  // answered after the 20 s threshold
        c.ok(.end(contact: "c-2"), after: 60_000)
        c.ok(.setStatus(agent: "idle", status: "Offline"))
        c.call("c-3", after: 1)
        c.call("c-4", after: 2_000)
        c.call("c-5", after: 1)
        c.ok(.end(contact: "c-5"), after: 1_000)
        let m = c.state.metrics(queue: "billing")!
        #expect(m.global.contactsInQueue == 2)
        #expect(m.global.oldestContactAgeMs == 3_001)
        #expect(m.global.agentsOnline == 3, "idle set Offline")
        #expect(m.global.agentsOnContact == 1)
        #expect(m.global.agentsAfterContactWork == 1)
        #expect(m.global.agentsNonProductive == 1)
        #expect(m.global.agentsStaffed == 2)
        #expect(m.global.agentsAvailable == 0)
        #expect(m.global.contactsAnswered == 2)
        #expect(m.global.serviceLevelPercent == 100 * 1 / 3.0, "one of two answered within 20 s, one abandoned")
        #expect(m.global.abandonmentRatePercent == 20)
        #expect(m.regions["us-east-1"]?.contactsInQueue == 2)
        #expect(m.regions["eu-west-1"] == nil, "idle signed in there but Offline")
        #expect(c.state.metrics(queue: "support")?.global.contactsInQueue == 0)
        #expect(c.state.metrics(queue: "nowhere") == nil)
        #expect(c.state.waitEstimate(contact: "c-4") == WaitEstimate(position: 2, estimatedWaitMs: nil))
        c.ok(.completeAfterContactWork(contact: "c-2"), after: 10_000)
        let handled = c.state.metrics(queue: "billing")!.global
        #expect(handled.averageHandleTimeMs == 60_000 + 3_002 + 10_000, "talk (with the commands between) + ACW")
        // c-3 is offered to wrapping now; c-4 is at the head.
        #expect(c.state.waitEstimate(contact: "c-4") == WaitEstimate(position: 1, estimatedWaitMs: 73_002 / 2))
    }

    @Test func anIntervalClosesWithItsTotals() {
        var settings = Center.quiet
        settings.intervalMs = 900_000
        var c = Center(settings: settings)
        c.t = 900_000 * 2_000_000 + 10
        c.standardDefinitions()
        c.call("c-1", region: "r")
        c.call("c-2", region: "r")
        c.ok(.end(contact: "c-2"))
        let events = c.ok(.tick, after: 900_000)
        let closed = events.compactMap { if case .intervalClosed(let s, let e, let t) = $0 { (s, e, t) } else { nil } }
        #expect(closed.count == 1)
        #expect(closed.first?.0 == 900_000 * 2_000_000)
        let row = closed.first?.2.first
        #expect(row?.queue == "billing" && row?.region == "r" && row?.enqueued == 2 && row?.abandoned == 1)
        #expect(c.state.currentIntervalTotals.isEmpty)
        #expect(c.state.metrics(queue: "billing")?.global.contactsInQueue == 1, "the line is state, not interval")
    }
}
