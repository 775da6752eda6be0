import Foundation
import StreamLog
import TandemCore
import Transport

/// Where a read starts: the `from` of the read API (`trim-horizon`, `latest`, `at:SEQ`,
/// `after:SEQ`, `time:MS`), also kept as text in Kinesis shard iterators.
enum ReadPosition: Equatable {
    case trimHorizon
    /// After what is committed when the read is served.
    case latest
    case at(UInt64)
    /// After a sequence number (below `UInt64.max`).
    case after(UInt64)
    /// The first record at or after a time (ms since the epoch).
    case time(UInt64)

    init(parsing text: String) throws(StreamsError) {
        let usage = StreamsError(.badRequest, "from is trim-horizon, latest, at:SEQ, after:SEQ or time:MS")
        switch text {
        case "trim-horizon": self = .trimHorizon
        case "latest": self = .latest
        default:
            let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw usage }
            switch parts[0] {
            case "at":
                guard let s = Sequence.parse(parts[1]) else { throw StreamsError(.badRequest, "bad sequence '\(parts[1])'") }
                self = .at(s)
            case "after":
                guard let s = Sequence.parse(parts[1]), s < UInt64.max else {
                    throw StreamsError(.badRequest, "bad sequence '\(parts[1])'")
                }
                self = .after(s)
            case "time":
                guard let ms = UInt64(parts[1]) else { throw StreamsError(.badRequest, "time:MS takes milliseconds since the epoch") }
                self = .time(ms)
            default: throw usage
            }
        }
    }

    var text: String {
        switch self {
        case .trimHorizon: "trim-horizon"
        case .latest: "latest"
        case .at(let s): "at:" + Sequence.format(s)
        case .after(let s): "after:" + Sequence.format(s)
        case .time(let ms): "time:\(ms)"
        }
    }
}

/// A read's parameters, checked: limit 1 to 10,000 records, a long poll of up to 20 s.
struct ReadQuery {
    var from: ReadPosition
    var limit: Int
    var waitMs: Int

    init(from: ReadPosition, limit: Int, waitMs: Int = 0) throws(StreamsError) {
        try ReadQuery.check(limit: limit, waitMs: waitMs)
        self.from = from
        self.limit = limit
        self.waitMs = waitMs
    }

    /// From the read API's query (`from`, `limit`, `waitMs`), checked in that API's order:
    /// limit, waitMs, then the position.
    init(_ query: [String: String]) throws(StreamsError) {
        let limit = Int(query["limit"] ?? "1000") ?? -1
        let waitMs = Int(query["waitMs"] ?? "0") ?? -1
        try ReadQuery.check(limit: limit, waitMs: waitMs)
        try self.init(from: ReadPosition(parsing: query["from"] ?? "trim-horizon"), limit: limit, waitMs: waitMs)
    }

    private static func check(limit: Int, waitMs: Int) throws(StreamsError) {
        guard (1...10_000).contains(limit) else { throw StreamsError(.badRequest, "limit must be 1 to 10000") }
        guard (0...Streams.maxWaitMs).contains(waitMs) else { throw StreamsError(.badRequest, "waitMs must be 0 to \(Streams.maxWaitMs)") }
    }

    /// The query a proxied read carries to a replica (`StreamWire.encodeRead`).
    var query: [String: String] { ["from": from.text, "limit": String(limit), "waitMs": String(waitMs)] }
}

/// What a read returns: committed records from the start position on, where the next read
/// starts, and how far (ms) the last record returned is behind the partition's newest.
struct ReadResult: Equatable {
    var records: [Record]
    /// The last index the read covered: the next read is `after:` it.
    var last: UInt64
    var behindMs: UInt64

    struct Record: Equatable {
        var sequence: UInt64
        var key: String
        var data: [UInt8]
        var timestamp: UInt64
    }

    var next: ReadPosition { .after(last) }

    /// The read API's body, also what a replica answers a proxied read with:
    /// `{"records":[{"sequence","key","data","timestamp"}…],"next","behindMs"}`.
    var body: [UInt8] {
        var out = "{\"records\":["
        for (k, r) in records.enumerated() {
            if k > 0 { out += "," }
            out +=
                "{\"sequence\":\"\(Sequence.format(r.sequence))\",\"key\":\(JSON.string(r.key).serialized),\"data\":\"\(Base64.encode(r.data))\",\"timestamp\":\(r.timestamp)}"
        }
        out += "],\"next\":\"\(next.text)\",\"behindMs\":\(behindMs)}\n"
        return Array(out.utf8)
    }

    /// A replica's answer to a proxied read; nil if malformed.
    init?(body: [UInt8]) {
        func number(_ j: JSON?) -> UInt64? { if case .number(let t)? = j { UInt64(t) } else { nil } }
        guard let j = try? JSON.parse(body), case .array(let list)? = j["records"], let nextText = j["next"]?.stringValue,
            case .after(let last)? = try? ReadPosition(parsing: nextText), let behind = number(j["behindMs"])
        else { return nil }
        var records: [Record] = []
        for r in list {
            guard let seq = r["sequence"]?.stringValue.flatMap(Sequence.parse), let key = r["key"]?.stringValue,
                let data = r["data"]?.stringValue.flatMap(Base64.decode), let ts = number(r["timestamp"])
            else { return nil }
            records.append(Record(sequence: seq, key: key, data: data, timestamp: ts))
        }
        self.init(records: records, last: last, behindMs: behind)
    }

    init(records: [Record], last: UInt64, behindMs: UInt64) {
        self.records = records
        self.last = last
        self.behindMs = behindMs
    }
}

/// The read path: any replica serves reads up to its commit index; a node without one proxies
/// the read to a live replica.
extension Streams {
    typealias ReadDone = (Result<ReadResult, StreamsError>) -> Void

    func read(_ stream: String, partition p: Int, _ q: ReadQuery, _ done: @escaping ReadDone) {
        let d: Definition
        do throws(StreamsError) {
            try requireServing()
            d = try definition(stream)
            try Streams.checkPartition(d, p)
        } catch {
            return done(.failure(error))
        }
        read(d, p, q, proxied: false, done)
    }

    /// A read a node without a replica proxied here (`StreamFrameKind.read`): answered with the
    /// read API's status and body.
    func serveProxiedRead(_ stream: String, _ p: Int, _ query: [String: String], reply: @escaping (Int, [UInt8]) -> Void) {
        let answer: ReadDone = { result in
            switch result {
            case .success(let r): reply(200, r.body)
            case .failure(let e): reply(e.status, e.response.body)
            }
        }
        do throws(StreamsError) {
            let d = try definition(stream)
            try Streams.checkPartition(d, p)
            read(d, p, try ReadQuery(query), proxied: true, answer)
        } catch {
            answer(.failure(error))
        }
    }

    /// Serves a read on this node's replica (up to its commit index), or proxies it to a live replica.
    private func read(_ d: Definition, _ p: Int, _ q: ReadQuery, proxied: Bool, _ done: @escaping ReadDone) {
        let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
        guard let part = partitions[gid] else {
            guard !proxied else {
                return done(.failure(StreamsError(status: 503, code: "not_a_replica", message: "this node holds no replica of \(gid)")))
            }
            return proxyRead(d, p, q, attempt: 0, done)
        }
        let start: UInt64 =
            switch q.from {
            case .trimHorizon: part.raft.firstIndex
            case .latest: part.commitIndex + 1
            case .at(let s): max(s, 1)
            case .after(let s): s + 1
            case .time(let ms):
                ((try? part.log.index(atOrAfterTimestamp: ms)) ?? nil).map { min($0, part.commitIndex + 1) } ?? part.commitIndex + 1
            }
        serveRead(part, start: start, limit: q.limit, deadline: loop.now + .milliseconds(Int64(q.waitMs)), done)
    }

    private func serveRead(_ part: StreamPartition, start: UInt64, limit: Int, deadline: Instant, _ done: @escaping ReadDone) {
        let commit = part.commitIndex
        let from = max(start, part.raft.firstIndex)
        var records: [ReadResult.Record] = []
        var last = from - 1
        if from <= commit {
            let entries: [LogEntry]
            do {
                entries = try part.log.readEntries(from: from, to: min(commit, from + UInt64(limit) - 1), maxBytes: Streams.maxReadBytes)
            } catch {
                part.readFailed(error)
                return done(
                    .failure(
                        StreamsError(
                            status: 503, code: "disk_failed",
                            message: "cannot read this replica's log (\(error)); it is stopped and reopened, retry",
                            retryable: true)))
            }
            for e in entries {
                last = e.index
                guard e.kind == .record, let (key, data) = StreamRecord.decode(e.data) else { continue }
                records.append(.init(sequence: e.index, key: key, data: Array(data), timestamp: e.timestamp))
            }
        }
        if records.isEmpty && loop.now < deadline && !stopping {
            // Long poll: come back when the commit index moves (or at the deadline).
            let next = last + 1
            part.waitForCommit(until: deadline) { [weak self, weak part] in
                guard let self, let part, self.partitions[part.id] === part else {
                    return done(.failure(StreamsError(status: 503, code: "unavailable", message: "partition closed", retryable: true)))
                }
                self.serveRead(part, start: next, limit: limit, deadline: deadline, done)
            }
            return
        }
        var behind: UInt64 = 0
        if last < commit, let ts = records.last?.timestamp, let tip = (try? part.raft.entries(from: commit, to: commit, maxBytes: 1))?.first
        {
            behind = tip.timestamp > ts ? tip.timestamp - ts : 0
        }
        done(.success(ReadResult(records: records, last: last, behindMs: behind)))
    }

    /// Asks the live replicas in turn; one that answers 503 (not a replica after all, its
    /// partition closed) or not at all passes the read on to the next.
    private func proxyRead(_ d: Definition, _ p: Int, _ q: ReadQuery, attempt: Int, _ done: @escaping ReadDone) {
        let alive = Set(members().filter(\.alive).map(\.id))
        let replicas = d.voters[p].filter { alive.contains($0) && $0 != selfID }
        guard attempt < replicas.count else {
            return done(
                .failure(StreamsError(status: 503, code: "unavailable", message: "no live replica of \(d.name)/\(p)", retryable: true)))
        }
        stats.readsProxied += 1
        guard let address = address(of: replicas[attempt]) else { return proxyRead(d, p, q, attempt: attempt + 1, done) }
        peers.request(
            to: address, kind: StreamFrameKind.read, payload: StreamWire.encodeRead(stream: d.name, partition: p, query: q.query),
            timeout: .milliseconds(Int64(q.waitMs)) + .seconds(3)
        ) { [weak self] result in
            guard let self else { return }
            if case .success(let frame) = result, let (status, body) = try? StreamWire.decodeReadResult(frame.payload), status != 503 {
                if status == 200, let r = ReadResult(body: body) { return done(.success(r)) }
                if status != 200 { return done(.failure(StreamsError(status: status, body: body))) }
                self.peers.countMalformed()
            }
            self.proxyRead(d, p, q, attempt: attempt + 1, done)
        }
    }
}

extension StreamsError {
    /// The error a replica answered a proxied read with (its status, and the body's fields).
    init(status: Int, body: [UInt8]) {
        let j = try? JSON.parse(body)
        let retryable: Bool? = if case .bool(let b)? = j?["retryable"] { b } else { nil }
        self.init(
            status: status, code: j?["error"]?.stringValue ?? "\(status)",
            message: j?["message"]?.stringValue ?? "request failed with status \(status)", retryable: retryable)
    }

    /// The read and REST APIs' error answer.
    var response: HTTPResponse {
        guard let retryable else { return .error(status, code, message) }
        return .json(status, ["error": JSON(code), "message": JSON(message), "retryable": JSON(retryable)])
    }
}
