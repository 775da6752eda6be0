import ArgumentParser
import Foundation
import TandemCore

/// `tandem processor …`: the processors API from the command line.
struct ProcessorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "processor", abstract: "Run code on streams: create, list, describe, pause, resume, redrive, delete processors.",
        subcommands: [Create.self, List.self, Describe.self, Pause.self, Resume.self, Redrive.self, Delete.self])

    typealias Options = StreamCommand.Options

    static func path(_ name: String, _ action: String? = nil) -> String {
        action.map { StreamCommand.path("v1", "processors", name, $0) } ?? StreamCommand.path("v1", "processors", name)
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or replace a processor.",
            discussion: """
                The definition is the JSON of PUT /v1/processors/{name} (--definition, a file or - for standard
                input), or built from the flags: --stream with one of --function-url, --forward-to, or
                --materialize (a JSON object: {"table", "key", "set", "add", "addToSet", "removeFromSet"}).
                """)
        @Argument var name: String
        @Option(help: "The whole definition as JSON: a file, or - for standard input.") var definition: String?
        @Option(help: "The source stream.") var stream: String?
        @Option(help: "trim-horizon, latest or at-timestamp.") var startingPosition = "trim-horizon"
        @Option(help: "With at-timestamp: milliseconds since the epoch.") var timestampMs: UInt64?
        @Option(help: "Records per batch, 1 to 10000.") var batchSize = 100
        @Option(help: "Wait up to this long to fill a batch, 0 to 300000 ms.") var maxBatchingWindowMs = 0
        @Option(help: "Batches in flight per partition, 1 to 10 (order kept per key).") var parallelizationFactor = 1
        @Option(help: "Retries before a record is dead-lettered; -1 until its age runs out.") var maxRetryAttempts = 10
        @Option(help: "Records older than this are dead-lettered; -1 never.") var maxRecordAgeSeconds = 86_400
        @Flag(inversion: .prefixedNo, help: "Split a failing batch to find the failing record.") var bisectOnError = true
        @Option(help: "A filter pattern (Lambda's syntax), up to 5, OR-ed.") var filter: [String] = []
        @Option(help: "Target: an HTTP function (a plain URL or a Lambda Invoke API URL).") var functionURL: String?
        @Option(help: "With --function-url: timeout in ms.") var timeoutMs = 30_000
        @Option(help: "Target: forward records into this stream.") var forwardTo: String?
        @Option(help: "Target: materialize into a table (JSON object).") var materialize: String?
        @OptionGroup var options: Options

        func run() throws {
            let body: String
            if let definition {
                let data =
                    definition == "-"
                    ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: definition))
                body = String(decoding: data, as: UTF8.self)
            } else {
                guard let stream else { throw ValidationError("give --definition, or --stream and a target") }
                let targets = [functionURL, forwardTo, materialize].compactMap { $0 }
                guard targets.count == 1 else { throw ValidationError("give exactly one of --function-url, --forward-to, --materialize") }
                let target: JSON
                if let functionURL {
                    target = .object([("function", .object([("url", .string(functionURL)), ("timeoutMs", .number("\(timeoutMs)"))]))])
                } else if let forwardTo {
                    target = .object([("forward", .object([("stream", .string(forwardTo))]))])
                } else {
                    guard let m = try? JSON.parse(Array(materialize!.utf8)) else { throw ValidationError("--materialize is a JSON object") }
                    target = .object([("materialize", m)])
                }
                var source: [(String, JSON)] = [("stream", .string(stream)), ("startingPosition", .string(startingPosition))]
                if let timestampMs { source.append(("timestampMs", .number("\(timestampMs)"))) }
                var filters: [JSON] = []
                for f in filter {
                    guard let j = try? JSON.parse(Array(f.utf8)) else { throw ValidationError("--filter \(f): not JSON") }
                    filters.append(j)
                }
                body =
                    JSON.object([
                        ("source", .object(source)), ("batchSize", .number("\(batchSize)")),
                        ("maxBatchingWindowMs", .number("\(maxBatchingWindowMs)")),
                        ("parallelizationFactor", .number("\(parallelizationFactor)")),
                        ("maxRetryAttempts", .number("\(maxRetryAttempts)")), ("maxRecordAgeSeconds", .number("\(maxRecordAgeSeconds)")),
                        ("bisectOnError", .bool(bisectOnError)), ("filters", .array(filters)), ("target", target)
                    ]).serialized
            }
            try StreamCommand.call(options.api, "PUT", path(name), body)
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var options: Options
        func run() throws { try StreamCommand.call(options.api, "GET", "/v1/processors") }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The definition and, per partition: owner, checkpoint, iterator age, in flight, retries, dead letters.")
        @Argument var name: String
        @OptionGroup var options: Options
        func run() throws { try StreamCommand.call(options.api, "GET", path(name)) }
    }

    struct Pause: ParsableCommand {
        @Argument var name: String
        @OptionGroup var options: Options
        func run() throws { try StreamCommand.call(options.api, "POST", path(name, "pause")) }
    }

    struct Resume: ParsableCommand {
        @Argument var name: String
        @OptionGroup var options: Options
        func run() throws { try StreamCommand.call(options.api, "POST", path(name, "resume")) }
    }

    struct Redrive: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deliver the dead letters given up so far to the target again (those failing again are dead-lettered again).")
        @Argument var name: String
        @OptionGroup var options: Options
        func run() throws { try StreamCommand.call(options.api, "POST", path(name, "redrive")) }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a processor and its checkpoints (its dead-letter stream stays).")
        @Argument var name: String
        @OptionGroup var options: Options
        func run() throws { try StreamCommand.call(options.api, "DELETE", path(name)) }
    }
}
