import ArgumentParser
import TandemTools

/// `tandem check`: the chaos checker. Workloads run against every node while a seeded nemesis
/// kills, stalls, partitions and degrades regions through a fault command (`cluster/chaos`);
/// after healing, the checker verifies what the cluster promised and prints a verdict with
/// figures. Exits 1 on any violation, naming the seed so the run can be replayed.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Run workloads under injected faults, then verify nothing acknowledged was lost.")

    @Option(name: .customLong("api"), help: "host:port of each region's API, in region order (r1, r2, …).") var apis: [String]
    @Option(help: "Command that injects faults: `<cmd> kill r2`, `stop`, `start`, `partition r1`, `heal`, `loss 10%`, `clear`.")
    var nemesis: String
    @Option(help: "Seconds of workload under faults.") var seconds = 180.0
    @Option(help: "Seed of the fault schedule (printed; rerun with it to replay).") var seed: UInt64?
    @Option(help: "Seconds between faults (each lasts about half of that).") var faultEvery = 12.0
    @Option(help: "Counter writer threads.") var counterWriters = 4
    @Option(help: "Set writer threads.") var setWriters = 2
    @Option(help: "Packet loss (percent) kept on every region for the whole run, on top of the faults.") var loss = 0
    @Option(help: "Seconds the cluster may take to route around a dead region, or to agree again after a change.") var routeBound = 5.0

    func run() throws {
        var o = Check.Options(apis: apis, nemesis: nemesis)
        o.seconds = seconds
        o.seed = seed
        o.faultEvery = faultEvery
        o.counterWriters = counterWriters
        o.setWriters = setWriters
        o.loss = loss
        o.routeBound = routeBound
        if try !Check(o).run() { throw ExitCode(1) }
    }
}
