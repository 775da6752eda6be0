import Foundation
import TandemCore
import TandemTestKit
import Transport

/// The chaos checker (`tandem check`). Workloads run against every node while a seeded nemesis
/// kills, stalls, partitions and degrades regions through a fault command (`cluster/chaos`);
/// after healing, the checker verifies what the cluster promised and prints a verdict with
/// figures, naming the seed so the run can be replayed.
public struct Check {
    public struct Options: Sendable {
        /// host:port of each region's API, in region order (r1, r2, …).
        public var apis: [String]
        /// Command that injects faults: `<cmd> kill r2`, `stop`, `start`, `partition r1`, `heal`, `loss 10%`, `clear`.
        public var nemesis: String
        /// Seconds of workload under faults.
        public var seconds = 180.0
        /// Seed of the fault schedule (random when nil; printed either way).
        public var seed: UInt64?
        /// Seconds between faults (each lasts about half of that).
        public var faultEvery = 12.0
        public var counterWriters = 4
        public var setWriters = 2
        /// Packet loss (percent) kept on every region for the whole run, on top of the faults.
        public var loss = 0
        /// Seconds the cluster may take to route around a dead region, or to agree again after a change.
        public var routeBound = 5.0

        public init(apis: [String], nemesis: String) {
            self.apis = apis
            self.nemesis = nemesis
        }
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    /// Runs the check and prints the verdict; false on any violation.
    public func run() throws -> Bool {
        let o = options
        let seed = o.seed ?? UInt64.random(in: 1...999_999)
        let regions = o.apis.indices.map { "r\($0 + 1)" }
        print("chaos check: \(regions.count) regions, \(Int(o.seconds)) s of faults, seed \(seed)")
        let run = CheckRun(apis: o.apis, regions: regions, nemesis: o.nemesis, seed: seed)
        run.backgroundLoss = o.loss
        run.routeBound = o.routeBound
        run.setWriters = o.setWriters
        if o.loss > 0 { print("with \(o.loss)% packet loss on every region throughout") }
        try run.setUp()
        let started = Date()
        run.startWorkloads(counterWriters: o.counterWriters, setWriters: o.setWriters)
        run.nemesisLoop(until: started.addingTimeInterval(o.seconds), every: o.faultEvery)
        run.stopWorkloads()
        let verdict = run.healAndVerify()
        print(verdict.report)
        print(verdict.ok ? "VERDICT: OK (seed \(seed))" : "VERDICT: FAILED (seed \(seed))")
        return verdict.ok
    }
}

/// One checker run: the shared log of what was acknowledged, the workloads, the nemesis.
final class CheckRun: @unchecked Sendable {
    let apis: [String]
    let regions: [String]
    let nemesis: String
    var rng: SeededGenerator
    /// Items are named per run, so a cluster that ran a check before starts this one clean.
    let run = String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36)
    let lock = NSLock()
    var stopping = false
    var threads: [Thread] = []
    var faults: [String] = []

    // What the workloads saw. "maybe": the request failed or timed out, so it may or may not
    // have been applied; acknowledged: answered 200 (durable on the node that took it).
    static let counters = 8
    var counterAcked = [Int](repeating: 0, count: CheckRun.counters)
    var counterMaybe = [Int](repeating: 0, count: CheckRun.counters)
    enum Presence { case present, absent, either }
    /// Stream records: payload → (partition, sequence) when acknowledged; payloads whose put
    /// failed or timed out may or may not be in the log.
    var recordsAcked: [String: (partition: Int, sequence: String)] = [:]
    var recordsMaybe: Set<String> = []
    static let partitions = 3
    var stream: String { "check-\(run)" }
    /// Route answers (prober at 100 Hz on every node) and the fault timeline they are judged by.
    /// `contact` indexes `probeContacts`.
    struct Answer { var at: Date; var node: Int; var contact: Int; var region: String }
    var answers: [Answer] = []
    /// Contacts the prober asks about, two homed in each region when the run starts, so that
    /// every region's failover shows in the answers.
    var probeContacts: [String] = []
    static let probeHz = 100.0
    /// Threads probing each node. Slots are 10 ms apart; a request that waits out its 200 ms
    /// timeout (a lost packet, a stalled node) holds one thread, and the others keep the
    /// schedule. Under 10% loss about a fifth of requests time out, ~4 threads' worth at 100 Hz.
    static let probeThreads = 8
    /// Per node: probe slots due, requests sent, answers, and when probing started and ended.
    var probeStats: [(sent: Int, failed: Int, missed: Int)] = []
    var probeSlots: [Int] = []
    var probingFrom = Date(), probingUntil = Date()
    /// The least share of a node's answerable probes (due while it was neither killed nor
    /// stopped) that must be answered for its route answers to be judged.
    static let minAnsweredShare = 0.5
    var setWriters = 2
    var events: [(at: Date, fault: String, undo: Bool)] = []
    var backgroundLoss = 0
    /// How long the cluster may take to route around a dead region or agree again.
    var routeBound = 5.0
    var regionNames: [String] = []
    var elements: [String: Presence] = [:]

    init(apis: [String], regions: [String], nemesis: String, seed: UInt64) {
        self.apis = apis
        self.regions = regions
        self.nemesis = nemesis
        rng = SeededGenerator(seed: seed)
    }

    func call(_ method: String, _ node: Int, _ path: String, _ body: String? = nil, timeout: Duration = .seconds(2)) -> HTTPClient.Response?
    {
        try? HTTPClient.request(method, apis[node], path, body: body.map { Array($0.utf8) }, timeout: timeout)
    }

    /// A read for the verdict: retried, since loss may still be on (and a lost SYN alone costs
    /// a second); a node that never answers reads as nil.
    func read(_ node: Int, _ path: String) -> HTTPClient.Response? {
        for _ in 0..<6 {
            if let r = call("GET", node, path, timeout: .seconds(4)), r.status < 500 { return r }
        }
        return nil
    }

    func setUp() throws {
        // Faults from an earlier run must not linger.
        _ = sh("\(nemesis) heal")
        _ = sh("\(nemesis) clear")
        for r in regions { _ = sh("\(nemesis) start \(r)") }
        if backgroundLoss > 0 { sh("\(nemesis) loss \(backgroundLoss)%") }
        guard
            eventually(
                timeout: .seconds(30), { self.call("PUT", 0, "/v1/tables/check", #"{"partitionKey":"k"}"#)?.status.isSuccess ?? false }),
            eventually(timeout: .seconds(30), { self.apis.indices.allSatisfy { self.call("GET", $0, "/v1/tables/check")?.status == 200 } })
        else {
            throw CheckFailure("the table 'check' did not reach every node")
        }
        // An equal split over the regions' names as the nodes report them.
        guard let r = call("GET", 0, "/v1/members"), let j = try? JSON.parse(r.body), case .array(let members)? = j["members"] else {
            throw CheckFailure("no member list from \(apis[0])")
        }
        var byName: [String: String] = [:]
        for m in members { if let n = m["name"]?.stringValue, let reg = m["region"]?.stringValue { byName[n] = reg } }
        regionNames = regions.map { byName[$0] ?? $0 }
        let weights = regionNames.map { "\"\($0)\":1" }.joined(separator: ",")
        guard eventually(timeout: .seconds(30), { self.call("PUT", 0, "/v1/split", #"{"weights":{\#(weights)}}"#)?.status == 200 }) else {
            throw CheckFailure("the split was refused")
        }
        let body = #"{"partitions":\#(CheckRun.partitions),"retentionHours":24}"#
        guard eventually(timeout: .seconds(30), { self.call("PUT", 0, "/v1/streams/\(self.stream)", body)?.status.isSuccess ?? false }),
            eventually(
                timeout: .seconds(30),
                { self.apis.indices.allSatisfy { self.call("GET", $0, "/v1/streams/\(self.stream)")?.status == 200 } }),
            eventually(
                timeout: .seconds(30),
                { self.call("POST", 0, "/v1/streams/\(self.stream)/records", #"{"key":"warm-up","data":"AA=="}"#)?.status == 200 })
        else {
            throw CheckFailure("the stream '\(stream)' did not become writable on every node")
        }
        // Probe contacts: two homed in each region, once the split routes to every region.
        guard
            eventually(
                timeout: .seconds(30), interval: .milliseconds(500),
                {
                    var byRegion: [String: [String]] = [:]
                    for c in (0..<2_000).map({ "probe-\($0)" }) {
                        guard let r = self.call("GET", 0, "/v1/route?contact=\(c)"), r.status == 200,
                            let region = (try? JSON.parse(r.body))?["region"]?.stringValue
                        else { return false }
                        if byRegion[region, default: []].count < 2 { byRegion[region, default: []].append(c) }
                        if self.regionNames.allSatisfy({ byRegion[$0]?.count == 2 }) {
                            self.probeContacts = self.regionNames.flatMap { byRegion[$0]! }
                            return true
                        }
                    }
                    return false
                })
        else { throw CheckFailure("no probe contacts homed in every region (is every region eligible?)") }
    }

    /// Runs a fault command and waits for it (posix_spawn + waitpid: Foundation's Process can
    /// miss the exit of a child whose own children live on, as a restarted node does).
    @discardableResult
    func sh(_ command: String) -> Int32 {
        guard let pid = try? spawn("/bin/sh", ["-c", command], log: "/dev/null") else { return -1 }
        return waitExit(pid)
    }

    var isStopping: Bool { lock.withLock { stopping } }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Workloads

    func startWorkloads(counterWriters: Int, setWriters: Int, streamWriters: Int = 2) {
        // The prober: slot k of a node is due at start + k / probeHz and asks about contact
        // k mod n. A slot no thread could take while it was due is missed, never sent late.
        let start = Date()
        probingFrom = start
        probeStats = Array(repeating: (0, 0, 0), count: apis.count)
        probeSlots = Array(repeating: 0, count: apis.count)
        for node in apis.indices {
            for _ in 0..<CheckRun.probeThreads {
                threads.append(
                    Thread { [self] in
                        let session = try? HTTPSession(apis[node])
                        while !isStopping {
                            let k = lock.withLock {
                                defer { probeSlots[node] += 1 }; return probeSlots[node]
                            }
                            let due = start.addingTimeInterval(Double(k) / CheckRun.probeHz)
                            let wait = due.timeIntervalSinceNow
                            if wait < -1 / CheckRun.probeHz {
                                lock.withLock { probeStats[node].missed += 1 }
                                continue
                            }
                            if wait > 0 { usleep(UInt32(wait * 1e6)) }
                            let c = k % probeContacts.count
                            let r = try? session?.request("GET", "/v1/route?contact=\(probeContacts[c])", timeout: .milliseconds(200))
                            let region = r.flatMap { $0.status == 200 ? (try? JSON.parse($0.body))?["region"]?.stringValue : nil }
                            lock.withLock {
                                probeStats[node].sent += 1
                                if let region {
                                    answers.append(Answer(at: Date(), node: node, contact: c, region: region))
                                } else {
                                    probeStats[node].failed += 1
                                }
                            }
                        }
                    })
            }
        }
        for w in 0..<streamWriters {
            threads.append(
                Thread { [self] in
                    var local = SeededGenerator(seed: UInt64(w) &+ 4242)
                    var i = 0
                    while !isStopping {
                        i += 1
                        let payload = "\(run)-\(w)-\(i)", node = Int(local.next() % UInt64(apis.count))
                        let body = #"{"key":"k-\#(i % 64)","data":"\#(Base64.encode(Array(payload.utf8)))"}"#
                        let r = call("POST", node, "/v1/streams/\(stream)/records", body, timeout: .seconds(4))
                        if r?.status == 200, let j = try? JSON.parse(r!.body), case .number(let p)? = j["partition"],
                            let seq = j["sequence"]?.stringValue
                        {
                            lock.withLock { recordsAcked[payload] = (Int(p) ?? -1, seq) }
                        } else {
                            lock.withLock { _ = recordsMaybe.insert(payload) }
                            Thread.sleep(forTimeInterval: 0.05)
                        }
                    }
                })
        }
        for w in 0..<counterWriters {
            threads.append(
                Thread { [self] in
                    var local = SeededGenerator(seed: UInt64(w) &+ 77)
                    while !isStopping {
                        let k = Int(local.next() % UInt64(CheckRun.counters)), node = Int(local.next() % UInt64(apis.count))
                        let ok = call("PATCH", node, "/v1/tables/check/items/\(run)-ctr-\(k)", #"{"add":{"n":1}}"#)?.status == 200
                        lock.withLock { if ok { counterAcked[k] += 1 } else { counterMaybe[k] += 1 } }
                        if !ok { Thread.sleep(forTimeInterval: 0.05) }
                    }
                })
        }
        // Each element is added once, and sometimes removed afterwards on the node that took
        // the add (an observed remove: it only removes adds that node has seen).
        for w in 0..<setWriters {
            threads.append(
                Thread { [self] in
                    var local = SeededGenerator(seed: UInt64(w) &+ 991)
                    var i = 0
                    while !isStopping {
                        i += 1
                        let e = "e-\(w)-\(i)", node = Int(local.next() % UInt64(apis.count))
                        let added =
                            call("PATCH", node, "/v1/tables/check/items/\(run)-set-\(w)", #"{"addToSet":{"members":["\#(e)"]}}"#)?.status
                            == 200
                        var presence: Presence = added ? .present : .either
                        if added && local.next() % 3 == 0 {
                            let removed =
                                call("PATCH", node, "/v1/tables/check/items/\(run)-set-\(w)", #"{"removeFromSet":{"members":["\#(e)"]}}"#)?
                                .status == 200
                            presence = removed ? .absent : .either
                        }
                        lock.withLock { elements[e] = presence }
                        if !added { Thread.sleep(forTimeInterval: 0.05) }
                    }
                })
        }
        for t in threads { t.start() }
    }

    func stopWorkloads() {
        lock.withLock {
            stopping = true
            probingUntil = Date()
        }
        _ = eventually(timeout: .seconds(30)) { self.threads.allSatisfy(\.isFinished) }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Nemesis

    func nemesisLoop(until end: Date, every interval: Double) {
        while Date().addingTimeInterval(interval) < end {
            Thread.sleep(forTimeInterval: interval / 2)
            let r = regions[Int(rng.next() % UInt64(regions.count))]
            let (fault, undo): (String, String)
            switch rng.next() % 5 {
            case 0: (fault, undo) = ("kill \(r)", "start \(r)")
            case 1: (fault, undo) = ("stop \(r)", "start \(r)")
            case 2: (fault, undo) = ("partition \(r)", "heal")
            case 3: (fault, undo) = ("loss 10%", "clear")
            default: (fault, undo) = ("delay 100ms \(r)", "clear")
            }
            let at = Date()
            sh("\(nemesis) \(fault)")
            lock.withLock { events.append((at, fault, false)) }
            Thread.sleep(forTimeInterval: interval / 2)
            sh("\(nemesis) \(undo)")
            if undo == "clear" && backgroundLoss > 0 { sh("\(nemesis) loss \(backgroundLoss)%") }
            lock.withLock { events.append((Date(), fault, true)) }
            let line = String(format: "  %-18@ for %.1f s", fault as NSString, Date().timeIntervalSince(at))
            print(line)
            faults.append(fault)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Verdict

    struct Verdict {
        var ok = true
        var report = ""
        mutating func check(_ condition: Bool, _ line: String) {
            if !condition { ok = false }
            report += (condition ? "  ok    " : "  FAIL  ") + line + "\n"
        }
    }

    func healAndVerify() -> Verdict {
        var v = Verdict()
        defer { sh("\(nemesis) clear") }
        sh("\(nemesis) heal")
        sh("\(nemesis) clear")
        // With background loss, the cluster must converge through it too.
        if backgroundLoss > 0 { sh("\(nemesis) loss \(backgroundLoss)%") }
        for r in regions { sh("\(nemesis) start \(r)") }
        let healStart = Date()
        func digests() -> [String?] {
            apis.indices.map { i in
                guard let r = read(i, "/v1/tables/check"), r.status == 200, let j = try? JSON.parse(r.body) else { return nil }
                return j["digest"]?.stringValue
            }
        }
        let converged = eventually(timeout: .seconds(90), interval: .milliseconds(200)) {
            let d = digests()
            return d.allSatisfy { $0 != nil } && Set(d).count == 1
        }
        let convergence = Date().timeIntervalSince(healStart)
        v.report +=
            "faults injected: \(faults.count) (\(Set(faults.map { $0.split(separator: " ")[0] }).sorted().joined(separator: ", ")))\n"
        v.check(converged, String(format: "every replica of the table equal after the heal (%.1f s)", convergence))

        // Counters: every node holds the same value, at least every acknowledged increment and
        // at most those plus the ones whose outcome is unknown.
        var counterLines: [String] = []
        var countersOK = true
        let (acked, maybe, expected) = lock.withLock { (counterAcked, counterMaybe, elements) }
        for k in 0..<CheckRun.counters {
            let values = apis.indices.map { i -> Int? in
                guard let r = read(i, "/v1/tables/check/items/\(run)-ctr-\(k)"), r.status == 200,
                    let j = try? JSON.parse(r.body), case .number(let n)? = j["item"]?["n"]
                else { return acked[k] == 0 && maybe[k] == 0 ? 0 : nil }
                return Int(n)
            }
            let same = Set(values).count == 1
            let value = values.first.flatMap { $0 } ?? -1
            let within = value >= acked[k] && value <= acked[k] + maybe[k]
            if !(same && within) {
                countersOK = false
                counterLines.append(
                    "ctr-\(k): nodes \(values.map { $0.map(String.init) ?? "?" }), acknowledged \(acked[k]), unknown \(maybe[k])")
            }
        }
        v.check(
            countersOK,
            "counters: \(acked.reduce(0, +)) acknowledged increments all counted, none invented (\(maybe.reduce(0, +)) of unknown outcome)")
        for l in counterLines { v.report += "        \(l)\n" }

        // Sets: the add-wins expectation, element by element, on every node.
        var wrong: [String] = []
        for w in 0..<setWriters {
            let contents = apis.indices.map { i -> Set<String>? in
                guard let r = read(i, "/v1/tables/check/items/\(run)-set-\(w)") else { return nil }
                if r.status == 404 { return [] }
                guard r.status == 200, let j = try? JSON.parse(r.body), case .array(let xs)? = j["item"]?["members"]?["$SS"] else {
                    return []
                }
                return Set(xs.compactMap(\.stringValue))
            }
            // A node that cannot be read cannot be checked: that is a failure, not a skip.
            for (i, c) in contents.enumerated() where c == nil { wrong.append("set-\(w) unreadable on \(regions[i])") }
            if Set(contents.map { $0.map { $0.sorted() } }).count != 1 { wrong.append("set-\(w) differs between nodes") }
            guard let seen = contents.first ?? nil else { continue }
            for (e, presence) in expected where e.hasPrefix("e-\(w)-") {
                if presence == .present && !seen.contains(e) { wrong.append("\(e) acknowledged added, missing") }
                if presence == .absent && seen.contains(e) { wrong.append("\(e) acknowledged removed, present") }
            }
        }
        v.check(wrong.isEmpty, "sets: \(expected.count) elements match the add-wins expectation on every node")
        for l in wrong.prefix(10) { v.report += "        \(l)\n" }
        verifyStream(&v)
        verifyRoutes(&v)
        return v
    }

    /// Route answers judged against the fault timeline: no node names a region killed or
    /// stalled longer than the bound ago, and after every change (a fault, or its undo) the
    /// nodes that answer agree again within the bound — except while a partition lasts, when
    /// each side keeps its own view by design (the minority freezes its view; see Routing).
    func verifyRoutes(_ v: inout Verdict) {
        let (answers, events, stats) = lock.withLock { (self.answers, self.events, self.probeStats) }

        // Enough answers to judge by? A node's answerable probes are those due while it was
        // neither killed nor stopped (the client is never partitioned away). Faults cost a
        // working prober some answers (lost packets, 200 ms timeouts); when fewer than half
        // of a node's answerable probes were answered, the prober was not keeping up, and
        // what it missed is no longer a small random sample of what the node did.
        var downSeconds = Array(repeating: 0.0, count: apis.count)
        var deadWindows: [(from: Date, to: Date, node: Int)] = []
        for (k, e) in events.enumerated() where !e.undo {
            let parts = e.fault.split(separator: " ")
            guard parts[0] == "kill" || parts[0] == "stop", let i = regions.firstIndex(of: String(parts[1])) else { continue }
            let end = events[(k + 1)...].first { $0.undo && $0.fault == e.fault }?.at ?? probingUntil
            deadWindows.append((e.at, end, i))
            downSeconds[i] += end.timeIntervalSince(e.at)
        }
        let seconds = probingUntil.timeIntervalSince(probingFrom)
        var enough = true
        var perNode: [String] = []
        var dueAll = 0, answeredAll = 0
        for i in apis.indices {
            let due = Int(seconds * CheckRun.probeHz)
            let answerable = max(1, Int((seconds - downSeconds[i]) * CheckRun.probeHz))
            let answered = answers.filter { $0.node == i }.count
            dueAll += due
            answeredAll += answered
            if Double(answered) < CheckRun.minAnsweredShare * Double(answerable) { enough = false }
            perNode.append(
                String(
                    format: "%@ %d of %d answerable (%.0f%%; %d due, %d sent, %d failed, %d slots missed)",
                    regions[i], answered, answerable, 100 * Double(answered) / Double(answerable), due,
                    stats[i].sent, stats[i].failed, stats[i].missed))
        }
        v.check(
            enough,
            String(
                format:
                    "prober: %d answers of %d probes due (%d Hz × %d nodes × %.0f s); at least %.0f%% of each node's answerable probes needed to judge routes",
                answeredAll, dueAll, Int(CheckRun.probeHz), apis.count, seconds, 100 * CheckRun.minAnsweredShare))
        for l in perNode { v.report += "        \(l)\n" }

        // Failover after each kill or stall of region X. The contacts survivors sent to X in
        // the second before the fault must, after it, first still name X (the failover is the
        // last such answer) and then name another region. A fault with no answers before it,
        // or none naming X after it, is unobserved: never a failover of 0 s. X taking no probe
        // contact at the fault (still in its hold-down after an earlier fault) has none to see.
        var stale = 0
        var failovers: [Double] = []
        var unobserved: [String] = []
        var notRouted = 0
        for w in deadWindows {
            let x = regionNames[w.node]
            let survivors = answers.filter { $0.node != w.node }
            let before = survivors.filter { $0.at < w.from && $0.at >= w.from.addingTimeInterval(-1) }
            let homed = Set(before.filter { $0.region == x }.map(\.contact))
            let after = survivors.filter { $0.at > w.from && $0.at < w.to && homed.contains($0.contact) }
            stale +=
                survivors.filter { $0.at > w.from && $0.at < w.to && $0.region == x && $0.at.timeIntervalSince(w.from) > routeBound }.count
            let label = String(format: "%@ at +%.1f s", regions[w.node], w.from.timeIntervalSince(probingFrom))
            if before.isEmpty {
                unobserved.append("\(label): no answers in the second before")
                continue
            }
            if homed.isEmpty {
                notRouted += 1
                continue
            }
            guard let lastStale = after.filter({ $0.region == x }).map(\.at).max() else {
                unobserved.append("\(label): no answer after it named \(x)")
                continue
            }
            guard after.contains(where: { $0.at > lastStale && $0.region != x }) else {
                unobserved.append("\(label): still named \(x) at the last answer before the fault ended")
                continue
            }
            failovers.append(lastStale.timeIntervalSince(w.from))
        }
        let slowest = failovers.max().map { String(format: "%.2f s", $0) } ?? "none observed"
        v.check(
            stale == 0, String(format: "routes: no answer named a region dead for more than %.0f s (%d answers did)", routeBound, stale))
        v.check(
            unobserved.isEmpty,
            "routes: failover seen after every kill/stall (slowest \(slowest); \(failovers.count) observed, \(unobserved.count) unobserved, \(notRouted) not taking probe contacts at the time, of \(deadWindows.count) kills/stalls; \(answers.count) answers)"
        )
        for l in unobserved.prefix(10) { v.report += "        \(l)\n" }

        // Agreement: answers in 100 ms buckets; a bucket agrees when every node that answered
        // gave the same region for each probe contact.
        func agrees(_ bucket: [Answer]) -> Bool {
            Dictionary(grouping: bucket, by: \.contact).values.allSatisfy { Set($0.map(\.region)).count == 1 }
        }
        let changes = events.map(\.at)
        var worstAgreement = 0.0
        var disagreements = 0
        for (k, change) in changes.enumerated() {
            let next = k + 1 < changes.count ? changes[k + 1] : Date()
            // Partitions: skip until healed (each side keeps its own view on purpose).
            if let e = events.last(where: { $0.at <= change }), e.fault.hasPrefix("partition"), !e.undo { continue }
            let window = answers.filter { $0.at >= change && $0.at < next }
            let buckets = Dictionary(grouping: window) { Int($0.at.timeIntervalSince(change) * 10) }
            let lastDisagreeing = buckets.filter { !agrees($0.value) }.keys.max()
            if let b = lastDisagreeing {
                let t = Double(b + 1) / 10
                worstAgreement = max(worstAgreement, t)
                if t > routeBound { disagreements += 1 }
            }
        }
        v.check(
            disagreements == 0,
            String(
                format: "routes: every node answered alike within %.0f s of each change (slowest %.1f s over %d changes)",
                routeBound, worstAgreement, changes.count))
    }

    /// A partition's whole log as one node serves it: (sequence, payload) in order.
    func readAll(_ node: Int, partition p: Int) -> [(String, String)]? {
        var out: [(String, String)] = []
        var from = "trim-horizon"
        while true {
            guard let r = read(node, "/v1/streams/\(stream)/partitions/\(p)/records?from=\(from)&limit=1000"),
                r.status == 200, let j = try? JSON.parse(r.body), case .array(let records)? = j["records"]
            else { return nil }
            for rec in records {
                guard let seq = rec["sequence"]?.stringValue, let data = rec["data"]?.stringValue, let bytes = Base64.decode(data) else {
                    return nil
                }
                out.append((seq, String(decoding: bytes, as: UTF8.self)))
            }
            guard !records.isEmpty, let next = j["next"]?.stringValue else { return out }
            from = next
        }
    }

    /// Every acknowledged record exactly once, at its sequence, in the same order on every
    /// replica; nothing that was not put.
    func verifyStream(_ v: inout Verdict) {
        let (acked, maybe) = lock.withLock { (recordsAcked, recordsMaybe) }
        var problems: [String] = []
        var logs: [[[(String, String)]]] = []
        // Replicas catch up to the commit index after the heal: wait until they agree.
        let agreed = eventually(timeout: .seconds(60), interval: .milliseconds(500)) {
            logs = (0..<CheckRun.partitions).map { p in self.apis.indices.map { self.readAll($0, partition: p) ?? [] } }
            return logs.allSatisfy { perNode in
                perNode.dropFirst().allSatisfy { $0.map(\.0) == perNode[0].map(\.0) && $0.map(\.1) == perNode[0].map(\.1) }
            }
        }
        if !agreed { problems.append("replicas of some partition still differ 60 s after the heal") }
        var found: [String: (Int, String)] = [:]
        for (p, perNode) in logs.enumerated() {
            for (seq, payload) in perNode.first ?? [] where payload != "\u{0}" {
                if found[payload] != nil { problems.append("\(payload) appears twice") }
                found[payload] = (p, seq)
                if acked[payload] == nil && !maybe.contains(payload) { problems.append("\(payload) at \(p)/\(seq) was never put") }
            }
        }
        for (payload, at) in acked {
            guard let f = found[payload] else {
                problems.append("acknowledged \(payload) (\(at.partition)/\(at.sequence)) is missing"); continue
            }
            if f.0 != at.partition || f.1 != at.sequence {
                problems.append("\(payload) acknowledged at \(at.partition)/\(at.sequence), found at \(f.0)/\(f.1)")
            }
        }
        let total = logs.map { $0.first?.count ?? 0 }.reduce(0, +)
        v.check(
            problems.isEmpty,
            "stream: \(acked.count) acknowledged records all present once, at their sequence, same order on every replica (\(total) in the log, \(maybe.count) of unknown outcome)"
        )
        for l in problems.prefix(10) { v.report += "        \(l)\n" }
    }
}

public struct CheckFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

extension Int {
    var isSuccess: Bool { (200..<300).contains(self) }
}
