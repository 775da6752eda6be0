import Foundation
import GlobalTable
import Logging
import Processing
import StreamLog
import TandemCore
import Transport

/// Stream processors (the Lambda role): definitions in the reserved table `_processors`, and on
/// each node the consumers of the partitions it leads. Every decision about a partition's
/// records is `Processing.PartitionConsumer`'s; this feeds it reads and answers and carries out
/// its directives: fetch, deliver to the target, dead-letter, checkpoint.
///
/// **Ownership (the fence).** The consumer of (processor, partition) runs on the node that leads
/// the partition's Raft group, and only while its replica can propose (leader, no transfer under
/// way): check-quorum makes a cut-off leader step down within an election timeout, and no new
/// leader is elected before followers have missed it for that long, so two consumers overlap
/// only within that bound, and then both deliver only committed records in order. The consumer
/// reads the log locally; it moves with leadership (`reconcile` every 100 ms).
///
/// **Checkpoints** are items of `_processors` (`name#partition`), written every
/// `checkpointInterval` while they move and replicated like any item, so they survive the loss of
/// a region. A new owner resumes after the checkpoint it finds: records may come again (at least
/// once, with the same `eventID`), none is skipped — the consumer's checkpoint never passes a
/// record not delivered or dead-lettered.
///
/// **Materialize** applies each record to its item once: the item keeps, per (processor,
/// partition), the last sequence applied (`_tandem_applied`), written in the same item write as
/// the change; counters count in a slot of their own per (processor, partition) whose totals
/// merge by max — and so does the mark (a counter in that slot) — so an owner replaying from an
/// older state reaches the same totals, and mark and totals merged from two owners still agree.
/// That holds only if the new owner's replica of the table has every write the checkpoint it
/// resumes from stands for: replaying from a replica that lacks some would start those counters
/// from too low a total, and the max merge would then keep the wrong one (the chaos checker saw
/// it: counters one record short after a partition healed, `_processors` repaired before the
/// target table; a fixed delay does not bound that). So a materialize partition's settled
/// checkpoint, where a new owner resumes, moves past a batch only once the table's stable time
/// has passed it (every write anywhere before it is durable on every member; see `settled`): a
/// takeover replays a little more (idempotent), never from a replica that is behind.
final class Processors {
    static let table = "_processors"
    static let catalogEntry = CatalogEntry(schema: KeySchema(partitionKey: "id"), at: HLC(time: 1 << 16, node: 0))
    static let eventsStream = "_events"
    static let dlqRetentionHours = 336
    static func dlqStream(_ name: String) -> String { "_dlq.\(name)" }

    struct Stats {
        var batchesDelivered = 0
        var batchesFailed = 0
        var recordsDelivered = 0
        var recordsFiltered = 0
        var deadLettered = 0
        var retries = 0
        var handlerMs = Histogram(bounds: [0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000, 30000])
    }

    /// A processor as stored: its definition and the state clients change.
    struct Stored {
        var definition: ProcessorDefinition
        /// Creation time (ms): a processor deleted and created again starts with no checkpoints.
        var incarnation: UInt64
        var paused: Bool
        /// Dead letters that arrived up to this time (ms) are to be delivered again; 0 none.
        var redriveUntil: UInt64
    }

    let loop: EventLoop
    let tables: Tables
    private let streams: Streams
    private let logger: Logger
    let http: LoopHTTPClient
    let events: SystemEvents
    var region = ""
    var selfName = ""
    /// Table change streams, a source of processors (`ProcessorsTableSource.swift`).
    var changeStreams: ChangeStreams?
    var checkpointInterval: Duration = .milliseconds(200)
    var stats: [String: Stats] = [:]
    /// Error answers of the processors API, by code (`tandem_processor_api_errors_total`).
    var errors: [String: Int] = [:]
    var streamsAreWitness: Bool { streams.isWitness }
    func streamPartitions(_ stream: String) -> Int { streams.definitions[stream]?.partitions ?? 0 }
    private var runners: [RunnerKey: Runner] = [:]
    /// Definitions as last decoded, by name, with their item's last write time.
    private var decoded: [String: (written: UInt64, stored: Stored)] = [:]
    private let timer: LoopTimer

    struct RunnerKey: Hashable, Comparable {
        var name: String
        /// A partition of the source, or -1: the dead-letter stream, while a redrive runs.
        var partition: Int
        /// For a table source, the node whose change stream this is (this node); else "".
        var node = ""
        static func < (a: RunnerKey, b: RunnerKey) -> Bool { (a.name, a.partition, a.node) < (b.name, b.partition, b.node) }
        var id: String { !node.isEmpty ? "\(name)#@\(node)" : partition < 0 ? "\(name)#dlq" : "\(name)#\(partition)" }
    }

    init(loop: EventLoop, tables: Tables, streams: Streams, logger: Logger) {
        self.loop = loop
        self.tables = tables
        self.streams = streams
        self.logger = logger
        http = LoopHTTPClient(loop: loop)
        events = SystemEvents(loop: loop, streams: streams)
        timer = LoopTimer(loop: loop)
        tables.reserve(Processors.table, Processors.catalogEntry)
    }

    func start() {
        events.start()
        timer.start(after: .milliseconds(100), repeating: .milliseconds(100)) { [weak self] in self?.reconcile() }
    }

    func shutdown() {
        timer.stop()
        for r in Array(runners.values) { stop(r, flush: true) }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Definitions

    static func filterCheck(_ patterns: [String]) throws(TandemError) {
        do { _ = try FilterSet(patterns: patterns) } catch { throw TandemError(.badRequest, error.message) }
    }

    func stored(_ name: String) throws(TandemError) -> Stored? {
        guard let item = try tables.replicas[Processors.table]?.state(ItemKey(partition: .string(name)))?.visible else { return nil }
        return Processors.decode(name, item)
    }

    func storedAll() throws(TandemError) -> [Stored] {
        guard let replica = tables.replicas[Processors.table] else { return [] }
        var out: [Stored] = []
        var seen: [String: (written: UInt64, stored: Stored)] = [:]
        for (key, state) in try replica.allItems() {
            guard case .string(let id) = key.partition, !id.contains("#") else { continue }
            // Decoding checks the whole definition and parses its filters: done again only when
            // the item changed, not on every 100 ms reconcile.
            let written = state.lastWriteTime
            if let cached = decoded[id], cached.written == written {
                out.append(cached.stored)
                seen[id] = cached
                continue
            }
            guard let item = state.visible, let s = Processors.decode(id, item) else { continue }
            out.append(s)
            seen[id] = (written, s)
        }
        decoded = seen
        return out.sorted { $0.definition.name < $1.definition.name }
    }

    static func decode(_ name: String, _ item: [String: AttributeValue]) -> Stored? {
        func number(_ k: String) -> UInt64? { if case .number(let n)? = item[k] { UInt64(n.description) } else { nil } }
        guard let def = item["definition"], let incarnation = number("incarnation"),
            let d = try? ProcessorDefinition(name: name, json: PlainJSON.json(def), checkFilters: filterCheck)
        else { return nil }
        let paused = item["paused"] == .bool(true)
        return Stored(definition: d, incarnation: incarnation, paused: paused, redriveUntil: number("redriveUntil") ?? 0)
    }

    /// Creates or replaces a processor (201 when new). A changed definition keeps the
    /// checkpoints (as Lambda's UpdateEventSourceMapping does); delete and create to start over.
    func put(_ d: ProcessorDefinition, _ done: @escaping (Result<Bool, TandemError>) -> Void) {
        let existing: Stored?
        do throws(TandemError) {
            if let table = d.table {
                try checkTableSource(table, d)
            } else if streams.definitions[d.stream] == nil && d.stream != SystemEvents.stream {
                throw TandemError(.badRequest, "source.stream: no stream '\(d.stream)'")
            }
            if case .function(let url, _) = d.target, LoopHTTPClient.Target(url: url) == nil {
                // Accepted by the definition's rules, but this node has no TLS client yet (issue 19):
                // refused now rather than failing every batch into the dead-letter stream.
                throw TandemError(.badRequest, "target.function.url: https targets need TLS, which nodes do not have yet; use http")
            }
            if case .forward(let to, _) = d.target, streams.definitions[to] == nil {
                throw TandemError(.badRequest, "target.forward.stream: no stream '\(to)'")
            }
            if case .materialize(let m) = d.target {
                guard let schema = tables.replicas[m.table]?.schema else {
                    throw TandemError(.badRequest, "target.materialize.table: no table '\(m.table)'")
                }
                let names = Set(m.key.map(\.0))
                let needed = Set([schema.partitionKey] + (schema.sortKey.map { [$0] } ?? []))
                guard names == needed else {
                    throw TandemError(
                        .badRequest,
                        "target.materialize.key: the table's key is \(needed.sorted().joined(separator: ", ")), not \(names.sorted().joined(separator: ", "))"
                    )
                }
            }
            existing = try stored(d.name)
        } catch {
            return done(.failure(error))
        }
        let item: [String: AttributeValue]
        do throws(TandemError) {
            item = [
                "id": .string(d.name), "definition": try PlainJSON.value(d.json),
                "incarnation": .number(DecimalNumber(String(existing?.incarnation ?? Tables.wallMs()))!),
                "paused": .bool(existing?.paused ?? false),
                "redriveUntil": .number(DecimalNumber(String(existing?.redriveUntil ?? 0))!)
            ]
        } catch {
            return done(.failure(error))
        }
        let write = { [weak self] in
            guard let self else { return }
            self.tables.put(table: Processors.table, key: ItemKey(partition: .string(d.name)), values: item) { error in
                if let error { return done(.failure(error)) }
                self.logger.info("processor \(existing == nil ? "created" : "updated")", metadata: ["processor": "\(d.name)"])
                done(.success(existing == nil))
            }
        }
        // The dead-letter stream is created with the first dead letter: a Raft group idles at a
        // few packets a second, which a processor that never fails should not cost.
        guard d.stream == SystemEvents.stream else { return write() }
        events.create { error in
            if let error { return done(.failure(TandemError(.unavailable, "creating \(SystemEvents.stream): \(error.message)"))) }
            write()
        }
    }

    /// Changes what clients may change of a stored processor: paused, or a redrive.
    func update(_ name: String, _ change: (inout Stored) -> Void, _ done: @escaping (TandemError?) -> Void) {
        do throws(TandemError) {
            guard var s = try stored(name) else { return done(TandemError(.notFound, "no processor '\(name)'")) }
            change(&s)
            let key = ItemKey(partition: .string(name))
            var state = try tables.replicas[Processors.table]?.state(key) ?? ItemState()
            let t = tables.core.now(wallMs: Tables.wallMs())
            var delta = state.set(DocumentPath("paused"), .bool(s.paused), at: t)
            delta.merge(state.set(DocumentPath("redriveUntil"), .number(DecimalNumber(String(s.redriveUntil))!), at: t))
            tables.commit([(Processors.table, key, delta)]) { [weak self] error in
                // Carried out before the answer: a client that paused and then puts must not see
                // the put delivered.
                if error == nil { self?.reconcile() }
                done(error)
            }
        } catch {
            done(error)
        }
    }

    /// Deletes the processor and its checkpoints; its dead-letter stream stays (delete it as a
    /// stream) so nothing given up is lost with it.
    func delete(_ name: String, _ done: @escaping (TandemError?) -> Void) {
        do throws(TandemError) {
            guard let s = try stored(name) else { return done(TandemError(.notFound, "no processor '\(name)'")) }
            let t = tables.core.now(wallMs: Tables.wallMs())
            var writes: [(table: String, key: ItemKey, delta: ItemState)] = []
            let partitions = streams.definitions[s.definition.stream]?.partitions ?? 0
            for id in [name, "\(name)#dlq"] + (0..<partitions).map({ "\(name)#\($0)" }) + tableCheckpointIDs(name) {
                let key = ItemKey(partition: .string(id))
                guard var state = try tables.replicas[Processors.table]?.state(key) else { continue }
                writes.append((Processors.table, key, state.delete(at: t)))
            }
            tables.commit(writes) { [weak self] error in
                if error == nil { self?.reconcile() }
                done(error)
            }
        } catch {
            done(error)
        }
    }

    /// What is stored of a partition's consumer: checkpoint and the owner's last figures.
    struct PartitionState {
        var checkpoint: UInt64?
        /// Where a new owner of a materialize partition resumes: below every batch whose table
        /// writes some member may still lack (`storableCheckpoint`).
        var settled: UInt64?
        var owner: String?
        var iteratorAgeMs: UInt64 = 0
        var inFlight = 0
        var pending = 0
        var retries = 0
        var deadLettered = 0
        var updatedAt: UInt64 = 0
        var handlerP50Ms = "0"
        var handlerP99Ms = "0"
    }

    func partitionState(_ s: Stored, _ id: String) -> PartitionState? {
        guard let item = try? tables.replicas[Processors.table]?.state(ItemKey(partition: .string(id)))?.visible else { return nil }
        func number(_ k: String) -> UInt64? { if case .number(let n)? = item[k] { UInt64(n.description) } else { nil } }
        guard number("incarnation") == s.incarnation else { return nil }
        var p = PartitionState()
        p.checkpoint = number("checkpoint")
        p.settled = number("settled")
        if case .string(let o)? = item["owner"] { p.owner = o }
        p.iteratorAgeMs = number("iteratorAgeMs") ?? 0
        p.inFlight = Int(number("inFlight") ?? 0)
        p.pending = Int(number("pending") ?? 0)
        p.retries = Int(number("retries") ?? 0)
        p.deadLettered = Int(number("deadLettered") ?? 0)
        p.updatedAt = number("updatedAt") ?? 0
        if case .number(let n)? = item["handlerP50Ms"] { p.handlerP50Ms = n.description }
        if case .number(let n)? = item["handlerP99Ms"] { p.handlerP99Ms = n.description }
        return p
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Consumers

    /// Starts a consumer for each partition this node leads of each active processor, stops
    /// those whose partition it no longer leads (or whose processor was paused, changed or
    /// deleted).
    private func reconcile() {
        events.tick()
        guard !streams.isWitness, let all = try? storedAll() else { return }
        var wanted: [RunnerKey: (Stored, String, Int)] = [:]
        for s in all where !s.paused {
            let d = s.definition
            if let table = d.table {
                // Each node consumes the changes it took itself, from its own stream (see
                // `ProcessorsTableSource.swift`).
                if changeStreams?.current(table) != nil {
                    wanted[RunnerKey(name: d.name, partition: 0, node: selfName)] = (s, "", 0)
                }
            } else {
                guard let def = streams.definitions[d.stream] else { continue }
                for p in 0..<def.partitions where streams.leads(d.stream, p) {
                    wanted[RunnerKey(name: d.name, partition: p)] = (s, d.stream, p)
                }
            }
            let dlq = Processors.dlqStream(d.name)
            if s.redriveUntil > 0, streams.leads(dlq, 0) {
                wanted[RunnerKey(name: d.name, partition: -1)] = (s, dlq, 0)
            }
        }
        let live = Set(all.map { "\($0.definition.name)/\($0.incarnation)" })
        for (key, r) in runners {
            let w = wanted[key]
            // A table source's stream disabled and enabled again: on to the new one.
            let newStream = r.tableStream.map { t in changeStreams?.current(t.table)?.label != t.label } ?? false
            if w == nil || w!.0.incarnation != r.incarnation || w!.0.definition != r.definition || w!.0.redriveUntil != r.redriveUntil
                || newStream
            {
                // A deleted processor's checkpoints are gone: writing one back would leave litter.
                stop(r, flush: live.contains("\(key.name)/\(r.incarnation)"))
            }
        }
        for (key, w) in wanted.sorted(by: { $0.key < $1.key }) where runners[key] == nil {
            startRunner(key, w.0, stream: w.1, partition: w.2)
        }
        for r in runners.values where !r.stopping { flushCheckpoint(r, force: false) }
    }

    private func stop(_ r: Runner, flush: Bool) {
        guard !r.stopping else { return }
        if flush { flushCheckpoint(r, force: true) }
        r.stopping = true
        r.consumer.stop()
        r.timer.stop()
        r.pollTimer?.stop()
        runners[r.key] = nil
    }

    private func startRunner(_ key: RunnerKey, _ s: Stored, stream: String, partition p: Int) {
        if !key.node.isEmpty { return startTableRunner(key, s) }
        guard let part = streams.localPartition(stream, p) else { return }
        let id = key.id
        let stored = partitionState(s, id)
        var checkpoint: UInt64
        if case .materialize = s.definition.target, let settled = stored?.settled {
            // A materialize owner resumes from where the table writes had surely reached every
            // replica: records in between are applied again only where this replica lacks them
            // (see `storableCheckpoint`).
            checkpoint = settled
        } else if let c = stored?.checkpoint {
            checkpoint = c
        } else if key.partition < 0 {
            checkpoint = part.raft.firstIndex - 1
        } else {
            switch s.definition.startingPosition {
            case .trimHorizon: checkpoint = part.raft.firstIndex - 1
            case .latest: checkpoint = part.commitIndex
            case .atTimestamp(let ms):
                let at =
                    ((try? part.log.index(atOrAfterTimestamp: ms)) ?? nil).map { min($0, part.commitIndex + 1) } ?? part.commitIndex + 1
                checkpoint = max(at, 1) - 1
            }
        }
        run(key, s, stream: stream, partition: p, checkpoint: checkpoint, stored: stored)
    }

    /// Starts a consumer from `checkpoint` (`stored`: what its item held).
    func run(
        _ key: RunnerKey, _ s: Stored, stream: String, partition p: Int, checkpoint: UInt64, stored: PartitionState?,
        tableStream: ChangeStreams.Descriptor? = nil
    ) {
        let filters = (try? FilterSet(patterns: s.definition.filters)) ?? (try! FilterSet(patterns: []))
        var settings = s.definition.settings
        if key.partition < 0 { settings.maxRetryAttempts = settings.maxRetryAttempts ?? 10 }
        let r = Runner(
            key: key, stream: stream, partition: p, stored: s, filters: filters,
            consumer: PartitionConsumer(settings: settings, checkpoint: checkpoint, seed: UInt64.random(in: 1 ... .max)),
            timer: LoopTimer(loop: loop))
        r.retriesBase = stored?.retries ?? 0
        r.deadLetteredBase = stored?.deadLettered ?? 0
        r.tableStream = tableStream
        runners[key] = r
        logger.info(
            "processor consumer started",
            metadata: ["processor": "\(key.name)", "stream": "\(stream)", "partition": "\(p)", "checkpoint": "\(checkpoint)"])
        // The starting position, resolved, is stored at once: a new owner must not resolve
        // `latest` again later and skip what arrived in between.
        if stored?.checkpoint == nil { r.dirty = true }
        flushCheckpoint(r, force: true)
        drive(r)
    }

    /// Carries out what the consumer asks for now, then waits for its next deadline.
    func drive(_ r: Runner) {
        guard !r.stopping else { return }
        for d in r.consumer.ready(now: loop.now, wallMs: Tables.wallMs()) {
            switch d {
            case .fetch(let after, let limit) where r.tableStream != nil: fetchTable(r, after: after, limit: limit)
            case .fetch(let after, let limit): fetch(r, after: after, limit: limit)
            case .deliver(let batch): deliver(r, batch)
            case .deadLetter(let letter): deadLetter(r, letter)
            case .checkpoint:
                r.dirty = true
                flushCheckpoint(r, force: false)
            }
        }
        if let t = r.consumer.nextDeadline {
            r.timer.start(after: max(.zero, t - loop.now)) { [weak self, weak r] in
                guard let self, let r else { return }
                self.drive(r)
            }
        }
    }

    private func fetch(_ r: Runner, after: UInt64, limit: Int) {
        guard let q = try? ReadQuery(from: .after(after), limit: max(1, min(limit, 10_000)), waitMs: 1_000) else {
            return r.consumer.fetchFailed(now: loop.now)
        }
        streams.read(r.stream, partition: r.partition, q) { [weak self, weak r] result in
            guard let self, let r, !r.stopping else { return }
            switch result {
            case .success(let read):
                var records: [ProcessorRecord] = []
                var through = read.last
                for rec in read.records {
                    if r.key.partition < 0 {
                        // A redrive delivers what was given up before it was asked for, then stops.
                        guard rec.timestamp <= r.redriveUntil, let letter = DeadLetterRecord(rec.data) else {
                            through = rec.sequence - 1
                            r.redriveDone = true
                            break
                        }
                        records.append(
                            ProcessorRecord(sequence: rec.sequence, key: letter.key, data: letter.data, timestamp: letter.arrival))
                        continue
                    }
                    let p = ProcessorRecord(sequence: rec.sequence, key: rec.key, data: rec.data, timestamp: rec.timestamp)
                    if r.filters.matches(p) {
                        records.append(p)
                    } else {
                        self.stats[r.key.name, default: Stats()].recordsFiltered += 1
                    }
                }
                r.behindMs = read.behindMs
                r.consumer.fetched(records, through: through, now: self.loop.now)
                if r.redriveDone && records.isEmpty {
                    // Nothing more to redrive: poll slowly rather than spin on the bound.
                    r.consumer.fetchFailed(now: self.loop.now)
                }
            case .failure:
                r.consumer.fetchFailed(now: self.loop.now)
            }
            self.drive(r)
        }
    }

    private func deliver(_ r: Runner, _ batch: ConsumerBatch) {
        let started = loop.now
        let finish: (DeliveryOutcome) -> Void = { [weak self, weak r] outcome in
            guard let self, let r else { return }
            var st = self.stats[r.key.name, default: Stats()]
            let ms = (self.loop.now - started).milliseconds
            st.handlerMs.record(ms)
            r.recordLatency(ms)
            switch outcome {
            case .success:
                st.batchesDelivered += 1
                st.recordsDelivered += batch.records.count
            default:
                st.batchesFailed += 1
                if case .failure(let why) = outcome {
                    self.logger.debug("processor batch failed", metadata: ["processor": "\(r.key.name)", "error": "\(why)"])
                }
            }
            self.stats[r.key.name] = st
            r.consumer.finished(batch: batch.id, outcome, now: self.loop.now)
            self.drive(r)
        }
        switch r.definition.target {
        case .function(let url, let timeoutMs):
            guard let target = LoopHTTPClient.Target(url: url) else {
                return finish(.failure("https targets need TLS, which this node does not have yet: \(url)"))
            }
            let body =
                r.definition.table != nil
                ? Processors.dynamoEvent(batch.records)
                : LambdaEvent.kinesisEvent(batch.records, stream: r.definition.stream, partition: r.partition, region: region)
            let sequences = batch.records.map(\.sequence)
            http.call(
                "POST", target, headers: [("X-Tandem-Processor", r.key.name), ("X-Tandem-Attempt", "\(batch.attempt)")], body: body,
                timeout: .milliseconds(Int64(timeoutMs))
            ) { result in
                switch result {
                case .failure(let e): finish(.failure("invoke: \(e.message)"))
                case .success(let reply):
                    switch LambdaEvent.outcome(
                        status: reply.status, functionError: reply.header("X-Amz-Function-Error"), body: reply.body, batch: sequences,
                        format: r.tableStream != nil ? ChangeRecord.sequenceText : SequenceText.format)
                    {
                    case .success: finish(.success)
                    case .partialFailure(let lowest): finish(.partialFailure(lowestFailed: lowest))
                    case .failure(let why): finish(.failure(why))
                    }
                }
            }
        case .materialize(let m):
            materialize(r, m, batch, finish)
        case .forward(let to, let keyPath):
            var list: [(key: String, hashKey: UInt128?, record: [UInt8])] = []
            for rec in batch.records {
                let data = keyPath == nil ? nil : try? JSON.parse(rec.data)
                let key = keyPath.map { Processors.text($0.value(rec, data: data)) } ?? rec.key
                guard let key, !key.isEmpty, key.utf8.count <= StreamRecord.maxKeyBytes else {
                    return finish(.rejected(sequence: rec.sequence, reason: "partitionKey path gives no key of 1 to 255 bytes"))
                }
                list.append((key, nil, StreamRecord.encode(key: key, data: rec.data)))
            }
            streams.putRecords(to, list) { result in
                switch result {
                case .failure(let e): finish(.failure("forward to \(to): \(e.message)"))
                case .success(let outcomes):
                    if let i = outcomes.firstIndex(where: { if case .failure = $0.result { true } else { false } }) {
                        finish(.partialFailure(lowestFailed: batch.records[i].sequence))
                    } else {
                        finish(.success)
                    }
                }
            }
        }
    }

    static func text(_ j: JSON?) -> String? {
        switch j {
        case .string(let s)?: s
        case .number(let n)?: n
        case .bool(let b)?: b ? "true" : "false"
        default: nil
        }
    }

    /// Applies a batch to the target table: one commit for the batch, each record applied to its
    /// item once (`_tandem_applied`), in order. A record that names no key is rejected (dead-
    /// lettered at once); what came before it is committed.
    private func materialize(
        _ r: Runner, _ m: ProcessorDefinition.Materialize, _ batch: ConsumerBatch, _ finish: @escaping (DeliveryOutcome) -> Void
    ) {
        guard let schema = tables.replicas[m.table]?.schema, let replica = tables.replicas[m.table] else {
            return finish(.failure("no table '\(m.table)'"))
        }
        let t = tables.core.now(wallMs: Tables.wallMs())
        guard
            let (changes, rejected) = Processors.materialized(
                m, schema: schema, slotName: Processors.slotName(r, lane: batch.lane), batch.records, at: t,
                read: { try replica.state($0) })
        else { return finish(.failure("reading \(m.table) failed")) }
        let writes = changes.map { (table: m.table, key: $0.key, delta: $0.delta) }
        let outcome: DeliveryOutcome = rejected.map { .rejected(sequence: $0.0, reason: $0.1) } ?? .success
        let first = batch.records[0].sequence
        // Stamped once the batch is applied (after its commit), on the table clock: every write
        // the batch made or relied on — its own, and those of earlier owners whose marks made it
        // skip records — is older. A batch that wrote nothing relied on others' writes only, and
        // is stamped too (see `settled`). Batches within 100 ms share an entry (the later stamp),
        // so an outage costs ~10 entries a second.
        let applied = { [weak self, weak r] in
            guard let self, let r else { return }
            let at = self.tables.core.now(wallMs: Tables.wallMs()).time
            if let last = r.unsettled.last, at >> 16 < (last.at >> 16) + 100 {
                r.unsettled[r.unsettled.count - 1].at = at
            } else {
                r.unsettled.append((first: first, at: at))
            }
        }
        guard !writes.isEmpty else {
            applied()
            return finish(outcome)
        }
        tables.commit(writes) { error in
            if error == nil { applied() }
            finish(error.map { .failure("write to \(m.table): \($0.message)") } ?? outcome)
        }
    }

    /// What a batch does to the items of a materialize target, at time `t` (pure: items are read
    /// through `read`): per item touched, in order, the delta to commit (none for an item whose
    /// records were all applied before), and the record rejected, if one was (the records before
    /// it are in the deltas, none after). Nil if an item could not be read. `slotName` names the
    /// consumer — `processor#partition` — whose counter slot and applied mark these are.
    /// The slot a materialize batch counts in and marks: one per (processor, partition), and per
    /// lane when there are several — lanes run side by side, so one lane's records may reach an
    /// item after a later record of another lane, and a shared mark would skip them. Within a
    /// lane records come in sequence order, which the mark relies on.
    static func slotName(_ r: Runner, lane: Int) -> String {
        r.definition.settings.parallelization > 1 ? "\(r.key.id).\(lane)" : r.key.id
    }

    static func materialized(
        _ m: ProcessorDefinition.Materialize, schema: KeySchema, slotName: String, _ records: [ProcessorRecord], at t: HLC,
        read: (ItemKey) throws -> ItemState?
    ) -> (writes: [(key: ItemKey, delta: ItemState)], rejected: (UInt64, String)?)? {
        let slot = stableHash64(Array(slotName.utf8)) | (1 << 63)  // never a node's HLC id (those are small)
        // Per item of the batch: its state as the batch leaves it, the delta to commit, the last
        // sequence of this partition applied to it, and whether it did not exist before.
        var states: [ItemKey: (state: ItemState, delta: ItemState, applied: UInt64, new: Bool)] = [:]
        var order: [ItemKey] = []
        var rejected: (UInt64, String)?
        for rec in records {
            let data = try? JSON.parse(rec.data)
            var keyItem: [String: AttributeValue] = [:]
            for (attr, path) in m.key {
                guard let v = path.value(rec, data: data), let av = try? PlainJSON.value(v) else { continue }
                keyItem[attr] = av
            }
            guard let key = try? schema.key(of: keyItem) else {
                rejected = (rec.sequence, "the record gives no key for \(m.table) (\(m.key.map(\.0).joined(separator: ", ")))")
                break
            }
            if states[key] == nil {
                guard let s = try? read(key) ?? ItemState() else { return nil }
                var applied: UInt64 = 0
                if case .map(let marks)? = s.visible("_tandem_applied"), case .number(let n)? = marks[slotName] {
                    applied = UInt64(n.description) ?? 0
                }
                states[key] = (s, ItemState(), applied, s.visible == nil)
                order.append(key)
            }
            var (state, delta, applied, new) = states[key]!
            guard rec.sequence > applied else { continue }  // applied before: a redelivery
            let appliedPath = DocumentPath("_tandem_applied", [slotName])
            if new {
                for (k, v) in keyItem { delta.merge(state.set(DocumentPath(k), v, at: t)) }
                new = false
            }
            for (attr, path) in m.set {
                if let v = path.value(rec, data: data), let av = try? PlainJSON.value(v) {
                    delta.merge(state.set(DocumentPath(attr), av, at: t))
                }
            }
            for (attr, path) in m.add {
                guard let v = path.value(rec, data: data) else { continue }
                guard case .number(let text) = v, let n = DecimalNumber(text), let d = state.add(DocumentPath(attr), n, at: t, slot: slot)
                else {
                    rejected = (rec.sequence, "add \(attr): not a number, or the attribute is not a number")
                    break
                }
                delta.merge(d)
            }
            if rejected != nil { break }
            for (attr, path) in m.addToSet {
                if let s = Processors.text(path.value(rec, data: data)), let d = state.addToSet(DocumentPath(attr), [.string(s)], at: t) {
                    delta.merge(d)
                }
            }
            for (attr, path) in m.removeFromSet {
                if let s = Processors.text(path.value(rec, data: data)),
                    let d = state.removeFromSet(DocumentPath(attr), [.string(s)], at: t)
                {
                    delta.merge(d)
                }
            }
            // Only the path: writing the whole map would hide other partitions' marks (a write at a
            // prefix hides older writes under it); a path write makes the maps on its way down.
            // The mark is a counter in the partition's slot, raised to the sequence: it merges by
            // max like the totals it stands for. A last-writer-wins mark could pair an older mark
            // with newer totals (an owner stalled and resumed writes after its successor), and
            // the next replay would count those records again; and every record of a batch wrote
            // it at the same time, so the first record's mark was the one kept.
            guard let mark = state.add(appliedPath, DecimalNumber(String(rec.sequence - applied))!, at: t, slot: slot) else {
                rejected = (rec.sequence, "_tandem_applied.\(slotName) is not a number")
                break
            }
            delta.merge(mark)
            applied = rec.sequence
            states[key] = (state, delta, applied, new)
        }
        let writes = order.compactMap { k -> (key: ItemKey, delta: ItemState)? in
            let d = states[k]!.delta
            return d == ItemState() ? nil : (k, d)
        }
        return (writes, rejected)
    }

    private func deadLetter(_ r: Runner, _ letter: DeadLetter) {
        let dlq = Processors.dlqStream(r.key.name)
        let now = Tables.wallMs()
        let list = letter.records.map { rec in
            (
                key: rec.key, hashKey: UInt128?.none,
                record: StreamRecord.encode(
                    key: rec.key,
                    data: DeadLetterRecord.encode(
                        processor: r.key.name, stream: r.definition.sourceName, partition: r.partition, record: rec, letter: letter,
                        atMs: now))
            )
        }
        let put = { [weak self, weak r] in
            guard let self else { return }
            self.streams.putRecords(dlq, list) { result in
                guard let r, !r.stopping else { return }
                let ok = (try? result.get())?.allSatisfy { if case .success = $0.result { true } else { false } } ?? false
                if ok {
                    r.consumer.deadLettered(letter.id)
                    self.stats[r.key.name, default: Stats()].deadLettered += letter.records.count
                    self.events.emit(
                        "processor.deadLettered",
                        [
                            ("processor", .string(r.key.name)), ("stream", .string(r.definition.sourceName)),
                            ("partition", .number("\(r.partition)")),
                            ("records", .number("\(letter.records.count)")), ("condition", .string(letter.condition.rawValue)),
                            ("lastError", .string(String(letter.lastError.prefix(512))))
                        ], everyNode: true)
                } else {
                    r.consumer.deadLetterFailed(letter.id, now: self.loop.now)
                }
                self.drive(r)
            }
        }
        if streams.definitions[dlq] == nil {
            streams.createSystemStream(dlq, partitions: 1, retentionHours: Processors.dlqRetentionHours) { _ in put() }
        } else {
            put()
        }
    }

    /// Stores the runner's checkpoint and figures: when it moved, at most every
    /// `checkpointInterval`; the figures alone every second.
    private func flushCheckpoint(_ r: Runner, force: Bool) {
        let now = loop.now
        let c = r.consumer
        let wall = Tables.wallMs()
        let age = max(c.oldestPendingTimestamp.map { wall > $0 ? wall - $0 : 0 } ?? 0, r.behindMs)
        r.iteratorAgeMs = age
        // The figures as stored; an idle consumer's do not change, and writes nothing (every
        // write goes to every region: a quiet cluster stays quiet).
        let figures = [c.inFlight, c.pending, c.retries, c.deadLettered, Int(age / 1_000)]
        let settled = storableCheckpoint(r)
        let due = (r.dirty || settled != r.storedSettled) && (force || now - r.lastWrite >= checkpointInterval)
        let figuresDue = figures != r.storedFigures && now - r.lastWrite >= .seconds(1)
        guard !r.writing, due || figuresDue || (force && r.storedFigures.isEmpty) else { return }
        r.writing = true
        r.dirty = false
        r.lastWrite = now
        r.storedFigures = figures
        r.storedSettled = settled
        let values: [String: AttributeValue] = [
            "id": .string(r.key.id), "incarnation": .number(DecimalNumber(String(r.incarnation))!),
            "checkpoint": .number(DecimalNumber(String(c.checkpoint))!), "owner": .string(selfName),
            "settled": .number(DecimalNumber(String(settled))!),
            "iteratorAgeMs": .number(DecimalNumber(String(age))!), "inFlight": .number(DecimalNumber(String(c.inFlight))!),
            "pending": .number(DecimalNumber(String(c.pending))!),
            "retries": .number(DecimalNumber(String(r.retriesBase + c.retries))!),
            "deadLettered": .number(DecimalNumber(String(r.deadLetteredBase + c.deadLettered))!),
            "updatedAt": .number(DecimalNumber(String(wall))!),
            "handlerP50Ms": .number(DecimalNumber(String(format: "%.3f", r.latencyPercentile(0.5)))!),
            "handlerP99Ms": .number(DecimalNumber(String(format: "%.3f", r.latencyPercentile(0.99)))!)
        ]
        tables.put(table: Processors.table, key: ItemKey(partition: .string(r.key.id)), values: values) { [weak r] error in
            guard let r else { return }
            r.writing = false
            if error != nil { r.dirty = true }
        }
    }

    /// The settled checkpoint: the consumer's, held back for a materialize target (see
    /// `settled`).
    private func storableCheckpoint(_ r: Runner) -> UInt64 {
        Processors.settled(r.consumer.checkpoint, &r.unsettled, stable: tables.core.stable)
    }

    /// Where a new owner of a materialize partition may resume: `checkpoint`, held back to just
    /// below the oldest batch applied here after `stable`, the table core's stable time (every
    /// write anywhere up to it is durable on every member). `batches`, oldest first, are the
    /// batches applied (first sequence, table clock once applied); those the stable time has
    /// passed are dropped.
    ///
    /// A new owner replays from here onto its own replica, and the marks skip what that replica
    /// holds: exact only if it holds every write the state at the resume point stands for. Those
    /// are this owner's writes, and also earlier owners' — a batch whose records their marks made
    /// it skip wrote nothing, and relied on their writes alone — made anywhere, and possibly
    /// still missing on some member (cut off, or dead: a dead member has no delta stream). Only
    /// the stable time speaks for every member and every writer; this node's delta streams
    /// (`coverage`) spoke for its own writes to the members it had streams to, and moved the
    /// resume point past writes a member lacked.
    static func settled(_ checkpoint: UInt64, _ batches: inout [(first: UInt64, at: UInt64)], stable: UInt64) -> UInt64 {
        batches.removeAll { $0.at <= stable }
        guard let oldest = batches.first else { return checkpoint }
        return min(checkpoint, oldest.first - 1)
    }

    /// Figures of the consumers running here, for `/metrics`.
    func metrics(_ out: inout MetricsText) {
        let names = Set(stats.keys).union(runners.keys.map(\.name)).sorted()
        func family(_ name: String, _ kind: MetricsText.Kind, _ help: String, _ value: (Stats) -> Int) {
            out.add(name, kind, help, samples: names.map { ([("processor", $0)], value(stats[$0] ?? Stats())) })
        }
        family("tandem_processor_batches_total", .counter, "Batches the target processed whole.") { $0.batchesDelivered }
        family("tandem_processor_batch_failures_total", .counter, "Batches that failed in whole or part.") { $0.batchesFailed }
        family("tandem_processor_records_total", .counter, "Records delivered with success.") { $0.recordsDelivered }
        family("tandem_processor_records_filtered_total", .counter, "Records dropped by the filters.") { $0.recordsFiltered }
        family("tandem_processor_dead_lettered_total", .counter, "Records written to the dead-letter stream.") { $0.deadLettered }
        out.add(
            "tandem_processor_api_errors_total", .counter, "Processor API error answers, by code.",
            samples: errors.keys.sorted().map { ([("code", $0)], errors[$0]!) })
        out.add("tandem_events_written_total", .counter, "Records this node wrote to _events.", events.written)
        out.add("tandem_events_write_failures_total", .counter, "Writes to _events that failed.", events.writeFailures)
        let running = runners.values.sorted { $0.key < $1.key }
        func perPartition(_ name: String, _ help: String, _ value: (Runner) -> any CustomStringConvertible) {
            out.add(
                name, .gauge, help,
                samples: running.map {
                    ([("processor", $0.key.name), ("partition", $0.key.partition < 0 ? "dlq" : "\($0.key.partition)")], value($0))
                })
        }
        perPartition("tandem_processor_iterator_age_ms", "Age of the oldest record not yet done (ms).") { $0.iteratorAgeMs }
        perPartition("tandem_processor_pending_records", "Records read and not yet done.") { $0.consumer.pending }
        perPartition("tandem_processor_in_flight_batches", "Batches at the target now.") { $0.consumer.inFlight }
        perPartition("tandem_processor_retries", "Retries since this node took the partition.") { $0.consumer.retries }
        out.add(
            "tandem_processor_handler_ms", "Target call latency (ms).",
            histograms: names.map { ([("processor", $0)], (stats[$0] ?? Stats()).handlerMs) })
    }

    /// The figures of a running consumer here (nil if this node runs none for it).
    func running(_ name: String, _ partition: Int, node: String = "") -> Runner? {
        runners[RunnerKey(name: name, partition: partition, node: node)]
    }

    /// One consumer here: its core, timer and the shell's bookkeeping.
    final class Runner {
        let key: RunnerKey
        let stream: String
        let partition: Int
        let definition: ProcessorDefinition
        let incarnation: UInt64
        let redriveUntil: UInt64
        let filters: FilterSet
        let consumer: PartitionConsumer
        let timer: LoopTimer
        var stopping = false
        var dirty = false
        /// The settled checkpoint last written (or being written).
        var storedSettled: UInt64?
        /// Materialize batches applied here, oldest first, that the table's stable time has not
        /// passed yet: the batch's first sequence and the table clock once it was applied.
        var unsettled: [(first: UInt64, at: UInt64)] = []
        var writing = false
        var lastWrite: Instant = .zero
        var behindMs: UInt64 = 0
        var iteratorAgeMs: UInt64 = 0
        var retriesBase = 0
        var deadLetteredBase = 0
        var redriveDone = false
        /// A table source's stream (this node's), read instead of a stream partition.
        var tableStream: ChangeStreams.Descriptor?
        /// A table source with nothing new waits this long before it reads again (a stream
        /// partition's read waits for records instead).
        var pollTimer: LoopTimer?
        /// The figures last written with the checkpoint (empty: none yet).
        var storedFigures: [Int] = []
        /// The latest target call latencies (ms), for p50/p99 in describe.
        private var latencies: [Double] = []
        private var latencyNext = 0

        func recordLatency(_ ms: Double) {
            if latencies.count < 1_024 {
                latencies.append(ms)
            } else {
                latencies[latencyNext] = ms
                latencyNext = (latencyNext + 1) % latencies.count
            }
        }

        func latencyPercentile(_ q: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            let sorted = latencies.sorted()
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
        }

        init(
            key: RunnerKey, stream: String, partition: Int, stored: Stored, filters: FilterSet, consumer: PartitionConsumer,
            timer: LoopTimer
        ) {
            self.key = key
            self.stream = stream
            self.partition = partition
            self.definition = stored.definition
            self.incarnation = stored.incarnation
            self.redriveUntil = stored.redriveUntil
            self.filters = filters
            self.consumer = consumer
            self.timer = timer
        }
    }
}

/// A record given up, as written to `_dlq.<processor>`: JSON with the whole record and why.
struct DeadLetterRecord {
    var key: String
    var data: [UInt8]
    var arrival: UInt64

    static func encode(
        processor: String, stream: String, partition: Int, record: ProcessorRecord, letter: DeadLetter, atMs: UInt64
    ) -> [UInt8] {
        let j = JSON.object([
            ("processor", .string(processor)), ("stream", .string(stream)), ("partition", .number("\(partition)")),
            ("sequenceNumber", .string(SequenceText.format(record.sequence))), ("partitionKey", .string(record.key)),
            ("data", .string(Base64.encode(record.data))), ("approximateArrivalTimestamp", .number("\(record.timestamp)")),
            ("attempts", .number("\(letter.attempts)")), ("lastError", .string(String(letter.lastError.prefix(4096)))),
            ("condition", .string(letter.condition.rawValue)), ("deadLetteredAt", .number("\(atMs)"))
        ])
        return Array(j.serialized.utf8)
    }

    init?(_ bytes: [UInt8]) {
        guard let j = try? JSON.parse(bytes), let key = j["partitionKey"]?.stringValue, let b64 = j["data"]?.stringValue,
            let data = Base64.decode(b64), case .number(let t)? = j["approximateArrivalTimestamp"], let ts = UInt64(t)
        else { return nil }
        self.key = key
        self.data = data
        self.arrival = ts
    }
}
