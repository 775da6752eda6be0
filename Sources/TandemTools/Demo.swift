import Foundation
import TandemCore
import TandemTestKit
import Transport

/// The README's main job: a contact center running active-active in three regions on loopback.
/// Callers arrive at edges and are routed; agents log in and change status (a global table and
/// a stream); contacts start and end (a stream); queue counters count (a global table). Midway
/// one region is killed with `kill -9`, later restarted. A live view shows what each region
/// does; the summary measures the failover and checks that nothing acknowledged was lost.
/// Every number printed is measured.
public struct Demo {
    public struct Options: Sendable {
        /// Number of regions (nodes), at least 3.
        public var nodes = 3
        /// Timing profile: lan, wan or fast.
        public var profile = "fast"
        /// Seconds of traffic (the kill comes at 40%, the restart at 70%).
        public var seconds = 60.0

        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    /// Runs the demo; false when the summary found something wrong (it says what).
    public func run() throws -> Bool {
        let cluster = try LocalCluster(size: options.nodes, profile: options.profile)
        let regionNames = ["us-east-1", "eu-west-1", "ap-southeast-1", "us-west-2", "sa-east-1", "eu-central-1"]
        cluster.regions = regionNames
        cluster.logLevel = "info"
        let center = ContactCenter(cluster: cluster, regions: (0..<options.nodes).map { regionNames[$0 % regionNames.count] })
        print(
            "Tandem demo: a contact center in \(options.nodes) regions on 127.0.0.1, profile '\(options.profile)', \(Int(options.seconds)) s of traffic."
        )
        print("Node logs: \(cluster.root)/*.log\n")
        do {
            try center.setUp()
            center.runTraffic(seconds: options.seconds)
            let ok = center.summary()
            for i in cluster.nodes.indices { _ = cluster.terminate(i) }
            return ok
        } catch {
            for i in cluster.nodes.indices {
                FileHandle.standardError.write(Data("---- \(cluster.nodes[i].name) log (tail)\n\(cluster.log(i).suffix(1500))\n".utf8))
            }
            throw ToolError("demo failed: \(error)")
        }
    }
}

/// The demo's cluster, workloads and measurements.
final class ContactCenter: @unchecked Sendable {
    let cluster: LocalCluster
    let regions: [String]
    let edges = ["nyc": [8, 75, 230], "london": [75, 9, 170], "singapore": [230, 165, 7]]
    let started = Date()
    let lock = NSLock()
    var stopping = false
    var victim = 1
    var killedAt: Date?
    var restartedAt: Date?

    // Measured by the workloads (under `lock`).
    struct Routed { var at: Date; var asked: Int; var region: String; var table: String }
    var routed: [Routed] = []
    /// Route requests that failed or were not answered 200, by the node asked.
    var routeErrors: [Int] = []
    /// Contacts the prober asks about: ones the victim's region takes before the kill, so that
    /// every probe names it until the node asked has failed over.
    var probeContacts: [String] = []
    /// Prober requests that failed or were not answered 200, by the node asked.
    var probeErrors: [Int] = []
    /// Each failed probe to a live region: when, which node, what came back (or the error).
    var probeFailures: [(at: Date, node: Int, what: String)] = []
    var counterAcked: [String: Int] = [:]  // queue → acknowledged `offered` increments
    var counterUnknown: [String: Int] = [:]
    var recordsAcked: [String: Set<String>] = [:]  // stream → payload ids acknowledged
    var recordsUnknown: [String: Set<String>] = [:]
    var eventsByNode: [Int] = []
    var agentsHome: [String: Int] = [:]

    init(cluster: LocalCluster, regions: [String]) {
        self.cluster = cluster
        self.regions = regions
        eventsByNode = Array(repeating: 0, count: regions.count)
    }

    var elapsed: Double { Date().timeIntervalSince(started) }
    func say(_ text: String) {
        print(String(format: "[%6.2fs] ", elapsed) + text)
        fflush(nil)
    }
    func api(_ i: Int) -> String { cluster.nodes[i].api }
    func call(_ method: String, _ i: Int, _ path: String, _ body: String? = nil, timeout: Duration = .seconds(2)) -> HTTPClient.Response? {
        try? HTTPClient.request(method, api(i), path, body: body.map { Array($0.utf8) }, timeout: timeout)
    }
    var isStopping: Bool { lock.withLock { stopping } }
    func alive(_ i: Int) -> Bool { lock.withLock { !(killedAt != nil && restartedAt == nil && i == victim) } }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Set-up

    func setUp() throws {
        let t0 = Date()
        try cluster.startAll()
        let names = cluster.nodes.map(\.name)
        guard
            eventually(
                timeout: .seconds(30),
                {
                    self.cluster.nodes.indices.allSatisfy { i in names.allSatisfy { self.cluster.view(from: i)?[$0]?.status == "alive" } }
                })
        else { throw DemoError("the cluster did not form") }
        say(
            String(
                format: "%d regions joined in %.2f s: %@", regions.count, Date().timeIntervalSince(t0),
                zip(names, regions).map { "\($0) \($1)" }.joined(separator: ", ")))

        let weights = regions.map { "\"\($0)\":\(String(format: "%.2f", 100.0 / Double(regions.count)))" }.joined(separator: ",")
        guard call("PUT", 0, "/v1/split", #"{"weights":{\#(weights)}}"#)?.status == 200 else { throw DemoError("split refused") }
        let edgeJSON = edges.map { edge, rtts in
            "\"\(edge)\":{\"rttMs\":{\(zip(regions, rtts + Array(repeating: 200, count: max(0, regions.count - rtts.count))).map { "\"\($0)\":\($1)" }.joined(separator: ","))},\"volume\":1}"
        }.joined(separator: ",")
        guard call("PUT", 0, "/v1/edges", #"{"edges":{\#(edgeJSON)}}"#)?.status == 200 else { throw DemoError("edges refused") }
        for (table, key) in [("agents", "agentId"), ("queues", "queue")] {
            guard call("PUT", 0, "/v1/tables/\(table)", #"{"partitionKey":"\#(key)"}"#).map({ $0.status < 300 }) ?? false else {
                throw DemoError("table \(table) refused")
            }
        }
        for stream in ["agent-events", "contact-events"] {
            guard call("PUT", 0, "/v1/streams/\(stream)", #"{"partitions":3,"retentionHours":24}"#).map({ $0.status < 300 }) ?? false else {
                throw DemoError("stream \(stream) refused")
            }
        }
        guard
            eventually(
                timeout: .seconds(30),
                {
                    self.cluster.nodes.indices.allSatisfy { i in
                        self.call("POST", i, "/v1/streams/contact-events/records", #"{"key":"warm-up","data":"AA=="}"#)?.status == 200
                            && self.call("GET", i, "/v1/route?contact=warm-up&edge=nyc")?.status == 200
                    }
                })
        else { throw DemoError("streams or routes not ready on every node") }
        probeContacts = (0..<2_000).lazy.map { "probe-\($0)" }.filter { c in
            self.call("GET", 0, "/v1/route?contact=\(c)&edge=london").flatMap { try? JSON.parse($0.body) }?["region"]?.stringValue
                == self.regions[self.victim]
        }.prefix(4).map { $0 }
        guard !probeContacts.isEmpty else { throw DemoError("no probe contact routes to \(regions[victim])") }
        let fingerprints = Set(cluster.nodes.indices.compactMap { routeTable($0) })
        say(
            "split \(regions.map { "\($0) \(String(format: "%.0f", 100.0 / Double(regions.count)))%" }.joined(separator: " / ")), edges nyc/london/singapore; tables agents, queues; streams agent-events, contact-events — every node serves route table \(fingerprints.joined(separator: ","))"
        )
    }

    func routeTable(_ i: Int) -> String? {
        guard let r = call("GET", i, "/v1/split", timeout: .milliseconds(500)), r.status == 200, let j = try? JSON.parse(r.body) else {
            return nil
        }
        return j["table"]?.stringValue.map { String($0.prefix(8)) }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Traffic

    func runTraffic(seconds: Double) {
        var threads: [Thread] = []
        // Callers: arrive at an edge, ask a random live node where to go, and the contact
        // starts there (a stream record, a queue counter) and ends a moment later.
        for w in 0..<3 {
            threads.append(
                Thread { [self] in
                    var rng = SeededGenerator(seed: UInt64(w) &+ 1)
                    var n = 0
                    while !isStopping {
                        n += 1
                        let contact = "C-\(w)-\(n)"
                        let edge = edges.keys.sorted()[Int(rng.next() % 3)]
                        let live = regions.indices.filter { alive($0) }
                        let asked = live[Int(rng.next() % UInt64(live.count))]
                        guard let r = call("GET", asked, "/v1/route?contact=\(contact)&edge=\(edge)", timeout: .milliseconds(500)),
                            r.status == 200,
                            let j = try? JSON.parse(r.body), let region = j["region"]?.stringValue
                        else {
                            lock.withLock { routeErrors.append(asked) }
                            continue
                        }
                        lock.withLock {
                            routed.append(Routed(at: Date(), asked: asked, region: region, table: j["table"]?.stringValue ?? ""))
                        }
                        let home = regions.firstIndex(of: region) ?? asked
                        let target = alive(home) ? home : asked
                        record(
                            target, "contact-events", contact,
                            "{\"type\":\"start\",\"contact\":\"\(contact)\",\"edge\":\"\(edge)\",\"region\":\"\(region)\"}")
                        count(target, queue: "\(region)/\(edge)")
                        record(target, "contact-events", contact, "{\"type\":\"end\",\"contact\":\"\(contact)\"}")
                    }
                })
        }
        // Agents: 10 per region log in, then change status; each change is a table write and
        // an event, made in the agent's home region (or, while it is down, a live one).
        threads.append(
            Thread { [self] in
                var rng = SeededGenerator(seed: 99)
                let statuses = ["available", "on-call", "after-call", "available", "break"]
                let agents = regions.indices.flatMap { r in (0..<10).map { (id: "a-\(r)-\($0)", home: r) } }
                lock.withLock { for a in agents { agentsHome[a.id] = a.home } }
                while !isStopping {
                    let a = agents[Int(rng.next() % UInt64(agents.count))]
                    let status = statuses[Int(rng.next() % UInt64(statuses.count))]
                    let node = alive(a.home) ? a.home : (a.home + 1) % regions.count
                    _ = call("PUT", node, "/v1/tables/agents/items/\(a.id)", #"{"status":"\#(status)","region":"\#(regions[a.home])"}"#)
                    record(node, "agent-events", a.id, "{\"type\":\"status\",\"agent\":\"\(a.id)\",\"status\":\"\(status)\"}")
                    Thread.sleep(forTimeInterval: 0.01)
                }
            })
        // A prober asks every live node where a few fixed contacts go, 100 times a second: the
        // failover figures come from it.
        threads.append(
            Thread { [self] in
                while !isStopping {
                    for i in regions.indices where alive(i) {
                        for c in probeContacts {
                            let sent = Date()
                            let answer = Result {
                                try HTTPClient.request("GET", api(i), "/v1/route?contact=\(c)&edge=london", timeout: .milliseconds(300))
                            }
                            if case .success(let r) = answer, r.status == 200, let j = try? JSON.parse(r.body),
                                let region = j["region"]?.stringValue
                            {
                                lock.withLock { probes.append((Date(), i, region)) }
                            } else {
                                let what: String
                                switch answer {
                                case .success(let r): what = "\(r.status) \(r.text.prefix(120))"
                                case .failure(let e): what = "\(e) after \(Int(Date().timeIntervalSince(sent) * 1000)) ms"
                                }
                                lock.withLock {
                                    probeErrors.append(i)
                                    probeFailures.append((sent, i, what))
                                }
                            }
                        }
                    }
                    Thread.sleep(forTimeInterval: 0.01)
                }
            })
        for t in threads { t.start() }

        let end = started.addingTimeInterval(elapsed + seconds)
        let killAt = Date().addingTimeInterval(seconds * 0.4), restartAt = Date().addingTimeInterval(seconds * 0.7)
        printHeader()
        var last = snapshot()
        while Date() < end {
            Thread.sleep(forTimeInterval: 2)
            if killedAt == nil && Date() >= killAt {
                cluster.kill9(victim)
                lock.withLock { killedAt = Date() }
                say("kill -9 \(cluster.nodes[victim].name) (\(regions[victim])) — its share flows to the others")
            }
            if restartedAt == nil && Date() >= restartAt {
                try? cluster.start(victim)
                lock.withLock { restartedAt = Date() }
                say("restart \(cluster.nodes[victim].name) (\(regions[victim])) on its data dir — it returns after the hold-down")
            }
            let now = snapshot()
            liveLine(last, now)
            last = now
        }
        lock.withLock { stopping = true }
        _ = eventually(timeout: .seconds(10)) { threads.allSatisfy(\.isFinished) }
    }

    var probes: [(at: Date, node: Int, region: String)] = []

    func record(_ node: Int, _ stream: String, _ key: String, _ json: String) {
        let id = "\(stream)#\(UUID().uuidString.prefix(12))"
        let payload = Base64.encode(Array("\(id) \(json)".utf8))
        let r = call("POST", node, "/v1/streams/\(stream)/records", #"{"key":"\#(key)","data":"\#(payload)"}"#, timeout: .seconds(3))
        lock.withLock {
            if r?.status == 200 {
                recordsAcked[stream, default: []].insert(id)
                eventsByNode[node] += 1
            } else {
                recordsUnknown[stream, default: []].insert(id)
            }
        }
    }

    func count(_ node: Int, queue: String) {
        let key = queue.replacingOccurrences(of: "/", with: "_")
        let ok = call("PATCH", node, "/v1/tables/queues/items/\(key)", #"{"add":{"offered":1}}"#)?.status == 200
        lock.withLock { if ok { counterAcked[key, default: 0] += 1 } else { counterUnknown[key, default: 0] += 1 } }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Live view

    struct Snapshot {
        var at = Date()
        var routedCount = 0
        var events: [Int] = []
        /// nil where the node's /metrics did not answer.
        var lagSum: [Double?] = []
        var lagCount: [Double?] = []
    }

    func snapshot() -> Snapshot {
        var s = Snapshot()
        lock.withLock {
            s.routedCount = routed.count
            s.events = eventsByNode
        }
        for i in regions.indices {
            s.lagSum.append(alive(i) ? cluster.metric("tandem_table_replication_lag_ms_sum", node: i) : nil)
            s.lagCount.append(alive(i) ? cluster.metric("tandem_table_replication_lag_ms_count", node: i) : nil)
        }
        return s
    }

    func printHeader() {
        let cols = regions.map { $0.padding(toLength: 42, withPad: " ", startingAt: 0) }.joined()
        print("\n         " + cols)
        print(
            "         "
                + regions.map { _ in "share  agents  events/s  lag ms  table".padding(toLength: 42, withPad: " ", startingAt: 0) }.joined())
        print("         (share of new contacts, agents available, stream events/s taken, mean replication lag, route table)")
    }

    func liveLine(_ a: Snapshot, _ b: Snapshot) {
        let window = lock.withLock { Array(routed[a.routedCount..<b.routedCount]) }
        let dt = b.at.timeIntervalSince(a.at)
        var cols: [String] = []
        for (i, r) in regions.enumerated() {
            guard alive(i) else {
                cols.append("— down —".padding(toLength: 42, withPad: " ", startingAt: 0))
                continue
            }
            let share = window.isEmpty ? 0 : Double(window.filter { $0.region == r }.count) / Double(window.count) * 100
            let avail = availableAgents(asking: i, region: r)
            let events = Double(b.events[i] - a.events[i]) / dt
            // Lag over the window; "?" when a reading is missing (not 0), "-" when nothing arrived.
            var lag = "?"
            if let c0 = a.lagCount[i], let c1 = b.lagCount[i], let s0 = a.lagSum[i], let s1 = b.lagSum[i] {
                lag = c1 > c0 ? String(format: "%.1f", (s1 - s0) / (c1 - c0)) : "-"
            }
            let agents = (avail ?? "?").padding(toLength: 5, withPad: " ", startingAt: 0)
            lag = String(repeating: " ", count: max(0, 6 - lag.count)) + lag
            let cell = String(
                format: "%4.0f%%  %@  %8.0f  %@  %@", share, agents as NSString, events, lag as NSString,
                (routeTable(i) ?? "?") as NSString)
            cols.append(cell.padding(toLength: 42, withPad: " ", startingAt: 0))
        }
        print(String(format: "[%5.1fs] ", elapsed) + cols.joined())
        fflush(nil)
    }

    /// Agents of `region` whose status is `available`, as node `i` reads the agents table.
    func availableAgents(asking i: Int, region: String) -> String? {
        guard let r = call("GET", i, "/v1/tables/agents/items?limit=1000", timeout: .seconds(1)), r.status == 200,
            let j = try? JSON.parse(r.body), case .array(let items)? = j["items"]
        else { return nil }
        return String(items.filter { $0["region"]?.stringValue == region && $0["status"]?.stringValue == "available" }.count)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Summary

    func summary() -> Bool {
        var failures: [String] = []
        print("\nSummary (measured)")
        let dead = regions[victim]
        let (kill, restart, probes, routed) = lock.withLock { (killedAt!, restartedAt, self.probes, self.routed) }
        let (probeErrors, routeErrors) = lock.withLock { (self.probeErrors, self.routeErrors) }
        // Requests to the killed region fail while it is down and restarting: expected. Those
        // to the others are errors, and the figures below do not include them.
        let survivorErrors = probeErrors.filter { $0 != victim }.count + routeErrors.filter { $0 != victim }.count
        print(
            "  requests that failed: \(survivorErrors) to the live regions (prober \(probeErrors.filter { $0 != victim }.count), callers \(routeErrors.filter { $0 != victim }.count)); \(probeErrors.count + routeErrors.count - survivorErrors) to \(dead) (expected while it is down)"
        )
        if survivorErrors > 0 { failures.append("\(survivorErrors) requests to live regions failed (the figures leave them out)") }
        for f in lock.withLock({ probeFailures }).filter({ $0.node != victim }).prefix(5) {
            print(
                String(
                    format: "    probe to %@ failed %+.3f s from the kill: %@", cluster.nodes[f.node].name, f.at.timeIntervalSince(kill),
                    f.what))
        }
        // Failover: from the kill until the last answer, from any survivor, that still named the
        // dead region (the prober asks every live node 100 times a second about contacts that
        // region took before the kill). With no such answer the failover was not seen: it is
        // reported as such, never as 0 s.
        let window = probes.filter { $0.at > kill && (restart == nil || $0.at < restart!) }
        let stale = window.filter { $0.region == dead }
        let failover = stale.map { $0.at.timeIntervalSince(kill) }.max()
        if let failover {
            print(
                String(
                    format:
                        "  failover: every node routed around %@ %.3f s after the kill (%d prober answers after it, %d still naming it)",
                    dead, failover, window.count, stale.count))
        } else {
            print(
                "  failover: NOT OBSERVED — no prober answer after the kill named \(dead) (\(window.count) answers, \(probeErrors.filter { $0 != victim }.count) probes failed)"
            )
            failures.append("the failover was not observed")
        }
        let failoverOrNow = failover ?? 0
        if failover != nil {
            let during = routed.filter { $0.at > kill && $0.at.timeIntervalSince(kill) <= failoverOrNow }
            let misrouted = during.filter { $0.region == dead }.count
            print("  contacts routed to the dead region during convergence: \(misrouted) of \(during.count)")
        }
        let afterward = routed.filter { $0.at.timeIntervalSince(kill) > failoverOrNow + 0.5 && (restart == nil || $0.at < restart!) }
        let wrong = afterward.filter { $0.region == dead }.count
        print("  after convergence, until the restart: \(wrong) of \(afterward.count) contacts routed to it")
        // No contact routed in that time would leave "routed around it" unseen.
        if wrong > 0 { failures.append("contacts were routed to \(dead) after convergence") }
        if afterward.isEmpty { failures.append("no contact was routed between convergence and the restart") }
        if let restart {
            let back = routed.filter { $0.at > restart && $0.region == dead }.first.map { $0.at.timeIntervalSince(restart) }
            print(
                back.map { String(format: "  %@ took contacts again %.2f s after its restart (hold-down included)", dead, $0) }
                    ?? "  \(dead) has not taken contacts again yet (hold-down)")
        }

        // Streams: every acknowledged record readable, exactly once, from a surviving node.
        _ = eventually(timeout: .seconds(20)) {
            self.alive(self.victim) && self.cluster.view(from: 0)?[self.cluster.nodes[self.victim].name]?.status == "alive"
        }
        for stream in ["agent-events", "contact-events"] {
            let (acked, unknown) = lock.withLock { (recordsAcked[stream] ?? [], recordsUnknown[stream] ?? []) }
            var found: [String: Int] = [:]
            for p in 0..<3 { for id in readIDs(stream, partition: p) where id.hasPrefix("\(stream)#") { found[id, default: 0] += 1 } }
            let missing = acked.filter { found[$0] == nil }.count
            let doubled = found.values.filter { $0 > 1 }.count
            let invented = found.keys.filter { !acked.contains($0) && !unknown.contains($0) }.count
            print(
                "  \(stream): \(acked.count) records acknowledged, \(acked.count - missing) readable, \(missing) missing, \(doubled) twice, \(invented) never written (\(unknown.count) of unknown outcome)"
            )
            if missing > 0 || doubled > 0 || invented > 0 { failures.append("\(stream) does not hold exactly the acknowledged records") }
        }

        // Counters: every node reads the same totals, and they hold every acknowledged increment.
        let (acked, unknown) = lock.withLock { (counterAcked, counterUnknown) }
        var totals: [[Int]] = []
        let agreed = eventually(timeout: .seconds(20), interval: .milliseconds(200)) {
            totals = self.cluster.nodes.indices.map { i in
                acked.keys.sorted().map { k in
                    guard let r = self.call("GET", i, "/v1/tables/queues/items/\(k)"), let j = try? JSON.parse(r.body),
                        case .number(let n)? = j["item"]?["offered"]
                    else { return -1 }
                    return Int(n) ?? -1
                }
            }
            return Set(totals).count == 1
        }
        let expected = acked.keys.sorted().map { acked[$0]! }
        let within =
            totals.first.map { zip($0, acked.keys.sorted()).allSatisfy { v, k in v >= acked[k]! && v <= acked[k]! + (unknown[k] ?? 0) } }
            ?? false
        print(
            "  queue counters: \(expected.reduce(0, +)) acknowledged increments over \(acked.count) queues; every node reads \(totals.first?.reduce(0, +) ?? -1) (\(agreed ? "same on every node" : "NODES DIFFER"), \(unknown.values.reduce(0, +)) of unknown outcome)"
        )
        if !(agreed && within) { failures.append("queue counters differ between nodes or from the acknowledged increments") }
        let ok = failures.isEmpty
        print(
            ok
                ? "\nOK: nothing acknowledged was lost; every node routed around the dead region."
                : "\nFAILED: " + failures.joined(separator: "; ") + ".")
        return ok
    }

    /// Payload ids of a partition's records, as node 0 serves them.
    func readIDs(_ stream: String, partition p: Int) -> [String] {
        var out: [String] = []
        var from = "trim-horizon"
        while true {
            guard let r = call("GET", 0, "/v1/streams/\(stream)/partitions/\(p)/records?from=\(from)&limit=1000", timeout: .seconds(5)),
                r.status == 200, let j = try? JSON.parse(r.body), case .array(let records)? = j["records"], !records.isEmpty
            else { return out }
            for rec in records {
                guard let data = rec["data"]?.stringValue, let bytes = Base64.decode(data) else { continue }
                out.append(String(String(decoding: bytes, as: UTF8.self).prefix { $0 != " " }))
            }
            guard let next = j["next"]?.stringValue else { return out }
            from = next
        }
    }
}

struct DemoError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
