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

/// The keyring's seal, the replay guard, and the sealed frame decoder, without processes.
@Suite struct KeyringTests {
    let a = try! Keyring.Key(base64: Keyring.generate())
    let b = try! Keyring.Key(base64: Keyring.generate())

    @Test func sealOpensOnlyWithAKeyringKeyAndTheSamePurpose() throws {
        let sender = try Keyring(keys: [a])
        let sealed = sender.seal([1, 2, 3], purpose: .datagram)
        #expect(sealed.count == 3 + Keyring.overhead)
        #expect(try Keyring(keys: [b, a]).open(sealed, purpose: .datagram) == [1, 2, 3])  // any key, not only the primary
        #expect(try Keyring(keys: [b]).open(sealed, purpose: .datagram) == nil)
        #expect(sender.open(sealed, purpose: .frame) == nil)
        for i in sealed.indices {  // every single-byte change is detected
            var altered = sealed
            altered[i] ^= 0x01
            #expect(sender.open(altered, purpose: .datagram) == nil)
        }
        #expect(sender.open(Array(sealed.prefix(20)), purpose: .datagram) == nil)
        #expect(sender.seal([1, 2, 3], purpose: .datagram) != sealed, "nonces are random")
    }

    @Test func keyringFileAndRotationRules() throws {
        let keys = try Keyring.parse("# cluster keys\n\(a.base64)\n\n\(b.base64)\n\(a.base64)\n")
        #expect(keys == [a, b])
        #expect(throws: TandemError.self) { try Keyring.parse("not base64!\n") }
        #expect(throws: TandemError.self) { try Keyring.parse(Base64.encode([1, 2, 3]) + "\n") }
        #expect(throws: TandemError.self) { try Keyring.parse("\n# nothing\n") }
        let ring = try Keyring(keys: keys)
        #expect(throws: TandemError.self) { try ring.remove(a) }  // the primary stays
        let c = try Keyring.Key(base64: Keyring.generate())
        #expect(throws: TandemError.self) { try ring.use(c) }  // not installed
        #expect(ring.install(c))
        #expect(!ring.install(c))
        try ring.use(c)
        #expect(ring.primary == c)
        try ring.remove(a)
        #expect(ring.keys == [c, b])
    }

    @Test func replayGuardRefusesDuplicatesOldAndFuture() throws {
        var guard_ = ReplayGuard(windowMs: 30_000, capacity: 4)
        let now: UInt64 = 1_000_000
        let n1: [UInt8] = [1], n2: [UInt8] = [2]
        func admit(_ n: [UInt8], _ sent: UInt64, _ at: UInt64) -> Bool { guard_.admit(nonce: n[...], sentMs: sent, nowMs: at) }
        #expect(admit(n1, now, now))
        #expect(!admit(n1, now, now + 5))  // duplicate
        #expect(!admit(n2, now - 31_000, now))  // too old
        #expect(!admit(n2, now + 31_000, now))  // from the future
        #expect(admit(n2, now, now))
        // Past capacity the oldest nonces are forgotten, but their age is refused instead.
        for i in 3...6 { #expect(admit([UInt8(i)], now + UInt64(i), now + 10)) }
        #expect(guard_.count == 4)
        #expect(!admit(n1, now, now + 10))
        // Once the window has passed, memory is released.
        #expect(admit([9], now + 40_000, now + 40_000))
        #expect(guard_.count == 1)
    }

    @Test func sealedDatagramCarriesItsTime() throws {
        let ring = try Keyring(keys: [a])
        var replay = ReplayGuard()
        func open(_ ring: Keyring, _ bytes: [UInt8], _ at: UInt64) -> Keyring.DatagramVerdict {
            ring.openDatagram(bytes, nowMs: at, guard: &replay)
        }
        let packet = Packet([.ping(seq: 1, target: "n1")]).encode()
        let sealed = ring.sealDatagram(packet, nowMs: 5_000_000)
        #expect(sealed.count == packet.count + Keyring.datagramOverhead)
        #expect(Keyring.datagramOverhead <= Packet.envelopeReserve)
        #expect(open(ring, sealed, 5_000_100) == .ok(packet))
        #expect(open(ring, sealed, 5_000_200) == .replayed)
        #expect(open(ring, ring.sealDatagram(packet, nowMs: 5_000_000), 5_040_000) == .replayed)
        #expect(open(try Keyring(keys: [b]), sealed, 5_000_100) == .unauthenticated)
    }

    @Test func frameDecoderOpensSealedFramesAndRefusesPlainOnes() throws {
        let ring = try Keyring(keys: [a])
        let frames = (1...3).map { Frame(kind: 7, requestID: UInt32($0), payload: Array(repeating: UInt8($0), count: $0 * 100)) }
        let now: UInt64 = 5_000_000
        let connecting = FrameSession(connectingAtMs: now)
        let stream = frames.flatMap { connecting.seal($0.encode(), keyring: ring)! }
        #expect(stream.count == frames.map { $0.encode().count + Keyring.overhead + FrameSession.headerSize }.reduce(0, +))
        var decoder = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring)
        var out: [Frame] = []
        for chunk in stride(from: 0, to: stream.count, by: 37) {  // arbitrary split points
            let part = Array(stream[chunk..<min(stream.count, chunk + 37)])
            out += try part.withUnsafeBytes { try decoder.feed($0, nowMs: now + 10) }
        }
        #expect(out == frames)
        var keyed = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring)
        let plain = frames[0].encode()
        #expect((try? plain.withUnsafeBytes { try keyed.feed($0, nowMs: now) }) == nil)
        var other = FrameDecoder(maxFrameSize: 1 << 20, keyring: try Keyring(keys: [b]))
        do {
            _ = try stream.withUnsafeBytes { try other.feed($0, nowMs: now) }
            Issue.record("a frame under a foreign key was accepted")
        } catch {
            #expect((error as? TandemError)?.code == FrameDecoder.unauthenticated)
        }
    }

    /// Peer frames carry their connection's session and sequence inside the seal: a recorded
    /// connection played to the node again is refused at its first frame (its session was seen,
    /// or is older than the window), and within a connection a repeated, skipped or spliced
    /// frame is refused; answers are bound to the connecting side's session the same way.
    @Test func replayedSealedFramesAreRefused() throws {
        let ring = try Keyring(keys: [a])
        let now: UInt64 = 5_000_000
        let accepted = FrameSessionGuard()
        func decode(_ d: inout FrameDecoder, _ bytes: [UInt8], at: UInt64 = 5_000_010) -> Result<[Frame], TandemError> {
            do {
                return .success(try bytes.withUnsafeBytes { try d.feed($0, nowMs: at) })
            } catch {
                return .failure(error as? TandemError ?? TandemError(.malformed, "\(error)"))
            }
        }
        func isReplay(_ r: Result<[Frame], TandemError>) -> Bool {
            if case .failure(let e) = r { return e.code == FrameDecoder.replayed }
            return false
        }
        let frames = (1...3).map { Frame(kind: 7, requestID: UInt32($0), payload: [UInt8($0)]) }
        let client = FrameSession(connectingAtMs: now)
        let recorded = frames.map { client.seal($0.encode(), keyring: ring)! }

        // The genuine connection.
        let serverSession = FrameSession(accepting: accepted)
        var server = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring, session: serverSession)
        #expect(try decode(&server, recorded.flatMap { $0 }).get() == frames)
        // A frame repeated on it, or one from another connection spliced in.
        #expect(isReplay(decode(&server, recorded[2])))
        var server2 = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring, session: FrameSession(accepting: accepted))
        let other = FrameSession(connectingAtMs: now)
        _ = try decode(&server2, other.seal(frames[0].encode(), keyring: ring)!).get()
        #expect(isReplay(decode(&server2, recorded[1])))
        // A skipped frame (sequence 3 after 1).
        var server3 = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring, session: FrameSession(accepting: accepted))
        let third = FrameSession(connectingAtMs: now)
        let thirds = frames.map { third.seal($0.encode(), keyring: ring)! }
        _ = try decode(&server3, thirds[0]).get()
        #expect(isReplay(decode(&server3, thirds[2])))

        // The whole recording played to the node again on a new connection: refused at once,
        // within the window (session seen) and after it (too old, even on a node that forgot).
        var replay = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring, session: FrameSession(accepting: accepted))
        #expect(isReplay(decode(&replay, recorded.flatMap { $0 })))
        var late = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring, session: FrameSession(accepting: FrameSessionGuard()))
        #expect(isReplay(decode(&late, recorded.flatMap { $0 }, at: now + 31_000)))
        // A connection's later frames alone cannot start a session either.
        var tail = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring, session: FrameSession(accepting: FrameSessionGuard()))
        #expect(isReplay(decode(&tail, recorded[1])))

        // Answers: sealed with the session the server learned, accepted once by the client.
        let answer = Frame(kind: 7 | Frame.responseBit, requestID: 1, payload: [9])
        let sealedAnswer = serverSession.seal(answer.encode(), keyring: ring)!
        var clientSide = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring, session: client)
        #expect(try decode(&clientSide, sealedAnswer).get() == [answer])
        #expect(isReplay(decode(&clientSide, sealedAnswer)))
        var otherClient = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring, session: FrameSession(connectingAtMs: now))
        #expect(isReplay(decode(&otherClient, serverSession.seal(answer.encode(), keyring: ring)!)))
        // An accepting side that has heard nothing has nothing to answer with.
        #expect(FrameSession(accepting: accepted).seal(answer.encode(), keyring: ring) == nil)
    }
}
