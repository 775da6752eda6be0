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
    /// Stream records: payload (JSON, see `CheckProcessors.payload`) → (partition, sequence)
    /// when acknowledged; payloads whose put failed or timed out may or may not be in the log.
    var recordsAcked: [String: (partition: Int, sequence: String)] = [:]
    var recordsMaybe: Set<String> = []
    static let partitions = 3
    var stream: String { "check-\(run)" }
    /// Route answers (prober at 100 Hz on every node) and the fault timeline they are judged by.
    /// `contact` indexes `probeContacts`.
    /// A route answer, with the fingerprint of the route table it came from: answers that differ
    /// from equal tables cannot be; from different tables, the inputs differ (a stale `_routing`,
    /// a hold-down running on one node only).
    struct Answer { var at: Date; var node: Int; var contact: Int; var region: String; var table = "" }
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
    /// Each node's membership view ("r1 alive, r2 dead, …") and route health input (the nodes
    /// each region may send contacts to, hold-downs applied), sampled every 250 ms, so a broken
    /// agreement can be shown with what every node believed at that moment.
    struct MembershipSample { var at: Date; var node: Int; var view: String; var routing = "" }
    var membershipSamples: [MembershipSample] = []
    /// The processor workload on the stream (see `CheckProcessors`).
    var processors: CheckProcessors?

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
        let workload = CheckProcessors(run: run, stream: stream)
        try workload.setUp(toward: apis[0]) { method, path, body in self.call(method, 0, path, body)?.status }
        processors = workload
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
                            let j = r.flatMap { $0.status == 200 ? try? JSON.parse($0.body) : nil }
                            let region = j?["region"]?.stringValue
                            lock.withLock {
                                probeStats[node].sent += 1
                                if let region {
                                    answers.append(
                                        Answer(at: Date(), node: node, contact: c, region: region, table: j?["table"]?.stringValue ?? "?"))
                                } else {
                                    probeStats[node].failed += 1
                                }
                            }
                        }
                    })
            }
        }
        for node in apis.indices {
            threads.append(
                Thread { [self] in
                    while !isStopping {
                        let r = call("GET", node, "/v1/members", timeout: .milliseconds(500))
                        let view =
                            r.flatMap { $0.status == 200 ? (try? JSON.parse($0.body))?["members"]?.arrayValue : nil }.map {
                                $0.compactMap { m in
                                    guard let n = m["name"]?.stringValue, let st = m["status"]?.stringValue else { return nil }
                                    return "\(n) \(st)"
                                }.joined(separator: ", ")
                            } ?? "(no answer)"
                        // The route table's health input as this node holds it (`GET /v1/split`): which
                        // nodes of each region may take contacts now (hold-downs show as a region
                        // missing its node), and the table's fingerprint.
                        let split = call("GET", node, "/v1/split", timeout: .milliseconds(500))
                        let routing =
                            split.flatMap { $0.status == 200 ? try? JSON.parse($0.body) : nil }.map { j -> String in
                                let regions = (j["regions"]?.objectValue ?? []).sorted { $0.0 < $1.0 }
                                let serving = regions.map { r, health in
                                    let nodes = health["nodes"]?.arrayValue?.compactMap(\.stringValue) ?? []
                                    return "\(r) [\(nodes.joined(separator: " "))]"
                                }
                                let minority = j["minority"] == .bool(true) ? ", minority" : ""
                                return "table \(j["table"]?.stringValue ?? "?")\(minority): \(serving.joined(separator: ", "))"
                            } ?? "(no answer)"
                        lock.withLock {
                            membershipSamples.append(MembershipSample(at: Date(), node: node, view: view, routing: routing))
                        }
                        Thread.sleep(forTimeInterval: 0.25)
                    }
                })
        }
        for w in 0..<streamWriters {
            threads.append(
                Thread { [self] in
                    var local = SeededGenerator(seed: UInt64(w) &+ 4242)
                    var i = 0
                    while !isStopping {
                        i += 1
                        let q = "\(run)-q\(local.next() % UInt64(CheckProcessors.keys))", n = Int(local.next() % 10) + 1
                        let payload = CheckProcessors.payload(id: "\(run)-\(w)-\(i)", q: q, n: n)
                        let node = Int(local.next() % UInt64(apis.count))
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
}

public struct CheckFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

extension Int {
    var isSuccess: Bool { (200..<300).contains(self) }
}
