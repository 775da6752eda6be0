import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

/// A failing fsync under a real node (`POST /v1/chaos {"fsyncFails":true}` makes every fsync of
/// its stores fail with EIO, as a dying disk would): table writes and stream records are
/// refused with a 503 `disk_failed` JSON error and never acknowledged, health and reads go on,
/// and once the fault clears both stores take writes again without a restart, with everything
/// acknowledged before still there (after a `kill -9` too). No root needed, unlike the full-disk
/// test, which mounts a tmpfs.
@Suite(.serialized) struct DiskFaultProcessTests {
    static func call(_ method: String, _ api: String, _ path: String, _ body: String? = nil) -> HTTPClient.Response? {
        try? HTTPClient.request(method, api, path, body: body.map { Array($0.utf8) }, timeout: .seconds(5))
    }

    static func record(_ data: String) -> String { "{\"key\":\"k\",\"data\":\"\(Base64.encode(Array(data.utf8)))\"}" }

    /// The stream's records as `sequence → data`; nil when the read fails.
    static func records(_ api: String) -> [(UInt64, String)]? {
        guard let r = call("GET", api, "/v1/streams/events/partitions/0/records?limit=10000"), r.status == 200,
            case .array(let list)? = (try? JSON.parse(r.body))?["records"]
        else { return nil }
        return list.compactMap { rec in
            guard let seq = rec["sequence"]?.stringValue.flatMap({ UInt64($0) }),
                let data = rec["data"]?.stringValue.flatMap({ Base64.decode($0) })
            else { return nil }
            return (seq, String(decoding: data, as: UTF8.self))
        }
    }

    static func sequence(_ r: HTTPClient.Response) -> UInt64? {
        (try? JSON.parse(r.body))?["sequence"]?.stringValue.flatMap { UInt64($0) }
    }

    @Test func aFailingFsyncRefusesWritesInBothStoresAndTheNodeRecovers() throws {
        let cluster = try LocalCluster(size: 1, chaos: true)
        defer { cluster.kill9(0) }
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        #expect(Self.call("PUT", api, "/v1/tables/profiles", #"{"partitionKey":"id"}"#)?.status == 201)
        #expect(Self.call("PUT", api, "/v1/streams/events", #"{"partitions":1,"retentionHours":24}"#)?.status == 201)
        #expect(
            eventually(timeout: .seconds(10)) { Self.call("POST", api, "/v1/streams/events/records", Self.record("first"))?.status == 200 })

        // Acknowledged before the fault.
        var ackedItems: [String] = []
        var ackedRecords: [UInt64: String] = [:]
        for i in 0..<20 {
            if Self.call("PUT", api, "/v1/tables/profiles/items/before-\(i)", #"{"n":\#(i)}"#)?.status == 200 {
                ackedItems.append("before-\(i)")
            }
            if let r = Self.call("POST", api, "/v1/streams/events/records", Self.record("before-\(i)")), r.status == 200,
                let seq = Self.sequence(r)
            {
                ackedRecords[seq] = "before-\(i)"
            }
        }
        #expect(ackedItems.count == 20 && ackedRecords.count == 20)

        // The disk starts failing every fsync.
        #expect(cluster.setChaos(0, fsyncFails: true))
        var unexpected: [String] = []
        func expectDiskFailed(_ r: HTTPClient.Response?, _ what: String) {
            guard let r else { return unexpected.append("\(what): no answer") }
            let j = try? JSON.parse(r.body)
            if r.status != 503 || j?["error"]?.stringValue != "disk_failed" || (j?["message"]?.stringValue ?? "").isEmpty {
                unexpected.append("\(what): \(r.status) \(r.text)")
            }
        }
        for i in 0..<20 {
            expectDiskFailed(Self.call("PUT", api, "/v1/tables/profiles/items/during-\(i)", #"{"n":\#(i)}"#), "put during-\(i)")
            expectDiskFailed(Self.call("PATCH", api, "/v1/tables/profiles/items/before-0", #"{"add":{"hits":1}}"#), "patch \(i)")
            expectDiskFailed(Self.call("POST", api, "/v1/streams/events/records", Self.record("during-\(i)")), "record during-\(i)")
        }
        #expect(unexpected.isEmpty, "answers other than 503 disk_failed: \(unexpected.prefix(5))")
        #expect((cluster.metric("tandem_table_commit_failures_total", node: 0) ?? 0) >= 40)
        #expect((cluster.metric("tandem_stream_disk_failures_total", node: 0) ?? 0) >= 1)
        #expect((cluster.metric("tandem_stream_replicas_stopped", node: 0) ?? 0) == 1)
        #expect((cluster.metric("tandem_chaos_fsync_failures_total", node: 0) ?? 0) >= 41)
        // Health and table reads go on.
        #expect(Self.call("GET", api, "/v1/health")?.status == 200)
        #expect(Self.call("GET", api, "/v1/tables/profiles/items/before-7")?.status == 200)
        #expect(cluster.log(0).contains("table writes failing"))
        #expect(cluster.log(0).contains("stream partition stopped"))
        // While the fault lasts the stopped replica cannot reopen (its reopen syncs fail too).
        let reopenAttempts = eventually(timeout: .seconds(3)) { (cluster.metric("tandem_chaos_fsync_failures_total", node: 0) ?? 0) >= 43 }
        #expect(reopenAttempts, "the stopped replica did not retry")
        #expect((cluster.metric("tandem_stream_replicas_reopened_total", node: 0) ?? 0) == 0)

        // The fault clears: both stores take writes again, without a restart.
        #expect(cluster.setChaos(0, fsyncFails: false))
        #expect(eventually(timeout: .seconds(5)) { Self.call("PUT", api, "/v1/tables/profiles/items/after", #"{"n":1}"#)?.status == 200 })
        ackedItems.append("after")
        var after: HTTPClient.Response?
        #expect(
            eventually(timeout: .seconds(10)) {
                after = Self.call("POST", api, "/v1/streams/events/records", Self.record("after"))
                return after?.status == 200
            }, "stream writes did not recover: \(after.map { "\($0.status) \($0.text)" } ?? "no answer")")
        if let after, let seq = Self.sequence(after) { ackedRecords[seq] = "after" }
        #expect((cluster.metric("tandem_stream_replicas_reopened_total", node: 0) ?? 0) == 1)

        // Everything acknowledged is there, in place; no refused record was ever appended (the
        // one written to the page cache before its fsync failed was cut on reopen).
        func check(_ when: String) {
            let missing = ackedItems.filter { Self.call("GET", api, "/v1/tables/profiles/items/\($0)")?.status != 200 }
            #expect(missing.isEmpty, "\(when): acknowledged items lost: \(missing.prefix(5))")
            guard let records = Self.records(api) else { Issue.record("\(when): cannot read the stream"); return }
            let bySeq = Dictionary(records, uniquingKeysWith: { a, _ in a })
            let lost = ackedRecords.filter { bySeq[$0.key] != $0.value }
            #expect(lost.isEmpty, "\(when): acknowledged records lost or moved: \(lost.prefix(5))")
            let refused = records.filter { $0.1.hasPrefix("during-") }
            #expect(refused.isEmpty, "\(when): refused records appended: \(refused.prefix(5))")
            #expect(Set(records.map(\.1)).count == records.count, "\(when): a record appears twice")
        }
        check("after recovery")
        cluster.kill9(0)
        try cluster.start(0)
        // A restarted replica serves reads up to its commit index, known once it leads again.
        #expect(eventually(timeout: .seconds(10)) { (Self.records(api)?.count ?? 0) >= ackedRecords.count + 1 })
        check("after kill -9 and restart")
    }

    /// The leader's disk fails in a 3-node group: it stops (no heartbeats, votes or acks), the
    /// other two elect a leader and go on taking records, puts sent to the stopped node are
    /// forwarded there, and once its disk works the replica reopens and catches up.
    @Test func aLeaderWhoseFsyncFailsStepsAsideAndCatchesUpLater() throws {
        let cluster = try LocalCluster(size: 3, chaos: true)
        defer { for i in 0..<3 { cluster.kill9(i) } }
        try cluster.startAll()
        let apis = cluster.nodes.map(\.api)
        #expect(
            eventually(timeout: .seconds(20)) {
                (0..<3).allSatisfy { i in cluster.view(from: i)?.values.filter { $0.status == "alive" }.count == 3 }
            }, "cluster did not form")
        #expect(Self.call("PUT", apis[0], "/v1/streams/events", #"{"partitions":1,"retentionHours":24}"#)?.status == 201)
        func leader(from i: Int) -> Int? {
            guard let r = Self.call("GET", apis[i], "/v1/streams/events"), r.status == 200,
                case .array(let parts)? = (try? JSON.parse(r.body))?["partitionDetails"],
                let name = parts.first?["leader"]?.stringValue
            else { return nil }
            return cluster.nodes.firstIndex { $0.name == name }
        }
        var l = 0
        #expect(
            eventually(timeout: .seconds(10)) {
                guard let found = leader(from: 0) else { return false }
                l = found
                return true
            }, "no leader")
        var acked: [UInt64: String] = [:]
        func put(_ via: Int, _ data: String) -> HTTPClient.Response? {
            let r = Self.call("POST", apis[via], "/v1/streams/events/records", Self.record(data))
            if let r, r.status == 200, let seq = Self.sequence(r) { acked[seq] = data }
            return r
        }
        for i in 0..<10 { _ = put(i % 3, "before-\(i)") }
        #expect(acked.count == 10)

        #expect(cluster.setChaos(l, fsyncFails: true))
        let others = (0..<3).filter { $0 != l }
        // The others elect a new leader among themselves and take records.
        #expect(eventually(timeout: .seconds(10)) { put(others[0], "probe")?.status == 200 }, "the partition did not move on")
        #expect(eventually(timeout: .seconds(5)) { leader(from: others[0]).map { $0 != l } ?? false })
        for i in 0..<10 { #expect(put(others[i % 2], "during-\(i)")?.status == 200) }
        // The stopped node forwards puts to the new leader.
        #expect(eventually(timeout: .seconds(5)) { put(l, "via-stopped")?.status == 200 })
        #expect((cluster.metric("tandem_stream_replicas_stopped", node: l) ?? 0) == 1)

        // Its disk works again: the replica reopens, rejoins and holds every acknowledged record.
        #expect(cluster.setChaos(l, fsyncFails: false))
        #expect(eventually(timeout: .seconds(5)) { (cluster.metric("tandem_stream_replicas_reopened_total", node: l) ?? 0) == 1 })
        // Its own replica (reads there are served locally again) catches up to the last record.
        let last = acked.keys.max() ?? 0
        #expect(
            eventually(timeout: .seconds(10)) {
                guard let r = Self.call("GET", apis[l], "/v1/streams/events"), r.status == 200,
                    case .array(let parts)? = (try? JSON.parse(r.body))?["partitionDetails"], let p = parts.first,
                    p["local"] == .bool(true), p["role"]?.stringValue != "stopped",
                    case .number(let text)? = p["commitIndex"], let commit = UInt64(text)
                else { return false }
                return commit >= last
            }, "the reopened replica did not catch up: \(Self.call("GET", apis[l], "/v1/streams/events")?.text ?? "no answer")")
        var missing = acked
        #expect(
            eventually(timeout: .seconds(15)) {
                guard let records = Self.records(apis[l]) else { return false }
                let held = Dictionary(records, uniquingKeysWith: { a, _ in a })
                missing = acked.filter { held[$0.key] != $0.value }
                return missing.isEmpty
            }, "the reopened replica lacks acknowledged records: \(missing.prefix(5))")
    }
}
