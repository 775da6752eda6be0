import ContactCenter
import Foundation
import TandemCore
import TandemTestKit
import Testing
import Transport

/// The contact center on real processes, three nodes in three regions, through the endpoints
/// issue 17 names (scripts rely on them): definitions, an agent's login, status and offers, a
/// contact's life from creation to after-contact work, the refusals the issue lists (404, 409
/// naming the current state, 400) with nothing of them in the log, a missed offer, missed
/// heartbeats, a failed region's queued contact offered elsewhere, and a `kill -9` of the `_cc`
/// leader with no acknowledged command lost.
@Suite(.serialized) struct CenterProcessTests {
    static func call(_ method: String, _ api: String, _ path: String, _ body: String? = nil, timeout: Duration = .seconds(8))
        -> (status: Int, json: JSON)?
    {
        guard let r = try? HTTPClient.request(method, api, path, body: body.map { Array($0.utf8) }, timeout: timeout) else { return nil }
        return (r.status, (try? JSON.parse(r.body)) ?? .null)
    }

    static func formed(_ cluster: LocalCluster) -> Bool {
        let n = cluster.nodes.count
        return eventually(timeout: .seconds(20)) {
            (0..<n).allSatisfy { i in cluster.view(from: i)?.values.filter { $0.status == "alive" }.count == n }
        }
    }

    /// Sends until an answer that is not a retryable 5xx comes, within `timeout`.
    static func command(_ method: String, _ api: String, _ path: String, _ body: String? = nil, timeout: Duration = .seconds(15))
        -> (status: Int, json: JSON)?
    {
        var last: (status: Int, json: JSON)?
        _ = eventually(timeout: timeout, interval: .milliseconds(100)) {
            last = call(method, api, path, body)
            guard let l = last else { return false }
            return l.status < 500
        }
        return last
    }

    /// A queue `billing`, a profile `default` serving it with voice 1 and chat 2, and `settings`.
    static func define(_ api: String, settings: String = "{}") {
        #expect(command("PUT", api, "/v1/center/settings", settings)?.status == 200)
        #expect(command("PUT", api, "/v1/queues/billing", #"{"serviceLevelSeconds":20}"#)?.status == 200)
        let profile = #"{"queues":[{"queue":"billing","priority":1,"delaySeconds":0}],"concurrency":{"VOICE":1,"CHAT":2}}"#
        #expect(command("PUT", api, "/v1/routing-profiles/default", profile)?.status == 200)
    }

    static func agent(_ api: String, _ id: String, available: Bool = true) {
        #expect(command("PUT", api, "/v1/agents/\(id)", #"{"routingProfile":"default","skills":{"billing":3}}"#)?.status == 200)
        #expect(command("POST", api, "/v1/agents/\(id)/login")?.status == 200)
        if available { #expect(command("PUT", api, "/v1/agents/\(id)/status", #"{"status":"Available"}"#)?.status == 200) }
    }

    /// The commands in `_cc`, decoded, as node `api` reads them.
    static func logged(_ api: String) -> [Command]? {
        var out: [Command] = []
        var from = "trim-horizon"
        while true {
            guard let r = call("GET", api, "/v1/streams/_cc/partitions/0/records?from=\(from)&limit=1000"), r.status == 200,
                case .array(let records)? = r.json["records"], let next = r.json["next"]?.stringValue
            else { return nil }
            // `mark` records say how far the event streams are written; `cc` ones are commands.
            for rec in records where rec["key"]?.stringValue == "cc" {
                guard let data = rec["data"]?.stringValue.flatMap(Base64.decode), let c = try? CommandCodec.decode(data) else { return nil }
                out.append(c)
            }
            // Pages may hold no record (Raft's own entries); the end is where `next` stops moving.
            if next == from { return out }
            from = next
        }
    }

    /// The records of an event stream as JSON, each once (by `eventId`: a new leader may write
    /// an event twice).
    static func events(_ api: String, _ stream: String) -> [JSON] {
        var out: [JSON] = []
        var seen: Set<String> = []
        var from = "trim-horizon"
        while true {
            guard let r = call("GET", api, "/v1/streams/\(stream)/partitions/0/records?from=\(from)&limit=1000"), r.status == 200,
                case .array(let records)? = r.json["records"], let next = r.json["next"]?.stringValue
            else { return out }
            for rec in records {
                guard let data = rec["data"]?.stringValue.flatMap(Base64.decode), let j = try? JSON.parse(data),
                    let id = j["eventId"]?.stringValue, seen.insert(id).inserted
                else { continue }
                out.append(j)
            }
            if next == from { return out }
            from = next
        }
    }

    @Test func theIssuesEndpointsCarryAContactFromCreationToAfterContactWork() throws {
        let cluster = try LocalCluster(size: 3, profile: "fast")
        try cluster.startAll()
        #expect(Self.formed(cluster))
        let apis = cluster.nodes.map(\.api)
        Self.define(apis[0])
        Self.agent(apis[1], "a-1")
        // Signed into the region of the node asked.
        let agent = Self.call("GET", apis[2], "/v1/agents/a-1")
        #expect(agent?.status == 200)
        #expect(agent?.json["status"]?.stringValue == "Available")
        #expect(agent?.json["region"]?.stringValue == cluster.regions[1])
        #expect(agent?.json["contacts"]?.arrayValue?.isEmpty == true)

        // A contact through a third node: queued and, the agent being free, offered at once.
        let created = Self.command(
            "POST", apis[2], "/v1/contacts",
            #"{"channel":"VOICE","queue":"billing","customer":{"phone":"+33100000000"},"region":"region-1"}"#)
        #expect(created?.status == 201, "\(String(describing: created))")
        guard let cid = created?.json["contactId"]?.stringValue else {
            Issue.record("no contactId")
            return
        }
        #expect(created?.json["region"]?.stringValue == "region-1")
        #expect(["QUEUED", "CONNECTING"].contains(created?.json["state"]?.stringValue ?? ""))
        // The agent's long poll shows the offer.
        let offers = Self.call("GET", apis[0], "/v1/agents/a-1/offers?waitMs=5000")
        #expect(offers?.status == 200)
        #expect(offers?.json["offers"]?.arrayValue?.compactMap { $0["contactId"]?.stringValue } == [cid])
        // Another agent cannot take it; nor can the same agent accept twice.
        Self.agent(apis[0], "a-2", available: false)
        let stolen = Self.call("POST", apis[0], "/v1/contacts/\(cid)/accept", #"{"agent":"a-2"}"#)
        #expect(stolen?.status == 409)
        #expect(stolen?.json["state"]?.stringValue == "CONNECTING")
        let accepted = Self.call("POST", apis[1], "/v1/contacts/\(cid)/accept", #"{"agent":"a-1"}"#)
        #expect(accepted?.status == 200)
        #expect(accepted?.json["state"]?.stringValue == "CONNECTED")
        #expect(accepted?.json["agent"]?.stringValue == "a-1")
        let again = Self.call("POST", apis[1], "/v1/contacts/\(cid)/accept", #"{"agent":"a-1"}"#)
        #expect(again?.status == 409)
        #expect(again?.json["state"]?.stringValue == "CONNECTED")
        #expect(Self.call("GET", apis[2], "/v1/agents/a-1")?.json["contacts"]?.arrayValue?.first?["contactId"]?.stringValue == cid)
        // acw-complete before end is a 409 naming the state; hold and resume; end; acw-complete.
        let early = Self.call("POST", apis[0], "/v1/contacts/\(cid)/acw-complete")
        #expect(early?.status == 409)
        #expect(early?.json["state"]?.stringValue == "CONNECTED")
        #expect(Self.call("POST", apis[0], "/v1/contacts/\(cid)/hold")?.json["state"]?.stringValue == "ON_HOLD")
        #expect(Self.call("POST", apis[0], "/v1/contacts/\(cid)/resume")?.json["state"]?.stringValue == "CONNECTED")
        #expect(Self.call("POST", apis[2], "/v1/contacts/\(cid)/end")?.json["state"]?.stringValue == "ACW")
        #expect(Self.call("POST", apis[2], "/v1/contacts/\(cid)/acw-complete")?.json["state"]?.stringValue == "ENDED")
        let ended = Self.call("GET", apis[1], "/v1/contacts/\(cid)")
        #expect(ended?.json["state"]?.stringValue == "ENDED")
        #expect(ended?.json["attributes"]?["customer.phone"]?.stringValue == "+33100000000")
        let endAgain = Self.call("POST", apis[2], "/v1/contacts/\(cid)/end")
        #expect(endAgain?.status == 409)
        #expect(endAgain?.json["state"]?.stringValue == "ENDED")

        // Bad input: 404 unknown agent, queue, contact; 400 unknown status and channel.
        #expect(Self.call("GET", apis[0], "/v1/agents/nobody")?.status == 404)
        #expect(Self.call("POST", apis[0], "/v1/agents/nobody/login")?.status == 404)
        #expect(Self.call("GET", apis[0], "/v1/contacts/none")?.status == 404)
        #expect(Self.call("POST", apis[0], "/v1/contacts/none/end")?.status == 404)
        #expect(Self.call("POST", apis[0], "/v1/contacts", #"{"channel":"VOICE","queue":"nowhere"}"#)?.status == 404)
        #expect(Self.call("GET", apis[0], "/v1/queues/nowhere/metrics")?.status == 404)
        #expect(Self.call("PUT", apis[0], "/v1/agents/a-1/status", #"{"status":"Napping"}"#)?.status == 400)
        #expect(Self.call("POST", apis[0], "/v1/contacts", #"{"channel":"FAX","queue":"billing"}"#)?.status == 400)
        #expect(Self.call("POST", apis[0], "/v1/contacts", #"{"channel":"VOICE","queue":"billing","attributes":"x"}"#)?.status == 400)
        #expect(Self.call("PUT", apis[0], "/v1/agents/a-3", #"{"routingProfile":"missing"}"#)?.status == 404)
        #expect(Self.call("DELETE", apis[0], "/v1/agents/a-1")?.status == 405)
        // Nothing refused reached the log, and nobody but the node writes it.
        guard let log = Self.logged(apis[1]) else {
            Issue.record("cannot read _cc")
            return
        }
        #expect(!log.contains(.accept(contact: cid, agent: "a-2")))
        #expect(log.filter { $0 == .accept(contact: cid, agent: "a-1") }.count == 1)
        #expect(!log.contains { if case .setStatus(_, "Napping") = $0 { true } else { false } })
        #expect(!log.contains { if case .putAgent(let d) = $0 { d.id == "a-3" } else { false } })
        #expect(log.filter { $0 == .completeAfterContactWork(contact: cid) }.count == 1)
        let put = Self.call("POST", apis[0], "/v1/streams/_cc/records", #"{"key":"cc","data":"AAAA"}"#)
        #expect(put?.status == 403)

        // The event streams show what Amazon Connect's would: the contact's steps in order, and
        // the agent's login (in its region) and status change with both snapshots.
        var steps: [String] = []
        let told = eventually(timeout: .seconds(10)) {
            steps = Self.events(apis[0], "_contact-events").filter { $0["contactId"]?.stringValue == cid }.compactMap {
                $0["eventType"]?.stringValue
            }
            return steps.count >= 7
        }
        #expect(
            told && steps == ["INITIATED", "QUEUED", "CONNECTED_TO_AGENT", "HOLD", "RESUME", "DISCONNECTED", "ACW_COMPLETED"], "\(steps)")
        let agentEvents = Self.events(apis[2], "_agent-events").filter { $0["agentId"]?.stringValue == "a-1" }
        let login = agentEvents.first { $0["eventType"]?.stringValue == "LOGIN" }
        #expect(
            login?["region"]?.stringValue == "region-1" && login?["schemaVersion"]?.intValue == 1 && login?["eventId"]?.stringValue != nil)
        let available = agentEvents.first { $0["current"]?["status"]?.stringValue == "Available" }
        #expect(available?["eventType"]?.stringValue == "STATE_CHANGE" && available?["previous"]?["status"]?.stringValue == "Offline")

        // Metrics agree on every node (each answers from its own replica) within a second.
        let same = eventually(timeout: .seconds(3)) {
            let all = apis.compactMap { Self.call("GET", $0, "/v1/queues/billing/metrics")?.json["global"] }
            return all.count == 3 && all.allSatisfy { $0 == all[0] } && all[0]["contactsHandled"]?.intValue == 1
        }
        #expect(same, "\(apis.map { Self.call("GET", $0, "/v1/queues/billing/metrics")?.json ?? .null })")
        let m = Self.call("GET", apis[0], "/v1/queues/billing/metrics")?.json
        #expect(m?["global"]?["contactsAnswered"]?.intValue == 1)
        #expect(m?["global"]?["serviceLevel"]?.doubleValue == 100)
        #expect(m?["regions"]?["region-1"]?["agentsAvailable"]?.intValue == 1)
        #expect(Self.call("GET", apis[2], "/v1/metrics/realtime")?.status == 200)
    }

    @Test func aMissedOfferRequeuesTheContactAndMissedHeartbeatsSignTheAgentOut() throws {
        let cluster = try LocalCluster(size: 3, profile: "fast")
        try cluster.startAll()
        #expect(Self.formed(cluster))
        let apis = cluster.nodes.map(\.api)
        Self.define(apis[0], settings: #"{"ringTimeoutMs":800,"missesBeforeNonRoutable":1,"heartbeatTimeoutMs":2000}"#)
        Self.agent(apis[0], "a-1")
        let created = Self.command("POST", apis[1], "/v1/contacts", #"{"channel":"VOICE","queue":"billing","region":"region-0"}"#)
        guard let cid = created?.json["contactId"]?.stringValue else {
            Issue.record("no contact")
            return
        }
        #expect(Self.call("GET", apis[2], "/v1/contacts/\(cid)")?.json["agent"]?.stringValue == "a-1")
        // Nobody answers: the offer rings out, the contact is back in line, the agent is Missed.
        let missed = eventually(timeout: .seconds(5)) {
            Self.call("GET", apis[2], "/v1/contacts/\(cid)")?.json["state"]?.stringValue == "QUEUED"
                && Self.call("GET", apis[2], "/v1/agents/a-1")?.json["status"]?.stringValue == "Missed"
        }
        #expect(missed, "\(String(describing: Self.call("GET", apis[2], "/v1/contacts/\(cid)")))")
        let steps =
            Self.call("GET", apis[2], "/v1/contacts/\(cid)")?.json["steps"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(steps.contains("MISSED"))
        // Heartbeats keep an agent signed in; without them it is signed out.
        Self.agent(apis[1], "a-2", available: false)
        for _ in 0..<12 {
            #expect(Self.call("POST", apis[1], "/v1/agents/a-2/heartbeat")?.status == 200)
            Thread.sleep(forTimeInterval: 0.25)  // the client's beat interval, not a wait for a result
        }
        #expect(Self.call("GET", apis[0], "/v1/agents/a-2")?.json["region"]?.stringValue == "region-1")
        let signedOut = eventually(timeout: .seconds(6)) {
            let a = Self.call("GET", apis[0], "/v1/agents/a-2")?.json
            return a?["status"]?.stringValue == "Offline" && a?["region"] == .null
        }
        #expect(signedOut)
    }

    @Test func aContactQueuedInAFailedRegionIsOfferedToAnotherRegionsAgent() throws {
        let cluster = try LocalCluster(size: 3, profile: "fast")
        try cluster.startAll()
        #expect(Self.formed(cluster))
        let apis = cluster.nodes.map(\.api)
        // Without a failure, other regions' agents wait a minute before taking region-2's contacts.
        Self.define(apis[0], settings: #"{"crossRegionDelayMs":60000,"heartbeatTimeoutMs":600000}"#)
        Self.agent(apis[0], "a-0")
        let created = Self.command("POST", apis[2], "/v1/contacts", #"{"channel":"VOICE","queue":"billing","region":"region-2"}"#)
        guard let cid = created?.json["contactId"]?.stringValue else {
            Issue.record("no contact")
            return
        }
        #expect(created?.json["state"]?.stringValue == "QUEUED")
        #expect(
            !eventually(timeout: .seconds(1)) { Self.call("GET", apis[0], "/v1/contacts/\(cid)")?.json["state"]?.stringValue != "QUEUED" })
        cluster.kill9(2)
        let offered = eventually(timeout: .seconds(15)) {
            let c = Self.call("GET", apis[0], "/v1/contacts/\(cid)")?.json
            return c?["state"]?.stringValue == "CONNECTING" && c?["agent"]?.stringValue == "a-0"
        }
        #expect(offered, "\(String(describing: Self.call("GET", apis[0], "/v1/contacts/\(cid)")))")
    }

    @Test func killingTheLeaderLosesNoAcknowledgedCommand() throws {
        let cluster = try LocalCluster(size: 3, profile: "fast")
        try cluster.startAll()
        #expect(Self.formed(cluster))
        let apis = cluster.nodes.map(\.api)
        Self.define(apis[0], settings: #"{"heartbeatTimeoutMs":600000}"#)
        guard let leader = StreamsProcessTests.leader(cluster, "_cc", partition: 0, from: 0),
            let victim = cluster.nodes.firstIndex(where: { $0.name == leader })
        else {
            Issue.record("no _cc leader")
            return
        }
        let survivors = (0..<3).filter { $0 != victim }
        // Four clients create contacts at once, through every node, while the leader is killed
        // with commands in flight (forwarded to it, or proposed and not yet committed).
        let total = 160
        let outcome = Outcomes()
        let threads = (0..<4).map { w in
            Thread {
                for k in 0..<(total / 4) {
                    let id = "c-\(w)-\(k)"
                    let r = Self.call(
                        "POST", apis[(w + k) % 3], "/v1/contacts", "{\"contactId\":\"\(id)\",\"channel\":\"CHAT\",\"queue\":\"billing\"}")
                    outcome.add(id, acked: r?.status == 201)
                }
                outcome.finished()
            }
        }
        for t in threads { t.start() }
        #expect(eventually(timeout: .seconds(20)) { outcome.acked.count >= 40 })
        cluster.kill9(victim)
        #expect(eventually(timeout: .seconds(60)) { outcome.done == 4 })
        let acked = outcome.acked
        let unknown = outcome.unknown
        #expect(acked.count >= 80, "acknowledged \(acked.count) of \(total)")
        // Every acknowledged contact is there, on the survivors' own replicas (metrics are local).
        for id in acked.sorted() {
            let r = Self.command("GET", apis[survivors[0]], "/v1/contacts/\(id)")
            #expect(r?.status == 200 && r?.json["state"]?.stringValue == "QUEUED", "\(id) lost: \(String(describing: r))")
        }
        // A client retries the others with the same id: created now, or already there (409).
        for id in unknown {
            let r = Self.command(
                "POST", apis[survivors[1]], "/v1/contacts", "{\"contactId\":\"\(id)\",\"channel\":\"CHAT\",\"queue\":\"billing\"}")
            #expect(r?.status == 201 || (r?.status == 409 && r?.json["state"]?.stringValue == "QUEUED"), "\(id): \(String(describing: r))")
        }
        // The killed node comes back and its replica applies the same log: every node counts
        // exactly the 160 contacts.
        try cluster.start(victim)
        let converged = eventually(timeout: .seconds(20)) {
            apis.allSatisfy { Self.call("GET", $0, "/v1/queues/billing/metrics")?.json["global"]?["contactsInQueue"]?.intValue == total }
        }
        #expect(
            converged, "\(apis.map { Self.call("GET", $0, "/v1/queues/billing/metrics")?.json["global"]?["contactsInQueue"] ?? .null })")
        // Its replica (not a forward) has the same log: each contact created once.
        var creates: [String] = []
        let caughtUp = eventually(timeout: .seconds(20)) {
            creates = (Self.logged(apis[victim]) ?? []).compactMap { if case .createContact(let n) = $0 { n.id } else { nil } }
            return creates.count >= total
        }
        #expect(caughtUp && creates.count == total && Set(creates).count == total, "each contact created once: \(creates.count)")
    }

    /// Snapshots every 50 entries and 4 KiB segments, so logs are trimmed below the snapshots: a
    /// replica stopped while the others go on finds the entries it lacks gone from the leader's
    /// log, loads another replica's snapshot, and ends in the same state; a restart of every
    /// node starts from its own snapshot.
    @Test func aReplicaBehindTheTrimmedLogCatchesUpFromASnapshot() throws {
        let cluster = try LocalCluster(size: 3, profile: "fast")
        cluster.nodeArgs = ["--cc-snapshot-entries", "50", "--stream-segment-bytes", "4096"]
        try cluster.startAll()
        #expect(Self.formed(cluster))
        let apis = cluster.nodes.map(\.api)
        Self.define(apis[0], settings: #"{"heartbeatTimeoutMs":600000}"#)
        guard let leader = StreamsProcessTests.leader(cluster, "_cc", partition: 0, from: 0),
            let leaderIndex = cluster.nodes.firstIndex(where: { $0.name == leader })
        else {
            Issue.record("no _cc leader")
            return
        }
        let behind = (leaderIndex + 1) % 3
        let other = (leaderIndex + 2) % 3
        cluster.kill9(behind)
        for i in 0..<300 {
            let r = Self.command(
                "POST", apis[other], "/v1/contacts", "{\"contactId\":\"s-\(i)\",\"channel\":\"TASK\",\"queue\":\"billing\"}")
            #expect(r?.status == 201, "\(String(describing: r))")
        }
        let trimmed = eventually(timeout: .seconds(10)) {
            guard let r = Self.call("GET", apis[leaderIndex], "/v1/streams/_cc"), case .array(let parts)? = r.json["partitionDetails"]
            else {
                return false
            }
            return (parts.first?["firstIndex"]?.intValue ?? 0) > 100
        }
        #expect(trimmed, "the leader's log was not trimmed: \(Self.call("GET", apis[leaderIndex], "/v1/streams/_cc")?.json ?? .null)")
        try cluster.start(behind)
        let caughtUp = eventually(timeout: .seconds(30)) {
            cluster.metric("tandem_cc_snapshots_fetched_total", node: behind) ?? 0 >= 1
                && Self.call("GET", apis[behind], "/v1/queues/billing/metrics")?.json["global"]?["contactsInQueue"]?.intValue == 300
        }
        #expect(caughtUp, "fetched \(cluster.metric("tandem_cc_snapshots_fetched_total", node: behind) ?? -1)")
        // Every node restarts from its own snapshot and the log after it.
        for i in 0..<3 { cluster.kill9(i) }
        try cluster.startAll()
        let again = eventually(timeout: .seconds(30)) {
            apis.allSatisfy { Self.call("GET", $0, "/v1/queues/billing/metrics")?.json["global"]?["contactsInQueue"]?.intValue == 300 }
        }
        #expect(again)
        let r = Self.command("POST", apis[0], "/v1/contacts", #"{"contactId":"s-0","channel":"TASK","queue":"billing"}"#)
        #expect(r?.status == 409, "an existing contact is still known after the restart: \(String(describing: r))")
    }
}

/// What the concurrent clients of the kill test saw.
final class Outcomes: @unchecked Sendable {
    private let lock = NSLock()
    private var ackedIds: Set<String> = []
    private var unknownIds: [String] = []
    private var finishedCount = 0

    func add(_ id: String, acked: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if acked { ackedIds.insert(id) } else { unknownIds.append(id) }
    }
    func finished() {
        lock.lock()
        defer { lock.unlock() }
        finishedCount += 1
    }
    var acked: Set<String> {
        lock.lock()
        defer { lock.unlock() }
        return ackedIds
    }
    var unknown: [String] {
        lock.lock()
        defer { lock.unlock() }
        return unknownIds
    }
    var done: Int {
        lock.lock()
        defer { lock.unlock() }
        return finishedCount
    }
}
