import GlobalTable
import Processing
import TandemCore
import Testing

@testable import TandemNode

/// Materialize under faults, as a seeded model: three table replicas, each node's writes going
/// to each peer over its own FIFO link (delayed at random, sometimes dropped whole — a gap that
/// only an anti-entropy push from the writer closes), three stream partitions counting into the
/// same two items, and owners that move: a takeover resumes from the partition's stored
/// settled checkpoint (`Processors.settled`, against the stable time: every write made before
/// it has reached every replica), and the old owner may keep writing for a while (stalled, then
/// resumed before it learns it lost the lead). Every batch goes through
/// `Processors.materialized` on the owner's replica, exactly as the shell applies it.
///
/// Checked after every event: each replica's (total, mark) pair of every partition is the
/// partition's sums up to the mark — the invariant the design's argument rests on, so a
/// failure names the event that broke it. At the end, after a heal and a last catch-up, every
/// replica holds each item's sums of the records once: too little is a record skipped, too
/// much one counted twice.
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

    /// One owner's writes (a batch that wrote something): when, by whom, and the peers that do
    /// not have them yet.
    final class Written {
        let node: Int
        let at: UInt64
        var lacking: Set<Int>
        init(node: Int, at: UInt64, lacking: Set<Int>) {
            self.node = node
            self.at = at
            self.lacking = lacking
        }
    }

    struct Message {
        var written: Written
        var writes: [(key: ItemKey, delta: ItemState)]
    }

    /// A consumer of one partition on one node; `stale` once another node took the partition.
    final class Consumer {
        let node: Int
        let partition: Int
        var position: UInt64
        /// Batches applied: first sequence, and the clock once applied (as the shell keeps them).
        var unsettled: [(first: UInt64, at: UInt64)] = []
        var stale = false
        init(node: Int, partition: Int, position: UInt64) {
            self.node = node
            self.partition = partition
            self.position = position
        }
    }

    struct Run {
        var rng: SeededGenerator
        var items: [[ItemKey: ItemState]] = Array(repeating: [:], count: nodes)
        /// links[from][to]
        var links: [[[Message]]] = Array(repeating: Array(repeating: [], count: nodes), count: nodes)
        var records: [[ProcessorRecord]] = []
        /// Per partition and item, the sums (total, count) of the records up to each sequence.
        var sums: [[String: [(total: Int, count: Int)]]] = []
        var consumers: [Consumer] = []
        /// Replicas changed since their pairs were last checked.
        var changed: Set<Int> = []
        /// Every write made, until every replica has it.
        var outstanding: [Written] = []
        /// The stored settled checkpoint of each partition (last writer wins).
        var checkpoint: [UInt64] = Array(repeating: 0, count: partitions)
        var clockMs: UInt64 = 1_000
        var takeovers = 0
        var stalledWrites = 0

        init(seed: UInt64) {
            rng = SeededGenerator(seed: seed)
            for p in 0..<partitions {
                var list: [ProcessorRecord] = []
                var partitionSums = Dictionary(uniqueKeysWithValues: keys.map { ($0, [(total: 0, count: 0)]) })
                for i in 1...recordsPerPartition {
                    let q = keys[Int(rng.next() % UInt64(keys.count))]
                    let amount = Int(rng.next() % 9) + 1
                    list.append(
                        ProcessorRecord(
                            sequence: UInt64(i), key: "r\(p)-\(i)", data: Array(#"{"queue":"\#(q)","amount":\#(amount)}"#.utf8),
                            timestamp: 0))
                    for k in keys {
                        let last = partitionSums[k]!.last!
                        partitionSums[k]!.append(k == q ? (last.total + amount, last.count + 1) : last)
                    }
                }
                records.append(list)
                sums.append(partitionSums)
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
            let at = clockMs
            let node = c.node
            let replica = items[node]
            guard
                let (writes, rejected) = Processors.materialized(
                    m, schema: schema, slotName: "totals#\(c.partition)", batch,
                    at: HLC(physicalMs: at, logical: 0, node: UInt64(node + 1)), read: { replica[$0] })
            else {
                Issue.record("the batch could not be applied")
                return
            }
            #expect(rejected == nil)
            for w in writes { items[node][w.key, default: ItemState()].merge(w.delta) }
            changed.insert(node)
            if !writes.isEmpty {
                let written = Written(node: node, at: at, lacking: Set((0..<nodes).filter { $0 != node }))
                outstanding.append(written)
                for peer in 0..<nodes where peer != node { links[node][peer].append(Message(written: written, writes: writes)) }
            }
            clockMs += 1
            c.unsettled.append((batch[0].sequence, clockMs))
            c.position += UInt64(n)
            if c.stale { stalledWrites += 1 }
        }

        mutating func deliver(from: Int, to: Int) {
            guard !links[from][to].isEmpty else { return }
            let msg = links[from][to].removeFirst()
            for w in msg.writes { items[to][w.key, default: ItemState()].merge(w.delta) }
            changed.insert(to)
            msg.written.lacking.remove(to)
            outstanding.removeAll { $0.lacking.isEmpty }
        }

        /// An anti-entropy push: every item `from` holds, merged at `to`; it closes the gaps in
        /// `from`'s stream to `to` (every batch `from` wrote before it).
        mutating func antiEntropy(from: Int, to: Int) {
            for (k, s) in items[from] { items[to][k, default: ItemState()].merge(s) }
            changed.insert(to)
            for w in outstanding where w.node == from { w.lacking.remove(to) }
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

        /// Every write made up to this time has reached every replica.
        var stable: UInt64 {
            (outstanding.filter { !$0.lacking.isEmpty }.map(\.at).min() ?? clockMs + 1) - 1
        }

        mutating func storeCheckpoints() {
            for c in consumers where rng.chance(0.5) {
                checkpoint[c.partition] = Processors.settled(c.position, &c.unsettled, stable: stable)
            }
        }

        /// The first (total, mark) pair a replica changed since the last call holds that is not
        /// its partition's sums up to the mark, if any.
        mutating func brokenPair() -> String? {
            defer { changed = [] }
            for node in changed.sorted() {
                for (key, state) in items[node].sorted(by: { $0.key < $1.key }) {
                    guard case .string(let q) = key.partition, case .map(let marks)? = state.visible("_tandem_applied") else { continue }
                    for p in 0..<partitions {
                        var mark: UInt64 = 0
                        if case .number(let n)? = marks["totals#\(p)"] { mark = UInt64(n.description) ?? 0 }
                        let expected = sums[p][q]![Int(mark)]
                        let slot = stableHash64(Array("totals#\(p)".utf8)) | (1 << 63)
                        let total = state.attributes["total"]?.counter?.increments[slot].map { Int($0.description)! } ?? 0
                        let count = state.attributes["count"]?.counter?.increments[slot].map { Int($0.description)! } ?? 0
                        if total != expected.total || count != expected.count {
                            return
                                "node \(node), \(q), partition \(p): \(total)/\(count) at mark \(mark), the records up to it sum to \(expected.total)/\(expected.count)"
                        }
                    }
                }
            }
            return nil
        }

        /// Random events; the first that breaks a (total, mark) pair, described.
        mutating func chaos(steps: Int) -> String? {
            for i in 0..<steps {
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
                if let broken = brokenPair() { return "event \(i) of \(steps): \(broken)" }
            }
            return nil
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
        let broken = run.chaos(steps: 400)
        #expect(broken == nil, "seed \(seed): \(broken ?? "")")
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
