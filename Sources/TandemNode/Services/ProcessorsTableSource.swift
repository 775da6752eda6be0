import GlobalTable
import Processing
import TandemCore
import Transport

/// A processor whose source is a table's change stream (`"source":{"table":"…"}`).
///
/// **Who consumes.** Every node runs one consumer, on its own stream, and delivers only the
/// records of the changes it took itself (its clients' writes), not those replicated to it (an
/// expired item is deleted by every node's TTL sweep: each that swept it before hearing of
/// another's delivers its REMOVE). So each change is delivered by the node that made it, once (at least once,
/// as every processor), and nowhere else, without any coordination: every node's stream holds
/// every change, and consuming whole streams would deliver each change once per node. This is
/// the DynamoDB global tables pattern of a Lambda per region that acts on its own region's
/// writes. The cost: a node that is down delivers nothing until it returns (its records are
/// durable with its writes, and its checkpoint is its own item of `_processors`,
/// `name#@node`), and a node lost for good loses its undelivered records with its disk. The
/// alternative, one owner consuming its whole stream, would move between nodes whose streams
/// number and order the same changes differently, so a checkpoint could not move with it.
///
/// **Records** are DynamoDB Streams records with `eventSourceARN`, as Lambda's DynamoDB event
/// has them; a function target gets `{"Records":[…]}`, and may answer with a partial batch
/// response naming `dynamodb.SequenceNumber`s. Filters match the record under `data`
/// (`{"data":{"eventName":["INSERT"]}}`). The stream's sequence numbers rise across a stream
/// disabled and enabled again, so the checkpoint carries over to the new stream; records the
/// old one held after the checkpoint are not delivered once the new one is read.
extension Processors {
    func checkTableSource(_ table: String, _ d: ProcessorDefinition) throws(TandemError) {
        guard tables.replicas[table] != nil else { throw TandemError(.badRequest, "source.table: no table '\(table)'") }
        guard changeStreams?.current(table) != nil else {
            throw TandemError(
                .badRequest, "source.table: table '\(table)' has no stream; enable one (UpdateTable with a StreamSpecification) first")
        }
        if case .materialize(let m) = d.target, m.table == table {
            throw TandemError(.badRequest, "target.materialize.table: not the source table (its own writes would feed the processor)")
        }
    }

    /// The checkpoint items of a table-sourced processor, one per node that consumed.
    func tableCheckpointIDs(_ name: String) -> [String] {
        guard let replica = tables.replicas[Processors.table], let items = try? replica.allItems() else { return [] }
        return items.compactMap { key, _ in
            guard case .string(let id) = key.partition, id.hasPrefix("\(name)#@") else { return nil }
            return id
        }
    }

    /// describe's partitions of a table-sourced processor: one per node that consumed.
    func tablePartitions(_ st: Stored) -> [JSON] {
        tableCheckpointIDs(st.definition.name).compactMap { id in
            guard let ps = partitionState(st, id) else { return nil }
            let node = String(id.dropFirst(st.definition.name.utf8.count + 2))
            var fields: [(String, JSON)] = [
                ("partition", .string(node)), ("owner", .string(node)),
                ("checkpoint", ps.checkpoint.map { .string(ChangeRecord.sequenceText($0)) } ?? .null)
            ]
            if let r = running(st.definition.name, 0, node: node) {
                fields += [
                    ("iteratorAgeMs", .number("\(r.iteratorAgeMs)")), ("inFlight", .number("\(r.consumer.inFlight)")),
                    ("pending", .number("\(r.consumer.pending)")), ("retries", .number("\(r.retriesBase + r.consumer.retries)")),
                    ("deadLettered", .number("\(r.deadLetteredBase + r.consumer.deadLettered)"))
                ]
            } else {
                fields += [
                    ("iteratorAgeMs", .number("\(ps.iteratorAgeMs)")), ("inFlight", .number("\(ps.inFlight)")),
                    ("pending", .number("\(ps.pending)")), ("retries", .number("\(ps.retries)")),
                    ("deadLettered", .number("\(ps.deadLettered)"))
                ]
            }
            fields.append(("updatedAt", .number("\(ps.updatedAt)")))
            return .object(fields)
        }
    }

    /// Starts this node's consumer of a table's stream, from its checkpoint or its starting
    /// position.
    func startTableRunner(_ key: RunnerKey, _ s: Stored) {
        guard let cs = changeStreams, let table = s.definition.table, let d = cs.current(table) else { return }
        let stored = partitionState(s, key.id)
        var checkpoint: UInt64 = 0
        if let c = stored?.checkpoint {
            checkpoint = c
        } else {
            do {
                switch s.definition.startingPosition {
                case .latest: checkpoint = max(try cs.lastRecord(d) ?? 0, try cs.trimMark(d))
                default: checkpoint = try cs.trimMark(d)
                }
            } catch {
                return  // the store failed a read: the next reconcile tries again
            }
        }
        run(key, s, stream: "", partition: 0, checkpoint: checkpoint, stored: stored, tableStream: d)
    }

    /// Reads what follows `after` in this node's stream: the records of its own changes, as
    /// Lambda's DynamoDB records; with nothing new, it looks again in `tablePollInterval`. Always
    /// from a timer, never inside `drive`.
    func fetchTable(_ r: Runner, after: UInt64, limit: Int, delay: Duration = .zero) {
        let timer = r.pollTimer ?? LoopTimer(loop: loop)
        r.pollTimer = timer
        timer.start(after: delay) { [weak self, weak r] in
            guard let self, let r, !r.stopping else { return }
            guard let cs = self.changeStreams, let d = r.tableStream,
                let read = try? cs.read(d, after: after, limit: max(1, min(limit, 10_000)), maxBytes: 5 << 20)
            else {
                r.consumer.fetchFailed(now: self.loop.now)
                return self.drive(r)
            }
            guard let last = read.last else { return self.fetchTable(r, after: after, limit: limit, delay: Processors.tablePollInterval) }
            var records: [ProcessorRecord] = []
            let json = cs.recordJSON(d, sourceARN: true)
            for rec in read where rec.local {
                var data: [UInt8] = []
                json(rec, &data)
                let p = ProcessorRecord(sequence: rec.sequence, key: Processors.keyText(rec), data: data, timestamp: rec.createdMs)
                if r.filters.matches(p) {
                    records.append(p)
                } else {
                    self.stats[r.key.name, default: Stats()].recordsFiltered += 1
                }
            }
            let now = Tables.wallMs()
            r.behindMs = read.count == limit && now > last.createdMs ? now - last.createdMs : 0
            r.consumer.fetched(records, through: last.sequence, now: self.loop.now)
            self.drive(r)
        }
    }

    static let tablePollInterval: Duration = .milliseconds(10)

    /// A record's item key as text (lanes keep each key's records in order): its `Keys`.
    static func keyText(_ rec: ChangeRecord) -> String {
        guard let keys = (try? JSON.parse(rec.dynamodb))?["Keys"] else { return "" }
        let text = keys.serialized
        return text.utf8.count <= 255 ? text : String(stableHash64(Array(text.utf8)), radix: 16)
    }

    /// Lambda's DynamoDB Streams event: `{"Records":[…]}`, each record as made by `fetchTable`.
    static func dynamoEvent(_ records: [ProcessorRecord]) -> [UInt8] {
        var out = Array(#"{"Records":["#.utf8)
        for (i, r) in records.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out += r.data
        }
        return out + Array("]}".utf8)
    }
}
