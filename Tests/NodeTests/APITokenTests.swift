import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

/// Bearer tokens: the role table, and a real node answering 401/403 as JSON.
@Suite(.serialized) struct APITokenTests {
    typealias Role = APITokens.Role
    static let file = """
        # token            role
        reader-0123456789abcdef read
        writer-0123456789abcdef write
        admin-0123456789abcdefg admin
        """

    @Test func roleTable() {
        func need(_ m: String, _ p: String) -> Role? {
            APITokens.requiredRole(method: m, segments: p.split(separator: "/").map(String.init))
        }
        #expect(need("GET", "/v1/health") == nil)
        #expect(need("GET", "/metrics") == .read)
        #expect(need("GET", "/v1/members") == .read)
        #expect(need("GET", "/v1/tables/agents/items/a1") == .read)
        #expect(need("PUT", "/v1/tables/agents/items/a1") == .write)
        #expect(need("PATCH", "/v1/tables/agents/items/a1") == .write)
        #expect(need("POST", "/v1/streams/calls/records") == .write)
        #expect(need("GET", "/v1/route") == .read)
        for (m, p) in [
            ("PUT", "/v1/tables/agents"), ("DELETE", "/v1/tables/agents"), ("PUT", "/v1/streams/calls"),
            ("DELETE", "/v1/streams/calls"), ("PUT", "/v1/split"), ("PUT", "/v1/edges"),
            ("POST", "/v1/regions/eu/drain"), ("PUT", "/v1/regions/eu/capacity"), ("GET", "/v1/keys"),
            ("POST", "/v1/keys"), ("DELETE", "/v1/keys/abcd0123"), ("POST", "/v1/chaos"), ("DELETE", "/v1/chaos")
        ] {
            #expect(need(m, p) == .admin, "\(m) \(p)")
        }
        #expect(need("GET", "/v1/split") == .read)
    }

    @Test func tokensFileAndLookup() throws {
        let tokens = try APITokens(Self.file)
        #expect(tokens.count == 3)
        #expect(tokens.role(of: "reader-0123456789abcdef") == .read)
        #expect(tokens.role(of: "admin-0123456789abcdefg") == .admin)
        #expect(tokens.role(of: "admin-0123456789abcdef") == nil)  // a prefix is not the token
        #expect(tokens.role(of: "") == nil)
        #expect(throws: TandemError.self) { try APITokens("short read\n") }
        #expect(throws: TandemError.self) { try APITokens("abcdefghijklmnopqrstu root\n") }
        #expect(throws: TandemError.self) { try APITokens("# none\n") }
        do {
            _ = try APITokens("secret-token-never-echoed superuser\n")
        } catch {
            #expect(!"\(error)".contains("secret-token-never-echoed"))
        }
    }

    @Test func aNodeWithTokensAnswers401And403() throws {
        let cluster = try LocalCluster(size: 1)
        try FileManager.default.createDirectory(atPath: cluster.root, withIntermediateDirectories: true)
        let path = cluster.root + "/tokens"
        try Self.file.write(toFile: path, atomically: true, encoding: .utf8)
        try cluster.start(0, extraArgs: ["--api-tokens", path])
        let api = cluster.nodes[0].api
        func call(_ m: String, _ p: String, _ token: String?, _ body: String? = nil) -> HTTPClient.Response? {
            try? HTTPClient.request(
                m, api, p, body: body.map { Array($0.utf8) },
                headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [])
        }
        #expect(eventually(timeout: .seconds(5)) { call("GET", "/v1/health", nil)?.status == 200 })
        let missing = call("GET", "/v1/members", nil)
        #expect(missing?.status == 401)
        #expect(missing?.json()?["error"]?.stringValue == "unauthorized")
        #expect(call("GET", "/v1/members", "wrong-0123456789abcdef")?.status == 401)
        #expect(call("GET", "/v1/members", "reader-0123456789abcdef")?.status == 200)
        #expect(call("GET", "/metrics", "reader-0123456789abcdef")?.status == 200)
        let schema = #"{"partitionKey":"agentId"}"#
        let forbidden = call("PUT", "/v1/tables/agents", "writer-0123456789abcdef", schema)
        #expect(forbidden?.status == 403)
        #expect(forbidden?.json()?["error"]?.stringValue == "forbidden")
        #expect(call("PUT", "/v1/tables/agents", "admin-0123456789abcdefg", schema).map { $0.status < 300 } == true)
        #expect(call("PUT", "/v1/tables/agents/items/a1", "reader-0123456789abcdef", #"{"s":"x"}"#)?.status == 403)
        #expect(
            eventually(timeout: .seconds(5)) {
                call("PUT", "/v1/tables/agents/items/a1", "writer-0123456789abcdef", #"{"s":"x"}"#).map { $0.status < 300 } == true
            })
        #expect(call("GET", "/v1/tables/agents/items/a1", "reader-0123456789abcdef")?.status == 200)
        #expect(call("POST", "/v1/chaos", "writer-0123456789abcdef", "{}")?.status == 403)
        #expect(call("GET", "/v1/keys", "admin-0123456789abcdefg")?.status == 409)  // allowed; encryption is off
        // The lowercase scheme is accepted; tokens never reach the log.
        #expect(
            (try? HTTPClient.request("GET", api, "/v1/members", headers: [("authorization", "bearer reader-0123456789abcdef")]))?.status
                == 200)
        #expect(!cluster.log(0).contains("0123456789abcdef"))
    }
}
