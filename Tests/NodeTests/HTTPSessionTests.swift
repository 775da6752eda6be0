import Foundation
import Storage
import TandemNode
import TandemTestKit
import Testing
import Transport

/// The kept-alive client long-polling readers use (`stream read --follow`, `stream consume`).
@Suite(.serialized) struct HTTPSessionTests {
    @Test func requestsShareOneConnectionAndAGetSurvivesTheNodeClosingIt() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        let before = cluster.metric("tandem_http_connections_total", node: 0) ?? -1
        let session = try HTTPSession(api)
        for _ in 0..<20 { #expect(try session.request("GET", "/v1/health").status == 200) }
        let after = cluster.metric("tandem_http_connections_total", node: 0) ?? -1
        // The metric reads above each open a connection of their own.
        #expect(after - before == 2, "20 requests took \(after - before - 1) connections")

        // An oversized header gets 431 and the node closes the connection after answering; the
        // session does not know until it uses it: the next GET is sent again on a new one.
        let big = try session.request("GET", "/v1/health", headers: [("X-Filler", String(repeating: "x", count: 40_000))])
        #expect(big.status == 431)
        #expect(try session.request("GET", "/v1/health").status == 200)
        #expect(try session.request("GET", "/v1/health").status == 200)
    }
}
