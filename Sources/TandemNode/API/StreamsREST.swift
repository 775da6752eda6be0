import Foundation
import StreamLog
import TandemCore
import Transport

extension Streams {
    /// Handles `/v1/streams…`; false if the path is not ours.
    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        StreamsREST(streams: self).route(request, respond)
    }
}

/// The streams REST API (`/v1/streams…`): translates requests to the streams service's typed
/// calls and their results to JSON. Every error answer is counted by its code
/// (`tandem_stream_errors_total`).
struct StreamsREST {
    let streams: Streams

    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        let s = request.segments
        guard s.count >= 2, s[0] == "v1", s[1] == "streams" else { return false }
        let streams = streams
        let fail: (StreamsError) -> Void = { e in
            streams.countError(e.code)
            respond(e.response)
        }
        do {
            // Refused before anything else is looked at (also on paths that do not exist).
            if streams.isWitness && !(request.method == "GET" && s.count <= 3) { throw StreamsError.witness }
            switch (request.method, s.count) {
            case ("GET", 2):
                respond(json(200, .object([("streams", .array(streams.streamList.map { .object(summary($0)) }))])))
            case ("PUT", 3):
                try Streams.checkName(s[2])
                let j = request.body.isEmpty ? JSON.object([]) : try JSON.parse(request.body)
                let partitions = try int(j, "partitions", 1, Streams.partitionCounts)
                let retention = try int(j, "retentionHours", 24, Streams.retentionHourRange)
                streams.createStream(s[2], partitions: partitions, retentionHours: retention) { result in
                    switch result {
                    case .success(let r): respond(json(r.created ? 201 : 200, describe(r.description)))
                    case .failure(let e): fail(e)
                    }
                }
            case ("GET", 3):
                respond(json(200, describe(streams.describe(try streams.definition(s[2])))))
            case ("DELETE", 3):
                streams.deleteStream(s[2]) { error in
                    if let error { return fail(error) }
                    respond(.json(200, ["deleted": JSON(s[2])]))
                }
            case ("POST", 4) where s[3] == "records":
                try put(s[2], request.body, respond, fail)
            case ("GET", 6) where s[3] == "partitions" && s[5] == "records":
                guard let p = Int(s[4]) else { throw StreamsError(.badRequest, "partition must be a number") }
                // The stream and partition are looked up before the query is checked.
                try Streams.checkPartition(try streams.definition(s[2]), p)
                streams.read(s[2], partition: p, try ReadQuery(request.query)) { result in
                    switch result {
                    case .success(let r): respond(HTTPResponse(status: 200, body: r.body))
                    case .failure(let e): fail(e)
                    }
                }
            case ("GET", 6) where s[3] == "consumers" && s[5] == "checkpoints":
                let list = try streams.checkpoints(s[2], consumer: s[4])
                respond(json(200, .object([("checkpoints", .array(list.map(checkpointJSON)))])))
            case (_, 7) where s[3] == "consumers" && s[5] == "checkpoints":
                guard let p = Int(s[6]) else { throw StreamsError(.badRequest, "partition must be a number") }
                try checkpoint(request, stream: s[2], consumer: s[4], partition: p, respond, fail)
            default:
                throw StreamsError(status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path)")
            }
        } catch let e as StreamsError {
            fail(e)
        } catch let e as TandemError {
            fail(StreamsError(e))
        } catch {
            fail(StreamsError(status: 400, code: "bad_request", message: "\(error)"))
        }
        return true
    }

    private func json(_ status: Int, _ j: JSON) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(j.serialized.utf8) + [0x0A])
    }

    /// An optional integer field of a request body (`def` when absent).
    private func int(_ j: JSON, _ k: String, _ def: Int, _ range: ClosedRange<Int>) throws(StreamsError) -> Int {
        guard let v = j[k] else { return def }
        guard case .number(let t) = v, let n = Int(t), range.contains(n) else {
            throw StreamsError(.badRequest, "\(k) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    private func summary(_ d: Streams.Definition) -> [(String, JSON)] {
        [
            ("name", .string(d.name)), ("partitions", .number(String(d.partitions))),
            ("retentionHours", .number(String(d.retentionHours))), ("incarnation", .string(String(d.incarnation)))
        ]
    }

    private func describe(_ description: StreamDescription) -> JSON {
        func name(_ n: String?) -> JSON { n.map { .string($0) } ?? .null }
        let parts: [JSON] = description.partitions.map { p in
            var m: [(String, JSON)] = [
                ("partition", .number(String(p.partition))),
                ("replicas", .array(p.replicas.map { .string($0) })),
                ("witnesses", .array(p.witnesses.map { .string($0) })),
                ("preferredLeader", name(p.preferredLeader))
            ]
            switch p.state {
            case .replica(let role, let leader, let term, let commitIndex, let firstIndex, let lastIndex, let followers):
                m += [
                    ("local", .bool(true)), ("role", .string(role.rawValue)), ("leader", name(leader)),
                    ("term", .number(String(term))), ("commitIndex", .number(String(commitIndex))),
                    ("firstIndex", .number(String(firstIndex))), ("lastIndex", .number(String(lastIndex)))
                ]
                if let followers {
                    m.append(
                        (
                            "followers",
                            .array(
                                followers.map { f in
                                    .object([
                                        ("node", .string(f.node)), ("match", .number(String(f.match))),
                                        ("lagEntries", .number(String(f.lagEntries)))
                                    ])
                                })
                        ))
                }
            case .stopped(let reason, let durableThrough):
                m += [
                    ("local", .bool(true)), ("role", .string("stopped")), ("stoppedReason", .string(reason)),
                    ("durableThrough", .number(String(durableThrough)))
                ]
            case .remote(let leader):
                m += [("local", .bool(false)), ("leader", name(leader))]
            }
            return .object(m)
        }
        return .object(summary(description.definition) + [("partitionDetails", .array(parts))])
    }

    // MARK: put

    /// `{"key", "data"}` (one record) or `{"records": [...]}` (a batch, answered per record).
    private func put(
        _ stream: String, _ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void,
        _ fail: @escaping (StreamsError) -> Void
    ) throws {
        _ = try streams.definition(stream)
        if let (key, record) = StreamRecord.encodeSimpleBody(body) {
            // One record in the usual shape: no JSON tree (single puts are the hot path).
            return putOne(stream, key, record, respond, fail)
        }
        let j = try JSON.parse(body)
        let batch: Bool
        var items: [JSON]
        if case .array(let list)? = j["records"] {
            batch = true
            items = list
            guard (1...StreamWire.maxRecordsPerPut).contains(list.count) else {
                throw StreamsError(.badRequest, "a batch holds 1 to \(StreamWire.maxRecordsPerPut) records")
            }
        } else {
            batch = false
            items = [j]
        }
        // Validate everything before anything is proposed: a batch is refused whole on bad input.
        var records: [(key: String, hashKey: UInt128?, record: [UInt8])] = []
        for item in items {
            guard let key = item["key"]?.stringValue, !key.isEmpty, key.utf8.count <= StreamRecord.maxKeyBytes else {
                throw StreamsError(.badRequest, "each record needs a \"key\": a string of 1 to \(StreamRecord.maxKeyBytes) bytes")
            }
            guard let text = item["data"]?.stringValue, let data = Base64.decode(text) else {
                throw StreamsError(.badRequest, "each record needs \"data\": base64 text")
            }
            guard data.count <= StreamRecord.maxDataBytes else {
                throw StreamsError(.tooLarge, "a record's data is at most \(StreamRecord.maxDataBytes) bytes")
            }
            records.append((key, nil, StreamRecord.encode(key: key, data: data)))
        }
        guard batch else { return putOne(stream, records[0].key, records[0].record, respond, fail) }
        streams.putRecords(stream, records) { result in
            switch result {
            case .success(let outcomes):
                // Bytes appended directly: no JSON tree for the common case.
                var body: [UInt8] = []
                body.reserveCapacity(64 * outcomes.count)
                let failed = outcomes.filter { if case .failure = $0.result { true } else { false } }.count
                body.append(contentsOf: #"{"failedRecordCount":\#(failed),"records":["#.utf8)
                for (k, o) in outcomes.enumerated() {
                    if k > 0 { body.append(0x2C) }
                    switch o.result {
                    case .success(let seq): StreamsREST.appendPut(&body, o.partition, seq)
                    case .failure(let f):
                        body.append(
                            contentsOf: JSON.object([
                                ("partition", .number(String(o.partition))), ("error", .string(f.code)),
                                ("message", .string(f.message)), ("retryable", .bool(f.retryable))
                            ]).serialized.utf8)
                    }
                }
                body.append(contentsOf: "]}\n".utf8)
                respond(HTTPResponse(status: 200, body: body))
            case .failure(let e):
                fail(e)
            }
        }
    }

    private func putOne(
        _ stream: String, _ key: String, _ record: [UInt8], _ respond: @escaping (HTTPResponse) -> Void,
        _ fail: @escaping (StreamsError) -> Void
    ) {
        streams.putRecord(stream, key: key, record: record) { result in
            switch result {
            case .success(let r):
                var body: [UInt8] = []
                body.reserveCapacity(64)
                StreamsREST.appendPut(&body, r.partition, r.sequence)
                body.append(0x0A)
                respond(HTTPResponse(status: 200, body: body))
            case .failure(let e):
                fail(e)
            }
        }
    }

    /// `{"partition":P,"sequence":"SEQ"}`
    private static func appendPut(_ body: inout [UInt8], _ p: Int, _ sequence: UInt64) {
        body.append(contentsOf: #"{"partition":"#.utf8)
        body.append(contentsOf: String(p).utf8)
        body.append(contentsOf: #","sequence":""#.utf8)
        body.append(contentsOf: Sequence.format(sequence).utf8)
        body.append(contentsOf: #""}"#.utf8)
    }

    // MARK: consumer checkpoints

    private func checkpointJSON(_ c: StreamCheckpoint) -> JSON {
        .object([
            ("stream", .string(c.stream)), ("consumer", .string(c.consumer)), ("partition", .number(String(c.partition))),
            ("sequence", .string(c.sequence))
        ])
    }

    private func checkpoint(
        _ request: HTTPRequest, stream: String, consumer: String, partition p: Int,
        _ respond: @escaping (HTTPResponse) -> Void, _ fail: @escaping (StreamsError) -> Void
    ) throws {
        // Stream, partition and consumer are checked before the method and the body.
        try streams.checkCheckpoint(stream, consumer: consumer, partition: p)
        switch request.method {
        case "GET":
            respond(json(200, checkpointJSON(try streams.checkpoint(stream, consumer: consumer, partition: p))))
        case "PUT":
            guard let text = try JSON.parse(request.body)["sequence"]?.stringValue, let seq = Sequence.parse(text) else {
                throw StreamsError(.badRequest, "body is {\"sequence\": \"<a sequence number>\"}")
            }
            streams.setCheckpoint(stream, consumer: consumer, partition: p, sequence: seq) { result in
                switch result {
                case .success(let c): respond(json(200, c.map(checkpointJSON) ?? .null))
                case .failure(let e): fail(e)
                }
            }
        default:
            throw StreamsError(.methodNotAllowed, "\(request.method) is not allowed on a checkpoint")
        }
    }
}
