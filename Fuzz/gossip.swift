// libFuzzer harness: the gossip packet and push-pull decoders (Membership). Any input must
// decode or throw; a trap is a bug. Built by scripts/fuzz.
import Membership
import TandemCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let packet = try? Packet.decode(bytes) {
        // What decodes must re-encode to something that decodes to the same packet.
        precondition((try? Packet.decode(packet.encode())) == packet, "packet round trip")
    }
    _ = try? PushPullMessage.decode(bytes)
    return 0
}
