@testable import GlobalTable
import TandemCore
import Testing

@Suite struct ItemCodecTests {
    @Test func roundTripIsExactAndCanonical() throws {
        for seed in UInt64(1)...200 {
            let h = MergeLawTests.randomHistory(seed: seed)
            for state in h.finals + h.deltas.prefix(5) {
                let bytes = ItemCodec.encode(state)
                let decoded = try ItemCodec.decode(bytes)
                #expect(decoded == state, "seed \(seed)")
                #expect(ItemCodec.encode(decoded) == bytes, "seed \(seed): encoding not canonical")
            }
        }
    }

    @Test func everyValueTypeRoundTrips() throws {
        let value: AttributeValue = .map([
            "s": .string("héllo"), "n": .number(DecimalNumber("-12.5")!), "b": .binary([0, 255]),
            "t": .bool(true), "z": .null, "l": .list([.string("a"), .list([.null])]),
            "ss": .stringSet(["a", "b"]), "ns": .numberSet([DecimalNumber(1), DecimalNumber(2)]), "bs": .binarySet([[1], [2, 3]])
        ])
        var s = ItemState()
        _ = s.put(["v": value], at: HLC(physicalMs: 9, logical: 1, node: 3))
        #expect(try ItemCodec.decode(ItemCodec.encode(s)) == s)
    }

    @Test func truncatedAndRandomInputThrowsAndNeverTraps() {
        let h = MergeLawTests.randomHistory(seed: 77)
        let bytes = ItemCodec.encode(h.finals[0])
        for cut in 0..<bytes.count {
            #expect(throws: TandemError.self) { try ItemCodec.decode(Array(bytes.prefix(cut))) }
        }
        var rng = SeededGenerator(seed: 5)
        for _ in 0..<3000 {
            var mutated = bytes
            for _ in 0..<Int(rng.next() % 4 + 1) {
                mutated[Int(rng.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            if let decoded = try? ItemCodec.decode(mutated) { _ = ItemCodec.encode(decoded) }
            let random = (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? ItemCodec.decode(random)
        }
    }

    @Test func deeplyNestedValuesAreRefused() {
        var v: AttributeValue = .null
        for _ in 0..<40 { v = .list([v]) }
        var s = ItemState()
        _ = s.put(["deep": v], at: HLC(physicalMs: 1, logical: 0, node: 1))
        #expect(throws: TandemError.self) { try ItemCodec.decode(ItemCodec.encode(s)) }
    }
}
