import Foundation
import TandemCore
import TandemTestKit
import Transport

/// Figures for global tables, each against its target (real processes on loopback; the load
/// generator shares the machine's cores with the nodes).
public struct TableBenchmark {
    public struct Options: Sendable {
        public var seconds = 10
        public var connections = 50
        public var partitionSeconds = 60
        public var only: String?
        public var keyring: String?
        /// Distinct items the scale part writes, in windows of `seconds`.
        public var scaleItems = 1_000_000

        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    public func run() throws {
        let parts = Set((options.only ?? "throughput,lag,repair,gossip").split(separator: ",").map(String.init))
        print(
            "global tables benchmark — real nodes on 127.0.0.1, load generator on the same 2 cores; encryption \(options.keyring == nil ? "off" : "on (--keyring)")\n"
        )
        if parts.contains("throughput") { try throughput() }
        if parts.contains("lag") { try lag() }
        if parts.contains("repair") { try repair() }
        if parts.contains("gossip") { try gossip() }
        if parts.contains("scale") { try scale() }
    }

    /// Size costs nothing: distinct items written in windows of `seconds` until `scaleItems`,
    /// each window's PUT rate against the first's; the node's resident memory (anonymous, and
    /// LMDB's file pages, which the kernel reclaims), the data dir against the raw data, and a
    /// restart to serving at that size.
    func scale() throws {
        let cluster = try start(1)
        defer { cluster.kill9(0) }
        let api = cluster.nodes[0].api
        var written = 0, errors = 0
        var rates: [Double] = []
        var p99s: [Double] = []
        print("• one node, \(options.connections) clients, distinct \(TableBenchmark.itemBytes)-byte items, \(options.seconds) s windows:")
        while written < options.scaleItems {
            let r = try LoadGenerator(target: api) {
                written += 1
                return ("PUT", "/v1/tables/bench/items/s\(written)", TableBenchmark.item(written))
            }.run(connections: options.connections, duration: .seconds(Int64(options.seconds)), maxRequests: options.scaleItems - written)
            errors += r.errors
            rates.append(r.perSecond)
            p99s.append(r.percentile(0.99))
            let memory = cluster.nodes[0].pid.flatMap(TableBenchmark.residentKB)
            print(
                String(
                    format: "    %9d items: %6.0f PUT/s, p99 %5.2f ms, errors %d; resident %@; data dir %@", written, r.perSecond,
                    r.percentile(0.99), r.errors,
                    memory.map { String(format: "%.0f MB anonymous + %.0f MB file", $0.anon / 1e3, $0.file / 1e3) } ?? "not read",
                    TableBenchmark.diskMB(cluster.nodes[0].dataDir).map { String(format: "%.0f MB", $0) } ?? "not read"))
            fflush(nil)
        }
        let rawMB = Double(written * TableBenchmark.itemBytes) / 1e6
        let diskMB = TableBenchmark.diskMB(cluster.nodes[0].dataDir)
        let anonMB = cluster.nodes[0].pid.flatMap(TableBenchmark.residentKB).map { $0.anon / 1e3 }
        // Restart: stopped cleanly, then started on its data dir; time to /v1/health.
        _ = cluster.terminate(0)
        let began = Date()
        try cluster.start(0)
        let up = eventually(timeout: .seconds(120)) {
            (try? HTTPClient.request("GET", api, "/v1/health", timeout: .seconds(1)))?.status == 200
        }
        let restart = Date().timeIntervalSince(began)
        let afterKB = cluster.nodes[0].pid.flatMap(TableBenchmark.residentKB)
        let keep = (rates.last ?? 0) / max(rates.first ?? 1, 1)
        print(String(format: "    last window %.0f%% of the first", keep * 100))
        print("    target ≥ 90 %: \(verdict(keep >= 0.9, errors: errors, samples: rates.count, need: 2))")
        print(String(format: "    resident at %d items: %@ anonymous", written, anonMB.map { String(format: "%.0f MB", $0) } ?? "not read"))
        print("    target ≤ 500 MB: \(verdict((anonMB ?? .infinity) <= 500, errors: errors + (anonMB == nil ? 1 : 0), samples: 1))")
        print(
            String(
                format: "    data dir %@ for %.0f MB of items (%@)", diskMB.map { String(format: "%.0f MB", $0) } ?? "not read", rawMB,
                diskMB.map { String(format: "%.2f×", $0 / rawMB) } ?? "?"))
        print("    target ≤ 2×: \(verdict((diskMB ?? .infinity) <= 2 * rawMB, errors: errors + (diskMB == nil ? 1 : 0), samples: 1))")
        print(
            String(
                format: "    restart to serving: %@; resident after %@", up ? String(format: "%.2f s", restart) : "did not answer in 120 s",
                afterKB.map { String(format: "%.0f MB", ($0.anon + $0.file) / 1e3) } ?? "not read"))
        print("    target ≤ 2 s: \(verdict(up && restart <= 2, errors: errors, samples: 1))\n")
    }

    /// Resident kB of a process, anonymous and file-backed (/proc/PID/status).
    static func residentKB(_ pid: pid_t) -> (anon: Double, file: Double)? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func field(_ name: String) -> Double? {
            status.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { Double($0.split(separator: " ").dropFirst().first ?? "") }
        }
        guard let anon = field("RssAnon:"), let file = field("RssFile:") else { return nil }
        return (anon, file)
    }

    /// MB a directory's files take on disk (allocated blocks, as `du` counts).
    static func diskMB(_ path: String) -> Double? {
        guard let files = FileManager.default.enumerator(atPath: path) else { return nil }
        var bytes = 0.0
        for case let f as String in files {
            var st = stat()
            if stat(path + "/" + f, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { bytes += Double(st.st_blocks) * 512 }
        }
        return bytes / 1e6
    }

    /// Traffic and node CPU over a phase: gossip and peer bytes out, all nodes together.
    struct Usage {
        var gossipBytes = 0.0, gossipPackets = 0.0, peerBytes = 0.0, cpu = 0.0
        /// Readings that failed (a node's /metrics or /proc did not answer): figures not given.
        var unreadable = 0
        static func sample(_ c: LocalCluster) -> Usage {
            var u = Usage()
            func add(_ v: Double?, _ to: inout Double) {
                if let v { to += v } else { u.unreadable += 1 }
            }
            for i in c.nodes.indices {
                add(c.metric("tandem_gossip_bytes_out_total", node: i), &u.gossipBytes)
                add(c.metric("tandem_gossip_packets_out_total", node: i), &u.gossipPackets)
                add(c.metric("tandem_peer_bytes_out_total", node: i), &u.peerBytes)
                add(c.cpuSeconds(i), &u.cpu)
            }
            return u
        }
        func line(since b: Usage, seconds: Double, nodes: Int) -> String {
            guard unreadable + b.unreadable == 0 else {
                return "traffic and CPU not given: \(unreadable + b.unreadable) readings of the nodes' metrics failed"
            }
            return String(
                format: "gossip %.0f packets/s, %.1f KB/s; peer links %.1f KB/s; node CPU %.1f%% of a core per node (all %d nodes)",
                (gossipPackets - b.gossipPackets) / seconds, (gossipBytes - b.gossipBytes) / seconds / 1e3,
                (peerBytes - b.peerBytes) / seconds / 1e3, (cpu - b.cpu) / seconds / Double(nodes) * 100, nodes)
        }
    }

    /// Membership alone: three idle nodes gossiping (fast profile, probe every 100 ms).
    func gossip() throws {
        let cluster = try start(3)
        let before = Usage.sample(cluster)
        let clock = ContinuousClock()
        let t0 = clock.now
        Thread.sleep(forTimeInterval: Double(options.seconds))
        let after = Usage.sample(cluster)
        print(
            "• idle 3-node cluster (fast profile) for \(options.seconds) s: "
                + after.line(since: before, seconds: (clock.now - t0).seconds, nodes: 3) + "\n")
        fflush(nil)
    }

    /// The item put: a JSON document of exactly `itemBytes` bytes (the note pads it).
    static let itemBytes = 256
    static let itemBody: [UInt8] = {
        let empty = #"{"status":"available","note":""}"#
        let body = Array(#"{"status":"available","note":"\#(String(repeating: "x", count: itemBytes - empty.utf8.count))"}"#.utf8)
        precondition(body.count == itemBytes)
        return body
    }()
    static func item(_ i: Int) -> [UInt8] { itemBody }

    func start(_ size: Int, chaos: Bool = false) throws -> LocalCluster {
        let cluster = try LocalCluster(size: size, profile: "fast", chaos: chaos)
        if let keyring = options.keyring { cluster.nodeArgs = ["--keyring", keyring] }
        try cluster.startAll()
        let names = cluster.nodes.map(\.name)
        guard
            eventually(
                timeout: .seconds(20), { (0..<size).allSatisfy { i in names.allSatisfy { cluster.view(from: i)?[$0]?.status == "alive" } } }
            )
        else {
            throw ToolError("cluster did not form")
        }
        let create = try HTTPClient.request("PUT", cluster.nodes[0].api, "/v1/tables/bench", body: Array(#"{"partitionKey":"id"}"#.utf8))
        guard create.status == 201 else { throw ToolError("create table: \(create.text)") }
        guard
            eventually(
                timeout: .seconds(10),
                { (0..<size).allSatisfy { (try? HTTPClient.request("GET", cluster.nodes[$0].api, "/v1/tables/bench"))?.status == 200 } })
        else {
            throw ToolError("table did not replicate")
        }
        return cluster
    }

    func report(_ what: String, _ r: LoadGenerator.Result, target: String, met: Bool) {
        print(
            "• \(what): "
                + String(
                    format: "%.0f/s, p50 %.2f ms, p99 %.2f ms, errors %d (n=%d)",
                    r.perSecond, r.percentile(0.5), r.percentile(0.99), r.errors, r.requests))
        print("    target \(target): \(verdict(met, errors: r.errors, samples: r.requests))\n")
        fflush(nil)
    }

    func throughput() throws {
        let cluster = try start(1)
        let api = cluster.nodes[0].api
        var rng = SystemRandomNumberGenerator()
        let puts = try LoadGenerator(target: api) {
            let id = Int.random(in: 0..<100_000, using: &rng)
            return ("PUT", "/v1/tables/bench/items/k\(id)", TableBenchmark.item(id))
        }.run(connections: options.connections, duration: .seconds(Int64(options.seconds)))
        report(
            "one node, \(options.connections) clients, \(TableBenchmark.itemBytes)-byte items, durable puts", puts,
            target: "≥ 20,000/s, p99 < 5 ms",
            met: puts.perSecond >= 20_000 && puts.percentile(0.99) < 5)
        let getter = try LoadGenerator(target: api) {
            ("GET", "/v1/tables/bench/items/k\(Int.random(in: 0..<100_000, using: &rng))", nil)
        }
        getter.served = { $0 == 200 || $0 == 404 }
        let gets = getter.run(connections: options.connections, duration: .seconds(Int64(options.seconds)))
        report(
            "one node, \(options.connections) clients, gets (hits and misses)", gets, target: "≥ 40,000/s, p99 < 5 ms",
            met: gets.perSecond >= 40_000 && gets.percentile(0.99) < 5)
        if let commits = cluster.metric("tandem_table_commits_total", node: 0),
            let writes = cluster.metric("tandem_table_writes_committed_total", node: 0)
        {
            print(
                String(
                    format: "    group commit: %.0f writes in %.0f fsyncs (%.1f writes per commit)\n", writes, commits,
                    writes / max(commits, 1)))
        } else {
            print("    group commit: not given (the node's /metrics did not answer)\n")
        }
    }

    func lag() throws {
        let cluster = try start(2)
        let before = Usage.sample(cluster)
        let clock = ContinuousClock()
        let t0 = clock.now
        var i = 0
        let load = try LoadGenerator(target: cluster.nodes[0].api) {
            i += 1
            return ("PUT", "/v1/tables/bench/items/lag\(i)", TableBenchmark.item(i))
        }.run(connections: 20, duration: .seconds(Int64(options.seconds)), ratePerSecond: 5_000)
        _ = eventually(timeout: .seconds(10)) {
            (cluster.metric("tandem_table_replication_lag_ms_count", node: 1) ?? 0) >= Double(load.requests)
        }
        let usage = Usage.sample(cluster).line(since: before, seconds: (clock.now - t0).seconds, nodes: 2)
        let (p50, p99, count) = lagPercentiles(cluster, node: 1)
        if ProcessInfo.processInfo.environment["TANDEM_BENCH_DEBUG"] != nil {
            print(
                (try? HTTPClient.request("GET", cluster.nodes[1].api, "/metrics").text)?.split(separator: "\n").filter {
                    $0.hasPrefix("tandem_table")
                }.joined(separator: "\n") ?? "")
        }
        print(
            String(
                format:
                    "• replication lag write→visible on the other node at %.0f writes/s: p50 ≤ %@ ms, p99 ≤ %@ ms (%d deltas, HLC ms resolution)",
                load.perSecond, p50, p99, count))
        let met = (Double(p50) ?? 99) <= 5 && (Double(p99) ?? 999) <= 50
        print("    " + usage)
        // Every acknowledged write must have reached the other node as a delta: fewer means
        // the percentiles leave some out.
        print(
            "    target p50 < 5 ms, p99 < 50 ms: \(verdict(met, errors: load.errors, samples: count, need: load.requests))"
                + " (\(load.requests) writes acknowledged, \(load.errors) errors)\n")
        fflush(nil)
    }

    /// Upper bounds of the histogram buckets holding the 50th and 99th percentiles.
    func lagPercentiles(_ cluster: LocalCluster, node: Int) -> (String, String, Int) {
        guard let text = try? HTTPClient.request("GET", cluster.nodes[node].api, "/metrics").text else { return ("?", "?", 0) }
        var buckets: [(String, Double)] = []
        for line in text.split(separator: "\n") where line.hasPrefix("tandem_table_replication_lag_ms_bucket") {
            let le = line.split(separator: "\"")[1]
            buckets.append((String(le), Double(line.split(separator: " ")[1]) ?? 0))
        }
        let total = buckets.last?.1 ?? 0
        func p(_ q: Double) -> String { buckets.first { $0.1 >= q * total }?.0 ?? "?" }
        return (p(0.5), p(0.99), Int(total))
    }

    func repair() throws {
        let cluster = try start(2, chaos: true)
        let (a, b) = (cluster.nodes[0], cluster.nodes[1])
        cluster.setChaos(0, block: [b.bind])
        cluster.setChaos(1, block: [a.bind])
        var i = 0
        let load = try LoadGenerator(target: a.api) {
            i += 1
            return ("PUT", "/v1/tables/bench/items/p\(i)", TableBenchmark.item(i))
        }.run(connections: 10, duration: .seconds(Int64(options.partitionSeconds)), ratePerSecond: 1_000)
        func peerBytes() -> Double? {
            metricEverywhere(cluster, "tandem_peer_bytes_out_total", nodes: 0..<2)?.reduce(0, +)
        }
        func digest(_ n: LocalCluster.NodeProcess) -> String? {
            (try? HTTPClient.request("GET", n.api, "/v1/tables/bench")).flatMap { try? JSON.parse($0.body) }?["digest"]?.stringValue
        }
        let bytesBefore = peerBytes()
        let clock = ContinuousClock()
        let healedAt = clock.now
        cluster.setChaos(0)
        cluster.setChaos(1)
        let equal = eventually(timeout: .seconds(120), interval: .milliseconds(20)) { digest(a) != nil && digest(a) == digest(b) }
        let took = (clock.now - healedAt).seconds
        // A node whose /metrics did not answer makes the traffic unknown: an error, not 0 bytes.
        var repairBytes: Double?
        if let before = bytesBefore, let after = peerBytes() { repairBytes = after - before }
        let itemBytes = Double(load.requests) * Double(TableBenchmark.item(0).count + 120)
        let traffic =
            repairBytes.map {
                String(format: "%.1f MB for %d items written (≈ %.1f× their size)", $0 / 1e6, load.requests, $0 / max(itemBytes, 1))
            }
            ?? "unknown (the nodes' /metrics did not answer)"
        print(
            String(
                format:
                    "• repair after a %d s partition at %.0f writes/s: roots equal %.2f s after the heal (%@); repair traffic %@; %d write errors",
                options.partitionSeconds, load.perSecond, took, equal ? "converged" : "NOT converged", traffic, load.errors))
        let met = equal && took <= 10 && (repairBytes ?? .infinity) <= 2 * itemBytes
        print(
            "    target within 10 s, ≤ 2× changed bytes: \(verdict(met, errors: load.errors + (repairBytes == nil ? 1 : 0), samples: load.requests))\n"
        )
        fflush(nil)
    }
}
