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

/// The HTTP request path (parser, limits, token check, routing, JSON bodies) under mutated
/// requests: the deterministic stand-in for a libFuzzer harness, which would need the server
/// outside its libuv connection. Seeded, bounded, and the node must keep serving throughout.
@Suite(.serialized) struct HTTPMutationTests {
    static let seeds: [String] = [
        "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v1/members HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-0123456789abcdef\r\n\r\n",
        "PUT /v1/tables/fz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-0123456789abcdefg\r\nContent-Length: 24\r\n\r\n{\"partitionKey\":\"pk\"}   ",
        "PUT /v1/tables/fz/items/k1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer writer-0123456789abcdef\r\nContent-Length: 47\r\n\r\n{\"a\":1,\"b\":[true,null,{\"$SS\":[\"x\"]}],\"c\":\"é\"}",
        "PATCH /v1/tables/fz/items/k1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer writer-0123456789abcdef\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"a\":2.5}\r\n0\r\n\r\n",
        "GET /v1/tables/fz/items?pk=k1&limit=5 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-0123456789abcdef\r\n\r\n",
        "GET /v1/route?region=region-0&x=%41%zz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-0123456789abcdef\r\n\r\n",
        "POST /v1/streams/s1/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer writer-0123456789abcdef\r\nContent-Length: 28\r\n\r\n{\"key\":\"k\",\"data\":\"aGVsbG8=\"}"
    ]

    static func mutate(_ input: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
        var b = input
        for _ in 0..<(1 + Int(rng.next() % 4)) {
            let i = b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count))
            switch rng.next() % 6 {
            case 0 where !b.isEmpty: b[i] ^= UInt8(1 << (rng.next() % 8))
            case 1 where !b.isEmpty: b[i] = UInt8(truncatingIfNeeded: rng.next())
            case 2: b.insert(contentsOf: [UInt8]("\r\n:{}[]\"%0 \u{0}".utf8).shuffled(using: &rng).prefix(Int(rng.next() % 4) + 1), at: i)
            case 3 where !b.isEmpty: b.removeSubrange(i..<min(b.count, i + Int(rng.next() % 16) + 1))
            case 4 where !b.isEmpty: b.insert(contentsOf: b[i..<min(b.count, i + Int(rng.next() % 64) + 1)], at: i)  // duplicate a range
            default: b = Array(b.prefix(i))  // truncate
            }
        }
        return b
    }

    /// Sends the bytes, half-closes, and reads whatever comes back (the node sees EOF at once).
    static func send(_ bytes: [UInt8], to address: String) -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = TestUDPSocket.address(address)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { return [] }
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_WR))
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    @Test func mutatedRequestsNeverTakeTheNodeDown() throws {
        let cluster = try LocalCluster(size: 1)
        try FileManager.default.createDirectory(atPath: cluster.root, withIntermediateDirectories: true)
        try APITokenTests.file.write(toFile: cluster.root + "/tokens", atomically: true, encoding: .utf8)
        try cluster.start(0, extraArgs: ["--api-tokens", cluster.root + "/tokens"])
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(5)) { (try? HTTPClient.request("GET", api, "/v1/health"))?.status == 200 })
        for s in Self.seeds { _ = Self.send(Array(s.utf8), to: api) }  // the table exists for the mutants
        var rng = SeededGenerator(seed: 2024)
        var statuses: [String: Int] = [:]
        let iterations = 400
        for i in 0..<iterations {
            let seed = Array(Self.seeds[Int(rng.next() % UInt64(Self.seeds.count))].utf8)
            let answer = Self.send(Self.mutate(seed, &rng), to: api)
            let status =
                String(decoding: answer.prefix(12), as: UTF8.self).split(separator: " ").dropFirst().first.map(String.init) ?? "none"
            statuses[status, default: 0] += 1
            if i % 50 == 49 {
                #expect((try? HTTPClient.request("GET", api, "/v1/health"))?.status == 200, "node stopped serving after \(i + 1) mutants")
            }
        }
        #expect(cluster.nodes[0].pid.map { kill($0, 0) == 0 } == true)
        #expect((try? HTTPClient.request("GET", api, "/v1/health"))?.status == 200)
        #expect(statuses["500"] == nil, "internal errors: \(statuses)")
        print("HTTP mutants: \(iterations), answers by status: \(statuses.sorted { $0.key < $1.key })")
    }
}
