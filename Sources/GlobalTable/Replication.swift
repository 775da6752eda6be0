import TandemCore

// One node's global tables and every replication decision about them, as a pure state
// machine: the shell feeds it inputs (local writes, peer requests and answers, membership,
// timers, each with the wall time) and carries out one output, `TableReady`. The simulator
// drives the same code.
//
// The shell's loop (the ordering contract):
//
//     feed inputs: write(...), createTable/deleteTable, receive(...), responded(...),
//                  membersChanged, startAntiEntropy, updateStability, stabilityRound,
//                  compactionStep
//     while no store is running, let rd = node.ready(wallMs:) {
//         1. send rd.messages, at once: a message only ever holds what was durable before
//            this ready was taken, so it need not wait for this ready's commit (waiting cost
//            a delta one more commit of lag under load)
//         2. store rd.writes durably, in one commit (group commit: everything the inputs
//            made since the last ready goes together); then node.stored(error)
//         3. then answer rd.replies: by ticket, with the commit's error if it failed
//            (or the reply's own error); a peer's reply only if the commit succeeded
//     }
//
// So a write is acknowledged only once it is on disk, and its delta leaves the node only
// after that: `stored(nil)` is what releases a ready's deltas (and catalog changes) into the
// peer streams, and they go out in a later ready. A failed store releases nothing and undoes,
// in memory, every change not yet durable — that batch and everything queued since, which
// was computed on top of it — so a write the disk refused is neither readable nor replicated.
// There is at most one ready with writes outstanding: the next one is computed after the
// outcome of the last is known, so its bytes never carry a change that failed.
//
// Changes are applied to memory at once and rolled back on a failed commit, rather than
// applied after it: a write's delta is made on the state the writes before it left (two
// increments in one group commit both count; a condition sees the writes ahead of it), reads
// need no overlay, and the put path stays one merge plus one undo record. The price is that
// a read may see a write in the millisecond before its commit; a failure is rare, and then
// nothing of it stays.
//
// Nothing here reads a clock, touches a disk or a socket, or draws global randomness.

/// What the core asks of the shell, in the order the contract above gives.
public struct TableReady: Sendable {
    /// Make these durable in one commit, then report with `TableNode.stored(_:)`.
    public var writes: [TableNode.StoreWrite] = []
    /// Then answer these tickets.
    public var replies: [TableNode.Reply] = []
    /// Send these requests (at once: they hold only what was already durable); report each
    /// answer with `TableNode.responded(to:payload:wallMs:)`.
    public var messages: [TableNode.Request] = []

    public var isEmpty: Bool { writes.isEmpty && replies.isEmpty && messages.isEmpty }
}

/// Replication has three parts:
/// - **Delta streams.** A local write's delta, once durable here, is queued for every live
///   peer and sent in batches, one batch in flight per peer; the peer answers once the batch
///   is durable there. A failed batch goes back to the front of its queue; a queue over its
///   bound, or the queue of a peer that died, is dropped — anti-entropy carries those writes
///   instead.
/// - **Anti-entropy.** Every few seconds, with one random live peer: our bucket digests →
///   its item hashes for differing buckets → we push the items it lacks or holds otherwise
///   (only durable ones: an item with a change not yet stored waits for the next round).
/// - **Stability.** Each node tracks, per peer, up to what time all of its own writes are
///   durable there (`covered`); the minimum over peers is what it reports to everyone, and the
///   minimum of all reports is the stable time below which tombstones are collected (see
///   `Compaction.swift`). A member gone longer than `retentionMs` stops holding collection
///   back, if the others are a majority; when it returns it is told so, and it drops its own
///   pre-stable state before it takes part again (`ItemState.admitted`), so it cannot bring
///   deletes back.
public final class TableNode {
    public struct Settings: Sendable {
        public var maxQueuedPerPeer = 50_000
        public var maxBatch = 1_000
        /// How long a member may be gone and still hold tombstone collection back; after that
        /// it must resync on return. DynamoDB global tables use 24 hours.
        public var retentionMs: UInt64 = 24 * 3_600_000
        /// Items compacted per `compactionStep`.
        public var compactionBatch = 2_000
        /// After a failed delta batch, how long its stream waits before it is sent again.
        public var retryDelayMs: UInt64 = 50
        /// Decoded items kept per cache generation (`ItemCache`: at most twice this many).
        public var cachedItems = 16_384
        public init() {}
    }

    /// Frame kinds on the peer link.
    public enum Kind {
        public static let deltas: UInt8 = 2
        public static let digests: UInt8 = 3
        public static let stability: UInt8 = 4
        /// Anti-entropy's opening: one root per table; digests follow for the differing ones.
        public static let roots: UInt8 = 5
    }

    /// A durable change for the shell to make (a write is acknowledged after it is on disk).
    public enum StoreWrite: Equatable, Sendable {
        case catalog(String, CatalogEntry)
        /// The item's stored form; nil deletes it (a collected tombstone). `garbage`: it holds
        /// something tombstone collection may drop (`ItemState.hasGarbage`), so it is indexed
        /// for collection to visit.
        /// `before`: what the store held of the item (so a store writes only the index records
        /// that change: a new key's scan-order record, a garbage record that comes or goes).
        case item(table: TableID, key: ItemKey, item: StoredItem?, garbage: Bool, before: Durable)
        /// A change to the table's secondary indexes (`SecondaryIndex.swift`), in the commit of
        /// the item changes it follows from.
        case index(table: TableID, IndexWrite)
        /// The table's summary as of this commit's items.
        case summary(table: TableID, TableSummary)
        /// Everything stored under a table incarnation the catalog replaced.
        case dropTable(TableID)
        /// The stability record (`encodedStability`), so a restart does not forget it.
        case stability([UInt8])
        /// A change stream record (`ChangeStream.swift`), stored with the item write it describes.
        case change(table: TableID, stream: UInt64, sequence: UInt64, record: [UInt8])
    }

    /// Whether the store holds an item, and whether it holds garbage there.
    public struct Durable: Equatable, Sendable {
        public var stored: Bool
        public var garbage: Bool
        public init(stored: Bool, garbage: Bool) {
            self.stored = stored
            self.garbage = garbage
        }
    }

    /// A request to a peer; the shell reports the answer with `responded(to:payload:wallMs:)`.
    public struct Request: Equatable, Sendable {
        public var id: UInt64
        public var to: NodeID
        public var kind: UInt8
        public var payload: [UInt8]
    }

    /// The answer to an input that waits for the disk: a local write's acknowledgement, or the
    /// reply to a peer's request. `ticket` is what the input returned.
    public struct Reply: Sendable {
        public var ticket: UInt64
        /// For a peer's request, the bytes to answer with (nil: no answer — it was refused or
        /// malformed). Always nil for a local write.
        public var payload: [UInt8]?
        /// Failed before its commit: it was made on top of a change whose commit failed.
        public var error: TandemError?
    }

    /// What handling a peer's request produced: writes to make durable, then the reply to send
    /// (nil: no reply — the request was refused or malformed).
    struct Handled {
        var writes: [StoreWrite] = []
        var reply: [UInt8]?
    }

    public struct Stats: Sendable {
        public var deltasSent = 0
        public var deltasReceived = 0
        public var deltasDropped = 0
        public var deltasResent = 0
        public var antiEntropyRounds = 0
        public var itemsRepaired = 0
        public var repairBytes = 0
        public var mergesApplied = 0
        public var conflictsResolved = 0
        public var malformed = 0
        public var clockClamped = 0
        public var refusedFromExpired = 0
        public var itemsCompacted = 0
        public var itemsCollected = 0
        public var resyncs = 0
        /// Reads of the item store that failed (a corrupt page): that work was not done.
        public var storeReadFailures = 0
    }

    /// This node (`NodeID`: its name; its hash is the HLC tie-break of its writes).
    public let id: NodeID
    public let settings: Settings
    /// Where the items are (the core reads durable items from it; see `ItemStore.swift`).
    public let store: ItemStore
    public let cache: ItemCache
    public internal(set) var replicas: [String: TableReplica] = [:]
    /// Every table ever created or deleted, last writer wins (see `CatalogEntry`).
    public private(set) var catalog: [String: CatalogEntry] = [:]
    public private(set) var clock: HybridClock
    public internal(set) var stats = Stats()
    /// Write→merged lag of deltas from peers, by HLC physical time, in ms.
    public private(set) var lagSamples: [Double] = []

    // ==== delta streams
    struct PeerStream {
        var queue: [TableDelta] = []
        var inFlight: (id: UInt64, deltas: [TableDelta])?
        /// Our writes at or before this time are durable at the peer, as far as we know for
        /// sure: it only moves on when the stream has no gap, or a clean repair round closed one.
        var covered: UInt64 = 0
        /// Deltas were dropped (or the peer is new to us): until a clean anti-entropy round,
        /// `covered` stays where it is.
        var gap = true
        var drops = 0
        /// A failed batch waits until this wall time before it goes again.
        var retryAt: UInt64 = 0
    }
    private var streams: [String: PeerStream] = [:]
    /// Tables whose changes are recorded, by name (`ChangeStream.swift`); empty costs nothing.
    var changeStreams: [String: ChangeStreamState] = [:]

    // ==== the way out (see the contract at the top of the file)
    /// Changes made since the last ready: writes to store (besides items: each replica keeps
    /// its own changes until `take`), replies waiting for them, and the deltas and catalog
    /// entries they release once durable.
    private struct Batch {
        var writes: [StoreWrite] = []
        var replies: [Reply] = []
        var deltas: [TableDelta] = []
        var catalog: [(String, CatalogEntry)] = []
    }
    private var queued = Batch()
    /// The ready whose writes are being stored, how many undo records it covers, and what it
    /// holds of each table's items.
    private var storing: (batch: Batch, undoCount: Int, taken: [String: TableReplica.Taken])?
    /// How to return memory to what is on disk, besides items (a failed commit drops every
    /// replica's pending changes): one record per catalog change or resync not yet durable,
    /// oldest first (undone newest first).
    private enum Undo {
        case table(String, CatalogEntry?, TableReplica?)
        /// `resyncedAt` before a resync: undone, the resync is asked for again (we must not
        /// claim to have dropped pre-stable state that a failed commit put back).
        case resync(UInt64)
    }
    private var undo: [Undo] = []
    private var outbox: [Request] = []
    private var nextTicket: UInt64 = 1

    // ==== anti-entropy
    private struct Round {
        var peer: String
        var startedAt: UInt64
        var dropsAtStart: Int
        /// The roots request, then the digests request for the tables whose roots differed,
        /// until its answer arrives; then the pushes not yet answered.
        var opening: UInt64?
        /// The opening now in flight is the roots request.
        var comparingRoots = true
        var pending: Set<UInt64> = []
        var clean = true
    }
    private var round: Round?

    // ==== membership and stability
    public struct Report: Equatable, Sendable {
        /// The sender's own writes up to this time are durable on every member it counts.
        public var covered: UInt64
        public var stable: UInt64
        public var expired: [String]
        /// Set once the sender has dropped its pre-`resynced` state after being expired.
        public var resynced: UInt64
    }
    private var live: Set<String> = []
    private var known: Set<String> = []
    private var goneSince: [String: UInt64] = [:]
    private var reports: [String: Report] = [:]
    /// Members not counted for stability, with the stable time when they were dropped.
    public private(set) var expired: [String: UInt64] = [:]
    public private(set) var stable: UInt64 = 0
    /// The time below which tombstones are collected: a stable time `s` whose arrival we saw at
    /// clock `c`, once the stable time has passed `c` too. Stability of a delete says every
    /// member has it; it does not say no member wrote, unaware of it, to what it hides — such
    /// a write (an increment continuing a counter, a set edit still holding a removed tag)
    /// would make the hidden part count again. Every such write is older than `c`, because
    /// every exchange carries the clocks of both ends, and the news that made `s` stable
    /// travelled from each member through such exchanges after it received the delete. So
    /// once `c` is stable too, those writes are here, and what is still hidden stays hidden.
    public private(set) var collectible: UInt64 = 0
    private var stableReached: [(stable: UInt64, clock: UInt64)] = []
    /// When we were told we had been expired: the stable time we resynced at.
    public private(set) var resyncedAt: UInt64 = 0
    /// Tombstone collection's pass: the stable time it compacts against, and per table the key
    /// it resumes after. It visits only items the store indexes as holding garbage
    /// (`hasGarbage`), so a table of live items costs nothing to sweep.
    private var compactedAt: UInt64 = 0
    private var compactionCursor: [String: ItemKey?] = [:]

    private var nextRequestID: UInt64 = 1

    public init(id: NodeID, store: ItemStore, settings: Settings = Settings(), maxClockAheadMs: UInt64 = 60_000) {
        self.id = id
        self.store = store
        self.settings = settings
        cache = ItemCache(itemsPerGeneration: settings.cachedItems)
        clock = HybridClock(node: stableHash64(Array(id.rawValue.utf8)), maxAheadMs: maxClockAheadMs)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Loading what the store holds

    /// A catalog entry as the store holds it; the table's summary is read from the store.
    public func load(catalogEntry entry: CatalogEntry, name: String) throws(TandemError) {
        catalog[name] = entry
        clock.observe(entry.at, wallMs: entry.at.physicalMs)
        guard !entry.deleted else { return }
        let replica = try TableReplica(name: name, schema: entry.schema, at: entry.at, store: store, cache: cache)
        replicas[name] = replica
        // Never issue a timestamp below one already on disk, whatever the wall clock says.
        let last = replica.summary.lastWrite
        clock.observe(HLC(time: last, node: 0), wallMs: last >> 16)
    }

    public func load(stability bytes: [UInt8]) throws(TandemError) {
        var r = ByteReader(bytes)
        stable = try r.u64()
        collectible = try r.u64()
        resyncedAt = try r.u64()
        let n = try ItemCodec.boundedCount(&r, minSize: 10)
        for _ in 0..<n { expired[try ItemCodec.readString(&r)] = try r.u64() }
    }

    var encodedStability: [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.u64(stable)
        w.u64(collectible)
        w.u64(resyncedAt)
        w.u32(UInt32(expired.count))
        for (name, at) in expired.sorted(by: { $0.key < $1.key }) {
            ItemCodec.string(name, &w)
            w.u64(at)
        }
        return w.bytes
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Local changes

    public func now(wallMs: UInt64) -> HLC { clock.now(wallMs: wallMs) }

    /// Creates (or re-creates) a table; nil if it exists with this schema already, else the
    /// ticket of its reply (once durable).
    public func createTable(_ name: String, schema: KeySchema, wallMs: UInt64) throws(TandemError) -> UInt64? {
        if let existing = replicas[name] {
            guard existing.schema == schema else {
                throw TandemError(TandemError.Code("table_exists", httpStatus: 409), "table '\(name)' exists with another key schema")
            }
            return nil
        }
        adopt(name, CatalogEntry(schema: schema, at: clock.now(wallMs: wallMs)), &queued.writes)
        queued.catalog.append((name, catalog[name]!))
        return reply(nil)
    }

    /// Drops a table; the ticket of its reply (once durable).
    public func deleteTable(_ name: String, wallMs: UInt64) throws(TandemError) -> UInt64 {
        guard let r = replicas[name] else { throw TandemError(.notFound, "no table '\(name)'") }
        adopt(name, CatalogEntry(schema: r.schema, at: clock.now(wallMs: wallMs), deleted: true), &queued.writes)
        queued.catalog.append((name, catalog[name]!))
        return reply(nil)
    }

    /// Applies local deltas (each made by the caller on a copy of the item's state at `t`),
    /// all or none: the reply with the returned ticket comes once they are durable, and only
    /// then do they go to the peers.
    public func write(_ writes: [(table: String, key: ItemKey, delta: ItemState)]) throws(TandemError) -> UInt64 {
        for w in writes where replicas[w.table] == nil { throw TandemError(.notFound, "no table '\(w.table)'") }
        // Every item is read before any is changed, so a read the store fails leaves nothing of
        // the call behind (the merges below read the same snapshot, so they read the same).
        if writes.count > 1 { for w in writes { _ = try replicas[w.table]!.state(w.key) } }
        for w in writes {
            let (before, changed) = try replicas[w.table]!.merge(w.key, w.delta)
            if changed, !changeStreams.isEmpty { try captureChange(w.table, w.key, before: before, local: true, into: &queued.writes) }
            queued.deltas.append(TableDelta(table: w.table, entry: catalog[w.table]!, key: w.key, state: w.delta))
        }
        return reply(nil)
    }

    /// Queues a reply (after the writes queued before it) and returns its ticket.
    private func reply(_ payload: [UInt8]?) -> UInt64 {
        defer { nextTicket += 1 }
        queued.replies.append(Reply(ticket: nextTicket, payload: payload))
        return nextTicket
    }

    /// A durable change of ours: to every live peer's stream (a full queue drops its oldest,
    /// leaving a gap for anti-entropy to close).
    private func release(_ batch: Batch) {
        for d in batch.deltas {
            for peer in live {
                var s = streams[peer, default: PeerStream()]
                if s.queue.count >= settings.maxQueuedPerPeer {
                    s.queue.removeFirst()
                    s.gap = true
                    s.drops += 1
                    stats.deltasDropped += 1
                }
                s.queue.append(d)
                streams[peer] = s
            }
        }
        for (name, entry) in batch.catalog {
            for peer in live { catalogOutbox[peer, default: [:]][name] = entry }
        }
    }

    /// Catalog changes go to every live peer at once (once durable), outside the item streams.
    private var catalogOutbox: [String: [String: CatalogEntry]] = [:]

    /// Makes `entry` the catalog's word on `name` if it wins, dropping the items of a table
    /// incarnation it replaces.
    private func adopt(_ name: String, _ entry: CatalogEntry, _ writes: inout [StoreWrite]) {
        let current = catalog[name]
        let winner = CatalogEntry.join(current, entry)
        guard winner != current else { return }
        undo.append(.table(name, current, replicas[name]))
        catalog[name] = winner
        writes.append(.catalog(name, winner))
        if let old = replicas[name] { writes.append(.dropTable(old.id)) }
        replicas[name] = winner.deleted ? nil : TableReplica(new: name, schema: winner.schema, at: winner.at, store: store, cache: cache)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Membership

    /// The current member set (ids other than ours) and which of them are alive.
    public func membersChanged(_ members: [(id: NodeID, live: Bool)], wallMs: UInt64) {
        for m in members.map({ (id: $0.id.rawValue, live: $0.live) }) where m.id != id.rawValue {
            known.insert(m.id)
            if m.live {
                goneSince[m.id] = nil
                if !live.contains(m.id) {
                    live.insert(m.id)
                    // What it missed while away comes by anti-entropy; start the stream fresh.
                    var s = streams[m.id] ?? PeerStream()
                    s.gap = true
                    streams[m.id] = s
                }
            } else {
                if goneSince[m.id] == nil { goneSince[m.id] = wallMs }
                if live.remove(m.id) != nil, var s = streams[m.id] {
                    stats.deltasDropped += s.queue.count + (s.inFlight?.deltas.count ?? 0)
                    s.queue = []
                    s.inFlight = nil
                    s.gap = true
                    s.drops += 1
                    streams[m.id] = s
                    catalogOutbox[m.id] = nil
                }
            }
        }
    }

    /// The stability record names members by what they were called when it was written:
    /// nodes before `NodeID` was the name wrote their bind addresses. Expired members named by
    /// an address a known node had are renamed (and the record stored again), so a member
    /// expired before the upgrade still has to resync when it returns under its name.
    public func renameLegacyMembers(_ legacy: LegacyAddresses) {
        var changed = false
        for (address, at) in expired.sorted(by: { $0.key < $1.key }) {
            let name = legacy.resolve(NodeID(address)).rawValue
            guard name != address else { continue }
            expired[address] = nil
            expired[name] = max(expired[name] ?? 0, at)
            changed = true
        }
        if changed { queued.writes.append(.stability(encodedStability)) }
    }

    public var livePeers: [NodeID] { live.sorted().map { NodeID($0) } }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Sending

    // ==== ------------------------------------------------------------------------------------
    // MARK: The output

    /// What to do now (nil: nothing), in the contract's order. Nil while a ready's writes are
    /// being stored: what came since waits for the outcome, and goes in the next commit.
    public func ready(wallMs: UInt64) -> TableReady? {
        guard storing == nil else { return nil }
        var rd = TableReady(writes: queued.writes, replies: queued.replies, messages: outbox + flush(wallMs: wallMs))
        // In place (`replicas[name]!.…` on a copy would retain every field of the replica).
        var taken: [String: TableReplica.Taken] = [:]
        for name in replicas.keys.sorted() {
            guard let (writes, t) = replicas[name]!.take() else { continue }
            rd.writes += writes
            taken[name] = t
        }
        outbox = []
        if !rd.writes.isEmpty {
            storing = (queued, undo.count, taken)
        } else {
            // Nothing to store: everything these replies wait for is durable already.
            release(queued)
        }
        queued = Batch()
        return rd.isEmpty ? nil : rd
    }

    /// The outcome of the last ready's commit. Success releases its deltas and catalog
    /// changes to the peers. Failure undoes in memory every change not yet durable (that
    /// batch, and all queued since: they were made on top of it) and fails their replies, so
    /// nothing the disk refused stays readable or is ever sent.
    public func stored(_ error: TandemError?) {
        guard let (batch, undoCount, taken) = storing else { return }
        storing = nil
        if error == nil {
            undo.removeFirst(undoCount)
            for (name, t) in taken { replicas[name]?.stored(t) }
            release(batch)
            return
        }
        for record in undo.reversed() {
            switch record {
            case .table(let name, let entry, let replica):
                catalog[name] = entry
                replicas[name] = replica
            case .resync(let at):
                resyncedAt = at
            }
        }
        undo = []
        for name in replicas.keys { replicas[name]!.rollback() }
        let failed = TandemError(error!.code, "not stored: a change it was made on failed to commit (\(error!.message))")
        queued = Batch(replies: queued.replies.map { Reply(ticket: $0.ticket, payload: nil, error: failed) })
    }

    /// The batches to send now: per live peer, the next batch if none is in flight.
    private func flush(wallMs: UInt64) -> [Request] {
        var out: [Request] = []
        for (peer, entries) in catalogOutbox.sorted(by: { $0.key < $1.key }) where live.contains(peer) {
            out.append(request(peer, Kind.deltas, TableSyncCodec.encode(deltas: [], catalog: entries)))
        }
        catalogOutbox = [:]
        for peer in live.sorted() {
            guard var s = streams[peer], s.inFlight == nil, !s.queue.isEmpty, wallMs >= s.retryAt else { continue }
            let batch = Array(s.queue.prefix(settings.maxBatch))
            s.queue.removeFirst(batch.count)
            let r = request(peer, Kind.deltas, TableSyncCodec.encode(deltas: batch))
            s.inFlight = (r.id, batch)
            streams[peer] = s
            out.append(r)
        }
        return out
    }

    private func request(_ to: String, _ kind: UInt8, _ payload: [UInt8]) -> Request {
        defer { nextRequestID += 1 }
        var w = ByteWriter(capacity: payload.count + id.rawValue.utf8.count + 4)
        ItemCodec.string(id.rawValue, &w)  // who is asking: answers depend on it (see `expired`)
        w.u64(clock.last)  // every exchange carries both clocks (see `collectible`)
        w.raw(payload)
        return Request(id: nextRequestID, to: NodeID(to), kind: kind, payload: w.bytes)
    }

    /// A peer's answer to one of our requests (nil: it failed — timeout, link down, refused):
    /// a delta batch's acknowledgement, the summaries that open an anti-entropy round's
    /// pushes, or a push's acknowledgement.
    public func responded(to requestID: UInt64, payload answer: [UInt8]?, wallMs: UInt64) {
        var payload: [UInt8]?
        if let answer {
            var r = ByteReader(answer)
            if let theirClock = try? r.u64() {
                observe(theirClock, wallMs: wallMs)
                payload = Array(answer[8...])
            } else {
                stats.malformed += 1
            }
        }
        for (peer, var s) in streams {
            guard let f = s.inFlight, f.id == requestID else { continue }
            s.inFlight = nil
            if payload != nil {
                stats.deltasSent += f.deltas.count
                if let last = f.deltas.last?.state.lastWriteTime { s.covered = max(s.covered, s.gap ? 0 : last) }
            } else if live.contains(peer) {
                s.queue.insert(contentsOf: f.deltas, at: 0)
                s.retryAt = wallMs + settings.retryDelayMs
                stats.deltasResent += f.deltas.count
            }
            streams[peer] = s
            return
        }
        guard var r = round else { return }
        if r.opening == requestID {
            r.opening = nil
            round = r
            if r.comparingRoots {
                receiveDiffering(payload, wallMs: wallMs)
            } else {
                receiveSummaries(payload, wallMs: wallMs)
            }
            return
        }
        if r.pending.remove(requestID) != nil {
            if payload == nil { r.clean = false }
            round = r
            finishRoundIfDone()
        }
    }

    public var reportsReceived: [String: Report] { reports }

    /// Up to when our own writes are durable at `peer`, as far as we know for sure.
    func covered(_ peer: String) -> UInt64 {
        guard let s = streams[peer] else { return 0 }
        if s.gap { return s.covered }
        let unacked = (s.inFlight?.deltas.first ?? s.queue.first)?.state.lastWriteTime
        return unacked.map { min($0 > 0 ? $0 - 1 : 0, clock.last) } ?? clock.last
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Receiving

    /// A peer's request: merged; the reply with the returned ticket comes once it (and
    /// everything before it) is durable.
    public func receive(kind: UInt8, payload: [UInt8], wallMs: UInt64) -> UInt64 {
        let handled = handle(kind: kind, payload: payload, wallMs: wallMs)
        queued.writes += handled.writes
        return reply(handled.reply)
    }

    func handle(kind: UInt8, payload: [UInt8], wallMs: UInt64) -> Handled {
        var r = ByteReader(payload)
        guard let sender = try? ItemCodec.readString(&r), let theirClock = try? r.u64() else {
            stats.malformed += 1
            return Handled()
        }
        observe(theirClock, wallMs: wallMs)
        var handled = handle(kind: kind, from: sender, body: Array(payload[r.offset...]), wallMs: wallMs)
        if let reply = handled.reply {
            var w = ByteWriter(capacity: reply.count + 8)
            w.u64(clock.last)
            w.raw(reply)
            handled.reply = w.bytes
        }
        return handled
    }

    private func observe(_ theirClock: UInt64, wallMs: UInt64) {
        if !clock.observe(HLC(time: theirClock, node: 0), wallMs: wallMs) { stats.clockClamped += 1 }
    }

    private func handle(kind: UInt8, from sender: String, body: [UInt8], wallMs: UInt64) -> Handled {
        if kind == Kind.stability { return receiveReport(from: sender, body, wallMs: wallMs) }
        // State from a member we stopped counting may predate collected tombstones: refuse it
        // until it resyncs (it learns it was expired from our next report).
        if expired[sender] != nil {
            stats.refusedFromExpired += 1
            return Handled()
        }
        switch kind {
        case Kind.deltas:
            guard let (deltas, entries) = try? TableSyncCodec.decodeDeltas(body) else {
                stats.malformed += 1
                return Handled()
            }
            var writes: [StoreWrite] = []
            do {
                try merge(deltas, entries, into: &writes, wallMs: wallMs)
            } catch {
                // The store could not be read: what was merged stays (merges are idempotent),
                // but the batch is not acknowledged, so the peer sends it again.
                stats.storeReadFailures += 1
                return Handled(writes: writes)
            }
            return Handled(writes: writes, reply: [])
        case Kind.roots:
            guard let (roots, entries) = try? TableSyncCodec.decodeRoots(body) else {
                stats.malformed += 1
                return Handled()
            }
            var writes: [StoreWrite] = []
            try? merge([], entries, into: &writes, wallMs: wallMs)  // catalog only: reads nothing
            // Only the tables both hold can be repaired by the asker's pushes (a table it lacks
            // reaches it through the catalog first, as with digests).
            let differing = replicas.keys.sorted().filter { name in roots[name].map { $0 != replicas[name]!.digest.root } ?? false }
            return Handled(writes: writes, reply: TableSyncCodec.encode(differing: differing, catalog: durableCatalog))
        case Kind.digests:
            guard let (digests, entries) = try? TableSyncCodec.decodeDigests(body) else {
                stats.malformed += 1
                return Handled()
            }
            var writes: [StoreWrite] = []
            try? merge([], entries, into: &writes, wallMs: wallMs)  // catalog only: reads nothing
            do {
                return Handled(writes: writes, reply: try summaries(for: digests))
            } catch {
                stats.storeReadFailures += 1
                return Handled(writes: writes)
            }
        default:
            stats.malformed += 1
            return Handled()
        }
    }

    private func merge(
        _ deltas: [TableDelta], _ entries: [String: CatalogEntry], into writes: inout [StoreWrite], wallMs: UInt64
    ) throws(TandemError) {
        for (name, entry) in entries {
            if !clock.observe(entry.at, wallMs: wallMs) { stats.clockClamped += 1 }
            adopt(name, entry, &writes)
        }
        for d in deltas {
            stats.deltasReceived += 1
            if !clock.observe(HLC(time: d.state.lastWriteTime, node: 0), wallMs: wallMs) { stats.clockClamped += 1 }
            adopt(d.table, d.entry, &writes)
            guard let entry = catalog[d.table], !entry.deleted, entry.at == d.entry.at else { continue }
            let (before, changed) = try replicas[d.table]!.merge(d.key, d.state)
            if let before, before.supersedes(d.state) { stats.conflictsResolved += 1 }
            guard changed else { continue }
            // What a peer that has not compacted yet sends back is dropped again at once.
            if compactedAt > 0, let state = try replicas[d.table]!.state(d.key), state.hasGarbage {
                let compacted = state.compacted(stable: compactedAt)
                if compacted != state { try replicas[d.table]!.replace(d.key, with: compacted) }
            }
            if !changeStreams.isEmpty { try captureChange(d.table, d.key, before: before, local: false, into: &writes) }
            stats.mergesApplied += 1
            lagSamples.append(max(0, Double(wallMs) - Double(d.state.lastWriteTime >> 16)))
        }
    }

    /// Takes the lag samples gathered since the last call.
    public func takeLagSamples() -> [Double] {
        defer { lagSamples = [] }
        return lagSamples
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Anti-entropy

    /// Opens a round with a random live peer (`pick` chooses from the sorted live peers).
    public func startAntiEntropy(wallMs: UInt64, pick: (Int) -> Int) {
        guard round == nil, !live.isEmpty else { return }
        let peers = live.sorted()
        let peer = peers[pick(peers.count)]
        stats.antiEntropyRounds += 1
        let s = streams[peer] ?? PeerStream()
        let r = request(peer, Kind.roots, TableSyncCodec.encode(roots: replicas.mapValues(\.digest.root), catalog: durableCatalog))
        round = Round(peer: peer, startedAt: clock.last, dropsAtStart: s.drops, opening: r.id)
        outbox.append(r)
    }

    /// The peer's answer to our roots: the digests of the tables that differ, or the round ends.
    private func receiveDiffering(_ payload: [UInt8]?, wallMs: UInt64) {
        guard var r = round else { return }
        guard let payload, let (differing, entries) = try? TableSyncCodec.decodeDiffering(payload) else {
            if payload != nil { stats.malformed += 1 }
            round = nil
            return
        }
        try? merge([], entries, into: &queued.writes, wallMs: wallMs)  // catalog only: reads nothing
        // A table with a catalog change not yet stored may differ from what its root said:
        // not a clean round (as `receiveSummaries` has it).
        if undo.contains(where: { if case .table = $0 { true } else { false } }) { r.clean = false }
        var digests: [String: MerkleDigest] = [:]
        for name in differing { if let replica = replicas[name] { digests[name] = replica.digest } }
        guard !digests.isEmpty else {
            round = r
            finishRoundIfDone()
            return
        }
        let q = request(r.peer, Kind.digests, TableSyncCodec.encode(digests: digests, catalog: durableCatalog))
        r.opening = q.id
        r.comparingRoots = false
        round = r
        outbox.append(q)
    }

    /// The catalog as it is on disk: what peers may be told (a change not yet stored may
    /// still be undone).
    private var durableCatalog: [String: CatalogEntry] {
        var c = catalog
        var seen = Set<String>()
        for case .table(let name, let entry, _) in undo where seen.insert(name).inserted { c[name] = entry }
        return c
    }

    /// The peer's answer to our digests: push the items it lacks or holds otherwise.
    private func receiveSummaries(_ payload: [UInt8]?, wallMs: UInt64) {
        guard var r = round else { return }
        guard let payload, let (summaries, entries) = try? TableNode.decodeSummaries(payload) else {
            if payload != nil { stats.malformed += 1 }
            round = nil
            return
        }
        try? merge([], entries, into: &queued.writes, wallMs: wallMs)  // catalog only: reads nothing
        // Only durable state is pushed: an item or table with a change not yet stored waits
        // for the next round (and this one is not clean).
        var dirtyTables = Set<String>()
        for case .table(let name, _, _) in undo { dirtyTables.insert(name) }
        // Writes at or after the oldest one still queued or in flight to this peer are on
        // their way by the delta stream; repairing them too would only duplicate traffic.
        let s = streams[r.peer] ?? PeerStream()
        let horizon = (s.inFlight?.deltas.first ?? s.queue.first)?.state.lastWriteTime ?? UInt64.max
        var push: [TableDelta] = []
        for (name, summary) in summaries {
            guard let replica = replicas[name], let entry = catalog[name], entry.at == summary.tableAt else { continue }
            if dirtyTables.contains(name) {
                r.clean = false
                continue
            }
            var theirs: [ItemKey: UInt64] = [:]
            for (k, h) in summary.items { theirs[k] = h }
            do {
                for bucket in summary.buckets {
                    for (key, hash) in try replica.bucket(bucket) where theirs[key] != hash {
                        guard !replica.isPending(key), let state = try replica.state(key), state.lastWriteTime < horizon else {
                            r.clean = false
                            continue
                        }
                        push.append(TableDelta(table: name, entry: entry, key: key, state: state))
                    }
                }
            } catch {
                stats.storeReadFailures += 1
                r.clean = false
            }
        }
        stats.itemsRepaired += push.count
        for start in stride(from: 0, to: push.count, by: settings.maxBatch) {
            let part = Array(push[start..<min(push.count, start + settings.maxBatch)])
            let q = request(r.peer, Kind.deltas, TableSyncCodec.encode(deltas: part))
            stats.repairBytes += q.payload.count
            r.pending.insert(q.id)
            outbox.append(q)
        }
        round = r
        finishRoundIfDone()
    }

    private func finishRoundIfDone() {
        guard let r = round, r.opening == nil, r.pending.isEmpty else { return }
        round = nil
        // A clean round leaves the peer holding everything we had when it started, so a gap
        // in the stream before that is closed.
        guard r.clean, var s = streams[r.peer], s.drops == r.dropsAtStart, live.contains(r.peer) else { return }
        if s.gap {
            s.covered = max(s.covered, r.startedAt)
            s.gap = false
            streams[r.peer] = s
        }
    }

    /// Step 2 on the other side: for every bucket whose digest differs from the requester's,
    /// our item hashes.
    func summaries(for theirDigests: [String: [UInt64]]) throws(TandemError) -> [UInt8] {
        var w = ByteWriter(capacity: 1024)
        w.blob(TableSyncCodec.encode(deltas: [], catalog: durableCatalog))
        // Only the tables asked about: the asker sends the digests of the tables whose roots
        // differed, and can repair only tables it holds.
        let names = replicas.keys.sorted().filter { theirDigests[$0] != nil }
        w.u32(UInt32(names.count))
        for name in names {
            let r = replicas[name]!
            let theirs = theirDigests[name]!
            let buckets = (0..<MerkleDigest.bucketCount).filter { r.digest.buckets[$0] != theirs[$0] }
            w.blob(Array(name.utf8))
            ItemCodec.hlc(catalog[name]!.at, &w)
            w.u16(UInt16(buckets.count))
            for b in buckets { w.u16(UInt16(b)) }
            var keys: [(ItemKey, UInt64)] = []
            for b in buckets { keys += try r.bucket(b) }
            w.u32(UInt32(keys.count))
            for (key, hash) in keys {
                w.blob(key.bytes)
                w.u64(hash)
            }
        }
        return w.bytes
    }

    struct Summary {
        var tableAt: HLC
        var buckets: [Int]
        var items: [(ItemKey, UInt64)]
    }

    static func decodeSummaries(_ bytes: [UInt8]) throws -> ([String: Summary], [String: CatalogEntry]) {
        var r = ByteReader(bytes)
        let (_, entries) = try TableSyncCodec.decodeDeltas(try r.blob(limit: bytes.count))
        var out: [String: Summary] = [:]
        let tables = try ItemCodec.boundedCount(&r, minSize: 26)
        for _ in 0..<tables {
            let name = String(decoding: try r.blob(limit: 255), as: UTF8.self)
            let at = try ItemCodec.readHLC(&r)
            let bucketCount = Int(try r.u16())
            guard bucketCount <= MerkleDigest.bucketCount else { throw TandemError(.malformed, "too many buckets") }
            var buckets: [Int] = []
            for _ in 0..<bucketCount { buckets.append(Int(try r.u16()) % MerkleDigest.bucketCount) }
            let n = try ItemCodec.boundedCount(&r, minSize: 13)
            var items: [(ItemKey, UInt64)] = []
            items.reserveCapacity(n)
            for _ in 0..<n {
                let key = try ItemKey(bytes: try r.blob(limit: r.remaining))
                items.append((key, try r.u64()))
            }
            out[name] = Summary(tableAt: at, buckets: buckets, items: items)
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes in summaries") }
        return (out, entries)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Stability and tombstone collection

    /// Our own writes up to this time are durable on every member we count.
    var ownCovered: UInt64 {
        var c = clock.last
        // A write not yet stored here has not gone to anyone yet.
        for d in queued.deltas + (storing?.batch.deltas ?? []) {
            c = min(c, d.state.lastWriteTime > 0 ? d.state.lastWriteTime - 1 : 0)
        }
        for peer in known where expired[peer] == nil { c = min(c, covered(peer)) }
        return c
    }

    /// Our report, for every live peer (expired ones learn from it that they must resync).
    public func stabilityRound(wallMs: UInt64) {
        // An idle node's clock moves on too (any later write of ours is stamped after this), so
        // the stable time can pass the last write and its tombstones be collected.
        _ = clock.now(wallMs: wallMs)
        var w = ByteWriter(capacity: 64)
        w.u64(ownCovered)
        w.u64(stable)
        w.u64(resyncedAt)
        let gone = expired.keys.sorted()
        w.u32(UInt32(gone.count))
        for name in gone { ItemCodec.string(name, &w) }
        outbox += live.sorted().map { request($0, Kind.stability, w.bytes) }
    }

    private func receiveReport(from sender: String, _ body: [UInt8], wallMs: UInt64) -> Handled {
        var r = ByteReader(body)
        guard let covered = try? r.u64(), let theirStable = try? r.u64(), let resynced = try? r.u64(),
            let n = try? ItemCodec.boundedCount(&r, minSize: 4)
        else {
            stats.malformed += 1
            return Handled()
        }
        var gone: [String] = []
        for _ in 0..<n {
            guard let name = try? ItemCodec.readString(&r) else {
                stats.malformed += 1
                return Handled()
            }
            gone.append(name)
        }
        var writes: [StoreWrite] = []
        if gone.contains(id.rawValue), theirStable > resyncedAt {
            writes += resync(at: theirStable)
        }
        if let at = expired[sender] {
            // It is back; once it has dropped what predates our stable time, it counts again.
            guard resynced >= at else { return Handled(writes: writes, reply: []) }
            expired[sender] = nil
            writes.append(.stability(encodedStability))
        }
        reports[sender] = Report(covered: covered, stable: theirStable, expired: gone, resynced: resynced)
        return Handled(writes: writes, reply: [])
    }

    /// We were gone longer than the retention bound: keep only what we wrote or learned after
    /// the cluster's stable time; the rest comes back by anti-entropy, without tombstones lost.
    /// If the store fails a read on the way, we do not claim the resync (it is asked for again).
    private func resync(at theirStable: UInt64) -> [StoreWrite] {
        do {
            for name in replicas.keys.sorted() {
                var keys = replicas[name]!.keys()
                var changes: [(ItemKey, ItemState?)] = []
                while let key = try keys.next() {
                    guard let state = try replicas[name]!.state(key) else { continue }
                    let kept = state.admitted(stable: theirStable)
                    let next: ItemState? = kept.marker != .zero || !kept.attributes.isEmpty ? kept : nil
                    if next != state { changes.append((key, next)) }
                }
                for (key, next) in changes { try replicas[name]!.replace(key, with: next) }
            }
        } catch {
            stats.storeReadFailures += 1
            return []
        }
        stats.resyncs += 1
        undo.append(.resync(resyncedAt))
        resyncedAt = theirStable
        stable = max(stable, theirStable)
        for peer in streams.keys { streams[peer]!.gap = true }
        return [.stability(encodedStability)]
    }

    /// Re-evaluates who counts and the stable time; stores the stability record when it moved.
    public func updateStability(wallMs: UInt64) {
        var changed = false
        // Members gone past the retention bound stop holding collection back — if the members
        // left are a majority, so that at most one side of a partition ever moves on.
        let all = known.count + 1
        for (peer, since) in goneSince.sorted(by: { $0.key < $1.key })
        where expired[peer] == nil && wallMs >= since + settings.retentionMs {
            let counted = all - expired.count - 1
            guard counted * 2 > all else { break }
            expired[peer] = stable
            changed = true
        }
        var candidate = ownCovered
        for peer in known where expired[peer] == nil {
            candidate = min(candidate, reports[peer]?.covered ?? 0)
        }
        if candidate > stable {
            stable = candidate
            stableReached.append((stable, clock.last))
            changed = true
        }
        while let first = stableReached.first, first.clock < stable {
            collectible = max(collectible, first.stable)
            stableReached.removeFirst()
        }
        if changed { queued.writes.append(.stability(encodedStability)) }
    }

    /// Compacts up to `compactionBatch` items against the stable time: a pass over the items
    /// the store indexes as holding garbage, resumed where the last step stopped. Items with a
    /// change not yet stored wait for the next pass.
    public func compactionStep() {
        if compactionCursor.isEmpty {
            guard collectible > compactedAt else { return }
            compactedAt = collectible
            for name in replicas.keys { compactionCursor.updateValue(nil, forKey: name) }
        }
        var budget = settings.compactionBatch
        for name in compactionCursor.keys.sorted() where budget > 0 {
            guard replicas[name] != nil, let after = compactionCursor[name] else {
                compactionCursor[name] = nil
                continue
            }
            do {
                let keys = try replicas[name]!.garbage(after: after, limit: budget)
                budget -= keys.count
                if budget > 0 { compactionCursor[name] = nil } else { compactionCursor[name] = keys.last }
                for key in keys where !replicas[name]!.isPending(key) {
                    guard let state = try replicas[name]!.state(key) else { continue }
                    let compacted = state.compacted(stable: compactedAt)
                    guard compacted != state else { continue }
                    try replicas[name]!.replace(key, with: compacted)
                    if compacted == nil { stats.itemsCollected += 1 } else { stats.itemsCompacted += 1 }
                }
            } catch {
                stats.storeReadFailures += 1
                compactionCursor[name] = nil
            }
        }
    }
}
