import CLibUV
import CHTTPParser
import Foundation
import TandemCore

public struct HTTPRequest {
    public let method: String
    /// The path without its query.
    public let path: String
    /// Path segments, percent-decoded (`/v1/tables/a%2Fb` → `["v1", "tables", "a/b"]`), split
    /// once here: every router looks at them.
    public let segments: [String]
    public var query: [String: String]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The query as sent, still encoded (SigV4 signs it in that form).
    public var rawQuery: String

    public init(method: String, path: String, query: [String: String], headers: [(name: String, value: String)], body: [UInt8],
                rawQuery: String = "") {
        self.method = method
        self.path = path
        // Foundation's decoding only for segments that hold a `%` (it is slow).
        segments = path.utf8.split(separator: UInt8(ascii: "/")).map {
            $0.contains(UInt8(ascii: "%")) ? (String(Substring($0)).removingPercentEncoding ?? String(Substring($0))) : String(Substring($0))
        }
        self.query = query
        self.headers = headers
        self.body = body
        self.rawQuery = rawQuery
    }

    /// The first header of this name (ASCII case-insensitive, as HTTP field names are).
    public func header(_ name: String) -> String? {
        headers.first { HTTPRequest.sameField($0.name, name) }?.value
    }

    static func sameField(_ a: String, _ b: String) -> Bool {
        func lower(_ c: UInt8) -> UInt8 { c >= 65 && c <= 90 ? c | 0x20 : c }
        return a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { lower($0) == lower($1) }
    }
}

public struct HTTPResponse {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, contentType: String = "application/json", body: [UInt8]) {
        self.status = status
        self.headers = [("Content-Type", contentType)]
        self.body = body
    }

    /// A JSON response from any JSONSerialization-compatible value.
    public static func json(_ status: Int, _ object: Any) -> HTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return HTTPResponse(status: status, body: Array(data) + [0x0A])
    }

    /// The one error shape of the API: `{"error": code, "message": text}`.
    public static func error(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        json(status, ["error": code, "message": message])
    }

    public static func error(_ e: TandemError) -> HTTPResponse {
        error(e.code.httpStatus, e.code.name, e.message)
    }

    /// Bytes appended straight into one buffer (String interpolation here was a visible share
    /// of a small answer's cost).
    func encode(keepAlive: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + body.count)
        func add(_ s: String) { out.append(contentsOf: s.utf8) }
        add("HTTP/1.1 ")
        add(String(status))
        add(" ")
        add(HTTPResponse.reason(status))
        add("\r\n")
        for (k, v) in headers {
            add(k)
            add(": ")
            add(v)
            add("\r\n")
        }
        add("Content-Length: ")
        add(String(body.count))
        add(keepAlive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
        out.append(contentsOf: body)
        return out
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// HTTP/1.1 on the loop, parsed by the C http-parser library: keep-alive, pipelining (answers
/// in request order), and hard limits on every part of a request, each violation answered with
/// a JSON error and counted.
public final class HTTPServer {
    public struct Limits {
        public var maxURLBytes = 8 << 10
        public var maxHeaderBytes = 32 << 10
        public var maxHeaders = 100
        public var maxBodyBytes = 4 << 20
        public var maxConnections = 512
        /// Connections from one client IP: one client cannot take the whole pool (half of it
        /// leaves room for others while a load generator on one host still gets 256).
        public var maxConnectionsPerClient = 256
        /// From a request's first byte until its headers are complete, and then until its body
        /// is: a client trickling bytes (slow loris) is answered 408 and cut off, whatever its
        /// pace keeps the idle timer from doing.
        public var headerTimeout: Duration = .seconds(10)
        public var bodyTimeout: Duration = .seconds(30)
        /// Requests parsed but not yet answered on one connection (pipelining), and bytes of
        /// answers the client has not read: past either, the connection is closed.
        public var maxPipelined = 32
        public var maxUnreadResponseBytes = 4 << 20
        /// A connection with no traffic for this long is closed (also bounds slow requests).
        public var idleTimeout: Duration = .seconds(30)
        public init() {}
    }

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

    private func accept(_ c: TCPConnection) {
        guard connections.count < limits.maxConnections else {
            stats.connectionsRejected += 1
            return refuse(c, .error(503, "too_many_connections", "connection limit reached"))
        }
        let client = c.peer.map { PeerLinks.host(of: $0.description) } ?? "?"
        guard perClient[client, default: 0] < limits.maxConnectionsPerClient else {
            stats.clientLimitRejected += 1
            return refuse(c, .error(429, "too_many_connections_from_client",
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
        var r = response
        r.headers.append(("Retry-After", "1"))
        c.write(r.encode(keepAlive: false))
        c.closeGracefully(linger: .milliseconds(200))
    }

    func countBadRequest() { stats.badRequests += 1 }
    func countTimeout() { stats.requestTimeouts += 1 }
    func countRequest() { stats.requests += 1 }
}

/// The parser's callbacks find their connection through `parser->data`.
/// Written once at first use and only read after, from any loop thread.
nonisolated(unsafe) private let parserSettings: UnsafeMutablePointer<http_parser_settings> = {
    let s = UnsafeMutablePointer<http_parser_settings>.allocate(capacity: 1)
    http_parser_settings_init(s)
    s.pointee.on_message_begin = { p in HTTPConnection.from(p).beginMessage() }
    s.pointee.on_url = { p, at, n in HTTPConnection.from(p).url(at, n) }
    s.pointee.on_header_field = { p, at, n in HTTPConnection.from(p).headerField(at, n) }
    s.pointee.on_header_value = { p, at, n in HTTPConnection.from(p).headerValue(at, n) }
    s.pointee.on_headers_complete = { p in HTTPConnection.from(p).headersComplete() }
    s.pointee.on_body = { p, at, n in HTTPConnection.from(p).body(at, n) }
    s.pointee.on_message_complete = { p in HTTPConnection.from(p).messageComplete() }
    return s
}()

final class HTTPConnection {
    private weak var server: HTTPServer?
    private let connection: TCPConnection
    private let parser: UnsafeMutablePointer<http_parser>
    private let limits: HTTPServer.Limits
    /// One timer serves both deadlines below. Restarting a libuv timer on every read and
    /// request cost the put path ~8% of the leader's CPU, so activity only moves the deadlines
    /// (loop time, ms) and the timer, when it fires, re-arms for whichever comes next.
    private var timer: Timer?
    private var timerDueMs: UInt64 = .max
    private var lastActivityMs: UInt64 = 0
    /// The slow-request deadline of the request being read (headers, then body).
    private var requestDeadline: (ms: UInt64, what: String, after: Duration)?

    private var url: [UInt8] = []
    private var headers: [(name: String, value: String)] = []
    private var field: [UInt8] = []
    private var value: [UInt8] = []
    private var inValue = false
    private var headerBytes = 0
    private var bodyBytes: [UInt8] = []
    /// Set by a callback that rejects the request; answered once parsing stops.
    private var rejection: HTTPResponse?

    /// Responses in request order: pipelined requests may complete out of order.
    private var slots: [HTTPResponse?] = []
    private var keepAliveBySlot: [Bool] = []
    private var closeAfterFlush = false
    private var isClosed = false

    init(server: HTTPServer, connection: TCPConnection) {
        self.server = server
        self.connection = connection
        self.limits = server.limits
        parser = .allocate(capacity: 1)
        http_parser_init(parser, HTTP_REQUEST)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        timer = Timer(loop: server.loop)
        lastActivityMs = nowMs
        armTimer(dueMs: lastActivityMs + Self.ms(limits.idleTimeout))
    }

    deinit { parser.deallocate() }

    static func from(_ p: UnsafeMutablePointer<http_parser>?) -> HTTPConnection {
        Unmanaged<HTTPConnection>.fromOpaque(p!.pointee.data).takeUnretainedValue()
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
        let parsed = http_parser_execute(parser, parserSettings, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        let errno = parser.pointee.http_errno
        if closeAfterFlush && rejection == nil { return }  // paused after a last request: not an error
        if rejection != nil || errno != HPE_OK.rawValue || parsed != bytes.count {
            server?.countBadRequest()
            let response = rejection ?? HTTPResponse.error(400, "malformed_request",
                "could not parse HTTP request: \(String(cString: http_errno_description(http_errno(rawValue: errno))))")
            rejection = nil
            slots.append(response)
            keepAliveBySlot.append(false)
            closeAfterFlush = true
            flush()
        }
    }

    // MARK: parser callbacks (return non-zero to stop parsing)

    func beginMessage() -> Int32 {
        url.removeAll(keepingCapacity: true)
        headers.removeAll(keepingCapacity: true)
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        inValue = false
        headerBytes = 0
        bodyBytes.removeAll()
        setRequestDeadline(limits.headerTimeout, "headers")
        return 0
    }

    func url(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        guard url.count + n <= limits.maxURLBytes else {
            return reject(.error(414, "uri_too_long", "request target exceeds \(limits.maxURLBytes) bytes"))
        }
        url.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
        return 0
    }

    func headerField(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        if inValue { finishHeader() }
        guard addHeaderBytes(n) else { return 0 }
        field.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
        return 0
    }

    func headerValue(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        inValue = true
        guard addHeaderBytes(n) else { return 0 }
        value.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
        return 0
    }

    private func addHeaderBytes(_ n: Int) -> Bool {
        headerBytes += n
        if headerBytes > limits.maxHeaderBytes || headers.count >= limits.maxHeaders {
            _ = reject(.error(431, "headers_too_large",
                              "headers exceed \(limits.maxHeaderBytes) bytes or \(limits.maxHeaders) fields"))
            return false
        }
        return true
    }

    private func finishHeader() {
        headers.append((String(decoding: field, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        inValue = false
    }

    /// Refuses a declared body that is too large before any of it is read.
    func headersComplete() -> Int32 {
        let declared = parser.pointee.content_length
        if declared != UInt64.max && declared > UInt64(limits.maxBodyBytes) {
            return reject(.error(413, "body_too_large", "request body of \(declared) bytes exceeds \(limits.maxBodyBytes)"))
        }
        setRequestDeadline(limits.bodyTimeout, "body")
        return 0
    }

    func body(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        guard bodyBytes.count + n <= limits.maxBodyBytes else {
            return reject(.error(413, "body_too_large", "request body exceeds \(limits.maxBodyBytes) bytes"))
        }
        bodyBytes.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
        return 0
    }

    func messageComplete() -> Int32 {
        requestDeadline = nil
        if inValue { finishHeader() }
        let method = String(cString: http_method_str(http_method(rawValue: parser.pointee.method)))
        let keepAlive = http_should_keep_alive(parser) != 0
        let target = String(decoding: url, as: UTF8.self)
        let (path, query) = HTTPConnection.splitTarget(target)
        let rawQuery = target.firstIndex(of: "?").map { String(target[target.index(after: $0)...]) } ?? ""
        let request = HTTPRequest(method: method, path: path, query: query, headers: headers, body: bodyBytes, rawQuery: rawQuery)
        guard slots.count < limits.maxPipelined, connection.pendingWriteBytes < limits.maxUnreadResponseBytes else {
            // A client that pipelines without reading would make us buffer without bound.
            connection.close()
            http_parser_pause(parser, 1)
            return 0
        }
        if !keepAlive {
            // Nothing after a `Connection: close` request is read, let alone executed.
            closeAfterFlush = true
            http_parser_pause(parser, 1)
        }
        let slot = slots.count
        slots.append(nil)
        keepAliveBySlot.append(keepAlive)
        server?.countRequest()
        server?.handler(request) { [weak self] response in
            guard let self, !self.isClosed, slot < self.slots.count, self.slots[slot] == nil else { return }
            self.slots[slot] = response
            self.flush()
        }
        return 0
    }

    /// Stops the parser (pausing works from every callback; a non-zero return from
    /// on_headers_complete would mean "skip the body" instead).
    private func reject(_ response: HTTPResponse) -> Int32 {
        if rejection == nil { rejection = response }
        http_parser_pause(parser, 1)
        return 0
    }

    private func flush() {
        while let first = slots.first, let response = first {
            let keepAlive = keepAliveBySlot.first!
            connection.write(response.encode(keepAlive: keepAlive))
            slots.removeFirst()
            keepAliveBySlot.removeFirst()
            if !keepAlive {
                connection.closeGracefully()
                return
            }
        }
    }

    static func splitTarget(_ target: String) -> (String, [String: String]) {
        // On UTF-8 code units: Character-wise search cost ~10k instructions per request.
        guard let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (target, [:]) }
        var query: [String: String] = [:]
        for pair in target[target.index(after: q)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[decodeComponent(parts[0])] = parts.count > 1 ? decodeComponent(parts[1]) : ""
        }
        return (String(target[..<q]), query)
    }

    /// `+` is a space and `%XX` a byte; most components have neither and skip Foundation.
    static func decodeComponent(_ s: Substring) -> String {
        guard s.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else { return String(s) }
        return String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
    }
}
