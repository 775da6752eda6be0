@testable import GlobalTable
import Simulation
import TandemCore
import Testing

/// Global-table replication under faults, in simulation: random writes on random nodes with
/// loss, reordering, partitions and crashes (which lose what was not yet committed), then
/// heal — every replica holds the same bytes, and that state is the merge of what was written:
/// every acknowledged write in it, nothing that was never written.
@Suite struct TableSimulationTests {
    /// Everything up: same catalog, same keys, same bytes everywhere.
    func converged(_ sim: TableSimulation) -> Bool {
        let cores = (0..<sim.config.nodes).compactMap { sim.core($0) }
        guard cores.count == sim.config.nodes, let first = cores.first?.replicas[TableSimulation.table] else { return false }
        guard let reference = try? first.allItems().map({ "\($0.key)=\(ItemCodec.encode($0.state))" }) else { return false }
        return cores.allSatisfy { core in
            guard let r = core.replicas[TableSimulation.table], core.catalog == cores[0].catalog,
                let items = try? r.allItems().map({ "\($0.key)=\(ItemCodec.encode($0.state))" })
            else { return false }
            return items == reference
        }
    }

    /// Drives `sim` with client writes and random faults for `steps` × 50 ms, then heals.
    func runWithFaults(_ sim: TableSimulation, seed: UInt64, steps: Int) -> (crashes: Int, partitions: Int) {
        var rng = SeededGenerator(seed: seed ^ 0x7AB1E)
        let n = sim.config.nodes
        var crashes = 0, partitions = 0
        for step in 0..<steps {
            for _ in 0..<3 { sim.clientWrite(on: Int(rng.next() % UInt64(n))) }
            if step % 8 == 0 {
                switch rng.next() % 5 {
                case 0:
                    let up = (0..<n).filter { sim.isUp[$0] }
                    if up.count > 1 {
                        sim.crash(up[Int(rng.next() % UInt64(up.count))])
                        crashes += 1
                    }
                case 1:
                    for i in 0..<n { sim.start(i) }
                case 2:
                    var members = Array(0..<n)
                    members.shuffle(using: &rng)
                    let cut = 1 + Int(rng.next() % UInt64(n - 1))
                    sim.partition([Array(members[..<cut]), Array(members[cut...])])
                    partitions += 1
                case 3:
                    sim.heal()
                default:
                    break
                }
            }
            sim.run(for: .milliseconds(50))
        }
        sim.heal()
        for i in 0..<n { sim.start(i) }
        return (crashes, partitions)
    }

    /// Runs until quiescent (bounded): every replica holds the same bytes and every node's
    /// stable time has passed the last write, so every tombstone has been collected alike. Then
    /// a little longer, to show it stays so.
    func settle(_ sim: TableSimulation) -> Bool {
        let last = sim.writes.map { $0.delta.lastWriteTime }.max() ?? 0
        for _ in 0..<600 {
            sim.run(for: .milliseconds(100))
            let collected = (0..<sim.config.nodes).allSatisfy { (sim.core($0)?.collectible ?? 0) > last }
            if collected && converged(sim) {
                sim.run(for: .milliseconds(2_000))
                return converged(sim)
            }
        }
        return false
    }

    @Test func replicasConvergeToTheMergeOfWhatWasWritten() {
        for seed in scenarioSeeds(24, salt: 31) {
            var config = TableSimulation.Config()
            config.nodes = 3 + Int(seed % 3)
            let sim = TableSimulation(seed: seed, config: config)
            let faults = runWithFaults(sim, seed: seed, steps: 160)
            #expect(settle(sim), "seed \(seed): replicas did not converge")
            let acknowledged = sim.writes.filter(\.acknowledged).count
            #expect(acknowledged > 100, "seed \(seed): only \(acknowledged) writes acknowledged")
            #expect(faults.crashes + faults.partitions > 0, "seed \(seed): no faults were injected")

            expectMergeOfWrites(sim, seed: seed)
        }
    }

    /// The final state of each key is the merge of some of the writes made to it: all the
    /// acknowledged ones, perhaps some that were not (replicated before their node crashed),
    /// nothing else — never one whose commit failed. Compared fully compacted, so collected
    /// tombstones and the writes they covered compare alike.
    func expectMergeOfWrites(_ sim: TableSimulation, seed: UInt64) {
        let replica = sim.core(0)!.replicas[TableSimulation.table]!
        let horizon = sim.writes.map { $0.delta.lastWriteTime }.max()! + 1
        func settled(_ s: ItemState) -> ItemState { s.compacted(stable: horizon) ?? ItemState() }
        var byKey: [ItemKey: [TableSimulation.Write]] = [:]
        for w in sim.writes { byKey[w.key, default: []].append(w) }
        for (key, writes) in byKey.sorted(by: { $0.key < $1.key }) {
            let final = settled((try? replica.state(key)) ?? nil ?? ItemState())
            let acknowledged = writes.filter(\.acknowledged).reduce(ItemState()) { $0.merged($1.delta) }
            let unacknowledged = writes.filter { !$0.acknowledged && !$0.failed }
            #expect(unacknowledged.count <= 10, "seed \(seed): \(unacknowledged.count) unacknowledged writes to \(key)")
            let explained = (0..<(1 << min(unacknowledged.count, 10))).contains { subset in
                var s = acknowledged
                for (i, w) in unacknowledged.enumerated() where subset & (1 << i) != 0 { s.merge(w.delta) }
                return settled(s) == final
            }
            #expect(explained, "seed \(seed): \(key) is not the merge of its acknowledged writes and some unacknowledged (not failed) ones")
        }
    }

    /// Commits the disk refuses, on top of the other faults: a write whose commit failed (or
    /// that was made on top of one that did) is reported failed, and appears on no replica.
    @Test func writesWhoseCommitFailedAppearNowhere() {
        for seed in scenarioSeeds(6, salt: 33) {
            var config = TableSimulation.Config()
            config.storeFailureRate = 0.1
            let sim = TableSimulation(seed: seed, config: config)
            _ = runWithFaults(sim, seed: seed, steps: 100)
            #expect(settle(sim), "seed \(seed): replicas did not converge")
            let failed = sim.writes.filter(\.failed).count
            #expect(failed > 0, "seed \(seed): no commit failed")
            #expect(sim.writes.filter(\.acknowledged).count > 50, "seed \(seed): too few writes acknowledged")
            expectMergeOfWrites(sim, seed: seed)
        }
    }

    /// A member partitioned away longer than the retention bound: the others collect
    /// tombstones without it, and when it returns it resyncs — the deletes stay deleted.
    @Test func aMemberGoneLongerThanTheRetentionResyncsAndDeletesStayDeleted() {
        for seed in scenarioSeeds(10, salt: 32) {
            var config = TableSimulation.Config()
            config.nodes = 5
            config.keys = 6
            config.core.retentionMs = 1_000
            let sim = TableSimulation(seed: seed, config: config)
            for _ in 0..<40 {
                for i in 0..<5 { sim.clientWrite(on: i) }
                sim.run(for: .milliseconds(50))
            }
            #expect(settle(sim), "seed \(seed): did not converge before the partition")
            let before = try! sim.core(4)!.replicas[TableSimulation.table]!.allItems().map(\.key)
            sim.partition([[0, 1, 2, 3], [4]])
            // The majority deletes everything the straggler holds, then waits out the retention.
            for i in 0..<4 { sim.run(for: .milliseconds(20)); _ = i }
            for key in before { sim.deleteOn(0, key) }
            sim.run(for: .milliseconds(4_000))
            #expect(sim.core(0)!.expired["n4"] != nil, "seed \(seed): n4 was not expired")
            #expect(sim.core(0)!.stats.itemsCollected > 0, "seed \(seed): no deleted item was collected")
            // The straggler keeps writing to other attributes of old items meanwhile — those
            // writes predate the cluster's stable time when it returns, and are dropped with
            // the rest of its stale state.
            sim.heal()
            #expect(settle(sim), "seed \(seed): did not converge after the straggler returned")
            #expect(sim.core(4)!.stats.resyncs >= 1, "seed \(seed): n4 never resynced")
            for i in 0..<5 {
                let r = sim.core(i)!.replicas[TableSimulation.table]!
                let back = before.filter { k in ((try? r.state(k)) ?? nil)?.visible != nil }
                #expect(back.isEmpty, "seed \(seed): n\(i) shows \(back.count) deleted items again")
            }
        }
    }
}
