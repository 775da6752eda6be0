import TandemCore

/// The gossip protocol's messages. Several ride in one UDP datagram (a `Packet`): a control
/// message (ping, ack, ping-req, nack) plus as many membership updates as fit.
public enum SwimMessage: Hashable, Sendable {
    /// "Are you `target`?" — naming the target stops a new process on a reused address from
    /// answering for the old one.
    case ping(seq: UInt32, target: String)
    /// The answer to a ping. `forwarded` marks an ack relayed by a ping-req helper (its timing is
    /// not a round trip to the target, so it feeds no RTT sample).
    case ack(seq: UInt32, forwarded: Bool, coordinate: VivaldiCoordinate?)
    /// Lifeguard: a helper tells the requester it is alive but got no ack from the target.
    case nack(seq: UInt32)
    /// SWIM 3.1 indirect probe: "please ping `target` for me".
    case pingReq(seq: UInt32, target: String, targetAddress: String)
    case alive(MemberState)
    case suspect(name: String, incarnation: UInt64, from: String)
    case dead(name: String, incarnation: UInt64, from: String)
    /// A member leaving gracefully announces itself as left.
    case leave(name: String, incarnation: UInt64)

    enum Kind: UInt8 {
        case ping = 1, ack, nack, pingReq, alive, suspect, dead, leave
    }

    /// The member this message updates, when it is a membership update.
    public var subject: String? {
        switch self {
        case .alive(let s): s.name
        case .suspect(let n, _, _), .dead(let n, _, _), .leave(let n, _): n
        case .ping, .ack, .nack, .pingReq: nil
        }
    }
}

/// One datagram: `magic, version, then [kind u8, length u16, body]*`.
public struct Packet: Hashable, Sendable {
    public static let magic: UInt8 = 0xD7
    /// 2: a member state carries `returned`.
    public static let version: UInt8 = 2
    /// A datagram on the wire fits any path's MTU with room for IP/UDP headers.
    public static let maxDatagram = 1400
    /// Room left for the AEAD envelope a keyring adds (key ID 4, nonce 24, tag 16, timestamp 8).
    public static let envelopeReserve = 52
    /// The largest packet, before sealing.
    public static let maxSize = maxDatagram - envelopeReserve
    public static let headerSize = 2
    /// Limits on what a decoder accepts, whatever the datagram says.
    public static let maxMessages = 128

    public var messages: [SwimMessage]

    public init(_ messages: [SwimMessage]) { self.messages = messages }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 512)
        w.u8(Packet.magic)
        w.u8(Packet.version)
        for m in messages { Packet.append(m, to: &w) }
        return w.bytes
    }

    /// The encoded size of one message inside a packet (kind + length + body).
    public static func encodedSize(_ m: SwimMessage) -> Int {
        var w = ByteWriter(capacity: 96)
        append(m, to: &w)
        return w.count
    }

    static func append(_ m: SwimMessage, to w: inout ByteWriter) {
        let kind: SwimMessage.Kind
        switch m {
        case .ping: kind = .ping
        case .ack: kind = .ack
        case .nack: kind = .nack
        case .pingReq: kind = .pingReq
        case .alive: kind = .alive
        case .suspect: kind = .suspect
        case .dead: kind = .dead
        case .leave: kind = .leave
        }
        w.u8(kind.rawValue)
        let lengthAt = w.count
        w.u16(0)
        switch m {
        case .ping(let seq, let target):
            w.u32(seq)
            w.shortString(target)
        case .ack(let seq, let forwarded, let coordinate):
            w.u32(seq)
            w.bool(forwarded)
            if let c = coordinate {
                w.bool(true)
                c.encode(to: &w)
            } else {
                w.bool(false)
            }
        case .nack(let seq):
            w.u32(seq)
        case .pingReq(let seq, let target, let address):
            w.u32(seq)
            w.shortString(target)
            w.shortString(address)
        case .alive(let s):
            encodeState(s, to: &w)
        case .suspect(let name, let inc, let from), .dead(let name, let inc, let from):
            w.shortString(name)
            w.u64(inc)
            w.shortString(from)
        case .leave(let name, let inc):
            w.shortString(name)
            w.u64(inc)
        }
        w.patchU16(UInt16(w.count - lengthAt - 2), at: lengthAt)
    }

    /// Decodes a datagram. Any violation throws; nothing here traps or allocates beyond the
    /// datagram's own size.
    public static func decode(_ bytes: [UInt8]) throws(TandemError) -> Packet {
        guard bytes.count <= maxSize else {
            throw TandemError(.tooLarge, "datagram of \(bytes.count) bytes exceeds \(maxSize)")
        }
        var r = ByteReader(bytes)
        guard try r.u8() == magic else { throw TandemError(.malformed, "not a tandem gossip packet") }
        let version = try r.u8()
        guard version == Packet.version else {
            throw TandemError(.unsupportedVersion, "gossip version \(version), this node speaks \(Packet.version)")
        }
        var messages: [SwimMessage] = []
        while !r.isAtEnd {
            guard messages.count < maxMessages else { throw TandemError(.tooLarge, "too many messages in packet") }
            let rawKind = try r.u8()
            let length = Int(try r.u16())
            var body = try r.sub(length)
            guard let kind = SwimMessage.Kind(rawValue: rawKind) else {
                throw TandemError(.malformed, "unknown gossip message kind \(rawKind)")
            }
            let m: SwimMessage
            switch kind {
            case .ping: m = .ping(seq: try body.u32(), target: try body.shortString())
            case .ack:
                let seq = try body.u32()
                let forwarded = try body.bool()
                let coordinate = try body.bool() ? try VivaldiCoordinate.decode(from: &body) : nil
                m = .ack(seq: seq, forwarded: forwarded, coordinate: coordinate)
            case .nack: m = .nack(seq: try body.u32())
            case .pingReq:
                m = .pingReq(seq: try body.u32(), target: try body.shortString(), targetAddress: try body.shortString())
            case .alive: m = .alive(try decodeState(from: &body, status: .alive))
            case .suspect: m = .suspect(name: try body.shortString(), incarnation: try body.u64(), from: try body.shortString())
            case .dead: m = .dead(name: try body.shortString(), incarnation: try body.u64(), from: try body.shortString())
            case .leave: m = .leave(name: try body.shortString(), incarnation: try body.u64())
            }
            guard body.isAtEnd else { throw TandemError(.malformed, "trailing bytes in \(kind) message") }
            messages.append(m)
        }
        return Packet(messages)
    }

    static func encodeState(_ s: MemberState, to w: inout ByteWriter) {
        w.shortString(s.name)
        w.shortString(s.address)
        w.u64(s.incarnation)
        w.shortString(s.meta.region)
        w.shortString(s.meta.api)
        w.shortString(s.meta.role.rawValue)
        w.u64(s.meta.returned)
    }

    static func decodeState(from r: inout ByteReader, status: MemberStatus) throws(TandemError) -> MemberState {
        let name = try r.shortString()
        guard !name.isEmpty else { throw TandemError(.malformed, "empty member name") }
        let address = try r.shortString()
        let inc = try r.u64()
        let region = try r.shortString()
        let api = try r.shortString()
        let roleName = try r.shortString()
        guard let role = NodeRole(rawValue: roleName) else { throw TandemError(.malformed, "unknown member role '\(roleName)'") }
        let meta = MemberMeta(region: region, api: api, role: role, returned: try r.u64())
        return MemberState(name: name, address: address, incarnation: inc, status: status, meta: meta)
    }
}

/// The push-pull exchange (over TCP): each side sends its whole view; the joiner flags `join`.
public struct PushPullMessage: Hashable, Sendable {
    /// 2: a member state carries `returned`.
    public static let version: UInt8 = 2
    public static let maxMembers = 10_000

    public var join: Bool
    public var senderName: String
    public var states: [MemberState]

    public init(join: Bool, senderName: String, states: [MemberState]) {
        self.join = join
        self.senderName = senderName
        self.states = states
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 64 + states.count * 64)
        w.u8(PushPullMessage.version)
        w.bool(join)
        w.shortString(senderName)
        w.u16(UInt16(min(states.count, PushPullMessage.maxMembers)))
        for s in states.prefix(PushPullMessage.maxMembers) {
            w.u8(s.status.rawValue)
            Packet.encodeState(s, to: &w)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(TandemError) -> PushPullMessage {
        var r = ByteReader(bytes)
        let version = try r.u8()
        guard version == PushPullMessage.version else {
            throw TandemError(.unsupportedVersion, "push-pull version \(version), this node speaks \(PushPullMessage.version)")
        }
        let join = try r.bool()
        let sender = try r.shortString()
        let n = try r.count16(limit: maxMembers, minElementSize: 14)
        var states: [MemberState] = []
        states.reserveCapacity(n)
        for _ in 0..<n {
            let raw = try r.u8()
            guard let status = MemberStatus(rawValue: raw) else { throw TandemError(.malformed, "bad member status \(raw)") }
            states.append(try Packet.decodeState(from: &r, status: status))
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes in push-pull") }
        return PushPullMessage(join: join, senderName: sender, states: states)
    }
}
