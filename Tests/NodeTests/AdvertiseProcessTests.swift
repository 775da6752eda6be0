import Foundation
import TandemCore
import TandemTestKit
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Addressing on real processes: a node bound to a wildcard address tells peers and clients
/// the address it advertises (here one inside a network namespace, as behind NAT or in a
/// container), and IPv6 works.
@Suite(.serialized) struct AdvertiseProcessTests {
    typealias S = StreamsProcessTests

    /// Namespaces need root (CI runs as root; scripts/test too there) and iproute2.
    static let namespaces = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")

    static func ip(_ args: [String]) -> Bool {
        guard let pid = try? spawn("/usr/sbin/ip", args, log: "/dev/null") else { return false }
        return waitExit(pid) == 0
    }

    static func waitExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return (status >> 8) & 0xFF
    }

    @Test(.enabled(if: namespaces, "needs root and iproute2 for a network namespace"))
    func aWildcardBindAdvertisesANamespaceAddress() throws {
        let tag = getpid() % 200 + 20
        let ns = "tandem-adv-\(getpid())"
        let (hostIf, nsIf) = ("tadvh\(getpid() % 100_000)", "tadvn\(getpid() % 100_000)")
        let (hostIP, nsIP) = ("10.213.\(tag).1", "10.213.\(tag).2")
        _ = Self.ip(["netns", "del", ns])
        #expect(Self.ip(["netns", "add", ns]))
        defer { _ = Self.ip(["netns", "del", ns]) }
        #expect(Self.ip(["link", "add", hostIf, "type", "veth", "peer", "name", nsIf]))
        #expect(Self.ip(["link", "set", nsIf, "netns", ns]))
        #expect(Self.ip(["addr", "add", "\(hostIP)/24", "dev", hostIf]))
        #expect(Self.ip(["link", "set", hostIf, "up"]))
        #expect(Self.ip(["netns", "exec", ns, "ip", "addr", "add", "\(nsIP)/24", "dev", nsIf]))
        #expect(Self.ip(["netns", "exec", ns, "ip", "link", "set", nsIf, "up"]))
        #expect(Self.ip(["netns", "exec", ns, "ip", "link", "set", "lo", "up"]))

        let binary = LocalCluster.findBinary()
        let root = NSTemporaryDirectory() + "tandem-adv-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let base = LocalCluster.freePortBase(count: 4)
        let (peer1, peer2, api1, api2) = (base, base + 1, base + 2, base + 3)
        // n1 in this namespace, n2 in the new one; both bound to every address.
        let n1 = try spawn(
            binary,
            [
                "node", "--name", "n1", "--region", "r1", "--bind", "0.0.0.0:\(peer1)", "--advertise", "\(hostIP):\(peer1)",
                "--api", "0.0.0.0:\(api1)", "--data-dir", "\(root)/n1", "--profile", "fast"
            ], log: "\(root)/n1.log")
        defer {
            kill(n1, SIGKILL)
            _ = Self.waitExit(n1)
        }
        let n2 = try spawn(
            "/usr/sbin/ip",
            [
                "netns", "exec", ns, binary, "node", "--name", "n2", "--region", "r2", "--bind", "0.0.0.0:\(peer2)", "--advertise",
                "\(nsIP):\(peer2)", "--api", "0.0.0.0:\(api2)", "--data-dir", "\(root)/n2", "--profile", "fast", "--seed",
                "\(hostIP):\(peer1)"
            ], log: "\(root)/n2.log")
        defer {
            kill(n2, SIGKILL)
            _ = Self.waitExit(n2)
        }
        let (a1, a2) = ("\(hostIP):\(api1)", "\(nsIP):\(api2)")
        // Each lists the other at its advertised peer and API addresses.
        var members = ""
        let joined = eventually(timeout: .seconds(20), interval: .milliseconds(100)) {
            guard let r = S.call("GET", a1, "/v1/members"), r.status == 200 else { return false }
            members = r.text
            return members.contains("\(nsIP):\(peer2)") && members.contains("\(nsIP):\(api2)") && members.contains("\(hostIP):\(api1)")
                && S.call("GET", a2, "/v1/members")?.text.contains("\(hostIP):\(peer1)") == true
        }
        #expect(joined, "members: \(members)\n\((try? String(contentsOfFile: "\(root)/n2.log", encoding: .utf8)) ?? "")")
        // Tables replicate over the advertised addresses.
        #expect(eventually(timeout: .seconds(10)) { S.call("PUT", a1, "/v1/tables/agents", #"{"partitionKey":"id"}"#)?.status == 201 })
        #expect(S.call("PUT", a1, "/v1/tables/agents/items/a-1", #"{"id":"a-1","status":"ready"}"#)?.status == 200)
        #expect(
            eventually(timeout: .seconds(10)) { S.call("GET", a2, "/v1/tables/agents/items/a-1")?.text.contains("ready") == true },
            "the item did not reach n2")
        // A stream's Raft group (both nodes vote) commits over them.
        #expect(eventually(timeout: .seconds(10)) { S.call("PUT", a2, "/v1/streams/calls", #"{"partitions":1}"#)?.status == 201 })
        #expect(
            eventually(timeout: .seconds(15), interval: .milliseconds(100)) {
                S.call("POST", a1, "/v1/streams/calls/records", S.putBody("k", "hello"))?.status == 200
            }, "no put committed")
    }

    @Test func aWildcardBindWithoutAdvertiseIsRefusedClearly() throws {
        let root = NSTemporaryDirectory() + "tandem-adv-refused-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let base = LocalCluster.freePortBase(count: 2)
        for (args, says) in [
            (["--bind", "0.0.0.0:\(base)"], "give --advertise"),
            (["--bind", "[::]:\(base)"], "give --advertise"),
            (["--bind", "127.0.0.1:\(base)", "--advertise", "0.0.0.0:\(base)"], "not an address others can reach"),
            (["--bind", "127.0.0.1:\(base)", "--advertise", "node-1.example:\(base)"], "must be an IP address")
        ] {
            let log = "\(root)/\(UInt32.random(in: 0..<UInt32.max)).log"
            let pid = try spawn(
                LocalCluster.findBinary(),
                ["node", "--name", "n1", "--region", "r", "--api", "127.0.0.1:\(base + 1)", "--data-dir", "\(root)/d"] + args, log: log)
            #expect(Self.waitExit(pid) == 1, "\(args)")
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(text.contains(says), "\(args): \(text)")
        }
    }

    @Test func ipv6() throws {
        let root = NSTemporaryDirectory() + "tandem-v6-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let base = LocalCluster.freePortBase(count: 4)
        var pids: [pid_t] = []
        defer {
            for pid in pids {
                kill(pid, SIGKILL)
                _ = Self.waitExit(pid)
            }
        }
        for i in 0..<2 {
            pids.append(
                try spawn(
                    LocalCluster.findBinary(),
                    [
                        "node", "--name", "n\(i + 1)", "--region", "r\(i)", "--bind", "[::1]:\(base + i)", "--api", "[::1]:\(base + 2 + i)",
                        "--data-dir", "\(root)/n\(i + 1)", "--profile", "fast"
                    ] + (i == 0 ? [] : ["--seed", "[::1]:\(base)"]), log: "\(root)/n\(i + 1).log"))
        }
        let (a1, a2) = ("[::1]:\(base + 2)", "[::1]:\(base + 3)")
        #expect(
            eventually(timeout: .seconds(20), interval: .milliseconds(100)) {
                S.call("GET", a1, "/v1/members")?.text.contains("[::1]:\(base + 1)") == true
            }, "n2 did not join over IPv6")
        #expect(eventually(timeout: .seconds(10)) { S.call("PUT", a1, "/v1/tables/v6t", #"{"partitionKey":"id"}"#)?.status == 201 })
        #expect(S.call("PUT", a1, "/v1/tables/v6t/items/x", #"{"id":"x","v":1}"#)?.status == 200)
        #expect(eventually(timeout: .seconds(10)) { S.call("GET", a2, "/v1/tables/v6t/items/x")?.status == 200 })
    }
}
