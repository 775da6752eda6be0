import TandemCore

/// An HTTP/1.1 client on the node's loop, for calls a node makes while it serves (a processor
/// invoking its function): never blocks, keeps connections alive per target and reuses them, and
/// reads answers framed by Content-Length, chunked encoding or the connection's close. An
/// answer larger than `maxResponseBytes` or later than the call's timeout is a failure.
public final class LoopHTTPClient {
    public struct Reply {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            let n = name.lowercased()
            return headers.first { $0.0.lowercased() == n }?.1
        }
    }

    /// A URL this client can call: `http://host:port/path` (no TLS: the node has none yet).
    public struct Target: Hashable, Sendable {
        public var address: String
        public var path: String

        /// nil unless `url` is `http://host[:port][/path]`.
        public init?(url: String) {
            guard url.hasPrefix("http://") else { return nil }
            let rest = url.dropFirst(7)
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            var host = String(rest[..<slash])
            guard !host.isEmpty, !host.contains("@") else { return nil }
            if !host.contains(":") || (host.hasPrefix("[") && host.hasSuffix("]")) { host += ":80" }
            address = host
            path = slash == rest.endIndex ? "/" : String(rest[slash...])
        }
    }

    public var maxResponseBytes = 8 << 20
    /// Idle connections kept per target.
    public var maxIdlePerTarget = 16
    private let loop: EventLoop
    private var idle: [String: [TCPConnection]] = [:]
    /// Calls in progress, held here until they finish (their callbacks hold them weakly).
    private var calls: [ObjectIdentifier: Call] = [:]
    public var inProgress: Int { calls.count }
    /// Connections opened, and calls that reused one (figures for `/metrics`).
    public private(set) var opened = 0
    public private(set) var reused = 0

    public init(loop: EventLoop) { self.loop = loop }

    /// Calls `target` and answers `done` exactly once, on the loop.
    public func call(
        _ method: String, _ target: Target, headers: [(String, String)] = [], body: [UInt8], timeout: Duration,
        _ done: @escaping (Result<Reply, TandemError>) -> Void
    ) {
        var head = "\(method) \(target.path) HTTP/1.1\r\nHost: \(target.address)\r\nContent-Type: application/json\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        let request = Array(head.utf8) + body
        let call = Call(client: self, target: target, done: done)
        calls[ObjectIdentifier(call)] = call
        call.timer = LoopTimer(loop: loop)
        call.timer?.start(after: timeout) { [weak call] in call?.fail(TandemError(.unavailable, "no answer within \(timeout)")) }
        if var list = idle[target.address], let c = list.popLast() {
            idle[target.address] = list
            reused += 1
            call.start(c, request, reused: true)
            return
        }
        guard let address = try? SocketAddress(target.address) else {
            return call.fail(TandemError(.badRequest, "cannot resolve \(target.address)"))
        }
        opened += 1
        _ = TCPConnection.connect(loop: loop, to: address, timeout: timeout) { [weak call] c, error in
            guard let call else {
                c?.close()
                return
            }
            guard let c else {
                return call.fail(TandemError(.unavailable, "connect to \(target.address): \(error.map { "\($0)" } ?? "failed")"))
            }
            call.start(c, request, reused: false)
        }
    }

    fileprivate func putBack(_ c: TCPConnection, _ target: Target) {
        guard c.isOpen, idle[target.address, default: []].count < maxIdlePerTarget else { return c.close() }
        c.onData = { _ in }
        c.onClose = { [weak self, weak c] in
            guard let self, let c else { return }
            self.idle[target.address]?.removeAll { $0 === c }
        }
        idle[target.address, default: []].append(c)
    }

    /// One call in progress: its connection, what has arrived, and the one answer.
    private final class Call {
        weak var client: LoopHTTPClient?
        let target: Target
        var done: ((Result<Reply, TandemError>) -> Void)?
        var timer: LoopTimer?
        var connection: TCPConnection?
        var received: [UInt8] = []

        init(client: LoopHTTPClient, target: Target, done: @escaping (Result<Reply, TandemError>) -> Void) {
            self.client = client
            self.target = target
            self.done = done
        }

        func start(_ c: TCPConnection, _ request: [UInt8], reused: Bool) {
            guard done != nil else { return c.close() }
            connection = c
            c.onData = { [weak self] bytes in self?.receive(bytes) }
            c.onClose = { [weak self] in self?.closed(reused: reused, request) }
            c.startReading()
            c.write(request)
        }

        private func receive(_ bytes: UnsafeRawBufferPointer) {
            received.append(contentsOf: bytes)
            guard let max = client?.maxResponseBytes, received.count <= max else {
                return fail(TandemError(.tooLarge, "answer larger than \(client?.maxResponseBytes ?? 0) bytes"))
            }
            switch LoopHTTPClient.frame(received, closed: false) {
            case .incomplete: break
            case .bad(let why): fail(TandemError(.malformed, why))
            case .complete(let reply, let keepAlive):
                finish(.success(reply), keep: keepAlive)
            }
        }

        private func closed(reused: Bool, _ request: [UInt8]) {
            guard done != nil else { return }
            if received.isEmpty && reused, let client {
                // A kept-alive connection the server had closed: the request never arrived, so
                // it goes again once on a fresh connection.
                connection = nil
                guard let address = try? SocketAddress(target.address) else { return fail(TandemError(.unavailable, "closed")) }
                client.opened += 1
                _ = TCPConnection.connect(loop: client.loop, to: address, timeout: .seconds(5)) { [weak self] c, _ in
                    guard let self else { return }
                    guard let c else { return self.fail(TandemError(.unavailable, "connect to \(self.target.address) failed")) }
                    self.start(c, request, reused: false)
                }
                return
            }
            switch LoopHTTPClient.frame(received, closed: true) {
            case .complete(let reply, _): finish(.success(reply), keep: false)
            case .incomplete: fail(TandemError(.notDelivered, "connection closed before a whole answer"))
            case .bad(let why): fail(TandemError(.malformed, why))
            }
        }

        func fail(_ e: TandemError) {
            finish(.failure(e), keep: false)
        }

        private func finish(_ result: Result<Reply, TandemError>, keep: Bool) {
            guard let done else { return }
            self.done = nil
            client?.calls[ObjectIdentifier(self)] = nil
            timer?.stop()
            timer = nil
            if let c = connection {
                connection = nil
                if keep, let client { client.putBack(c, target) } else { c.close() }
            }
            done(result)
        }
    }

    enum Framing {
        case incomplete
        case bad(String)
        case complete(Reply, keepAlive: Bool)
    }

    /// Whether `raw` holds a whole answer (by Content-Length, chunked encoding, or — once the
    /// connection closed — everything received).
    static func frame(_ raw: [UInt8], closed: Bool) -> Framing {
        guard let split = raw.firstRange(of: [13, 10, 13, 10] as [UInt8]) else {
            return closed ? .bad("connection closed inside the answer's head") : .incomplete
        }
        let lines = String(decoding: raw[..<split.lowerBound], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let status = lines.first.map { $0.split(separator: " ") }
        guard let status, status.count >= 2, status[0].hasPrefix("HTTP/1."), let code = Int(status[1]) else {
            return .bad("bad status line")
        }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: [" ", "\t"])))
        }
        func value(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1.lowercased() }
        var keepAlive = status[0] == "HTTP/1.1" ? value("connection") != "close" : value("connection") == "keep-alive"
        let bodyStart = split.upperBound
        if (100..<200).contains(code) || code == 204 || code == 304 {
            return .complete(Reply(status: code, headers: headers, body: []), keepAlive: keepAlive)
        }
        if value("transfer-encoding")?.contains("chunked") == true {
            var body: [UInt8] = []
            var i = bodyStart
            while true {
                guard let lineEnd = raw[i...].firstRange(of: [13, 10] as [UInt8]) else { return .incomplete }
                let sizeText = String(decoding: raw[i..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: [" "]), radix: 16), size >= 0 else { return .bad("bad chunk size") }
                let dataStart = lineEnd.upperBound
                if size == 0 {
                    // Trailers (rare) end with an empty line.
                    guard let end = raw[dataStart...].firstRange(of: [13, 10] as [UInt8]) else { return .incomplete }
                    _ = end
                    return .complete(Reply(status: code, headers: headers, body: body), keepAlive: keepAlive)
                }
                guard raw.count >= dataStart + size + 2 else { return .incomplete }
                body.append(contentsOf: raw[dataStart..<dataStart + size])
                i = dataStart + size + 2
            }
        }
        if let text = value("content-length") {
            guard let n = Int(text), n >= 0 else { return .bad("bad Content-Length") }
            guard raw.count >= bodyStart + n else { return closed ? .bad("connection closed inside the body") : .incomplete }
            return .complete(Reply(status: code, headers: headers, body: Array(raw[bodyStart..<bodyStart + n])), keepAlive: keepAlive)
        }
        keepAlive = false
        return closed ? .complete(Reply(status: code, headers: headers, body: Array(raw[bodyStart...])), keepAlive: false) : .incomplete
    }
}
