import ArgumentParser
import Foundation
import Logging
import Membership
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Transport

@main
struct Tandem: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Active-active multi-region infrastructure for contact centers.",
        subcommands: [
            NodeCommand.self, MembersCommand.self, TableCommand.self, StreamCommand.self, ProcessorCommand.self, AgentCommand.self,
            ContactCommand.self, QueueCommand.self, SplitCommand.self,
            EdgesCommand.self,
            RouteCommand.self, KeysCommand.self, DemoCommand.self, BenchCommand.self, HTTPCommand.self, CheckCommand.self,
            TortureCommand.self
        ])
}

struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "node", abstract: "Run a node.")

    @Option(help: "Unique node name.") var name: String
    @Option(help: "Region this node serves.") var region: String
    @Option(help: "host:port for gossip (UDP) and peer links (TCP); 0.0.0.0 or [::] with --advertise.") var bind: String
    @Option(
        help:
            "host:port (IP address) other nodes and clients are told to reach this node at (NAT, containers); default: --bind.")
    var advertise: String?
    @Option(help: "host:port for the HTTP API.") var api: String
    @Option(
        name: .customLong("advertise-api"),
        help:
            "host:port clients are told the API is at; default: --api, or the --advertise host with --api's port when --api is a wildcard.")
    var advertiseAPI: String?
    @Option(name: .customLong("data-dir"), help: "Directory for everything the node must not lose.") var dataDir: String
    @Option(help: "host:port of a node to join through (repeatable); a DNS name is resolved again at every attempt.") var seed: [String] =
        []
    @Option(
        help:
            "Timing profile: region (the default: sub-second failover between regions 20–80 ms apart, a few packets a second), lan, wan or fast."
    )
    var profile: String = "region"
    @Flag(help: "Vote in Raft but serve no clients.") var witness = false
    @Flag(help: "Enable the /v1/chaos fault-injection endpoint (tests only).") var chaos = false
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: String = "info"
    @Option(
        name: .customLong("instance-health"),
        help: "http://host:port/path of this region's contact-center instance health check; polled, a failure stops new contacts here.")
    var instanceHealth: String?
    @Option(
        name: .customLong("hold-down"),
        help: "Seconds a returning node must stay healthy before it takes contacts again (default: 10, fast profile: 2).")
    var holdDown: Double?
    @Option(
        help:
            "File of base64 32-byte cluster keys, one per line, the first the primary: seals all gossip and peer traffic (tandem keys generate)."
    )
    var keyring: String?
    @Option(
        name: .customLong("api-tokens"),
        help:
            "File of 'TOKEN ROLE [ACCESS_KEY_ID]' lines (roles read, write, admin): the API then requires Authorization: Bearer TOKEN, or on the AWS APIs a SigV4 signature with ACCESS_KEY_ID and TOKEN as secret."
    )
    var apiTokens: String?
    @Option(
        name: .customLong("request-timeout"), help: "Seconds a client has to send a request's headers (slow clients get 408; default 10).")
    var requestTimeout: Double = 10
    @Option(name: .customLong("max-client-connections"), help: "HTTP connections one client IP may hold (default 256; more get 429).")
    var maxClientConnections: Int = 256
    @Option(
        name: .customLong("table-cache-items"),
        help: "Decoded table items kept in memory per cache generation (at most twice this many; default 16384, 0 = none).")
    var tableCacheItems: Int = 16_384
    @Option(name: .customLong("stream-hour-ms"), help: .hidden) var streamHourMs: UInt64 = 3_600_000
    @Option(name: .customLong("stream-segment-bytes"), help: .hidden) var streamSegmentBytes: Int = 64 << 20
    @Option(name: .customLong("cc-snapshot-entries"), help: .hidden) var centerSnapshotEntries: UInt64 = 20_000
    @Option(name: .customLong("max-queued-writes"), help: .hidden) var maxQueuedWrites: Int = 50_000
    @Option(name: .customLong("max-pending-puts"), help: .hidden) var maxPendingPuts: Int = 10_000
    @Flag(name: .customLong("stream-leader-answers-only"), help: .hidden) var streamLeaderAnswersOnly = false

    func validate() throws {
        guard MembershipSettings.profile(named: profile) != nil else {
            throw ValidationError("--profile must be region, lan, wan or fast")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if let instanceHealth, !instanceHealth.hasPrefix("http://") {
            throw ValidationError("--instance-health must be an http:// URL")
        }
        guard (0.1...3600).contains(requestTimeout) else { throw ValidationError("--request-timeout must be 0.1 to 3600 seconds") }
        guard streamHourMs >= 100, streamSegmentBytes >= 1024 else {
            throw ValidationError("--stream-hour-ms ≥ 100, --stream-segment-bytes ≥ 1024")
        }
        guard maxClientConnections >= 1 else { throw ValidationError("--max-client-connections must be at least 1") }
        guard (0...10_000_000).contains(tableCacheItems) else { throw ValidationError("--table-cache-items must be 0 to 10000000") }
        if let holdDown, !(0...3600).contains(holdDown) { throw ValidationError("--hold-down must be 0 to 3600 seconds") }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var config = NodeConfig(name: name, region: region, bind: bind, api: api, dataDir: dataDir)
        config.seeds = seed
        config.advertise = advertise
        config.advertiseAPI = advertiseAPI
        config.profileName = profile
        config.settings = MembershipSettings.profile(named: profile)!
        config.role = witness ? .witness : .voter
        config.chaos = chaos
        config.holdDown = .milliseconds(Int64((holdDown ?? (profile == "fast" ? 2 : 10)) * 1000))
        config.instanceHealthURL = instanceHealth
        config.keyringPath = keyring
        config.apiTokensPath = apiTokens
        config.httpLimits.headerTimeout = .milliseconds(Int64(requestTimeout * 1000))
        config.httpLimits.bodyTimeout = max(config.httpLimits.bodyTimeout, config.httpLimits.headerTimeout)
        config.httpLimits.maxConnectionsPerClient = maxClientConnections
        config.tableCacheItems = tableCacheItems
        config.streamHourMs = streamHourMs
        config.streamSegmentBytes = streamSegmentBytes
        config.centerSnapshotEntries = max(1, centerSnapshotEntries)
        config.maxQueuedWrites = maxQueuedWrites
        config.maxPendingPuts = maxPendingPuts
        config.streamLeaderAnswersOnly = streamLeaderAnswersOnly
        let node: Node
        do {
            node = try Node(config: config, logger: Logger(label: "tandem.\(name)"))
        } catch {
            FileHandle.standardError.write(Data("tandem node: \(error)\n".utf8))
            throw ExitCode(1)
        }
        node.run()
    }
}

struct MembersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "members", abstract: "List members as a node sees them.")

    @Option(help: "host:port of any node's API.") var api: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let response = try HTTPClient.request("GET", api, "/v1/members")
        guard response.status == 200 else {
            FileHandle.standardError.write(Data("error \(response.status): \(response.text)\n".utf8))
            throw ExitCode(1)
        }
        if json {
            print(response.text, terminator: "")
            return
        }
        print(try membersTable(response), terminator: "")
    }
}

/// A string or number field as printed in a table ("" when absent).
func fieldText(_ j: JSON?) -> String {
    switch j {
    case .string(let s)?: s
    case .number(let n)?: n
    default: ""
    }
}

/// The `tandem members` table for a `/v1/members` answer.
func membersTable(_ response: HTTPClient.Response) throws -> String {
    guard let members = response.json()?["members"]?.arrayValue else {
        throw ValidationError("unexpected answer: \(response.text)")
    }
    let header = ["NAME", "REGION", "ADDRESS", "API", "STATUS", "INC", "RTT"]
    var rows = [header]
    for m in members {
        let me = m["self"]?.boolValue == true
        rows.append([
            "\(fieldText(m["name"]))\(me ? " *" : "")", fieldText(m["region"]), fieldText(m["address"]),
            fieldText(m["api"]), fieldText(m["status"]), fieldText(m["incarnation"]),
            m["rttEstimateMs"]?.doubleValue.map { String(format: "%.2fms", $0) } ?? "-"
        ])
    }
    let widths = header.indices.map { i in rows.map { $0[i].count }.max()! }
    return rows.map { row in
        row.indices.map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
}
