import ArgumentParser
import Foundation
import TandemCore

/// `tandem agent …`, `tandem contact …`, `tandem queue …`: the contact center's API from the
/// command line. Each prints the API's JSON answer; an error answer goes to standard error and
/// exits 1.
enum CenterCLI {
    typealias Options = StreamCommand.Options

    static func call(_ api: String, _ method: String, _ path: String, _ body: JSON? = nil, timeout: Duration = .seconds(10)) throws {
        let r = try StreamCommand.request(api, method, path, body?.serialized, timeout: timeout)
        if r.status >= 300 {
            FileHandle.standardError.write(Data("error \(r.status): \(r.text)".utf8))
            throw ExitCode(1)
        }
        print(r.text, terminator: r.text.hasSuffix("\n") ? "" : "\n")
    }

    /// `name=value` pairs (skills as name=1…5, attributes and customer keys as name=text).
    static func pairs(_ list: [String], what: String) throws -> [(String, String)] {
        try list.map { item in
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("\(what) are name=value: \(item)") }
            return (parts[0], parts[1])
        }
    }

    static func skills(_ list: [String]) throws -> JSON {
        .object(
            try pairs(list, what: "skills").map { name, level in
                guard let n = Int(level) else { throw ValidationError("skill \(name): proficiency is 1…5") }
                return (name, JSON(n))
            })
    }
}

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent", abstract: "Contact-center agents: define, sign in and out, set status, show, wait for offers.",
        subcommands: [Put.self, Show.self, Login.self, Logout.self, Status.self, Heartbeat.self, Offers.self])

    typealias Options = CenterCLI.Options

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Define or change an agent (PUT /v1/agents/{id}).")
        @Argument var id: String
        @Option(help: "The routing profile.") var routingProfile: String
        @Option(help: "A skill and its proficiency, name=1…5 (repeatable).") var skill: [String] = []
        @Option(help: "Display name.") var name: String?
        @Option(help: "After-contact work ends by itself after this long (0: only when completed).") var acwTimeoutSeconds = 0
        @OptionGroup var options: Options

        func run() throws {
            var body: [(String, JSON)] = [("routingProfile", .string(routingProfile)), ("skills", try CenterCLI.skills(skill))]
            if let name { body.append(("name", .string(name))) }
            body.append(("acwTimeoutSeconds", JSON(acwTimeoutSeconds)))
            try CenterCLI.call(options.api, "PUT", StreamCommand.path("v1", "agents", id), .object(body))
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "An agent's status, region and contacts.")
        @Argument var id: String
        @OptionGroup var options: Options
        func run() throws { try CenterCLI.call(options.api, "GET", StreamCommand.path("v1", "agents", id)) }
    }

    struct Login: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sign an agent in, into the region of the node asked (--api).")
        @Argument var id: String
        @Option(help: "The status to sign in with (default Offline, as Connect does).") var status: String?
        @OptionGroup var options: Options
        func run() throws {
            let body: JSON = status.map { .object([("status", .string($0))]) } ?? .object([])
            try CenterCLI.call(options.api, "POST", StreamCommand.path("v1", "agents", id, "login"), body)
        }
    }

    struct Logout: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sign an agent out.")
        @Argument var id: String
        @OptionGroup var options: Options
        func run() throws { try CenterCLI.call(options.api, "POST", StreamCommand.path("v1", "agents", id, "logout")) }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set an agent's status (Available, Offline, or a custom one).")
        @Argument var id: String
        @Argument var status: String
        @OptionGroup var options: Options
        func run() throws {
            try CenterCLI.call(options.api, "PUT", StreamCommand.path("v1", "agents", id, "status"), .object([("status", .string(status))]))
        }
    }

    struct Heartbeat: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Tell the center the agent's client is alive.")
        @Argument var id: String
        @OptionGroup var options: Options
        func run() throws { try CenterCLI.call(options.api, "POST", StreamCommand.path("v1", "agents", id, "heartbeat")) }
    }

    struct Offers: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The offers ringing for an agent, waiting up to --wait-ms for one.")
        @Argument var id: String
        @Option(help: "Long poll: wait up to this long (0 to 20000 ms) for an offer.") var waitMs = 0
        @OptionGroup var options: Options
        func run() throws {
            try CenterCLI.call(
                options.api, "GET", StreamCommand.path("v1", "agents", id, "offers") + "?waitMs=\(waitMs)",
                timeout: .milliseconds(Int64(waitMs)) + .seconds(10))
        }
    }
}

struct ContactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contact",
        abstract: "Contact-center contacts: create, show, accept, reject, hold, resume, transfer, end, acw-complete.",
        subcommands: [Create.self, Show.self, Accept.self, Reject.self, Hold.self, Resume.self, Transfer.self, End.self, ACWComplete.self])

    typealias Options = CenterCLI.Options

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A new contact (POST /v1/contacts): routed by the customer's key unless --region is given.")
        @Option(help: "The queue.") var queue: String
        @Option(help: "VOICE, CHAT or TASK.") var channel = "VOICE"
        @Option(help: "The edge the contact came in at (for the routing decision).") var edge: String?
        @Option(help: "A customer key, name=value: phone=+33…, email=…, account=… (repeatable).") var customer: [String] = []
        @Option(help: "An attribute, name=value (repeatable).") var attribute: [String] = []
        @Option(help: "A required skill, name=1…5 (repeatable).") var skill: [String] = []
        @Option(help: "The contact's id (a retry with the same id cannot create it twice).") var contactId: String?
        @Option(help: "Put the contact in this region instead of routing it.") var region: String?
        @OptionGroup var options: Options

        func run() throws {
            var body: [(String, JSON)] = [("channel", .string(channel)), ("queue", .string(queue))]
            if let edge { body.append(("edge", .string(edge))) }
            if !customer.isEmpty {
                body.append(("customer", .object(try CenterCLI.pairs(customer, what: "customer keys").map { ($0, .string($1)) })))
            }
            if !attribute.isEmpty {
                body.append(("attributes", .object(try CenterCLI.pairs(attribute, what: "attributes").map { ($0, .string($1)) })))
            }
            if !skill.isEmpty { body.append(("requiredSkills", try CenterCLI.skills(skill))) }
            if let contactId { body.append(("contactId", .string(contactId))) }
            if let region { body.append(("region", .string(region))) }
            try CenterCLI.call(options.api, "POST", "/v1/contacts", .object(body))
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A contact's state, agent, region, place in line and steps.")
        @Argument var id: String
        @OptionGroup var options: Options
        func run() throws { try CenterCLI.call(options.api, "GET", StreamCommand.path("v1", "contacts", id)) }
    }

    static func action(_ api: String, _ id: String, _ action: String, _ body: JSON? = nil) throws {
        try CenterCLI.call(api, "POST", StreamCommand.path("v1", "contacts", id, action), body)
    }

    struct Accept: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The agent answers the contact offered to it.")
        @Argument var id: String
        @Option(help: "The agent holding the offer.") var agent: String
        @OptionGroup var options: Options
        func run() throws { try ContactCommand.action(options.api, id, "accept", .object([("agent", .string(agent))])) }
    }

    struct Reject: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The agent declines the contact offered to it (it goes back in line).")
        @Argument var id: String
        @Option(help: "The agent holding the offer.") var agent: String
        @OptionGroup var options: Options
        func run() throws { try ContactCommand.action(options.api, id, "reject", .object([("agent", .string(agent))])) }
    }

    struct Hold: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put a connected contact on hold.")
        @Argument var id: String
        @OptionGroup var options: Options
        func run() throws { try ContactCommand.action(options.api, id, "hold") }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a held contact off hold.")
        @Argument var id: String
        @OptionGroup var options: Options
        func run() throws { try ContactCommand.action(options.api, id, "resume") }
    }

    struct Transfer: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Transfer a contact to a queue (optionally in another region) or an agent.")
        @Argument var id: String
        @Option(help: "The queue to transfer to.") var queue: String?
        @Option(help: "The agent to transfer to.") var agent: String?
        @Option(help: "The region the new contact is in (a queue served in another region).") var region: String?
        @OptionGroup var options: Options
        func run() throws {
            guard queue != nil || agent != nil else { throw ValidationError("give --queue or --agent") }
            var body: [(String, JSON)] = []
            if let queue { body.append(("queue", .string(queue))) }
            if let agent { body.append(("agent", .string(agent))) }
            if let region { body.append(("region", .string(region))) }
            try ContactCommand.action(options.api, id, "transfer", .object(body))
        }
    }

    struct End: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Hang up: a queued or ringing contact is abandoned, a connected one goes to after-contact work.")
        @Argument var id: String
        @OptionGroup var options: Options
        func run() throws { try ContactCommand.action(options.api, id, "end") }
    }

    struct ACWComplete: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "acw-complete", abstract: "End a contact's after-contact work.")
        @Argument var id: String
        @OptionGroup var options: Options
        func run() throws { try ContactCommand.action(options.api, id, "acw-complete") }
    }
}

struct QueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue", abstract: "Contact-center queues and routing profiles: define, real-time metrics.",
        subcommands: [Put.self, Profile.self, Metrics.self])

    typealias Options = CenterCLI.Options

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Define or change a queue (PUT /v1/queues/{id}).")
        @Argument var id: String
        @Option(help: "Answered within this long counts toward the service level.") var serviceLevelSeconds = 20
        @Option(help: "Contacts waiting at most (0: no limit).") var maxContacts = 0
        @OptionGroup var options: Options
        func run() throws {
            try CenterCLI.call(
                options.api, "PUT", StreamCommand.path("v1", "queues", id),
                .object([("serviceLevelSeconds", JSON(serviceLevelSeconds)), ("maxContacts", JSON(maxContacts))]))
        }
    }

    struct Profile: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "profile", abstract: "Define or change a routing profile (PUT /v1/routing-profiles/{id}).")
        @Argument var id: String
        @Option(help: "A queue the profile serves: queue[:priority[:delaySeconds]] (repeatable).") var queue: [String]
        @Option(help: "Contacts at once per channel, CHANNEL=n (default VOICE=1; repeatable).") var concurrency: [String] = ["VOICE=1"]
        @OptionGroup var options: Options
        func run() throws {
            let queues: [JSON] = try queue.map { q in
                let parts = q.split(separator: ":").map(String.init)
                guard (1...3).contains(parts.count), let priority = Int(parts.count > 1 ? parts[1] : "1"),
                    let delay = Double(parts.count > 2 ? parts[2] : "0")
                else { throw ValidationError("--queue is queue[:priority[:delaySeconds]]: \(q)") }
                return .object([("queue", .string(parts[0])), ("priority", JSON(priority)), ("delaySeconds", JSON(delay))])
            }
            let limits: [(String, JSON)] = try CenterCLI.pairs(concurrency, what: "concurrency limits").map { channel, n in
                guard let count = Int(n) else { throw ValidationError("--concurrency \(channel)=\(n): a whole number") }
                return (channel, JSON(count))
            }
            try CenterCLI.call(
                options.api, "PUT", StreamCommand.path("v1", "routing-profiles", id),
                .object([("queues", .array(queues)), ("concurrency", .object(limits))]))
        }
    }

    struct Metrics: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Real-time metrics of a queue, or of the whole center without an id.")
        @Argument var id: String?
        @OptionGroup var options: Options
        func run() throws {
            try CenterCLI.call(options.api, "GET", id.map { StreamCommand.path("v1", "queues", $0, "metrics") } ?? "/v1/metrics/realtime")
        }
    }
}
