import ArgumentParser
import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Transport

/// `tandem split …`: the target split, drains, and what the table makes of them.
struct SplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split", abstract: "Set, drain and show the traffic split between regions.",
        subcommands: [Set.self, Drain.self, Undrain.self, Show.self])

    struct Options: ParsableArguments {
        @Option(help: "host:port of any node's API.") var api: String
    }

    /// `tandem split set us-east-1=50 eu-west-1=50`: percentages with up to two decimals.
    struct Set: ParsableCommand {
        @Argument(help: "region=percent, one per region (relative weights; up to two decimals).") var weights: [String]
        @Option(help: "edge=region: pin an edge to a region (repeatable).") var pin: [String] = []
        @OptionGroup var options: Options
        func run() throws {
            var w: [String: Double] = [:]
            for entry in weights {
                let kv = entry.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, let n = Double(kv[1]) else { throw ValidationError("'\(entry)' is not region=percent") }
                w[String(kv[0])] = n
            }
            var pins: [String: String] = [:]
            for entry in pin {
                let kv = entry.split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { throw ValidationError("'\(entry)' is not edge=region") }
                pins[String(kv[0])] = String(kv[1])
            }
            let body: JSON = ["weights": JSON(w.mapValues { JSON($0) }), "overrides": JSON(pins.mapValues { JSON($0) })]
            try TableCommand.call(options.api, "PUT", "/v1/split", body.serialized)
        }
    }

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Maintenance: no new contacts to REGION.")
        @Argument var region: String
        @OptionGroup var options: Options
        func run() throws { try TableCommand.call(options.api, "POST", TableCommand.path("v1", "regions", region, "drain")) }
    }

    struct Undrain: ParsableCommand {
        @Argument var region: String
        @OptionGroup var options: Options
        func run() throws { try TableCommand.call(options.api, "POST", TableCommand.path("v1", "regions", region, "undrain")) }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Target, effective (after health) and the table fingerprint.")
        @OptionGroup var options: Options
        func run() throws { try TableCommand.call(options.api, "GET", "/v1/split") }
    }
}

/// `tandem edges set edges.json`.
struct EdgesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edges", abstract: "Where callers come in and their RTT to each region.",
        subcommands: [Set.self, Show.self, RTT.self])

    struct Set: ParsableCommand {
        @Argument(help: "JSON: {\"edges\": {\"nyc\": {\"rttMs\": {\"us-east-1\": 8, \"eu-west-1\": 75}, \"volume\": 1}}}") var file: String
        @OptionGroup var options: SplitCommand.Options
        func run() throws {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            try TableCommand.call(options.api, "PUT", "/v1/edges", text)
        }
    }

    struct Show: ParsableCommand {
        @OptionGroup var options: SplitCommand.Options
        func run() throws { try TableCommand.call(options.api, "GET", "/v1/edges") }
    }

    struct RTT: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The region-to-region RTT matrix the nodes publish (fills RTTs an edge's config lacks).")
        @OptionGroup var options: SplitCommand.Options
        func run() throws { try TableCommand.call(options.api, "GET", "/v1/regions/rtt") }
    }
}

/// `tandem route --contact C-1001 --edge nyc`.
struct RouteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "route", abstract: "Which region and node take a contact.")
    @Option(help: "The contact id.") var contact: String
    @Option(help: "The edge the caller came in at (omit for the plain split).") var edge: String?
    @OptionGroup var options: SplitCommand.Options
    func run() throws {
        var q = ["contact": contact]
        q["edge"] = edge
        try TableCommand.call(options.api, "GET", "/v1/route?" + TableCommand.query(q))
    }
}
