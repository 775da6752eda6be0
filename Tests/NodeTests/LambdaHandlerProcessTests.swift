import Foundation
import TandemCore
import TandemTestKit
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// A Tandem node's processor against a real Lambda handler: Python written with
/// aws-lambda-powertools' Kinesis batch processor (Tests/lambda/handler.py), served through the
/// Lambda Invoke API (Tests/lambda/invoke_server.py, which logs every invocation: the sequence
/// numbers it was given, the attempt header and what it answered). Records fail on purpose, and
/// what Tandem did — which records it sent in which invocation, its checkpoints, its dead
/// letters — is judged by the rules Lambda documents for a Kinesis event source mapping with
/// `ReportBatchItemFailures` (Lambda developer guide, "Configuring partial batch response with
/// Kinesis Data Streams and Lambda" and "Retain discarded batch records for a Kinesis Data
/// Streams event source"):
///
/// - L1. Lambda checkpoints past a batch only when it succeeded; an empty or null
///   `batchItemFailures` is a complete success.
/// - L2. With several `batchItemFailures`, the lowest sequence number becomes the checkpoint and
///   every record from it on is retried; with `BisectBatchOnFunctionError` too, the batch is
///   split at that sequence number and only the remaining records are retried.
/// - L3. A function error (the handler raised: X-Amz-Function-Error) fails the whole batch; with
///   `BisectBatchOnFunctionError` the batch is split in two and retried, and a split does not
///   count toward the retry quota; without it the same batch is retried as it was.
/// - L4. `MaximumRetryAttempts` retries after the first invocation, then the records are
///   discarded (to the on-failure destination: here `_dlq.<name>`) and processing continues with
///   the rest of the stream.
///
/// Where Lambda's documentation is silent, Tandem's documented choice is the rule: after a
/// partial answer, the record the function named is the one given up, and the records after it
/// are retried afresh (issue 16, `PartitionConsumer`).
///
/// Skipped, with the reason printed, when the venv that Tests/lambda/install makes is missing.
@Suite(.serialized, .enabled(if: LambdaAdapter.available, "needs .build/lambda-venv with aws-lambda-powertools: run Tests/lambda/install"))
struct LambdaHandlerProcessTests {
    static func call(_ method: String, _ api: String, _ path: String, _ body: String? = nil) -> HTTPClient.Response? {
        try? HTTPClient.request(method, api, path, body: body.map { Array($0.utf8) }, timeout: .seconds(5))
    }

    /// Puts one record; its sequence number, or nil if the put was not acknowledged.
    static func put(_ api: String, _ stream: String, key: String, data: String) -> UInt64? {
        let body = #"{"key":"\#(key)","data":"\#(Base64.encode(Array(data.utf8)))"}"#
        guard let r = call("POST", api, "/v1/streams/\(stream)/records", body), r.status == 200 else { return nil }
        return r.json()?["sequence"]?.stringValue.flatMap { UInt64($0) }
    }

    /// A dead letter as read from `_dlq.<name>`.
    struct Letter {
        var sequence: UInt64
        var attempts: Int
        var condition: String
        var lastError: String
        var at: Double
    }

    static func deadLetters(_ api: String, _ processor: String) -> [Letter] {
        guard let r = call("GET", api, "/v1/streams/_dlq.\(processor)/partitions/0/records?from=trim-horizon&limit=1000"),
            r.status == 200, case .array(let list)? = r.json()?["records"]
        else { return [] }
        return list.compactMap { rec in
            guard let j = rec["data"]?.stringValue.flatMap(Base64.decode).flatMap({ try? JSON.parse($0) }),
                let seq = j["sequenceNumber"]?.stringValue.flatMap({ UInt64($0) }), let attempts = j["attempts"]?.intValue,
                case .number(let at)? = j["deadLetteredAt"], let ms = Double(at)
            else { return nil }
            return Letter(
                sequence: seq, attempts: attempts, condition: j["condition"]?.stringValue ?? "",
                lastError: j["lastError"]?.stringValue ?? "",
                at: ms / 1000)
        }
    }

    /// The processor's partition 0 as `describe` shows it: (checkpoint, pending).
    static func partition0(_ api: String, _ processor: String) -> (checkpoint: UInt64?, pending: Int)? {
        guard let r = call("GET", api, "/v1/processors/\(processor)"), r.status == 200, case .array(let parts)? = r.json()?["partitions"],
            let p = parts.first
        else { return nil }
        return (p["checkpoint"]?.stringValue.flatMap { UInt64($0) }, p["pending"]?.intValue ?? -1)
    }

    static func formed(_ cluster: LocalCluster) -> Bool {
        eventually(timeout: .seconds(20)) { cluster.view(from: 0)?.values.filter { $0.status == "alive" }.count == cluster.nodes.count }
    }

    /// Partial failures, a handler that raises, bisection and dead letters, on one partition
    /// (one batch at a time, so "the next invocation" is well defined). 40 records in batches of
    /// 10, `maxRetryAttempts` 2, `bisectOnError` on:
    /// - 3 and 6 fail in one batch (a partial answer naming both, then one);
    /// - 14 crashes the handler (a whole-batch function error, whatever its neighbours are);
    /// - 29, the last of its batch, fails: alone on its retry, every record of that invocation
    ///   failed, so powertools raises (BatchProcessingError): a function error again.
    @Test func partialFailuresFunctionErrorsAndDeadLettersFollowLambdasRules() throws {
        let cluster = try LocalCluster(size: 1, profile: "fast")
        try cluster.startAll()
        #expect(Self.formed(cluster))
        let adapter = try LambdaAdapter.start(function: "agent-events-handler", root: cluster.root)
        defer { adapter.stop() }
        let api = cluster.nodes[0].api
        #expect(Self.call("PUT", api, "/v1/streams/agent-events", #"{"partitions":1}"#)?.status == 201)

        let poison: [Int: String] = [3: #""fail":true"#, 6: #""fail":true"#, 14: #""crash":true"#, 29: #""fail":true"#]
        var sequences: [UInt64] = []
        for i in 0..<40 {
            let data = poison[i].map { "{\"n\":\(i),\($0)}" } ?? "{\"n\":\(i)}"
            guard let s = Self.put(api, "agent-events", key: "agent-\(i % 4)", data: data) else {
                Issue.record("put \(i) not acknowledged")
                return
            }
            sequences.append(s)
        }
        let poisonSeqs = Set(poison.keys.map { sequences[$0] })
        let index = Dictionary(uniqueKeysWithValues: sequences.enumerated().map { ($1, $0) })
        let maxRetries = 2
        let def = """
            {"source":{"stream":"agent-events","startingPosition":"trim-horizon"},"batchSize":10,"maxRetryAttempts":\(maxRetries),
             "bisectOnError":true,"target":{"function":{"url":"\(adapter.url)","timeoutMs":10000}}}
            """
        let created = Self.call("PUT", api, "/v1/processors/agents", def)
        #expect(created?.status == 201, "\(created?.text ?? "no answer")")

        // Checkpoints as clients see them, sampled while the processor works: (when read, value).
        var checkpoints: [(at: Double, value: UInt64)] = []
        let done = eventually(timeout: .seconds(60), interval: .milliseconds(20)) {
            let d = Self.partition0(api, "agents")
            if let c = d?.checkpoint { checkpoints.append((Date().timeIntervalSince1970, c)) }
            return d?.checkpoint == sequences.last && d?.pending == 0 && Self.deadLetters(api, "agents").count >= poison.count
        }
        let invocations = adapter.invocations()
        let letters = Self.deadLetters(api, "agents")
        func show(_ inv: LambdaAdapter.Invocation) -> String {
            "[\(inv.sequences.map { index[$0].map(String.init) ?? "?" }.joined(separator: ","))] \(inv.outcome)"
                + (inv.failed.isEmpty ? "" : " \(inv.failed.map { index[$0].map(String.init) ?? "?" })") + " attempt \(inv.attempt ?? "-")"
        }
        let trace = invocations.map(show).joined(separator: "\n  ")
        #expect(done, "the processor did not finish: \(Self.partition0(api, "agents").map { "\($0)" } ?? "no describe")\n  \(trace)")
        print("powertools handler, \(invocations.count) invocations:\n  \(trace)")

        // Every invocation carried records of the stream, in order, once each.
        for inv in invocations {
            #expect(inv.sequences.allSatisfy { index[$0] != nil } && inv.sequences == inv.sequences.sorted(), "\(show(inv))")
            #expect(Set(inv.sequences).count == inv.sequences.count, "\(show(inv))")
        }

        // Counted failures of a record: invocations whose failure is that record's — a partial
        // answer whose lowest failed sequence it is, or a function error on it alone. A split
        // (a function error on several records) counts for none (L3).
        var counted: [UInt64: Int] = [:]
        for (k, inv) in invocations.enumerated() {
            let next = k + 1 < invocations.count ? invocations[k + 1] : nil
            switch inv.outcome {
            case "partial":
                // L2: the lowest reported failure is the checkpoint; the batch is split there.
                let lowest = inv.failed.min()!
                counted[lowest, default: 0] += 1
                #expect(inv.attempt == "\(counted[lowest]!)", "the attempt header counts the record's failures: \(show(inv))")
                let rest = Array(inv.sequences.drop { $0 < lowest })
                if counted[lowest]! <= maxRetries {
                    #expect(next?.sequences == rest, "after \(show(inv)) the retry is the batch from its lowest failure on")
                } else if rest.count > 1 {
                    #expect(next?.sequences == Array(rest.dropFirst()), "after \(show(inv)) given up, the rest of the batch goes on")
                }
            case "error" where inv.sequences.count > 1:
                // L3 with bisection: split in two, and the split is not a retry.
                let n = inv.sequences.count
                let halved = next.map { nx in
                    (nx.sequences.count == n / 2 || nx.sequences.count == (n + 1) / 2)
                        && Array(inv.sequences.prefix(nx.sequences.count)) == nx.sequences
                }
                #expect(halved == true, "after \(show(inv)) the batch is split in two: \(next.map(show) ?? "nothing")")
            case "error":
                let only = inv.sequences[0]
                counted[only, default: 0] += 1
                #expect(inv.attempt == "\(counted[only]!)", "the attempt header counts the record's failures: \(show(inv))")
                if counted[only]! <= maxRetries {
                    #expect(next?.sequences == inv.sequences, "after \(show(inv)) the record is retried alone")
                }
            default:
                #expect(inv.outcome == "success", "\(show(inv))")
            }
        }
        // L4: each poison record failed once and was retried maxRetryAttempts times — never
        // more, never sent again after that — and is in the dead-letter stream, once.
        for p in poisonSeqs.sorted() {
            #expect(counted[p] == maxRetries + 1, "record \(index[p]!) failed \(counted[p] ?? 0) times, not \(maxRetries + 1)")
            if let last = invocations.lastIndex(where: { $0.failed.min() == p || $0.sequences == [p] }) {
                #expect(!invocations[(last + 1)...].contains { $0.sequences.contains(p) }, "record \(index[p]!) sent after it was given up")
            }
        }
        #expect(Set(counted.keys) == poisonSeqs, "only the poison records failed: \(counted.keys.compactMap { index[$0] }.sorted())")
        #expect(letters.map(\.sequence).sorted() == poisonSeqs.sorted(), "dead letters: \(letters.map { index[$0.sequence] ?? -1 })")
        #expect(letters.allSatisfy { $0.condition == "RetryAttemptsExhausted" && $0.attempts == maxRetries + 1 })
        #expect(letters.first { $0.sequence == sequences[14] }?.lastError.contains("Unhandled") == true, "the crash's error is named")

        // L1, L3: a record is processed when an invocation answered success with it, or a partial
        // answer named a failure after it. A function error processes nothing: each of its
        // records is sent again (or, given up, dead-lettered).
        var processedAt: [UInt64: Double] = [:]
        for inv in invocations {
            let processed: [UInt64]
            switch inv.outcome {
            case "success": processed = inv.sequences
            case "partial": processed = inv.sequences.filter { $0 < inv.failed.min()! }
            default: processed = []
            }
            for s in processed where processedAt[s] == nil { processedAt[s] = inv.at }
        }
        for (k, inv) in invocations.enumerated() where inv.outcome == "error" {
            for s in inv.sequences {
                #expect(
                    invocations[(k + 1)...].contains { $0.sequences.contains(s) } || letters.contains { $0.sequence == s },
                    "record \(index[s]!) of a failed invocation was neither sent again nor dead-lettered")
            }
        }
        // At least once, none skipped, in order: every other record processed, first in sequence order.
        let good = sequences.filter { !poisonSeqs.contains($0) }
        #expect(good.allSatisfy { processedAt[$0] != nil }, "never processed: \(good.filter { processedAt[$0] == nil }.map { index[$0]! })")
        let firstOrder = good.compactMap { s in processedAt[s].map { (s, $0) } }
        #expect(zip(firstOrder, firstOrder.dropFirst()).allSatisfy { $0.1 <= $1.1 }, "first processed out of order")
        #expect(poisonSeqs.allSatisfy { processedAt[$0] == nil }, "a poison record counted as processed")

        // Checkpoints: while a poison record was being retried the checkpoint stood just below it
        // (L2), and no checkpoint ever passed a record before it was processed or dead-lettered.
        let observed = Set(checkpoints.map(\.value))
        for p in poisonSeqs.sorted() {
            #expect(observed.contains(p - 1), "checkpoint never seen just below poison record \(index[p]!): \(observed.sorted())")
        }
        #expect(zip(checkpoints, checkpoints.dropFirst()).allSatisfy { $0.value <= $1.value }, "a checkpoint went back")
        for c in checkpoints {
            for s in sequences where s <= c.value {
                let doneAt = processedAt[s] ?? letters.first { $0.sequence == s }?.at
                #expect(
                    doneAt.map { $0 <= c.at } == true,
                    "checkpoint \(c.value) read at \(c.at) passed record \(index[s]!) (done at \(doneAt.map { "\($0)" } ?? "never"))")
                if doneAt.map({ $0 <= c.at }) != true { return }
            }
        }
        #expect(checkpoints.last?.value == sequences.last)
    }

    /// Without bisection (Lambda's default), a function error retries the same batch as it was,
    /// `maxRetryAttempts` times, and then the whole batch is discarded to the dead-letter stream
    /// (L3, L4); the partition goes on with the next batch.
    @Test func withoutBisectionAFailingBatchIsRetriedWholeThenDeadLetteredWhole() throws {
        let cluster = try LocalCluster(size: 1, profile: "fast")
        try cluster.startAll()
        #expect(Self.formed(cluster))
        let adapter = try LambdaAdapter.start(function: "queue-handler", root: cluster.root)
        defer { adapter.stop() }
        let api = cluster.nodes[0].api
        #expect(Self.call("PUT", api, "/v1/streams/queue-events", #"{"partitions":1}"#)?.status == 201)
        var sequences: [UInt64] = []
        for i in 0..<16 {
            let data = i == 4 ? #"{"n":4,"crash":true}"# : "{\"n\":\(i)}"
            guard let s = Self.put(api, "queue-events", key: "q", data: data) else {
                Issue.record("put \(i) not acknowledged")
                return
            }
            sequences.append(s)
        }
        let def = """
            {"source":{"stream":"queue-events"},"batchSize":8,"maxRetryAttempts":1,"bisectOnError":false,
             "target":{"function":{"url":"\(adapter.url)","timeoutMs":10000}}}
            """
        #expect(Self.call("PUT", api, "/v1/processors/queues", def)?.status == 201)
        let done = eventually(timeout: .seconds(30)) {
            Self.partition0(api, "queues")?.checkpoint == sequences.last && Self.partition0(api, "queues")?.pending == 0
        }
        #expect(done, "not caught up: \(Self.partition0(api, "queues").map { "\($0)" } ?? "no describe")")
        let invocations = adapter.invocations()
        print("powertools handler, no bisection: \(invocations.map { "\($0.sequences.count) records \($0.outcome)" })")
        guard let failedAt = invocations.firstIndex(where: { $0.outcome == "error" }) else {
            Issue.record("no function error: \(invocations.map(\.outcome))")
            return
        }
        let batch = invocations[failedAt].sequences
        #expect(batch.contains(sequences[4]))
        // The same batch, again, once (maxRetryAttempts 1); never split, never sent again after.
        #expect(
            invocations.count > failedAt + 1 && invocations[failedAt + 1].sequences == batch && invocations[failedAt + 1].outcome == "error"
        )
        #expect(invocations.filter { $0.sequences.contains(sequences[4]) }.count == 2)
        #expect(invocations.allSatisfy { $0.outcome != "error" || $0.sequences == batch })
        // The whole batch is discarded to the dead-letter stream; everything else was processed.
        let letters = eventually(timeout: .seconds(10)) { Self.deadLetters(api, "queues").count >= batch.count }
        #expect(letters)
        let dead = Self.deadLetters(api, "queues")
        #expect(dead.map(\.sequence) == batch)
        #expect(dead.allSatisfy { $0.condition == "RetryAttemptsExhausted" && $0.attempts == 2 })
        let processed = Set(invocations.filter { $0.outcome == "success" }.flatMap(\.sequences))
        #expect(processed == Set(sequences).subtracting(batch), "processed: \(processed.count) of \(sequences.count - batch.count)")
    }
}

/// The Invoke API adapter (Tests/lambda/invoke_server.py) serving handler.py, as a child process
/// on a free port (it writes the port to a file once it listens and exits with the test run).
final class LambdaAdapter {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let venv = root.appendingPathComponent(".build/lambda-venv")
    static var available: Bool { FileManager.default.fileExists(atPath: venv.appendingPathComponent("ready").path) }

    let pid: pid_t
    let port: Int
    let function: String

    init(pid: pid_t, port: Int, function: String) {
        self.pid = pid
        self.port = port
        self.function = function
    }

    struct StartFailed: Error, CustomStringConvertible { var description: String }

    static func start(function: String, root: String) throws -> LambdaAdapter {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let portFile = "\(root)/lambda-\(function).port"
        let log = "\(root)/lambda-\(function).log"
        let pid = try spawn(
            venv.appendingPathComponent("bin/python").path,
            [
                Self.root.appendingPathComponent("Tests/lambda/invoke_server.py").path, "--function", function, "--port-file", portFile,
                "--parent-pid", String(getpid())
            ], log: log)
        var port: Int?
        let up = eventually(timeout: .seconds(30)) {
            port = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0) }
            return port != nil
        }
        guard up, let port else {
            kill(pid, SIGKILL)
            _ = waitExit(pid)
            throw StartFailed(description: "invoke_server.py did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        return LambdaAdapter(pid: pid, port: port, function: function)
    }

    var url: String { "http://127.0.0.1:\(port)/2015-03-31/functions/\(function)/invocations" }

    func stop() {
        kill(pid, SIGKILL)
        _ = waitExit(pid)
    }

    /// One invocation as the adapter logged it, in the order answered.
    struct Invocation {
        var sequences: [UInt64]
        var attempt: String?
        var outcome: String
        var failed: [UInt64]
        var at: Double
    }

    func invocations() -> [Invocation] {
        guard let r = try? HTTPClient.request("GET", "127.0.0.1:\(port)", "/invocations", timeout: .seconds(5)), r.status == 200,
            case .array(let list)? = r.json()
        else { return [] }
        return list.map { j in
            Invocation(
                sequences: j["sequences"]?.arrayValue?.compactMap { $0.stringValue.flatMap { UInt64($0) } } ?? [],
                attempt: j["attempt"]?.stringValue, outcome: j["outcome"]?.stringValue ?? "",
                failed: j["failed"]?.arrayValue?.compactMap { $0.stringValue.flatMap { UInt64($0) } } ?? [],
                at: { if case .number(let t)? = j["at"] { Double(t) ?? 0 } else { 0 } }())
        }
    }
}
