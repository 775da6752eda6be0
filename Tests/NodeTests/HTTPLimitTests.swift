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
        func send(_ text: String) -> Bool { Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } > 0 }
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
        deinit { close(fd) }
    }

    @Test func aSlowLorisIsCutOffAtTheHeaderDeadline() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0, extraArgs: ["--request-timeout", "1"])
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(5)) { cluster.view(from: 0) != nil })
        let loris = try Client(api)
        let start = ContinuousClock.now
        loris.send("GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        // One header byte every 200 ms keeps the idle timer happy but never finishes.
        var trickled = 0
        while ContinuousClock.now - start < .seconds(3), loris.send("X") {
            trickled += 1
            usleep(200_000)
        }
        let answer = loris.readAll()
        let took = ContinuousClock.now - start
        #expect(answer.hasPrefix("HTTP/1.1 408"), "got: \(answer.prefix(200))")
        #expect(answer.contains("request_timeout"))
        #expect(took < .seconds(4), "cut off after \(took)")
        #expect(cluster.metric("tandem_http_request_timeouts_total", node: 0) == 1)
        // A prompt client on a kept-alive connection is not affected by time between requests.
        let prompt = try Client(api)
        prompt.send("GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        usleep(1_500_000)
        prompt.send("GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let both = prompt.readAll()
        #expect(both.components(separatedBy: "HTTP/1.1 200").count - 1 == 2, "\(both)")
    }

    @Test func oneClientCannotTakeEveryConnection() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0, extraArgs: ["--max-client-connections", "3"])
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(5)) { cluster.view(from: 0) != nil })
        usleep(300_000)  // the probes above have closed
        var held = try (0..<3).map { _ in try Client(api) }
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
        #expect(eventually(timeout: .seconds(2)) { (cluster.metric("tandem_http_client_limit_rejected_total", node: 0) ?? 0) >= 1 })
        _ = held
    }
}
