import ArgumentParser
import Foundation
import TandemCore
import TandemNode

/// The README's main job, for now: a local multi-region cluster on loopback that forms, loses a
/// region to `kill -9`, detects it, welcomes it back, and sees another region leave gracefully.
/// Every time printed is measured.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "Run a local multi-region cluster and a failover.")

    @Option(help: "Number of regions (nodes), at least 3.") var nodes = 3
    @Option(help: "Timing profile: lan, wan or fast.") var profile = "fast"

    func validate() throws {
        guard nodes >= 3 else { throw ValidationError("--nodes must be at least 3") }
        guard ["lan", "wan", "fast"].contains(profile) else { throw ValidationError("--profile must be lan, wan or fast") }
    }

    func run() throws {
        let clock = ContinuousClock()
        let start = clock.now
        func say(_ text: String) {
            let t = (clock.now - start).seconds
            print(String(format: "[%6.2fs] ", t) + text)
            fflush(nil)
        }
        func seconds(since t: ContinuousClock.Instant) -> String { String(format: "%.3f s", (clock.now - t).seconds) }

        let cluster = try LocalCluster(size: nodes, profile: profile)
        cluster.regions = ["us-east-1", "eu-west-1", "ap-southeast-1", "us-west-2", "sa-east-1", "eu-central-1"]
        cluster.logLevel = "info"
        let names = cluster.nodes.map(\.name)
        print("Tandem demo: \(nodes) regions on 127.0.0.1, profile '\(profile)'. Node logs: \(cluster.root)/*.log\n")

        let joinStart = clock.now
        try cluster.startAll()
        for (i, n) in cluster.nodes.enumerated() {
            say("started \(n.name) (\(cluster.regions[i % cluster.regions.count])) gossip \(n.bind), api \(n.api)")
        }
        let formed = eventually(timeout: .seconds(30)) {
            cluster.nodes.indices.allSatisfy { i in
                guard let v = cluster.view(from: i) else { return false }
                return names.allSatisfy { v[$0]?.status == "alive" }
            }
        }
        guard formed else { throw failure("cluster did not form", cluster) }
        say("all \(nodes) nodes see \(nodes) alive — join took \(seconds(since: joinStart))")
        print(try membersTable(HTTPClient.request("GET", cluster.nodes[0].api, "/v1/members")))

        let victim = 1
        let victimName = names[victim]
        let survivors = cluster.nodes.indices.filter { $0 != victim }
        let incarnationBefore = cluster.view(from: 0)?[victimName]?.incarnation ?? 0
        say("kill -9 \(victimName) (\(cluster.regions[victim]))")
        let killedAt = clock.now
        cluster.kill9(victim)
        var firstSuspect: String?
        let dead = eventually(timeout: .seconds(60)) {
            let views = survivors.map { cluster.view(from: $0)?[victimName]?.status }
            if firstSuspect == nil, views.contains(where: { $0 == "suspect" || $0 == "dead" }) {
                firstSuspect = seconds(since: killedAt)
            }
            return views.allSatisfy { $0 == "dead" }
        }
        guard dead else { throw failure("survivors did not mark \(victimName) dead", cluster) }
        say("first suspicion after \(firstSuspect ?? "?"); every survivor lists \(victimName) dead after \(seconds(since: killedAt))")

        say("restart \(victimName) on its data dir")
        let restartedAt = clock.now
        try cluster.start(victim)
        let back = eventually(timeout: .seconds(30)) {
            cluster.nodes.indices.allSatisfy { i in
                guard let s = cluster.view(from: i)?[victimName] else { return false }
                return s.status == "alive" && s.incarnation > incarnationBefore
            }
        }
        guard back else { throw failure("\(victimName) did not rejoin", cluster) }
        let incarnationAfter = cluster.view(from: 0)?[victimName]?.incarnation ?? 0
        say("\(victimName) alive on every node again after \(seconds(since: restartedAt)) (incarnation \(incarnationBefore) → \(incarnationAfter): it outranks its own death)")

        // Global tables: written in one region, readable in the others, increments merged.
        let (a, c) = (cluster.nodes[0].api, cluster.nodes[2].api)
        _ = try HTTPClient.request("PUT", a, "/v1/tables/agents", body: Array(#"{"partitionKey":"agentId"}"#.utf8))
        let writeAt = clock.now
        let put = try HTTPClient.request("PUT", a, "/v1/tables/agents/items/a-17", body: Array(#"{"status":"available","skills":{"$SS":["billing"]}}"#.utf8))
        guard put.status == 200 else { throw failure("table write failed: \(put.text)", cluster) }
        let seen = eventually(timeout: .seconds(10), interval: .milliseconds(1)) {
            (try? HTTPClient.request("GET", c, "/v1/tables/agents/items/a-17"))?.status == 200
        }
        guard seen else { throw failure("item did not replicate", cluster) }
        say("wrote agent a-17 in \(cluster.regions[0]) (durable), readable in \(cluster.regions[2]) after \(seconds(since: writeAt))")
        let increments = DispatchGroup()
        for api in [a, c] {
            increments.enter()
            Thread {
                for _ in 0..<100 { _ = try? HTTPClient.request("PATCH", api, "/v1/tables/agents/items/a-17", body: Array(#"{"add":{"handled":1}}"#.utf8)) }
                increments.leave()
            }.start()
        }
        increments.wait()
        var totals: [String] = []
        _ = eventually(timeout: .seconds(10)) {
            totals = cluster.nodes.indices.map { i in
                let r = try? HTTPClient.request("GET", cluster.nodes[i].api, "/v1/tables/agents/items/a-17")
                return (r.flatMap { try? JSON.parse($0.body) }?["item"]?["handled"]).map { $0.serialized } ?? "?"
            }
            return totals.allSatisfy { $0 == "200" }
        }
        say("2 regions × 100 concurrent increments of one counter: every region reads \(Set(totals).sorted().joined(separator: "/")) (expected 200)")

        let leaver = nodes - 1
        let leaverName = names[leaver]
        say("SIGTERM \(leaverName) (\(cluster.regions[leaver % cluster.regions.count])): graceful leave")
        let leftAt = clock.now
        let status = cluster.terminate(leaver)
        let left = eventually(timeout: .seconds(30)) {
            cluster.nodes.indices.filter { $0 != leaver }.allSatisfy { cluster.view(from: $0)?[leaverName]?.status == "left" }
        }
        guard left, status == 0 else { throw failure("\(leaverName) did not leave cleanly (exit \(status))", cluster) }
        say("\(leaverName) exited 0; every node lists it left (not dead) after \(seconds(since: leftAt))")
        print(try membersTable(HTTPClient.request("GET", cluster.nodes[0].api, "/v1/members")))

        let malformed = cluster.metric("tandem_malformed_input_total", node: 0) ?? 0
        let probes = cluster.metric("tandem_membership_probes_total", node: 0) ?? 0
        say("done: \(names[0]) sent \(Int(probes)) probes, dropped \(Int(malformed)) malformed inputs")
        for i in cluster.nodes.indices { _ = cluster.terminate(i) }
    }

    private func failure(_ what: String, _ cluster: LocalCluster) -> Error {
        for i in cluster.nodes.indices {
            FileHandle.standardError.write(Data("---- \(cluster.nodes[i].name) log (tail)\n\(cluster.log(i).suffix(2000))\n".utf8))
        }
        return ValidationError("demo failed: \(what)")
    }
}
