import Foundation
import TandemCore

/// A minimal blocking HTTP/1.1 client on a private libuv loop, for the CLI, tests and
/// benchmarks. One request per connection (`Connection: close`).
public enum HTTPClient {
    public struct Response {
        public var status: Int
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
        /// The body as JSON, or nil if it is not JSON.
        public func json() -> JSON? { try? JSON.parse(body) }
    }

    public static var defaultToken: String? {
        ProcessInfo.processInfo.environment["TANDEM_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public static func request(
        _ method: String, _ address: String, _ path: String, body: [UInt8]? = nil,
        headers: [(String, String)] = [], timeout: Duration = .seconds(5)
    ) throws -> Response {
        try exchange(
            try SocketAddress(address), message(method, address, path, body: body, headers: headers, keepAlive: false),
            timeout: timeout)
    }

    static func message(
        _ method: String, _ address: String, _ path: String, body: [UInt8]?,
        headers: [(String, String)], keepAlive: Bool
    ) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\n"
        if !keepAlive { head += "Connection: close\r\n" }
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        // The CLI and tooling authenticate with the token in TANDEM_TOKEN (never a flag: flags
        // show in `ps`), unless the caller passes its own.
        if !headers.contains(where: { $0.0.lowercased() == "authorization" }), let token = defaultToken {
            head += "Authorization: Bearer \(token)\r\n"
        }
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + (body ?? [])
    }

    /// Sends raw bytes and returns the parsed response (tests use it for malformed requests).
    public static func exchange(_ target: SocketAddress, _ bytes: [UInt8], timeout: Duration) throws -> Response {
        let loop = EventLoop()
        var received: [UInt8] = []
        var failure: Error?
        var done = false
        let timer = LoopTimer(loop: loop)
        var connection: TCPConnection?
        timer.start(after: timeout) {
            failure = TandemError(.unavailable, "request to \(target) timed out")
            done = true
            connection?.close()
        }
        connection = TCPConnection.connect(loop: loop, to: target, timeout: timeout) { c, error in
            guard let c else {
                failure = error
                done = true
                timer.stop()
                return
            }
            c.onData = { received.append(contentsOf: $0) }
            c.onClose = {
                done = true
                timer.stop()
            }
            c.startReading()
            c.write(bytes)
        }
        while !done { loop.runOnce() }
        timer.stop()
        connection?.close()
        loop.runOnce()
        if let failure, received.isEmpty { throw failure }
        return try parse(received)
    }

    /// Where a response that starts `raw` ends, once all of it is there (nil until then, or
    /// when it has no Content-Length and so ends when the connection closes), and whether the
    /// server closes the connection after it (`Connection: close`).
    static func responseEnd(_ raw: [UInt8]) -> (end: Int, closes: Bool)? {
        guard let split = raw.firstRange(of: [13, 10, 13, 10] as [UInt8]) else { return nil }
        var length: Int?
        var closes = false
        for line in String(decoding: raw[..<split.lowerBound], as: UTF8.self).split(separator: "\r\n").dropFirst() {
            let kv = line.split(separator: ":", maxSplits: 1)
            guard kv.count == 2 else { continue }
            let value = kv[1].trimmingCharacters(in: .whitespaces)
            switch kv[0].lowercased() {
            case "content-length": length = Int(value)
            case "connection": closes = value.lowercased() == "close"
            default: break
            }
        }
        guard let length, raw.count >= split.upperBound + length else { return nil }
        return (split.upperBound + length, closes)
    }

    public static func parse(_ raw: [UInt8]) throws -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let split = raw.firstRange(of: separator) else {
            throw TandemError(.malformed, "incomplete HTTP response (\(raw.count) bytes)")
        }
        let head = String(decoding: raw[..<split.lowerBound], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw TandemError(.malformed, "bad status line '\(statusLine)'")
        }
        var body = Array(raw[split.upperBound...])
        for line in head.split(separator: "\r\n").dropFirst() {
            let kv = line.split(separator: ":", maxSplits: 1)
            if kv.count == 2, kv[0].lowercased() == "content-length",
                let n = Int(kv[1].trimmingCharacters(in: .whitespaces)), n <= body.count
            {
                body = Array(body.prefix(n))
            }
        }
        return Response(status: status, body: body)
    }
}

/// A kept-alive HTTP/1.1 connection to one node, for clients that ask it many times (a
/// long-polling reader): no connection set up per request, and a response is complete at its
/// Content-Length rather than when the server closes. Blocking, on a private loop; one thread.
public final class HTTPSession {
    public let address: String
    private let target: SocketAddress
    private let loop = EventLoop()
    private var connection: TCPConnection?
    private var received: [UInt8] = []
    private var closed = true

    public init(_ address: String) throws {
        self.address = address
        target = try SocketAddress(address)
    }

    deinit {
        connection?.close()
        loop.runOnce()
    }

    /// A GET is sent again, once, on a new connection when a kept-alive one turns out to have
    /// been closed by the node before answering (it idles connections out); other methods are
    /// not, since the node may have acted on them.
    public func request(
        _ method: String, _ path: String, body: [UInt8]? = nil, headers: [(String, String)] = [],
        timeout: Duration = .seconds(5)
    ) throws -> HTTPClient.Response {
        let reused = !closed
        let bytes = HTTPClient.message(method, address, path, body: body, headers: headers, keepAlive: true)
        do {
            return try exchange(bytes, timeout: timeout)
        } catch let e as TandemError where reused && method == "GET" && e.code == .notDelivered {
            return try exchange(bytes, timeout: timeout)
        }
    }

    private func exchange(_ bytes: [UInt8], timeout: Duration) throws -> HTTPClient.Response {
        var failure: Error?
        var timedOut = false
        let timer = LoopTimer(loop: loop)
        defer { timer.stop() }
        timer.start(after: timeout) { timedOut = true }
        if closed {
            var connecting = true
            received = []
            connection = TCPConnection.connect(loop: loop, to: target, timeout: timeout) { [weak self] c, error in
                connecting = false
                guard let self, let c else { failure = error; return }
                self.closed = false
                c.onData = { [weak self] in self?.received.append(contentsOf: $0) }
                c.onClose = { [weak self] in self?.closed = true }
                c.startReading()
            }
            while connecting && !timedOut { loop.runOnce() }
            if let failure { throw failure }
            if timedOut { drop(); throw TandemError(.unavailable, "connecting to \(target) timed out") }
        }
        connection?.write(bytes)
        while !timedOut {
            if let (end, closes) = HTTPClient.responseEnd(received) {
                let response = try HTTPClient.parse(Array(received[..<end]))
                received.removeFirst(end)
                // The node closes after this answer (a refusal, an error): the next request
                // goes on a new connection rather than onto this one.
                if closes { drop() }
                return response
            }
            if closed {
                defer { drop() }
                if received.isEmpty { throw TandemError(.notDelivered, "\(target) closed the connection before answering") }
                return try HTTPClient.parse(received)
            }
            loop.runOnce()
        }
        drop()
        throw TandemError(.unavailable, "request to \(target) timed out")
    }

    /// Forgets the connection (a timed-out answer may still arrive on it). Its callbacks go
    /// first: its close, reported later, must not mark a newer connection closed.
    private func drop() {
        connection?.onData = { _ in }
        connection?.onClose = {}
        connection?.close()
        connection = nil
        closed = true
        received = []
    }
}
