import Foundation
import Membership
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Real nodes with `--keyring`: the cluster forms, a node without the key cannot join and
/// gets no answer, and a captured datagram replayed changes nothing.
@Suite(.serialized) struct EncryptionProcessTests {
    static func writeKeyring(_ dir: String, _ name: String, _ keys: [String]) throws -> String {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = "\(dir)/\(name)"
        try keys.map { $0 + "\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func aNodeWithoutTheKeyCannotJoin() throws {
        let cluster = try LocalCluster(size: 4)
        let good = try Self.writeKeyring(cluster.root, "good.keys", [Keyring.generate()])
        let wrong = try Self.writeKeyring(cluster.root, "wrong.keys", [Keyring.generate()])
        try cluster.start(0, extraArgs: ["--keyring", good])
        try cluster.start(1, extraArgs: ["--keyring", good])
        try cluster.start(2, extraArgs: ["--keyring", wrong])
        try cluster.start(3)  // no keyring at all
        #expect(
            eventually(timeout: .seconds(10)) {
                cluster.view(from: 1)?["n1"]?.status == "alive" && cluster.view(from: 0)?["n2"]?.status == "alive"
            })
        // Let the outsiders try, then check nobody let them in. Each join attempt is a push-pull
        // to the seed (n1), refused there as an unauthenticated frame: wait for the first
        // refusals, then for as many again (they kept retrying after being refused).
        #expect(
            eventually(timeout: .seconds(10)) {
                (cluster.metric("tandem_peer_unauthenticated_frames_total", node: 0) ?? 0) >= 2
            })
        let refusedFirst = cluster.metric("tandem_peer_unauthenticated_frames_total", node: 0) ?? .infinity
        #expect(
            eventually(timeout: .seconds(15)) {
                (cluster.metric("tandem_peer_unauthenticated_frames_total", node: 0) ?? 0) >= 2 * refusedFirst
            }, "the outsiders did not try again after their first refusals (\(refusedFirst) refused)")
        for i in 0...1 {
            let v = cluster.view(from: i) ?? [:]
            #expect(v["n3"] == nil && v["n4"] == nil, "n\(i + 1) let an outsider in: \(v)")
        }
        for i in 2...3 {
            let v = cluster.view(from: i) ?? [:]
            #expect(Set(v.keys) == ["n\(i + 1)"], "outsider n\(i + 1) learned of members: \(v)")
            #expect(cluster.metric("tandem_gossip_packets_in_total", node: i) == 0, "outsider n\(i + 1) got an answer")
        }
        #expect(cluster.log(0).contains("not sealed with a keyring key"))
        print(
            "packets from keyless nodes accepted: 0; unauthenticated frames at n1:",
            cluster.metric("tandem_peer_unauthenticated_frames_total", node: 0) ?? -1,
            "datagrams:", cluster.metric("tandem_gossip_unauthenticated_packets_total", node: 0) ?? -1)
    }

    @Test func aReplayedDatagramChangesNothing() throws {
        let cluster = try LocalCluster(size: 1)
        let key = Keyring.generate()
        let path = try Self.writeKeyring(cluster.root, "keys", [key])
        try cluster.start(0, extraArgs: ["--keyring", path])
        #expect(eventually(timeout: .seconds(5)) { cluster.view(from: 0) != nil })
        let ring = try Keyring(keys: [try Keyring.Key(base64: key)])
        let socket = try TestUDPSocket()
        defer { socket.close() }
        // A sealed ping is answered (with a sealed ack) ...
        let captured = ring.sealDatagram(
            Packet([.ping(seq: 41, target: "n1")]).encode(), nowMs: UInt64(Date().timeIntervalSince1970 * 1000))
        socket.send(captured, to: cluster.nodes[0].bind)
        let answer = socket.receive(timeoutMs: 2000)
        var replayScratch = ReplayGuard()
        #expect(answer != nil, "the genuine ping got no ack")
        if let answer,
            case .ok(let plain) = ring.openDatagram(answer, nowMs: UInt64(Date().timeIntervalSince1970 * 1000), guard: &replayScratch)
        {
            #expect(try Packet.decode(plain).messages.contains { if case .ack(41, _, _) = $0 { true } else { false } })
        }
        // ... the same bytes again are not, nor is a ping sealed 60 s ago, nor a plain one.
        socket.send(captured, to: cluster.nodes[0].bind)
        #expect(socket.receive(timeoutMs: 1000) == nil, "a replayed ping was answered")
        socket.send(
            ring.sealDatagram(
                Packet([.ping(seq: 42, target: "n1")]).encode(),
                nowMs: UInt64(Date().timeIntervalSince1970 * 1000) - 60_000), to: cluster.nodes[0].bind)
        #expect(socket.receive(timeoutMs: 1000) == nil, "a stale ping was answered")
        socket.send(Packet([.ping(seq: 43, target: "n1")]).encode(), to: cluster.nodes[0].bind)
        #expect(socket.receive(timeoutMs: 1000) == nil, "a plain ping was answered")
        #expect(cluster.metric("tandem_gossip_replayed_packets_total", node: 0) == 2)
        #expect(cluster.metric("tandem_gossip_unauthenticated_packets_total", node: 0) == 1)
    }
}

/// A UDP socket on an ephemeral loopback port, for speaking gossip by hand.
final class TestUDPSocket {
    let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = Self.address("127.0.0.1:0")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw TandemError(.io, "bind failed") }
    }

    static func address(_ s: String) -> sockaddr_in {
        let parts = s.split(separator: ":")
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(parts[1])!.bigEndian)
        addr.sin_addr.s_addr = inet_addr(String(parts[0]))
        return addr
    }

    func send(_ bytes: [UInt8], to: String) {
        var addr = Self.address(to)
        _ = bytes.withUnsafeBytes { buf in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    func receive(timeoutMs: Int32) -> [UInt8]? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMs) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? Array(buf.prefix(n)) : nil
    }

    func close() { Glibc.close(fd) }
}

/// `tandem keys install|use|remove` across a live cluster: nobody drops out while the key
/// changes, and a restarted node comes back with the rotated keyring from its data dir.
@Suite(.serialized) struct KeyRotationProcessTests {
    func keys(_ cluster: LocalCluster, _ args: [String]) -> (status: Int32, output: String) {
        let log = "\(cluster.root)/keys-\(UInt32.random(in: 0..<UInt32.max)).out"
        guard let pid = try? spawn(cluster.binary, ["keys"] + args + ["--api", cluster.nodes[0].api], log: log) else { return (-1, "") }
        let status = waitExit(pid)
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// Peer frames node `i` has received; -1 when its /metrics does not answer (never "more";
    /// a baseline that could not be read is +∞ for the same reason).
    func framesIn(_ cluster: LocalCluster, _ i: Int) -> Double {
        cluster.metric("tandem_peer_frames_in_total", node: i) ?? -1
    }

    func allAlive(_ cluster: LocalCluster) -> Bool {
        (0..<cluster.nodes.count).allSatisfy { i in
            guard let v = cluster.view(from: i) else { return false }
            return v.count == cluster.nodes.count && v.values.allSatisfy { $0.status == "alive" }
        }
    }

    @Test func rotateTheClusterKeyWithoutDowntime() throws {
        let cluster = try LocalCluster(size: 3)
        let old = Keyring.generate()
        let new = Keyring.generate()
        let path = try EncryptionProcessTests.writeKeyring(cluster.root, "keys", [old])
        for i in 0..<3 { try cluster.start(i, extraArgs: ["--keyring", path]) }
        #expect(eventually(timeout: .seconds(10)) { allAlive(cluster) })
        let newID = try Keyring.Key(base64: new).idHex

        let install = keys(cluster, ["install", new])
        #expect(install.status == 0, "\(install.output)")
        #expect(install.output.components(separatedBy: "ok: changed").count - 1 == 3, "\(install.output)")
        let use = keys(cluster, ["use", new])
        #expect(use.status == 0, "\(use.output)")
        // Every node now seals with the new key. Before the old one goes, wait until every node
        // has received peer frames since, so nothing sealed with the old key is still in flight.
        let afterUse = (0..<3).map { cluster.metric("tandem_peer_frames_in_total", node: $0) ?? .infinity }
        #expect(
            eventually(timeout: .seconds(15)) { (0..<3).allSatisfy { i in framesIn(cluster, i) > afterUse[i] } },
            "peer traffic did not resume on every node after the switch")
        let remove = keys(cluster, ["remove", old])
        #expect(remove.status == 0, "\(remove.output)")
        let list = keys(cluster, ["list"])
        #expect(list.output.components(separatedBy: "ok: \(newID) (primary)\n").count - 1 == 3, "\(list.output)")
        // Removing the primary is refused, per node, with a non-zero exit.
        let refused = keys(cluster, ["remove", new])
        #expect(refused.status != 0 && refused.output.contains("FAILED: 409"), "\(refused.output)")

        // Traffic now runs on the new key only: peer frames keep arriving on every node (each
        // sealed with the new key, the only one left), none was refused, and nobody was lost on
        // the way: all alive, and no node ever declared a member dead.
        let framesBefore = (0..<3).map { cluster.metric("tandem_peer_frames_in_total", node: $0) ?? .infinity }
        #expect(
            eventually(timeout: .seconds(15)) { (0..<3).allSatisfy { i in framesIn(cluster, i) > framesBefore[i] } },
            "peer traffic stopped after the old key was removed")
        #expect(allAlive(cluster), "a member dropped out during rotation: \(String(describing: cluster.view(from: 0)))")
        for i in 0..<3 {
            #expect(cluster.metric("tandem_membership_deaths_declared_total", node: i) == 0, "n\(i + 1) declared a member dead")
            #expect(cluster.metric("tandem_gossip_unauthenticated_packets_total", node: i) == 0, "n\(i + 1) refused datagrams")
            #expect(cluster.metric("tandem_peer_unauthenticated_frames_total", node: i) == 0, "n\(i + 1) refused peer frames")
        }

        // A restart uses the data dir's keyring (the new key), not the stale --keyring file.
        cluster.kill9(2)
        try cluster.start(2, extraArgs: ["--keyring", path])
        #expect(
            eventually(timeout: .seconds(15)) {
                cluster.view(from: 0)?["n3"]?.status == "alive" && cluster.view(from: 2)?["n1"]?.status == "alive"
            }, "restarted n3 did not rejoin: \(cluster.log(2).suffix(2000))")
        #expect(!((try? String(contentsOfFile: "\(cluster.nodes[2].dataDir)/keyring", encoding: .utf8)) ?? "").contains(old))
    }
}
