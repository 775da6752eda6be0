import Foundation
import Membership
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Garbage at every port: the node answers what deserves an answer with a JSON error, drops
/// the rest, counts it, and keeps serving.
@Suite(.serialized) struct BadInputTests {
    @Test func gossipPortSurvivesRandomAndTruncatedDatagrams() throws {
        let cluster = try LocalCluster(size: 2)
        try cluster.startAll()
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0)?["n2"]?.status == "alive" })
        let target = cluster.nodes[0].bind
        var rng = SeededGenerator(seed: 42)
        var expectedMalformed = 0
        func malformedCount() -> Double { cluster.metric("tandem_gossip_malformed_packets_total", node: 0) ?? -1 }
        for batch in 0..<20 {
            for _ in 0..<25 {
                let n = Int(rng.next() % 1500)
                var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if n > 0 && bytes[0] == Packet.magic { bytes[0] = 0 }  // keep it certainly foreign
                sendDatagram(bytes, to: target)
                expectedMalformed += 1
            }
            // Paced, so the kernel's receive buffer (not the node) is never what drops them.
            let seen = eventually(timeout: .seconds(5)) { malformedCount() >= Double(expectedMalformed) }
            #expect(seen, "batch \(batch): counter \(malformedCount()) < \(expectedMalformed)")
        }
        let valid = Packet([.ping(seq: 7, target: "n1"), .suspect(name: "n2", incarnation: 1, from: "n9")]).encode()
        for cut in 0..<valid.count {
            let prefix = Array(valid.prefix(cut))
            sendDatagram(prefix, to: target)
            // Some prefixes end on a message boundary and are valid packets; count the rest.
            if (try? Packet.decode(prefix)) == nil { expectedMalformed += 1 }
        }
        var wrongVersion = valid
        wrongVersion[1] = 99
        sendDatagram(wrongVersion, to: target)
        expectedMalformed += 1
        sendDatagram(Array(repeating: 0xD7, count: 4000), to: target)  // oversized
        expectedMalformed += 1

        let counted = eventually(timeout: .seconds(10)) { malformedCount() >= Double(expectedMalformed) }
        #expect(counted, "malformed counter: \(malformedCount()) of \(expectedMalformed)")
        #expect(try HTTPClient.request("GET", cluster.nodes[0].api, "/v1/health").status == 200)
        #expect(eventually(timeout: .seconds(5)) { cluster.view(from: 1)?["n1"]?.status == "alive" })
    }

    @Test func peerPortSurvivesGarbageAndBadFrames() throws {
        let cluster = try LocalCluster(size: 2)
        try cluster.startAll()
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0)?["n2"]?.status == "alive" })
        let target = try SocketAddress(cluster.nodes[0].bind)
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<20 {
            let bytes = (0..<Int(rng.next() % 4096 + 16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? HTTPClient.exchange(target, bytes, timeout: .milliseconds(300))
        }
        // A frame claiming 2 GB, one with a bad CRC, one with a wrong version, a truncated one.
        let good = Frame(kind: FrameKind.pushPull, requestID: 1, payload: [1, 2, 3]).encode()
        var badCRC = good
        badCRC[badCRC.count - 1] ^= 0xFF
        var badVersion = good
        badVersion[4] = 9
        for bytes in [[0x7F, 0xFF, 0xFF, 0xFF, 1, 1], badCRC, badVersion, Array(good.prefix(7)), good] {
            _ = try? HTTPClient.exchange(target, bytes, timeout: .milliseconds(300))
        }
        let counted = eventually(timeout: .seconds(5)) {
            (cluster.metric("tandem_peer_malformed_frames_total", node: 0) ?? 0) >= 4
        }
        #expect(counted)
        #expect(try HTTPClient.request("GET", cluster.nodes[0].api, "/v1/health").status == 200)
        #expect(eventually(timeout: .seconds(5)) { cluster.view(from: 1)?["n1"]?.status == "alive" })
    }

    @Test func apiAnswersBadRequestsWithJSONErrors() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        let address = try SocketAddress(api)

        func expectJSONError(
            _ call: @autoclosure () throws -> HTTPClient.Response, _ status: Int,
            _ sourceLocation: SourceLocation = #_sourceLocation
        ) {
            let r: HTTPClient.Response
            do { r = try call() } catch {
                Issue.record("expected \(status), got \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(r.status == status, "got \(r.status): \(r.text)", sourceLocation: sourceLocation)
            let object = r.json()
            #expect(
                object?["error"]?.stringValue != nil && object?["message"]?.stringValue != nil, "not a JSON error: \(r.text)",
                sourceLocation: sourceLocation)
        }

        expectJSONError(try HTTPClient.request("GET", api, "/v1/nope"), 404)
        expectJSONError(try HTTPClient.request("DELETE", api, "/v1/members"), 405)
        expectJSONError(try HTTPClient.request("POST", api, "/v1/chaos", body: Array("{}".utf8)), 403)
        expectJSONError(try HTTPClient.exchange(address, Array("NOT HTTP AT ALL\r\n\r\n".utf8), timeout: .seconds(2)), 400)
        let hugeHeader = "GET /v1/health HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 40_000))\r\n\r\n"
        expectJSONError(try HTTPClient.exchange(address, Array(hugeHeader.utf8), timeout: .seconds(2)), 431)
        let hugeBody = "POST /v1/chaos HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n" + String(repeating: "x", count: 100_000)
        expectJSONError(try HTTPClient.exchange(address, Array(hugeBody.utf8), timeout: .seconds(2)), 413)
        let longURL = "GET /\(String(repeating: "a", count: 10_000)) HTTP/1.1\r\n\r\n"
        expectJSONError(try HTTPClient.exchange(address, Array(longURL.utf8), timeout: .seconds(2)), 414)

        // Two pipelined requests on one keep-alive connection are answered in order.
        let pipelined = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        let raw = try rawExchange(address, Array(pipelined.utf8))
        let first = raw.range(of: "HTTP/1.1 200")
        let second = raw.range(of: "HTTP/1.1 404")
        #expect(first != nil && second != nil && first!.lowerBound < second!.lowerBound, "pipelined answers: \(raw)")

        #expect((cluster.metric("tandem_http_bad_requests_total", node: 0) ?? 0) >= 4)
        #expect(try HTTPClient.request("GET", api, "/v1/health").status == 200)
    }

    @Test func chaosEndpointValidatesItsInput() throws {
        let cluster = try LocalCluster(size: 1, chaos: true)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        #expect(try HTTPClient.request("POST", api, "/v1/chaos", body: Array("{not json".utf8)).status == 400)
        #expect(try HTTPClient.request("POST", api, "/v1/chaos", body: Array(#"{"dropRate":7}"#.utf8)).status == 400)
        #expect(try HTTPClient.request("POST", api, "/v1/chaos", body: Array(#"{"block":["nowhere"]}"#.utf8)).status == 400)
        #expect(try HTTPClient.request("POST", api, "/v1/chaos", body: Array(#"{"delayMs":-1}"#.utf8)).status == 400)
        #expect(try HTTPClient.request("POST", api, "/v1/chaos", body: Array(#"{"delays":{"nowhere":5}}"#.utf8)).status == 400)
        let ok = try HTTPClient.request(
            "POST", api, "/v1/chaos", body: Array(#"{"dropRate":0.5,"block":["127.0.0.1:9"],"delays":{"10.0.0.2":20}}"#.utf8))
        #expect(ok.status == 200, "\(ok.text)")
        #expect(try HTTPClient.request("DELETE", api, "/v1/chaos").status == 200)
    }

    /// The opt-in shaper delays what a node sends to its peers (cluster/ uses it for latency
    /// between regions): with 60 ms each way, the probes' round trip shows it.
    @Test func injectedDelayShowsInTheMeasuredRoundTrip() throws {
        // The lan profile: its probe timeout (500 ms) is well above the 120 ms round trip.
        let cluster = try LocalCluster(size: 2, profile: "lan", chaos: true)
        try cluster.startAll()
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0)?.values.filter { $0.status == "alive" }.count == 2 })
        for i in 0..<2 { #expect(cluster.setChaos(i, delayMs: 60)) }
        func rtt() -> Double? {
            guard let r = try? HTTPClient.request("GET", cluster.nodes[0].api, "/v1/members"), let j = try? JSON.parse(r.body),
                case .array(let members)? = j["members"]
            else { return nil }
            return members.compactMap { m -> Double? in
                guard m["name"]?.stringValue == "n2", case .number(let n)? = m["rttEstimateMs"] else { return nil }
                return Double(n)
            }.first
        }
        #expect(eventually(timeout: .seconds(20), interval: .milliseconds(200)) { (rtt() ?? 0) > 90 }, "rtt estimate \(rtt() ?? -1) ms")
    }
}

func sendDatagram(_ bytes: [UInt8], to address: String) {
    let parts = address.split(separator: ":")
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(parts[1])!.bigEndian)
    addr.sin_addr.s_addr = inet_addr(String(parts[0]))
    _ = bytes.withUnsafeBytes { buf in
        withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}

/// Sends raw bytes over TCP and returns everything the server wrote before closing.
func rawExchange(_ address: SocketAddress, _ bytes: [UInt8]) throws -> String {
    let parts = address.description.split(separator: ":")
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(parts[1])!.bigEndian)
    addr.sin_addr.s_addr = inet_addr(String(parts[0]))
    var timeout = timeval(tv_sec: 3, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw TandemError(.unavailable, "connect failed") }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// Regressions from review, at the process level.
@Suite(.serialized) struct HostileClientTests {
    @Test func aClientThatPipelinesAndNeverReadsIsCutOff() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        // 20,000 requests whose answers (about 5 KB each) the client reads only at the very end.
        let flood = String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 20_000)
        _ = try? rawExchange(try SocketAddress(api), Array(flood.utf8))
        #expect(try HTTPClient.request("GET", api, "/v1/health").status == 200)
        // Execution stopped once 4 MiB of answers sat unread (plus what kernel buffers held).
        #expect((cluster.metric("tandem_http_requests_total", node: 0) ?? 99999) < 5_000)
    }

    /// Pipelined requests whose answers complete later (stream puts answer after commit) are
    /// answered each with its own answer, in request order. (A slot index taken on arrival went
    /// stale once earlier answers were written: 2 of 8 pipelined puts were answered.)
    @Test func pipelinedPutsAreAnsweredInOrder() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        #expect(try HTTPClient.request("PUT", api, "/v1/streams/pipe", body: Array(#"{"partitions":1}"#.utf8)).status == 201)
        #expect(
            eventually(timeout: .seconds(10)) {
                (try? HTTPClient.request("POST", api, "/v1/streams/pipe/records", body: Array(#"{"key":"k","data":"eA=="}"#.utf8)))?.status
                    == 200
            })
        var bytes: [UInt8] = []
        for i in 0..<8 {
            let body = #"{"key":"k\#(i)","data":"\#(Base64.encode(Array("record \(i)".utf8)))"}"#
            bytes += Array("POST /v1/streams/pipe/records HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        }
        bytes += Array("GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
        let answers = try rawExchange(try SocketAddress(api), bytes)
        let sequences = answers.components(separatedBy: "\"sequence\":\"").dropFirst().compactMap { UInt64($0.prefix(20)) }
        #expect(answers.components(separatedBy: "HTTP/1.1 200").count - 1 == 9, "\(answers)")
        #expect(sequences.count == 8 && sequences == sequences.sorted() && Set(sequences).count == 8, "\(sequences)")
    }

    /// Clients that send requests and reset the connection while the answers are being written:
    /// the node's writes then fail with EPIPE, which must be an error, not SIGPIPE killing it.
    @Test func clientsThatResetMidAnswerDoNotKillTheNode() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        let address = try SocketAddress(api)
        let parts = address.description.split(separator: ":")
        let requests = Array(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 30).utf8)
        for _ in 0..<200 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(parts[1])!.bigEndian)
            addr.sin_addr.s_addr = inet_addr(String(parts[0]))
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc == 0 {
                _ = requests.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                var one = [UInt8](repeating: 0, count: 1)
                _ = recv(fd, &one, 1, 0)  // the first answer is being written: now reset
                var reset = linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
            }
            close(fd)
        }
        #expect(cluster.processState(0).hasPrefix("running"), "the node died: \(cluster.processState(0))")
        #expect(try HTTPClient.request("GET", api, "/v1/health").status == 200)
    }

    @Test func nothingAfterConnectionCloseIsExecuted() throws {
        let cluster = try LocalCluster(size: 1, chaos: true)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        let body = #"{"dropRate":1}"#
        let raw =
            "GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n"
            + "POST /v1/chaos HTTP/1.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let answer = try rawExchange(try SocketAddress(api), Array(raw.utf8))
        #expect(answer.hasPrefix("HTTP/1.1 200"))
        #expect(!answer.contains("dropRate"), "the request after Connection: close ran: \(answer)")
        #expect((cluster.metric("tandem_chaos_dropped_total", node: 0) ?? -1) == 0)
    }

    @Test func aTakenPortIsAClearErrorNotACrash() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        let log = cluster.root + "/second.log"
        let pid = try spawn(
            cluster.binary,
            [
                "node", "--name", "other", "--region", "r", "--bind", cluster.nodes[0].bind,
                "--api", "127.0.0.1:1", "--data-dir", cluster.root + "/other"
            ], log: log)
        #expect(waitExit(pid) == 1)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("bind udp") && text.contains("EADDRINUSE"), "\(text)")
    }
}
