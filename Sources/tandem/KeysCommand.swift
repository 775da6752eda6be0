import ArgumentParser
import Foundation
import TandemNode

/// `tandem keys generate|list|install|use|remove`: the cluster keyring. Rotation without
/// downtime: install the new key everywhere, use it everywhere, then remove the old one.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Manage the cluster encryption keyring.",
        subcommands: [Generate.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a new random base64 cluster key.")
        func run() { print(Keyring.generate()) }
    }
}
