import ArgumentParser
import Foundation
import Storage
import TandemNode
import TandemTestKit
import Transport

/// `tandem torture`: `kill -9` a random node at a random moment under a mixed write load, restart
/// it on its data dir, and check that every acknowledged write is there (see `Torture`).
struct TortureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torture",
        abstract: "Crash torture: kill -9 under write load, restart, verify every acknowledged write (exits 1 on any loss).")

    @Option(help: "Rounds (one kill -9 and restart each).") var rounds = 20
    @Option(help: "Nodes (3 or more keeps the stream writable while one is down).") var nodes = 3
    @Option(help: "Seed for the victims and kill moments (default random).") var seed: UInt64?
    @Option(name: .customLong("max-load-ms"), help: "Longest load before a kill; the kill comes at a random moment up to it.")
    var maxLoadMs = 1_500

    func run() throws {
        var o = Torture.Options()
        o.rounds = rounds
        o.nodes = nodes
        o.maxLoadMs = maxLoadMs
        if let seed { o.seed = seed }
        let clock = ContinuousClock()
        let start = clock.now
        let r = try Torture.run(o)
        let took = clock.now - start
        print(
            """

            torture: \(r.rounds)/\(rounds) rounds in \(took.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 0)))), seed \(o.seed)
              acknowledged: \(r.ackedPuts) puts, \(r.ackedIncrements) increments (counter \(r.counter), \(r.unknownIncrements) of unknown outcome), \(r.ackedRecords) stream records
              acknowledged writes lost: \(r.lostPuts) puts, \(r.lostRecords) records; violations: \(r.violations.count)
            """)
        if !r.ok || r.rounds < rounds { throw ExitCode(1) }
    }
}
