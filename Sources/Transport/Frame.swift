import TandemCore

/// One frame on a peer TCP link:
/// `length u32 | version u8 | kind u8 | requestID u32 | payload | crc32c u32`,
/// where `length` counts everything after itself and the CRC covers version through payload.
/// A request carries a non-zero `requestID`; its response carries the same ID and the
/// `responseBit` on `kind`.
public struct Frame: Equatable, Sendable {
    public static let version: UInt8 = 1
    public static let responseBit: UInt8 = 0x80
    public static let overhead = 4 + 1 + 1 + 4 + 4

    public var kind: UInt8
    public var requestID: UInt32
    public var payload: [UInt8]

    public init(kind: UInt8, requestID: UInt32, payload: [UInt8]) {
        self.kind = kind
        self.requestID = requestID
        self.payload = payload
    }

    public var isResponse: Bool { kind & Frame.responseBit != 0 }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: payload.count + Frame.overhead)
        w.u32(UInt32(payload.count + Frame.overhead - 4))
        w.u8(Frame.version)
        w.u8(kind)
        w.u32(requestID)
        w.raw(payload)
        w.u32(CRC32C.checksum(w.bytes[4...]))
        return w.bytes
    }
}

/// Frame kinds carried on peer links.
public enum FrameKind {
    public static let pushPull: UInt8 = 1
}

/// Replay protection for sealed peer frames: one per TCP connection, shared by both ends' reads
/// and writes on it.
///
/// Inside the seal every frame starts with the connection's session ID and its sequence number
/// in that direction: `session (16) | sequence u64 | version | kind | requestID | payload | crc32c`.
/// The side that connects names the session: its wall time in ms (8 bytes) and 8 random bytes.
/// The side that accepts learns it from the first frame, which must be sequence 1 of a session
/// started within the replay window and never seen before (`ReplayGuard`, as for datagrams).
/// After that each direction's sequence must go up by exactly one, under that session. So a
/// recorded connection played to a node again is refused at its first frame (seen, or too old),
/// and a frame repeated, dropped, reordered or moved from another connection ends the
/// connection (TCP never does any of these by itself).
public final class FrameSession {
    public static let idSize = 16
    /// Bytes the session header adds inside a seal.
    public static let headerSize = idSize + 8

    public private(set) var id: [UInt8]?
    private var sent: UInt64 = 0
    private var received: UInt64 = 0
    /// Sessions this node accepted recently (shared by its inbound connections); nil on the
    /// connecting side, which checks against its own ID instead.
    private let accepted: FrameSessionGuard?

    /// The connecting side: a new session named by the time and 8 random bytes.
    public init(connectingAtMs nowMs: UInt64) {
        var w = ByteWriter(capacity: FrameSession.idSize)
        w.u64(nowMs)
        w.raw((0..<8).map { _ in UInt8.random(in: 0...255) })
        id = w.bytes
        accepted = nil
    }

    /// The accepting side: the session comes with the first frame, checked against `accepted`.
    public init(accepting accepted: FrameSessionGuard) {
        id = nil
        self.accepted = accepted
    }

    /// The wire form of a plain frame (`Frame.encode()`) on this connection: its length, then
    /// the seal around session, sequence and frame. Nil on an accepting side that has not heard
    /// its peer yet (it only ever answers).
    public func seal(_ plain: [UInt8], keyring: Keyring) -> [UInt8]? {
        guard let id else { return nil }
        sent += 1
        var inner = ByteWriter(capacity: plain.count - 4 + FrameSession.headerSize)
        inner.raw(id)
        inner.u64(sent)
        inner.raw(plain[4...])
        let sealed = keyring.seal(inner.bytes, purpose: .frame)
        var w = ByteWriter(capacity: sealed.count + 4)
        w.u32(UInt32(sealed.count))
        w.raw(sealed)
        return w.bytes
    }

    /// The frame body after the session header, or nil when the header is not the next one of
    /// this session (a replay).
    func admit(_ opened: [UInt8], nowMs: UInt64) -> ArraySlice<UInt8>? {
        guard opened.count >= FrameSession.headerSize else { return nil }
        let sid = Array(opened[0..<FrameSession.idSize])
        var r = ByteReader(opened, from: FrameSession.idSize)
        guard let sequence = try? r.u64() else { return nil }
        if let id {
            guard sid == id, sequence == received + 1 else { return nil }
        } else {
            var started = ByteReader(sid)
            guard sequence == 1, let accepted, let startedMs = try? started.u64(),
                accepted.admit(sid, startedMs: startedMs, nowMs: nowMs)
            else { return nil }
            id = sid
        }
        received = sequence
        return opened[FrameSession.headerSize...]
    }
}

/// The sessions a node has accepted within the replay window (`ReplayGuard`: started within
/// 30 s of now, either way, and not seen before).
public final class FrameSessionGuard {
    private var seen: ReplayGuard

    public init(windowMs: UInt64 = 30_000, capacity: Int = 100_000) {
        seen = ReplayGuard(windowMs: windowMs, capacity: capacity)
    }

    func admit(_ session: [UInt8], startedMs: UInt64, nowMs: UInt64) -> Bool {
        seen.admit(nonce: session[...], sentMs: startedMs, nowMs: nowMs)
    }
}

/// Splits a byte stream into frames, checking every length against `maxFrameSize` before it
/// buffers anything, and every CRC. With a keyring, everything after the length is a seal
/// (`Keyring`) around the session header (`FrameSession`) and the plain frame; one that no
/// keyring key opens, or that is not the next frame of its session, is an error.
public struct FrameDecoder {
    public let maxFrameSize: Int
    public var keyring: Keyring?
    /// Where sealed frames are checked for replays (an accepting session of its own if none is given).
    public let session: FrameSession
    private var buffer: [UInt8] = []

    public init(maxFrameSize: Int, keyring: Keyring? = nil, session: FrameSession? = nil) {
        self.maxFrameSize = maxFrameSize
        self.keyring = keyring
        self.session = session ?? FrameSession(accepting: FrameSessionGuard())
    }

    public static let unauthenticated = TandemError.Code("unauthenticated", httpStatus: 401)
    public static let replayed = TandemError.Code("replayed", httpStatus: 401)

    /// `nowMs`: wall time, for the first frame of an accepted session.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, nowMs: UInt64 = 0) throws(TandemError) -> [Frame] {
        buffer.append(contentsOf: bytes)
        var frames: [Frame] = []
        var start = 0
        let sealOverhead = keyring == nil ? 0 : Keyring.overhead + FrameSession.headerSize
        while buffer.count - start >= 4 {
            var r = ByteReader(buffer, from: start)
            let length = Int(try r.u32())
            guard length <= maxFrameSize + sealOverhead else {
                throw TandemError(.tooLarge, "frame of \(length) bytes exceeds limit \(maxFrameSize)")
            }
            guard length >= Frame.overhead - 4 + sealOverhead else { throw TandemError(.malformed, "frame length \(length) too short") }
            guard buffer.count - start - 4 >= length else { break }
            let body = buffer[(start + 4)..<(start + 4 + length)]
            if let keyring {
                guard let opened = keyring.open(body, purpose: .frame) else {
                    throw TandemError(FrameDecoder.unauthenticated, "peer frame not sealed with a keyring key")
                }
                guard let plain = session.admit(opened, nowMs: nowMs) else {
                    throw TandemError(FrameDecoder.replayed, "peer frame replayed (not the next frame of a fresh session)")
                }
                frames.append(try FrameDecoder.parse(plain))
            } else {
                frames.append(try FrameDecoder.parse(body))
            }
            start += 4 + length
        }
        if start > 0 { buffer.removeFirst(start) }
        return frames
    }
    /// One frame after its length: `version | kind | requestID | payload | crc32c`.
    static func parse(_ body: ArraySlice<UInt8>) throws(TandemError) -> Frame {
        guard body.count >= Frame.overhead - 4 else { throw TandemError(.malformed, "frame of \(body.count) bytes too short") }
        var r = ByteReader(Array(body))
        let version = try r.u8()
        guard version == Frame.version else {
            throw TandemError(.unsupportedVersion, "peer frame version \(version), this node speaks \(Frame.version)")
        }
        let kind = try r.u8()
        let requestID = try r.u32()
        let end = body.startIndex + body.count - 4
        var crcReader = ByteReader(Array(body[end...]))
        guard try crcReader.u32() == CRC32C.checksum(body[body.startIndex..<end]) else {
            throw TandemError(.malformed, "peer frame checksum mismatch")
        }
        return Frame(kind: kind, requestID: requestID, payload: Array(body[(body.startIndex + 6)..<end]))
    }
}
