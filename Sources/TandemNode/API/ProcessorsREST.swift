import GlobalTable
import Processing
import TandemCore
import Transport

extension Processors {
    /// Handles `/v1/processors…`; false if the path is not ours.
    ///
    /// - `GET /v1/processors` → `{"processors":[{name, stream, target, state}]}`
    /// - `PUT /v1/processors/{name}` (the definition) → 201 created, 200 replaced
    /// - `GET /v1/processors/{name}` → the definition, `state`, `incarnation`, `redriveUntil`,
    ///   `deadLetterStream` and `partitions` [{partition, owner, checkpoint, iteratorAgeMs,
    ///   inFlight, pending, retries, deadLettered, handlerP50Ms, handlerP99Ms, updatedAt}]
    /// - `POST /v1/processors/{name}/pause|resume|redrive`, `DELETE /v1/processors/{name}`
    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        let s = request.segments
        guard s.count >= 2, s[0] == "v1", s[1] == "processors" else { return false }
        let fail: (TandemError) -> Void = { [weak self] e in
            self?.errors[e.code.name, default: 0] += 1
            respond(.error(e))
        }
        do throws(TandemError) {
            if streamsAreWitness {
                throw TandemError(.init("witness", httpStatus: 403), "a witness node votes in Raft but serves no clients")
            }
            switch (request.method, s.count) {
            case ("GET", 2):
                let list = try storedAll().map { st -> JSON in
                    .object([
                        ("name", .string(st.definition.name)), ("stream", .string(st.definition.stream)),
                        ("target", .string(Processors.targetKind(st.definition.target))),
                        ("state", .string(st.paused ? "paused" : "active"))
                    ])
                }
                respond(.json(200, .object([("processors", .array(list))])))
            case ("PUT", 3):
                guard request.body.count <= 64 * 1024 else { throw TandemError(.tooLarge, "a definition is at most 64 KiB") }
                let j = try JSON.parse(request.body, maxDepth: 16)
                let d = try ProcessorDefinition(name: s[2], json: j, checkFilters: Processors.filterCheck)
                put(d) { [weak self] result in
                    switch result {
                    case .failure(let e): fail(e)
                    case .success(let created):
                        guard let self, let st = try? self.stored(d.name) else {
                            return respond(.json(created ? 201 : 200, d.json))
                        }
                        respond(.json(created ? 201 : 200, self.describe(st)))
                    }
                }
            case ("GET", 3):
                guard let st = try stored(s[2]) else { throw TandemError(.notFound, "no processor '\(s[2])'") }
                respond(.json(200, describe(st)))
            case ("DELETE", 3):
                let name = s[2]
                delete(name) { error in
                    if let error { return fail(error) }
                    respond(.json(200, .object([("deleted", .string(name))])))
                }
            case ("POST", 4) where ["pause", "resume", "redrive"].contains(s[3]):
                let name = s[2]
                let action = s[3]
                let now = Tables.wallMs()
                update(
                    name,
                    { st in
                        switch action {
                        case "pause": st.paused = true
                        case "resume": st.paused = false
                        default: st.redriveUntil = now
                        }
                    }
                ) { [weak self] error in
                    if let error { return fail(error) }
                    guard let self, let st = try? self.stored(name) else { return respond(.json(200, .object([("name", .string(name))]))) }
                    respond(.json(200, self.describe(st)))
                }
            default:
                throw TandemError(.methodNotAllowed, "\(request.method) is not allowed on \(request.path)")
            }
        } catch {
            fail(error)
        }
        return true
    }

    static func targetKind(_ t: ProcessorDefinition.Target) -> String {
        switch t {
        case .function: "function"
        case .materialize: "materialize"
        case .forward: "forward"
        }
    }

    /// The definition plus what is known of each partition's consumer (its owner's figures as
    /// it last stored them, at most about a second old, or live where this node is the owner).
    func describe(_ st: Stored) -> JSON {
        guard case .object(var members) = st.definition.json else { return st.definition.json }
        members.insert(("name", .string(st.definition.name)), at: 0)
        members += [
            ("state", .string(st.paused ? "paused" : "active")), ("incarnation", .number("\(st.incarnation)")),
            ("redriveUntil", .number("\(st.redriveUntil)")), ("deadLetterStream", .string(Processors.dlqStream(st.definition.name)))
        ]
        if st.definition.table != nil {
            members.append(("partitions", .array(tablePartitions(st))))
            return .object(members)
        }
        let count = streamPartitions(st.definition.stream)
        var parts: [JSON] = []
        for p in 0..<count {
            let ps = partitionState(st, "\(st.definition.name)#\(p)")
            var fields: [(String, JSON)] = [("partition", .number("\(p)"))]
            fields.append(("owner", ps?.owner.map { .string($0) } ?? .null))
            fields.append(("checkpoint", ps?.checkpoint.map { .string(SequenceText.format($0)) } ?? .null))
            if case .materialize = st.definition.target {
                // Where a new owner would resume: below any batch whose writes a member may lack.
                fields.append(("settledCheckpoint", ps?.settled.map { .string(SequenceText.format($0)) } ?? .null))
            }
            if let r = running(st.definition.name, p) {
                fields += [
                    ("iteratorAgeMs", .number("\(r.iteratorAgeMs)")), ("inFlight", .number("\(r.consumer.inFlight)")),
                    ("pending", .number("\(r.consumer.pending)")), ("retries", .number("\(r.retriesBase + r.consumer.retries)")),
                    ("deadLettered", .number("\(r.deadLetteredBase + r.consumer.deadLettered)")),
                    ("handlerP50Ms", .number(String(format: "%.3f", r.latencyPercentile(0.5)))),
                    ("handlerP99Ms", .number(String(format: "%.3f", r.latencyPercentile(0.99))))
                ]
            } else {
                fields += [
                    ("iteratorAgeMs", .number("\(ps?.iteratorAgeMs ?? 0)")), ("inFlight", .number("\(ps?.inFlight ?? 0)")),
                    ("pending", .number("\(ps?.pending ?? 0)")), ("retries", .number("\(ps?.retries ?? 0)")),
                    ("deadLettered", .number("\(ps?.deadLettered ?? 0)")), ("handlerP50Ms", .number(ps?.handlerP50Ms ?? "0")),
                    ("handlerP99Ms", .number(ps?.handlerP99Ms ?? "0"))
                ]
            }
            fields.append(("updatedAt", .number("\(ps?.updatedAt ?? 0)")))
            parts.append(.object(fields))
        }
        members.append(("partitions", .array(parts)))
        return .object(members)
    }
}
