import ArgumentParser
import TandemTools

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks that print figures next to their targets.",
        subcommands: [
            MembershipBench.self, AwaitMembers.self, TableBench.self, StreamBench.self, RouteBench.self, AWSBench.self, ProcessorBench.self,
            ContactsBench.self
        ])
}

struct MembershipBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "membership")

    @Option(help: "Kill/detect runs with the fast profile.") var fastRuns = MembershipBenchmark.Options().fastRuns
    @Option(help: "Kill/detect runs with the lan profile.") var lanRuns = MembershipBenchmark.Options().lanRuns
    @Option(help: "Partition/heal runs per profile.") var healRuns = MembershipBenchmark.Options().healRuns
    @Option(help: "Seconds of 10% loss.") var lossSeconds = MembershipBenchmark.Options().lossSeconds
    @Option(help: "Seconds of the stall test (a 5 s SIGSTOP every 15 s).") var stallSeconds = MembershipBenchmark.Options().stallSeconds
    @Flag(help: "Short version of everything (a smoke run, not the figures).") var quick = MembershipBenchmark.Options().quick
    @Option(help: "Comma-separated parts to run: detect-fast, detect-lan, heal, join, loss, stall, load (default all).") var only: String?

    func run() throws {
        var o = MembershipBenchmark.Options()
        o.fastRuns = fastRuns
        o.lanRuns = lanRuns
        o.healRuns = healRuns
        o.lossSeconds = lossSeconds
        o.stallSeconds = stallSeconds
        o.quick = quick
        o.only = only
        try MembershipBenchmark(o).run()
    }
}

/// For scripts/bench-membership-ns: polls every `--api` (all at once, every 2 ms) until each
/// lists `--member` with `--status` (or, with `--all-alive`, lists every member alive), then
/// prints the wall-clock time it first saw that, in seconds since the epoch. Exit 1 on timeout.
struct AwaitMembers: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "await-members", shouldDisplay: false)

    @Option(name: .customLong("api")) var apis: [String]
    @Option var member: String?
    @Option var status = "dead"
    @Option var count = 0
    @Flag(name: .customLong("all-alive")) var allAlive = false
    @Option var timeout = 60.0

    func run() throws {
        let condition: MembershipBenchmark.ViewCondition =
            allAlive ? .allAlive(count: count) : .member(member ?? "", status: status)
        guard let at = MembershipBenchmark.awaitViews(apis: apis, condition, timeout: timeout) else {
            print("timeout")
            throw ExitCode(1)
        }
        print(String(format: "%.4f", at))
    }
}

struct AWSBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "aws")

    @Option(help: "Seconds per operation.") var seconds = AWSBenchmark.Options().seconds
    @Option(help: "Keep-alive client connections.") var connections = AWSBenchmark.Options().connections
    @Option(help: "Comma-separated parts: items, indexes, records (default all).") var only: String?

    func run() throws {
        var o = AWSBenchmark.Options()
        o.seconds = seconds
        o.connections = connections
        if let only { o.parts = Set(only.split(separator: ",").map(String.init)) }
        try AWSBenchmark(o).run()
    }
}

struct RouteBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "route")

    @Option(help: "Seconds of HTTP load per handler (in 3 alternating phases).") var seconds = RouteBenchmark.Options().seconds
    @Option(help: "Keep-alive client connections for the HTTP phase.") var connections = RouteBenchmark.Options().connections
    @Option(help: "Kill/converge runs.") var runs = RouteBenchmark.Options().runs
    @Option(help: "Seconds of the 5 % loss run (spurious route changes).") var lossSeconds = RouteBenchmark.Options().lossSeconds
    @Option(help: "Comma-separated parts: decision, recompute, http, converge, loss (default all).") var only: String?

    func run() throws {
        var o = RouteBenchmark.Options()
        o.seconds = seconds
        o.connections = connections
        o.runs = runs
        o.lossSeconds = lossSeconds
        o.only = only
        try RouteBenchmark(o).run()
    }
}

struct StreamBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stream")

    @Option(help: "Seconds per load phase.") var seconds = StreamBenchmark.Options().seconds
    @Option(help: "Failover runs with the fast profile.") var fastRuns = StreamBenchmark.Options().fastRuns
    @Option(help: "Failover runs with the lan (default) profile.") var lanRuns = StreamBenchmark.Options().lanRuns
    @Option(help: "Comma-separated parts: pipelined, serial, delivery, failover, follower-wan (default all).") var only: String?
    @Option(help: "One-way delay between nodes (ms) for follower-wan.") var wanDelayMs = StreamBenchmark.Options().wanDelayMs
    @Option(help: "Requests in flight per connection in the HTTP-pipelined run (256 in all).") var depth = StreamBenchmark.Options().depth

    func run() throws {
        var o = StreamBenchmark.Options()
        o.seconds = seconds
        o.fastRuns = fastRuns
        o.lanRuns = lanRuns
        o.only = only
        o.wanDelayMs = wanDelayMs
        o.depth = depth
        try StreamBenchmark(o).run()
    }
}

struct TableBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "table")

    @Option(help: "Seconds per throughput phase.") var seconds = TableBenchmark.Options().seconds
    @Option(help: "Keep-alive client connections.") var connections = TableBenchmark.Options().connections
    @Option(help: "Seconds of partition in the repair test.") var partitionSeconds = TableBenchmark.Options().partitionSeconds
    @Option(help: "Comma-separated parts: throughput, lag, repair, gossip, scale (default all but scale).") var only: String?
    @Option(help: "Run every node with --keyring FILE (to measure the cost of encryption).") var keyring: String?
    @Option(name: .customLong("scale-items"), help: "Distinct items the scale part writes (default 1,000,000).")
    var scaleItems = TableBenchmark.Options().scaleItems

    func run() throws {
        var o = TableBenchmark.Options()
        o.seconds = seconds
        o.connections = connections
        o.partitionSeconds = partitionSeconds
        o.only = only
        o.keyring = keyring
        o.scaleItems = scaleItems
        try TableBenchmark(o).run()
    }
}

struct ProcessorBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "processors")

    @Option(help: "Records in the filled stream of the throughput and materialize runs.") var records = ProcessorBenchmark.Options().records
    @Option(help: "Seconds of the 1,000 records/s latency run.") var latencySeconds = ProcessorBenchmark.Options().latencySeconds
    @Option(help: "Leader kills in the resume run.") var resumeRuns = ProcessorBenchmark.Options().resumeRuns
    @Option(help: "Comma-separated parts: throughput, latency, materialize, resume (default all).") var only: String?

    func run() throws {
        var o = ProcessorBenchmark.Options()
        o.records = records
        o.latencySeconds = latencySeconds
        o.resumeRuns = resumeRuns
        o.only = only
        try ProcessorBenchmark(o).run()
    }
}

struct ContactsBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "contacts")

    @Option(help: "Agents signed in.") var agents = ContactCenterBenchmark.Options().agents
    @Option(help: "Contacts in the core run's free phase (half as many in the busy phase).") var contacts = ContactCenterBenchmark.Options()
        .contacts
    @Option(help: "Seconds of each API load phase.") var seconds = ContactCenterBenchmark.Options().seconds
    @Option(help: "The nodes' timing profile: region, lan, wan or fast.") var profile = ContactCenterBenchmark.Options().profile
    @Option(help: "Comma-separated parts: core, api (default all).") var only: String?

    func run() throws {
        var o = ContactCenterBenchmark.Options()
        o.seconds = seconds
        o.profile = profile
        o.agents = agents
        o.contacts = contacts
        o.only = only
        try ContactCenterBenchmark(o).run()
    }
}
