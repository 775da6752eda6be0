import CLibUV
import CHTTPParser
import Foundation
import TandemCore

/// HTTP/1.1 on the loop, parsed by the C http-parser library: keep-alive, pipelining (answers
/// in request order), and hard limits on every part of a request, each violation answered with
/// a JSON error and counted.
public final class HTTPServer {
    /// (Its own type so the request parser builds without the server: see `HTTPRequestParser`.)
    public typealias Limits = HTTPLimits

    public struct Stats {
        public var connectionsAccepted = 0
        public var connectionsRejected = 0
        public var clientLimitRejected = 0
        public var requestTimeouts = 0
        public var requests = 0
        public var badRequests = 0
    }

    let loop: EventLoop
    let limits: Limits
    private let server: TCPServer
    private var connections: Set<ObjectIdentifier> = []
    private var perClient: [String: Int] = [:]
    public internal(set) var stats = Stats()
    public var handler: (HTTPRequest, @escaping (HTTPResponse) -> Void) -> Void = { _, respond in
        respond(.error(404, "not_found", "no such endpoint"))
    }

    public init(loop: EventLoop, bind address: SocketAddress, limits: Limits = Limits()) throws {
        self.loop = loop
        self.limits = limits
        server = try TCPServer(loop: loop, bind: address)
        server.start { [weak self] c in self?.accept(c) }
    }

    /// Connections with answers to write once this loop turn's reads are done.
    private var toFlush: [HTTPConnection] = []
    private lazy var flushAfterPoll = AfterPoll(loop: loop) { [weak self] in
        guard let self else { return }
        let ready = self.toFlush
        self.toFlush = []
        for c in ready { c.pendingFlush() }
    }

    func afterPoll(_ c: HTTPConnection) {
        toFlush.append(c)
        flushAfterPoll.arm()
    }

    private func accept(_ c: TCPConnection) {
        guard connections.count < limits.maxConnections else {
            stats.connectionsRejected += 1
            return refuse(c, .error(503, "too_many_connections", "connection limit reached"))
        }
        let client = c.peer.map { PeerLinks.host(of: $0.description) } ?? "?"
        guard perClient[client, default: 0] < limits.maxConnectionsPerClient else {
            stats.clientLimitRejected += 1
            return refuse(
                c,
                .error(
                    429, "too_many_connections_from_client",
                    "at most \(limits.maxConnectionsPerClient) connections per client; reuse keep-alive connections"))
        }
        perClient[client, default: 0] += 1
        stats.connectionsAccepted += 1
        let conn = HTTPConnection(server: self, connection: c)
        let id = ObjectIdentifier(conn)
        connections.insert(id)
        c.onClose = { [weak self] in
            guard let self else { return }
            self.connections.remove(id)
            if let n = self.perClient[client], n > 1 { self.perClient[client] = n - 1 } else { self.perClient[client] = nil }
            conn.closed()
        }
        c.onData = { bytes in conn.feed(bytes) }
        c.startReading()
    }

    /// Answers a connection we will not serve, telling the client when to come back.
    private func refuse(_ c: TCPConnection, _ response: HTTPResponse) {
        c.write(HTTPConnection.withRetryAfter(response).encode(keepAlive: false))
        c.closeGracefully(linger: .milliseconds(200))
    }

    func countBadRequest() { stats.badRequests += 1 }
    func countTimeout() { stats.requestTimeouts += 1 }
    func countRequest() { stats.requests += 1 }
}

/// One client connection: a request parser fed from the socket, the slow-request and idle
/// timers, and the answers in request order.
final class HTTPConnection {
    private weak var server: HTTPServer?
    private let connection: TCPConnection
    private let parser: HTTPRequestParser
    private let limits: HTTPServer.Limits
    /// One timer serves both deadlines below. Restarting a libuv timer on every read and
    /// request showed up on the put path, so activity only moves the deadlines (loop time, ms)
    /// and the timer, when it fires, re-arms for whichever comes next.
    private var timer: LoopTimer?
    private var timerDueMs: UInt64 = .max
    private var lastActivityMs: UInt64 = 0
    /// The slow-request deadline of the request being read (headers, then body).
    private var requestDeadline: (ms: UInt64, what: String, after: Duration)?

    /// Responses in request order: pipelined requests may complete out of order.
    private var slots: [HTTPResponse?] = []
    private var keepAliveBySlot: [Bool] = []
    /// How many answers were written: request k's answer lives at `slots[k - written]`. (An
    /// index into `slots` taken when the request arrived went stale once earlier answers were
    /// written, and a pipelined answer completing later landed in another request's slot.)
    private var written = 0
    private var closeAfterFlush = false
    private var isClosed = false

    init(server: HTTPServer, connection: TCPConnection) {
        self.server = server
        self.connection = connection
        self.limits = server.limits
        parser = HTTPRequestParser(limits: server.limits)
        timer = LoopTimer(loop: server.loop)
        parser.onPhase = { [weak self] phase in
            guard let self else { return }
            switch phase {
            case .headers: self.setRequestDeadline(self.limits.headerTimeout, "headers")
            case .body: self.setRequestDeadline(self.limits.bodyTimeout, "body")
            case .complete: self.requestDeadline = nil
            }
        }
        parser.onRequest = { [weak self] request, keepAlive in self?.serve(request, keepAlive: keepAlive) ?? false }
        lastActivityMs = nowMs
        armTimer(dueMs: lastActivityMs + Self.ms(limits.idleTimeout))
    }

    private static func ms(_ d: Duration) -> UInt64 { UInt64(max(0, (d.nanoseconds + 999_999) / 1_000_000)) }

    private var nowMs: UInt64 { server.map { uv_now($0.loop.raw) } ?? 0 }

    private func armTimer(dueMs: UInt64) {
        guard dueMs < timerDueMs else { return }
        timerDueMs = dueMs
        let now = nowMs
        timer?.start(after: .milliseconds(Int64(dueMs > now ? dueMs - now : 0))) { [weak self] in self?.timerFired() }
    }

    private func timerFired() {
        timerDueMs = .max
        guard !isClosed else { return }
        let now = nowMs
        if let r = requestDeadline, now >= r.ms {
            requestDeadline = nil
            guard !closeAfterFlush else { return timerFired() }  // already closing: idle still applies
            server?.countTimeout()
            slots.append(.error(408, "request_timeout", "request \(r.what) not received within \(r.after)"))
            keepAliveBySlot.append(false)
            closeAfterFlush = true
            return flush()
        }
        let idleDue = lastActivityMs + Self.ms(limits.idleTimeout)
        if now >= idleDue { return connection.close() }
        armTimer(dueMs: min(idleDue, requestDeadline?.ms ?? .max))
    }

    func closed() {
        isClosed = true
        timer?.stop()
        timer = nil
    }

    private func setRequestDeadline(_ after: Duration, _ what: String) {
        let due = nowMs + Self.ms(after)
        requestDeadline = (due, what, after)
        armTimer(dueMs: due)
    }

    func feed(_ bytes: UnsafeRawBufferPointer) {
        guard !closeAfterFlush, !isClosed else { return }
        lastActivityMs = nowMs
        guard let response = parser.feed(bytes) else { return }
        server?.countBadRequest()
        slots.append(response)
        keepAliveBySlot.append(false)
        closeAfterFlush = true
        flush()
    }

    /// A complete request; false stops reading (the connection is dropped).
    private func serve(_ request: HTTPRequest, keepAlive: Bool) -> Bool {
        guard slots.count < limits.maxPipelined, connection.pendingWriteBytes < limits.maxUnreadResponseBytes else {
            // A client that pipelines without reading would make us buffer without bound.
            connection.close()
            return false
        }
        // Nothing after a `Connection: close` request is read, let alone executed.
        if !keepAlive { closeAfterFlush = true }
        let number = written + slots.count
        slots.append(nil)
        keepAliveBySlot.append(keepAlive)
        server?.countRequest()
        server?.handler(request) { [weak self] response in
            guard let self, !self.isClosed else { return }
            let slot = number - self.written
            guard slot >= 0, slot < self.slots.count, self.slots[slot] == nil else { return }
            self.slots[slot] = HTTPConnection.withRetryAfter(response)
            self.flushSoon()
        }
        return true
    }

    /// Every "come back later" (503, 429) says when: one place, so no endpoint forgets it.
    static func withRetryAfter(_ response: HTTPResponse) -> HTTPResponse {
        guard response.status == 503 || response.status == 429,
            !response.headers.contains(where: { HTTPRequest.sameField($0.0, "Retry-After") })
        else { return response }
        var r = response
        r.headers.append(("Retry-After", "1"))
        return r
    }

    /// Writes every answer that is ready, in request order, in one write: answers to pipelined
    /// requests that complete in the same loop turn share a syscall. Answers completed by the
    /// handler wait for the end of the poll phase (`flushSoon`), not for another turn.
    private func flush() {
        var out: [UInt8] = []
        var last = false
        while !last, let first = slots.first, let response = first {
            slots.removeFirst()
            last = !keepAliveBySlot.removeFirst()
            written += 1
            out.append(contentsOf: response.encode(keepAlive: !last))
        }
        if !out.isEmpty { connection.write(out) }
        if last { connection.closeGracefully() }
    }

    private var flushPending = false

    private func flushSoon() {
        guard !flushPending else { return }  // already due after this poll phase
        guard let server else { return flush() }
        flushPending = true
        server.afterPoll(self)
    }

    func pendingFlush() {
        flushPending = false
        if !isClosed { flush() }
    }
}
