import Foundation
import TandemCore
import TandemTestKit
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// An event loop and its server, handed to the thread that runs them.
private final class LoopOwner: @unchecked Sendable {
    let loop: EventLoop
    let server: HTTPServer
    init(loop: EventLoop, server: HTTPServer) {
        self.loop = loop
        self.server = server
    }
}

/// The checker's processor workload, on the stream the stream writers fill (records are JSON:
/// `{"id", "q", "n"}`):
/// - a `materialize` processor adds each record's `n` (and 1) to the item `q` of the table
///   `check`: after the heal, every item must hold exactly the sums of the records the stream
///   holds — not the acknowledged ones: a put whose answer was lost may have committed, and the
///   stream is the truth. Too little is a record skipped, too much one counted twice.
/// - a `function` processor calls an Invoke API endpoint served by this process, which fails the
///   first delivery of some records on purpose (a partial batch answer) so retries run under the
///   faults too: every record of the stream must reach it at least once, each key's records
///   first in their order (parallelization 2: order is per key), none dead-lettered.
final class CheckProcessors: @unchecked Sendable {
    let run: String
    let stream: String
    /// The items `q` the records count into.
    static let keys = 8
    /// Records whose writer index is a multiple of this fail their first delivery on purpose.
    static let failEvery = 97
    var materializer: String { "check-mat-\(run)" }
    var function: String { "check-fn-\(run)" }
    func key(_ j: Int) -> String { "\(run)-q\(j)" }

    private let lock = NSLock()
    /// eventID → deliveries.
    private var delivered: [String: Int] = [:]
    private var invocations = 0
    /// Records failed on purpose (their first delivery), by eventID.
    private var failedOnce: Set<String> = []
    /// Per (partition, key): the highest sequence delivered a first time, and records delivered
    /// a first time below it (per-key order broken).
    private var firstHigh: [String: UInt64] = [:]
    private var outOfOrder: [String] = []
    private var url = ""
    private var thread: Thread?

    init(run: String, stream: String) {
        self.run = run
        self.stream = stream
    }

    /// A record's payload as the stream writers make it.
    static func payload(id: String, q: String, n: Int) -> String { #"{"id":"\#(id)","q":"\#(q)","n":\#(n)}"# }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Set-up

    /// Serves the function on this host's address toward `api` (the address the nodes reach this
    /// process at), then creates both processors through `call`.
    func setUp(toward api: String, call: (String, String, String) -> Int?) throws {
        guard let host = Self.localAddress(toward: api) else { throw CheckFailure("no local address toward \(api)") }
        let loop = EventLoop()
        var bound: (server: HTTPServer, port: Int)?
        for _ in 0..<50 where bound == nil {
            let port = Int.random(in: 20_000..<60_000)
            if let s = try? HTTPServer(loop: loop, bind: try SocketAddress("\(host):\(port)")) { bound = (s, port) }
        }
        guard let (server, port) = bound else { throw CheckFailure("the check function could not listen on \(host)") }
        server.handler = { [self] request, respond in respond(self.invoke(request)) }
        // The loop is this thread's from here on: the server runs on it, nothing else touches it.
        let owned = LoopOwner(loop: loop, server: server)
        let t = Thread { owned.loop.run() }
        thread = t
        t.start()
        url = "http://\(host):\(port)/2015-03-31/functions/check/invocations"
        let filter = #"[{"data":{"q":[{"prefix":"\#(run)-q"}]}}]"#
        let materialize = """
            {"source":{"stream":"\(stream)","startingPosition":"trim-horizon"},"batchSize":100,"filters":\(filter),
             "target":{"materialize":{"table":"check","key":{"k":"$.q"},"add":{"total":"$.n","count":1}}}}
            """
        let fn = """
            {"source":{"stream":"\(stream)","startingPosition":"trim-horizon"},"batchSize":50,"parallelizationFactor":2,
             "target":{"function":{"url":"\(url)","timeoutMs":3000}}}
            """
        for (name, body) in [(materializer, materialize), (function, fn)] {
            guard eventually(timeout: .seconds(30), { call("PUT", "/v1/processors/\(name)", body).map { $0 == 201 || $0 == 200 } ?? false })
            else { throw CheckFailure("the processor \(name) was not created") }
        }
    }

    /// The local address a UDP socket toward `api` would use (no packet is sent).
    static func localAddress(toward api: String) -> String? {
        guard let colon = api.lastIndex(of: ":"), let port = UInt16(api[api.index(after: colon)...]) else { return nil }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = port.bigEndian
        to.sin_addr.s_addr = inet_addr(String(api[..<colon]))
        let connected = withUnsafePointer(to: &to) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        return String(cString: inet_ntoa(local.sin_addr))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: The function

    /// One invocation: notes every record, and answers a partial batch failure naming the first
    /// record (if any) due to fail its first delivery.
    func invoke(_ request: HTTPRequest) -> HTTPResponse {
        guard let event = try? JSON.parse(request.body), case .array(let records)? = event["Records"] else {
            return .error(400, "bad_event", "not a Kinesis event")
        }
        var failed: String?
        lock.withLock {
            invocations += 1
            for r in records {
                guard let id = r["eventID"]?.stringValue, let seqText = r["kinesis"]?["sequenceNumber"]?.stringValue,
                    let seq = UInt64(seqText), let key = r["kinesis"]?["partitionKey"]?.stringValue
                else { continue }
                let first = delivered[id] == nil
                delivered[id, default: 0] += 1
                let shard = id.split(separator: ":").first.map(String.init) ?? ""
                if first {
                    let slot = shard + "/" + key
                    if let high = firstHigh[slot], high > seq {
                        outOfOrder.append("\(id) (key \(key)) first delivered after \(shard):\(high)")
                    }
                    firstHigh[slot] = max(firstHigh[slot] ?? 0, seq)
                }
                guard failed == nil, !failedOnce.contains(id),
                    let data = r["kinesis"]?["data"]?.stringValue.flatMap(Base64.decode).flatMap({ try? JSON.parse($0) }),
                    let n = data["id"]?.stringValue?.split(separator: "-").last.flatMap({ Int($0) }), n % Self.failEvery == 0
                else { continue }
                failedOnce.insert(id)
                failed = seqText
            }
        }
        let body: JSON = .object([("batchItemFailures", .array(failed.map { [.object([("itemIdentifier", .string($0))])] } ?? []))])
        return .json(200, body)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Verdict

    /// After the heal: the materialized sums equal the stream's, on every node; the function got
    /// every record of the stream; no dead letters. `logs` is each partition's agreed log
    /// (sequence, payload).
    func verify(_ v: inout CheckRun.Verdict, logs: [[(String, String)]], check: CheckRun) {
        // The truth: the records in the stream, whatever their puts were told.
        var expected: [String: (total: Int, count: Int)] = [:]
        var eventIDs: [String] = []
        var records = 0
        for (p, log) in logs.enumerated() {
            let shard = "shardId-" + String(repeating: "0", count: max(0, 12 - String(p).count)) + String(p)
            for (seq, payload) in log {
                eventIDs.append("\(shard):\(seq)")
                guard let j = try? JSON.parse(Array(payload.utf8)), let q = j["q"]?.stringValue, q.hasPrefix("\(run)-q"),
                    case .number(let t)? = j["n"], let n = Int(t)
                else { continue }
                records += 1
                expected[q, default: (0, 0)].total += n
                expected[q, default: (0, 0)].count += 1
            }
        }
        func items() -> [[String: (total: Int, count: Int)?]] {
            check.apis.indices.map { i in
                var out: [String: (total: Int, count: Int)?] = [:]
                for k in expected.keys {
                    guard let r = check.read(i, "/v1/tables/check/items/\(k)"), r.status == 200, let item = r.json()?["item"],
                        case .number(let t)? = item["total"], case .number(let c)? = item["count"], let total = Int(t), let count = Int(c)
                    else {
                        out[k] = .some(nil)
                        continue
                    }
                    out[k] = (total, count)
                }
                return out
            }
        }
        let start = Date()
        var seen: [[String: (total: Int, count: Int)?]] = []
        let materialized = eventually(timeout: .seconds(120), interval: .milliseconds(500)) {
            seen = items()
            return seen.allSatisfy { node in expected.allSatisfy { k, e in node[k]??.total == e.total && node[k]??.count == e.count } }
        }
        let materializeWait = Date().timeIntervalSince(start)
        let sum = expected.values.reduce(0) { $0 + $1.total }
        v.check(
            materialized,
            String(
                format:
                    "processors: materialized counters equal the stream's sums on every node (%d records in %d keys, total %d; %.1f s after the stream check)",
                records, expected.count, sum, materializeWait))
        if !materialized {
            for k in expected.keys.sorted() {
                let e = expected[k]!
                let got = seen.map { $0[k].map { $0.map { "\($0.total)/\($0.count)" } ?? "none" } ?? "?" }
                if got.contains(where: { $0 != "\(e.total)/\(e.count)" }) {
                    v.report += "        \(k): stream \(e.total)/\(e.count) (total/count), nodes \(got.joined(separator: ", "))\n"
                }
            }
            v.report += describe(materializer, check)
        }

        let all = Set(eventIDs)
        let functionDone = eventually(timeout: .seconds(60), interval: .milliseconds(500)) {
            let got = self.lock.withLock { Set(self.delivered.keys) }
            return all.isSubset(of: got)
        }
        let (deliveries, unique, calls, failedOnPurpose, disorder, missing) = lock.withLock {
            (
                delivered.values.reduce(0, +), delivered.count, invocations, failedOnce.count, outOfOrder,
                all.subtracting(delivered.keys)
            )
        }
        v.check(
            functionDone && disorder.isEmpty,
            "processors: the function got every record of the stream at least once, each key's first in order (\(all.count) records, \(deliveries) deliveries in \(calls) invocations: \(deliveries - unique) again, \(failedOnPurpose) failed on purpose and retried)"
        )
        for m in missing.sorted().prefix(10) { v.report += "        never delivered: \(m)\n" }
        for d in disorder.prefix(10) { v.report += "        out of order: \(d)\n" }
        if !functionDone { v.report += describe(function, check) }

        // Nothing was given up: every failure here was one a retry cures.
        let letters = [materializer, function].map { name -> Int? in
            guard let r = check.read(0, "/v1/streams/_dlq.\(name)/partitions/0/records?from=trim-horizon&limit=1000") else { return nil }
            if r.status == 404 { return 0 }
            guard r.status == 200, case .array(let list)? = r.json()?["records"] else { return nil }
            return list.count
        }
        v.check(
            letters.allSatisfy { $0 == 0 },
            "processors: no dead letters (materialize \(letters[0].map(String.init) ?? "unreadable"), function \(letters[1].map(String.init) ?? "unreadable"))"
        )
        for name in [materializer, function] { _ = check.call("DELETE", 0, "/v1/processors/\(name)") }
    }

    /// A processor's partitions as `describe` shows them, for a failure's report.
    func describe(_ name: String, _ check: CheckRun) -> String {
        guard let r = check.read(0, "/v1/processors/\(name)"), case .array(let parts)? = r.json()?["partitions"] else {
            return "        \(name): no description\n"
        }
        return parts.map { "        \(name) \($0.serialized)\n" }.joined()
    }
}
