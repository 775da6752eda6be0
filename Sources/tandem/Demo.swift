import ArgumentParser
import TandemTools

/// The README's main job: a contact center running active-active in three regions on loopback.
/// Callers arrive at edges and are routed; agents log in and change status (a global table and
/// a stream); contacts start and end (a stream); queue counters count (a global table). Midway
/// one region is killed with `kill -9`, later restarted. A live view shows what each region
/// does; the summary measures the failover and checks that nothing acknowledged was lost.
/// Every number printed is measured.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Run a local multi-region contact center through a failover.")

    @Option(help: "Number of regions (nodes), at least 3.") var nodes = Demo.Options().nodes
    @Option(help: "Timing profile: lan, wan or fast.") var profile = Demo.Options().profile
    @Option(help: "Seconds of traffic (the kill comes at 40%, the restart at 70%).") var seconds = Demo.Options().seconds

    func validate() throws {
        guard nodes >= 3 else { throw ValidationError("--nodes must be at least 3") }
        guard ["lan", "wan", "fast"].contains(profile) else { throw ValidationError("--profile must be lan, wan or fast") }
        guard seconds >= 20 else { throw ValidationError("--seconds must be at least 20") }
    }

    func run() throws {
        var o = Demo.Options()
        o.nodes = nodes
        o.profile = profile
        o.seconds = seconds
        if try !Demo(o).run() { throw ExitCode(1) }
    }
}
