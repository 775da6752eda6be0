import ArgumentParser
import Foundation
import Storage
import TandemNode
import TandemTestKit
import Transport

/// `tandem http METHOD HOST:PORT PATH [--body JSON]`: one request to a node's API, the answer on
/// stdout; exit status 1 on a 4xx/5xx. Tooling (cluster/) uses it so it needs no curl.
struct HTTPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "http", abstract: "Send one HTTP request to a node's API.")

    @Argument var method: String
    @Argument var api: String
    @Argument var path: String
    @Option var body: String?
    @Option(help: "Seconds to wait for the answer.") var timeout = 5.0

    func run() throws {
        let r = try HTTPClient.request(
            method.uppercased(), api, path, body: body.map { Array($0.utf8) },
            timeout: .milliseconds(Int64(timeout * 1000)))
        print(r.text, terminator: r.text.hasSuffix("\n") ? "" : "\n")
        if r.status >= 400 { throw ExitCode(1) }
    }
}
