import ContactCenter
import Foundation
import TandemCore
import Transport

/// The contact center's endpoints (issue 17's names, which scripts rely on):
///
/// - `PUT /v1/queues/{id}` `{"serviceLevelSeconds":20,"maxContacts":0}`;
///   `GET /v1/queues/{id}/metrics` → `{"global":{…},"regions":{…}}`; `GET /v1/metrics/realtime`
/// - `PUT /v1/routing-profiles/{id}`
///   `{"queues":[{"queue":"billing","priority":1,"delaySeconds":0}],"concurrency":{"VOICE":1}}`
/// - `PUT /v1/agents/{id}` `{"routingProfile":"default","skills":{"billing":3},"name":…,"acwTimeoutSeconds":…}`;
///   `GET /v1/agents/{id}` → `{"id","status","region","contacts":[…],…}`;
///   `POST /v1/agents/{id}/login` (into the region of the node asked; `{"status":…}`, default
///   `Offline` as Connect signs agents in) and `/logout` and `/heartbeat`;
///   `PUT /v1/agents/{id}/status` `{"status":"Available"}`;
///   `GET /v1/agents/{id}/offers?waitMs=` → `{"offers":[{"contactId",…}]}` (a long poll, and a heartbeat)
/// - `PUT /v1/statuses/{name}` `{"type":"CUSTOM"}`; `PUT /v1/center/settings` (the core's
///   `CenterSettings` fields, in ms)
/// - `POST /v1/contacts` `{"channel":"VOICE","queue":"billing","customer":{"phone":…},"edge":"nyc",
///   "attributes":{…},"requiredSkills":{…},"contactId":…,"region":…}` → 201
///   `{"contactId","region","state",…}` (the contact as the command left it: `QUEUED`, or
///   `CONNECTING` when an agent was free); `GET /v1/contacts/{id}` → `{"contactId","state","agent","region",…}`;
///   `POST /v1/contacts/{id}/accept|reject` `{"agent":…}`, `hold`, `resume`, `end`,
///   `acw-complete`, `transfer` `{"queue":…}` or `{"agent":…}` (and `"region"`).
///
/// Errors: `{"error","message"}`, plus `"state"` (the current state) on a 409.
extension Center {
    /// Handles the contact-center paths; false if the path is not ours.
    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        let s = request.segments
        guard s.count >= 2, s[0] == "v1",
            ["queues", "routing-profiles", "agents", "contacts", "statuses", "center", "metrics"].contains(s[1])
        else { return false }
        if s[1] == "metrics" && !(s.count == 3 && s[2] == "realtime") { return false }
        let reply: (Answer) -> Void = { [weak self] a in
            if a.status >= 400 { self?.stats.errors[a.body["error"]?.stringValue ?? "\(a.status)", default: 0] += 1 }
            respond(.json(a.status, a.body))
        }
        do throws(TandemError) {
            if streams.isWitness {
                throw TandemError(.init("witness", httpStatus: 403), "a witness node votes in Raft but serves no clients")
            }
            let parsed = try parse(request)
            handle(parsed, reply)
        } catch {
            reply(Center.error(error.code.httpStatus, error.code.name, error.message))
        }
        return true
    }

    private func parse(_ request: HTTPRequest) throws(TandemError) -> Request {
        let s = request.segments
        let m = request.method
        func body() throws(TandemError) -> JSON {
            guard request.body.count <= 64 * 1024 else { throw TandemError(.tooLarge, "a body is at most 64 KiB") }
            if request.body.isEmpty { return .object([]) }
            let j = try JSON.parse(request.body, maxDepth: 8)
            guard case .object = j else { throw TandemError(.badRequest, "the body must be a JSON object") }
            return j
        }
        func notAllowed() -> TandemError { TandemError(.methodNotAllowed, "\(m) is not allowed on \(request.path)") }
        switch (s[1], s.count) {
        case ("metrics", 3):
            guard m == "GET" else { throw notAllowed() }
            return .realtimeMetrics
        case ("center", 3) where s[2] == "settings":
            guard m == "PUT" else { throw notAllowed() }
            return .command(.putSettings(try Center.settings(try body())))
        case ("statuses", 3):
            guard m == "PUT" else { throw notAllowed() }
            let type = try body()["type"]?.stringValue ?? "CUSTOM"
            guard let t = StatusType(rawValue: type) else { throw TandemError(.badRequest, "unknown status type \(type)") }
            return .command(.putStatus(name: s[2], type: t))
        case ("queues", 3):
            guard m == "PUT" else { throw notAllowed() }
            let j = try body()
            let seconds = try Center.number(j, "serviceLevelSeconds", default: 20, 0...86_400)
            let max = try Center.number(j, "maxContacts", default: 0, 0...10_000_000)
            return .command(.putQueue(QueueDefinition(id: s[2], serviceLevelMs: UInt64(seconds * 1000), maxContacts: Int(max))))
        case ("queues", 4) where s[3] == "metrics":
            guard m == "GET" else { throw notAllowed() }
            return .queueMetrics(s[2])
        case ("routing-profiles", 3):
            guard m == "PUT" else { throw notAllowed() }
            let j = try body()
            guard case .array(let list)? = j["queues"] else { throw TandemError(.badRequest, "queues (a list) is required") }
            var queues: [ProfileQueue] = []
            for q in list {
                guard let name = q["queue"]?.stringValue else { throw TandemError(.badRequest, "each queue names its queue") }
                let priority = try Center.number(q, "priority", default: 1, 0...1_000)
                let delay = try Center.number(q, "delaySeconds", default: 0, 0...1_000_000)
                queues.append(ProfileQueue(queue: name, priority: Int(priority), delayMs: UInt64(delay * 1000)))
            }
            var concurrency: [Channel: Int] = [.voice: 1]
            if let c = j["concurrency"] {
                guard case .object(let members) = c else { throw TandemError(.badRequest, "concurrency is an object of channel → count") }
                concurrency = [:]
                for (name, n) in members {
                    guard let channel = Channel(rawValue: name) else { throw TandemError(.badRequest, "unknown channel \(name)") }
                    guard let count = n.intValue else { throw TandemError(.badRequest, "\(name) concurrency must be an integer") }
                    concurrency[channel] = count
                }
            }
            return .command(.putRoutingProfile(RoutingProfile(id: s[2], queues: queues, concurrency: concurrency)))
        case ("agents", 3):
            switch m {
            case "GET": return .agent(s[2])
            case "PUT":
                let j = try body()
                guard let profile = j["routingProfile"]?.stringValue else { throw TandemError(.badRequest, "routingProfile is required") }
                var skills: [String: UInt8] = [:]
                if let sk = j["skills"] {
                    guard case .object(let members) = sk else { throw TandemError(.badRequest, "skills is an object of skill → 1…5") }
                    for (name, level) in members {
                        guard let l = level.intValue, (1...5).contains(l) else {
                            throw TandemError(.badRequest, "skill \(name): proficiency is 1…5")
                        }
                        skills[name] = UInt8(l)
                    }
                }
                let acw = try Center.number(j, "acwTimeoutSeconds", default: 0, 0...86_400)
                return .command(
                    .putAgent(
                        AgentDefinition(
                            id: s[2], name: j["name"]?.stringValue ?? "", routingProfile: profile, skills: skills,
                            acwTimeoutMs: UInt64(acw * 1000))))
            default: throw notAllowed()
            }
        case ("agents", 4):
            let id = s[2]
            switch (m, s[3]) {
            case ("POST", "login"):
                return .command(.login(agent: id, region: region, status: try body()["status"]?.stringValue ?? BuiltInStatus.offline))
            case ("POST", "logout"): return .command(.logout(agent: id))
            case ("POST", "heartbeat"): return .heartbeat(agent: id)
            case ("PUT", "status"):
                guard let status = try body()["status"]?.stringValue else { throw TandemError(.badRequest, "status is required") }
                return .command(.setStatus(agent: id, status: status))
            case ("GET", "offers"):
                guard let wait = Int(request.query["waitMs"] ?? "0"), (0...20_000).contains(wait) else {
                    throw TandemError(.badRequest, "waitMs must be 0 to 20000")
                }
                return .offers(agent: id, waitMs: wait)
            case (_, "login"), (_, "logout"), (_, "heartbeat"), (_, "status"), (_, "offers"): throw notAllowed()
            default: throw TandemError(.notFound, "no endpoint \(m) \(request.path)")
            }
        case ("contacts", 2):
            guard m == "POST" else { throw notAllowed() }
            return .command(.createContact(try newContact(try body())))
        case ("contacts", 3):
            guard m == "GET" else { throw notAllowed() }
            return .contact(s[2])
        case ("contacts", 4):
            let id = s[2]
            guard m == "POST" else { throw notAllowed() }
            switch s[3] {
            case "accept", "reject":
                guard let agent = try body()["agent"]?.stringValue else { throw TandemError(.badRequest, "agent is required") }
                return .command(s[3] == "accept" ? .accept(contact: id, agent: agent) : .reject(contact: id, agent: agent))
            case "hold": return .command(.hold(contact: id))
            case "resume": return .command(.resume(contact: id))
            case "end": return .command(.end(contact: id))
            case "acw-complete": return .command(.completeAfterContactWork(contact: id))
            case "transfer":
                let j = try body()
                let target = TransferTarget(
                    queue: j["queue"]?.stringValue, agent: j["agent"]?.stringValue, region: j["region"]?.stringValue)
                return .command(.transfer(contact: id, newContactId: Center.newId(), to: target))
            default: throw TandemError(.notFound, "no endpoint \(m) \(request.path)")
            }
        default:
            throw TandemError(.notFound, "no endpoint \(m) \(request.path)")
        }
    }

    /// `POST /v1/contacts`: the region is the routing decision for the customer (so one customer
    /// lands consistently), unless the body names one; the customer's keys ride along as
    /// `customer.*` attributes.
    private func newContact(_ j: JSON) throws(TandemError) -> NewContact {
        let channelName = j["channel"]?.stringValue ?? "VOICE"
        guard let channel = Channel(rawValue: channelName) else { throw TandemError(.badRequest, "unknown channel \(channelName)") }
        guard let queue = j["queue"]?.stringValue else { throw TandemError(.badRequest, "queue is required") }
        let method = j["initiationMethod"]?.stringValue ?? "INBOUND"
        guard let initiation = InitiationMethod(rawValue: method) else {
            throw TandemError(.badRequest, "unknown initiationMethod \(method)")
        }
        var attributes: [String: String] = [:]
        if let a = j["attributes"] {
            guard case .object(let members) = a else { throw TandemError(.badRequest, "attributes is an object of strings") }
            for (k, v) in members {
                guard let v = v.stringValue else { throw TandemError(.badRequest, "attribute \(k) must be a string") }
                attributes[k] = v
            }
        }
        var customerKey: String?
        if let c = j["customer"] {
            guard case .object(let members) = c else {
                throw TandemError(.badRequest, "customer is an object of keys (phone, email, account)")
            }
            for (k, v) in members.sorted(by: { $0.0 < $1.0 }) {
                guard let v = v.stringValue else { throw TandemError(.badRequest, "customer \(k) must be a string") }
                attributes["customer.\(k)"] = v
                if customerKey == nil { customerKey = "\(k):\(v)" }
            }
        }
        var skills: [String: UInt8] = [:]
        if let sk = j["requiredSkills"] {
            guard case .object(let members) = sk else { throw TandemError(.badRequest, "requiredSkills is an object of skill → 1…5") }
            for (name, level) in members {
                guard let l = level.intValue, (1...5).contains(l) else {
                    throw TandemError(.badRequest, "skill \(name): proficiency is 1…5")
                }
                skills[name] = UInt8(l)
            }
        }
        let id = j["contactId"]?.stringValue ?? Center.newId()
        let contactRegion: String
        if let r = j["region"]?.stringValue {
            contactRegion = r
        } else {
            switch decideRegion(customerKey ?? id, j["edge"]?.stringValue) {
            case .success(let r): contactRegion = r
            case .failure(let e) where e.code == .badRequest: throw e
            case .failure: contactRegion = region  // no route yet: the region that took the call
            }
        }
        return NewContact(
            id: id, channel: channel, initiationMethod: initiation, queue: queue, region: contactRegion, attributes: attributes,
            requiredSkills: skills, preferredAgent: j["preferredAgent"]?.stringValue)
    }

    static func newId() -> String {
        let a = UInt64.random(in: .min ... .max)
        let b = UInt64.random(in: .min ... .max)
        func hex(_ v: UInt64) -> String {
            let h = String(v, radix: 16)
            return String(repeating: "0", count: 16 - h.count) + h
        }
        return hex(a) + hex(b)
    }

    static func number(_ j: JSON, _ field: String, default d: Double, _ range: ClosedRange<Double>) throws(TandemError) -> Double {
        guard let v = j[field] else { return d }
        guard let n = v.doubleValue, range.contains(n) else {
            throw TandemError(.badRequest, "\(field) must be a number in \(Int(range.lowerBound))…\(Int(range.upperBound))")
        }
        return n
    }

    static func settings(_ j: JSON) throws(TandemError) -> CenterSettings {
        var s = CenterSettings()
        func ms(_ field: String, _ current: UInt64) throws(TandemError) -> UInt64 {
            UInt64(try number(j, field, default: Double(current), 0...604_800_000))
        }
        s.ringTimeoutMs = try ms("ringTimeoutMs", s.ringTimeoutMs)
        s.heartbeatTimeoutMs = try ms("heartbeatTimeoutMs", s.heartbeatTimeoutMs)
        s.crossRegionDelayMs = try ms("crossRegionDelayMs", s.crossRegionDelayMs)
        s.preferredAgentWindowMs = try ms("preferredAgentWindowMs", s.preferredAgentWindowMs)
        s.reofferDelayMs = try ms("reofferDelayMs", s.reofferDelayMs)
        s.endedRetentionMs = try ms("endedRetentionMs", s.endedRetentionMs)
        s.intervalMs = try ms("intervalMs", s.intervalMs)
        s.missesBeforeNonRoutable = Int(try number(j, "missesBeforeNonRoutable", default: 3, 1...1_000))
        return s
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Answers

    /// The answer to `request` given its outcome and the state right after it.
    static func answer(_ request: Request, _ result: Result<[CenterEvent], Refusal>, _ state: ContactCenterState) -> Answer {
        if case .failure(let r) = result {
            var fields: [(String, JSON)] = [("error", .string(r.kind.rawValue)), ("message", .string(r.message))]
            if let st = r.currentState { fields.append(("state", .string(st))) }
            return (r.status, .object(fields))
        }
        switch request {
        case .command(let c):
            switch c {
            case .putSettings(let s): return (200, settingsJSON(s))
            case .putQueue(let q):
                return (
                    200,
                    ["id": JSON(q.id), "serviceLevelSeconds": JSON(Double(q.serviceLevelMs) / 1000), "maxContacts": JSON(q.maxContacts)]
                )
            case .putRoutingProfile(let p):
                return (
                    200,
                    [
                        "id": JSON(p.id),
                        "queues": .array(
                            p.queues.map {
                                ["queue": JSON($0.queue), "priority": JSON($0.priority), "delaySeconds": JSON(Double($0.delayMs) / 1000)]
                            }),
                        "concurrency": JSON(Dictionary(uniqueKeysWithValues: p.concurrency.map { ($0.key.rawValue, JSON($0.value)) }))
                    ]
                )
            case .putStatus(let name, let type): return (200, ["name": JSON(name), "type": JSON(type.rawValue)])
            case .putAgent(let d): return agentAnswer(d.id, state, created: false)
            case .login(let a, _, _), .logout(let a), .setStatus(let a, _), .heartbeat(let a): return agentAnswer(a, state, created: false)
            case .createContact(let n): return contactAnswer(n.id, state, status: 201)
            case .accept(let cid, _), .reject(let cid, _), .hold(let cid), .resume(let cid), .end(let cid),
                .completeAfterContactWork(let cid):
                return contactAnswer(cid, state, status: 200)
            case .transfer(let cid, let newId, _):
                var a = contactAnswer(newId, state, status: 200)
                if case .object(var members) = a.body {
                    members.insert(("transferredFrom", .string(cid)), at: 0)
                    a.body = .object(members)
                }
                return a
            case .setRegionServing, .tick: return (200, .object([]))
            }
        case .heartbeat(let a), .agent(let a): return agentAnswer(a, state, created: false)
        case .contact(let c): return contactAnswer(c, state, status: 200)
        case .offers(let a, _):
            guard state.agent(a) != nil else { return error(404, "not_found", "unknown agent \(a)") }
            return (
                200,
                [
                    "offers": .array(
                        state.offers(for: a).map { o in
                            [
                                "contactId": JSON(o.contactId), "channel": JSON(o.channel.rawValue), "queue": JSON(o.queue),
                                "ringDeadline": JSON(o.ringDeadline),
                                "initialContactId": JSON(state.contact(o.contactId)?.initialContactId ?? o.contactId),
                                "attributes": JSON((state.contact(o.contactId)?.attributes ?? [:]).mapValues { JSON($0) })
                            ]
                        })
                ]
            )
        case .queueMetrics(let q):
            guard let m = state.metrics(queue: q) else { return error(404, "not_found", "unknown queue \(q)") }
            return (200, metricsJSON(m))
        case .realtimeMetrics:
            var all = metricsJSON(state.centerMetrics())
            if case .object(var members) = all {
                let queues = state.queues.keys.sorted().map { q in (q, metricsJSON(state.metrics(queue: q)!)) }
                members.append(("queues", .object(queues)))
                members.append(("now", JSON(state.now)))
                all = .object(members)
            }
            return (200, all)
        }
    }

    static func agentAnswer(_ id: String, _ state: ContactCenterState, created: Bool) -> Answer {
        guard let a = state.agent(id) else { return error(404, "not_found", "unknown agent \(id)") }
        return (
            200,
            .object([
                ("id", .string(a.id)), ("status", .string(a.status)),
                ("statusType", .string(state.statusType(of: a.status).rawValue)),
                ("region", a.region.map { .string($0) } ?? .null),
                ("contacts", .array(a.contacts.compactMap { state.contact($0) }.map { contactSummary($0) })),
                ("nextStatus", a.nextStatus.map { .string($0) } ?? .null), ("statusSince", JSON(a.statusSince)),
                ("routingProfile", .string(a.definition.routingProfile)), ("name", .string(a.definition.name)),
                ("skills", JSON(a.definition.skills.mapValues { JSON(Int($0)) })), ("missedOffers", JSON(a.missedOffers)),
                ("lastHeartbeat", JSON(a.lastHeartbeat))
            ])
        )
    }

    static func contactSummary(_ c: Contact) -> JSON {
        ["contactId": JSON(c.id), "channel": JSON(c.channel.rawValue), "state": JSON(c.state.rawValue), "queue": JSON(c.queue)]
    }

    static func contactAnswer(_ id: String, _ state: ContactCenterState, status: Int) -> Answer {
        guard let c = state.contact(id) else { return error(404, "not_found", "unknown contact \(id)") }
        var fields: [(String, JSON)] = [
            ("contactId", .string(c.id)), ("state", .string(c.state.rawValue)), ("agent", c.agent.map { .string($0) } ?? .null),
            ("region", .string(c.region)), ("queue", .string(c.queue)), ("channel", .string(c.channel.rawValue)),
            ("initiationMethod", .string(c.initiationMethod.rawValue)), ("initialContactId", .string(c.initialContactId)),
            ("previousContactId", c.previousContactId.map { .string($0) } ?? .null), ("abandoned", .bool(c.abandoned)),
            ("attributes", JSON(c.attributes.mapValues { JSON($0) })), ("createdAt", JSON(c.createdAt)),
            ("queuedAt", JSON(c.queuedAt)), ("connectedAt", c.connectedAt.map { JSON($0) } ?? .null),
            ("endedAt", c.endedAt.map { JSON($0) } ?? .null)
        ]
        if let w = state.waitEstimate(contact: id) {
            fields.append(("position", JSON(w.position)))
            fields.append(("estimatedWaitMs", w.estimatedWaitMs.map { JSON($0) } ?? .null))
        }
        fields.append(
            ("steps", .array(c.steps.map { ["name": JSON($0.name), "at": JSON($0.at), "agent": $0.agent.map { JSON($0) } ?? .null] })))
        return (status, .object(fields))
    }

    static func metricsJSON(_ m: RealtimeMetrics) -> JSON {
        func one(_ q: QueueMetrics) -> JSON {
            func opt(_ d: Double?) -> JSON { d.map { JSON(($0 * 100).rounded() / 100) } ?? .null }
            return .object([
                ("contactsInQueue", JSON(q.contactsInQueue)), ("oldestContactAgeMs", q.oldestContactAgeMs.map { JSON($0) } ?? .null),
                ("agentsOnline", JSON(q.agentsOnline)), ("agentsAvailable", JSON(q.agentsAvailable)),
                ("agentsOnContact", JSON(q.agentsOnContact)), ("agentsAfterContactWork", JSON(q.agentsAfterContactWork)),
                ("agentsNonProductive", JSON(q.agentsNonProductive)), ("agentsStaffed", JSON(q.agentsStaffed)),
                ("serviceLevel", opt(q.serviceLevelPercent)), ("abandonmentRate", opt(q.abandonmentRatePercent)),
                ("averageHandleTimeMs", q.averageHandleTimeMs.map { JSON($0) } ?? .null),
                ("averageAnswerWaitMs", q.averageAnswerWaitMs.map { JSON($0) } ?? .null),
                ("contactsEnqueued", JSON(q.contactsEnqueued)), ("contactsAnswered", JSON(q.contactsAnswered)),
                ("contactsAbandoned", JSON(q.contactsAbandoned)), ("contactsHandled", JSON(q.contactsHandled))
            ])
        }
        return .object([("global", one(m.global)), ("regions", .object(m.regions.keys.sorted().map { ($0, one(m.regions[$0]!)) }))])
    }

    static func settingsJSON(_ s: CenterSettings) -> JSON {
        [
            "ringTimeoutMs": JSON(s.ringTimeoutMs), "heartbeatTimeoutMs": JSON(s.heartbeatTimeoutMs),
            "crossRegionDelayMs": JSON(s.crossRegionDelayMs), "preferredAgentWindowMs": JSON(s.preferredAgentWindowMs),
            "reofferDelayMs": JSON(s.reofferDelayMs), "endedRetentionMs": JSON(s.endedRetentionMs), "intervalMs": JSON(s.intervalMs),
            "missesBeforeNonRoutable": JSON(s.missesBeforeNonRoutable)
        ]
    }
}
