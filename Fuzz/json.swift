// libFuzzer harness: JSON item decoding (TandemCore JSON parser → GlobalTable typed values →
// item patch → item codec round trip). Built by scripts/fuzz.
import GlobalTable
import TandemCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let json = try? JSON.parse(bytes) else {
        _ = try? ItemCodec.decode(bytes)  // the stored form gets the same bytes
        return 0
    }
    _ = try? PlainJSON.value(json)
    var state = ItemState()
    if let next = try? ItemPatch.apply(json, to: &state, keyNames: ["pk"], at: HLC(physicalMs: 1, logical: 0, node: 1)) {
        let encoded = ItemCodec.encode(next)
        precondition((try? ItemCodec.decode(encoded)) == next, "item codec round trip")
    }
    return 0
}
