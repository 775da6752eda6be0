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

/// Splits a byte stream into frames, checking every length against `maxFrameSize` before it
/// buffers anything, and every CRC. With a keyring, everything after the length is a seal
/// (`Keyring`) around the plain frame; one that no keyring key opens is an error.
public struct FrameDecoder {
    public let maxFrameSize: Int
    public var keyring: Keyring?
    private var buffer: [UInt8] = []

    public init(maxFrameSize: Int, keyring: Keyring? = nil) {
        self.maxFrameSize = maxFrameSize
        self.keyring = keyring
    }

    public static let unauthenticated = TandemError.Code("unauthenticated", httpStatus: 401)

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) throws(TandemError) -> [Frame] {
        buffer.append(contentsOf: bytes)
        var frames: [Frame] = []
        var start = 0
        let sealOverhead = keyring == nil ? 0 : Keyring.overhead
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
                guard let plain = keyring.open(body, purpose: .frame) else {
                    throw TandemError(FrameDecoder.unauthenticated, "peer frame not sealed with a keyring key")
                }
                frames.append(try FrameDecoder.parse(plain[...]))
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
