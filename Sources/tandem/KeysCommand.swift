import ArgumentParser
import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Transport

/// `tandem keys generate|list|install|use|remove`: the cluster keyring. Rotation without
/// downtime: `install` the new key everywhere, `use` it everywhere, then `remove` the old one.
/// Each command goes to every live member (found through `--api`) and prints, per node, whether
/// it took effect; it exits 1 if any node did not.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Manage the cluster encryption keyring (set TANDEM_TOKEN to an admin token if the API requires one).",
        subcommands: [Generate.self, List.self, Install.self, Use.self, Remove.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a new random base64 cluster key.")
        func run() { print(Keyring.generate()) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Each node's key IDs (primary first).")
        @Option(help: "host:port of any node's API.") var api: String
        func run() throws {
            try fanOut(api) { node in
                try HTTPClient.request("GET", node, "/v1/keys")
            } describe: { object in
                let keys = object["keys"]?.arrayValue?.compactMap(\.stringValue) ?? []
                return keys.enumerated().map { $0.offset == 0 ? "\($0.element) (primary)" : $0.element }.joined(separator: ", ")
            }
        }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a key to every node's keyring (accepted, not yet used to send).")
        @Argument(help: "The base64 key (tandem keys generate).") var key: String
        @Option(help: "host:port of any node's API.") var api: String
        func run() throws {
            _ = try Keyring.Key(base64: key)
            let body: JSON = ["key": JSON(key)]
            try fanOut(api) { node in
                try HTTPClient.request("POST", node, "/v1/keys", body: Array(body.serialized.utf8))
            } describe: {
                changeText($0)
            }
        }
    }

    struct Use: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make an installed key the primary on every node.")
        @Argument(help: "The base64 key, or its 8-hex-digit ID.") var key: String
        @Option(help: "host:port of any node's API.") var api: String
        func run() throws {
            let id = try keyID(key)
            try fanOut(api) { node in
                try HTTPClient.request("POST", node, "/v1/keys/\(id)/use")
            } describe: {
                changeText($0)
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key (not the primary) from every node.")
        @Argument(help: "The base64 key, or its 8-hex-digit ID.") var key: String
        @Option(help: "host:port of any node's API.") var api: String
        func run() throws {
            let id = try keyID(key)
            try fanOut(api) { node in
                try HTTPClient.request("DELETE", node, "/v1/keys/\(id)")
            } describe: {
                changeText($0)
            }
        }
    }
}

private func keyID(_ text: String) throws -> String {
    if text.count == 8, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
    return try Keyring.Key(base64: text).idHex
}

private func changeText(_ object: JSON) -> String {
    let changed = object["changed"]?.boolValue == true
    return
        "\(changed ? "changed" : "already so"); primary \(object["primary"]?.stringValue ?? "?"), \(object["keys"]?.arrayValue?.count ?? 0) keys"
}

/// Runs `call` on every live member's API, printing `NAME  ok: …` or `NAME  FAILED: …` per node.
private func fanOut(
    _ api: String, _ call: (String) throws -> HTTPClient.Response,
    describe: (JSON) -> String
) throws {
    let members = try HTTPClient.request("GET", api, "/v1/members")
    guard members.status == 200, let list = members.json()?["members"]?.arrayValue else {
        throw ValidationError("cannot list members at \(api): \(members.status) \(members.text)")
    }
    var failures = 0
    for m in list.sorted(by: { fieldText($0["name"]) < fieldText($1["name"]) }) {
        let name = m["name"]?.stringValue ?? "?"
        guard m["status"]?.stringValue == "alive", let nodeAPI = m["api"]?.stringValue else {
            print("\(name)  skipped: \(m["status"]?.stringValue ?? "unknown")")
            continue
        }
        do {
            let r = try call(nodeAPI)
            if r.status == 200, let answer = r.json(), answer.objectValue != nil {
                print("\(name)  ok: \(describe(answer))")
            } else {
                failures += 1
                print("\(name)  FAILED: \(r.status) \(r.text.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        } catch {
            failures += 1
            print("\(name)  FAILED: \(error)")
        }
    }
    if failures > 0 { throw ExitCode(1) }
}
