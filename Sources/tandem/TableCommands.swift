import ArgumentParser
import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Transport

/// `tandem table …`: the global-table API from the command line.
struct TableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "table", abstract: "Create, write and read global tables.",
        subcommands: [Create.self, List.self, Describe.self, Drop.self, Put.self, Get.self, Update.self, Delete.self, Query.self, Scan.self]
    )

    struct Options: ParsableArguments {
        @Option(help: "host:port of any node's API.") var api: String
    }

    static func call(_ api: String, _ method: String, _ path: String, _ body: String? = nil) throws {
        let r = try HTTPClient.request(method, api, path, body: body.map { Array($0.utf8) })
        if r.status >= 300 {
            FileHandle.standardError.write(Data("error \(r.status): \(r.text)".utf8))
            throw ExitCode(1)
        }
        print(r.text, terminator: r.text.hasSuffix("\n") ? "" : "\n")
    }

    static func path(_ segments: String...) -> String {
        "/"
            + segments.map {
                $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? $0
            }
            .joined(separator: "/")
    }

    static func itemPath(_ table: String, _ pk: String, _ sk: String?) -> String {
        sk.map { path("v1", "tables", table, "items", pk, $0) } ?? path("v1", "tables", table, "items", pk)
    }

    struct Create: ParsableCommand {
        @Argument var table: String
        @Option(name: .customLong("partition-key")) var partitionKey: String
        @Option(name: .customLong("partition-key-type"), help: "S, N or B.") var partitionKeyType = "S"
        @Option(name: .customLong("sort-key")) var sortKey: String?
        @Option(name: .customLong("sort-key-type"), help: "S, N or B.") var sortKeyType = "S"
        @OptionGroup var options: Options
        func run() throws {
            var members: [(String, JSON)] = [("partitionKey", .string(partitionKey)), ("partitionKeyType", .string(partitionKeyType))]
            if let sortKey { members += [("sortKey", .string(sortKey)), ("sortKeyType", .string(sortKeyType))] }
            try call(options.api, "PUT", path("v1", "tables", table), JSON.object(members).serialized)
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var options: Options
        func run() throws { try call(options.api, "GET", "/v1/tables") }
    }

    struct Describe: ParsableCommand {
        @Argument var table: String
        @OptionGroup var options: Options
        func run() throws { try call(options.api, "GET", path("v1", "tables", table)) }
    }

    struct Drop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a table and its items.")
        @Argument var table: String
        @OptionGroup var options: Options
        func run() throws { try call(options.api, "DELETE", path("v1", "tables", table)) }
    }

    /// `tandem table put agents '{"agentId":"a-17",...}'`: the key comes from the item.
    struct Put: ParsableCommand {
        @Argument var table: String
        @Argument(help: "The item as JSON.") var item: String
        @OptionGroup var options: Options
        func run() throws {
            let schema = try HTTPClient.request("GET", options.api, path("v1", "tables", table))
            guard schema.status == 200, let s = try? JSON.parse(schema.body), let pkName = s["partitionKey"]?.stringValue else {
                throw ValidationError("no table '\(table)': \(schema.text)")
            }
            let j = try JSON.parse(Array(item.utf8))
            func keyText(_ name: String) throws -> String {
                switch j[name] {
                case .string(let v)?: return v
                case .number(let v)?: return v
                case .object(let m)? where m.count == 1 && m[0].0 == "$B": return m[0].1.stringValue ?? ""
                default: throw ValidationError("the item needs its key attribute '\(name)'")
                }
            }
            let sk = try s["sortKey"]?.stringValue.map { try keyText($0) }
            try call(options.api, "PUT", itemPath(table, try keyText(pkName), sk), item)
        }
    }

    struct Get: ParsableCommand {
        @Argument var table: String
        @Argument var pk: String
        @Argument var sk: String?
        @OptionGroup var options: Options
        func run() throws { try call(options.api, "GET", itemPath(table, pk, sk)) }
    }

    struct Delete: ParsableCommand {
        @Argument var table: String
        @Argument var pk: String
        @Argument var sk: String?
        @OptionGroup var options: Options
        func run() throws { try call(options.api, "DELETE", itemPath(table, pk, sk)) }
    }

    /// `tandem table update agents a-17 --set status=on-call --add handled=1`
    struct Update: ParsableCommand {
        @Argument var table: String
        @Argument var pk: String
        @Argument var sk: String?
        @Option(help: "name=value (value is JSON if it parses, else a string); repeatable.") var set: [String] = []
        @Option(help: "Attribute to remove; repeatable.") var remove: [String] = []
        @Option(help: "name=number to add; repeatable.") var add: [String] = []
        @Option(name: .customLong("add-to-set"), help: "name=element; repeatable.") var addToSet: [String] = []
        @Option(name: .customLong("remove-from-set"), help: "name=element; repeatable.") var removeFromSet: [String] = []
        @OptionGroup var options: Options

        func pairs(_ list: [String]) throws -> [(String, JSON)] {
            try list.map { entry in
                guard let eq = entry.firstIndex(of: "=") else { throw ValidationError("'\(entry)' is not name=value") }
                let raw = String(entry[entry.index(after: eq)...])
                let value = (try? JSON.parse(Array(raw.utf8))) ?? .string(raw)
                return (String(entry[..<eq]), value)
            }
        }

        func grouped(_ list: [String]) throws -> [(String, JSON)] {
            var order: [String] = []
            var values: [String: [JSON]] = [:]
            for (k, v) in try pairs(list) {
                if values[k] == nil { order.append(k) }
                values[k, default: []].append(v)
            }
            return order.map { ($0, .array(values[$0]!)) }
        }

        func run() throws {
            var members: [(String, JSON)] = []
            if !set.isEmpty { members.append(("set", .object(try pairs(set)))) }
            if !remove.isEmpty { members.append(("remove", .array(remove.map { .string($0) }))) }
            if !add.isEmpty { members.append(("add", .object(try pairs(add)))) }
            if !addToSet.isEmpty { members.append(("addToSet", .object(try grouped(addToSet)))) }
            if !removeFromSet.isEmpty { members.append(("removeFromSet", .object(try grouped(removeFromSet)))) }
            guard !members.isEmpty else {
                throw ValidationError("nothing to update: give --set, --remove, --add, --add-to-set or --remove-from-set")
            }
            try call(options.api, "PATCH", itemPath(table, pk, sk), JSON.object(members).serialized)
        }
    }

    struct Query: ParsableCommand {
        @Argument var table: String
        @Option var pk: String
        @Option(name: .customLong("sk-begins")) var skBegins: String?
        @Option(name: .customLong("sk-from")) var skFrom: String?
        @Option(name: .customLong("sk-to")) var skTo: String?
        @Option var limit = 100
        @Option(help: "Cursor from a previous page's \"next\".") var after: String?
        @OptionGroup var options: Options
        func run() throws {
            var q = ["pk": pk, "limit": String(limit)]
            q["skBegins"] = skBegins
            q["skFrom"] = skFrom
            q["skTo"] = skTo
            q["after"] = after
            try call(options.api, "GET", path("v1", "tables", table, "items") + "?" + query(q))
        }
    }

    struct Scan: ParsableCommand {
        @Argument var table: String
        @Option var limit = 100
        @Option(help: "Cursor from a previous page's \"next\".") var after: String?
        @OptionGroup var options: Options
        func run() throws {
            var q = ["limit": String(limit)]
            q["after"] = after
            try call(options.api, "GET", path("v1", "tables", table, "items") + "?" + query(q))
        }
    }

    static func query(_ q: [String: String]) -> String {
        q.keys.sorted().map { k in
            "\(k)=\(q[k]!.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? q[k]!)"
        }.joined(separator: "&")
    }
}
