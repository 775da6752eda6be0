import Foundation
import TandemCore
import Transport

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
        /// Send times of the requests in flight, oldest first (answers come in request order).
        var sentAt: [UInt64] = []
        var oldest = 0
        var inFlight: Int { sentAt.count - oldest }
        /// Requests made in this loop turn, written together.
        var outgoing: [UInt8] = []
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
    /// Paced slots handed out: each request takes its own (k / rate), including those waiting on
    /// a timer, so idle connections do not all wait for the same slot and then go off together.
    private var slots = 0
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

    /// `pipeline` requests in flight per connection (HTTP/1.1 pipelining; 1 is one at a time).
    public func run(
        connections: Int, duration: Duration, ratePerSecond: Double? = nil, maxRequests: Int? = nil,
        pipeline: Int = 1
    ) -> Result {
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
                for _ in 0..<max(1, pipeline) { self.send(client) }
                self.writeOut(client)
            }
        }
        while active > 0 { loop.runOnce() }
        result.seconds = Double(min(loop.now.nanoseconds, stopAt) - started) / 1e9
        return result
    }

    private func send(_ client: Client) {
        let now = loop.now.nanoseconds
        if now >= stopAt || (maxRequests.map { issued >= $0 } ?? false) {
            if client.inFlight == 0 { client.connection?.close() }
            return
        }
        if let rate = ratePerSecond {
            // Pace: request k is due at started + k / rate.
            let due = started + UInt64(Double(slots) / rate * 1e9)
            slots += 1
            if due > now {
                let timer = LoopTimer(loop: loop)
                timer.start(after: .nanoseconds(Int64(due - now))) { [unowned self] in
                    _ = timer
                    self.transmit(client)
                    self.writeOut(client)
                }
                return
            }
        }
        transmit(client)
    }

    private func transmit(_ client: Client) {
        issued += 1
        let r = nextRequest()
        // Built as bytes: the generator shares the cores with the nodes it measures, so every
        // microsecond it spends is one they do not get.
        // Appended to the requests made in this loop turn, written together (`writeOut`).
        client.outgoing.append(contentsOf: r.method.utf8)
        client.outgoing.append(0x20)
        client.outgoing.append(contentsOf: r.path.utf8)
        client.outgoing.append(contentsOf: requestHead)
        if let body = r.body {
            client.outgoing.append(contentsOf: "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
            client.outgoing.append(contentsOf: body)
        } else {
            client.outgoing.append(contentsOf: "\r\n".utf8)
        }
        client.sentAt.append(loop.now.nanoseconds)
    }

    private func writeOut(_ client: Client) {
        guard !client.outgoing.isEmpty else { return }
        client.connection?.write(client.outgoing)
        client.outgoing.removeAll(keepingCapacity: true)
    }

    /// ` HTTP/1.1`, Host and the extra headers: the same for every request.
    private lazy var requestHead: [UInt8] = {
        var head = " HTTP/1.1\r\nHost: \(host)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        return Array(head.utf8)
    }()

    /// Parses answers in place: status from the status line, the body length from
    /// Content-Length (the node always sends it), no Strings.
    private func receive(_ client: Client, _ bytes: UnsafeRawBufferPointer) {
        client.buffer.append(contentsOf: bytes)
        while let (status, total) = LoadGenerator.parseResponse(client.buffer) {
            client.buffer.removeFirst(total)
            guard client.inFlight > 0 else { break }  // an answer to nothing: the server misbehaves
            let sent = client.sentAt[client.oldest]
            client.oldest += 1
            if client.oldest > 4096 {
                client.sentAt.removeFirst(client.oldest)
                client.oldest = 0
            }
            if served(status) {
                result.requests += 1
                result.latenciesMs.append(Double(loop.now.nanoseconds - sent) / 1e6)
            } else {
                result.errors += 1
            }
            send(client)
        }
        writeOut(client)
    }

    /// The status and the whole response's length, once `buffer` holds a complete response.
    static func parseResponse(_ buffer: [UInt8]) -> (status: Int, length: Int)? {
        buffer.withUnsafeBufferPointer { b in
            let n = b.count
            guard n >= 16 else { return nil }
            var end = -1
            var i = 12
            while i + 3 < n {
                if b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { end = i; break }
                i += 1
            }
            guard end > 0 else { return nil }
            var status = 0
            for k in 9..<12 { status = status * 10 + Int(b[k] &- 48) }
            // Find "content-length:" at a line start, case-insensitively.
            let name = Array("content-length:".utf8)
            var length = 0
            var line = 0
            while line < end {
                if line + name.count <= end, (0..<name.count).allSatisfy({ (b[line + $0] | 0x20) == name[$0] || b[line + $0] == name[$0] })
                {
                    var k = line + name.count
                    while k < end, b[k] == 32 { k += 1 }
                    while k < end, b[k] >= 48, b[k] <= 57 { length = length * 10 + Int(b[k] - 48); k += 1 }
                    break
                }
                while line < end, b[line] != 10 { line += 1 }
                line += 1
            }
            let total = end + 4 + length
            return n >= total ? (status, total) : nil
        }
    }
}
