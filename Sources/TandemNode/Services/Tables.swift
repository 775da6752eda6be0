import Foundation
import GlobalTable
import Logging
import Storage
import TandemCore
import Transport

/// Global tables on one node: the items in LMDB (`TableStore`; memory holds only changes not
/// yet durable and each table's summary), the HLC, durable writes through LMDB group commit (a
/// write is acknowledged only after its commit is on disk), and replication: deltas to every
/// live peer, digest anti-entropy. Every decision is the core's
/// (`GlobalTable.TableNode`); this feeds it inputs and carries out its one output,
/// `TableReady`, in the order written at the top of `Replication.swift`: send what was already
/// durable, store, then reply.
final class Tables {
    static let maxItemBytes = 400 * 1024
    static let catalogPrefix: [UInt8] = [0x01]
    static let stabilityKey: [UInt8] = [0x03]
    // 0x02 and 0x04 held items before they moved to `TableStore` (0x05, 0x06); a data dir
    // written then is moved at start (`TableStore.migrate`).
    /// Tables the node keeps for itself (stream catalog, consumer checkpoints). Every node starts
    /// with the same catalog entry for them (a fixed timestamp), so no two nodes ever create
    /// competing incarnations of them, and clients can neither create nor drop them.
    static let reserved: [(name: String, schema: KeySchema)] = [
        ("_streams", KeySchema(partitionKey: "name")), ("_checkpoints", KeySchema(partitionKey: "id")),
        (Tables.ttlTable, KeySchema(partitionKey: "table")), (Tables.tagsTable, KeySchema(partitionKey: "table")),
        (Tables.indexesTable, Tables.indexesSchema)
    ]
    /// TTL settings of client tables (DynamoDB's UpdateTimeToLive): one item per table, naming
    /// the attribute and the table incarnation (catalog timestamp) it was set for.
    static let ttlTable = "_ttl"
    /// Tags of client tables (DynamoDB's TagResource): one item per table, the tags a map of it,
    /// for the table incarnation (catalog timestamp) they were set for (`DynamoTags`).
    static let tagsTable = "_tags"

    /// Tables, clock and every replication decision (pure; `GlobalTable.TableNode`).
    let core: TableNode
    private let committer: GroupCommitter
    let itemStore: TableStore
    private let loop: EventLoop
    let replication: Replication

    /// Peer plumbing, set by the node: the members (node id, alive?), the addresses known
    /// nodes had (to rename what older nodes stored by address), and a request sender (which
    /// finds the peer's address).
    var members: () -> [(id: NodeID, live: Bool)] = { [] }
    var legacyAddresses: () -> LegacyAddresses = { LegacyAddresses() }
    var request: (_ to: NodeID, _ kind: UInt8, _ payload: [UInt8], _ done: @escaping (Result<Frame, TandemError>) -> Void) -> Void = {
        _, _, _, _ in
    }

    struct Replication {
        /// Anti-entropy runs every `antiEntropyInterval` while the tables are busy (a write, a
        /// peer's deltas or a membership change within `antiEntropyBusyFor`), otherwise every
        /// `antiEntropyIdleInterval`. Measured (issue 20, 5 nodes in namespaces, idle): a round's
        /// digests are ~4–5 KB, and at 2 s, with stability reports every 1 s to every peer, tables
        /// sent ~6 KB/s and ~15 packets/s per node of an idle cluster's 6.6 KB/s, 20/s; at 10 s
        /// idle the node still sent 2.4 KB/s (1 KB/s of it digests), hence 30 s.
        var antiEntropyInterval: Duration = .seconds(2)
        var antiEntropyIdleInterval: Duration = .seconds(30)
        var antiEntropyBusyFor: Duration = .seconds(30)
        /// Stability reports go to every peer (a request and an answer each): 5 s, not 1 s, keeps
        /// them to ~2 packets/s per node in a 5-node cluster; tombstones are collected a few
        /// seconds later than before.
        var stabilityInterval: Duration = .seconds(5)
        var compactionInterval: Duration = .milliseconds(100)
        /// How often expired items (TTL) are looked for and deleted.
        var ttlSweepInterval: Duration = .seconds(1)
        var core = TableNode.Settings()
    }

    /// Write→applied lag on this node for deltas from peers, by HLC physical time (ms).
    private(set) var replicationLag = Histogram(bounds: [0.5, 1, 2, 3, 5, 10, 20, 50, 100, 250, 500, 1000, 5000])
    /// Last write, peer deltas or membership change (anti-entropy runs often only after one).
    private var lastBusy: Instant = .zero
    private var lastAntiEntropy: Instant = .zero
    /// When the scheduled pump runs (nil: none scheduled).
    private var pumpDue: Instant?
    private let pumpTimer: LoopTimer
    /// A ready's writes are being committed; the next ready waits for the outcome.
    private var storing = false
    /// Item writes made durable (each changed item once per commit).
    private(set) var itemsCommitted = 0
    /// By ticket (`TableNode.Reply`): what to do with the reply — the error if the write
    /// failed, and for a peer's request the bytes to answer with.
    private var waiting: [UInt64: (TandemError?, [UInt8]?) -> Void] = [:]
    private let antiEntropyTimer: LoopTimer
    private let stabilityTimer: LoopTimer
    private let compactionTimer: LoopTimer
    private let ttlTimer: LoopTimer
    /// Expired items deleted by this node's sweep.
    private(set) var ttlDeleted = 0
    /// Per table, the key the TTL sweep resumes after (nil: from the start).
    private var ttlCursor: [String: ItemKey] = [:]
    private var rng = SystemRandomNumberGenerator()
    /// What `_indexes` and the catalog were when the core's indexes were last made to follow
    /// them (`syncIndexes`).
    var indexesSeen: IndexesSeen?

    init(store: LMDBStore, loop: EventLoop, peerID: NodeID, replication: Replication = Replication(), logger: Logger? = nil) throws {
        self.loop = loop
        self.replication = replication
        itemStore = TableStore(store)
        core = TableNode(id: peerID, store: itemStore, settings: replication.core)
        committer = GroupCommitter(loop: loop, store: store)
        pumpTimer = LoopTimer(loop: loop)
        antiEntropyTimer = LoopTimer(loop: loop)
        stabilityTimer = LoopTimer(loop: loop)
        compactionTimer = LoopTimer(loop: loop)
        ttlTimer = LoopTimer(loop: loop)
        var catalog: [String: CatalogEntry] = [:]
        for (key, value) in try store.scan(prefix: Tables.catalogPrefix) {
            let name = String(decoding: key.dropFirst(), as: UTF8.self)
            guard let entry = try TableSyncCodec.decodeDeltas(value).catalog[name] else { continue }
            catalog[name] = entry
        }
        for r in Tables.reserved where catalog[r.name] == nil {
            catalog[r.name] = CatalogEntry(schema: r.schema, at: HLC(time: 1 << 16, node: 0))
        }
        let moved = try itemStore.migrate(catalog: catalog, logger: logger ?? Logger(label: "tandem.tables"))
        if try moved > 0 || store.get(TableStore.rebuildKey) != nil {
            try itemStore.rebuildSummaries(catalog.filter { !$0.value.deleted }.map { tableID($0.key, $0.value.at) })
        }
        for (name, entry) in catalog.sorted(by: { $0.key < $1.key }) { try core.load(catalogEntry: entry, name: name) }
        for (_, value) in try store.scan(prefix: Tables.stabilityKey) { try core.load(stability: value) }
        _ = core.now(wallMs: Tables.wallMs())
    }

    /// Starts the periodic work (after the node has wired `members` and `request`).
    func start() {
        antiEntropyTimer.start(after: replication.antiEntropyInterval, repeating: replication.antiEntropyInterval) { [weak self] in
            guard let self else { return }
            self.syncMembers()
            let now = self.loop.now
            let busy = now - self.lastBusy < self.replication.antiEntropyBusyFor
            guard busy || now - self.lastAntiEntropy >= self.replication.antiEntropyIdleInterval else { return }
            self.lastAntiEntropy = now
            self.core.startAntiEntropy(wallMs: Tables.wallMs()) { Int.random(in: 0..<$0, using: &self.rng) }
            self.schedulePump()
        }
        stabilityTimer.start(after: replication.stabilityInterval, repeating: replication.stabilityInterval) { [weak self] in
            guard let self else { return }
            self.syncMembers()
            self.core.updateStability(wallMs: Tables.wallMs())
            self.core.stabilityRound(wallMs: Tables.wallMs())
            self.schedulePump()
        }
        compactionTimer.start(after: replication.compactionInterval, repeating: replication.compactionInterval) { [weak self] in
            guard let self else { return }
            self.core.compactionStep()
            // Secondary index backfill: 1,000 keys a step, 10,000 a second, about 10 ms of the
            // loop per step at ~10 µs a cold item (the TTL sweep's reasoning).
            self.core.indexStep(budget: 1_000)
            self.syncIndexes(catalog: true)  // a table created again elsewhere: its indexes
            self.schedulePump()
        }
        ttlTimer.start(after: replication.ttlSweepInterval, repeating: replication.ttlSweepInterval) { [weak self] in
            self?.sweepExpired()
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: time to live

    /// The TTL attribute of `table` if TTL is enabled on this incarnation of it.
    func ttlAttribute(_ table: String) -> String? {
        guard !table.hasPrefix("_"), let entry = core.catalog[table], !entry.deleted,
            let v = (try? core.replicas[Tables.ttlTable]?.state(ItemKey(partition: .string(table))))??.visible,
            case .string(let attribute)? = v["attribute"],
            case .number(let incarnation)? = v["incarnation"], incarnation.description == String(entry.at.time)
        else { return nil }
        return attribute
    }

    /// Enables (`attribute`) or disables (nil) TTL on a table, durably and replicated.
    func setTTL(_ table: String, attribute: String?, _ done: @escaping (TandemError?) -> Void) {
        guard let entry = core.catalog[table], !entry.deleted else { return done(TandemError(.notFound, "no table '\(table)'")) }
        let key = ItemKey(partition: .string(table))
        var state: ItemState
        do { state = try replicas[Tables.ttlTable]?.state(key) ?? ItemState() } catch { return done(error) }
        let t = core.now(wallMs: Tables.wallMs())
        let delta =
            if let attribute {
                state.put(
                    [
                        "table": .string(table), "attribute": .string(attribute),
                        "incarnation": .number(DecimalNumber(String(entry.at.time))!)
                    ], at: t)
            } else {
                state.delete(at: t)
            }
        commit([(Tables.ttlTable, key, delta)], done)
    }

    /// Deletes expired items of every table with TTL on. Each delete is derived from the item
    /// alone (`TimeToLive.expiryDelete`), so every node that sweeps the same item issues the same
    /// delete: nodes need not agree on who sweeps. Each call visits at most `maxVisits` keys per
    /// table, resuming where the last one stopped (reads hide expired items meanwhile), so a big
    /// table never stalls the loop.
    /// (Items are read from LMDB now, ~10 µs a cold item: 20,000 visits a second would stall
    /// the loop 200 ms each second, so a sweep visits 2,000 — a 10 M-item table is swept in
    /// under 90 minutes; DynamoDB deletes expired items within days.)
    func sweepExpired(maxVisits: Int = 2_000) {
        let now = Tables.wallMs()
        var deltas: [(table: String, key: ItemKey, delta: ItemState)] = []
        for (name, replica) in core.replicas where !name.hasPrefix("_") {
            guard let attribute = ttlAttribute(name) else {
                ttlCursor[name] = nil
                continue
            }
            var keys = replica.keys(after: ttlCursor[name])
            var visited = 0
            ttlCursor[name] = nil
            do {
                while let key = try keys.next() {
                    if let state = try replica.state(key), let d = TimeToLive.expiryDelete(state, attribute: attribute, nowMs: now) {
                        deltas.append((name, key, d))
                    }
                    visited += 1
                    if visited == maxVisits {
                        ttlCursor[name] = key
                        break
                    }
                }
            } catch {
                // The store failed a read: the sweep starts this table over next time.
                ttlCursor[name] = nil
            }
        }
        for name in ttlCursor.keys where core.replicas[name] == nil { ttlCursor[name] = nil }
        guard !deltas.isEmpty else { return }
        ttlDeleted += deltas.count
        commit(deltas) { _ in }
    }

    /// Membership as the core sees it; called before each decision that depends on it.
    func syncMembers() {
        core.renameLegacyMembers(legacyAddresses())
        core.membersChanged(members(), wallMs: Tables.wallMs())
    }

    /// Something changed that anti-entropy may have to repair: run it often for a while.
    func markBusy() { lastBusy = loop.now }

    var stats: (commits: Int, writes: Int, failures: Int) {
        (committer.commits, itemsCommitted, committer.failures)
    }

    var replicas: [String: TableReplica] { core.replicas }

    /// Writes waiting for (or in) a group commit before new client writes get 503 + Retry-After
    /// (DynamoDB API: ProvisionedThroughputExceededException).
    var maxQueuedWrites = 50_000
    /// Writes (and peer requests) waiting for the disk.
    var queuedWrites: Int { waiting.count }
    /// The disk is behind: client writes are refused until the queue drains.
    var overloaded: Bool { queuedWrites >= maxQueuedWrites }

    /// Called after each peer request is merged (before anything else runs), so settings it
    /// carried take effect before the next client write (`ChangeStreams`).
    var afterPeerRequest: () -> Void = {}

    /// Called for every failed commit (the node logs it, rate-limited).
    var onCommitFailure: (TandemError) -> Void = { _ in }

    static func wallMs() -> UInt64 { WallClock.nowMs() }

    static func storageOps(_ write: TableNode.StoreWrite) -> [LMDBStore.Op] {
        switch write {
        case .catalog(let name, let entry):
            return [.put(catalogPrefix + Array(name.utf8), TableSyncCodec.encode(deltas: [], catalog: [name: entry]))]
        case .stability(let bytes): return [.put(stabilityKey, bytes)]
        case .item, .summary, .dropTable, .change, .index: return TableStore.ops(write)
        }
    }

    /// A commit of the node's own records outside the core (change stream trimming, which
    /// touches no item): through the same group commit.
    func submitMaintenance(_ ops: [LMDBStore.Op], _ done: @escaping (TandemError?) -> Void) {
        committer.submit(ops) { [weak self] error in
            if let error { self?.onCommitFailure(error) }
            done(error)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Reserved tables

    /// Creates a reserved table with a fixed catalog entry, the same on every node (so no node's
    /// creation replaces another's), and stores it so its items load on restart.
    func reserve(_ name: String, _ entry: CatalogEntry) {
        guard core.replicas[name] == nil else { return }
        try? core.load(catalogEntry: entry, name: name)  // a new table: nothing to read
        committer.submit(Tables.storageOps(.catalog(name, entry))) { [weak self] error in
            if let error { self?.onCommitFailure(error) }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Writing from inside the node
    //
    // The one write API for code in the node (streams, routes, the DynamoDB adapter, TTL):
    // `put`, `delete` and `commit`. Each is a local write like a client's: stamped by the
    // node's clock, merged, stored through the group commit, then replicated.
    //
    // The contract: `done(nil)` is called only after the write is on disk. `done(error)` means
    // none of it is: it is not readable (memory is put back to what is on disk) and it is
    // never sent to a peer. `done` runs on the loop thread, exactly once.

    /// Replaces the item at `key` with `values` (which hold its key attributes).
    func put(table: String, key: ItemKey, values: [String: AttributeValue], _ done: @escaping (TandemError?) -> Void) {
        var state: ItemState
        do { state = try replicas[table]?.state(key) ?? ItemState() } catch { return done(error) }
        commit([(table, key, state.put(values, at: core.now(wallMs: Tables.wallMs())))], done)
    }

    /// Deletes the item at `key` (a tombstone, replicated like any write).
    func delete(table: String, key: ItemKey, _ done: @escaping (TandemError?) -> Void) {
        var state: ItemState
        do { state = try replicas[table]?.state(key) ?? ItemState() } catch { return done(error) }
        commit([(table, key, state.delete(at: core.now(wallMs: Tables.wallMs())))], done)
    }

    /// Applies local deltas (each made on a copy of its item's state, stamped by
    /// `core.now`) all together — one commit, all or nothing — then `done`.
    func commit(_ writes: [(table: String, key: ItemKey, delta: ItemState)], _ done: @escaping (TandemError?) -> Void) {
        let ticket: UInt64
        markBusy()
        do {
            ticket = try core.write(writes)
        } catch {
            return done(error)
        }
        waiting[ticket] = { error, _ in done(error) }
        schedulePump()
    }

    /// Creates or drops a client table durably (the DynamoDB API's CreateTable/DeleteTable).
    func changeTable(_ name: String, schema: KeySchema?, _ done: @escaping (TandemError?) -> Void) throws {
        syncMembers()
        let ticket =
            if let schema { try core.createTable(name, schema: schema, wallMs: Tables.wallMs()) } else {
                try core.deleteTable(name, wallMs: Tables.wallMs())
            }
        guard let ticket else { return done(nil) }
        waiting[ticket] = { error, _ in done(error) }
        schedulePump()
    }
}

// ==== ----------------------------------------------------------------------------------------
// MARK: Replication (the core decides; this carries it out)

extension Tables {
    /// Takes the core's output at the next loop turn, so the inputs of one turn go together.
    /// A pump already due sooner covers this one; one due later is brought forward (a failed
    /// peer batch asks for a pump after the retry delay, and client writes arriving meanwhile
    /// must not wait that out).
    private func schedulePump(after delay: Duration = .zero) {
        let due = loop.now + delay
        if let pumpDue, pumpDue <= due { return }
        pumpDue = due
        pumpTimer.start(after: delay) { [weak self] in
            guard let self else { return }
            self.pumpDue = nil
            self.pump()
        }
    }

    /// The loop of the contract in `Replication.swift`: a ready's messages go at once (they only
    /// carry what was durable before it), its writes are stored (one commit at a time; what comes
    /// meanwhile goes in the next — the group commit), then its replies are answered.
    private func pump() {
        syncIndexes()
        while !storing, let rd = core.ready(wallMs: Tables.wallMs()) {
            send(rd.messages)
            if rd.writes.isEmpty {
                finish(rd, nil)
                continue
            }
            storing = true
            let writes = rd.writes
            committer.submit({ writes.flatMap(Tables.storageOps) }) { [weak self] error in
                guard let self else { return }
                self.storing = false
                if let error {
                    self.onCommitFailure(error)
                    self.indexesSeen = nil  // memory went back to the disk: look again
                } else {
                    self.itemsCommitted += rd.writes.count { if case .item = $0 { true } else { false } }
                }
                self.syncMembers()
                self.finish(rd, error)
                self.pump()
            }
        }
    }

    private func finish(_ rd: TableReady, _ error: TandemError?) {
        core.stored(error)
        for r in rd.replies { waiting.removeValue(forKey: r.ticket)?(error ?? r.error, r.payload) }
    }

    private func send(_ requests: [TableNode.Request]) {
        for r in requests {
            request(r.to, r.kind, r.payload) { [weak self] result in
                guard let self else { return }
                let payload: [UInt8]? = if case .success(let frame) = result { frame.payload } else { nil }
                self.core.responded(to: r.id, payload: payload, wallMs: Tables.wallMs())
                self.recordLag()
                // A failed batch waits out the core's retry delay; pump again after it.
                self.schedulePump(after: payload == nil ? .milliseconds(Int64(self.replication.core.retryDelayMs)) : .zero)
            }
        }
    }

    /// A peer's table frame: merged, made durable, then answered.
    func serve(kind: UInt8, payload: [UInt8], reply: @escaping ([UInt8]) -> Void) {
        if kind == TableNode.Kind.deltas { markBusy() }
        let ticket = core.receive(kind: kind, payload: payload, wallMs: Tables.wallMs())
        afterPeerRequest()
        recordLag()
        waiting[ticket] = { error, answer in
            if error == nil, let answer { reply(answer) }
        }
        schedulePump()
    }

    private func recordLag() {
        for lag in core.takeLagSamples() { replicationLag.record(lag) }
    }
}
