import GlobalTable
import TandemCore
import Testing

/// A store sorted by bytes walks keys in `ItemKey` order only if the ordered form keeps it.
@Suite struct OrderedKeyTests {
    func random(_ rng: inout SeededGenerator) -> KeyValue {
        switch rng.next() % 3 {
        case 0:
            // Short strings over an alphabet with 0x00, 0x01 and 0xFF-led UTF-8: escapes and prefixes.
            let alphabet: [String] = ["\u{0}", "\u{1}", "a", "b", "é", "\u{FFFF}", "z"]
            return .string((0..<(1 + Int(rng.next() % 4))).map { _ in alphabet[Int(rng.next() % 7)] }.joined())
        case 1:
            let digits = (0..<(1 + Int(rng.next() % 5))).map { _ in String(rng.next() % 10) }.joined()
            let text = (rng.next() % 2 == 0 ? "-" : "") + digits + "E" + String(Int(rng.next() % 9) - 4)
            return .number(DecimalNumber(text)!)
        default:
            return .binary((0..<(1 + Int(rng.next() % 4))).map { _ in [0, 1, 0x7F, 0xFF][Int(rng.next() % 4)] })
        }
    }

    @Test func bytesOrderAsKeysDoAndRoundTrip() throws {
        var rng = SeededGenerator(seed: 11)
        var keys: [ItemKey] = []
        for _ in 0..<3_000 {
            let sort: KeyValue? = rng.next() % 4 == 0 ? nil : random(&rng)
            keys.append(ItemKey(partition: random(&rng), sort: sort))
        }
        for k in keys { #expect(try ItemKey(ordered: k.ordered) == k) }
        for _ in 0..<20_000 {
            let a = keys[Int(rng.next() % UInt64(keys.count))], b = keys[Int(rng.next() % UInt64(keys.count))]
            #expect((a < b) == a.ordered.lexicographicallyPrecedes(b.ordered), "\(a) vs \(b)")
        }
        // A partition's keys are one range: each starts with the partition's own bytes.
        for k in keys where k.sort != nil { #expect(k.ordered.starts(with: ItemKey(partition: k.partition).ordered)) }
    }

    @Test func numbersOrderAcrossSignsAndExponents() {
        let texts = ["-1E10", "-123", "-12.3", "-12", "-1", "-0.5", "-1E-10", "0", "1E-10", "0.5", "1", "12", "12.3", "123", "1E10"]
        let keys = texts.map { ItemKey(partition: .number(DecimalNumber($0)!)) }
        for (a, b) in zip(keys, keys.dropFirst()) {
            #expect(a < b)
            #expect(a.ordered.lexicographicallyPrecedes(b.ordered), "\(a) before \(b)")
        }
    }

    @Test func malformedBytesThrow() {
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<5_000 {
            let bytes = (0..<Int(rng.next() % 12)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? ItemKey(ordered: bytes)  // must not trap
        }
        #expect(throws: TandemError.self) { try ItemKey(ordered: [0x10, 0x61]) }
    }
}
