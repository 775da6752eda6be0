import Foundation
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Crash torture (`tandem torture`, `scripts/torture`, `TortureProcessTests`): real nodes on
/// loopback under a mixed write load — item puts and counter increments on a global table,
/// records on a stream, through every node — and, each round, `kill -9` of a random node at a
/// random moment, a restart on the same data dir, and a check that nothing acknowledged was lost:
///
/// - right after the restart, every put the killed node acknowledged is on it (its own disk);
/// - then, on every node, every acknowledged put is there, the counter holds every
///   acknowledged increment and at most the ones whose outcome is unknown, and the stream reads
///   the same on every replica with every acknowledged record at its sequence, exactly once,
///   and no record that was not written whole (torn) ever served.
public enum Torture {
    public struct Options: Sendable {
        public var nodes = 3
        public var rounds = 20
        public var seed: UInt64 = UInt64.random(in: 1..<1_000_000)
        public var binary: String?
        /// Longest stretch of load before the kill (the kill comes at a random moment in it).
        public var maxLoadMs = 1_500
        public init() {}
    }

    public struct Report: Sendable {
        public var rounds = 0
        public var ackedPuts = 0
        public var ackedIncrements = 0
        public var unknownIncrements = 0
        public var ackedRecords = 0
        public var counter = 0
        public var lostPuts = 0
        public var lostRecords = 0
        public var violations: [String] = []
        public var ok: Bool { violations.isEmpty }
    }

    /// What the writers were told (acknowledged) and what may have happened (unknown outcome).
    final class Ledger: @unchecked Sendable {
        let lock = NSLock()
        var stop = false
        var puts: [(node: Int, id: String)] = []
        var increments = 0
        var unknownIncrements = 0
        var records: [UInt64: String] = [:]
        var duplicateSequences: [String] = []
        func locked<T>(_ body: () -> T) -> T { lock.lock(); defer { lock.unlock() }; return body() }
    }

    static func call(
        _ method: String, _ api: String, _ path: String, _ body: String? = nil,
        timeout: Duration = .seconds(3)
    ) -> HTTPClient.Response? {
        try? HTTPClient.request(method, api, path, body: body.map { Array($0.utf8) }, timeout: timeout)
    }

    public static func run(
        _ o: Options,
        say: (String) -> Void = {
            print($0); fflush(nil)
        }
    ) throws -> Report {
        var rng = SeededGenerator(seed: o.seed)
        let cluster = try LocalCluster(size: o.nodes, profile: "fast", binary: o.binary)
        cluster.logLevel = "info"  // kept for the post-mortem of a failed round
        try cluster.startAll()
        let n = o.nodes
        let apis = cluster.nodes.map(\.api)
        func formed() -> Bool {
            eventually(timeout: .seconds(30)) {
                (0..<n).allSatisfy { i in cluster.view(from: i)?.values.filter { $0.status == "alive" }.count == n }
            }
        }
        guard formed() else { throw TandemError(.io, "torture: the cluster did not form") }
        guard call("PUT", apis[0], "/v1/tables/torture", #"{"partitionKey":"id"}"#)?.status == 201,
            call("PUT", apis[0], "/v1/streams/torture", #"{"partitions":1,"retentionHours":24}"#)?.status == 201
        else {
            throw TandemError(.io, "torture: cannot create the table or the stream")
        }
        _ = eventually(timeout: .seconds(15)) { apis.allSatisfy { call("GET", $0, "/v1/tables/torture")?.status == 200 } }
        _ = eventually(timeout: .seconds(15)) { leader(apis[0]) != nil }

        let ledger = Ledger()
        var report = Report()
        /// The cluster's root goes with it; keep the logs and data dirs for a post-mortem.
        func keepForPostMortem() {
            let kept = NSTemporaryDirectory() + "tandem-torture-\(o.seed)"
            for i in cluster.nodes.indices { cluster.kill9(i) }
            try? FileManager.default.removeItem(atPath: kept)
            try? FileManager.default.copyItem(atPath: cluster.root, toPath: kept)
            say("  logs and data dirs kept under \(kept)")
        }
        say("torture: \(n) nodes, \(o.rounds) rounds, seed \(o.seed), data under \(cluster.root)")
        for round in 1...o.rounds {
            ledger.locked { ledger.stop = false }
            let writers = (0..<n).flatMap { node in
                [
                    Thread { putWriter(apis[node], node: node, round: round, ledger) },
                    Thread { counterWriter(apis[node], ledger) },
                    Thread { streamWriter(apis[node], node: node, round: round, ledger) }
                ]
            }
            for t in writers { t.start() }
            let victim = Int.random(in: 0..<n, using: &rng)
            let loadMs = Int.random(in: 200...max(200, o.maxLoadMs), using: &rng)
            Thread.sleep(forTimeInterval: Double(loadMs) / 1000)
            cluster.kill9(victim)
            // The survivors keep taking writes for a moment while the victim is down.
            Thread.sleep(forTimeInterval: 0.3)
            ledger.locked { ledger.stop = true }
            _ = eventually(timeout: .seconds(10)) { writers.allSatisfy(\.isFinished) }
            try cluster.start(victim)
            guard formed() else {
                // Each node's view, to tell a node that never came up from one nobody accepts.
                let views = (0..<n).map { i in
                    "\(cluster.nodes[i].name) [\(cluster.processState(i))] sees "
                        + (cluster.view(from: i).map { v in
                            v.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.status)@\($0.value.incarnation)" }.joined(
                                separator: ",")
                        } ?? "nothing (no answer)")
                }
                let problem =
                    "round \(round): the cluster did not re-form after restarting \(cluster.nodes[victim].name): \(views.joined(separator: "; "))"
                report.violations.append(problem)
                say("  " + problem)
                keepForPostMortem()
                break
            }
            let (puts, increments, unknown, records, dups) = ledger.locked {
                (ledger.puts, ledger.increments, ledger.unknownIncrements, ledger.records, ledger.duplicateSequences)
            }
            var problems: [String] = dups.map { "round \(round): sequence acknowledged twice: \($0)" }

            // 1. The victim's own acknowledged puts are on its disk.
            let own = puts.filter { $0.node == victim }.map(\.id)
            let ownMissing = own.filter { call("GET", apis[victim], "/v1/tables/torture/items/\($0)")?.status != 200 }
            if !ownMissing.isEmpty {
                problems.append(
                    "round \(round): \(ownMissing.count) puts acknowledged by \(cluster.nodes[victim].name) missing after its restart, e.g. \(ownMissing.prefix(3))"
                )
                report.lostPuts += ownMissing.count
            }

            // 2. Every node converges on every acknowledged put and increment.
            let digestsEqual = eventually(timeout: .seconds(30), interval: .milliseconds(100)) {
                let d = apis.map { call("GET", $0, "/v1/tables/torture").flatMap { try? JSON.parse($0.body) }?["digest"]?.stringValue }
                return d.allSatisfy { $0 != nil && $0 == d[0] }
            }
            if !digestsEqual { problems.append("round \(round): table replicas did not converge within 30 s") }
            for (i, api) in apis.enumerated() {
                let missing = puts.filter { $0.node != victim || i != victim }.map(\.id)
                    .filter { call("GET", api, "/v1/tables/torture/items/\($0)")?.status != 200 }
                if !missing.isEmpty {
                    problems.append(
                        "round \(round): \(missing.count) acknowledged puts missing on \(cluster.nodes[i].name), e.g. \(missing.prefix(3))")
                    report.lostPuts += missing.count
                }
                let c = counter(api)
                if c == nil || c! < increments || c! > increments + unknown {
                    problems.append(
                        "round \(round): counter on \(cluster.nodes[i].name) is \(c.map(String.init) ?? "unreadable"); acknowledged \(increments), unknown \(unknown)"
                    )
                }
                report.counter = c ?? report.counter
            }

            // 3. The stream: the same records on every replica, every acknowledged one at its
            // sequence exactly once, nothing torn.
            var logs: [[(UInt64, String, String)]] = []
            let streamsEqual = eventually(timeout: .seconds(30), interval: .milliseconds(200)) {
                logs = apis.compactMap { readAll($0) }
                guard logs.count == n, let last = logs[0].last?.0 else { return records.isEmpty }
                return logs.allSatisfy { $0.count == logs[0].count && $0.last?.0 == last }
                    && records.keys.allSatisfy { $0 <= last }
            }
            if !streamsEqual { problems.append("round \(round): stream replicas did not agree within 30 s") }
            for (i, log) in logs.enumerated() {
                let name = cluster.nodes[min(i, n - 1)].name
                var bySequence: [UInt64: String] = [:]
                var seen: Set<String> = []
                for (seq, key, data) in log {
                    bySequence[seq] = data
                    if !seen.insert(data).inserted { problems.append("round \(round): record \(data) twice on \(name)") }
                    if !wellFormed(key: key, data: data) {
                        problems.append("round \(round): torn or foreign record at \(seq) on \(name): key \(key), data \(data.prefix(40))")
                    }
                }
                if logs[0].map({ "\($0.0)=\($0.2)" }) != log.map({ "\($0.0)=\($0.2)" }) {
                    problems.append("round \(round): stream on \(name) differs from \(cluster.nodes[0].name)")
                }
                let lost = records.filter { bySequence[$0.key] != $0.value }
                if !lost.isEmpty {
                    problems.append(
                        "round \(round): \(lost.count) acknowledged records missing or changed on \(name), e.g. \(lost.prefix(3).map { "\($0.key)=\($0.value)" })"
                    )
                    report.lostRecords += lost.count
                }
            }

            report.rounds = round
            report.ackedPuts = puts.count
            report.ackedIncrements = increments
            report.unknownIncrements = unknown
            report.ackedRecords = records.count
            report.violations += problems
            say(
                String(
                    format: "round %2d: killed %@ after %4d ms; acknowledged so far: %d puts, %d increments (+%d unknown), %d records — %@",
                    round, cluster.nodes[victim].name, loadMs, puts.count, increments, unknown, records.count,
                    problems.isEmpty ? "all present" : "\(problems.count) VIOLATIONS"))
            for p in problems.prefix(10) { say("  " + p) }
            if !problems.isEmpty {
                keepForPostMortem()
                break
            }
        }
        for i in cluster.nodes.indices { cluster.kill9(i) }
        return report
    }

    // MARK: writers — each stops at the first request that gets no answer (its node died) or at `stop`

    static let pad = String(repeating: "p", count: 100)

    static func putWriter(_ api: String, node: Int, round: Int, _ ledger: Ledger) {
        var i = 0
        while !ledger.locked({ ledger.stop }) {
            i += 1
            let id = "r\(round)-n\(node)-\(i)"
            guard let r = call("PUT", api, "/v1/tables/torture/items/\(id)", #"{"v":\#(i),"pad":"\#(pad)"}"#) else { return }
            if r.status == 200 { ledger.locked { ledger.puts.append((node, id)) } } else { Thread.sleep(forTimeInterval: 0.02) }
        }
    }

    static func counterWriter(_ api: String, _ ledger: Ledger) {
        while !ledger.locked({ ledger.stop }) {
            let r = call("PATCH", api, "/v1/tables/torture/items/counter", #"{"add":{"n":1}}"#)
            if r?.status == 200 {
                ledger.locked { ledger.increments += 1 }
            } else {
                // No answer, or an error after the write may have been applied: unknown outcome.
                ledger.locked { ledger.unknownIncrements += 1 }
                if r == nil { return }
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
    }

    static func streamWriter(_ api: String, node: Int, round: Int, _ ledger: Ledger) {
        var i = 0
        while !ledger.locked({ ledger.stop }) {
            i += 1
            let data = "r\(round)-n\(node)-\(i)-" + String(repeating: "d", count: 64)
            let body = "{\"key\":\"w\(node)\",\"data\":\"\(Base64.encode(Array(data.utf8)))\"}"
            guard let r = call("POST", api, "/v1/streams/torture/records", body) else { return }
            if r.status == 200, let seq = (try? JSON.parse(r.body))?["sequence"]?.stringValue.flatMap({ UInt64($0) }) {
                ledger.locked {
                    if let before = ledger.records[seq] { ledger.duplicateSequences.append("\(seq): \(before) and \(data)") }
                    ledger.records[seq] = data
                }
            } else {
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
    }

    static func wellFormed(key: String, data: String) -> Bool {
        let parts = data.split(separator: "-")
        return parts.count == 4 && parts[0].hasPrefix("r") && parts[1].hasPrefix("n") && Int(parts[2]) != nil
            && parts[3] == Substring(String(repeating: "d", count: 64)) && key == "w" + parts[1].dropFirst()
    }

    // MARK: reads

    static func leader(_ api: String) -> String? {
        guard let r = call("GET", api, "/v1/streams/torture"), r.status == 200,
            let j = try? JSON.parse(r.body), case .array(let parts)? = j["partitionDetails"], let p = parts.first
        else { return nil }
        return p["leader"]?.stringValue
    }

    static func counter(_ api: String) -> Int? {
        guard let r = call("GET", api, "/v1/tables/torture/items/counter"), r.status == 200,
            case .number(let t)? = (try? JSON.parse(r.body))?["item"]?["n"]
        else { return nil }
        return Int(t)
    }

    /// Every record of partition 0 as `(sequence, key, data)`, or nil if a page fails.
    static func readAll(_ api: String) -> [(UInt64, String, String)]? {
        var out: [(UInt64, String, String)] = []
        var from = "trim-horizon"
        while true {
            guard let r = call("GET", api, "/v1/streams/torture/partitions/0/records?from=\(from)&limit=1000"), r.status == 200,
                let j = try? JSON.parse(r.body), case .array(let records)? = j["records"], let next = j["next"]?.stringValue
            else { return nil }
            for rec in records {
                guard let seq = rec["sequence"]?.stringValue.flatMap({ UInt64($0) }), let key = rec["key"]?.stringValue,
                    let data = rec["data"]?.stringValue.flatMap({ Base64.decode($0) })
                else { return nil }
                out.append((seq, key, String(decoding: data, as: UTF8.self)))
            }
            if records.isEmpty { return out }
            from = next
        }
    }
}
