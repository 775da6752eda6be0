import ArgumentParser
import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Transport

/// `tandem stream …`: the streams API from the command line.
struct StreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream", abstract: "Create streams, put records, read and consume them.",
        subcommands: [Create.self, List.self, Describe.self, Delete.self, Put.self, Read.self, Consume.self])

    struct Options: ParsableArguments {
        @Option(help: "host:port of any node's API.") var api: String
    }

    static func request(_ api: String, _ method: String, _ path: String, _ body: String? = nil, timeout: Duration = .seconds(10)) throws
        -> HTTPClient.Response
    {
        try HTTPClient.request(method, api, path, body: body.map { Array($0.utf8) }, timeout: timeout)
    }

    static func call(_ api: String, _ method: String, _ path: String, _ body: String? = nil) throws {
        let r = try request(api, method, path, body)
        if r.status >= 300 {
            FileHandle.standardError.write(Data("error \(r.status): \(r.text)".utf8))
            throw ExitCode(1)
        }
        print(r.text, terminator: r.text.hasSuffix("\n") ? "" : "\n")
    }

    static func path(_ segments: String...) -> String {
        "/"
            + segments.map {
                $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? $0
            }
            .joined(separator: "/")
    }

    /// A record's data as text when it is UTF-8, else as base64.
    static func show(_ record: JSON) -> String {
        let data = record["data"]?.stringValue.flatMap { Base64.decode($0) } ?? []
        let text = String(validating: data, as: UTF8.self).map { $0 } ?? "base64:" + (record["data"]?.stringValue ?? "")
        return "\(record["sequence"]?.stringValue ?? "?") \(record["key"]?.stringValue ?? "?") \(text)"
    }

    struct Create: ParsableCommand {
        @Argument var stream: String
        @Option var partitions = 4
        @Option(help: "How long records are kept: hours, or a number with h or d (24h, 7d).") var retention = "24h"
        @OptionGroup var options: Options
        func run() throws {
            let text = retention.lowercased()
            let hours: Int? =
                if text.hasSuffix("d") { Int(text.dropLast()).map { $0 * 24 } } else {
                    Int(text.hasSuffix("h") ? String(text.dropLast()) : text)
                }
            guard let hours else { throw ValidationError("--retention is like 24h or 7d") }
            try call(options.api, "PUT", path("v1", "streams", stream), "{\"partitions\":\(partitions),\"retentionHours\":\(hours)}")
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var options: Options
        func run() throws { try call(options.api, "GET", "/v1/streams") }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Partitions, replicas, leaders, commit index and follower lag.")
        @Argument var stream: String
        @OptionGroup var options: Options
        func run() throws { try call(options.api, "GET", path("v1", "streams", stream)) }
    }

    struct Delete: ParsableCommand {
        @Argument var stream: String
        @OptionGroup var options: Options
        func run() throws { try call(options.api, "DELETE", path("v1", "streams", stream)) }
    }

    /// `tandem stream put agent-events --key a-17 '{"type":"login"}'` → partition and sequence.
    struct Put: ParsableCommand {
        @Argument var stream: String
        @Option(help: "Partition key (its MD5 picks the partition, as in Kinesis; older streams: FNV-1a 64).") var key: String
        @Argument(help: "The record's data (any text; sent as base64).") var data: String
        @OptionGroup var options: Options
        func run() throws {
            let body = JSON.object([("key", .string(key)), ("data", .string(Base64.encode(Array(data.utf8))))]).serialized
            try call(options.api, "POST", path("v1", "streams", stream, "records"), body)
        }
    }

    /// Prints `sequence key data` per record, in order; `--follow` keeps waiting for more.
    struct Read: ParsableCommand {
        @Argument var stream: String
        @Option var partition: Int
        @Option(help: "trim-horizon, latest, at:SEQ, after:SEQ or time:MS.") var from = "trim-horizon"
        @Option(help: "Records per request.") var limit = 1000
        @Flag(help: "Keep reading as records arrive.") var follow = false
        @Flag(help: "Print each answer as JSON.") var json = false
        @OptionGroup var options: Options
        func run() throws {
            var position = from
            let session = try HTTPSession(options.api)
            while true {
                let wait = follow ? 10_000 : 0
                let r = try session.request(
                    "GET",
                    path("v1", "streams", stream, "partitions", String(partition), "records")
                        + "?from=\(position)&limit=\(limit)&waitMs=\(wait)", timeout: .seconds(30))
                guard r.status == 200, let j = try? JSON.parse(r.body), case .array(let records)? = j["records"],
                    let next = j["next"]?.stringValue
                else {
                    if follow && r.status == 503 { usleep(200_000); continue }
                    FileHandle.standardError.write(Data("error \(r.status): \(r.text)".utf8))
                    throw ExitCode(1)
                }
                if json { print(r.text, terminator: "") } else { for rec in records { print(show(rec)) } }
                fflush(nil)
                position = next
                if !follow && records.count < limit { return }
            }
        }
    }

    /// Reads every partition from the consumer's checkpoints (or `--from` where it has none),
    /// prints each record, and checkpoints after printing: at-least-once, in order per partition.
    struct Consume: ParsableCommand {
        @Argument var stream: String
        @Option var consumer: String
        @Option(help: "Where to start a partition that has no checkpoint yet.") var from = "trim-horizon"
        @Option(help: "Stop after this many records (default: run until interrupted).") var max: Int?
        @OptionGroup var options: Options

        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var printed = 0
            var done = false
        }

        func run() throws {
            let d = try request(options.api, "GET", path("v1", "streams", stream))
            guard d.status == 200, let j = try? JSON.parse(d.body), case .number(let n)? = j["partitions"], let partitions = Int(n) else {
                FileHandle.standardError.write(Data("error \(d.status): \(d.text)".utf8))
                throw ExitCode(1)
            }
            let shared = Shared()
            let (api, stream, consumer, from, max) = (options.api, self.stream, self.consumer, self.from, self.max)
            let threads = (0..<partitions).map { p in
                Thread {
                    Consume.follow(api: api, stream: stream, consumer: consumer, partition: p, from: from, max: max, shared)
                }
            }
            for t in threads { t.start() }
            // Each partition's thread checkpoints what it printed before it returns.
            while !threads.allSatisfy(\.isFinished) { usleep(20_000) }
            fflush(nil)
        }

        static func follow(api: String, stream: String, consumer: String, partition p: Int, from: String, max: Int?, _ shared: Shared) {
            let checkpointPath = StreamCommand.path("v1", "streams", stream, "consumers", consumer, "checkpoints", String(p))
            var position = from
            while true {
                guard let r = try? request(api, "GET", checkpointPath) else { usleep(200_000); continue }
                if r.status == 200, let seq = (try? JSON.parse(r.body))?["sequence"]?.stringValue { position = "after:\(seq)" }
                if r.status == 200 || r.status == 404 { break }
                usleep(200_000)
            }
            let recordsPath = StreamCommand.path("v1", "streams", stream, "partitions", String(p), "records")
            guard let session = try? HTTPSession(api) else { return }
            while true {
                shared.lock.lock()
                let stop = shared.done
                shared.lock.unlock()
                if stop { return }
                guard let r = try? session.request("GET", recordsPath + "?from=\(position)&limit=500&waitMs=1000", timeout: .seconds(10)),
                    r.status == 200, let j = try? JSON.parse(r.body), case .array(let records)? = j["records"],
                    let next = j["next"]?.stringValue
                else {
                    usleep(200_000)
                    continue
                }
                var lastSequence: String?
                shared.lock.lock()
                for rec in records {
                    if let max, shared.printed >= max { shared.done = true; break }
                    print("\(p) \(show(rec))")
                    shared.printed += 1
                    lastSequence = rec["sequence"]?.stringValue
                }
                if let max, shared.printed >= max { shared.done = true }
                fflush(nil)
                shared.lock.unlock()
                // Checkpoint only what was printed; a crash before this reprints (at-least-once).
                if let lastSequence {
                    while (try? session.request(
                        "PUT", checkpointPath, body: Array("{\"sequence\":\"\(lastSequence)\"}".utf8),
                        timeout: .seconds(10)))?.status != 200
                    {
                        usleep(200_000)
                    }
                }
                if lastSequence == records.last?["sequence"]?.stringValue { position = next } else { return }
            }
        }
    }
}
