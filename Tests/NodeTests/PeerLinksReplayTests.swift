import Foundation
@testable import Storage
import TandemCore
@testable import TandemNode
@testable import TandemTestKit
import Testing
@testable import Transport

/// Peer links in one process on real loopback sockets: a connection recorded off the wire
/// and played back to a node is refused and counted, and the node answers nothing for it.
@Suite struct PeerLinksReplayTests {
    /// Runs `loop` until `condition` holds or 5 s pass (a repeating timer keeps it waking).
    static func run(_ loop: EventLoop, until condition: () -> Bool) -> Bool {
        let tick = LoopTimer(loop: loop)
        tick.start(after: .milliseconds(5), repeating: .milliseconds(5)) {}
        defer { tick.stop() }
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            if ContinuousClock.now > deadline { return false }
            loop.runOnce()
        }
        return true
    }

    @Test func aRecordedConnectionReplayedToANodeIsRefusedAndCounted() throws {
        let loop = EventLoop()
        let ring = try Keyring(keys: [try Keyring.Key(base64: Keyring.generate())])
        let base = LocalCluster.freePortBase(count: 3)
        let (senderAt, tapAt, nodeAt) = ("127.0.0.1:\(base)", "127.0.0.1:\(base + 1)", "127.0.0.1:\(base + 2)")

        // A tap records what a real sender puts on the wire to it.
        let tap = try TCPServer(loop: loop, bind: try SocketAddress(tapAt))
        var recorded: [UInt8] = []
        var tapped: [TCPConnection] = []
        tap.start { c in
            tapped.append(c)
            c.onData = { bytes in recorded += Array(bytes) }
            c.startReading()
        }
        // (PeerLinks does not keep its server: the node does, and so does this test.)
        let senderServer = try TCPServer(loop: loop, bind: try SocketAddress(senderAt))
        let sender = PeerLinks(loop: loop, server: senderServer, keyring: ring)
        sender.request(to: tapAt, kind: 42, payload: Array("transfer 100".utf8), timeout: .seconds(5)) { _ in }
        #expect(Self.run(loop) { recorded.count > 0 })

        // The node: same keyring, answers every request.
        let nodeServer = try TCPServer(loop: loop, bind: try SocketAddress(nodeAt))
        let node = PeerLinks(loop: loop, server: nodeServer, keyring: ring)
        var served: [Frame] = []
        node.onRequest = { frame, _, reply in
            served.append(frame)
            reply(Array("done".utf8))
        }
        func play(_ bytes: [UInt8]) -> (answered: Int, closed: Bool) {
            var answered = 0
            var closed = false
            var connection: TCPConnection?
            connection = TCPConnection.connect(loop: loop, to: try! SocketAddress(nodeAt), timeout: .seconds(1)) { c, error in
                guard let c, error == nil else { closed = true; return }
                c.onData = { answered += $0.count }
                c.onClose = { closed = true }
                c.startReading()
                c.write(bytes)
            }
            _ = Self.run(loop) { closed || answered > 0 }
            _ = Self.run(loop) { closed || answered > 0 && served.count > 0 }
            connection?.close()
            return (answered, closed)
        }

        // Delivered once (the node never saw this session: as far as it can tell it is the sender).
        let first = play(recorded)
        #expect(first.answered > 0 && served.count == 1 && served.first?.payload == Array("transfer 100".utf8))
        #expect(node.stats.replayedFrames == 0)
        // Played again: refused at the first frame, the connection closed, nothing served or answered.
        let second = play(recorded)
        #expect(second.closed && second.answered == 0)
        #expect(served.count == 1)
        #expect(node.stats.replayedFrames == 1)
        #expect(node.stats.unauthenticatedFrames == 0)
        withExtendedLifetime((tap, tapped, senderServer, nodeServer)) {}
    }
}
