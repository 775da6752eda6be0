import Foundation
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

/// A stream log that cannot be read back, under a real node (`POST /v1/chaos
/// {"readFailsUnder":"/events/"}` makes every read of the `events` stream's log fail with EIO):
/// that replica stops, as for a failed fsync (logged, counted, shown as stopped), the process
/// lives on and serves everything else, and once reads work again the replica reopens and
/// holds every record acknowledged before.
@Suite(.serialized) struct ReadFaultProcessTests {
    static func call(_ method: String, _ api: String, _ path: String, _ body: String? = nil) -> HTTPClient.Response? {
        DiskFaultProcessTests.call(method, api, path, body)
    }
    static func record(_ data: String) -> String { DiskFaultProcessTests.record(data) }

    static func details(_ api: String, _ stream: String) -> JSON? {
        guard let r = call("GET", api, "/v1/streams/\(stream)"), r.status == 200,
            case .array(let parts)? = (try? JSON.parse(r.body))?["partitionDetails"]
        else { return nil }
        return parts.first
    }

    @Test func aReplicaWhoseLogCannotBeReadStopsAloneAndReopens() throws {
        let cluster = try LocalCluster(size: 1, chaos: true)
        defer { cluster.kill9(0) }
        try cluster.start(0)
        let api = cluster.nodes[0].api
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        #expect(Self.call("PUT", api, "/v1/tables/profiles", #"{"partitionKey":"id"}"#)?.status == 201)
        for s in ["events", "audit"] {
            #expect(Self.call("PUT", api, "/v1/streams/\(s)", #"{"partitions":1,"retentionHours":24}"#)?.status == 201)
            #expect(
                eventually(timeout: .seconds(10)) {
                    Self.call("POST", api, "/v1/streams/\(s)/records", Self.record("first"))?.status == 200
                })
        }
        var acked: [UInt64: String] = [:]
        for i in 0..<10 {
            if let r = Self.call("POST", api, "/v1/streams/events/records", Self.record("before-\(i)")), r.status == 200,
                let seq = DiskFaultProcessTests.sequence(r)
            {
                acked[seq] = "before-\(i)"
            }
        }
        #expect(acked.count == 10)

        // Reads of the events log start failing: the next put makes the replica read its log
        // (the shell checks what it synced), and the replica stops.
        #expect(cluster.setChaos(0, readFailsUnder: "/events/"))
        let during = Self.call("POST", api, "/v1/streams/events/records", Self.record("during"))
        #expect(
            during.map { $0.status != 200 } ?? false,
            "a put to a replica that cannot read its log was acknowledged: \(during?.text ?? "no answer")")
        #expect(eventually(timeout: .seconds(5)) { (cluster.metric("tandem_stream_replicas_stopped", node: 0) ?? 0) == 1 })
        #expect((cluster.metric("tandem_stream_disk_failures_total", node: 0) ?? 0) >= 1)
        #expect((cluster.metric("tandem_chaos_read_failures_total", node: 0) ?? 0) >= 1)
        #expect(
            cluster.log(0).contains("stream partition stopped") && cluster.log(0).contains("cannot read the log"),
            "no log line for the stop: \(cluster.log(0).suffix(2000))")
        let stopped = Self.details(api, "events")
        #expect(
            stopped?["role"]?.stringValue == "stopped" && (stopped?["stoppedReason"]?.stringValue ?? "").contains("cannot read the log"),
            "events partition: \(String(describing: stopped))")

        // The process lives on: health, tables and the other stream are served.
        #expect(Self.call("GET", api, "/v1/health")?.status == 200)
        #expect(Self.call("PUT", api, "/v1/tables/profiles/items/during", #"{"n":1}"#)?.status == 200)
        #expect(Self.call("GET", api, "/v1/tables/profiles/items/during")?.status == 200)
        for i in 0..<5 { #expect(Self.call("POST", api, "/v1/streams/audit/records", Self.record("audit-\(i)"))?.status == 200) }
        #expect(Self.details(api, "audit")?["role"]?.stringValue == "leader")

        // Reads work again: the replica reopens (tried every second) and takes records.
        #expect(cluster.setChaos(0, readFailsUnder: ""))
        var after: HTTPClient.Response?
        #expect(
            eventually(timeout: .seconds(10)) {
                after = Self.call("POST", api, "/v1/streams/events/records", Self.record("after"))
                return after?.status == 200
            }, "the events stream did not recover: \(after.map { "\($0.status) \($0.text)" } ?? "no answer")")
        if let after, let seq = DiskFaultProcessTests.sequence(after) { acked[seq] = "after" }
        #expect((cluster.metric("tandem_stream_replicas_reopened_total", node: 0) ?? 0) >= 1)
        #expect((cluster.metric("tandem_stream_replicas_stopped", node: 0) ?? 0) == 0)
        var lost = acked
        #expect(
            eventually(timeout: .seconds(5)) {
                guard let records = DiskFaultProcessTests.records(api) else { return false }
                let held = Dictionary(records, uniquingKeysWith: { a, _ in a })
                lost = acked.filter { held[$0.key] != $0.value }
                return lost.isEmpty
            }, "acknowledged records lost or moved: \(lost.prefix(5))")
    }
}
