import Membership
import TandemCore
import Testing

/// The gossip datagram and push-pull codecs: exact round trips, and nothing a peer sends can
/// trap the decoder.
@Suite struct PacketCodecTests {
    static let coordinate = VivaldiCoordinate(vector: [0.001, -0.002, 0.5, 0, -0.0, 1e-9, 3, -4], error: 0.7, height: 0.000_05)

    static let everyKind: [SwimMessage] = [
        .ping(seq: 1, target: "node-1"),
        .ping(seq: .max, target: ""),
        .ack(seq: 2, forwarded: false, coordinate: coordinate),
        .ack(seq: 3, forwarded: true, coordinate: nil),
        .ack(seq: 0, forwarded: false, coordinate: nil),
        .nack(seq: 4),
        .pingReq(seq: 5, target: "node-2", targetAddress: "10.0.0.2:7946"),
        .alive(
            MemberState(
                name: "node-3", address: "[::1]:7946", incarnation: .max, status: .alive,
                meta: MemberMeta(region: "eu-west-1", api: "10.0.0.3:8080", role: .witness))),
        .alive(
            MemberState(
                name: "ünïcødé-名前", address: "h:1", incarnation: 0, status: .alive,
                meta: MemberMeta(region: "", api: "", role: .voter))),
        .suspect(name: "node-4", incarnation: 7, from: "node-5"),
        .dead(name: "node-6", incarnation: 8, from: "node-7"),
        .leave(name: "node-8", incarnation: 9)
    ]

    /// Byte offsets at which a packet of `messages` could legitimately end.
    static func boundaries(_ messages: [SwimMessage]) -> [Int] {
        var at = Packet.headerSize
        var result = [at]
        for m in messages {
            at += Packet.encodedSize(m)
            result.append(at)
        }
        return result
    }

    @Test(arguments: everyKind)
    func roundTripsEachKind(message: SwimMessage) throws {
        let packet = Packet([message])
        let bytes = packet.encode()
        #expect(bytes.count == Packet.headerSize + Packet.encodedSize(message))
        #expect(try Packet.decode(bytes) == packet)
    }

    @Test func roundTripsEveryKindInOnePacket() throws {
        let packet = Packet(Self.everyKind)
        let bytes = packet.encode()
        #expect(bytes[0] == Packet.magic)
        #expect(bytes[1] == Packet.version)
        #expect(try Packet.decode(bytes) == packet)
        #expect(try Packet.decode(Packet([]).encode()) == Packet([]))
    }

    @Test func everyTruncationThrowsUnlessItEndsOnAMessageBoundary() {
        let messages = Self.everyKind
        let bytes = Packet(messages).encode()
        let bounds = Self.boundaries(messages)
        #expect(bounds.last == bytes.count)
        var threw = 0
        for cut in 0..<bytes.count {
            let prefix = Array(bytes.prefix(cut))
            if let i = bounds.firstIndex(of: cut) {
                // A shorter, complete packet: it must decode to exactly the messages it holds.
                #expect((try? Packet.decode(prefix)) == Packet(Array(messages.prefix(i))), "cut at \(cut)")
            } else {
                #expect(throws: TandemError.self, "cut at \(cut) of \(bytes.count)") { try Packet.decode(prefix) }
                threw += 1
            }
        }
        #expect(threw == bytes.count - bounds.count + 1)
    }

    @Test(arguments: everyKind)
    func everyTruncationOfOneMessageThrows(message: SwimMessage) {
        let bytes = Packet([message]).encode()
        for cut in 0..<bytes.count where cut != Packet.headerSize {
            #expect(throws: TandemError.self, "\(message) cut at \(cut)") { try Packet.decode(Array(bytes.prefix(cut))) }
        }
    }

    @Test func truncatedBodyInsideAValidLengthThrows() {
        // Shorten a message's body but fix up its length field: the body itself is now short.
        for message in Self.everyKind {
            let bytes = Packet([message]).encode()
            let bodyLength = bytes.count - Packet.headerSize - 3
            for keep in 0..<bodyLength {
                var cut = Array(bytes.prefix(Packet.headerSize + 3 + keep))
                cut[3] = UInt8(keep >> 8)
                cut[4] = UInt8(keep & 0xFF)
                #expect(throws: TandemError.self, "\(message) body cut to \(keep)") { try Packet.decode(cut) }
            }
            // And a body with a trailing byte is rejected, not silently accepted.
            var long = bytes + [0]
            long[3] = UInt8((bodyLength + 1) >> 8)
            long[4] = UInt8((bodyLength + 1) & 0xFF)
            #expect(throws: TandemError.self, "\(message) with a trailing byte") { try Packet.decode(long) }
        }
    }

    @Test func wrongMagicOrVersionIsRejected() {
        var bytes = Packet([.nack(seq: 1)]).encode()
        bytes[0] = 0x00
        #expect(code { try Packet.decode(bytes) } == TandemError.Code.malformed.name)
        bytes = Packet([.nack(seq: 1)]).encode()
        bytes[1] = Packet.version &+ 1
        #expect(code { try Packet.decode(bytes) } == TandemError.Code.unsupportedVersion.name)
        bytes[1] = 0
        #expect(code { try Packet.decode(bytes) } == TandemError.Code.unsupportedVersion.name)
    }

    @Test func unknownKindIsRejected() {
        for kind: UInt8 in [0, 9, 0x7F, 0xFF] {
            let bytes: [UInt8] = [Packet.magic, Packet.version, kind, 0, 4, 0, 0, 0, 1]
            #expect(code { try Packet.decode(bytes) } == TandemError.Code.malformed.name, "kind \(kind)")
        }
    }

    @Test func oversizeDatagramIsRejected() {
        var messages: [SwimMessage] = []
        while Packet(messages).encode().count <= Packet.maxSize {
            messages.append(
                .alive(
                    MemberState(
                        name: "member-\(messages.count)", address: "10.0.0.\(messages.count):7946",
                        incarnation: 1, status: .alive, meta: MemberMeta(region: "r", api: "a"))))
        }
        let bytes = Packet(messages).encode()
        #expect(bytes.count > Packet.maxSize)
        #expect(code { try Packet.decode(bytes) } == TandemError.Code.tooLarge.name)
        // Even bytes that are otherwise garbage: the size check comes first.
        #expect(code { try Packet.decode(Array(repeating: 0, count: Packet.maxSize + 1)) } == TandemError.Code.tooLarge.name)
    }

    @Test func datagramOfExactlyMaxSizeIsAccepted() throws {
        // One alive message padded to fill the datagram to the byte (name, address, region, api).
        func packet(padding: Int) -> Packet {
            func part(_ c: Character, _ i: Int) -> String { String(repeating: c, count: min(254, max(0, padding - 254 * i))) }
            return Packet([
                .alive(
                    MemberState(
                        name: "n" + part("m", 0), address: "a" + part("b", 1), incarnation: 1, status: .alive,
                        meta: MemberMeta(region: part("r", 2), api: part("p", 3)))),
                .pingReq(seq: 1, target: String(repeating: "t", count: 255), targetAddress: String(repeating: "x", count: 255)),
                .pingReq(seq: 2, target: String(repeating: "u", count: 255), targetAddress: String(repeating: "y", count: 255))
            ])
        }
        let base = packet(padding: 0).encode().count
        #expect(Packet.maxSize - base + 1 < 4 * 254, "padding must fit in the name, address and two meta strings")
        let exact = packet(padding: Packet.maxSize - base)
        let bytes = exact.encode()
        #expect(bytes.count == Packet.maxSize)
        #expect(try Packet.decode(bytes) == exact)
        let over = packet(padding: Packet.maxSize - base + 1).encode()
        #expect(over.count == Packet.maxSize + 1)
        #expect(code { try Packet.decode(over) } == TandemError.Code.tooLarge.name)
    }

    @Test func unknownRoleIsMalformed() throws {
        let packet = Packet([
            .alive(
                MemberState(
                    name: "n", address: "a:1", incarnation: 1, status: .alive,
                    meta: MemberMeta(region: "r", api: "p", role: .witness)))
        ])
        var bytes = packet.encode()
        #expect(try Packet.decode(bytes) == packet)
        let at = try #require(bytes.firstRange(of: Array("witness".utf8)))
        bytes.replaceSubrange(at, with: Array("admiral".utf8))
        #expect(code { try Packet.decode(bytes) } == TandemError.Code.malformed.name)
    }

    @Test func tooManyMessagesAreRejected() throws {
        let ok = Packet(Array(repeating: .nack(seq: 1), count: Packet.maxMessages))
        #expect(try Packet.decode(ok.encode()) == ok)
        let tooMany = Packet(Array(repeating: .nack(seq: 1), count: Packet.maxMessages + 1)).encode()
        #expect(tooMany.count <= Packet.maxSize)
        #expect(code { try Packet.decode(tooMany) } == TandemError.Code.tooLarge.name)
    }

    @Test func invalidFieldValuesAreRejected() {
        // ack with a forwarded flag of 2.
        var bytes = Packet([.ack(seq: 1, forwarded: true, coordinate: nil)]).encode()
        bytes[9] = 2
        #expect(throws: TandemError.self) { try Packet.decode(bytes) }
        // alive with an empty name.
        bytes = Packet([
            .alive(
                MemberState(
                    name: "", address: "x", incarnation: 1, status: .alive,
                    meta: MemberMeta(region: "", api: "")))
        ]).encode()
        #expect(throws: TandemError.self) { try Packet.decode(bytes) }
        // A string that is not UTF-8.
        bytes = Packet([.ping(seq: 1, target: "ab")]).encode()
        bytes[bytes.count - 1] = 0xFF
        #expect(throws: TandemError.self) { try Packet.decode(bytes) }
        // Coordinates that are not finite or out of range.
        for bad in [Double.nan, .infinity, 1e7] {
            var c = Self.coordinate
            c.vector[0] = bad
            let m = SwimMessage.ack(seq: 1, forwarded: false, coordinate: c)
            #expect(throws: TandemError.self, "coordinate \(bad)") { try Packet.decode(Packet([m]).encode()) }
        }
        var negative = Self.coordinate
        negative.error = -1
        #expect(throws: TandemError.self) {
            try Packet.decode(Packet([.ack(seq: 1, forwarded: false, coordinate: negative)]).encode())
        }
    }

    @Test func randomBytesNeverTrap() {
        var rng = SeededGenerator(seed: 0xC0DEC)
        var decoded = 0
        for i in 0..<5000 {
            let length = Int(rng.next() % 1500)
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // Most of them get a valid header, so the message parser is what is exercised.
            if i % 4 != 0, bytes.count >= 2 {
                bytes[0] = Packet.magic
                bytes[1] = Packet.version
            }
            if let p = try? Packet.decode(bytes) {
                decoded += 1
                #expect(p.encode() == bytes, "a decoded packet re-encodes to its bytes (iteration \(i))")
            }
        }
        // Only the empty-bodied ones should ever decode; anything else would be suspiciously lax.
        #expect(decoded < 50)
    }

    @Test func mutatedPacketsNeverTrapAndDecodeCanonically() {
        var rng = SeededGenerator(seed: 7)
        let valid = Packet(Self.everyKind).encode()
        var decoded = 0
        for i in 0..<5000 {
            var bytes = valid
            let edits = 1 + Int(rng.next() % 4)
            for _ in 0..<edits {
                switch rng.next() % 4 {
                case 0: bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes[Int(rng.next() % UInt64(bytes.count))] ^= 1 << UInt8(rng.next() % 8)
                case 2: if bytes.count > 3 { bytes.removeSubrange(Int(rng.next() % UInt64(bytes.count))...) }
                default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(bytes.count)))
                }
                if bytes.isEmpty { bytes = [0] }
            }
            if let p = try? Packet.decode(bytes) {
                decoded += 1
                #expect(p.encode() == bytes, "iteration \(i)")
            }
        }
        #expect(decoded > 0, "some mutations (inside strings and numbers) still decode")
    }
}

@Suite struct PushPullCodecTests {
    static let message = PushPullMessage(
        join: true, senderName: "node-0",
        states: [
            MemberState(
                name: "node-0", address: "10.0.0.1:7946", incarnation: 3, status: .alive,
                meta: MemberMeta(region: "us-east-1", api: "10.0.0.1:8080")),
            MemberState(
                name: "node-1", address: "10.0.0.2:7946", incarnation: 0, status: .suspect,
                meta: MemberMeta(region: "eu-west-1", api: "10.0.0.2:8080", role: .witness)),
            MemberState(
                name: "node-2", address: "10.0.0.3:7946", incarnation: .max, status: .dead,
                meta: MemberMeta(region: "", api: "", role: .voter)),
            MemberState(
                name: "ñødé-3", address: "[fe80::1]:7946", incarnation: 9, status: .left,
                meta: MemberMeta(region: "ap-south-1", api: "x"))
        ])

    @Test func roundTrips() throws {
        #expect(try PushPullMessage.decode(Self.message.encode()) == Self.message)
        let empty = PushPullMessage(join: false, senderName: "", states: [])
        #expect(try PushPullMessage.decode(empty.encode()) == empty)
        // Every status survives.
        #expect(Set(try PushPullMessage.decode(Self.message.encode()).states.map(\.status)) == Set(MemberStatus.allCases))
    }

    @Test func largeViewRoundTrips() throws {
        let states = (0..<2000).map { i in
            MemberState(
                name: "member-\(i)", address: "10.\(i / 65536).\(i / 256 % 256).\(i % 256):7946",
                incarnation: UInt64(i), status: MemberStatus(rawValue: UInt8(i % 4))!,
                meta: MemberMeta(region: "region-\(i % 5)", api: "api-\(i)"))
        }
        let m = PushPullMessage(join: false, senderName: "member-0", states: states)
        #expect(try PushPullMessage.decode(m.encode()) == m)
    }

    @Test func everyTruncationThrows() {
        let bytes = Self.message.encode()
        for cut in 0..<bytes.count {
            #expect(throws: TandemError.self, "cut at \(cut) of \(bytes.count)") { try PushPullMessage.decode(Array(bytes.prefix(cut))) }
        }
        #expect(throws: TandemError.self) { try PushPullMessage.decode(bytes + [0]) }
    }

    @Test func badHeaderFieldsAreRejected() {
        var bytes = Self.message.encode()
        bytes[0] = PushPullMessage.version &+ 1
        #expect(code { try PushPullMessage.decode(bytes) } == TandemError.Code.unsupportedVersion.name)
        bytes = Self.message.encode()
        bytes[1] = 7  // join flag
        #expect(throws: TandemError.self) { try PushPullMessage.decode(bytes) }
        // A status byte that names no status.
        bytes = Self.message.encode()
        let firstStatus = 2 + 1 + "node-0".utf8.count + 2
        #expect(bytes[firstStatus] == MemberStatus.alive.rawValue)
        bytes[firstStatus] = 4
        #expect(throws: TandemError.self) { try PushPullMessage.decode(bytes) }
    }

    @Test func countsAreCheckedBeforeAllocating() {
        // A count past the limit, and a count that cannot fit in what is left.
        var w = ByteWriter()
        w.u8(PushPullMessage.version)
        w.bool(false)
        w.shortString("x")
        w.u16(UInt16(PushPullMessage.maxMembers + 1))
        #expect(code { try PushPullMessage.decode(w.bytes + Array(repeating: 0, count: 100)) } == TandemError.Code.tooLarge.name)
        var v = ByteWriter()
        v.u8(PushPullMessage.version)
        v.bool(false)
        v.shortString("x")
        v.u16(5000)
        #expect(code { try PushPullMessage.decode(v.bytes + Array(repeating: 0, count: 100)) } == TandemError.Code.malformed.name)
    }

    @Test func randomAndMutatedBytesNeverTrap() {
        var rng = SeededGenerator(seed: 0xBEEF)
        let valid = Self.message.encode()
        for i in 0..<4000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int(rng.next() % 400)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if !bytes.isEmpty { bytes[0] = PushPullMessage.version }
            } else {
                bytes = valid
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            if let m = try? PushPullMessage.decode(bytes) {
                #expect(m.encode() == bytes, "iteration \(i)")
            }
        }
    }
}

/// The error code a throwing call throws, or nil if it does not throw.
func code<T>(_ body: () throws -> T) -> String? {
    do {
        _ = try body()
        return nil
    } catch let error as TandemError {
        return error.code.name
    } catch {
        return "not a TandemError: \(error)"
    }
}
