import Foundation
import GlobalTable
import TandemCore

/// Global tables on one node: the in-memory replicas (the read path), the HLC, durable writes
/// through LMDB group commit (a write is acknowledged only after its commit is on disk), and
/// replication: deltas to every live peer, digest anti-entropy. The merge rules are all in
/// `GlobalTable`; this only moves deltas and decides when.
final class Tables {
    static let maxItemBytes = 400 * 1024
    static let catalogPrefix: [UInt8] = [0x01]
    static let itemPrefix: [UInt8] = [0x02]

    private var replicas: [String: TableReplica] = [:]
    /// Every table ever created or deleted, last writer wins (see `CatalogEntry`).
    private var catalog: [String: CatalogEntry] = [:]
    private var clock: HybridClock
    private let committer: GroupCommitter
    private let loop: EventLoop
    let replication: Replication

    /// Peer plumbing, set by the node: live peers' addresses, and a request sender.
    var livePeers: () -> [String] = { [] }
    var request: (_ to: String, _ kind: UInt8, _ payload: [UInt8], _ done: @escaping (Result<Frame, TandemError>) -> Void) -> Void = { _, _, _, _ in }

    struct Replication {
        var antiEntropyInterval: Duration = .seconds(2)
        var maxQueuedPerPeer = 50_000
        var maxBatch = 1_000
    }

    struct SyncStats {
        var deltasSent = 0
        var deltasReceived = 0
        var deltasDropped = 0
        var antiEntropyRounds = 0
        var itemsRepaired = 0
        var mergesApplied = 0
        var malformed = 0
    }
    private(set) var sync = SyncStats()
    /// Write→applied lag on this node for deltas from peers, by HLC physical time (ms): counts
    /// per bucket (upper bounds in `lagBoundsMs`, the last bucket is +Inf), and the sum.
    static let lagBoundsMs: [Double] = [0.5, 1, 2, 3, 5, 10, 20, 50, 100, 250, 500, 1000, 5000]
    private(set) var lagCounts = [Int](repeating: 0, count: Tables.lagBoundsMs.count + 1)
    private(set) var lagSumMs = 0.0
    private var outbox: [String: [TableDelta]] = [:]
    private var flushScheduled = false
    /// Anti-entropy requests (digests, pushes) of the current round not yet answered.
    var repairsInFlight = 0
    /// Per peer, the oldest write in the delta batch in flight to it.
    var inFlightOldest: [String: UInt64] = [:]
    private var inFlight: Set<String> = []
    private let flushTimer: Timer
    private let antiEntropyTimer: Timer

    init(store: LMDBStore, loop: EventLoop, nodeName: String, replication: Replication = Replication()) throws {
        self.loop = loop
        self.replication = replication
        clock = HybridClock(node: stableHash64(Array(nodeName.utf8)))
        committer = GroupCommitter(loop: loop, store: store)
        flushTimer = Timer(loop: loop)
        antiEntropyTimer = Timer(loop: loop)
        var wall: UInt64 = 0
        for (key, value) in try store.scan(prefix: Tables.catalogPrefix) {
            let name = String(decoding: key.dropFirst(), as: UTF8.self)
            guard let entry = try TableSyncCodec.decodeDeltas(value).catalog[name] else { continue }
            catalog[name] = entry
            wall = max(wall, entry.at.time)
            if !entry.deleted { replicas[name] = TableReplica(name: name, schema: entry.schema) }
        }
        for (key, value) in try store.scan(prefix: Tables.itemPrefix) {
            var r = ByteReader(key, from: 1)
            let nameLength = Int(try r.u16())
            guard r.remaining >= nameLength else { throw TandemError(.malformed, "corrupt item key in store") }
            let name = String(decoding: key[3..<(3 + nameLength)], as: UTF8.self)
            let itemKey = try ItemKey(bytes: Array(key[(3 + nameLength)...]))
            let state = try ItemCodec.decode(value)
            replicas[name]?.merge(itemKey, state)
            wall = max(wall, state.lastWriteTime)
        }
        // Never issue a timestamp below one already on disk, whatever the wall clock says now.
        clock.observe(HLC(time: wall, node: 0), wallMs: Tables.wallMs())
    }

    /// Starts periodic anti-entropy (after the node has wired `livePeers` and `request`).
    func start() {
        antiEntropyTimer.start(after: replication.antiEntropyInterval, repeating: replication.antiEntropyInterval) { [weak self] in
            self?.antiEntropyRound()
        }
    }

    var stats: (commits: Int, writes: Int, failures: Int) {
        (committer.commits, committer.writesCommitted, committer.failures)
    }

    static func wallMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    static func itemStorageKey(_ table: String, _ key: ItemKey) -> [UInt8] {
        var w = ByteWriter()
        w.raw(itemPrefix)
        let name = Array(table.utf8)
        w.u16(UInt16(name.count))
        w.raw(name)
        w.raw(key.bytes)
        return w.bytes
    }

    // MARK: schema encoding

    static func decodeSchema(_ bytes: [UInt8]) throws -> KeySchema {
        let j = try JSON.parse(bytes)
        guard let pk = j["partitionKey"]?.stringValue else { throw TandemError(.badRequest, "partitionKey (a string) is required") }
        let pkType = j["partitionKeyType"]?.stringValue ?? "S"
        let sk = j["sortKey"]?.stringValue
        let skType = j["sortKeyType"]?.stringValue ?? "S"
        for t in [pkType, skType] where !["S", "N", "B"].contains(t) {
            throw TandemError(.badRequest, "key types are S, N or B, not '\(t)'")
        }
        guard !pk.isEmpty, sk.map({ !$0.isEmpty && $0 != pk }) ?? true else {
            throw TandemError(.badRequest, "key attribute names must be non-empty and distinct")
        }
        return KeySchema(partitionKey: pk, sortKey: sk, partitionKeyType: pkType, sortKeyType: skType)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: HTTP

    /// Handles `/v1/tables…`; false if the path is not ours.
    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        let s = request.segments
        guard s.count >= 2, s[0] == "v1", s[1] == "tables" else { return false }
        do {
            switch (request.method, s.count) {
            case ("GET", 2): respond(listTables())
            case ("PUT", 3): try createTable(s[2], request.body, respond)
            case ("GET", 3): respond(try describe(try replica(s[2])))
            case ("DELETE", 3): try deleteTable(s[2], respond)
            case ("GET", 4) where s[3] == "items": respond(try query(try replica(s[2]), request.query))
            case (_, 5...6) where s[3] == "items": try item(request, table: s[2], keyParts: Array(s[4...]), respond)
            default: respond(.error(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)"))
            }
        } catch let e as TandemError {
            respond(.error(e))
        } catch {
            respond(.error(400, "bad_request", "\(error)"))
        }
        return true
    }

    private func replica(_ name: String) throws -> TableReplica {
        guard let r = replicas[name] else { throw TandemError(.notFound, "no table '\(name)'") }
        return r
    }

    private func json(_ status: Int, _ j: JSON) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(j.serialized.utf8) + [0x0A])
    }

    private func tableJSON(_ r: TableReplica) -> JSON {
        var members: [(String, JSON)] = [("name", .string(r.name)), ("partitionKey", .string(r.schema.partitionKey)),
                                         ("partitionKeyType", .string(r.schema.partitionKeyType))]
        if let sk = r.schema.sortKey { members += [("sortKey", .string(sk)), ("sortKeyType", .string(r.schema.sortKeyType))] }
        members.append(("items", .number(String(r.items.values.filter { $0.visible != nil }.count))))
        // Equal roots on two nodes mean equal replicas (anti-entropy's view of the table).
        members.append(("digest", .string(String(r.digest.root, radix: 16))))
        return .object(members)
    }

    private func listTables() -> HTTPResponse {
        json(200, .object([("tables", .array(replicas.keys.sorted().map { tableJSON(replicas[$0]!) }))]))
    }

    private func describe(_ r: TableReplica) -> HTTPResponse { json(200, tableJSON(r)) }

    static func catalogWrite(_ name: String, _ entry: CatalogEntry) -> GroupCommitter.Write {
        (catalogPrefix + Array(name.utf8), TableSyncCodec.encode(deltas: [], catalog: [name: entry]))
    }

    private func createTable(_ name: String, _ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) throws {
        guard name.utf8.count >= 3, name.utf8.count <= 255,
              name.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || "_.-".unicodeScalars.contains($0) }) else {
            throw TandemError(.badRequest, "table names are 3 to 255 characters of letters, digits, '_', '.' and '-'")
        }
        let schema = try Tables.decodeSchema(body)
        if let existing = replicas[name] {
            guard existing.schema == schema else {
                throw TandemError(TandemError.Code("table_exists", httpStatus: 409), "table '\(name)' exists with another key schema")
            }
            respond(describe(existing))
            return
        }
        let entry = CatalogEntry(schema: schema, at: clock.now(wallMs: Tables.wallMs()))
        var writes: [GroupCommitter.Write] = []
        adopt(name, entry, writes: &writes)
        broadcastCatalog(name)
        committer.submit(writes) { [weak self] error in
            guard let self else { return }
            if let error { return respond(.error(error)) }
            respond(self.json(201, self.tableJSON(self.replicas[name] ?? TableReplica(name: name, schema: schema))))
        }
    }

    private func deleteTable(_ name: String, _ respond: @escaping (HTTPResponse) -> Void) throws {
        let r = try replica(name)
        let entry = CatalogEntry(schema: r.schema, at: clock.now(wallMs: Tables.wallMs()), deleted: true)
        var writes: [GroupCommitter.Write] = []
        adopt(name, entry, writes: &writes)
        broadcastCatalog(name)
        committer.submit(writes) { error in
            respond(error.map { .error($0) } ?? .json(200, ["deleted": name]))
        }
    }

    /// Makes `entry` the catalog's word on `name` if it wins, dropping the items of a table
    /// incarnation it replaces. Returns whether the table now is `entry`.
    @discardableResult
    private func adopt(_ name: String, _ entry: CatalogEntry, writes: inout [GroupCommitter.Write]) -> Bool {
        let current = catalog[name]
        let winner = CatalogEntry.join(current, entry)
        guard winner != current else { return current == entry }
        catalog[name] = winner
        writes.append(Tables.catalogWrite(name, winner))
        if let old = replicas[name] {
            for key in old.items.keys { writes.append((Tables.itemStorageKey(name, key), nil)) }
        }
        replicas[name] = winner.deleted ? nil : TableReplica(name: name, schema: winner.schema)
        return winner == entry
    }

    // MARK: items

    private func item(_ request: HTTPRequest, table: String, keyParts: [String], _ respond: @escaping (HTTPResponse) -> Void) throws {
        // Only the schema and the one item are copied out: holding a copy of the replica while
        // writing to it would copy all its items (copy-on-write) on every write.
        let schema = try replica(table).schema
        guard (keyParts.count == 2) == (schema.sortKey != nil) else {
            throw TandemError(.badRequest, schema.sortKey == nil
                ? "table '\(table)' has no sort key: use /items/{\(schema.partitionKey)}"
                : "table '\(table)' needs /items/{\(schema.partitionKey)}/{\(schema.sortKey!)}")
        }
        guard let pk = KeySchema.keyValue(keyParts[0], type: schema.partitionKeyType) else {
            throw TandemError(.badRequest, "'\(keyParts[0])' is not a valid \(schema.partitionKeyType) key")
        }
        var sk: KeyValue?
        if keyParts.count == 2 {
            guard let v = KeySchema.keyValue(keyParts[1], type: schema.sortKeyType) else {
                throw TandemError(.badRequest, "'\(keyParts[1])' is not a valid \(schema.sortKeyType) key")
            }
            sk = v
        }
        let key = ItemKey(partition: pk, sort: sk)
        var state = replicas[table]!.state(key) ?? ItemState()
        let t = clock.now(wallMs: Tables.wallMs())
        let delta: ItemState
        switch request.method {
        case "GET":
            guard let visible = state.visible else { throw TandemError(.notFound, "no item \(keyDescription(key)) in '\(table)'") }
            return respond(json(200, .object([("item", PlainJSON.json(visible))])))
        case "PUT":
            var values = try itemObject(request.body)
            values[schema.partitionKey] = values[schema.partitionKey] ?? pk.attributeValue
            if let skName = schema.sortKey, let sk { values[skName] = values[skName] ?? sk.attributeValue }
            guard try schema.key(of: values) == key else {
                throw TandemError(.badRequest, "the item's key attributes do not match the URL")
            }
            delta = state.put(values, at: t)
        case "DELETE":
            delta = state.delete(at: t)
        case "PATCH":
            delta = try patch(&state, request.body, schema: schema, at: t)
        default:
            throw TandemError(.methodNotAllowed, "\(request.method) is not allowed on an item")
        }
        replicas[table]!.merge(key, delta)
        replicate(TableDelta(table: table, entry: catalog[table]!, key: key, state: delta))
        guard let encoded = replicas[table]!.encodedState(key), encoded.count <= Tables.maxItemBytes + 4096 else {
            throw TandemError(.tooLarge, "item exceeds \(Tables.maxItemBytes) bytes")
        }
        committer.submit([(Tables.itemStorageKey(table, key), encoded)]) { [weak self] error in
            guard let self else { return }
            if let error { return respond(.error(error)) }
            let visible = self.replicas[table]?.state(key)?.visible
            respond(self.json(200, .object([("item", visible.map { PlainJSON.json($0) } ?? .null)])))
        }
    }

    private func keyDescription(_ k: ItemKey) -> String { k.sort.map { "\(k.partition)/\($0)" } ?? "\(k.partition)" }

    private func itemObject(_ body: [UInt8]) throws -> [String: AttributeValue] {
        guard body.count <= Tables.maxItemBytes else { throw TandemError(.tooLarge, "item exceeds \(Tables.maxItemBytes) bytes") }
        guard case .map(let m) = try PlainJSON.value(try JSON.parse(body)) else {
            throw TandemError(.badRequest, "an item is a JSON object")
        }
        return m
    }

    /// The PATCH body, parsed and applied by `ItemPatch` (nested paths, escapes, key checks).
    private func patch(_ state: inout ItemState, _ body: [UInt8], schema: KeySchema, at t: HLC) throws -> ItemState {
        let keyNames = [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? [])
        return try ItemPatch.apply(try JSON.parse(body), to: &state, keyNames: keyNames, at: t)
    }

    // MARK: query and scan

    private func query(_ r: TableReplica, _ q: [String: String]) throws -> HTTPResponse {
        let limit = Int(q["limit"] ?? "100") ?? -1
        guard (1...1000).contains(limit) else { throw TandemError(.badRequest, "limit must be 1 to 1000") }
        var after: ItemKey?
        if let cursor = q["after"] {
            // URL-safe alphabet, so a cursor needs no escaping in a query string.
            let standard = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            guard let bytes = Base64.decode(standard), let k = try? ItemKey(bytes: bytes) else {
                throw TandemError(.badRequest, "'after' is not a cursor this API returned")
            }
            after = k
        }
        let page: (items: [(ItemKey, [String: AttributeValue])], more: Bool)
        if let pkText = q["pk"] {
            guard let pk = KeySchema.keyValue(pkText, type: r.schema.partitionKeyType) else {
                throw TandemError(.badRequest, "pk '\(pkText)' is not a valid \(r.schema.partitionKeyType) key")
            }
            let type = r.schema.sortKeyType
            func bound(_ name: String) throws -> KeyValue? {
                guard let t = q[name] else { return nil }
                guard let v = KeySchema.keyValue(t, type: type) else { throw TandemError(.badRequest, "\(name) '\(t)' is not a valid \(type) key") }
                return v
            }
            let from = try bound("skFrom"), to = try bound("skTo")
            let prefix = q["skBegins"]
            page = r.query(partition: pk, where: { sk in
                guard let sk else { return from == nil && to == nil && prefix == nil }
                if let from, sk < from { return false }
                if let to, to < sk { return false }
                if let prefix {
                    guard case .string(let s) = sk, s.hasPrefix(prefix) else { return false }
                }
                return true
            }, after: after, limit: limit)
        } else {
            guard q["skBegins"] == nil, q["skFrom"] == nil, q["skTo"] == nil else {
                throw TandemError(.badRequest, "sort-key conditions need pk")
            }
            page = r.scan(after: after, limit: limit)
        }
        var members: [(String, JSON)] = [("items", .array(page.items.map { PlainJSON.json($0.1) }))]
        if page.more, let last = page.items.last {
            let cursor = Base64.encode(last.0.bytes).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            members.append(("next", .string(cursor)))
        }
        return json(200, .object(members))
    }
}

// ==== ----------------------------------------------------------------------------------------
// MARK: Replication

/// Peer frame kinds for global tables.
enum TableFrame {
    static let deltas: UInt8 = 2
    static let digests: UInt8 = 3
}

extension Tables {
    /// Queues a delta for every live peer and flushes at the next loop turn, so writes made in
    /// one turn travel together.
    func replicate(_ delta: TableDelta) {
        for peer in livePeers() {
            var queue = outbox[peer, default: []]
            if queue.count >= replication.maxQueuedPerPeer {
                queue.removeFirst()
                sync.deltasDropped += 1  // anti-entropy will carry it instead
            }
            queue.append(delta)
            outbox[peer] = queue
        }
        scheduleFlush()
    }

    private func broadcastCatalog(_ name: String) {
        guard let entry = catalog[name] else { return }
        let payload = TableSyncCodec.encode(deltas: [], catalog: [name: entry])
        for peer in livePeers() { request(peer, TableFrame.deltas, payload) { _ in } }
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        flushTimer.start(after: .zero) { [weak self] in
            self?.flushScheduled = false
            self?.flush()
        }
    }

    /// One batch in flight per peer; a failed batch goes back to the front of its queue.
    private func flush() {
        let live = Set(livePeers())
        for peer in outbox.keys.sorted() {
            guard live.contains(peer) else {
                sync.deltasDropped += outbox[peer]!.count  // a dead peer catches up by anti-entropy
                outbox[peer] = nil
                continue
            }
            guard !inFlight.contains(peer), let queue = outbox[peer], !queue.isEmpty else { continue }
            let batch = Array(queue.prefix(replication.maxBatch))
            outbox[peer] = Array(queue.dropFirst(batch.count))
            inFlight.insert(peer)
            inFlightOldest[peer] = batch.map { $0.state.lastWriteTime }.min()
            request(peer, TableFrame.deltas, TableSyncCodec.encode(deltas: batch)) { [weak self] result in
                guard let self else { return }
                self.inFlight.remove(peer)
                self.inFlightOldest[peer] = nil
                switch result {
                case .success:
                    self.sync.deltasSent += batch.count
                case .failure:
                    self.outbox[peer] = batch + (self.outbox[peer] ?? [])
                }
                // More waiting: go again at once after a success, after a pause after a failure.
                if !(self.outbox[peer] ?? []).isEmpty {
                    if case .success = result { self.scheduleFlush() } else { self.scheduleFlushLater() }
                }
            }
        }
    }

    private func scheduleFlushLater() {
        guard !flushScheduled else { return }
        flushScheduled = true
        flushTimer.start(after: .milliseconds(50)) { [weak self] in
            self?.flushScheduled = false
            self?.flush()
        }
    }

    /// Merges what a peer sent; the answer goes back once the changes are durable here.
    func serveDeltas(_ payload: [UInt8], reply: @escaping ([UInt8]) -> Void) {
        guard let (deltas, entries) = try? TableSyncCodec.decodeDeltas(payload) else {
            sync.malformed += 1
            return
        }
        let writes = merge(deltas, entries)
        committer.submit(writes) { error in if error == nil { reply([]) } }
    }

    /// Applies remote catalog entries and deltas; returns the storage writes to make.
    private func merge(_ deltas: [TableDelta], _ entries: [String: CatalogEntry]) -> [GroupCommitter.Write] {
        var writes: [GroupCommitter.Write] = []
        let wall = Tables.wallMs()
        for (name, entry) in entries {
            clock.observe(entry.at, wallMs: wall)
            adopt(name, entry, writes: &writes)
        }
        for d in deltas {
            sync.deltasReceived += 1
            clock.observe(HLC(time: d.state.lastWriteTime, node: 0), wallMs: wall)
            adopt(d.table, d.entry, writes: &writes)
            guard let entry = catalog[d.table], !entry.deleted, entry.at == d.entry.at else { continue }
            if replicas[d.table]!.merge(d.key, d.state) {
                sync.mergesApplied += 1
                writes.append((Tables.itemStorageKey(d.table, d.key), replicas[d.table]!.encodedState(d.key)!))
                let lag = max(0, Double(wall) - Double(d.state.lastWriteTime >> 16))
                lagCounts[Tables.lagBoundsMs.firstIndex { lag <= $0 } ?? Tables.lagBoundsMs.count] += 1
                lagSumMs += lag
            }
        }
        return writes
    }

    // MARK: anti-entropy

    private var digests: [String: MerkleDigest] { replicas.mapValues(\.digest) }

    /// One round with one random live peer, three steps, so only what differs crosses:
    /// 1. we send bucket digests per table; 2. the peer answers, for each bucket that differs,
    /// the hash of every item it holds there; 3. we push our items whose hash it lacks or does
    /// not match. Each side pushes in its own rounds, so an item crosses once, from a node that
    /// has it, and a key that differs on both sides is merged on both.
    func antiEntropyRound() {
        // One round at a time: a round still moving items would otherwise send them again.
        guard repairsInFlight == 0, let peer = livePeers().randomElement() else { return }
        sync.antiEntropyRounds += 1
        repairsInFlight += 1
        request(peer, TableFrame.digests, TableSyncCodec.encode(digests: digests, catalog: catalog)) { [weak self] result in
            guard let self else { return }
            defer { self.repairsInFlight -= 1 }
            guard case .success(let frame) = result else { return }
            guard let (summaries, entries) = try? Tables.decodeSummaries(frame.payload) else {
                self.sync.malformed += 1
                return
            }
            self.committer.submit(self.merge([], entries)) { _ in }
            // Writes at or after the oldest one still queued or in flight to this peer are on
            // their way by the delta stream; repairing them too would only duplicate traffic.
            let queued = (self.outbox[peer] ?? []).map { $0.state.lastWriteTime }.min()
            let horizon = [queued, self.inFlightOldest[peer]].compactMap { $0 }.min() ?? UInt64.max
            var push: [TableDelta] = []
            for (name, summary) in summaries {
                guard let r = self.replicas[name], let entry = self.catalog[name], entry.at == summary.tableAt else { continue }
                var theirs: [ItemKey: UInt64] = [:]
                for (k, h) in summary.items { theirs[k] = h }
                for bucket in summary.buckets {
                    for key in r.keys(inBucket: bucket) where theirs[key] != r.itemHash(key) {
                        let state = r.state(key)!
                        if state.lastWriteTime < horizon { push.append(TableDelta(table: name, entry: entry, key: key, state: state)) }
                    }
                }
            }
            self.sync.itemsRepaired += push.count
            for chunk in stride(from: 0, to: push.count, by: self.replication.maxBatch) {
                let part = Array(push[chunk..<min(push.count, chunk + self.replication.maxBatch)])
                self.repairsInFlight += 1
                self.request(peer, TableFrame.deltas, TableSyncCodec.encode(deltas: part)) { [weak self] _ in self?.repairsInFlight -= 1 }
            }
        }
    }

    /// Step 2: for every bucket whose digest differs from the requester's, our item hashes.
    func serveDigests(_ payload: [UInt8], reply: @escaping ([UInt8]) -> Void) {
        guard let (theirDigests, entries) = try? TableSyncCodec.decodeDigests(payload) else {
            sync.malformed += 1
            return
        }
        committer.submit(merge([], entries)) { _ in }
        var w = ByteWriter(capacity: 1024)
        w.blob(TableSyncCodec.encode(deltas: [], catalog: catalog))
        let names = replicas.keys.sorted()
        w.u32(UInt32(names.count))
        for name in names {
            let r = replicas[name]!
            let theirs = theirDigests[name]
            let buckets = (0..<MerkleDigest.bucketCount).filter { theirs == nil || r.digest.buckets[$0] != theirs![$0] }
            w.blob(Array(name.utf8))
            ItemCodec.hlc(catalog[name]!.at, &w)
            w.u16(UInt16(buckets.count))
            for b in buckets { w.u16(UInt16(b)) }
            let keys = buckets.flatMap { r.keys(inBucket: $0) }
            w.u32(UInt32(keys.count))
            for key in keys {
                w.blob(key.bytes)
                w.u64(r.itemHash(key)!)
            }
        }
        reply(w.bytes)
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
}
