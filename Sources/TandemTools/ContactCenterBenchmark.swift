import ContactCenter
import Foundation
import TandemCore

/// Contact-center figures (`tandem bench contacts`, `scripts/bench-contacts`).
///
/// - core: the pure state machine alone, in this process — the cost of applying one command
///   with 10,000 agents signed in: while agents are free (each new contact offered at once), and
///   while every agent is busy and contacts wait in line. This is the leader's (and every
///   replica's) work per `_cc` entry, so it bounds the commands/s one log can take.
public struct ContactCenterBenchmark {
    public struct Options: Sendable {
        public var agents = 10_000
        public var contacts = 20_000
        public var only: String?
        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    public func run() throws {
        let parts = Set((options.only ?? "core").split(separator: ",").map(String.init))
        if parts.contains("core") { try core() }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: The core alone

    struct CoreRun {
        var state: ContactCenterState
        var t: UInt64 = 1_700_000_000_000
        var samples: [Double] = []
        var refusals = 0
        var firstRefusal: String?
        var offers: [String: String] = [:]

        init() {
            var s = CenterSettings()
            s.heartbeatTimeoutMs = 86_400_000
            s.endedRetentionMs = 60_000
            state = ContactCenterState(settings: s)
        }

        /// Applies `command` 1 ms after the previous one and times it (µs).
        @discardableResult
        mutating func apply(_ command: Command, measure: Bool = true) -> [CenterEvent] {
            t += 1
            let start = DispatchTime.now().uptimeNanoseconds
            let result = state.apply(command, at: t)
            let end = DispatchTime.now().uptimeNanoseconds
            if measure { samples.append(Double(end - start) / 1_000) }
            switch result {
            case .success(let events):
                for case .offered(let o) in events { offers[o.contactId] = o.agentId }
                return events
            case .failure(let r):
                refusals += 1
                if firstRefusal == nil { firstRefusal = "\(command): \(r)" }
                return []
            }
        }

        mutating func report(_ label: String) {
            samples.sort()
            func q(_ p: Double) -> Double { samples.isEmpty ? 0 : samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
            let total = samples.reduce(0, +)
            print(
                String(
                    format: "  %@: %d commands, p50 %.1f µs, p99 %.1f µs, max %.1f µs, %.0f commands/s on one core", label, samples.count,
                    q(0.5), q(0.99), samples.last ?? 0, total > 0 ? Double(samples.count) / total * 1_000_000 : 0))
            samples = []
        }
    }

    func core() throws {
        let n = options.agents
        let regions = ["us-east-1", "eu-west-1", "ap-south-1"]
        print("contact-center core — \(n) agents in \(regions.count) regions, one voice queue, apply() timed per command")
        var run = CoreRun()
        run.apply(.putQueue(QueueDefinition(id: "billing")), measure: false)
        run.apply(
            .putRoutingProfile(
                RoutingProfile(id: "default", queues: [ProfileQueue(queue: "billing", priority: 1)], concurrency: [.voice: 1])),
            measure: false)
        for i in 0..<n {
            run.apply(.putAgent(AgentDefinition(id: "a\(i)", routingProfile: "default")), measure: false)
            run.apply(.login(agent: "a\(i)", region: regions[i % regions.count], status: BuiltInStatus.available), measure: false)
        }

        // Free agents: each contact is offered at once, accepted, ended, wrapped up; half the
        // agents are on a contact at any time (contacts complete in arrival order).
        var active: [String] = []
        var next = 0
        let inFlight = n / 2
        var free = CoreRun.Phase()
        for _ in 0..<options.contacts {
            next += 1
            let cid = "c\(next)"
            free.time(&run, .createContact(NewContact(id: cid, channel: .voice, queue: "billing", region: regions[next % 3])))
            guard let agent = run.offers[cid] else { continue }
            free.time(&run, .accept(contact: cid, agent: agent))
            active.append(cid)
            if active.count > inFlight {
                let done = active.removeFirst()
                free.time(&run, .end(contact: done))
                free.time(&run, .completeAfterContactWork(contact: done))
                run.offers[done] = nil
            }
            if next % 100 == 0 { free.tick(&run) }
        }
        print("  agents free (\(inFlight) on contacts, each new contact offered at once):")
        free.report(&run)

        // Every agent busy, 500 contacts waiting: each finished contact frees an agent who takes
        // the oldest waiting one; a new contact joins the line.
        while active.count < n {
            next += 1
            let cid = "c\(next)"
            run.apply(.createContact(NewContact(id: cid, channel: .voice, queue: "billing", region: regions[next % 3])), measure: false)
            guard let agent = run.offers[cid] else { break }
            run.apply(.accept(contact: cid, agent: agent), measure: false)
            active.append(cid)
        }
        for _ in 0..<500 {
            next += 1
            run.apply(
                .createContact(NewContact(id: "c\(next)", channel: .voice, queue: "billing", region: regions[next % 3])), measure: false)
        }
        var busy = CoreRun.Phase()
        for _ in 0..<(options.contacts / 2) {
            let done = active.removeFirst()
            busy.time(&run, .end(contact: done))
            let before = Set(run.offers.keys)
            busy.time(&run, .completeAfterContactWork(contact: done))
            run.offers[done] = nil
            for (cid, agent) in run.offers where !before.contains(cid) {
                busy.time(&run, .accept(contact: cid, agent: agent))
                active.append(cid)
            }
            next += 1
            busy.time(&run, .createContact(NewContact(id: "c\(next)", channel: .voice, queue: "billing", region: regions[next % 3])))
            if next % 100 == 0 { busy.tick(&run) }
        }
        print("  every agent busy, ~500 contacts waiting:")
        busy.report(&run)
        let queued = run.state.metrics(queue: "billing")?.global.contactsInQueue ?? -1
        print("  refusals: \(run.refusals)\(run.firstRefusal.map { " (first: \($0))" } ?? ""); contacts in queue at the end: \(queued)")
        if run.refusals > 0 { print("  FIGURES INVALID: the run had refusals") }
    }
}

extension ContactCenterBenchmark.CoreRun {
    /// Per-command and per-tick samples of one phase.
    struct Phase {
        var commands: [Double] = []
        var ticks: [Double] = []

        mutating func time(_ run: inout ContactCenterBenchmark.CoreRun, _ command: Command) {
            run.apply(command)
            commands.append(run.samples.removeLast())
        }

        mutating func tick(_ run: inout ContactCenterBenchmark.CoreRun) {
            run.apply(.tick)
            ticks.append(run.samples.removeLast())
        }

        func report(_ run: inout ContactCenterBenchmark.CoreRun) {
            run.samples = commands
            run.report("commands")
            run.samples = ticks
            run.report("ticks   ")
        }
    }
}
