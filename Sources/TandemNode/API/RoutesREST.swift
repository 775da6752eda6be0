import GlobalTable
import Routing
import TandemCore
import Transport

/// The routing endpoints: `GET /v1/route` (the hot path), `GET|PUT /v1/split`, `GET|PUT
/// /v1/edges`, `GET /v1/regions/rtt`, `POST /v1/regions/{r}/drain|undrain` and `PUT
/// /v1/regions/{r}/capacity`. Bodies are parsed with `TandemCore.JSON`; writes go to `_routing`
/// through `Routes.write` (typed attributes, `RoutingConfig`).
extension Routes {
    /// Handles the routing endpoints; false if the path is not ours.
    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        // The hot path first, before any splitting of the path.
        if request.path == "/v1/route" && request.method == "GET" {
            respond(decide(request.query))
            return true
        }
        let s = request.segments
        guard s.count >= 2, s[0] == "v1" else { return false }
        switch (request.method, s.count, s[1]) {
        case ("GET", 2, "route"): respond(decide(request.query))
        case ("GET", 2, "split"): respond(showSplit())
        case ("PUT", 2, "split"): putSplit(request.body, respond)
        case ("GET", 2, "edges"): respond(showEdges())
        case ("GET", 3, "regions") where s[2] == "rtt": respond(showRTT())
        case (_, 3, "regions") where s[2] == "rtt":
            respond(.error(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)"))
        case ("PUT", 2, "edges"): putEdges(request.body, respond)
        case ("POST", 4, "regions") where s[3] == "drain" || s[3] == "undrain":
            write("drain/\(s[2])", RoutingConfig.item(drained: s[3] == "drain")) { [weak self] error in
                guard let self else { return }
                respond(error.map { .error($0) } ?? self.showSplit())
            }
        case ("PUT", 4, "regions") where s[3] == "capacity":
            guard let doc = Routes.object(request.body), let agents = doc["agents"].flatMap(Routes.whole), agents >= 0 else {
                respond(.error(400, "invalid_argument", "body must be {\"agents\": N} with N ≥ 0"))
                return true
            }
            write("capacity/\(s[2])", RoutingConfig.item(agents: agents)) { [weak self] error in
                guard let self else { return }
                respond(error.map { .error($0) } ?? self.showSplit())
            }
        case (_, 2, "route"), (_, 2, "split"), (_, 2, "edges"):
            respond(.error(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)"))
        default:
            return false
        }
        return true
    }

    /// The region `/v1/route` would choose for `key` (a new contact's customer): a 400 for an
    /// unknown edge, 503 while no region can be chosen.
    func region(forKey key: String, edge: String?) -> Result<String, TandemError> {
        guard viewReady() else { return .failure(TandemError(.unavailable, "membership not synced yet")) }
        do throws(RouteError) {
            return .success(try current.decide(contact: key, edge: edge).region)
        } catch .unknownEdge(let e) {
            return .failure(TandemError(.badRequest, "no edge '\(e)' in the edges config (GET /v1/edges)"))
        } catch {
            return .failure(TandemError(.unavailable, "no healthy region"))
        }
    }

    /// `GET /v1/route?contact=&edge=`: the hot path, so the answer is written by hand.
    private func decide(_ query: [String: String]) -> HTTPResponse {
        guard let contact = query["contact"], !contact.isEmpty else {
            stats.errors += 1
            return .error(400, "invalid_argument", "contact (the contact id) is required: /v1/route?contact=ID&edge=E")
        }
        let edge = query["edge"].flatMap { $0.isEmpty ? nil : $0 }
        guard viewReady() else {
            stats.errors += 1
            return .error(503, "not_ready", "this node has just started and has not yet synced its membership view; ask another node")
        }
        do {
            let d = try current.decide(contact: contact, edge: edge)
            stats.decisions += 1
            var out =
                "{\"contact\":\(Routes.quote(contact)),\"region\":\(Routes.quote(d.region)),\"node\":\(Routes.quote(d.node)),\"fallbacks\":["
            for (i, f) in d.fallbacks.enumerated() { out += (i == 0 ? "" : ",") + Routes.quote(f) }
            out += "],\"table\":\"\(fingerprintText(d.fingerprint))\"}\n"
            return HTTPResponse(status: 200, body: Array(out.utf8))
        } catch .unknownEdge(let e) {
            stats.errors += 1
            return .error(400, "unknown_edge", "no edge '\(e)' in the edges config (GET /v1/edges)")
        } catch {
            stats.errors += 1
            return .error(503, "no_healthy_region", "no region can take contacts: every region with a share is dead, drained or unhealthy")
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// Percent with up to two decimals from basis points (5000 → 50, 3333 → 33.33).
    static func percent(_ bp: Int) -> JSON { bp % 100 == 0 ? JSON(bp / 100) : JSON(Double(bp) / 100) }

    private func showSplit() -> HTTPResponse {
        let t = current
        let weights = t.inputs.split.weights.mapValues(Routes.percent)
        func rounded(_ m: [String: Double]) -> JSON { JSON(m.mapValues { JSON(($0 * 1_000_000).rounded() / 10_000) }) }
        var health: [String: JSON] = [:]
        for r in Set(t.regions).union(t.inputs.health.knownRegions) {
            health[r] = [
                "nodes": JSON(t.inputs.health.nodes[r] ?? []),
                "drained": JSON(t.inputs.split.drained.contains(r)),
                "eligible": JSON(t.regions.firstIndex(of: r).map { t.eligible[$0] } ?? false)
            ]
        }
        return .json(
            200,
            [
                "minority": JSON(minority), "weights": JSON(weights), "drained": JSON(t.inputs.split.drained.sorted()),
                "overrides": JSON(t.inputs.split.overrides.mapValues(JSON.string)),
                "target": rounded(t.targetShares), "effective": rounded(t.effectiveShares), "regions": JSON(health),
                "capacity": JSON(t.inputs.capacity.mapValues { JSON($0) }), "table": JSON(fingerprintText(t.fingerprint))
            ])
    }

    private func putSplit(_ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) {
        guard let doc = Routes.object(body), let raw = doc["weights"].flatMap(Routes.members), !raw.isEmpty else {
            return respond(.error(400, "invalid_argument", "body must be {\"weights\": {\"region\": percent, …}}"))
        }
        var weights: [String: Int] = [:]
        for (r, v) in raw {
            guard let n = Routes.number(v), n >= 0, n <= 10_000, !r.isEmpty,
                abs((n * 100).rounded() - n * 100) < 1e-6
            else {
                return respond(
                    .error(400, "invalid_argument", "weight of '\(r)' must be a number from 0 to 10000 with at most two decimals"))
            }
            weights[r] = Int((n * 100).rounded())
        }
        guard weights.values.contains(where: { $0 > 0 }) else {
            return respond(.error(400, "invalid_argument", "at least one region needs a weight above 0"))
        }
        var overrides: [String: String] = [:]
        if let o = doc["overrides"] {
            guard let m = Routes.members(o) else {
                return respond(.error(400, "invalid_argument", "overrides must be {\"edge\": \"region\", …}"))
            }
            for (edge, region) in m {
                guard case .string(let r) = region else {
                    return respond(.error(400, "invalid_argument", "overrides must be {\"edge\": \"region\", …}"))
                }
                overrides[edge] = r
            }
        }
        write("split", RoutingConfig.item(split: SplitConfig(weights: weights, overrides: overrides))) { [weak self] error in
            guard let self else { return }
            respond(error.map { .error($0) } ?? self.showSplit())
        }
    }

    private func showEdges() -> HTTPResponse {
        var edges: [String: JSON] = [:]
        for (name, e) in current.inputs.edges.edges {
            var entry: [String: JSON] = ["rttMs": JSON(e.rttMicros.mapValues { JSON(Double($0) / 1000) }), "volume": JSON(e.volume)]
            var estimated: [String: JSON] = [:]
            for (r, v) in current.resolvedEdges.edges[name]?.rttMicros ?? [:] where e.rttMicros[r] == nil {
                estimated[r] = JSON(Double(v) / 1000)
            }
            if !estimated.isEmpty { entry["estimatedMs"] = JSON(estimated) }
            if let plan = current.planShares(edge: name) { entry["plan"] = JSON(plan.mapValues { JSON(($0 * 10_000).rounded() / 10_000) }) }
            edges[name] = JSON(entry)
        }
        return .json(200, ["edges": JSON(edges), "table": JSON(fingerprintText(current.fingerprint))])
    }

    /// `GET /v1/regions/rtt`: the region-to-region matrix from the published reports (symmetric,
    /// ms), the reports themselves, and this node's current estimates.
    private func showRTT() -> HTTPResponse {
        let m = regionRTT
        var matrix: [String: JSON] = [:]
        for (a, row) in m.micros { matrix[a] = JSON(row.mapValues { JSON(Double($0) / 1000) }) }
        var nodes: [String: JSON] = [:]
        for (name, report) in readConfig().rtt {
            nodes[name] = ["region": JSON(report.region), "rttMs": JSON(report.rttMs.mapValues { JSON($0) })]
        }
        return .json(
            200,
            [
                "rttMs": JSON(matrix), "nodes": JSON(nodes), "measuredHere": JSON(measuredRTT().mapValues { JSON($0) }),
                "table": JSON(fingerprintText(current.fingerprint))
            ])
    }

    /// `{"edges": {"nyc": {"rttMs": {"us-east-1": 8, …}, "volume": 3}, …}}`; the short form
    /// `{"edges": {"nyc": {"us-east-1": 8, …}}}` is accepted too.
    private func putEdges(_ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) {
        guard let doc = Routes.object(body), let raw = doc["edges"].flatMap(Routes.members) else {
            return respond(
                .error(400, "invalid_argument", "body must be {\"edges\": {\"edge\": {\"rttMs\": {\"region\": ms}, \"volume\": n}}}"))
        }
        guard raw.count <= EdgeConfig.maxEdges else {
            return respond(.error(400, "invalid_argument", "at most \(EdgeConfig.maxEdges) edges"))
        }
        var edges = EdgeConfig()
        for (name, value) in raw {
            guard let e = Routes.members(value), !name.isEmpty else {
                return respond(.error(400, "invalid_argument", "edge '\(name)' must be an object"))
            }
            let rtt = e["rttMs"].flatMap(Routes.members) ?? (e["volume"] == nil ? e : [:])
            var micros: [String: Int64] = [:]
            for (r, v) in rtt {
                guard let ms = Routes.number(v), ms >= 0, ms < 100_000 else {
                    return respond(.error(400, "invalid_argument", "edge '\(name)': RTT to '\(r)' must be 0 to 100000 ms"))
                }
                micros[r] = Int64((ms * 1000).rounded())
            }
            guard !micros.isEmpty else {
                return respond(.error(400, "invalid_argument", "edge '\(name)' needs an RTT to at least one region"))
            }
            // A fractional volume is truncated (2.7 → 2), a non-number one is 1, as before.
            let volume = e["volume"].flatMap(Routes.number) ?? 1
            guard volume >= 1, volume < Double(EdgeConfig.maxVolume + 1) else {
                return respond(.error(400, "invalid_argument", "edge '\(name)': volume must be 1 to \(EdgeConfig.maxVolume)"))
            }
            edges.edges[name] = EdgeConfig.Edge(rttMicros: micros, volume: Int64(volume))
        }
        write("edges", RoutingConfig.item(edges: edges)) { [weak self] error in
            guard let self else { return }
            respond(error.map { .error($0) } ?? self.showEdges())
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Request bodies

    /// A body that is a JSON object, as its members (a later duplicate wins).
    static func object(_ body: [UInt8]) -> [String: JSON]? {
        guard let doc = try? JSON.parse(body) else { return nil }
        return members(doc)
    }

    static func members(_ json: JSON) -> [String: JSON]? {
        guard case .object(let list) = json else { return nil }
        var out: [String: JSON] = [:]
        for (name, value) in list { out[name] = value }
        return out
    }

    static func number(_ json: JSON) -> Double? {
        guard case .number(let text) = json else { return nil }
        return Double(text)
    }

    /// A whole number (`5`, `5.0`, `5E2`), exactly; nil for a fraction or out of Int64.
    static func whole(_ json: JSON) -> Int64? {
        guard case .number(let text) = json, let n = DecimalNumber(text) else { return nil }
        return Int64(n.description)
    }
}
