import CSodium
import Foundation
import TandemCore

/// The cluster keyring: every gossip datagram and peer frame is sealed with libsodium's
/// XChaCha20-Poly1305 under the primary key, and opened with whichever keyring key it names.
///
/// Sealed form: `keyID u32 | nonce (24) | ciphertext | tag (16)`. The key ID (the first four
/// bytes of the key's BLAKE2b hash) picks the key without trial decryption and reveals nothing
/// about the key. The nonce is random: 24 bytes make collisions negligible, so no counter state
/// has to survive a restart. A one-byte purpose (datagram or frame) is authenticated as
/// associated data, so a captured datagram cannot be spliced into a TCP stream or back.
///
/// Datagrams also carry the sender's wall time inside the seal; `ReplayGuard` rejects one that
/// is older than its window or was already seen, so a captured packet replayed changes nothing.
/// Peer frames carry their connection's session and sequence instead (`FrameSession`).
public final class Keyring {
    public static let keySize = Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)  // 32
    public static let nonceSize = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)  // 24
    public static let tagSize = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)  // 16
    /// Bytes a seal adds: key ID, nonce, tag.
    public static let overhead = 4 + nonceSize + tagSize
    /// Bytes a sealed datagram adds to its packet (the seal plus the timestamp inside).
    public static let datagramOverhead = overhead + 8

    public enum Purpose: UInt8 { case datagram = 1, frame = 2 }

    public struct Key: Equatable {
        public let id: UInt32
        public let bytes: [UInt8]
        public var idHex: String { String(format: "%08x", id) }
        public var base64: String { Base64.encode(bytes) }

        public init(_ bytes: [UInt8]) throws {
            guard bytes.count == Keyring.keySize else {
                throw TandemError(.invalidArgument, "a cluster key must be \(Keyring.keySize) bytes, got \(bytes.count)")
            }
            self.bytes = bytes
            self.id = Keyring.keyID(bytes)
        }

        public init(base64 text: String) throws {
            guard let raw = Base64.decode(text.trimmingCharacters(in: .whitespaces)) else {
                throw TandemError(.invalidArgument, "a cluster key must be base64")
            }
            try self.init(raw)
        }
    }

    /// The first key is the primary (used to send); all are accepted.
    public private(set) var keys: [Key]
    public var primary: Key { keys[0] }

    public init(keys: [Key]) throws {
        Keyring.initSodium()
        guard !keys.isEmpty else { throw TandemError(.invalidArgument, "the keyring holds no key") }
        self.keys = keys
    }

    /// One base64 key per line, the first the primary; blank lines and `#` comments skipped.
    public static func parse(_ text: String) throws -> [Key] {
        var keys: [Key] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            let key = try Key(base64: t)
            if !keys.contains(key) { keys.append(key) }
        }
        guard !keys.isEmpty else { throw TandemError(.invalidArgument, "the keyring file holds no key") }
        return keys
    }

    public static func load(path: String) throws -> Keyring {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TandemError(.invalidArgument, "cannot read keyring \(path)")
        }
        return try Keyring(keys: parse(text))
    }

    /// The file form: primary first.
    public var text: String { keys.map { $0.base64 + "\n" }.joined() }

    /// A fresh random key, base64.
    public static func generate() -> String {
        initSodium()
        var k = [UInt8](repeating: 0, count: keySize)
        crypto_aead_xchacha20poly1305_ietf_keygen(&k)
        return Base64.encode(k)
    }

    static func keyID(_ key: [UInt8]) -> UInt32 {
        initSodium()
        var h = [UInt8](repeating: 0, count: 16)
        crypto_generichash(&h, h.count, key, UInt64(key.count), nil, 0)
        return UInt32(h[0]) << 24 | UInt32(h[1]) << 16 | UInt32(h[2]) << 8 | UInt32(h[3])
    }

    private static let sodiumReady: Bool = sodium_init() >= 0
    public static func initSodium() { precondition(sodiumReady, "libsodium failed to initialize") }

    // MARK: Rotation (install, use, remove), each refusing what would break the cluster.

    public func key(idHex: String) -> Key? { keys.first { $0.idHex == idHex.lowercased() } }

    /// Puts back an earlier state (a change that could not be persisted is undone).
    public func restore(_ previous: [Key]) { keys = previous }

    /// Adds a key (accepted from now on); true if it was new.
    @discardableResult
    public func install(_ key: Key) -> Bool {
        guard !keys.contains(key) else { return false }
        keys.append(key)
        return true
    }

    /// Makes an installed key the primary.
    public func use(_ key: Key) throws {
        guard let i = keys.firstIndex(of: key) else {
            throw TandemError(.notFound, "key \(key.idHex) is not installed; install it on every node first")
        }
        keys.insert(keys.remove(at: i), at: 0)
    }

    /// Removes a key that is not the primary.
    public func remove(_ key: Key) throws {
        guard let i = keys.firstIndex(of: key) else { throw TandemError(.notFound, "key \(key.idHex) is not installed") }
        guard i != 0 else {
            throw TandemError(TandemError.Code("conflict", httpStatus: 409), "key \(key.idHex) is the primary; use another key first")
        }
        keys.remove(at: i)
    }

    // MARK: Sealing

    public func seal(_ plaintext: [UInt8], purpose: Purpose) -> [UInt8] {
        let key = primary
        var out = [UInt8](repeating: 0, count: Keyring.overhead + plaintext.count)
        out[0] = UInt8(key.id >> 24); out[1] = UInt8(truncatingIfNeeded: key.id >> 16)
        out[2] = UInt8(truncatingIfNeeded: key.id >> 8); out[3] = UInt8(truncatingIfNeeded: key.id)
        out.withUnsafeMutableBufferPointer { o in
            let nonce = o.baseAddress! + 4
            randombytes_buf(nonce, Keyring.nonceSize)
            var ad = purpose.rawValue
            var written: UInt64 = 0
            _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
                nonce + Keyring.nonceSize, &written, plaintext, UInt64(plaintext.count), &ad, 1, nil, nonce, key.bytes)
        }
        return out
    }

    /// The plaintext, or nil when no keyring key made it or it was altered.
    public func open<C: Collection<UInt8>>(_ sealed: C, purpose: Purpose) -> [UInt8]? {
        let s = Array(sealed)
        guard s.count >= Keyring.overhead else { return nil }
        let id = UInt32(s[0]) << 24 | UInt32(s[1]) << 16 | UInt32(s[2]) << 8 | UInt32(s[3])
        guard let key = keys.first(where: { $0.id == id }) else { return nil }
        var plain = [UInt8](repeating: 0, count: s.count - Keyring.overhead)
        var ad = purpose.rawValue
        var length: UInt64 = 0
        let rc = s.withUnsafeBufferPointer { b in
            crypto_aead_xchacha20poly1305_ietf_decrypt(
                &plain, &length, nil, b.baseAddress! + 4 + Keyring.nonceSize, UInt64(s.count - 4 - Keyring.nonceSize),
                &ad, 1, b.baseAddress! + 4, key.bytes)
        }
        return rc == 0 ? plain : nil
    }

    /// The nonce of a sealed message (for the replay guard).
    static func nonce(of sealed: [UInt8]) -> ArraySlice<UInt8> { sealed[4..<(4 + nonceSize)] }

    // MARK: Datagrams: timestamp inside the seal

    public func sealDatagram(_ packet: [UInt8], nowMs: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: packet.count + 8)
        w.u64(nowMs)
        w.raw(packet)
        return seal(w.bytes, purpose: .datagram)
    }

    public enum DatagramVerdict: Equatable {
        case ok([UInt8])
        case unauthenticated  // no key of ours, or altered
        case replayed  // too old, from the future, or seen before
    }

    public func openDatagram(_ sealed: [UInt8], nowMs: UInt64, guard replay: inout ReplayGuard) -> DatagramVerdict {
        guard let plain = open(sealed, purpose: .datagram), plain.count >= 8 else { return .unauthenticated }
        var r = ByteReader(plain)
        let sentMs = (try? r.u64()) ?? 0
        guard replay.admit(nonce: Keyring.nonce(of: sealed), sentMs: sentMs, nowMs: nowMs) else { return .replayed }
        return .ok(Array(plain[8...]))
    }
}

/// Rejects datagrams sent longer than `windowMs` ago (or that far in the future: clocks must
/// agree within the window) and any nonce seen within the window. Memory is bounded: past
/// `capacity` entries the oldest are forgotten and `floorMs` rises to their send time, so
/// anything that old is refused even though its nonce is gone.
public struct ReplayGuard {
    public let windowMs: UInt64
    public let capacity: Int
    private var seen: Set<[UInt8]> = []
    private var order: [(nonce: [UInt8], sentMs: UInt64)] = []
    private var head = 0
    private var floorMs: UInt64 = 0

    public init(windowMs: UInt64 = 30_000, capacity: Int = 200_000) {
        self.windowMs = windowMs
        self.capacity = capacity
    }

    public var count: Int { seen.count }

    public mutating func admit(nonce: ArraySlice<UInt8>, sentMs: UInt64, nowMs: UInt64) -> Bool {
        prune(nowMs: nowMs)
        guard sentMs + windowMs >= nowMs, sentMs <= nowMs + windowMs, sentMs > floorMs || floorMs == 0 else { return false }
        let n = Array(nonce)
        guard seen.insert(n).inserted else { return false }
        order.append((n, sentMs))
        if seen.count > capacity {
            let oldest = order[head]
            head += 1
            seen.remove(oldest.nonce)
            floorMs = max(floorMs, oldest.sentMs)
        }
        return true
    }

    /// Forgets nonces whose packets would now be refused as too old anyway. Entries are in
    /// arrival order, which tracks send time closely; one sent early but arriving late stays a
    /// little longer, which is harmless.
    private mutating func prune(nowMs: UInt64) {
        while head < order.count, order[head].sentMs + windowMs < nowMs {
            seen.remove(order[head].nonce)
            head += 1
        }
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }
}
