import Foundation
import TandemCore

/// A minimal blocking HTTP/1.1 client on a private libuv loop, for the CLI, tests and
/// benchmarks. One request per connection (`Connection: close`).
public enum HTTPClient {
    public struct Response {
        public var status: Int
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
        public func json() -> Any? { try? JSONSerialization.jsonObject(with: Data(body)) }
    }

    public static var defaultToken: String? {
        ProcessInfo.processInfo.environment["TANDEM_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public static func request(_ method: String, _ address: String, _ path: String, body: [UInt8]? = nil,
                               headers: [(String, String)] = [], timeout: Duration = .seconds(5)) throws -> Response {
        let target = try SocketAddress(address)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        // The CLI and tooling authenticate with the token in TANDEM_TOKEN (never a flag: flags
        // show in `ps`), unless the caller passes its own.
        if !headers.contains(where: { $0.0.lowercased() == "authorization" }), let token = defaultToken {
            head += "Authorization: Bearer \(token)\r\n"
        }
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        return try exchange(target, Array(head.utf8) + (body ?? []), timeout: timeout)
    }

    /// Sends raw bytes and returns the parsed response (tests use it for malformed requests).
    public static func exchange(_ target: SocketAddress, _ bytes: [UInt8], timeout: Duration) throws -> Response {
        let loop = EventLoop()
        var received: [UInt8] = []
        var failure: Error?
        var done = false
        let timer = Timer(loop: loop)
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

    static func parse(_ raw: [UInt8]) throws -> Response {
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
               let n = Int(kv[1].trimmingCharacters(in: .whitespaces)), n <= body.count {
                body = Array(body.prefix(n))
            }
        }
        return Response(status: status, body: body)
    }
}
