import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Slow-request deadlines and the per-client connection limit, on a real node.
@Suite(.serialized) struct HTTPLimitTests {
    /// A blocking TCP client socket with a receive timeout.
    final class Client {
        let fd: Int32
        init(_ address: String) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = TestUDPSocket.address(address)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { throw TandemError(.unavailable, "connect failed") }
        }
        /// false once the server has closed the connection.
        @discardableResult
        func send(_ text: String) -> Bool {
            Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } > 0
        }
        /// Everything until the server closes (or the 5 s timeout).
        func readAll() -> String {
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { break }
                out += buf[0..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }
        /// Whether the server sent something (or closed) within `timeoutMs`, without reading it.
        func readable(timeoutMs: Int32) -> Bool {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return poll(&p, 1, timeoutMs) == 1
        }
        /// One whole response (headers and Content-Length body), or what came before the server
        /// closed or the 5 s timeout; the connection stays usable for the next request.
        func readResponse() -> String {
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                if let head = out.firstRange(of: Array("\r\n\r\n".utf8)) {
                    let headers = String(decoding: out[..<head.lowerBound], as: UTF8.self).lowercased()
                    let length =
                        headers.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                        .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                    if out.count >= head.upperBound + length { break }
                }
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { break }
                out += buf[0..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }
        deinit { close(fd) }
    }

    @Test func aSlowLorisIsCutOffAtTheHeaderDeadline() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0, extraArgs: ["--request-timeout", "1"])
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(5)) { cluster.view(from: 0) != nil })
        let loris = try Client(api)
        loris.send("GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        // One header byte whenever 200 ms pass without an answer: the connection is never idle,
        // so only the header deadline (1 s) can end it, and it must do so while the client is
        // still trickling. The 10 s bound only stops a node that never cuts it off.
        let giveUp = ContinuousClock.now + .seconds(10)
        var trickled = 0
        while ContinuousClock.now < giveUp, !loris.readable(timeoutMs: 200), loris.send("X") { trickled += 1 }
        #expect(loris.readable(timeoutMs: 0), "not cut off after trickling \(trickled) header bytes for 10 s")
        let answer = loris.readAll()
        #expect(answer.hasPrefix("HTTP/1.1 408"), "got: \(answer.prefix(200))")
        #expect(answer.contains("request_timeout"))
        #expect(cluster.metric("tandem_http_request_timeouts_total", node: 0) == 1)
        // A prompt client on a kept-alive connection is not affected by time between requests:
        // after its first answer it stays quiet past the request deadline, and the node neither
        // answers nor closes meanwhile, then serves the next request.
        let prompt = try Client(api)
        prompt.send("GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        let first = prompt.readResponse()
        #expect(first.hasPrefix("HTTP/1.1 200"), "\(first)")
        #expect(!prompt.readable(timeoutMs: 1_500), "the node closed or wrote to an idle kept-alive connection")
        prompt.send("GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let second = prompt.readAll()
        #expect(second.hasPrefix("HTTP/1.1 200"), "\(second)")
    }

    @Test func oneClientCannotTakeEveryConnection() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0, extraArgs: ["--max-client-connections", "3"])
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(5)) { cluster.view(from: 0) != nil })
        // The probes above have closed their connections, but the node may see the last close
        // a moment after the client did: wait until it holds none of ours, i.e. three fresh
        // connections are all served. (A try the node refuses counts in the metric below.)
        var held: [Client] = []
        var refusedWhileWaiting = 0
        #expect(
            eventually(timeout: .seconds(5)) {
                held = []  // the last try's connections close before the next opens its own
                held = (0..<3).compactMap { _ in try? Client(api) }
                let answers = held.map { c -> String in
                    c.send("GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                    return c.readResponse()
                }
                refusedWhileWaiting += answers.filter { $0.hasPrefix("HTTP/1.1 429") }.count
                return held.count == 3 && answers.allSatisfy { $0.hasPrefix("HTTP/1.1 200") }
            }, "three fresh connections were not all served")
        let refused = try Client(api)
        let answer = refused.readAll()
        #expect(answer.hasPrefix("HTTP/1.1 429"), "got: \(answer.prefix(200))")
        #expect(answer.contains("Retry-After: 1"))
        #expect(answer.contains("too_many_connections_from_client"))
        // A held connection still works, and closing one frees a place.
        held[0].send("GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(held[0].readAll().hasPrefix("HTTP/1.1 200"))
        held.removeFirst()
        #expect(eventually(timeout: .seconds(2)) { (try? HTTPClient.request("GET", api, "/v1/health"))?.status == 200 })
        // (the server may see the last client's close a moment after the client does)
        #expect(
            eventually(timeout: .seconds(2)) {
                (cluster.metric("tandem_http_client_limit_rejected_total", node: 0) ?? 0) >= Double(1 + refusedWhileWaiting)
            })
        _ = held
    }
}
