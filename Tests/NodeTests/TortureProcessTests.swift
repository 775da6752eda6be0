import Foundation
import Storage
import TandemNode
import TandemTestKit
import Testing
import Transport

/// A short crash torture: 3 rounds of `kill -9` under puts, increments and stream records on 3
/// nodes; nothing acknowledged is lost (`scripts/torture` runs 20 or more rounds).
@Suite(.serialized) struct TortureProcessTests {
    @Test func acknowledgedWritesSurviveRepeatedKill9() throws {
        var o = Torture.Options()
        o.rounds = Int(ProcessInfo.processInfo.environment["TANDEM_TORTURE_ROUNDS"] ?? "") ?? 3
        o.seed = UInt64(ProcessInfo.processInfo.environment["TANDEM_SEED"] ?? "") ?? UInt64.random(in: 1..<1_000_000)
        o.maxLoadMs = 1_000
        let r = try Torture.run(o)
        #expect(r.rounds == o.rounds, "stopped after \(r.rounds) rounds (seed \(o.seed))")
        #expect(r.violations.isEmpty, "seed \(o.seed): \(r.violations.prefix(5))")
        #expect(r.lostPuts == 0 && r.lostRecords == 0)
        #expect(r.ackedPuts > 0 && r.ackedIncrements > 0 && r.ackedRecords > 0, "no load was acknowledged")
    }
}
