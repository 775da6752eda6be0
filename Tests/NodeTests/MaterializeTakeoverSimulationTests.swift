import GlobalTable
import Processing
import TandemCore
import Testing

@testable import TandemNode

/// Materialize under faults, as a seeded model: three table replicas, each node's writes going
/// to each peer over its own FIFO link (delayed at random, sometimes dropped whole — a gap that
/// only an anti-entropy push from the writer closes), three stream partitions counting into the
/// same two items, and owners that move: a takeover resumes from the partition's stored
/// settled checkpoint (below every batch of the old owner some replica may lack, as
/// `Processors.storableCheckpoint` computes it from the table core's coverage), and the old
/// owner may keep writing for a while (stalled, then resumed before it learns it lost the
/// lead). Every batch goes through `Processors.materialized` on the owner's replica, exactly
/// as the shell applies it. After a heal and a last catch-up, every replica must hold each
/// item's sums of the records once: too little is a record skipped, too much one counted twice.
struct MaterializeTakeoverSimulationTests {
    static let nodes = 3
    static let partitions = 3
    static let recordsPerPartition = 40
    static let keys = ["q0", "q1"]
    static let schema = KeySchema(partitionKey: "queue")
    static let definition = try! ProcessorDefinition(
        name: "totals",
        json: try! JSON.parse(
            Array(
                #"{"source":{"stream":"amounts"},"target":{"materialize":{"table":"totals","key":{"queue":"$.queue"},"add":{"total":"$.amount","count":1}}}}"#
                    .utf8)),
        checkFilters: { _ in })

    /// One owner's batch: its writes, and the peers that do not have them yet.
    final class Batch {
        let first: UInt64
        var lacking: Set<Int>
        init(first: UInt64, lacking: Set<Int>) {
            self.first = first
            self.lacking = lacking
        }
    }

    struct Message {
        var batch: Batch
        var writes: [(key: ItemKey, delta: ItemState)]
    }

    /// A consumer of one partition on one node; `stale` once another node took the partition.
    final class Consumer {
        let node: Int
        let partition: Int
        var position: UInt64
        var batches: [Batch] = []
        var stale = false
        init(node: Int, partition: Int, position: UInt64) {
            self.node = node
            self.partition = partition
            self.position = position
        }
        /// Where a new owner may resume: below this owner's oldest batch a replica lacks.
        var settled: UInt64 {
            batches.removeAll { $0.lacking.isEmpty }
            return min(position, (batches.first?.first ?? .max) - 1)
        }
    }

    struct Run {
        var rng: SeededGenerator
        var items: [[ItemKey: ItemState]] = Array(repeating: [:], count: nodes)
        /// links[from][to]
        var links: [[[Message]]] = Array(repeating: Array(repeating: [], count: nodes), count: nodes)
        var records: [[ProcessorRecord]] = []
        var consumers: [Consumer] = []
        /// The stored settled checkpoint of each partition (last writer wins).
        var checkpoint: [UInt64] = Array(repeating: 0, count: partitions)
        var clockMs: UInt64 = 1_000
        var takeovers = 0
        var stalledWrites = 0

        init(seed: UInt64) {
            rng = SeededGenerator(seed: seed)
            for p in 0..<partitions {
                records.append(
                    (1...recordsPerPartition).map { i in
                        let q = keys[Int(rng.next() % UInt64(keys.count))]
                        let amount = Int(rng.next() % 9) + 1
                        return ProcessorRecord(
                            sequence: UInt64(i), key: "r\(p)-\(i)", data: Array(#"{"queue":"\#(q)","amount":\#(amount)}"#.utf8),
                            timestamp: 0)
                    })
                consumers.append(Consumer(node: p % nodes, partition: p, position: 0))
            }
        }

        mutating func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }

        /// The consumer applies its next batch (1–4 records) on its node's replica, and sends
        /// the writes to every peer.
        mutating func step(_ c: Consumer) {
            let all = records[c.partition]
            guard c.position < UInt64(all.count), case .materialize(let m) = definition.target else { return }
            let n = min(pick(4) + 1, all.count - Int(c.position))
            let batch = Array(all[Int(c.position)..<Int(c.position) + n])
            clockMs += 1
            let node = c.node
            let replica = items[node]
            guard
                let (writes, rejected) = Processors.materialized(
                    m, schema: schema, slotName: "totals#\(c.partition)", batch,
                    at: HLC(physicalMs: clockMs, logical: 0, node: UInt64(node + 1)), read: { replica[$0] })
            else {
                Issue.record("the batch could not be applied")
                return
            }
            #expect(rejected == nil)
            for w in writes { items[node][w.key, default: ItemState()].merge(w.delta) }
            let b = Batch(first: batch[0].sequence, lacking: Set((0..<nodes).filter { $0 != node }))
            c.batches.append(b)
            for peer in 0..<nodes where peer != node { links[node][peer].append(Message(batch: b, writes: writes)) }
            c.position += UInt64(n)
            if c.stale { stalledWrites += 1 }
        }

        mutating func deliver(from: Int, to: Int) {
            guard !links[from][to].isEmpty else { return }
            let msg = links[from][to].removeFirst()
            for w in msg.writes { items[to][w.key, default: ItemState()].merge(w.delta) }
            msg.batch.lacking.remove(to)
        }

        /// An anti-entropy push: every item `from` holds, merged at `to`; it closes the gaps in
        /// `from`'s stream to `to` (every batch `from` wrote before it).
        mutating func antiEntropy(from: Int, to: Int) {
            for (k, s) in items[from] { items[to][k, default: ItemState()].merge(s) }
            for c in consumers where c.node == from { for b in c.batches { b.lacking.remove(to) } }
        }

        /// The partition's lead moves to another node: the new owner resumes from the stored
        /// settled checkpoint; the old one stops at once, or stalls and writes on for a while.
        mutating func takeover(_ p: Int) {
            guard let old = consumers.last(where: { $0.partition == p && !$0.stale }) else { return }
            let node = (old.node + 1 + pick(nodes - 1)) % nodes
            old.stale = true
            if rng.chance(0.5) { consumers.removeAll { $0 === old } }
            consumers.append(Consumer(node: node, partition: p, position: checkpoint[p]))
            takeovers += 1
        }

        mutating func storeCheckpoints() {
            for c in consumers where rng.chance(0.5) { checkpoint[c.partition] = c.settled }
        }

        mutating func chaos(steps: Int) {
            for _ in 0..<steps {
                switch pick(100) {
                case 0..<35: step(consumers[pick(consumers.count)])
                case 35..<80:
                    let from = pick(nodes)
                    deliver(from: from, to: (from + 1 + pick(nodes - 1)) % nodes)
                case 80..<83:
                    let from = pick(nodes)
                    links[from][(from + 1 + pick(nodes - 1)) % nodes] = []
                case 83..<88:
                    let from = pick(nodes)
                    antiEntropy(from: from, to: (from + 1 + pick(nodes - 1)) % nodes)
                case 88..<92: takeover(pick(partitions))
                case 92..<95:
                    // A stalled owner learns it lost the lead.
                    let stale = consumers.filter(\.stale)
                    if !stale.isEmpty {
                        let c = stale[pick(stale.count)]
                        consumers.removeAll { $0 === c }
                    }
                default: break
                }
                storeCheckpoints()
            }
        }

        mutating func heal() {
            for from in 0..<nodes {
                for to in 0..<nodes where to != from {
                    while !links[from][to].isEmpty { deliver(from: from, to: to) }
                }
            }
            for from in 0..<nodes { for to in 0..<nodes where to != from { antiEntropy(from: from, to: to) } }
        }
    }

    static func number(_ s: ItemState?, _ name: String) -> Int? {
        if case .number(let n)? = s?.visible?[name] { Int(n.description) } else { nil }
    }

    @Test(arguments: 1...200)
    func everyRecordCountsOnceAcrossTakeovers(seed: UInt64) {
        var run = Run(seed: seed)
        run.chaos(steps: 400)
        // Heal: stalled owners stop, everything reaches everyone, the owners catch up.
        run.consumers.removeAll(where: \.stale)
        run.heal()
        for c in run.consumers { while c.position < UInt64(Self.recordsPerPartition) { run.step(c) } }
        run.heal()
        var expected: [String: (total: Int, count: Int)] = [:]
        for list in run.records {
            for r in list {
                let j = try! JSON.parse(r.data)
                guard let q = j["queue"]?.stringValue, case .number(let a)? = j["amount"], let n = Int(a) else { continue }
                expected[q, default: (0, 0)].total += n
                expected[q, default: (0, 0)].count += 1
            }
        }
        for node in 0..<Self.nodes {
            for (q, e) in expected.sorted(by: { $0.key < $1.key }) {
                let s = run.items[node][ItemKey(partition: .string(q))]
                #expect(
                    Self.number(s, "total") == e.total && Self.number(s, "count") == e.count,
                    "seed \(seed), node \(node), \(q): \(Self.number(s, "total") ?? -1)/\(Self.number(s, "count") ?? -1), the records sum to \(e.total)/\(e.count) (\(run.takeovers) takeovers, \(run.stalledWrites) batches by stalled owners)"
                )
            }
        }
    }
}
