import Foundation
import TandemCore

/// A closed-loop HTTP load generator on its own libuv loop: `connections` keep-alive
/// connections, each sending its next request as soon as the previous answer arrives, for
/// `duration` (or until `maxRequests`), optionally paced to `ratePerSecond` in total.
/// For benchmarks only.
public final class LoadGenerator {
    public struct Result {
        public var requests = 0
        public var errors = 0
        public var seconds = 0.0
        public var latenciesMs: [Double] = []

        public var perSecond: Double { Double(requests) / max(seconds, 1e-9) }

        public func percentile(_ p: Double) -> Double {
            guard !latenciesMs.isEmpty else { return .nan }
            let s = latenciesMs.sorted()
            return s[min(s.count - 1, Int(Double(s.count) * p))]
        }
    }

    private final class Client {
        var connection: TCPConnection?
        var buffer: [UInt8] = []
        var sentAt: UInt64 = 0
    }

    private let loop = EventLoop()
    private let target: SocketAddress
    private let host: String
    private var clients: [Client] = []
    private var result = Result()
    private var stopAt: UInt64 = 0
    private var started: UInt64 = 0
    private var nextRequest: () -> (method: String, path: String, body: [UInt8]?)
    private var ratePerSecond: Double?
    private var issued = 0
    private var maxRequests: Int?
    private var active = 0

    public init(target address: String, request: @escaping () -> (method: String, path: String, body: [UInt8]?)) throws {
        target = try SocketAddress(address)
        host = address
        nextRequest = request
    }

    /// Headers sent with every request (an AWS `X-Amz-Target`).
    public var headers: [(String, String)] = []

    /// Statuses that count as served (a get of a missing key answering 404 is served).
    public var served: (Int) -> Bool = { (200..<300).contains($0) }

    public func run(connections: Int, duration: Duration, ratePerSecond: Double? = nil, maxRequests: Int? = nil) -> Result {
        self.ratePerSecond = ratePerSecond
        self.maxRequests = maxRequests
        started = loop.now.nanoseconds
        stopAt = started + UInt64(duration.nanoseconds)
        for _ in 0..<connections {
            let client = Client()
            clients.append(client)
            active += 1
            client.connection = TCPConnection.connect(loop: loop, to: target, timeout: .seconds(5)) { [unowned self] c, error in
                guard let c, error == nil else {
                    self.result.errors += 1
                    self.active -= 1
                    return
                }
                c.onData = { [unowned self] bytes in self.receive(client, bytes) }
                c.onClose = { [unowned self] in self.active -= 1 }
                c.startReading()
                self.send(client)
            }
        }
        while active > 0 { loop.runOnce() }
        result.seconds = Double(min(loop.now.nanoseconds, stopAt) - started) / 1e9
        return result
    }

    private func send(_ client: Client) {
        let now = loop.now.nanoseconds
        if now >= stopAt || (maxRequests.map { issued >= $0 } ?? false) {
            client.connection?.close()
            return
        }
        if let rate = ratePerSecond {
            // Pace: request k is due at started + k / rate.
            let due = started + UInt64(Double(issued) / rate * 1e9)
            if due > now {
                let timer = Timer(loop: loop)
                timer.start(after: .nanoseconds(Int64(due - now))) { [unowned self] in
                    _ = timer
                    self.transmit(client)
                }
                return
            }
        }
        transmit(client)
    }

    private func transmit(_ client: Client) {
        issued += 1
        let r = nextRequest()
        var head = "\(r.method) \(r.path) HTTP/1.1\r\nHost: \(host)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if let body = r.body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        client.sentAt = loop.now.nanoseconds
        client.connection?.write(Array(head.utf8) + (r.body ?? []))
    }

    private func receive(_ client: Client, _ bytes: UnsafeRawBufferPointer) {
        client.buffer.append(contentsOf: bytes)
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = client.buffer.firstRange(of: separator) else { return }
        let head = String(decoding: client.buffer[..<end.lowerBound], as: UTF8.self)
        var length = 0
        for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
            length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
        }
        guard client.buffer.count >= end.upperBound + length else { return }
        let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        client.buffer.removeFirst(end.upperBound + length)
        if served(status) {
            result.requests += 1
            result.latenciesMs.append(Double(loop.now.nanoseconds - client.sentAt) / 1e6)
        } else {
            result.errors += 1
        }
        send(client)
    }
}

