import Foundation
import TandemCore
import Testing

@testable import Processing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// A real Lambda handler — Python, written with aws-lambda-powertools' batch processor for
/// Kinesis (Tests/lambda/handler.py) — served by a small Invoke API adapter
/// (Tests/lambda/invoke_server.py). Tandem's event goes in unmodified, and what the handler
/// answers means what Lambda would make of it. Needs the venv that Tests/lambda/install makes
/// (scripts/test runs it); skipped without it.
@Suite(.enabled(if: InvokeServer.available, "needs .build/lambda-venv: run Tests/lambda/install"))
struct LambdaHandlerTests {
    static func records(_ datas: [String], from first: UInt64, key: String = "agent-1") -> [ProcessorRecord] {
        datas.enumerated().map { i, d in
            ProcessorRecord(sequence: first + UInt64(i), key: key, data: Array(d.utf8), timestamp: 1_700_000_000_000 + UInt64(i))
        }
    }

    static func event(_ records: [ProcessorRecord]) -> [UInt8] {
        LambdaEvent.kinesisEvent(records, stream: "agent-events", partition: 3, region: "us-east-1")
    }

    @Test func powertoolsPartialFailuresBecomeTheLowestFailedSequence() async throws {
        let server = try await InvokeServer.start(function: "agent-handler")
        defer { server.stop() }

        // Records 12 and 14 fail; powertools reports both, Lambda's rule keeps the lowest.
        let batch = Self.records(
            [#"{"n":0}"#, #"{"n":1}"#, #"{"n":2,"fail":true}"#, #"{"n":3}"#, #"{"n":4,"fail":true}"#, #"{"n":5}"#], from: 10)
        let answer = try await server.invoke(Self.event(batch))
        #expect(answer.status == 200)
        #expect(answer.functionError == nil)
        let reported = try JSON.parse(answer.body)["batchItemFailures"]?.arrayValue?.compactMap { $0["itemIdentifier"]?.stringValue }
        #expect(reported == [SequenceText.format(12), SequenceText.format(14)])
        #expect(
            LambdaEvent.outcome(status: answer.status, functionError: answer.functionError, body: answer.body, batch: batch.map(\.sequence))
                == .partialFailure(lowestFailed: 12))

        // Lambda retries from the checkpoint: the same poison record fails first again.
        let retry = Array(batch[2...])
        let again = try await server.invoke(Self.event(retry))
        #expect(
            LambdaEvent.outcome(status: again.status, functionError: again.functionError, body: again.body, batch: retry.map(\.sequence))
                == .partialFailure(lowestFailed: 12))
    }

    @Test func powertoolsSuccessAndNonJSONData() async throws {
        let server = try await InvokeServer.start(function: "agent-handler")
        defer { server.stop() }

        let batch = Self.records([#"{"n":0}"#, "plain text, not JSON", #"{"fail":false}"#, ""], from: 100)
        let answer = try await server.invoke(Self.event(batch))
        #expect(answer.status == 200)
        #expect(answer.functionError == nil)
        #expect(try JSON.parse(answer.body) == .object([("batchItemFailures", .array([]))]))
        #expect(
            LambdaEvent.outcome(status: answer.status, functionError: answer.functionError, body: answer.body, batch: batch.map(\.sequence))
                == .success)

        // The handler saw each record as sent: sequence number, partition key, decoded data.
        let seen = try JSON.parse(try await server.seen())
        let expected: [JSON] = batch.map { r in
            .array([.string(SequenceText.format(r.sequence)), .string(r.key), .string(String(decoding: r.data, as: UTF8.self))])
        }
        #expect(seen == .array(expected))
    }

    @Test func anEntirelyFailedBatchIsAnUnhandledFunctionError() async throws {
        let server = try await InvokeServer.start(function: "agent-handler")
        defer { server.stop() }

        // powertools raises when every record failed; Lambda answers 200 with X-Amz-Function-Error.
        let batch = Self.records([#"{"fail":true}"#, #"{"fail":true}"#], from: 7)
        let answer = try await server.invoke(Self.event(batch))
        #expect(answer.status == 200)
        #expect(answer.functionError == "Unhandled")
        let outcome = LambdaEvent.outcome(
            status: answer.status, functionError: answer.functionError, body: answer.body, batch: batch.map(\.sequence))
        guard case .failure(let why) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(why.hasPrefix("function error (Unhandled): BatchProcessingError"))
    }

    @Test func anUnknownFunctionFailsTheBatch() async throws {
        let server = try await InvokeServer.start(function: "agent-handler")
        defer { server.stop() }

        let batch = Self.records([#"{"n":0}"#], from: 1)
        let answer = try await server.invoke(Self.event(batch), function: "no-such-function")
        #expect(answer.status == 404)
        #expect(
            LambdaEvent.outcome(status: answer.status, functionError: answer.functionError, body: answer.body, batch: [1])
                == .failure("function answered HTTP 404"))
    }
}

/// The Invoke API adapter as a child process: started on a free port (it writes the port to a
/// file once it listens), stopped by the test that started it. posix_spawn rather than
/// Foundation's Process: the test runner's threads block SIGTERM, a mask Process passes on to the
/// child (which then ignores terminate() and hangs waitUntilExit).
final class InvokeServer: Sendable {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let venv = root.appendingPathComponent(".build/lambda-venv")
    static var available: Bool { FileManager.default.fileExists(atPath: venv.appendingPathComponent("ready").path) }

    let pid: pid_t
    let directory: URL
    let port: Int
    let function: String

    init(pid: pid_t, directory: URL, port: Int, function: String) {
        self.pid = pid
        self.directory = directory
        self.port = port
        self.function = function
    }

    struct AdapterError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    static func start(function: String, within seconds: Double = 30) async throws -> InvokeServer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-lambda-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let portFile = directory.appendingPathComponent("port").path
        let log = directory.appendingPathComponent("log").path
        let pid = try spawn(
            venv.appendingPathComponent("bin/python").path,
            [
                root.appendingPathComponent("Tests/lambda/invoke_server.py").path, "--function", function, "--port-file", portFile,
                "--parent-pid", String(getpid())
            ],
            log: log)
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) {
                return InvokeServer(pid: pid, directory: directory, port: port, function: function)
            }
            var status: Int32 = 0
            let exited = waitpid(pid, &status, WNOHANG) == pid
            if exited || Date() > deadline {
                if !exited { stop(pid) }
                let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                try? FileManager.default.removeItem(at: directory)
                throw AdapterError(message: "invoke_server.py did not start within \(seconds) s: \(output.suffix(2000))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func stop() {
        Self.stop(pid)
        try? FileManager.default.removeItem(at: directory)
    }

    /// SIGTERM, up to 5 s for the exit, then SIGKILL; reaps the child either way.
    static func stop(_ pid: pid_t) {
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        var status: Int32 = 0
        while Date() < deadline {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno != EINTR) { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    /// `path args…` with stdout and stderr to `log`, signals unblocked and at their defaults.
    static func spawn(_ path: String, _ args: [String], log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw AdapterError(message: "posix_spawn \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    func invoke(_ event: [UInt8], function: String? = nil) async throws -> (status: Int, functionError: String?, body: [UInt8]) {
        let url = URL(string: "http://127.0.0.1:\(port)/2015-03-31/functions/\(function ?? self.function)/invocations")!
        var request = URLRequest(url: url, timeoutInterval: 30)
        request.httpMethod = "POST"
        request.httpBody = Data(event)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        return (http.statusCode, http.value(forHTTPHeaderField: "X-Amz-Function-Error"), Array(data))
    }

    func seen() async throws -> [UInt8] {
        let request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/seen")!, timeoutInterval: 30)
        let (data, _) = try await URLSession.shared.data(for: request)
        return Array(data)
    }
}
