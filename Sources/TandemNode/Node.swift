import Foundation
import GlobalTable
import Logging
import Membership
import Storage
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
    let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
#endif

/// How to start a node (the `tandem node` flags).
public struct NodeConfig {
    public var name: String
    public var region: String
    public var role = NodeRole.voter
    /// `host:port` for gossip (UDP) and peer links (TCP); may be a wildcard (`0.0.0.0`, `[::]`)
    /// when `advertise` is set.
    public var bind: String
    /// `host:port` (an IP address) peers are told to reach this node at (`--advertise`): behind
    /// NAT or in a container, the address others see. Nil: `bind`, which must then be an address.
    public var advertise: String?
    /// `host:port` of the HTTP API.
    public var api: String
    /// `host:port` clients are told the API is at (`--advertise-api`). Nil: `api`, or with a
    /// wildcard `api` the advertised host with the API's port.
    public var advertiseAPI: String?
    public var dataDir: String
    public var seeds: [String] = []
    public var profileName = "region"
    public var settings: MembershipSettings = .region
    /// Enables `POST/DELETE /v1/chaos` (packet loss and blocked peers, for tests). Off by default.
    public var chaos = false
    /// Routing: hold-down before a returning node takes contacts, and the URL of this node's
    /// contact-center instance health check (`--instance-health`), polled when set.
    public var holdDown: Duration = .seconds(10)
    public var instanceHealthURL: String?
    /// `--keyring FILE`: seal all cluster traffic. A keyring persisted in the data dir (rotated
    /// with `tandem keys`) takes precedence over the file.
    public var keyringPath: String?
    /// `--api-tokens FILE`: `TOKEN ROLE [ACCESS_KEY_ID]` per line; when set, the HTTP API requires a bearer
    /// token, or (AWS APIs) a SigV4 signature by an access key id of the file.
    public var apiTokensPath: String?
    /// HTTP limits (`--request-timeout`, `--max-client-connections`).
    public var httpLimits = HTTPServer.Limits()
    /// Streams, for tests only: how long a retention "hour" is, and the segment size.
    public var streamHourMs: UInt64 = 3_600_000
    public var streamSegmentBytes: Int = 64 << 20
    /// Entries the contact center applies between two snapshots of its state (tests shorten it).
    public var centerSnapshotEntries: UInt64 = 20_000
    /// Table writes waiting for the disk before new ones are refused (tests set 0: all refused).
    public var maxQueuedWrites = 50_000
    /// Decoded table items cached per generation (`GlobalTable.ItemCache`).
    public var tableCacheItems = 16_384
    /// Stream puts waiting for their commit, per partition, before new ones are refused.
    public var maxPendingPuts = 10_000
    /// Streams, for the benchmark's comparison: a put forwarded by a replica is answered only
    /// by the leader (as before replicas answered puts they have committed themselves).
    public var streamLeaderAnswersOnly = false

    public init(name: String, region: String, bind: String, api: String, dataDir: String) {
        self.name = name
        self.region = region
        self.bind = bind
        self.api = api
        self.dataDir = dataDir
    }
}

/// The I/O shell around the cores: one libuv loop, UDP gossip, TCP peer links, the HTTP API,
/// timers, signals and the data dir. It decodes inputs, feeds them to the cores, and carries out
/// the directives they return; it holds no protocol rules of its own.
public final class Node {
    public let config: NodeConfig
    let loop = EventLoop()
    let logger: Logger
    let dataDir: DataDir
    var membership: MembershipInstance
    let udp: UDPSocket
    let peers: PeerLinks
    let http: HTTPServer
    let store: LMDBStore
    let tables: Tables
    let streams: Streams
    let routes: Routes
    let processors: Processors
    let center: Center
    let dynamo: DynamoAPI
    let changeStreams: ChangeStreams
    let dynamoStreams: DynamoStreamsAPI
    let kinesis: KinesisAPI
    private let peerServer: TCPServer
    private let tickTimer: LoopTimer
    private var signals: [SignalWatcher] = []
    private var shutdownTimer: LoopTimer?
    let startedAt: Instant
    var shell = ShellStats()
    var chaos = ChaosSettings() {
        didSet {
            DiskFaults.process.fsyncFails = chaos.fsyncFails
            DiskFaults.process.readFailsUnder = chaos.readFailsUnder
        }
    }
    private lazy var udpDelay = DelayLine(loop: loop)
    private var lastMalformedLog: Instant = .zero
    private var lastUnauthenticatedLog: Instant = .zero
    private var lastCommitFailureLog: Instant = .zero
    /// The address peers reach this node at (`--advertise`, else the bind address).
    let advertised: String
    /// This node's own addresses, as older records may name it.
    private let selfLegacyAddresses: LegacyAddresses
    /// Cluster encryption (nil: traffic is plain).
    let keyring: Keyring?
    /// Client API tokens (nil: the API is open).
    let apiTokens: APITokens?
    private var replayGuard = ReplayGuard()

    struct ShellStats {
        var packetsIn = 0
        var packetsOut = 0
        var bytesIn = 0
        var bytesOut = 0
        var malformedPackets = 0
        var chaosDropped = 0
        var persistFailures = 0
        var unauthenticatedPackets = 0
        var replayedPackets = 0
        /// Error answers of the AWS-compatible APIs, by service and error type (`dynamodb`,
        /// `ValidationException`): bad input is answered and counted, never dropped silently.
        var awsErrors: [AWSErrorKey: Int] = [:]
    }

    struct AWSErrorKey: Hashable {
        var service: String
        var type: String
    }

    /// Opt-in fault injection (`--chaos`): drops a share of gossip datagrams and all traffic with
    /// blocked peers, in both directions. Used by tests and benchmarks on loopback, where the
    /// kernel offers no netem.
    struct ChaosSettings {
        var dropRate = 0.0
        var blocked: Set<String> = []
        /// One-way delay of everything sent to peers, and per destination host (IP) on top.
        var delay: Duration = .zero
        var delays: [String: Duration] = [:]
        /// Every fsync of this node's stores fails with EIO (`DiskFaults`).
        var fsyncFails = false
        /// Reads of the stream logs whose directory contains this fail with EIO (`DiskFaults`).
        var readFailsUnder: String?

        func delay(to host: String) -> Duration { delay + (delays[host] ?? .zero) }
    }

    public init(config: NodeConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        Node.raiseOpenFileLimit()
        for (flag, value) in [("name", config.name), ("region", config.region), ("role", config.role.rawValue)] {
            guard !value.isEmpty, ByteWriter.fitsShortString(value) else {
                throw TandemError(.invalidArgument, "--\(flag) must be 1 to 255 bytes of UTF-8")
            }
        }
        let bindAddress = try SocketAddress(config.bind)
        let apiAddress = try SocketAddress(config.api)
        let advertised = try Node.advertised(config.advertise, bind: bindAddress, flag: "--advertise", of: "--bind")
        let advertisedAPI: String
        if let a = config.advertiseAPI {
            advertisedAPI = try Node.advertised(a, bind: apiAddress, flag: "--advertise-api", of: "--api")
        } else if apiAddress.isWildcard {
            advertisedAPI = "\(PeerLinks.host(of: advertised)):\(apiAddress.port)"
        } else {
            advertisedAPI = apiAddress.description
        }
        self.advertised = advertised
        var legacy = LegacyAddresses()
        if !bindAddress.isWildcard { legacy.add(address: bindAddress.description, name: NodeID(config.name)) }
        legacy.add(address: advertised, name: NodeID(config.name))
        selfLegacyAddresses = legacy
        dataDir = try DataDir(path: config.dataDir, name: config.name)
        // One more than any incarnation used before: a restarted node outranks its old self.
        let incarnation = dataDir.loadIncarnation() + 1
        try dataDir.storeIncarnation(incarnation)
        startedAt = loop.now
        membership = MembershipInstance(
            settings: config.settings, name: config.name, address: advertised,
            meta: MemberMeta(region: config.region, api: advertisedAPI, role: config.role),
            incarnation: incarnation, seed: UInt64.random(in: .min ... .max), now: startedAt)
        keyring = try Node.loadKeyring(config, dataDir)
        apiTokens = try config.apiTokensPath.map { try APITokens.load(path: $0) }
        store = try LMDBStore(path: config.dataDir)
        var replication = Tables.Replication()
        replication.core.cachedItems = config.tableCacheItems
        tables = try Tables(store: store, loop: loop, peerID: NodeID(config.name), replication: replication)
        tables.maxQueuedWrites = config.maxQueuedWrites
        routes = Routes(
            tables: tables, loop: loop, selfName: config.name, selfRegion: config.region, returning: incarnation > 1,
            settings: Routes.Settings(holdDown: config.holdDown, instanceHealthURL: config.instanceHealthURL))
        udp = try UDPSocket(loop: loop, bind: bindAddress)
        peerServer = try TCPServer(loop: loop, bind: bindAddress)
        peers = PeerLinks(loop: loop, server: peerServer, keyring: keyring)
        http = try HTTPServer(loop: loop, bind: apiAddress, limits: config.httpLimits)
        streams = Streams(
            loop: loop, logger: logger, selfID: NodeID(config.name), isWitness: config.role == .witness,
            profile: config.profileName, dataDir: config.dataDir, tables: tables, peers: peers,
            hourMs: config.streamHourMs, segmentBytes: config.streamSegmentBytes,
            replicasAnswerForwardedPuts: !config.streamLeaderAnswersOnly)
        changeStreams = ChangeStreams(tables: tables, loop: loop)
        changeStreams.region = config.region
        changeStreams.selfName = config.name
        dynamoStreams = DynamoStreamsAPI(streams: changeStreams)
        processors = Processors(loop: loop, tables: tables, streams: streams, logger: logger)
        processors.changeStreams = changeStreams
        processors.region = config.region
        processors.selfName = config.name
        processors.events.selfName = config.name
        center = Center(loop: loop, streams: streams, peers: peers, logger: logger)
        center.region = config.region
        center.snapshotEvery = config.centerSnapshotEntries
        center.answer = Center.answer
        dynamo = DynamoAPI(tables: tables)
        dynamo.changeStreams = changeStreams
        streams.maxPendingPuts = config.maxPendingPuts
        kinesis = KinesisAPI(streams: streams)
        tickTimer = LoopTimer(loop: loop)

        // Callbacks handed to the services, the transport and the loop's timers hold the node
        // weakly: one run while the node is being torn down finds it gone and does nothing.
        // (The loop's deinit runs one last turn, which fired the tick timer — still armed, its
        // owner half torn down — into a freed node through `unowned`: exit 134 at SIGINT, seen
        // under valgrind, where teardown is slow; gdb put it at the tick timer's closure.)
        try udp.start { [weak self] bytes, from in self?.receive(bytes, from: from) }
        peers.onUnauthenticated = { [weak self] from in
            self?.logUnauthenticated(from?.description ?? "?", "peer frame not sealed with a keyring key")
        }
        peers.onReplayed = { [weak self] from in
            self?.logUnauthenticated(from?.description ?? "?", "replayed peer frame (not the next of a fresh session)")
        }
        tables.onCommitFailure = { [weak self] error in
            // Writes are refused (5xx, counted) while the disk fails; reads go on. One line per 10 s.
            guard let self else { return }
            let now = self.loop.now
            guard now - self.lastCommitFailureLog > .seconds(10) else { return }
            self.lastCommitFailureLog = now
            self.logger.error("table writes failing, refused and not acknowledged; reads continue", metadata: ["error": "\(error)"])
        }
        peers.onRequest = { [weak self] frame, from, reply in self?.serve(frame, from: from, reply: reply) }
        peers.onLinkClosed = { [weak self] address in
            guard let self else { return }
            self.apply(self.membership.onLinkLost(address: address, now: self.loop.now))
        }
        peers.isBlocked = { [weak self] address in self?.chaos.blocked.contains(address) ?? false }
        if config.chaos { peers.delay = { [weak self] host in self?.chaos.delay(to: host) ?? .zero } }
        http.handler = { [weak self] request, respond in
            guard let self else { return respond(.error(503, "stopping", "this node is stopping")) }
            // Authorization happens here, once, before any endpoint sees the request.
            // The AWS JSON protocols: `POST /` naming the operation in X-Amz-Target (SigV4 or a
            // bearer token, answered in the services' error shapes).
            if request.method == "POST", request.path == "/", let target = request.header("X-Amz-Target") {
                if let denial = self.apiTokens?.checkAWS(request, target: target, nowMs: Int64(Tables.wallMs())) { return respond(denial) }
                return self.aws(target, request, respond)
            }
            if let denial = self.apiTokens?.check(request) { return respond(denial) }
            if !self.routes.route(request, respond) && !self.tables.route(request, respond) && !self.streams.route(request, respond)
                && !self.processors.route(request, respond) && !self.center.route(request, respond)
            {
                respond(self.route(request))
            }
        }
        // A launcher may have left these blocked (threads of a test runner do); leaving
        // gracefully depends on receiving them.
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        sigaddset(&mask, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
        tables.members = { [weak self] in
            guard let self else { return [] }
            return self.membership.members.values.map { (NodeID($0.name), $0.status == .alive) }
        }
        tables.legacyAddresses = { [weak self] in self?.legacyAddresses() ?? LegacyAddresses() }
        tables.request = { [weak self] to, kind, payload, done in
            guard let self else { return done(.failure(TandemError(.unavailable, "this node is stopping"))) }
            guard let address = self.address(of: to) else { return done(.failure(TandemError(.unavailable, "no member \(to)"))) }
            self.peers.request(to: address, kind: kind, payload: payload, timeout: .seconds(5), done)
        }
        tables.start()
        changeStreams.start()
        streams.members = { [weak self] in
            // A suspect is not yet a failure (SWIM): it still counts for placement and
            // forwarding, so a brief suspicion while a stream is created cannot leave a node out
            // of its replicas for good.
            guard let self else { return [] }
            return self.membership.memberStates.map {
                Streams.MemberInfo(
                    id: NodeID($0.name), address: $0.address, api: $0.meta.api, region: $0.meta.region,
                    role: $0.meta.role, alive: $0.status == .alive || $0.status == .suspect, left: $0.status == .left)
            }
        }
        streams.addressOf = { [weak self] id in self?.address(of: id) }
        streams.legacyAddresses = { [weak self] in self?.legacyAddresses() ?? LegacyAddresses() }
        streams.membershipSynced = { [weak self] in
            guard let self else { return false }
            return self.membership.isSynced(now: self.loop.now)
        }
        streams.start()
        routes.members = { [weak self] in
            guard let self else { return [] }
            return [(self.config.name, self.config.region, self.membership.leaving ? .left : .alive, self.config.role == .witness, nil)]
                + self.membership.members.values.map {
                    ($0.name, $0.state.meta.region, $0.status, $0.state.meta.role == .witness, $0.returnedAt)
                }
        }
        routes.viewReady = { [weak self] in
            guard let self else { return false }
            return self.membership.isSynced(now: self.loop.now)
        }
        routes.selfReturnedAt = { [weak self] in self?.membership.returnedAt }
        routes.rttEstimate = { [weak self] name in
            guard let self else { return nil }
            return self.membership.members[name]?.coordinate.map { self.membership.vivaldi.coordinate.distance(to: $0) }
        }
        routes.onChange = { [weak self] old, new in self?.processors.events.routeChanged(from: old, to: new) }
        routes.onInstanceHealth = { [weak self] healthy in
            guard let self else { return }
            self.processors.events.emit(
                "instance.health",
                [("node", .string(self.config.name)), ("region", .string(self.config.region)), ("healthy", .bool(healthy))],
                everyNode: true)
        }
        routes.start()
        processors.start()
        center.decideRegion = { [weak self] key, edge in
            guard let self else { return .failure(TandemError(.unavailable, "stopping")) }
            return self.routes.region(forKey: key, edge: edge)
        }
        center.start()
        watchParent()
        for sig in [SIGINT, SIGTERM] {
            signals.append(SignalWatcher(loop: loop, signal: sig) { [weak self] in self?.shutdown() })
        }
        logger.info(
            "node started",
            metadata: [
                "name": "\(config.name)", "region": "\(config.region)", "bind": "\(bindAddress)", "advertise": "\(advertised)",
                "api": "\(apiAddress)", "advertiseAPI": "\(advertisedAPI)", "incarnation": "\(incarnation)",
                "profile": "\(config.profileName)",
                "apiTokens": "\(apiTokens.map { "\($0.count)" } ?? "off")",
                "encryption": "\(keyring.map { "on, \($0.keys.count) keys, primary \($0.primary.idHex)" } ?? "off")"
            ])
        // Seeds in canonical form, so `localhost:7946` and our own address compare equal; a
        // DNS name is kept as given and resolved at every attempt (`resolve`).
        var seeds: [String] = []
        for seed in config.seeds {
            if let address = try? SocketAddress(seed) {
                seeds.append(address.description)
            } else {
                guard NodeID(seed).looksLikeAddress else { throw TandemError(.invalidArgument, "--seed '\(seed)' is not host:port") }
                seeds.append(seed)
            }
        }
        apply(membership.join(seeds: seeds, now: loop.now))
    }

    private var parentWatch: LoopTimer?

    /// Tooling that launches nodes (tests, demo, bench) sets `TANDEM_PARENT_PID`: the node exits
    /// when that process is gone, so a killed test run never leaves nodes behind.
    private func watchParent() {
        guard let raw = ProcessInfo.processInfo.environment["TANDEM_PARENT_PID"], let pid = Int32(raw) else { return }
        let timer = LoopTimer(loop: loop)
        parentWatch = timer
        timer.start(after: .seconds(1), repeating: .seconds(1)) { [weak self] in
            if kill(pid, 0) != 0 && errno == ESRCH {
                self?.logger.notice("parent process gone, stopping", metadata: ["parent": "\(pid)"])
                exit(0)
            }
        }
    }

    /// Connection caps assume the soft limit on open files can be raised to the hard one.
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(RLIMIT_NOFILE_VALUE, &limit)
    }

    /// Runs the loop until the node has left the cluster.
    public func run() {
        loop.run()
        loop.finishWork(timeout: .seconds(5))
        logger.info("node stopped", metadata: ["name": "\(config.name)"])
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Inputs

    private func receive(_ bytes: [UInt8], from: SocketAddress) {
        let sender = from.description
        shell.packetsIn += 1
        shell.bytesIn += bytes.count
        if chaosDrops(sender) { return }
        var bytes = bytes
        if let keyring {
            guard bytes.count <= Packet.maxDatagram else { return countMalformed(sender, TandemError(.tooLarge, "datagram too large")) }
            switch keyring.openDatagram(bytes, nowMs: Tables.wallMs(), guard: &replayGuard) {
            case .ok(let plain): bytes = plain
            case .unauthenticated:
                shell.unauthenticatedPackets += 1
                return logUnauthenticated(sender, "gossip datagram not sealed with a keyring key")
            case .replayed:
                shell.replayedPackets += 1
                return
            }
        }
        let packet: Packet
        do {
            packet = try Packet.decode(bytes)
        } catch {
            return countMalformed(sender, error)
        }
        apply(membership.onPacket(packet, from: sender, now: loop.now))
    }

    private func countMalformed(_ sender: String, _ error: TandemError) {
        shell.malformedPackets += 1
        let now = loop.now
        if now - lastMalformedLog > .seconds(10) {  // one line per 10 s, never a flood
            lastMalformedLog = now
            logger.warning("dropped malformed gossip packet", metadata: ["from": "\(sender)", "error": "\(error)"])
        }
    }

    /// Traffic without a key of ours is dropped unanswered; one log line per 10 s at most.
    private func logUnauthenticated(_ sender: String, _ what: String) {
        let now = loop.now
        guard now - lastUnauthenticatedLog > .seconds(10) else { return }
        lastUnauthenticatedLog = now
        logger.warning("dropped \(what)", metadata: ["from": "\(sender)"])
    }

    /// The data dir's keyring (rotations survive restarts), else `--keyring`, copied into the
    /// data dir on first use; nil when neither exists.
    static func loadKeyring(_ config: NodeConfig, _ dataDir: DataDir) throws -> Keyring? {
        if FileManager.default.fileExists(atPath: dataDir.keyringPath) {
            return try Keyring.load(path: dataDir.keyringPath)
        }
        guard let path = config.keyringPath else { return nil }
        let keyring = try Keyring.load(path: path)
        try dataDir.storeKeyring(keyring)
        return keyring
    }

    private func serve(_ frame: Frame, from: SocketAddress?, reply: @escaping ([UInt8]) -> Void) {
        switch frame.kind {
        case TableNode.Kind.deltas, TableNode.Kind.digests, TableNode.Kind.stability, TableNode.Kind.roots:
            return tables.serve(kind: frame.kind, payload: frame.payload, reply: reply)
        case let k where StreamFrameKind.all.contains(k):
            return streams.serve(frame, reply: reply)
        case CenterFrameKind.request:
            return center.serve(frame, reply: reply)
        case CenterSnapshotFrame.kind:
            return center.serveSnapshot(frame, reply: reply)
        case FrameKind.pushPull: break
        default:
            peers.countMalformed()
            return
        }
        do {
            let message = try PushPullMessage.decode(frame.payload)
            // Chaos blocks name gossip addresses; an inbound TCP peer shows only an ephemeral port.
            if let sender = membership.members[message.senderName], chaos.blocked.contains(sender.state.address) { return }
            let (answer, directives) = membership.onPushPullRequest(message, from: from?.description ?? "?", now: loop.now)
            apply(directives)
            reply(answer.encode())
        } catch {
            peers.countMalformed()
            logger.warning("dropped malformed push-pull", metadata: ["from": "\(from.map { "\($0)" } ?? "?")", "error": "\(error)"])
        }
    }

    private func tick() {
        apply(membership.onTick(now: loop.now))
    }

    /// Re-arms the single timer for the core's next deadline (after every input: `apply` calls it).
    private func schedule() {
        let delay = membership.nextDeadline - loop.now
        tickTimer.start(after: delay) { [weak self] in self?.tick() }
    }

    /// Opt-in fault injection: is this datagram to or from `address` lost?
    private func chaosDrops(_ address: String) -> Bool {
        let dropped = chaos.blocked.contains(address) || (chaos.dropRate > 0 && Double.random(in: 0..<1) < chaos.dropRate)
        if dropped { shell.chaosDropped += 1 }
        return dropped
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Directives

    func apply(_ directives: [MembershipDirective]) {
        for d in directives {
            switch d {
            case .send(let to, let packet):
                guard let address = try? SocketAddress(to) else { continue }
                if chaosDrops(to) { continue }
                let plain = packet.encode()
                let bytes = keyring?.sealDatagram(plain, nowMs: Tables.wallMs()) ?? plain
                shell.packetsOut += 1
                shell.bytesOut += bytes.count
                if config.chaos {
                    udpDelay.after(chaos.delay(to: PeerLinks.host(of: to))) { [weak self] in self?.udp.send(bytes, to: address) }
                } else {
                    udp.send(bytes, to: address)
                }

            case .pushPull(let to, let join):
                let payload = membership.pushPullMessage(join: join).encode()
                resolve(to) { [weak self] address in
                    guard let self else { return }
                    guard let address else {
                        if join { self.logger.debug("join attempt failed", metadata: ["seed": "\(to)", "error": "cannot resolve"]) }
                        return self.apply(self.membership.onPushPullFailed(to: to, join: join, now: self.loop.now))
                    }
                    self.pushPull(to: to, at: address, join: join, payload: payload)
                }

            case .persistIncarnation(let value):
                do {
                    try dataDir.storeIncarnation(value)
                } catch {
                    shell.persistFailures += 1
                    logger.error("could not persist incarnation", metadata: ["error": "\(error)"])
                }

            case .memberChanged(let state, let previous):
                // Tables learn at once: a write made right after a peer joins must be queued
                // for it (waiting for the next timer left it to anti-entropy).
                tables.syncMembers()
                tables.markBusy()
                routes.refresh()
                // A return seen while the member was already alive (`meta.returned` rose) is
                // routing's news only.
                guard previous != state.status else { break }
                processors.events.emit(
                    "member.\(state.status)",
                    [
                        ("member", .string(state.name)), ("region", .string(state.meta.region)), ("address", .string(state.address)),
                        ("incarnation", .number("\(state.incarnation)")), ("was", previous.map { .string("\($0)") } ?? .null)
                    ])
                logger.info(
                    "member \(state.status)",
                    metadata: [
                        "member": "\(state.name)", "region": "\(state.meta.region)", "address": "\(state.address)",
                        "incarnation": "\(state.incarnation)", "was": "\(previous.map { "\($0)" } ?? "unknown")"
                    ])
            }
        }
        schedule()
    }

    /// One push-pull exchange with the member or seed `to`, reached at `address`.
    private func pushPull(to: String, at address: String, join: Bool, payload: [UInt8]) {
        peers.request(to: address, kind: FrameKind.pushPull, payload: payload, timeout: config.settings.pushPullTimeout) {
            [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let frame):
                do {
                    let message = try PushPullMessage.decode(frame.payload)
                    self.apply(self.membership.onPushPullResponse(message, from: to, join: join, now: self.loop.now))
                    if join { self.logger.info("joined cluster", metadata: ["seed": "\(to)"]) }
                } catch {
                    self.peers.countMalformed()
                    self.apply(self.membership.onPushPullFailed(to: to, join: join, now: self.loop.now))
                }
            case .failure(let error):
                if join { self.logger.debug("join attempt failed", metadata: ["seed": "\(to)", "error": "\(error)"]) }
                self.apply(self.membership.onPushPullFailed(to: to, join: join, now: self.loop.now))
            }
        }
    }

    /// `host:port` as an address to connect to: as is when the host is an IP address, else
    /// looked up (getaddrinfo, on the thread pool) at every call, so a seed's DNS name follows
    /// the pods or hosts behind it. Nil: it does not resolve.
    private func resolve(_ target: String, _ done: @escaping (String?) -> Void) {
        if let address = try? SocketAddress(target) { return done(address.description) }
        let box = ResolvedBox()
        loop.work({ box.address = SocketAddress.resolve(target) }, then: { done(box.address) })
    }

    private final class ResolvedBox: @unchecked Sendable {
        var address: String?
    }

    /// A member's peer address (its advertised one), or nil when membership does not list it.
    func address(of id: NodeID) -> String? {
        if id.rawValue == config.name { return advertised }
        return membership.members[id.rawValue]?.state.address
    }

    /// What older nodes stored by address, read by name: this node's own addresses and every
    /// member's as membership lists it.
    func legacyAddresses() -> LegacyAddresses {
        var legacy = selfLegacyAddresses
        for m in membership.members.values { legacy.add(address: m.state.address, name: NodeID(m.name)) }
        return legacy
    }

    /// Checks an advertised `host:port`: an IP address (peers send to it), not a wildcard; nil
    /// means the bound address, which then must not be a wildcard either.
    static func advertised(_ text: String?, bind: SocketAddress, flag: String, of bindFlag: String) throws -> String {
        guard let text else {
            guard !bind.isWildcard else {
                throw TandemError(
                    .invalidArgument,
                    "\(bindFlag) \(bind) is a wildcard address: give \(flag) host:port, the address others reach this node at")
            }
            return bind.description
        }
        let address: SocketAddress
        do {
            address = try SocketAddress(text)
        } catch {
            throw TandemError(.invalidArgument, "\(flag) '\(text)' must be an IP address and port (host:port, [v6]:port)")
        }
        guard !address.isWildcard, address.port != 0 else {
            throw TandemError(.invalidArgument, "\(flag) \(address) is not an address others can reach")
        }
        return address.description
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Shutdown

    /// Dispatches an AWS JSON-protocol request by its target (`DynamoDB_20120810.GetItem`);
    /// authorization (bearer token or SigV4) was checked before it gets here.
    private func aws(_ target: String, _ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) {
        let parts = target.utf8.split(separator: UInt8(ascii: "."), maxSplits: 1).map { String(Substring($0)) }
        let service =
            switch parts.first {
            case "Kinesis_20131202": "kinesis"
            case "DynamoDBStreams_20120810": "dynamodbstreams"
            default: "dynamodb"
            }
        let respond: (HTTPResponse) -> Void = { [weak self] r in
            // Error bodies are a few hundred bytes: reading their type back is cheap.
            if r.status >= 400, let self {
                let type = (try? JSON.parse(r.body))?["__type"]?.stringValue?.split(separator: "#").last.map(String.init) ?? "unknown"
                self.shell.awsErrors[AWSErrorKey(service: service, type: type), default: 0] += 1
            }
            respond(r)
        }
        switch parts.first {
        case "DynamoDB_20120810": dynamo.handle(parts.count == 2 ? parts[1] : "", request.body, host: request.header("Host"), respond)
        case "Kinesis_20131202": kinesis.handle(parts.count == 2 ? parts[1] : "", request.body, respond)
        case "DynamoDBStreams_20120810": dynamoStreams.handle(parts.count == 2 ? parts[1] : "", request.body, respond)
        default:
            respond(DynamoAPI.error(DynamoError("UnknownOperationException", "Unknown target '\(target)'")))
        }
    }

    /// Leaves gracefully: announce, keep gossiping briefly so the notice spreads, then stop.
    /// A second signal stops at once.
    func shutdown() {
        if shutdownTimer != nil {
            loop.stop()
            return
        }
        logger.info("leaving cluster", metadata: ["name": "\(config.name)"])
        apply(membership.leave(now: loop.now))
        streams.shutdown()
        processors.shutdown()
        center.shutdown()
        let timer = LoopTimer(loop: loop)
        shutdownTimer = timer
        timer.start(after: config.settings.leaveGrace) { [weak self] in self?.loop.stop() }
    }
}
