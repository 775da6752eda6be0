// libFuzzer harness: the peer frame decoder, plain and sealed with session checks (Frame.swift, Keyring.swift),
// fed the input in two chunks split at a point the input picks. Built by scripts/fuzz.
import TandemCore
@testable import Transport

nonisolated(unsafe) let ring = try! Keyring(keys: [try! Keyring.Key(Array(repeating: 7, count: 32))])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let split = Int(data[0]) % size
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    for keyring in [nil, ring] {
        // The accepting side (a fresh session) and the connecting side (a fixed one).
        for session in [FrameSession(accepting: FrameSessionGuard()), FrameSession(connectingAtMs: 1_000_000)] {
            var decoder = FrameDecoder(maxFrameSize: 1 << 16, keyring: keyring, session: session)
            let cut = min(split, bytes.count)
            _ = try? Array(bytes[..<cut]).withUnsafeBytes { try decoder.feed($0, nowMs: 1_000_000) }
            _ = try? Array(bytes[cut...]).withUnsafeBytes { try decoder.feed($0, nowMs: 1_000_000) }
        }
    }
    _ = ring.open(bytes, purpose: .frame)
    var replay = ReplayGuard(windowMs: 30_000, capacity: 64)
    _ = ring.openDatagram(bytes, nowMs: 1_000_000, guard: &replay)
    return 0
}
