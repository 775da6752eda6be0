import Foundation
import Membership
import TandemCore
import TandemNode
import Testing

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
        func open(_ ring: Keyring, _ bytes: [UInt8], _ at: UInt64) -> Keyring.DatagramVerdict { ring.openDatagram(bytes, nowMs: at, guard: &replay) }
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
        var stream: [UInt8] = []
        for f in frames {
            let sealed = ring.seal(Array(f.encode()[4...]), purpose: .frame)
            var w = ByteWriter()
            w.u32(UInt32(sealed.count))
            w.raw(sealed)
            stream += w.bytes
        }
        var decoder = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring)
        var out: [Frame] = []
        for chunk in stride(from: 0, to: stream.count, by: 37) {  // arbitrary split points
            let part = Array(stream[chunk..<min(stream.count, chunk + 37)])
            out += try part.withUnsafeBytes { try decoder.feed($0) }
        }
        #expect(out == frames)
        var keyed = FrameDecoder(maxFrameSize: 1 << 20, keyring: ring)
        let plain = frames[0].encode()
        #expect((try? plain.withUnsafeBytes { try keyed.feed($0) }) == nil)
        var other = FrameDecoder(maxFrameSize: 1 << 20, keyring: try Keyring(keys: [b]))
        do {
            _ = try stream.withUnsafeBytes { try other.feed($0) }
            Issue.record("a frame under a foreign key was accepted")
        } catch {
            #expect((error as? TandemError)?.code == FrameDecoder.unauthenticated)
        }
    }
}
