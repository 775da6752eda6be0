import ContactCenter
import Foundation
import TandemCore
import TandemTestKit
import Transport

/// Contact-center figures (`tandem bench contacts`, `scripts/bench-contacts`).
///
/// - core: the pure state machine alone, in this process — the cost of applying one command
///   with 10,000 agents signed in: while agents are free (each new contact offered at once), and
///   while every agent is busy and contacts wait in line. This is the leader's (and every
///   replica's) work per `_cc` entry, so it bounds the commands/s one log can take.
/// - api: 3 nodes in 3 regions on loopback (release build, `--profile`, default region), through the REST API:
///   10,000 agents defined and signed in (commands/s), new contacts at 1,000/s spread over the
///   three nodes, each in the region of the node asked, while agents are free (enqueue → offer:
///   the create is answered after the entry that queued the contact and offered it committed
///   and was applied on the leader, where an agent's long poll is woken in the same step), then
///   as many creates as 48 connections can send (commands/s).
public struct ContactCenterBenchmark {
    public struct Options: Sendable {
        public var agents = 10_000
        public var contacts = 20_000
        public var seconds = 5
        /// The nodes' timing profile (the tests' `fast` elects quickly, and on a loaded machine
        /// also needlessly; `region` is the default of a real node).
        public var profile = "region"
        public var only: String?
        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    public func run() throws {
        let parts = Set((options.only ?? "core,api").split(separator: ",").map(String.init))
        if parts.contains("core") { try core() }
        if parts.contains("api") { try api() }
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

extension ContactCenterBenchmark {
    // ==== ------------------------------------------------------------------------------------
    // MARK: Through the API

    struct Figures {
        var commands = 0
        var errors = 0
        var seconds = 0.0
        var latencies: [Double] = []

        mutating func add(_ r: LoadGenerator.Result) {
            commands += r.requests
            errors += r.errors
            seconds = max(seconds, r.seconds)
            latencies += r.latenciesMs
        }

        var perSecond: Double { Double(commands) / max(seconds, 1e-9) }
        func percentile(_ p: Double) -> Double {
            let s = latencies.sorted()
            return s.isEmpty ? .nan : s[min(s.count - 1, Int(Double(s.count) * p))]
        }
    }

    /// One load generator per node, all at once; each request from `request(node, k)`.
    func load(
        _ cluster: LocalCluster, connections: Int, seconds: Int, rate: Double?, maxPerNode: Int?,
        _ request: @escaping @Sendable (Int, Int) -> (String, String, [UInt8]?)
    ) throws -> Figures {
        let results = ResultBox()
        let group = DispatchGroup()
        for node in cluster.nodes.indices {
            let api = cluster.nodes[node].api
            group.enter()
            Thread {
                defer { group.leave() }
                var k = 0
                guard
                    let gen = try? LoadGenerator(
                        target: api,
                        request: {
                            k += 1
                            let (m, p, b) = request(node, k)
                            return (m, p, b)
                        })
                else { return results.failed() }
                results.add(
                    gen.run(
                        connections: connections, duration: .seconds(Int64(seconds)), ratePerSecond: rate.map { $0 / 3 },
                        maxRequests: maxPerNode))
            }.start()
        }
        group.wait()
        var f = Figures()
        for r in results.all { f.add(r) }
        f.errors += results.failures
        return f
    }

    func api() throws {
        let n = options.agents
        print(
            "\ncontact center through the API — 3 nodes (release build, \(options.profile) profile) on 127.0.0.1, \(n) agents, one voice queue"
        )
        fflush(nil)
        let cluster = try LocalCluster(size: 3, profile: options.profile)
        try cluster.startAll()
        defer { for i in cluster.nodes.indices { cluster.kill9(i) } }
        guard
            eventually(
                timeout: .seconds(20), { (0..<3).allSatisfy { cluster.view(from: $0)?.values.filter { $0.status == "alive" }.count == 3 } })
        else { throw ToolError("cluster did not form") }
        let api0 = cluster.nodes[0].api
        func put(_ path: String, _ body: String) throws {
            var last: HTTPClient.Response?
            _ = eventually(timeout: .seconds(20), interval: .milliseconds(100)) {
                last = try? HTTPClient.request("PUT", api0, path, body: Array(body.utf8), timeout: .seconds(5))
                return last?.status == 200
            }
            guard last?.status == 200 else { throw ToolError("\(path): \(last?.status ?? 0) \(last?.text ?? "no answer")") }
        }
        // Nothing rings out or signs out during the run.
        try put("/v1/center/settings", #"{"ringTimeoutMs":3600000,"heartbeatTimeoutMs":3600000}"#)
        try put("/v1/queues/billing", #"{"serviceLevelSeconds":20}"#)
        try put("/v1/routing-profiles/default", #"{"queues":[{"queue":"billing","priority":1}],"concurrency":{"VOICE":1}}"#)
        let regions = cluster.regions
        let perNode = (n + 2) / 3
        // Agent i is defined and signed in through node i % 3 (its region).
        let define = try load(cluster, connections: 8, seconds: 600, rate: nil, maxPerNode: perNode) { node, k in
            ("PUT", "/v1/agents/a\(node)-\(k)", Array(#"{"routingProfile":"default","skills":{"billing":3}}"#.utf8))
        }
        let login = try load(cluster, connections: 8, seconds: 600, rate: nil, maxPerNode: perNode) { node, k in
            ("POST", "/v1/agents/a\(node)-\(k)/login", Array(#"{"status":"Available"}"#.utf8))
        }
        print(
            String(
                format: "• define %d agents: %.0f commands/s (p50 %.1f ms, p99 %.1f ms), errors %d", define.commands, define.perSecond,
                define.percentile(0.5), define.percentile(0.99), define.errors))
        print(
            String(
                format: "• sign them in, Available: %.0f commands/s (p50 %.1f ms, p99 %.1f ms), errors %d", login.perSecond,
                login.percentile(0.5), login.percentile(0.99), login.errors))
        fflush(nil)
        // 1,000 new contacts a second while agents are free: each is offered in the entry that queues it.
        let latency = try load(cluster, connections: 16, seconds: options.seconds, rate: 1_000, maxPerNode: nil) { node, k in
            (
                "POST", "/v1/contacts",
                Array("{\"contactId\":\"l\(node)-\(k)\",\"channel\":\"VOICE\",\"queue\":\"billing\",\"region\":\"\(regions[node])\"}".utf8)
            )
        }
        let p99 = latency.percentile(0.99)
        print(
            String(
                format: "• enqueue → offer at 1,000 contacts/s with agents free: %d contacts, p50 %.2f ms, p99 %.2f ms, errors %d",
                latency.commands,
                latency.percentile(0.5), p99, latency.errors))
        print("    target p99 ≤ 20 ms: \(latency.errors > 0 ? "ERRORS \(latency.errors) (not judged)" : (p99 <= 20 ? "MET" : "MISSED"))")
        fflush(nil)
        // As fast as 48 connections go: agents run out, contacts queue.
        let flat = try load(cluster, connections: 16, seconds: options.seconds, rate: nil, maxPerNode: nil) { node, k in
            (
                "POST", "/v1/contacts",
                Array("{\"contactId\":\"t\(node)-\(k)\",\"channel\":\"VOICE\",\"queue\":\"billing\",\"region\":\"\(regions[node])\"}".utf8)
            )
        }
        print(
            String(
                format: "• creates, 48 connections, closed loop: %.0f commands/s, p50 %.2f ms, p99 %.2f ms, errors %d", flat.perSecond,
                flat.percentile(0.5), flat.percentile(0.99), flat.errors))
        // The center agrees on every node (each answers metrics from its own replica): every
        // acknowledged contact is there. The time until all three show them is the metrics'
        // freshness after the load stops.
        let acked = latency.commands + flat.commands
        let checkStart = DispatchTime.now().uptimeNanoseconds
        var views: [(enqueued: Int, waiting: Int)] = []
        let agreed = eventually(timeout: .seconds(10), interval: .milliseconds(10)) {
            views = cluster.nodes.map { node in
                let g = (try? HTTPClient.request("GET", node.api, "/v1/queues/billing/metrics", timeout: .seconds(5)))?.json()?["global"]
                return (g?["contactsEnqueued"]?.intValue ?? -1, g?["contactsInQueue"]?.intValue ?? -1)
            }
            return views.allSatisfy { $0.enqueued >= acked }
        }
        let freshMs = Double(DispatchTime.now().uptimeNanoseconds - checkStart) / 1e6
        let enqueued = views.map(\.enqueued).min() ?? -1
        let waiting = views.first?.waiting ?? -1
        print(
            "• check: \(acked) contacts acknowledged; every node shows \(enqueued) enqueued (\(waiting) waiting, \(max(0, enqueued - waiting)) offered to \(n) agents) "
                + String(format: "%.0f ms after the load stopped", freshMs))
        if !agreed { print("    FIGURES INVALID: acknowledged contacts missing from a node's metrics after 10 s: \(views)") }
        let cpu = cluster.nodes.indices.compactMap { cluster.cpuSeconds($0) }.map { String(format: "%.1f", $0) }.joined(separator: ", ")
        print("• node CPU seconds over the run: \(cpu)")
        // Where the time went: each node's error answers by code, and the `_cc` leader's
        // propose → commit and fsync times (means from the histograms' sums and counts).
        for i in cluster.nodes.indices {
            guard let text = (try? HTTPClient.request("GET", cluster.nodes[i].api, "/metrics", timeout: .seconds(5)))?.text else {
                continue
            }
            let lines = text.split(separator: "\n").filter {
                $0.hasPrefix("tandem_cc_errors_total{")
                    || ($0.contains("stream=\"_cc\"")
                        && ($0.hasPrefix("tandem_stream_append_latency_ms_sum") || $0.hasPrefix("tandem_stream_append_latency_ms_count")
                            || $0.hasPrefix("tandem_stream_fsync_latency_ms_sum") || $0.hasPrefix("tandem_stream_fsync_latency_ms_count")))
            }
            print("  \(cluster.nodes[i].name): " + lines.joined(separator: "; "))
        }
        fflush(nil)
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [LoadGenerator.Result] = []
    private var failedCount = 0
    func failed() {
        lock.lock()
        failedCount += 1
        lock.unlock()
    }
    var failures: Int {
        lock.lock()
        defer { lock.unlock() }
        return failedCount
    }
    func add(_ r: LoadGenerator.Result) {
        lock.lock()
        results.append(r)
        lock.unlock()
    }
    var all: [LoadGenerator.Result] {
        lock.lock()
        defer { lock.unlock() }
        return results
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
