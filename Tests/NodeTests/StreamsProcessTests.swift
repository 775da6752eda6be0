import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Streams on real processes: acknowledged records survive `kill -9` of the leader in the
/// same order on every node, a restarted node catches up, consumers resume from checkpoints,
/// and bad input gets JSON errors.
@Suite(.serialized) struct StreamsProcessTests {
    static func call(
        _ method: String, _ api: String, _ path: String, _ body: String? = nil,
        timeout: Duration = .seconds(5)
    ) -> HTTPClient.Response? {
        try? HTTPClient.request(method, api, path, body: body.map { Array($0.utf8) }, timeout: timeout)
    }

    static func formed(_ cluster: LocalCluster) -> Bool {
        let n = cluster.nodes.count
        return eventually(timeout: .seconds(20)) {
            (0..<n).allSatisfy { i in cluster.view(from: i)?.values.filter { $0.status == "alive" }.count == n }
        }
    }

    /// Name of partition `p`'s leader as node `i` sees it.
    static func leader(_ cluster: LocalCluster, _ stream: String, partition p: Int, from i: Int) -> String? {
        guard let r = call("GET", cluster.nodes[i].api, "/v1/streams/\(stream)"), r.status == 200,
            let j = try? JSON.parse(r.body), case .array(let parts)? = j["partitionDetails"], parts.count > p
        else { return nil }
        return parts[p]["leader"]?.stringValue
    }

    /// Every record of a partition as `(sequence, key, data)`, read from node `api` page by page.
    static func readAll(_ api: String, _ stream: String, partition p: Int) -> [(UInt64, String, String)]? {
        var out: [(UInt64, String, String)] = []
        var from = "trim-horizon"
        while true {
            guard let r = call("GET", api, "/v1/streams/\(stream)/partitions/\(p)/records?from=\(from)&limit=1000"), r.status == 200,
                let j = try? JSON.parse(r.body), case .array(let records)? = j["records"], let next = j["next"]?.stringValue
            else { return nil }
            for rec in records {
                guard let seq = rec["sequence"]?.stringValue.flatMap({ UInt64($0) }), let key = rec["key"]?.stringValue,
                    let data = rec["data"]?.stringValue.flatMap({ Base64.decode($0) })
                else { return nil }
                out.append((seq, key, String(decoding: data, as: UTF8.self)))
            }
            if records.isEmpty { return out }
            from = next
        }
    }

    static func putBody(_ key: String, _ data: String) -> String {
        "{\"key\":\"\(key)\",\"data\":\"\(Base64.encode(Array(data.utf8)))\"}"
    }

    final class Acks: @unchecked Sendable {
        let lock = NSLock()
        var acked: [UInt64: String] = [:]
        var stop = false
        var count: Int { lock.lock(); defer { lock.unlock() }; return acked.count }
    }

    @Test func acknowledgedRecordsSurviveKillingTheLeader() throws {
        let cluster = try LocalCluster(size: 3, profile: "fast")
        cluster.logLevel = "info"
        try cluster.startAll()
        #expect(Self.formed(cluster), "cluster did not form")
        let apis = cluster.nodes.map(\.api)
        let create = Self.call("PUT", apis[0], "/v1/streams/events", #"{"partitions":1,"retentionHours":24}"#)
        #expect(create?.status == 201, "\(create?.text ?? "no answer")")
        #expect(eventually(timeout: .seconds(10)) { Self.leader(cluster, "events", partition: 0, from: 0) != nil }, "no leader elected")

        // Three writers, one through each node, each record named by its writer and number.
        // The third puts batches of 8: a few entries sync on the event loop, many on the thread
        // pool (`StreamPartition.syncOnLoop`), and the kill must lose neither.
        let acks = Acks()
        let writers = (0..<3).map { w in
            Thread {
                var i = 0
                while true {
                    acks.lock.lock(); let stop = acks.stop; acks.lock.unlock()
                    if stop { return }
                    let datas = (1...(w == 2 ? 8 : 1)).map { k in "w\(w)-\(i + k)" }
                    i += datas.count
                    let body =
                        datas.count == 1
                        ? Self.putBody("k\(w)", datas[0])
                        : "{\"records\":[" + datas.map { Self.putBody("k\(w)", $0) }.joined(separator: ",") + "]}"
                    guard let r = Self.call("POST", apis[w], "/v1/streams/events/records", body, timeout: .seconds(3)), r.status == 200,
                        let j = try? JSON.parse(r.body)
                    else {
                        usleep(5_000)
                        continue
                    }
                    let results: [JSON] = if case .array(let rs)? = j["records"] { rs } else { [j] }
                    acks.lock.lock()
                    for (data, result) in zip(datas, results) {
                        if let seq = result["sequence"]?.stringValue.flatMap({ UInt64($0) }) { acks.acked[seq] = data }
                    }
                    acks.lock.unlock()
                }
            }
        }
        for t in writers { t.start() }
        #expect(eventually(timeout: .seconds(20)) { acks.count >= 150 }, "writers did not get going")

        guard let leaderName = Self.leader(cluster, "events", partition: 0, from: 0),
            let victim = cluster.nodes.firstIndex(where: { $0.name == leaderName })
        else {
            Issue.record("no leader to kill")
            return
        }
        let before = acks.count
        cluster.kill9(victim)
        #expect(eventually(timeout: .seconds(20)) { acks.count >= before + 150 }, "puts did not resume after the leader was killed")
        acks.lock.lock(); acks.stop = true; acks.lock.unlock()
        _ = eventually(timeout: .seconds(10)) { writers.allSatisfy(\.isFinished) }
        acks.lock.lock(); let acked = acks.acked; acks.lock.unlock()

        // Every acknowledged record, at its sequence, on every surviving node, in the same order.
        let survivors = (0..<3).filter { $0 != victim }
        var logs: [[(UInt64, String, String)]] = []
        for i in survivors {
            var log: [(UInt64, String, String)]?
            _ = eventually(timeout: .seconds(10)) {
                log = Self.readAll(apis[i], "events", partition: 0)
                return log.map { l in acked.keys.allSatisfy { seq in l.contains { $0.0 == seq } } } ?? false
            }
            guard let log else {
                Issue.record("cannot read from \(cluster.nodes[i].name)")
                return
            }
            let bySeq = Dictionary(log.map { ($0.0, $0.2) }, uniquingKeysWith: { a, _ in a })
            let missing = acked.filter { bySeq[$0.key] != $0.value }
            #expect(
                missing.isEmpty,
                "\(cluster.nodes[i].name) lacks \(missing.count) acknowledged records, e.g. \(missing.sorted { $0.key < $1.key }.prefix(3))"
            )
            #expect(zip(log, log.dropFirst()).allSatisfy { $0.0 < $1.0 }, "sequences not increasing on \(cluster.nodes[i].name)")
            logs.append(log)
        }
        let syncs = cluster.metricTotal("tandem_stream_fsyncs_total", node: survivors[0])
        let onLoop = cluster.metricTotal("tandem_stream_fsyncs_on_loop_total", node: survivors[0])
        #expect(onLoop > 0 && syncs > onLoop, "expected syncs on the loop and on the pool: \(onLoop) of \(syncs) on the loop")
        let common = min(logs[0].count, logs[1].count)
        #expect(
            logs[0].prefix(common).map(\.0) == logs[1].prefix(common).map(\.0)
                && logs[0].prefix(common).map(\.2) == logs[1].prefix(common).map(\.2), "survivors disagree on the order")
        // No record appears twice (a retried put may be written twice only if the first failed).
        let datas = logs[0].map(\.2)
        #expect(Set(datas).count == datas.count || datas.count - Set(datas).count < 20, "many duplicates")

        // The killed node comes back and catches up: it serves every acknowledged record too.
        try cluster.start(victim)
        var caughtUp: [(UInt64, String, String)]?
        let ok = eventually(timeout: .seconds(20), interval: .milliseconds(100)) {
            caughtUp = Self.readAll(apis[victim], "events", partition: 0)
            return (caughtUp?.count ?? 0) >= logs[0].count
        }
        #expect(ok, "restarted node did not catch up (\(caughtUp?.count ?? -1) of \(logs[0].count))")
        if let caughtUp {
            #expect(caughtUp.prefix(logs[0].count).map(\.0) == logs[0].map(\.0), "restarted node's order differs")
        }

        // Graceful shutdown of the leader hands leadership over; puts carry on through the others.
        guard let current = Self.leader(cluster, "events", partition: 0, from: survivors[0]),
            let leaving = cluster.nodes.firstIndex(where: { $0.name == current })
        else {
            Issue.record("no leader after the restart")
            return
        }
        #expect(cluster.terminate(leaving) == 0)
        #expect(cluster.log(leaving).contains("handing partition leadership away"))
        let other = (0..<3).first { $0 != leaving }!
        let after = Self.call("POST", apis[other], "/v1/streams/events/records", Self.putBody("k", "after-leave"))
        #expect(after?.status == 200, "\(after?.text ?? "no answer")")
    }

    /// A put sent to a follower is answered by that follower once it has committed the record
    /// (it and the leader hold it on disk: 2 of 3), one round trip before the leader's answer
    /// could arrive — with 10 ms between nodes nearly every time. Every answer names the
    /// sequence the record holds on every node, exactly once.
    @Test func aFollowerAnswersForwardedPutsItHasCommitted() throws {
        let cluster = try LocalCluster(size: 3, profile: "lan", chaos: true)
        try cluster.startAll()
        #expect(Self.formed(cluster), "cluster did not form")
        for i in 0..<3 { #expect(cluster.setChaos(i, delayMs: 10)) }
        let apis = cluster.nodes.map(\.api)
        #expect(Self.call("PUT", apis[0], "/v1/streams/wan", #"{"partitions":1}"#)?.status == 201)
        // The leader settles on its preferred node a few seconds in; ask a replica (all are).
        var leader: String?
        #expect(
            eventually(timeout: .seconds(15)) {
                leader = Self.leader(cluster, "wan", partition: 0, from: 0)
                guard let leader, let r = Self.call("GET", apis[0], "/v1/streams/wan"), let j = try? JSON.parse(r.body),
                    case .array(let parts)? = j["partitionDetails"]
                else { return false }
                return parts.first?["preferredLeader"]?.stringValue == leader
            }, "no leader on the preferred node")
        guard let follower = cluster.nodes.firstIndex(where: { $0.name != leader }) else { return }
        var acked: [UInt64: String] = [:]
        for k in 0..<40 {
            let data = "via-follower-\(k)"
            guard let r = Self.call("POST", apis[follower], "/v1/streams/wan/records", Self.putBody("k\(k)", data)), r.status == 200,
                let seq = (try? JSON.parse(r.body))?["sequence"]?.stringValue.flatMap({ UInt64($0) })
            else {
                Issue.record("put \(k) through \(cluster.nodes[follower].name) failed")
                continue
            }
            #expect(acked[seq] == nil, "two puts answered with sequence \(seq)")
            acked[seq] = data
        }
        let early = cluster.metric("tandem_stream_puts_answered_by_replica_total", node: follower) ?? 0
        #expect(early >= 30, "the follower answered \(early) of 40 puts itself")
        for i in 0..<3 {
            var log: [(UInt64, String, String)]?
            let complete = eventually(timeout: .seconds(10)) {
                log = Self.readAll(apis[i], "wan", partition: 0)
                let seen = Dictionary((log ?? []).map { ($0.0, $0.2) }, uniquingKeysWith: { a, _ in a })
                return acked.allSatisfy { seen[$0.key] == $0.value }
            }
            #expect(complete, "\(cluster.nodes[i].name) lacks acknowledged records at their sequences")
            let datas = (log ?? []).map(\.2)
            #expect(Set(datas).count == datas.count, "a record appears twice on \(cluster.nodes[i].name)")
        }
    }

    /// Partition `p`'s voters (names) as node `i`'s definition has them.
    static func replicas(_ cluster: LocalCluster, _ stream: String, partition p: Int, from i: Int) -> [String]? {
        guard let r = call("GET", cluster.nodes[i].api, "/v1/streams/\(stream)"), r.status == 200,
            let j = try? JSON.parse(r.body), case .array(let parts)? = j["partitionDetails"], parts.count > p,
            case .array(let names)? = parts[p]["replicas"]
        else { return nil }
        return names.compactMap(\.stringValue)
    }

    /// A voter that leaves gracefully is replaced: the partition's leader adds another live
    /// node, then removes the departed one, and stores the new placement; puts carry on and the
    /// new voter serves every acknowledged record.
    @Test func aVoterThatLeavesIsReplaced() throws {
        let cluster = try LocalCluster(size: 4, profile: "fast")
        cluster.logLevel = "info"
        try cluster.startAll()
        #expect(Self.formed(cluster), "cluster did not form")
        let apis = cluster.nodes.map(\.api)
        #expect(Self.call("PUT", apis[0], "/v1/streams/moves", #"{"partitions":4}"#)?.status == 201)
        guard let p = (0..<4).first(where: { Self.replicas(cluster, "moves", partition: $0, from: 0)?.contains("n4") == true }),
            let before = Self.replicas(cluster, "moves", partition: p, from: 0)
        else {
            Issue.record("no partition placed on n4")
            return
        }
        // Asked of a replica (a non-replica knows a leader only once it forwarded a put there).
        let holder = cluster.nodes.firstIndex { before.contains($0.name) && $0.name != "n4" }!
        #expect(eventually(timeout: .seconds(10)) { Self.leader(cluster, "moves", partition: p, from: holder) != nil }, "no leader")

        // Records on partition p (keys are hashed; keep those that land there), through n1–n3.
        var acked: [UInt64: String] = [:]
        func putSome(_ tag: String, _ n: Int) {
            var k = 0
            while acked.count < n && k < 2000 {
                k += 1
                let data = "\(tag)-\(k)"
                let ok = eventually(timeout: .seconds(10)) {
                    guard let r = Self.call("POST", apis[k % 3], "/v1/streams/moves/records", Self.putBody("key-\(tag)-\(k)", data)),
                        r.status == 200, let j = try? JSON.parse(r.body),
                        let seq = j["sequence"]?.stringValue.flatMap({ UInt64($0) }), case .number(let part)? = j["partition"]
                    else { return false }
                    if Int(part) == p { acked[seq] = data }
                    return true
                }
                if !ok { Issue.record("put \(data) failed"); return }
            }
        }
        putSome("before", 20)

        #expect(cluster.terminate(3) == 0)
        var after: [String] = []
        let replaced = eventually(timeout: .seconds(30), interval: .milliseconds(200)) {
            after = Self.replicas(cluster, "moves", partition: p, from: 1) ?? []
            return after.count == 3 && !after.contains("n4")
        }
        #expect(replaced, "voters of partition \(p) still \(after) (were \(before))")
        guard replaced, let newcomer = after.first(where: { !before.contains($0) }),
            let ni = cluster.nodes.firstIndex(where: { $0.name == newcomer })
        else { return }
        #expect(
            eventually(timeout: .seconds(10)) { Self.replicas(cluster, "moves", partition: p, from: 0) == after },
            "the new placement did not reach n1")
        // Removed first, then the newcomer added (adding first would need the empty newcomer for every commit).
        // Each leader's log shows its changes in order.
        let changes = (0..<3).map { i in
            cluster.log(i).split(separator: "\n").filter { $0.contains("replacing a departed voter") && $0.contains("moves/\(p)") }
        }
        #expect(
            changes.contains { !$0.isEmpty } && changes.allSatisfy { $0.isEmpty || $0[0].contains("remove(") }
                && changes.joined().contains { $0.contains("addVoter(") }, "changes: \(changes)")

        putSome("after", 40)
        var log: [(UInt64, String, String)]?
        let complete = eventually(timeout: .seconds(10)) {
            log = Self.readAll(apis[ni], "moves", partition: p)
            let seen = Dictionary((log ?? []).map { ($0.0, $0.2) }, uniquingKeysWith: { a, _ in a })
            return acked.allSatisfy { seen[$0.key] == $0.value }
        }
        #expect(complete, "\(newcomer) serves \(log?.count ?? -1) records; \(acked.count) acknowledged")
        #expect(Self.leader(cluster, "moves", partition: p, from: ni) != nil)

        // n4 comes back: it was removed while down, so its log never got the removal. Its
        // replica asks for votes on the old configuration, the leader answers that it is out,
        // and it drops the data (keeping term and vote) without disturbing the group.
        let partitionDir = "\(cluster.root)/n4/streams/moves"
        let incarnation = (try? FileManager.default.contentsOfDirectory(atPath: partitionDir))?.first ?? "?"
        let replicaDir = "\(partitionDir)/\(incarnation)/\(p)"
        #expect(FileManager.default.fileExists(atPath: replicaDir + "/log"), "n4 had no data for partition \(p) to begin with")
        try cluster.start(3)
        #expect(
            eventually(timeout: .seconds(20), interval: .milliseconds(200)) {
                !FileManager.default.fileExists(atPath: replicaDir + "/log")
            },
            "n4 kept the log of partition \(p) it was removed from while down")
        #expect(FileManager.default.fileExists(atPath: replicaDir + "/hardstate"))
        #expect(cluster.log(3).contains("dropped the data of a partition this node was removed from"))
        #expect(Self.replicas(cluster, "moves", partition: p, from: 0) == after, "the group changed")
        putSome("back", 50)
    }

    /// Retention with a shortened hour (2 s) and small segments: old records go in whole
    /// segments (the first segment file left starts at the first readable sequence), reads from
    /// `trim-horizon` start after them, and a partition written slowly still expires its old
    /// records because segments also roll by age.
    @Test func retentionDropsWholeOldSegmentsAndTrimHorizonMoves() throws {
        let cluster = try LocalCluster(size: 1, profile: "fast")
        try cluster.start(0, extraArgs: ["--stream-hour-ms", "2000", "--stream-segment-bytes", "16384"])
        #expect(Self.formed(cluster))
        let api = cluster.nodes[0].api
        #expect(Self.call("PUT", api, "/v1/streams/short", #"{"partitions":1,"retentionHours":1}"#)?.status == 201)
        func put(_ data: String) -> UInt64? {
            var seq: UInt64?
            _ = eventually(timeout: .seconds(5)) {
                guard let r = Self.call("POST", api, "/v1/streams/short/records", Self.putBody("k", data)), r.status == 200 else {
                    return false
                }
                seq = (try? JSON.parse(r.body))?["sequence"]?.stringValue.flatMap { UInt64($0) }
                return seq != nil
            }
            return seq
        }
        let old = (0..<40).compactMap { put("old-\($0)-" + String(repeating: "x", count: 200)) }
        #expect(old.count == 40)
        #expect(Self.readAll(api, "short", partition: 0)?.first?.2.hasPrefix("old-0-") == true)

        // A trickle (one record every 100 ms, never a full segment) for longer than the retention.
        var recent: [(UInt64, String)] = []
        let start = Date()
        var k = 0
        var trimmed = false
        while Date().timeIntervalSince(start) < 8 {
            k += 1
            if let s = put("new-\(k)") { recent.append((s, "new-\(k)")) }
            usleep(100_000)
            if Date().timeIntervalSince(start) > 3, let log = Self.readAll(api, "short", partition: 0),
                let first = log.first, first.0 > old.last!, !log.contains(where: { $0.2.hasPrefix("old-") })
            {
                trimmed = true
                break
            }
        }
        #expect(trimmed, "records older than the retention are still served")
        guard let log = Self.readAll(api, "short", partition: 0), let first = log.first else {
            Issue.record("cannot read")
            return
        }
        // trim-horizon starts at the first record of the oldest segment left.
        let stream = "\(cluster.root)/n1/streams/short"
        let inc = (try? FileManager.default.contentsOfDirectory(atPath: stream))?.first ?? "?"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: "\(stream)/\(inc)/0/log")) ?? [])
            .filter { $0.hasSuffix(".log") }.compactMap { UInt64($0.prefix(20)) }.sorted()
        #expect(files.first == first.0, "oldest segment starts at \(files.first ?? 0), first readable record \(first.0)")
        // Nothing after the trim point is missing: the recent records from there on are all served.
        let served = Set(log.map(\.0))
        #expect(recent.filter { $0.0 >= first.0 }.allSatisfy { served.contains($0.0) })
        #expect(!recent.isEmpty && log.last?.0 == recent.last?.0)
        // A reader from trim-horizon with an old position is moved to the first retained record.
        let r = Self.call("GET", api, "/v1/streams/short/partitions/0/records?from=at:1&limit=10")
        var firstAt: UInt64?
        if let body = r.flatMap({ try? JSON.parse($0.body) }), case .array(let records)? = body["records"] {
            firstAt = records.first?["sequence"]?.stringValue.flatMap { UInt64($0) }
        }
        #expect(firstAt == first.0)
    }

    /// A deleted stream leaves nothing on disk, even where no open replica was closed with it
    /// (a replica dropped after its group removed it keeps only its `hardstate`; a node down
    /// while the stream was deleted has it all). A name the catalog has never held stays: its
    /// definition may simply not have arrived yet.
    @Test func deletedStreamsLeaveNothingOnDisk() throws {
        let cluster = try LocalCluster(size: 1, profile: "fast")
        try cluster.startAll()
        #expect(Self.formed(cluster))
        let api = cluster.nodes[0].api
        let root = "\(cluster.root)/n1/streams"
        #expect(Self.call("PUT", api, "/v1/streams/gone", #"{"partitions":2}"#)?.status == 201)
        #expect(Self.call("PUT", api, "/v1/streams/kept", #"{"partitions":1}"#)?.status == 201)
        #expect(
            eventually(timeout: .seconds(10)) { Self.call("POST", api, "/v1/streams/gone/records", Self.putBody("k", "x"))?.status == 200 })
        let fm = FileManager.default
        let keptIncarnation = (try? fm.contentsOfDirectory(atPath: "\(root)/kept"))?.first ?? "?"
        #expect(Self.call("DELETE", api, "/v1/streams/gone")?.status == 200)
        #expect(eventually(timeout: .seconds(5)) { !fm.fileExists(atPath: "\(root)/gone") })

        // Leftovers as a removed replica or a node down during the delete would have them; the
        // node looks when it starts and whenever the catalog changes.
        #expect(cluster.terminate(0) == 0)
        for dir in ["gone/12345/0", "kept/12345/0", "never-created/12345/0"] {
            try fm.createDirectory(atPath: "\(root)/\(dir)", withIntermediateDirectories: true)
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: "\(root)/\(dir)/hardstate"))
        }
        try cluster.start(0)
        #expect(Self.formed(cluster))
        #expect(
            eventually(timeout: .seconds(5)) {
                !fm.fileExists(atPath: "\(root)/gone") && !fm.fileExists(atPath: "\(root)/kept/12345")
            }, "leftovers of deleted and replaced incarnations are still there")
        #expect(fm.fileExists(atPath: "\(root)/never-created/12345/0/hardstate"), "a name the catalog never held was removed")
        #expect(fm.fileExists(atPath: "\(root)/kept/\(keptIncarnation)/0"), "the live stream lost its data")
        #expect(
            eventually(timeout: .seconds(10)) {
                Self.call("POST", api, "/v1/streams/kept/records", Self.putBody("k", "still here"))?.status == 200
            })
    }

    @Test func consumerResumesFromItsCheckpoints() throws {
        let cluster = try LocalCluster(size: 1, profile: "fast")
        try cluster.start(0)
        #expect(Self.formed(cluster))
        let api = cluster.nodes[0].api
        #expect(Self.call("PUT", api, "/v1/streams/agent-events", #"{"partitions":2}"#)?.status == 201)
        var expected: [String] = []
        for i in 0..<30 {
            let r = Self.call("POST", api, "/v1/streams/agent-events/records", Self.putBody("a-\(i % 7)", "event-\(i)"))
            #expect(r?.status == 200, "\(r?.text ?? "no answer")")
            expected.append("event-\(i)")
        }

        // Checkpoints by hand: absent, set, read back; bad ones refused.
        #expect(Self.call("GET", api, "/v1/streams/agent-events/consumers/manual/checkpoints/0")?.status == 404)
        #expect(Self.call("PUT", api, "/v1/streams/agent-events/consumers/manual/checkpoints/0", #"{"sequence":"7"}"#)?.status == 200)
        let got = Self.call("GET", api, "/v1/streams/agent-events/consumers/manual/checkpoints/0")
        #expect(got.flatMap { try? JSON.parse($0.body) }?["sequence"]?.stringValue == "00000000000000000007")
        #expect(Self.call("PUT", api, "/v1/streams/agent-events/consumers/manual/checkpoints/0", #"{"sequence":"x"}"#)?.status == 400)
        #expect(Self.call("PUT", api, "/v1/streams/agent-events/consumers/manual/checkpoints/9", #"{"sequence":"1"}"#)?.status == 404)

        // `tandem stream consume` twice: the second run starts after what the first checkpointed.
        func consume(max: Int, run: Int) throws -> [(partition: Int, sequence: UInt64, data: String)] {
            let log = "\(cluster.root)/consume-\(run).out"
            let pid = try spawn(
                cluster.binary, ["stream", "consume", "agent-events", "--consumer", "wallboard", "--max", "\(max)", "--api", api], log: log)
            #expect(waitExit(pid) == 0)
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { line in
                let f = line.split(separator: " ", maxSplits: 3).map(String.init)
                guard f.count == 4, let p = Int(f[0]), let s = UInt64(f[1]) else { return nil }
                return (p, s, f[3])
            }
        }
        let first = try consume(max: 12, run: 1)
        let second = try consume(max: 18, run: 2)
        #expect(first.count == 12 && second.count == 18, "\(first.count) then \(second.count) records")
        let all = first + second
        #expect(Set(all.map(\.data)) == Set(expected), "consumers missed or invented records")
        for p in 0..<2 {
            let seqs = all.filter { $0.partition == p }.map(\.sequence)
            #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 }, "partition \(p) out of order or repeated: \(seqs)")
        }
    }

    @Test func badInputGetsJSONErrorsAndIsCounted() throws {
        let cluster = try LocalCluster(size: 1, profile: "fast")
        try cluster.start(0)
        #expect(Self.formed(cluster))
        let api = cluster.nodes[0].api
        #expect(Self.call("PUT", api, "/v1/streams/s1", #"{"partitions":2}"#)?.status == 201)
        #expect(Self.call("PUT", api, "/v1/streams/s1", #"{"partitions":3}"#)?.status == 409)
        let big = String(repeating: "A", count: 1_500_000)
        let cases: [(String, String, String?, Int)] = [
            ("POST", "/v1/streams/nope/records", Self.putBody("k", "x"), 404),
            ("GET", "/v1/streams/nope", nil, 404),
            ("GET", "/v1/streams/nope/partitions/0/records", nil, 404),
            ("GET", "/v1/streams/s1/partitions/7/records", nil, 404),
            ("POST", "/v1/streams/s1/records", "{not json", 400),
            ("POST", "/v1/streams/s1/records", #"{"key":"k","data":"%%%"}"#, 400),
            ("POST", "/v1/streams/s1/records", #"{"data":"AAAA"}"#, 400),
            ("POST", "/v1/streams/s1/records", #"{"records":[]}"#, 400),
            ("POST", "/v1/streams/s1/records", "{\"key\":\"k\",\"data\":\"\(big)\"}", 413),
            ("GET", "/v1/streams/s1/partitions/0/records?from=sideways", nil, 400),
            ("GET", "/v1/streams/s1/partitions/0/records?from=at:12x", nil, 400),
            ("GET", "/v1/streams/s1/partitions/0/records?limit=0", nil, 400),
            ("GET", "/v1/streams/s1/partitions/0/records?waitMs=99999999", nil, 400),
            ("PUT", "/v1/streams/bad%20name", "{}", 400),
            ("PUT", "/v1/streams/s2", #"{"partitions":0}"#, 400),
            ("PUT", "/v1/streams/s2", #"{"partitions":"four"}"#, 400),
            ("PATCH", "/v1/streams/s1", "{}", 405)
        ]
        for (method, path, body, status) in cases {
            let r = Self.call(method, api, path, body)
            #expect(r?.status == status, "\(method) \(path): \(r?.status ?? -1) \(r?.text.prefix(200) ?? "")")
            #expect(r.flatMap { try? JSON.parse($0.body) }?["error"]?.stringValue != nil, "\(method) \(path): not a JSON error")
        }
        // Still serving, and the errors are counted.
        let ok = Self.call("POST", api, "/v1/streams/s1/records", Self.putBody("k", "fine"))
        #expect(ok?.status == 200, "\(ok?.text ?? "no answer")")
        let metrics = Self.call("GET", api, "/metrics")?.text ?? ""
        let counted = metrics.split(separator: "\n").filter { $0.hasPrefix("tandem_stream_errors_total{") }
            .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
        #expect(counted >= Double(cases.count), "errors counted: \(counted)")
        // Deleting the stream makes it unknown.
        #expect(Self.call("DELETE", api, "/v1/streams/s1")?.status == 200)
        #expect(Self.call("GET", api, "/v1/streams/s1")?.status == 404)
    }
}

/// Two data nodes and a witness: the witness votes, so losing either data node still leaves a
/// majority; it never leads.
@Suite(.serialized) struct WitnessProcessTests {
    typealias S = StreamsProcessTests

    @Test func aWitnessKeepsAMajorityAndNeverLeads() throws {
        // The lan profile: under a loaded test run the fast profile's 40 ms probe timeout can
        // declare a starved node dead just as the stream is placed.
        let cluster = try LocalCluster(size: 3, profile: "lan")
        cluster.logLevel = "info"
        try cluster.start(0)
        try cluster.start(1)
        try cluster.start(2, extraArgs: ["--witness"])
        #expect(S.formed(cluster))
        let apis = cluster.nodes.map(\.api)
        #expect(S.call("PUT", apis[0], "/v1/streams/shifts", #"{"partitions":1}"#)?.status == 201)
        var leader: String?
        #expect(
            eventually(timeout: .seconds(15)) {
                leader = S.leader(cluster, "shifts", partition: 0, from: 0)
                return leader != nil
            })
        #expect(leader != "n3", "the witness leads")
        // Both data nodes and the witness hold the partition (else a kill could not leave a majority).
        let d = S.call("GET", apis[0], "/v1/streams/shifts").flatMap { try? JSON.parse($0.body) }
        let part = d.flatMap { j -> JSON? in if case .array(let ps)? = j["partitionDetails"] { ps.first } else { nil } }
        let names = { (k: String) -> [String] in if case .array(let xs)? = part?[k] { xs.compactMap(\.stringValue) } else { [] } }
        #expect(Set(names("replicas")) == ["n1", "n2"] && names("witnesses") == ["n3"], "placement: \(part?.serialized ?? "none")")
        var acked: [UInt64: String] = [:]
        for k in 0..<20 {
            guard let r = S.call("POST", apis[0], "/v1/streams/shifts/records", S.putBody("a-\(k)", "before-\(k)")), r.status == 200,
                let j = try? JSON.parse(r.body), let seq = j["sequence"]?.stringValue.flatMap({ UInt64($0) })
            else { continue }
            acked[seq] = "before-\(k)"
        }
        #expect(acked.count == 20)

        // Kill the leading data node (asked now: leadership may have moved to the preferred node
        // since): the other data node and the witness are a majority.
        #expect(
            eventually(timeout: .seconds(10)) {
                leader = S.leader(cluster, "shifts", partition: 0, from: 0)
                return leader == "n1" || leader == "n2"
            })
        let victim = leader == "n1" ? 0 : 1
        let survivor = 1 - victim
        cluster.kill9(victim)
        var resumed = false
        for k in 0..<20 where resumed || k == 0 {
            let ok = eventually(timeout: .seconds(resumed ? 15 : 30)) {
                guard let r = S.call("POST", apis[survivor], "/v1/streams/shifts/records", S.putBody("b-\(k)", "after-\(k)")),
                    r.status == 200,
                    let j = try? JSON.parse(r.body), let seq = j["sequence"]?.stringValue.flatMap({ UInt64($0) })
                else { return false }
                acked[seq] = "after-\(k)"
                return true
            }
            resumed = resumed || ok
        }
        #expect(
            resumed,
            "puts did not resume with one data node and the witness; survivor's log: \(cluster.log(survivor).suffix(4000)); witness's log: \(cluster.log(2).suffix(2000))"
        )
        let newLeader = S.leader(cluster, "shifts", partition: 0, from: survivor)
        #expect(newLeader == cluster.nodes[survivor].name, "leader \(newLeader ?? "none")")
        let log = S.readAll(apis[survivor], "shifts", partition: 0) ?? []
        let seen = Dictionary(log.map { ($0.0, $0.2) }, uniquingKeysWith: { a, _ in a })
        let lost = acked.filter { seen[$0.key] != $0.value }
        #expect(lost.isEmpty, "\(lost.count) acknowledged records missing or moved")
    }
}
