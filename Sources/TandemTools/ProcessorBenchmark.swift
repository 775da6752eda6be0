import Foundation
import TandemCore
import TandemTestKit
import Transport

/// Processor figures (`tandem bench processors`, `scripts/bench-processors`): real nodes on
/// loopback, a no-op function served by this process on its own loop thread (it answers
/// `{"batchItemFailures":[]}` and notes when each record arrived), release build.
///
/// - throughput: a stream filled first, then a processor from trim-horizon; records/s from its
///   creation to its checkpoint at the end, 1 partition and 8.
/// - latency: puts at 1,000 records/s; put (the record carries its send time) → handler.
/// - materialize: a filled stream into a table (a counter per key): records/s.
/// - resume: 3 nodes, fast profile, kill -9 of the partition's leader while records flow: the
///   time to the first delivery by the new owner.
public struct ProcessorBenchmark {
    public struct Options: Sendable {
        public var records = 200_000
        public var latencySeconds = 10
        public var resumeRuns = 5
        public var only: String?
        public init() {}
    }

    public let options: Options
    public init(_ options: Options) { self.options = options }

    public func run() throws {
        let parts = Set((options.only ?? "throughput,latency,materialize,resume").split(separator: ",").map(String.init))
        print(
            "processors benchmark — real nodes on 127.0.0.1, a no-op function in this process, \(ProcessInfo.processInfo.activeProcessorCount) cores shared by all\n"
        )
        fflush(nil)
        let fn = try NoOpFunction()
        if parts.contains("throughput") {
            try throughput(fn, partitions: 1, batchSize: 100)
            try throughput(fn, partitions: 8, batchSize: 100)
            try throughput(fn, partitions: 1, batchSize: 1_000)
        }
        if parts.contains("latency") { try latency(fn) }
        if parts.contains("materialize") {
            // Queue counters (few keys: records of a batch share items) and agent counters
            // (many keys: nearly every record its own item write, the table store's pace).
            try materialize(keys: 100)
            try materialize(keys: 10_000)
        }
        if parts.contains("resume") { try resume(fn) }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: The function

    /// An HTTP function on its own loop and thread: answers every batch with success at once and
    /// records, per record, the delay from the put's send time carried in the data (`"t": ns`).
    final class NoOpFunction: @unchecked Sendable {
        let port: Int
        private let lock = NSLock()
        private var records = 0
        private var batches = 0
        private var delaysMs: [Double] = []
        private var firstAfter: [(ns: UInt64, records: Int)] = []
        var measuring = false

        init() throws {
            port = LocalCluster.freePortBase(count: 1)
            let ready = DispatchSemaphore(value: 0)
            let box = ServerBox()
            let port = port
            let thread = Thread { [self] in
                let loop = EventLoop()
                do {
                    let server = try HTTPServer(loop: loop, bind: try SocketAddress("127.0.0.1:\(port)"))
                    server.handler = { [self] request, respond in
                        self.received(request.body)
                        respond(HTTPResponse(status: 200, body: Array(#"{"batchItemFailures":[]}"#.utf8)))
                    }
                    box.server = server
                } catch {
                    box.error = error
                }
                ready.signal()
                loop.run()
            }
            thread.start()
            ready.wait()
            if let e = box.error { throw e }
        }

        final class ServerBox: @unchecked Sendable {
            var server: HTTPServer?
            var error: Error?
        }

        var url: String { "http://127.0.0.1:\(port)/2015-03-31/functions/noop/invocations" }

        private func received(_ body: [UInt8]) {
            let now = StreamBenchmark.wallNs()
            var n = 0
            var delays: [Double] = []
            // Count records by their eventID; read send times only while measuring latency.
            if measuring, let j = try? JSON.parse(body), case .array(let list)? = j["Records"] {
                n = list.count
                for r in list {
                    if let b64 = r["kinesis"]?["data"]?.stringValue, let data = Base64.decode(b64), let d = try? JSON.parse(data),
                        case .number(let t)? = d["t"], let sent = UInt64(t), now > sent
                    {
                        delays.append(Double(now - sent) / 1e6)
                    }
                }
            } else {
                let needle = Array("\"eventID\"".utf8)
                var i = 0
                while let r = body[i...].firstRange(of: needle) {
                    n += 1
                    i = r.upperBound
                }
            }
            lock.lock()
            records += n
            batches += 1
            delaysMs += delays
            lock.unlock()
        }

        func counts() -> (records: Int, batches: Int) {
            lock.lock()
            defer { lock.unlock() }
            return (records, batches)
        }

        func delayCount() -> Int {
            lock.lock()
            defer { lock.unlock() }
            return delaysMs.count
        }

        func takeDelays() -> [Double] {
            lock.lock()
            defer { lock.unlock() }
            let d = delaysMs
            delaysMs = []
            return d
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Parts

    func start(_ size: Int, profile: String = "fast") throws -> LocalCluster {
        let cluster = try LocalCluster(size: size, profile: profile)
        try cluster.startAll()
        guard
            eventually(
                timeout: .seconds(20),
                {
                    (0..<size).allSatisfy { cluster.view(from: $0)?.values.filter { $0.status == "alive" }.count == size }
                })
        else { throw ToolError("cluster did not form") }
        return cluster
    }

    func request(_ api: String, _ method: String, _ path: String, _ body: String) throws -> HTTPClient.Response {
        try HTTPClient.request(method, api, path, body: Array(body.utf8), timeout: .seconds(10))
    }

    /// Fills `stream` with `n` 100-byte JSON records (batches of 500); returns put errors.
    func fill(_ api: String, _ stream: String, _ n: Int, keys: Int = 1_000) throws -> Int {
        let session = try HTTPSession(api)
        var errors = 0
        var i = 0
        while i < n {
            var recs: [String] = []
            for k in 0..<min(500, n - i) {
                let data = "{\"queue\":\"q\((i + k) % keys)\",\"amount\":\((i + k) % 7),\"pad\":\"\(String(repeating: "x", count: 48))\"}"
                recs.append("{\"key\":\"k\((i + k) % keys)\",\"data\":\"\(Base64.encode(Array(data.utf8)))\"}")
            }
            let r = try session.request(
                "POST", "/v1/streams/\(stream)/records", body: Array("{\"records\":[\(recs.joined(separator: ","))]}".utf8))
            if r.status != 200 || (r.json()?["failedRecordCount"]?.intValue ?? 1) != 0 { errors += 1 }
            i += recs.count
        }
        return errors
    }

    /// Polls until the processor's checkpoints stop moving for good at the end of the stream:
    /// every partition's `pending` 0 and its iterator age 0, read from the describe API.
    func waitDone(_ api: String, _ name: String, partitions: Int, timeout: Duration) -> Bool {
        eventually(timeout: timeout, interval: .milliseconds(50)) {
            guard let r = try? HTTPClient.request("GET", api, "/v1/processors/\(name)", timeout: .seconds(2)), r.status == 200,
                case .array(let parts)? = r.json()?["partitions"], parts.count == partitions
            else { return false }
            return parts.allSatisfy {
                $0["pending"]?.intValue == 0 && $0["inFlight"]?.intValue == 0 && $0["checkpoint"]?.stringValue != nil
            }
        }
    }

    func throughput(_ fn: NoOpFunction, partitions: Int, batchSize: Int) throws {
        let cluster = try start(1)
        let api = cluster.nodes[0].api
        _ = try request(api, "PUT", "/v1/streams/tp", "{\"partitions\":\(partitions)}")
        let putErrors = try fill(api, "tp", options.records)
        let before = fn.counts()
        let cpu0 = cluster.cpuSeconds(0) ?? 0
        let started = ContinuousClock.now
        let def = "{\"source\":{\"stream\":\"tp\"},\"batchSize\":\(batchSize),\"target\":{\"function\":{\"url\":\"\(fn.url)\"}}}"
        let created = try request(api, "PUT", "/v1/processors/tp-fn", def)
        guard created.status == 201 else { throw ToolError("create processor: \(created.text)") }
        // Done when the function has seen every record (duplicates would only add).
        let done = eventually(timeout: .seconds(300), interval: .milliseconds(20)) {
            fn.counts().records - before.records >= options.records
        }
        let seconds = (ContinuousClock.now - started).seconds
        let got = fn.counts()
        let cpu = (cluster.cpuSeconds(0) ?? 0) - cpu0
        let rate = Double(got.records - before.records) / seconds
        let failures = cluster.metricTotal("tandem_processor_batch_failures_total", node: 0)
        let errors = putErrors + Int(failures) + (done ? 0 : 1)
        let perPartition = rate / Double(partitions)
        report(
            "\(partitions) partition\(partitions == 1 ? "" : "s"), batches of \(batchSize), to a no-op function",
            String(
                format:
                    "%.0f records/s (%.0f per partition), %d batches, %.1f s; node CPU %.1f s (%.1f µs/record); failed batches %.0f, put errors %d",
                rate, perPartition, got.batches - before.batches, seconds, cpu, cpu * 1e6 / Double(max(1, got.records - before.records)),
                failures,
                putErrors),
            target: "reported", met: nil, errors: errors)
    }

    func latency(_ fn: NoOpFunction) throws {
        let cluster = try start(1)
        let api = cluster.nodes[0].api
        _ = try request(api, "PUT", "/v1/streams/lat", "{\"partitions\":4}")
        let def = "{\"source\":{\"stream\":\"lat\",\"startingPosition\":\"latest\"},\"target\":{\"function\":{\"url\":\"\(fn.url)\"}}}"
        guard try request(api, "PUT", "/v1/processors/lat-fn", def).status == 201 else { throw ToolError("create processor") }
        _ = waitDone(api, "lat-fn", partitions: 4, timeout: .seconds(10))
        fn.measuring = true
        _ = fn.takeDelays()
        var k = 0
        let gen = try LoadGenerator(target: api) {
            k += 1
            let data = "{\"t\":\(StreamBenchmark.wallNs())}"
            return ("POST", "/v1/streams/lat/records", Array("{\"key\":\"k\(k)\",\"data\":\"\(Base64.encode(Array(data.utf8)))\"}".utf8))
        }
        let usage0 = Self.selfCPU()
        let r = gen.run(connections: 8, duration: .seconds(Int64(options.latencySeconds)), ratePerSecond: 1_000)
        let genCPU = Self.selfCPU() - usage0
        _ = eventually(timeout: .seconds(5)) { fn.delayCount() >= r.requests }
        fn.measuring = false
        let ms = fn.takeDelays().sorted()
        func p(_ q: Double) -> Double { ms.isEmpty ? .nan : ms[min(ms.count - 1, Int(Double(ms.count) * q))] }
        report(
            "put → handler at 1,000 records/s (4 partitions, single-record puts)",
            String(
                format: "p50 %.2f ms, p99 %.2f ms, max %.2f ms (n=%d of %d puts, put errors %d); put p99 %.2f ms; generator CPU %.1f s",
                p(0.5), p(0.99), ms.last ?? .nan, ms.count, r.requests, r.errors, r.percentile(0.99), genCPU),
            target: "p99 ≤ 5 ms", met: p(0.99) <= 5, errors: r.errors + max(0, r.requests - ms.count), samples: ms.count, need: 1_000)
    }

    func materialize(keys: Int) throws {
        let cluster = try start(1)
        let api = cluster.nodes[0].api
        _ = try request(api, "PUT", "/v1/streams/mat", "{\"partitions\":4}")
        _ = try request(api, "PUT", "/v1/tables/queues", #"{"partitionKey":"queue"}"#)
        let putErrors = try fill(api, "mat", options.records, keys: keys)
        let cpu0 = cluster.cpuSeconds(0) ?? 0
        let started = ContinuousClock.now
        let def = """
            {"source":{"stream":"mat"},"batchSize":1000,
             "target":{"materialize":{"table":"queues","key":{"queue":"$.queue"},"add":{"total":"$.amount","count":1}}}}
            """
        guard try request(api, "PUT", "/v1/processors/mat", def).status == 201 else { throw ToolError("create processor") }
        var applied = 0.0
        let done = eventually(timeout: .seconds(300), interval: .milliseconds(20)) {
            applied = cluster.metricTotal("tandem_processor_records_total", node: 0)
            return applied >= Double(options.records)
        }
        let seconds = (ContinuousClock.now - started).seconds
        let cpu = (cluster.cpuSeconds(0) ?? 0) - cpu0
        // Check the sums: `keys` counters, amounts (i % 7).
        var expected = 0
        for i in 0..<options.records { expected += i % 7 }
        var total = 0
        var readErrors = 0
        let reader = try HTTPSession(api)
        for q in 0..<keys {
            guard let r = try? reader.request("GET", "/v1/tables/queues/items/q\(q)"), r.status == 200 else {
                readErrors += 1
                continue
            }
            total += r.json()?["item"]?["total"]?.intValue ?? 0
        }
        let failures = cluster.metricTotal("tandem_processor_batch_failures_total", node: 0)
        report(
            "materialize \(options.records) records (4 partitions, batches of 1,000) into \(keys) counters",
            String(
                format:
                    "%.0f records/s, %.1f s, node CPU %.1f s; sum %d of %d expected; failed batches %.0f, put errors %d, read errors %d",
                applied / seconds, seconds, cpu, total, expected, failures, putErrors, readErrors),
            target: "≥ 50,000 records/s, sums exact", met: applied / seconds >= 50_000 && total == expected,
            errors: putErrors + Int(failures) + readErrors + (done ? 0 : 1))
    }

    func resume(_ fn: NoOpFunction) throws {
        var times: [Double] = []
        var errors = 0
        for run in 0..<options.resumeRuns {
            let cluster = try start(3)
            let apis = cluster.nodes.map(\.api)
            _ = try request(apis[0], "PUT", "/v1/streams/rs", "{\"partitions\":1}")
            let def = "{\"source\":{\"stream\":\"rs\",\"startingPosition\":\"latest\"},\"target\":{\"function\":{\"url\":\"\(fn.url)\"}}}"
            guard try request(apis[0], "PUT", "/v1/processors/rs-fn", def).status == 201 else { throw ToolError("create processor") }
            var leader: Int?
            guard
                eventually(
                    timeout: .seconds(15),
                    {
                        guard let r = try? HTTPClient.request("GET", apis[0], "/v1/processors/rs-fn"),
                            case .array(let p)? = r.json()?["partitions"],
                            let owner = p.first?["owner"]?.stringValue
                        else { return false }
                        leader = cluster.nodes.firstIndex { $0.name == owner }
                        return leader != nil
                    }), let leader
            else {
                errors += 1
                continue
            }
            let writer = (leader + 1) % 3
            let session = try HTTPSession(apis[writer])
            // Records flow at ~200/s; the kill lands mid-flow.
            func putOne() {
                _ = try? session.request(
                    "POST", "/v1/streams/rs/records", body: Array(#"{"key":"k","data":"e30="}"#.utf8), timeout: .seconds(2))
            }
            for _ in 0..<50 {
                putOne()
                usleep(5_000)
            }
            cluster.kill9(leader)
            let killed = ContinuousClock.now
            let base = fn.counts().records
            var resumed: Duration?
            let deadline = killed + .seconds(15)
            while ContinuousClock.now < deadline {
                putOne()
                if fn.counts().records > base {
                    resumed = ContinuousClock.now - killed
                    break
                }
                usleep(5_000)
            }
            if let resumed { times.append(resumed.seconds) } else { errors += 1 }
            print("    run \(run + 1): \(resumed.map { String(format: "%.2f s", $0.seconds) } ?? "did not resume within 15 s")")
            fflush(nil)
        }
        let sorted = times.sorted()
        let median = sorted.isEmpty ? .nan : sorted[sorted.count / 2]
        report(
            "resume after kill -9 of the consuming leader (3 nodes, fast profile; kill → first delivery by the new owner)",
            String(format: "median %.2f s, max %.2f s over %d runs", median, sorted.last ?? .nan, sorted.count),
            target: "≤ 2 s", met: (sorted.last ?? .infinity) <= 2, errors: errors, samples: sorted.count, need: 3)
    }

    func report(_ what: String, _ figures: String, target: String, met: Bool?, errors: Int = 0, samples: Int = 1, need: Int = 1) {
        print("• \(what): \(figures)")
        print(
            "    target \(target): \(met.map { verdict($0, errors: errors, samples: samples, need: need) } ?? (errors > 0 ? "ERRORS \(errors)" : "reported"))\n"
        )
        fflush(nil)
    }

    /// CPU seconds (user + system) this process has used.
    static func selfCPU() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
    }
}
