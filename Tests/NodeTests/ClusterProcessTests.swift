import Foundation
import Storage
import TandemNode
import TandemTestKit
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Real processes on loopback. Each test builds its own cluster on fresh ports and data dirs.
@Suite(.serialized) struct ClusterProcessTests {
    @Test func fiveNodesDetectAKilledNodeAndWelcomeItBack() throws {
        let cluster = try LocalCluster(size: 5)
        try cluster.startAll()
        let names = Set(cluster.nodes.map(\.name))
        let allAlive = eventually(timeout: .seconds(15)) {
            (0..<5).allSatisfy { i in
                guard let v = cluster.view(from: i) else { return false }
                return Set(v.keys) == names && v.values.allSatisfy { $0.status == "alive" }
            }
        }
        #expect(allAlive, "5 nodes did not all see 5 alive; log n1:\n\(cluster.log(0))")
        let before = cluster.view(from: 0)?["n3"]?.incarnation ?? 0

        cluster.kill9(2)
        let declaredDead = eventually(timeout: .seconds(15)) {
            [0, 1, 3, 4].allSatisfy { cluster.view(from: $0)?["n3"]?.status == "dead" }
        }
        #expect(declaredDead, "survivors did not all mark n3 dead")
        // Nobody else was harmed.
        for i in [0, 1, 3, 4] {
            let v = cluster.view(from: i) ?? [:]
            for other in ["n1", "n2", "n4", "n5"] {
                #expect(v[other]?.status == "alive", "\(other) seen by n\(i + 1): \(String(describing: v[other]))")
            }
        }

        try cluster.start(2)
        let back = eventually(timeout: .seconds(15)) {
            (0..<5).allSatisfy { i in
                guard let n3 = cluster.view(from: i)?["n3"] else { return false }
                return n3.status == "alive" && n3.incarnation > before
            }
        }
        #expect(back, "restarted n3 not alive everywhere with incarnation > \(before)")
        // n3 was detected, not just dropped: at least one survivor's own suspicion timed out and
        // declared it dead (the others may have learned it by gossip, so the sum, not each).
        let declared = [0, 1, 3, 4].map { cluster.metric("tandem_membership_deaths_declared_total", node: $0) }
        #expect(declared.allSatisfy { $0 != nil }, "a survivor's /metrics did not answer: \(declared)")
        #expect(declared.compactMap { $0 }.reduce(0, +) >= 1, "no survivor declared n3 dead: \(declared)")
    }

    @Test func gracefulLeaveIsSeenAsLeftNotDead() throws {
        let cluster = try LocalCluster(size: 3)
        try cluster.startAll()
        #expect(eventually(timeout: .seconds(15)) { (0..<3).allSatisfy { cluster.view(from: $0)?.count == 3 } })
        #expect(cluster.terminate(1) == 0, "SIGTERM should exit cleanly")
        let left = eventually(timeout: .seconds(10)) {
            [0, 2].allSatisfy { cluster.view(from: $0)?["n2"]?.status == "left" }
        }
        #expect(left, "others did not see n2 as left: \(String(describing: cluster.view(from: 0)))")
    }

    @Test func aDataDirBelongsToOneNode() throws {
        let cluster = try LocalCluster(size: 1)
        try cluster.start(0)
        #expect(eventually(timeout: .seconds(10)) { cluster.view(from: 0) != nil })
        // A second process on the same data dir is refused (the dir is locked).
        let pid = try spawn(
            cluster.binary,
            [
                "node", "--name", "n1", "--region", "r", "--bind", "127.0.0.1:1",
                "--api", "127.0.0.1:2", "--data-dir", cluster.nodes[0].dataDir
            ],
            log: cluster.root + "/second.log")
        #expect(waitExit(pid) != 0)
        #expect((try? String(contentsOfFile: cluster.root + "/second.log", encoding: .utf8))?.contains("in use") == true)
    }
}
