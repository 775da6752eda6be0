import StreamLog
import TandemCore

/// A hand-driven Raft group for scenario tests: persistence is synchronous, messages wait in
/// `inFlight` until `deliver` (so a test can drop, hold or cut links), and time only moves when
/// a test moves it.
final class RaftTestCluster {
    var nodes: [String: RaftNode] = [:]
    var storages: [String: MemoryLogStorage] = [:]
    var hardStates: [String: HardState] = [:]
    var applied: [String: [LogEntry]] = [:]
    var inFlight: [RaftOutgoing] = []
    /// Nodes cut off from everyone (messages to and from them are dropped).
    var isolated: Set<String> = []
    /// Messages for which this returns true are dropped.
    var dropIf: (RaftOutgoing, String) -> Bool = { _, _ in false }
    /// Lets a test tamper with messages in flight (an adversarial network).
    var rewrite: (RaftOutgoing) -> RaftOutgoing = { $0 }
    var now = Instant(nanoseconds: 1_000_000_000)
    let settings: RaftSettings
    private var seed: UInt64 = 1

    static let testSettings = RaftSettings(electionTimeout: .seconds(1), heartbeatInterval: .milliseconds(100))

    init(
        voters: [String], witnesses: [String] = [], settings: RaftSettings = RaftTestCluster.testSettings,
        logs: [String: [UInt64]] = [:], terms: [String: UInt64] = [:]
    ) {
        self.settings = settings
        let config = RaftConfiguration(voters: voters, witnesses: witnesses)
        for id in voters + witnesses {
            // `logs` gives each node's log as a list of terms (index 1, 2, …), Figure-7 style.
            let storage = MemoryLogStorage()
            let entryTerms = logs[id] ?? []
            storage.append(
                entryTerms.enumerated().map {
                    LogEntry(index: UInt64($0.offset + 1), term: $0.element, data: Array("\(id)-\($0.offset + 1)".utf8))
                })
            storage.sync()
            add(id, configuration: config, storage: storage, hardState: HardState(term: terms[id] ?? entryTerms.last ?? 0))
        }
    }

    func add(
        _ id: String, configuration: RaftConfiguration, storage: MemoryLogStorage = MemoryLogStorage(), hardState: HardState = HardState()
    ) {
        seed += 1
        storages[id] = storage
        hardStates[id] = hardState
        applied[id] = []
        nodes[id] = RaftNode(
            id: id, configuration: configuration, hardState: hardState, storage: storage,
            settings: settings, seed: seed, now: now)
    }

    subscript(_ id: String) -> RaftNode { nodes[id]! }

    /// The shell loop with an instant disk: persist, report, send everything, apply.
    func process(_ id: String) {
        let node = nodes[id]!
        while node.hasReady {
            let rd = node.ready()
            if let r = rd.resetLog { storages[id]!.reset(after: r) }
            storages[id]!.append(rd.entries)
            storages[id]!.sync()
            if let hs = rd.hardState { hardStates[id] = hs }
            if let p = rd.persistedPosition { node.appended(through: p, now: now) }
            for m in rd.messages + rd.messagesAfterPersist { send(m, from: id) }
            applied[id]!.append(contentsOf: rd.committedEntries)
        }
    }

    private func send(_ m: RaftOutgoing, from: String) {
        guard !isolated.contains(from), !isolated.contains(m.to), nodes[m.to] != nil, !dropIf(m, from) else { return }
        inFlight.append(rewrite(m))
    }

    /// Delivers everything in flight, and what that causes, until the network is quiet.
    func stabilize(limit: Int = 10_000) {
        for id in nodes.keys.sorted() { process(id) }
        var steps = 0
        while !inFlight.isEmpty {
            let batch = inFlight
            inFlight = []
            for m in batch where !isolated.contains(m.to) && !isolated.contains(m.message.from) {
                nodes[m.to]!.step(m.message, now: now)
                process(m.to)
            }
            steps += 1
            precondition(steps < limit, "cluster did not stabilize")
        }
    }

    /// Moves time forward, ticking every node at each of its deadlines on the way (in
    /// `step`-sized increments), delivering messages after each.
    func advance(_ duration: Duration, step: Duration = .milliseconds(10)) {
        let end = now + duration
        while now < end {
            now = now + step
            for id in nodes.keys.sorted() where nodes[id]!.nextDeadline <= now {
                nodes[id]!.tick(now: now)
                process(id)
            }
            stabilize()
        }
    }

    /// Makes `id` campaign now (as if its election timer fired) and runs the election.
    func elect(_ id: String) {
        now = max(now, nodes[id]!.nextDeadline)
        nodes[id]!.tick(now: now)
        process(id)
        stabilize()
    }

    var leaders: [String] { nodes.keys.sorted().filter { nodes[$0]!.role == .leader } }

    /// Terms of a node's log from index 1 (or its first index) through its last.
    func terms(_ id: String) -> [UInt64] {
        let n = nodes[id]!
        guard n.lastIndex >= n.firstIndex else { return [] }
        return (n.firstIndex...n.lastIndex).map { (try? n.term(at: $0))! }  // memory storage: reads do not fail
    }

    func propose(_ id: String, _ text: String) throws(RaftError) {
        try nodes[id]!.propose([Array(text.utf8)], timestamp: 0, now: now)
        process(id)
    }

    func appliedRecords(_ id: String) -> [String] {
        applied[id]!.filter { $0.kind == .record }.map { String(decoding: $0.data, as: UTF8.self) }
    }
}
