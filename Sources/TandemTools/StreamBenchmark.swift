import Foundation
import TandemCore
import TandemTestKit
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Figures for streams, each next to the issue's target and the fsync policy. Three real nodes
/// on loopback; the load generator shares the machine's cores with them.
public struct StreamBenchmark {
    public struct Options: Sendable {
        public var seconds = 10
        public var fastRuns = 7
        public var lanRuns = 3
        public var only: String?
        public var wanDelayMs = 20
        public var depth = 4

        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    static let fsyncPolicy = "fsync: every put acknowledged only after fsync on a majority (leader included), group commit"

    public func run() throws {
        let parts = Set((options.only ?? "pipelined,serial,delivery,failover,follower-wan").split(separator: ",").map(String.init))
        print(
            "streams benchmark — 3 real nodes on 127.0.0.1, 256-byte records, load generator on the same \(ProcessInfo.processInfo.activeProcessorCount) cores"
        )
        print("\(StreamBenchmark.fsyncPolicy); data dirs under \(NSTemporaryDirectory())\n")
        fflush(nil)
        if parts.contains("pipelined") || parts.contains("serial") || parts.contains("delivery") {
            let (cluster, leader) = try start(profile: "fast")
            let follower = (0..<3).first { $0 != leader }!
            if parts.contains("pipelined") { try pipelined(cluster, leader) }
            if parts.contains("serial") { try serial(cluster, leader, follower) }
            if parts.contains("delivery") { try delivery(cluster, leader, follower) }
        }
        if parts.contains("failover") {
            try failover(profile: "fast", runs: options.fastRuns, target: "median ≤ 0.6 s, max ≤ 1 s") { $0.median <= 0.6 && $0.max <= 1 }
            try failover(profile: "lan", runs: options.lanRuns, target: "reported (default profile)") { _ in true }
        }
        if parts.contains("follower-wan") { try followerWAN() }
    }

    @Sendable static func wallNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 256)
    static let body = Array("{\"key\":\"k\",\"data\":\"\(Base64.encode(payload))\"}".utf8)
    static let path = "/v1/streams/bench/records"

    /// Three nodes, stream `bench` with one partition; returns the leader's index. With
    /// `delayMs`, every node delays what it sends to peers by that much (`--chaos`).
    func start(profile: String, delayMs: Int = 0, nodeArgs: [String] = []) throws -> (LocalCluster, Int) {
        let cluster = try LocalCluster(size: 3, profile: profile, chaos: delayMs > 0)
        cluster.nodeArgs = nodeArgs
        try cluster.startAll()
        guard
            eventually(
                timeout: .seconds(20), { (0..<3).allSatisfy { cluster.view(from: $0)?.values.filter { $0.status == "alive" }.count == 3 } })
        else {
            throw ToolError("cluster did not form")
        }
        if delayMs > 0 {
            for i in 0..<3 where !cluster.setChaos(i, delayMs: delayMs) { throw ToolError("cannot set the delay on node \(i)") }
        }
        let r = try HTTPClient.request("PUT", cluster.nodes[0].api, "/v1/streams/bench", body: Array(#"{"partitions":1}"#.utf8))
        guard r.status == 201 else { throw ToolError("create stream: \(r.text)") }
        // Wait for the leader to settle on its preferred node (it moves there a few seconds in).
        var leader: Int?
        _ = eventually(timeout: .seconds(15), interval: .milliseconds(50)) {
            leader = self.leader(cluster)
            return leader != nil && self.preferred(cluster) == leader
        }
        guard let leader else { throw ToolError("no leader") }
        return (cluster, leader)
    }

    func partition(_ cluster: LocalCluster, from i: Int) -> JSON? {
        guard let r = try? HTTPClient.request("GET", cluster.nodes[i].api, "/v1/streams/bench", timeout: .seconds(1)), r.status == 200,
            let j = try? JSON.parse(r.body), case .array(let parts)? = j["partitionDetails"]
        else { return nil }
        return parts.first
    }

    func describe(_ cluster: LocalCluster) -> JSON? {
        for n in cluster.nodes where n.pid != nil {
            if let r = try? HTTPClient.request("GET", n.api, "/v1/streams/bench", timeout: .seconds(1)), r.status == 200,
                let j = try? JSON.parse(r.body)
            {
                return j
            }
        }
        return nil
    }

    func partition(_ cluster: LocalCluster) -> JSON? {
        guard case .array(let parts)? = describe(cluster)?["partitionDetails"] else { return nil }
        return parts.first
    }

    func leader(_ cluster: LocalCluster) -> Int? {
        guard let name = partition(cluster)?["leader"]?.stringValue else { return nil }
        return cluster.nodes.firstIndex { $0.name == name && $0.pid != nil }
    }

    func preferred(_ cluster: LocalCluster) -> Int? {
        guard let name = partition(cluster)?["preferredLeader"]?.stringValue else { return nil }
        return cluster.nodes.firstIndex { $0.name == name }
    }

    /// `met` nil: a figure reported without a target. With a target, errors or too few samples
    /// make it NOT JUDGED (see `verdict`).
    func line(_ what: String, _ figures: String, target: String, met: Bool?, errors: Int = 0, samples: Int = 1, need: Int = 1) {
        print("• \(what): \(figures)")
        print(
            "    target \(target): \(met.map { verdict($0, errors: errors, samples: samples, need: need) } ?? "reported")   [\(StreamBenchmark.fsyncPolicy)]\n"
        )
        fflush(nil)
    }

    func syncStats(_ cluster: LocalCluster, _ i: Int) -> String {
        String(
            format: "group commit on the leader: %.0f fsyncs for %.0f committed proposals",
            cluster.metricTotal("tandem_stream_fsyncs_total", node: i),
            cluster.metricTotal("tandem_stream_append_latency_ms_count", node: i))
    }

    /// Fsyncs so far on each node: all, and those run on the event loop (`syncOnLoop`).
    func syncCounts(_ cluster: LocalCluster) -> [(all: Double, onLoop: Double)] {
        cluster.nodes.indices.map {
            (
                cluster.metricTotal("tandem_stream_fsyncs_total", node: $0),
                cluster.metricTotal("tandem_stream_fsyncs_on_loop_total", node: $0)
            )
        }
    }

    /// "syncs on the event loop: leader 3% of 812, follower …" since `before`.
    func loopShare(_ cluster: LocalCluster, _ leader: Int, since before: [(all: Double, onLoop: Double)]) -> String {
        let parts = zip(syncCounts(cluster), before).enumerated().map { i, c in
            let (all, onLoop) = (c.0.all - c.1.all, c.0.onLoop - c.1.onLoop)
            return "\(i == leader ? "leader" : "follower") \(all > 0 ? Int((100 * onLoop / all).rounded()) : 0)% of \(Int(all))"
        }
        return "    fsyncs run on the event loop rather than the pool: " + parts.joined(separator: ", ") + "\n"
    }

    /// User + system CPU seconds of each node process and, last, of this process.
    func cpuSeconds(_ cluster: LocalCluster) -> [Double] {
        cluster.nodes.indices.map { cluster.cpuSeconds($0) ?? 0 } + [LocalCluster.cpuSeconds(pid: getpid()) ?? 0]
    }

    // MARK: parts

    func pipelined(_ cluster: LocalCluster, _ leader: Int) throws {
        let before = cpuSeconds(cluster)
        let r = try LoadGenerator(target: cluster.nodes[leader].api) { ("POST", StreamBenchmark.path, StreamBenchmark.body) }
            .run(connections: 256, duration: .seconds(Int64(options.seconds)))
        let cpu = zip(cpuSeconds(cluster), before).map { ($0 - $1) * 1e6 / Double(max(r.requests, 1)) }
        line(
            "256 puts outstanding to one partition, client at the leader",
            String(
                format: "%.0f records/s, p50 %.2f ms, p99 %.2f ms, errors %d (n=%d); %@", r.perSecond, r.percentile(0.5),
                r.percentile(0.99),
                r.errors, r.requests, syncStats(cluster, leader)),
            target: "≥ 80,000 records/s, p99 ≤ 10 ms", met: r.perSecond >= 80_000 && r.percentile(0.99) <= 10,
            errors: r.errors, samples: r.requests)
        // What limits it on a shared machine: CPU per record in each process (user + system).
        let nodes = cpu.dropLast().enumerated().map {
            "\($0.offset == leader ? "leader" : "follower") \(String(format: "%.1f", $0.element))"
        }
        print(
            String(
                format: "    CPU per record, µs: %@, load generator %.1f (machine: %d cores)\n", nodes.joined(separator: ", "), cpu.last!,
                ProcessInfo.processInfo.activeProcessorCount))
        // The same 256 outstanding as HTTP/1.1 pipelining: 256 / depth keep-alive connections
        // with `depth` requests in flight each (a producer's connection pool); answers that
        // complete together share a write.
        let beforePipelined = cpuSeconds(cluster)
        let syncsBefore = syncCounts(cluster)
        let p = try LoadGenerator(target: cluster.nodes[leader].api) { ("POST", StreamBenchmark.path, StreamBenchmark.body) }
            .run(connections: 256 / options.depth, duration: .seconds(Int64(options.seconds)), pipeline: options.depth)
        let pcpu = zip(cpuSeconds(cluster), beforePipelined).map { ($0 - $1) * 1e6 / Double(max(p.requests, 1)) }
        line(
            "256 puts outstanding to one partition as \(256 / options.depth) connections × \(options.depth) pipelined, client at the leader",
            String(
                format: "%.0f records/s, p50 %.2f ms, p99 %.2f ms, errors %d (n=%d)", p.perSecond, p.percentile(0.5), p.percentile(0.99),
                p.errors, p.requests),
            target: "≥ 80,000 records/s, p99 ≤ 10 ms", met: p.perSecond >= 80_000 && p.percentile(0.99) <= 10,
            errors: p.errors, samples: p.requests)
        let pnodes = pcpu.dropLast().enumerated().map {
            "\($0.offset == leader ? "leader" : "follower") \(String(format: "%.1f", $0.element))"
        }
        print(String(format: "    CPU per record, µs: %@, load generator %.1f", pnodes.joined(separator: ", "), pcpu.last!))
        print(loopShare(cluster, leader, since: syncsBefore))
        // The same load as batches of 100 records per request (what a real producer does). A
        // batch answered 200 may report some records failed: only written records count.
        var records: [String] = []
        for i in 0..<100 { records.append("{\"key\":\"k\(i)\",\"data\":\"\(Base64.encode(StreamBenchmark.payload))\"}") }
        let batch = Array("{\"records\":[\(records.joined(separator: ","))]}".utf8)
        let b = BatchLoad(
            target: cluster.nodes[leader].api, path: StreamBenchmark.path, body: batch, recordsPerBatch: 100,
            failedKey: "failedRecordCount"
        ).run(connections: 16, seconds: options.seconds)
        line(
            "16 batches of 100 records outstanding, client at the leader",
            String(
                format: "%.0f records/s written, batch p50 %.2f ms, p99 %.2f ms, errors %d, records reported failed %d (n=%d batches)",
                b.recordsPerSecond, b.percentile(0.5), b.percentile(0.99), b.errors, b.failedRecords, b.batches),
            target: "(extra figure, no target)", met: nil)
    }

    /// Sum (ms) and count of fsyncs on node `i` so far, from its metrics.
    func fsyncTotals(_ cluster: LocalCluster, _ i: Int) -> (sum: Double, count: Double) {
        (
            cluster.metricTotal("tandem_stream_fsync_latency_ms_sum", node: i),
            cluster.metricTotal("tandem_stream_fsync_latency_ms_count", node: i)
        )
    }

    func serial(_ cluster: LocalCluster, _ leader: Int, _ follower: Int) throws {
        let before = (fsyncTotals(cluster, leader), fsyncTotals(cluster, follower))
        let atLeader = try LoadGenerator(target: cluster.nodes[leader].api) { ("POST", StreamBenchmark.path, StreamBenchmark.body) }
            .run(connections: 1, duration: .seconds(Int64(options.seconds)))
        let after = (fsyncTotals(cluster, leader), fsyncTotals(cluster, follower))
        func mean(_ a: (sum: Double, count: Double), _ b: (sum: Double, count: Double)) -> Double {
            (b.sum - a.sum) / max(1, b.count - a.count)
        }
        line(
            "one put at a time, client at the leader",
            String(
                format:
                    "p50 %.3f ms, p99 %.3f ms (n=%d, errors %d); mean fsync meanwhile: leader %.3f ms, follower %.3f ms (the floor: a put waits for both)",
                atLeader.percentile(0.5), atLeader.percentile(0.99), atLeader.requests, atLeader.errors,
                mean(before.0, after.0), mean(before.1, after.1)),
            target: "p50 ≤ 0.35 ms, p99 ≤ 1 ms", met: atLeader.percentile(0.5) <= 0.35 && atLeader.percentile(0.99) <= 1,
            errors: atLeader.errors, samples: atLeader.requests)
        let viaFollower = try LoadGenerator(target: cluster.nodes[follower].api) { ("POST", StreamBenchmark.path, StreamBenchmark.body) }
            .run(connections: 1, duration: .seconds(Int64(options.seconds)))
        line(
            "one put at a time, client at a follower (forwarded to the leader)",
            String(
                format: "p50 %.3f ms, p99 %.3f ms (n=%d, errors %d)", viaFollower.percentile(0.5), viaFollower.percentile(0.99),
                viaFollower.requests, viaFollower.errors),
            target: "report it", met: nil)
    }

    /// Puts at 1,000/s at the leader, each carrying its send time; a reader long-polls a
    /// follower and records put → read for every record.
    func delivery(_ cluster: LocalCluster, _ leader: Int, _ follower: Int) throws {
        final class Samples: @unchecked Sendable {
            let lock = NSLock()
            var ms: [Double] = []
            var stop = false
            /// Polls that failed or were not answered 200 with records.
            var readErrors = 0
        }
        let samples = Samples()
        let tip = try HTTPClient.request("GET", cluster.nodes[follower].api, "/v1/streams/bench/partitions/0/records?from=latest&limit=1")
        let start = (try? JSON.parse(tip.body))?["next"]?.stringValue ?? "latest"
        let api = cluster.nodes[follower].api
        let reader = Thread {
            var from = start
            // Kept alive, as a consumer's SDK would: no connection set up between two polls.
            guard let session = try? HTTPSession(api) else { return }
            while true {
                samples.lock.lock(); let stop = samples.stop; samples.lock.unlock()
                if stop { return }
                guard let r = try? session.request("GET", "/v1/streams/bench/partitions/0/records?from=\(from)&limit=1000&waitMs=500"),
                    r.status == 200, let j = try? JSON.parse(r.body), case .array(let records)? = j["records"],
                    let next = j["next"]?.stringValue
                else {
                    samples.lock.withLock { samples.readErrors += 1 }
                    continue
                }
                let now = StreamBenchmark.wallNs()
                samples.lock.lock()
                for rec in records {
                    guard let data = rec["data"]?.stringValue.flatMap({ Base64.decode($0) }),
                        let sent = UInt64(String(decoding: data.prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self))
                    else { continue }
                    samples.ms.append(Double(Int64(now) - Int64(sent)) / 1e6)
                }
                samples.lock.unlock()
                from = next
            }
        }
        reader.start()
        let syncsBefore = syncCounts(cluster)
        let r = try LoadGenerator(target: cluster.nodes[leader].api) {
            var data = Array(String(StreamBenchmark.wallNs()).utf8) + [UInt8(ascii: " ")]
            data += [UInt8](repeating: UInt8(ascii: "x"), count: 256 - data.count)
            return ("POST", StreamBenchmark.path, Array("{\"key\":\"k\",\"data\":\"\(Base64.encode(data))\"}".utf8))
        }.run(connections: 8, duration: .seconds(Int64(options.seconds)), ratePerSecond: 1_000)
        _ = eventually(timeout: .seconds(5)) {
            samples.lock.lock(); defer { samples.lock.unlock() }; return samples.ms.count >= r.requests
        }
        samples.lock.lock(); samples.stop = true; let ms = samples.ms.sorted(); let readErrors = samples.readErrors; samples.lock.unlock()
        func p(_ q: Double) -> Double { ms.isEmpty ? .nan : ms[min(ms.count - 1, Int(Double(ms.count) * q))] }
        // Judged only when the reader saw every acknowledged put: a record it missed has no
        // delivery time, and leaving it out would flatter the percentiles.
        line(
            "delivery put → read by a long-polling reader on a follower, at \(Int(r.perSecond.rounded())) puts/s",
            String(
                format: "p50 %.3f ms, p99 %.3f ms, max %.3f ms (%d of %d records seen; put errors %d, read errors %d)",
                p(0.5), p(0.99), ms.last ?? .nan, ms.count, r.requests, r.errors, readErrors),
            target: "p99 ≤ 1 ms", met: p(0.99) <= 1, errors: r.errors + readErrors, samples: ms.count, need: max(1, r.requests))
        print(loopShare(cluster, leader, since: syncsBefore))
    }

    /// One put at a time with `wanDelayMs` one way between every two nodes: at the leader (one
    /// round trip to a follower), and through a follower, answered by the leader only (two round
    /// trips: forward, append, ack, answer) and by the follower once it has committed the
    /// record (one: forward, append carrying it; the leader's fsync notice follows the append).
    func followerWAN() throws {
        var figures: [(String, LoadGenerator.Result)] = []
        for (label, args) in [
            ("answered by the leader only (before)", ["--stream-leader-answers-only"]),
            ("answered by the follower once it has committed the record (after)", [])
        ] {
            let (cluster, leader) = try start(profile: "lan", delayMs: options.wanDelayMs, nodeArgs: args)
            let follower = (0..<3).first { $0 != leader }!
            if figures.isEmpty {
                let r = try LoadGenerator(target: cluster.nodes[leader].api) { ("POST", StreamBenchmark.path, StreamBenchmark.body) }
                    .run(connections: 1, duration: .seconds(Int64(options.seconds)))
                figures.append(("at the leader", r))
            }
            let r = try LoadGenerator(target: cluster.nodes[follower].api) { ("POST", StreamBenchmark.path, StreamBenchmark.body) }
                .run(connections: 1, duration: .seconds(Int64(options.seconds)))
            figures.append(("through a follower, " + label, r))
        }
        for (label, r) in figures {
            line(
                "one put at a time, \(options.wanDelayMs) ms one-way between nodes, client \(label)",
                String(format: "p50 %.2f ms, p99 %.2f ms (n=%d, errors %d)", r.percentile(0.5), r.percentile(0.99), r.requests, r.errors),
                target: "report it (one round trip is \(2 * options.wanDelayMs) ms)", met: nil)
        }
    }

    func failover(profile: String, runs: Int, target: String, met: ((median: Double, max: Double)) -> Bool) throws {
        let (cluster, _) = try start(profile: profile)
        var samples: [Double] = []
        for run in 0..<runs {
            // A leader may be moving (to its preferred node) or not yet known to the node asked.
            var found: Int?
            _ = eventually(timeout: .seconds(20), interval: .milliseconds(50)) {
                found = self.leader(cluster); return found != nil
            }
            guard let victim = found else { throw ToolError("no leader before run \(run)") }
            let via = (0..<3).first { $0 != victim }!
            let api = cluster.nodes[via].api
            let clock = ContinuousClock()
            cluster.kill9(victim)
            let killedAt = clock.now
            var acked = false
            while clock.now - killedAt < .seconds(30) {
                if let r = try? HTTPClient.request("POST", api, StreamBenchmark.path, body: StreamBenchmark.body, timeout: .seconds(3)),
                    r.status == 200
                {
                    acked = true
                    break
                }
            }
            guard acked else { throw ToolError("\(profile): no put acknowledged within 30 s of the kill") }
            samples.append((clock.now - killedAt).seconds)
            try cluster.start(victim)
            // Let it rejoin and catch up, and leadership settle, before the next kill.
            _ = eventually(timeout: .seconds(20), interval: .milliseconds(100)) {
                guard let l = self.leader(cluster),
                    let lj = self.partition(cluster, from: l), let vj = self.partition(cluster, from: victim)
                else { return false }
                return lj["commitIndex"] == vj["commitIndex"] && lj["role"]?.stringValue == "leader"
            }
            usleep(500_000)
        }
        let sorted = samples.sorted()
        let median = sorted[sorted.count / 2]
        line(
            "leader failover, \(profile) profile: kill -9 of the leader → next acknowledged put (client retrying through a survivor)",
            String(
                format: "median %.3f s, max %.3f s over %d runs (%@)", median, sorted.last!, sorted.count,
                sorted.map { String(format: "%.3f", $0) }.joined(separator: ", ")),
            target: target, met: profile == "fast" ? met((median, sorted.last!)) : nil)
    }
}
