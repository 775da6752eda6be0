import Foundation
import Storage
import StreamLog
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

/// Data dirs of nodes from before `NodeID` was the name: their stream replicas named nodes by
/// bind address (Raft votes in `hardstate`, configurations in `configurations`). Such a dir
/// opens, its replicas serve every acknowledged record, and their files are stored again by name.
@Suite(.serialized) struct LegacyAddressProcessTests {
    typealias S = StreamsProcessTests

    @Test func replicaFilesThatNamedNodesByAddressOpenAndAreStoredByName() throws {
        let cluster = try LocalCluster(size: 3, profile: "fast")
        try cluster.startAll()
        #expect(S.formed(cluster), "cluster did not form")
        let apis = cluster.nodes.map(\.api)
        #expect(S.call("PUT", apis[0], "/v1/streams/old", #"{"partitions":2}"#)?.status == 201)
        var acked: [(partition: Int, sequence: UInt64, data: String)] = []
        for k in 0..<20 {
            let data = "before-\(k)"
            let ok = eventually(timeout: .seconds(10)) {
                guard let r = S.call("POST", apis[k % 3], "/v1/streams/old/records", S.putBody("key-\(k)", data)), r.status == 200,
                    let j = try? JSON.parse(r.body), let seq = j["sequence"]?.stringValue.flatMap({ UInt64($0) }),
                    case .number(let p)? = j["partition"]
                else { return false }
                acked.append((Int(p.description) ?? -1, seq, data))
                return true
            }
            #expect(ok, "put \(data) failed")
        }
        for i in 0..<3 { #expect(cluster.terminate(i) == 0) }

        // Write every replica's files as a node of the earlier release did: by bind address.
        let address = Dictionary(uniqueKeysWithValues: cluster.nodes.map { (NodeID($0.name), NodeID($0.bind)) })
        var rewritten = 0
        for n in cluster.nodes {
            for dir in Self.replicaDirs("\(cluster.root)/\(n.name)/streams/old") {
                let hs = RaftHardStateFile(path: dir + "/hardstate")
                if var state = try hs.load(), let vote = state.vote {
                    state.vote = address[vote]!
                    try hs.store(state)
                }
                let configs = RaftConfigurationFile(path: dir + "/configurations")
                try configs.store(
                    try configs.load().map {
                        .init(
                            index: $0.index, term: $0.term,
                            configuration: RaftConfiguration(
                                voters: $0.configuration.voters.map { address[$0]! },
                                witnesses: $0.configuration.witnesses.map { address[$0]! }))
                    })
                rewritten += 1
            }
        }
        #expect(rewritten == 6, "3 replicas of 2 partitions")

        try cluster.startAll()
        #expect(S.formed(cluster), "cluster did not form again")
        // Every acknowledged record, from every node, in the order it was acknowledged.
        for p in 0..<2 {
            let expected = acked.filter { $0.partition == p }.map { ($0.sequence, $0.data) }
            for api in apis {
                var seen: [(UInt64, String)] = []
                let complete = eventually(timeout: .seconds(20), interval: .milliseconds(200)) {
                    seen = (S.readAll(api, "old", partition: p) ?? []).map { ($0.0, $0.2) }
                    return seen.map(\.0) == expected.map(\.0) && seen.map(\.1) == expected.map(\.1)
                }
                #expect(complete, "\(api) partition \(p): \(seen.count) of \(expected.count) records")
            }
        }
        // The groups work: new puts commit.
        for k in 0..<10 {
            #expect(
                eventually(timeout: .seconds(10)) {
                    S.call("POST", apis[k % 3], "/v1/streams/old/records", S.putBody("after-\(k)", "after-\(k)"))?.status == 200
                }, "put after-\(k) failed")
        }
        // Stored again by name: no file names a node by address any more.
        let names = Set(cluster.nodes.map { NodeID($0.name) })
        for n in cluster.nodes {
            for dir in Self.replicaDirs("\(cluster.root)/\(n.name)/streams/old") {
                if let vote = try RaftHardStateFile(path: dir + "/hardstate").load()?.vote {
                    #expect(names.contains(vote), "\(dir): vote \(vote)")
                }
                for r in try RaftConfigurationFile(path: dir + "/configurations").load() {
                    #expect(Set(r.configuration.members).isSubset(of: names), "\(dir): \(r.configuration)")
                }
            }
        }
    }

    /// `streams/<stream>/<incarnation>/<partition>` directories under a node's data dir.
    static func replicaDirs(_ streamDir: String) -> [String] {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: streamDir)) ?? []).sorted().flatMap { inc in
            ((try? fm.contentsOfDirectory(atPath: "\(streamDir)/\(inc)")) ?? []).sorted().map { "\(streamDir)/\(inc)/\($0)" }
        }
    }
}
