import Foundation
import GlobalTable
import Membership
import Routing
import Storage
import TandemCore
import Transport

/// The routing shell: gathers the route table's inputs on this node, rebuilds the table when
/// they change, and serves `/v1/route`, `/v1/split`, `/v1/regions/{r}/drain|undrain|capacity`
/// and `/v1/edges`. All routing rules are in the `Routing` core.
///
/// Inputs:
/// * split, drains, overrides, edges and capacity: items of the reserved global table
///   `_routing`, so every node reads the same ones (one item per drain, per region's capacity
///   and per node's instance health, so concurrent changes of different regions both survive
///   the last-writer-wins merge);
/// * health: this node's membership view through a `HealthTracker` (hold-down), plus each
///   node's instance health, which the node itself publishes in `_routing` (`health/<node>`)
///   when its `--instance-health` poll flips;
/// * region-to-region RTTs: each node publishes its own Vivaldi estimates to every other region
///   (`rtt/<node>`, whole ms, damped by `RTTPublisher`), and every node builds the same matrix
///   from the same items (`RegionRTT.build`).
final class Routes {
    static let table = "_routing"
    static let schema = KeySchema(partitionKey: "key")
    /// The reserved table's catalog entry is the same constant on every node, so nodes that
    /// create it concurrently agree on it (no incarnation replaces another's items).
    static let catalogEntry = CatalogEntry(schema: schema, at: HLC(time: 1 << 16, node: 0))

    struct Settings {
        var holdDown: Duration = .seconds(10)
        /// How often inputs are re-read even with no membership change (config written on
        /// another node, hold-down expiry, instance health).
        var refreshInterval: Duration = .milliseconds(50)
        var instanceHealthURL: String?
        var instanceHealthInterval: Duration = .milliseconds(500)
        /// Consecutive failed polls before the instance counts as unhealthy.
        var instanceHealthFailures = 2
        /// How often this node compares its RTT estimates with what it published.
        var rttCheckInterval: Duration = .seconds(1)
        /// No publication before this long after start: Vivaldi needs some probes to converge.
        var rttWarmUp: Duration = .seconds(5)
        /// At most one rewrite of `rtt/<node>` per interval (and only for a move > 20 %).
        var rttMinInterval: Duration = .seconds(10)
    }

    struct Stats {
        var decisions = 0
        var errors = 0
        var recomputes = 0
        var lastRecomputeMicros = 0.0
    }

    private let tables: Tables
    private let loop: EventLoop
    private let selfName: String
    let settings: Settings
    private var tracker: HealthTracker
    private(set) var current: RouteTable
    private(set) var stats = Stats()
    private let refreshTimer: LoopTimer
    private var pollTimer: LoopTimer?
    private let pollTimeout: LoopTimer
    private var pollConnection: TCPConnection?
    private var pollGeneration: UInt64 = 0
    private var pollFailures = 0
    private var instanceHealthy = true
    /// This node's Vivaldi estimate of the RTT to a member (nil: no coordinate yet).
    var rttEstimate: (String) -> Duration? = { _ in nil }
    private let selfRegion: String
    private var rttPublisher: RTTPublisher
    private let rttTimer: LoopTimer
    private var startedAt: Instant
    private var rttWriting = false
    /// The matrix from the latest `rtt/<node>` items (the table's own may be older when the
    /// difference changed no edge estimate).
    private(set) var regionRTT = RegionRTT()
    /// The membership view, this node included, set by the node.
    var members: () -> [(name: String, region: String, status: MemberStatus, witness: Bool)] = { [] }
    /// This node sees at most half the cluster: it keeps its last health view (see
    /// `HealthTracker.inMinority`).
    private(set) var minority = false

    init(tables: Tables, loop: EventLoop, selfName: String, selfRegion: String, returning: Bool, settings: Settings) {
        self.tables = tables
        self.loop = loop
        self.selfName = selfName
        self.selfRegion = selfRegion
        self.settings = settings
        rttPublisher = RTTPublisher(minInterval: settings.rttMinInterval)
        rttTimer = LoopTimer(loop: loop)
        startedAt = loop.now
        tracker = HealthTracker(holdDown: settings.holdDown, selfName: selfName, selfRegion: selfRegion,
                                selfReturning: returning, now: loop.now)
        current = RouteTable(RouteInputs())
        refreshTimer = LoopTimer(loop: loop)
        pollTimeout = LoopTimer(loop: loop)
        tables.reserve(Routes.table, Routes.catalogEntry)
    }

    func start() {
        // A flag this node published in an earlier life (with `--instance-health`) must not
        // outlive the flag itself.
        if settings.instanceHealthURL == nil && readConfig().healthy[selfName] == false {
            write("health/\(selfName)", ["healthy": true]) { _ in }
        }
        startedAt = loop.now
        if let mine = readConfig().rtt[selfName], mine.region == selfRegion {
            rttPublisher.adopt(mine.rttMs, now: loop.now)  // a restart rewrites only what moved
        }
        rttTimer.start(after: settings.rttCheckInterval, repeating: settings.rttCheckInterval) { [weak self] in self?.publishRTT() }
        refresh()
        refreshTimer.start(after: settings.refreshInterval, repeating: settings.refreshInterval) { [weak self] in self?.refresh() }
        if let url = settings.instanceHealthURL {
            let timer = LoopTimer(loop: loop)
            pollTimer = timer
            timer.start(after: .zero, repeating: settings.instanceHealthInterval) { [weak self] in self?.pollInstance(url) }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Inputs

    /// Re-reads every input; rebuilds the table if any changed. Called on membership changes and
    /// every `refreshInterval`.
    func refresh() {
        let config = readConfig()
        let all = members()
        let known = all.filter { $0.status != .left }
        // Only `alive` counts here (suspects are still served): across a partition the others
        // turn suspect within a probe round of each other, long before the first is declared
        // dead, so the minority freezes before it has removed anyone.
        minority = HealthTracker.inMinority(live: known.filter { $0.status == .alive }.count, known: known.count)
        if !minority {
            var view: [NodeHealth] = []
            for m in all where !m.witness {
                view.append(NodeHealth(name: m.name, region: m.region, serving: m.status.isLive && config.healthy[m.name] != false))
            }
            tracker.observe(view, now: loop.now)
        }
        regionRTT = RegionRTT.build(config.rtt)
        let inputs = RouteInputs(split: config.split, health: tracker.view(now: loop.now), edges: config.edges,
                                 capacity: config.capacity, regionRTT: regionRTT)
        guard inputs != current.inputs else { return }
        // A new matrix that changes no edge estimate changes no decision (and no fingerprint):
        // keep the table, so an RTT publication is not a route change.
        if inputs.regionRTT != current.inputs.regionRTT {
            var same = inputs
            same.regionRTT = current.inputs.regionRTT
            if same == current.inputs && inputs.resolvedEdges == current.resolvedEdges { return }
        }
        let started = loop.now
        current = RouteTable(inputs)
        stats.recomputes += 1
        stats.lastRecomputeMicros = (loop.now - started).milliseconds * 1000
    }

    private struct Config {
        var split = SplitConfig()
        var edges = EdgeConfig()
        var capacity: [String: Int64] = [:]
        var healthy: [String: Bool] = [:]
        var rtt: [String: RTTReport] = [:]
    }

    private var parsedCache: [String: (text: String, value: Any)] = [:]

    /// One JSON document per item (attribute `doc`), parsed once per change.
    private func document(_ key: String, _ text: String) -> [String: Any]? {
        if let cached = parsedCache[key], cached.text == text { return cached.value as? [String: Any] }
        let value = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        parsedCache[key] = (text, value as Any)
        return value
    }

    private func readConfig() -> Config {
        var c = Config()
        guard let replica = tables.replicas[Routes.table] else { return c }
        for (key, state) in replica.items {
            guard case .string(let name) = key.partition, let item = state.visible,
                  case .string(let text)? = item["doc"], let doc = document(name, text) else { continue }
            if name == "split" {
                c.split.weights = (doc["weights"] as? [String: Int]) ?? [:]
                c.split.overrides = (doc["overrides"] as? [String: String]) ?? [:]
            } else if name == "edges" {
                c.edges = Routes.edges(doc)
            } else if name.hasPrefix("drain/"), doc["drained"] as? Bool == true {
                c.split.drained.insert(String(name.dropFirst(6)))
            } else if name.hasPrefix("capacity/"), let agents = doc["agents"] as? Int {
                c.capacity[String(name.dropFirst(9))] = Int64(agents)
            } else if name.hasPrefix("health/"), let healthy = doc["healthy"] as? Bool {
                c.healthy[String(name.dropFirst(7))] = healthy
            } else if name.hasPrefix("rtt/"), let region = doc["region"] as? String, let rtt = doc["rttMs"] as? [String: Int] {
                c.rtt[String(name.dropFirst(4))] = RTTReport(region: region, rttMs: rtt.mapValues { Int64($0) })
            }
        }
        return c
    }

    static func edges(_ doc: [String: Any]) -> EdgeConfig {
        var out = EdgeConfig()
        for (name, value) in (doc["edges"] as? [String: Any]) ?? [:] {
            guard let e = value as? [String: Any], let rtt = e["rttMicros"] as? [String: Int] else { continue }
            out.edges[name] = EdgeConfig.Edge(rttMicros: rtt.mapValues { Int64($0) }, volume: Int64(e["volume"] as? Int ?? 1))
        }
        return out
    }

    /// Writes one `_routing` item durably (replicated like any table write).
    private func write(_ key: String, _ doc: Any, _ done: @escaping (TandemError?) -> Void) {
        let data = (try? JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys])) ?? Data("{}".utf8)
        let values: [String: AttributeValue] = ["key": .string(key), "doc": .string(String(decoding: data, as: UTF8.self))]
        tables.put(table: Routes.table, key: ItemKey(partition: .string(key)), values: values) { [weak self] error in
            self?.refresh()
            done(error)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: RTT publication

    /// This node's estimate of the RTT to each other region: the mean of its Vivaldi estimates
    /// of that region's live nodes (witnesses included: they answer probes like anyone), whole ms.
    func measuredRTT() -> [String: Int64] {
        var sums: [String: (total: Double, count: Int)] = [:]
        for m in members() where m.name != selfName && m.status.isLive && m.region != selfRegion && !m.region.isEmpty {
            guard let d = rttEstimate(m.name) else { continue }
            let old = sums[m.region] ?? (0, 0)
            sums[m.region] = (old.total + d.milliseconds, old.count + 1)
        }
        return sums.mapValues { Int64(($0.total / Double($0.count)).rounded()) }
    }

    /// Publishes `rtt/<node>` when `RTTPublisher` says so (first time after the warm-up, then
    /// only a move of more than 20 %, at most every `rttMinInterval`).
    private func publishRTT() {
        guard !rttWriting, loop.now >= startedAt + settings.rttWarmUp else { return }
        guard let values = rttPublisher.next(measured: measuredRTT(), now: loop.now) else { return }
        rttWriting = true
        write("rtt/\(selfName)", ["region": selfRegion, "rttMs": values]) { [weak self] error in
            guard let self else { return }
            self.rttWriting = false
            // Not written: start over from what the table holds.
            if error != nil { self.rttPublisher = RTTPublisher(minInterval: self.settings.rttMinInterval) }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Instance health

    /// Polls the contact-center instance's health URL without blocking the loop, one poll at a
    /// time, with one reusable timeout timer; publishes a flip.
    private func pollInstance(_ url: String) {
        guard pollConnection == nil else { return }  // the previous poll is still out
        guard let (address, path) = Routes.parseURL(url), let target = try? SocketAddress(address) else {
            return record(healthy: false)
        }
        pollGeneration &+= 1
        let generation = pollGeneration
        var received: [UInt8] = []
        pollTimeout.start(after: settings.instanceHealthInterval) { [weak self] in self?.finishPoll(generation, ok: false) }
        pollConnection = TCPConnection.connect(loop: loop, to: target, timeout: settings.instanceHealthInterval) { [weak self] c, _ in
            guard let c else { self?.finishPoll(generation, ok: false); return }
            c.onData = { received.append(contentsOf: $0) }
            c.onClose = { [weak self] in
                let status = (try? HTTPClient.parse(received))?.status ?? 0
                self?.finishPoll(generation, ok: (200..<300).contains(status))
            }
            c.startReading()
            c.write(Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8))
        }
    }

    private func finishPoll(_ generation: UInt64, ok: Bool) {
        guard generation == pollGeneration, let connection = pollConnection else { return }
        pollConnection = nil
        pollTimeout.stop()
        connection.close()
        record(healthy: ok)
    }

    private func record(healthy ok: Bool) {
        pollFailures = ok ? 0 : pollFailures + 1
        let next = ok ? true : (pollFailures >= settings.instanceHealthFailures ? false : instanceHealthy)
        let published = readConfig().healthy[selfName]
        guard next != instanceHealthy || published != next else { return }
        instanceHealthy = next
        write("health/\(selfName)", ["healthy": next]) { _ in }
    }

    static func parseURL(_ url: String) -> (String, String)? {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        return (String(rest[..<slash]), slash == rest.endIndex ? "/" : String(rest[slash...]))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: HTTP

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
            write("drain/\(s[2])", ["drained": s[3] == "drain"]) { [weak self] error in
                guard let self else { return }
                respond(error.map { .error($0) } ?? self.showSplit())
            }
        case ("PUT", 4, "regions") where s[3] == "capacity":
            guard let doc = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
                  let agents = doc["agents"] as? Int, agents >= 0 else {
                respond(.error(400, "invalid_argument", "body must be {\"agents\": N} with N ≥ 0"))
                return true
            }
            write("capacity/\(s[2])", ["agents": agents]) { [weak self] error in
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

    /// `GET /v1/route?contact=&edge=`: the hot path, so the answer is written by hand.
    private func decide(_ query: [String: String]) -> HTTPResponse {
        guard let contact = query["contact"], !contact.isEmpty else {
            stats.errors += 1
            return .error(400, "invalid_argument", "contact (the contact id) is required: /v1/route?contact=ID&edge=E")
        }
        let edge = query["edge"].flatMap { $0.isEmpty ? nil : $0 }
        do {
            let d = try current.decide(contact: contact, edge: edge)
            stats.decisions += 1
            var out = "{\"contact\":\(Routes.quote(contact)),\"region\":\(Routes.quote(d.region)),\"node\":\(Routes.quote(d.node)),\"fallbacks\":["
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
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// Percent with up to two decimals from basis points (5000 → 50, 3333 → 33.33).
    static func percent(_ bp: Int) -> Any { bp % 100 == 0 ? bp / 100 : Double(bp) / 100 }

    private func showSplit() -> HTTPResponse {
        let t = current
        var weights: [String: Any] = [:]
        for (r, w) in t.inputs.split.weights { weights[r] = Routes.percent(w) }
        func rounded(_ m: [String: Double]) -> [String: Double] { m.mapValues { ($0 * 1_000_000).rounded() / 10_000 } }
        var health: [String: Any] = [:]
        for r in Set(t.regions).union(t.inputs.health.knownRegions) {
            health[r] = [
                "nodes": t.inputs.health.nodes[r] ?? [],
                "drained": t.inputs.split.drained.contains(r),
                "eligible": t.regions.firstIndex(of: r).map { t.eligible[$0] } ?? false,
            ]
        }
        return .json(200, [
            "minority": minority, "weights": weights, "drained": t.inputs.split.drained.sorted(), "overrides": t.inputs.split.overrides,
            "target": rounded(t.targetShares), "effective": rounded(t.effectiveShares), "regions": health,
            "capacity": t.inputs.capacity, "table": fingerprintText(t.fingerprint),
        ])
    }

    private func putSplit(_ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) {
        guard let doc = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let raw = doc["weights"] as? [String: Any], !raw.isEmpty else {
            return respond(.error(400, "invalid_argument", "body must be {\"weights\": {\"region\": percent, …}}"))
        }
        var weights: [String: Int] = [:]
        for (r, v) in raw {
            guard let n = (v as? NSNumber)?.doubleValue, n >= 0, n <= 10_000, !r.isEmpty,
                  abs((n * 100).rounded() - n * 100) < 1e-6 else {
                return respond(.error(400, "invalid_argument", "weight of '\(r)' must be a number from 0 to 10000 with at most two decimals"))
            }
            weights[r] = Int((n * 100).rounded())
        }
        guard weights.values.contains(where: { $0 > 0 }) else {
            return respond(.error(400, "invalid_argument", "at least one region needs a weight above 0"))
        }
        var overrides: [String: String] = [:]
        if let o = doc["overrides"] {
            guard let m = o as? [String: String] else {
                return respond(.error(400, "invalid_argument", "overrides must be {\"edge\": \"region\", …}"))
            }
            overrides = m
        }
        write("split", ["weights": weights, "overrides": overrides]) { [weak self] error in
            guard let self else { return }
            respond(error.map { .error($0) } ?? self.showSplit())
        }
    }

    private func showEdges() -> HTTPResponse {
        var edges: [String: Any] = [:]
        for (name, e) in current.inputs.edges.edges {
            var entry: [String: Any] = ["rttMs": e.rttMicros.mapValues { Double($0) / 1000 }, "volume": e.volume]
            var estimated: [String: Double] = [:]
            for (r, v) in current.resolvedEdges.edges[name]?.rttMicros ?? [:] where e.rttMicros[r] == nil { estimated[r] = Double(v) / 1000 }
            if !estimated.isEmpty { entry["estimatedMs"] = estimated }
            if let plan = current.planShares(edge: name) { entry["plan"] = plan.mapValues { ($0 * 10_000).rounded() / 10_000 } }
            edges[name] = entry
        }
        return .json(200, ["edges": edges, "table": fingerprintText(current.fingerprint)])
    }

    /// `GET /v1/regions/rtt`: the region-to-region matrix from the published reports (symmetric,
    /// ms), the reports themselves, and this node's current estimates.
    private func showRTT() -> HTTPResponse {
        let m = regionRTT
        var matrix: [String: [String: Double]] = [:]
        for (a, row) in m.micros { matrix[a] = row.mapValues { Double($0) / 1000 } }
        var nodes: [String: Any] = [:]
        for (name, report) in readConfig().rtt { nodes[name] = ["region": report.region, "rttMs": report.rttMs] }
        return .json(200, ["rttMs": matrix, "nodes": nodes, "measuredHere": measuredRTT(), "table": fingerprintText(current.fingerprint)])
    }

    /// `{"edges": {"nyc": {"rttMs": {"us-east-1": 8, …}, "volume": 3}, …}}`; the short form
    /// `{"edges": {"nyc": {"us-east-1": 8, …}}}` is accepted too.
    private func putEdges(_ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) {
        guard let doc = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let raw = doc["edges"] as? [String: Any] else {
            return respond(.error(400, "invalid_argument", "body must be {\"edges\": {\"edge\": {\"rttMs\": {\"region\": ms}, \"volume\": n}}}"))
        }
        guard raw.count <= EdgeConfig.maxEdges else {
            return respond(.error(400, "invalid_argument", "at most \(EdgeConfig.maxEdges) edges"))
        }
        var edges: [String: Any] = [:]
        for (name, value) in raw {
            guard let e = value as? [String: Any], !name.isEmpty else {
                return respond(.error(400, "invalid_argument", "edge '\(name)' must be an object"))
            }
            let rtt = (e["rttMs"] as? [String: Any]) ?? (e["volume"] == nil ? e : [:])
            var micros: [String: Int] = [:]
            for (r, v) in rtt {
                guard let ms = (v as? NSNumber)?.doubleValue, ms >= 0, ms < 100_000 else {
                    return respond(.error(400, "invalid_argument", "edge '\(name)': RTT to '\(r)' must be 0 to 100000 ms"))
                }
                micros[r] = Int((ms * 1000).rounded())
            }
            guard !micros.isEmpty else {
                return respond(.error(400, "invalid_argument", "edge '\(name)' needs an RTT to at least one region"))
            }
            let volume = (e["volume"] as? NSNumber)?.intValue ?? 1
            guard volume >= 1, volume <= Int(EdgeConfig.maxVolume) else {
                return respond(.error(400, "invalid_argument", "edge '\(name)': volume must be 1 to \(EdgeConfig.maxVolume)"))
            }
            edges[name] = ["rttMicros": micros, "volume": volume]
        }
        write("edges", ["edges": edges]) { [weak self] error in
            guard let self else { return }
            respond(error.map { .error($0) } ?? self.showEdges())
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Metrics

    func metricsText() -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric("tandem_route_decisions_total", "counter", "Route decisions answered.", "\(stats.decisions)")
        metric("tandem_route_errors_total", "counter", "Route queries answered with an error (400 or 503).", "\(stats.errors)")
        metric("tandem_route_table_recomputes_total", "counter", "Route tables rebuilt after an input changed.", "\(stats.recomputes)")
        metric("tandem_route_table_recompute_us", "gauge", "Time the last rebuild took, in µs.", "\(stats.lastRecomputeMicros)")
        metric("tandem_route_minority", "gauge", "1 while this node sees at most half the cluster and keeps its last health view.", minority ? "1" : "0")
        out += "# HELP tandem_route_table_info The current route table (fingerprint of its inputs).\n# TYPE tandem_route_table_info gauge\n"
        out += "tandem_route_table_info{fingerprint=\"\(fingerprintText(current.fingerprint))\"} 1\n"
        out += "# HELP tandem_route_region_eligible Regions that may take contacts now (1) or not (0).\n# TYPE tandem_route_region_eligible gauge\n"
        for (i, r) in current.regions.enumerated() {
            out += "tandem_route_region_eligible{region=\"\(r)\"} \(current.eligible[i] ? 1 : 0)\n"
        }
        return out
    }
}
