import GlobalTable
import Membership
import Routing
import Storage
import TandemCore
import Transport

/// The routing shell: gathers the route table's inputs on this node, rebuilds the table when
/// they change, and serves `/v1/route`, `/v1/split`, `/v1/regions/{r}/drain|undrain|capacity`
/// and `/v1/edges` (handlers in `API/RoutesREST.swift`). All routing rules are in the `Routing`
/// core, the membership-to-health assembly and the minority rule included (`RouteView`).
///
/// Inputs:
/// * split, drains, overrides, edges and capacity: items of the reserved global table
///   `_routing` (typed attributes, see `RoutingConfig`), so every node reads the same ones (one
///   item per drain, per region's capacity and per node's instance health, so concurrent changes
///   of different regions both survive the last-writer-wins merge);
/// * health: this node's membership view through a `RouteView` (hold-down, minority), plus each
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
    private var view: RouteView
    private(set) var current: RouteTable
    /// Counted by the HTTP handlers too (`RoutesREST.swift`).
    var stats = Stats()
    private let refreshTimer: LoopTimer
    private var pollTimer: LoopTimer?
    private let pollTimeout: LoopTimer
    private var pollConnection: TCPConnection?
    private var pollGeneration: UInt64 = 0
    private var pollFailures = 0
    private var instanceHealthy = true
    /// Told when the table is replaced (not for the first table a node builds), and when this
    /// node's contact-center instance turns healthy or unhealthy (`_events`).
    var onChange: (_ old: RouteTable, _ new: RouteTable) -> Void = { _, _ in }
    var onInstanceHealth: (_ healthy: Bool) -> Void = { _ in }
    /// This node's Vivaldi estimate of the RTT to a member (nil: no coordinate yet).
    var rttEstimate: (String) -> Duration? = { _ in nil }
    /// False while this node's membership view is not yet the cluster's (just restarted, not yet
    /// synced with a peer): routes are then refused (503) rather than decided from a partial view.
    var viewReady: () -> Bool = { true }
    /// When membership last saw this node return in the others' eyes (rejoined after a restart,
    /// or refuted its own death), if ever: it holds itself down from then, as they do.
    var selfReturnedAt: () -> Instant? = { nil }
    private var selfReturnSeen: Instant?
    private let selfRegion: String
    private var rttPublisher: RTTPublisher
    private let rttTimer: LoopTimer
    private var startedAt: Instant
    private var rttWriting = false
    /// The matrix from the latest `rtt/<node>` items (the table's own may be older when the
    /// difference changed no edge estimate).
    private(set) var regionRTT = RegionRTT()
    /// The membership view, this node included, set by the node.
    var members: () -> [(name: String, region: String, status: MemberStatus, witness: Bool, returnedAt: Instant?)] = { [] }
    /// This node sees at most half the cluster: it keeps its last health view (see
    /// `RouteView.observe`).
    var minority: Bool { view.minority }

    init(tables: Tables, loop: EventLoop, selfName: String, selfRegion: String, returning: Bool, settings: Settings) {
        self.tables = tables
        self.loop = loop
        self.selfName = selfName
        self.selfRegion = selfRegion
        self.settings = settings
        rttPublisher = RTTPublisher(minInterval: settings.rttMinInterval)
        rttTimer = LoopTimer(loop: loop)
        startedAt = loop.now
        view = RouteView(
            holdDown: settings.holdDown, selfName: selfName, selfRegion: selfRegion,
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
            write("health/\(selfName)", RoutingConfig.item(healthy: true)) { _ in }
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
        if let at = selfReturnedAt(), at != selfReturnSeen {
            selfReturnSeen = at
            view.selfReturned(at: at)
        }
        let seen = members().map {
            RouteMember(name: $0.name, region: $0.region, status: Routes.status($0.status), witness: $0.witness, returnedAt: $0.returnedAt)
        }
        view.observe(seen, instanceHealthy: config.healthy, now: loop.now)
        regionRTT = RegionRTT.build(config.rtt)
        let inputs = RouteInputs(
            split: config.split, health: view.health(now: loop.now), edges: config.edges,
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
        let previous = current
        current = RouteTable(inputs)
        if previous.inputs != RouteInputs() { onChange(previous, current) }
        stats.recomputes += 1
        stats.lastRecomputeMicros = (loop.now - started).milliseconds * 1000
    }

    /// Routing does not import Membership: its own status of a member.
    static func status(_ s: MemberStatus) -> RouteMember.Status {
        switch s {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        }
    }

    private var lastConfig = RoutingConfig()

    /// Every input item of `_routing`, decoded (typed attributes, or an older node's JSON text).
    /// If the store fails a read, the last config read stands.
    func readConfig() -> RoutingConfig {
        guard let replica = tables.replicas[Routes.table] else { return RoutingConfig() }
        var items: [(key: String, attributes: [String: AttributeValue])] = []
        do {
            for (key, state) in try replica.allItems() {
                guard case .string(let name) = key.partition, let item = state.visible else { continue }
                items.append((name, item))
            }
        } catch {
            return lastConfig
        }
        lastConfig = RoutingConfig(items: items)
        return lastConfig
    }

    /// Writes one `_routing` item durably (replicated like any table write), replacing it whole.
    func write(_ key: String, _ fields: [String: AttributeValue], _ done: @escaping (TandemError?) -> Void) {
        var values = fields
        values["key"] = .string(key)
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
        write("rtt/\(selfName)", RoutingConfig.item(rtt: RTTReport(region: selfRegion, rttMs: values))) { [weak self] error in
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
        if next != instanceHealthy { onInstanceHealth(next) }
        instanceHealthy = next
        write("health/\(selfName)", RoutingConfig.item(healthy: next)) { _ in }
    }

    static func parseURL(_ url: String) -> (String, String)? {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        return (String(rest[..<slash]), slash == rest.endIndex ? "/" : String(rest[slash...]))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Metrics

    func metrics(_ out: inout MetricsText) {
        out.add("tandem_route_decisions_total", .counter, "Route decisions answered.", stats.decisions)
        out.add("tandem_route_errors_total", .counter, "Route queries answered with an error (400 or 503).", stats.errors)
        out.add("tandem_route_table_recomputes_total", .counter, "Route tables rebuilt after an input changed.", stats.recomputes)
        out.add("tandem_route_table_recompute_us", .gauge, "Time the last rebuild took, in µs.", stats.lastRecomputeMicros)
        out.add(
            "tandem_route_minority", .gauge, "1 while this node sees at most half the cluster and keeps its last health view.",
            minority ? 1 : 0)
        out.add(
            "tandem_route_table_info", .gauge, "The current route table (fingerprint of its inputs).",
            samples: [([("fingerprint", fingerprintText(current.fingerprint))], 1)])
        out.add(
            "tandem_route_region_eligible", .gauge, "Regions that may take contacts now (1) or not (0).",
            samples: current.regions.enumerated().map { i, r in ([("region", r)], current.eligible[i] ? 1 : 0) })
    }
}
