import GlobalTable
import TandemCore
import Testing

@Suite struct JSONTests {
    @Test func parsesAndKeepsNumbersExact() throws {
        let text = #"{"a":[1,-2.5e3,true,null,"x\"y\u00e9\ud83d\ude00"],"big":123456789012345678901234567890123456.78}"#
        let j = try JSON.parse(Array(text.utf8))
        #expect(j["big"] == .number("123456789012345678901234567890123456.78"))
        #expect(j["a"] == .array([.number("1"), .number("-2.5e3"), .bool(true), .null, .string("x\"yé😀")]))
        #expect(try JSON.parse(Array(j.serialized.utf8)) == j)
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\":}", "01", "1.", "tru", "\"\\x\"", "\"\u{01}\"", "[1] 2", "{\"a\" 1}", "\"\\ud800\""])
    func rejectsMalformedInput(text: String) {
        #expect(throws: TandemError.self) { try JSON.parse(Array(text.utf8)) }
    }

    @Test func depthIsBounded() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: TandemError.self) { try JSON.parse(Array(deep.utf8)) }
        #expect((try? JSON.parse(Array((String(repeating: "[", count: 10) + String(repeating: "]", count: 10)).utf8))) != nil)
    }

    @Test func randomBytesNeverTrap() {
        var rng = SeededGenerator(seed: 11)
        let alphabet = Array(#"{}[]":,-+.eE0123456789truefalsn \"#.utf8)
        for _ in 0..<5000 {
            let bytes = (0..<Int(rng.next() % 40)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            _ = try? JSON.parse(bytes)
        }
    }

    @Test func base64RoundTrips() {
        var rng = SeededGenerator(seed: 2)
        for n in 0..<40 {
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("hello".utf8)) == "aGVsbG8=")
        #expect(Base64.decode("aGVsbG8") == nil)
        #expect(Base64.decode("a=GV") == nil)
        // RFC 4648 test vectors, and padding only at the end.
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, coded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == coded)
            #expect(Base64.decode(coded) == Array(plain.utf8))
        }
        for bad in ["Zg=a", "Z===", "====", "Zm9v====", "Zm9 ", "Zm9\u{0}", "Zm=v", "=m9v", "Zm9vé==="] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }

    /// Strings of every length around the 8-byte scanning step, with a special character
    /// (quote, backslash, control, non-ASCII) at every position, survive a round trip.
    @Test func stringsRoundTripWithSpecialsAtEveryPosition() throws {
        for n in 0..<20 {
            for special in ["\"", "\\", "\n", "\u{1}", "é", "😀", "x"] {
                for at in 0...n {
                    var chars = Array(repeating: "a", count: n)
                    chars.insert(special, at: at)
                    let text = chars.joined()
                    let encoded = JSON.array([.string(text)]).serialized
                    #expect(try JSON.parse(Array(encoded.utf8)) == .array([.string(text)]), "\(encoded)")
                }
            }
        }
    }

    @Test func jsonStringsWithAndWithoutEscapes() throws {
        #expect(
            try JSON.parse(Array(#"["plain", "a\"b", "tab\tend", "é", "\u00e9\ud83d\ude00", ""]"#.utf8))
                == .array([.string("plain"), .string("a\"b"), .string("tab\tend"), .string("é"), .string("é😀"), .string("")]))
        #expect(throws: TandemError.self) { try JSON.parse(Array("[\"a\u{1}b\"]".utf8)) }
        #expect(throws: TandemError.self) { try JSON.parse([0x22, 0xFF, 0xFE, 0x22]) }
        #expect(throws: TandemError.self) { try JSON.parse(Array(#""unterminated"#.utf8)) }
    }

    @Test func plainJSONMapsToDynamoDBTypesAndBack() throws {
        let text =
            #"{"agentId":"a-17","handled":4.20E1,"skills":{"$SS":["billing","voice"]},"blob":{"$B":"AAE="},"nested":{"x":[1,{"y":null}]},"ok":true}"#
        let value = try PlainJSON.value(try JSON.parse(Array(text.utf8)))
        guard case .map(let m) = value else { Issue.record("not a map"); return }
        #expect(m["handled"] == .number(DecimalNumber(42)))
        #expect(m["skills"] == .stringSet(["billing", "voice"]))
        #expect(m["blob"] == .binary([0, 1]))
        let back = PlainJSON.json(m)
        #expect(back["handled"] == .number("42"))
        #expect(try PlainJSON.value(back) == value)
        #expect(throws: TandemError.self) { try PlainJSON.value(.number("1e999")) }
        #expect(throws: TandemError.self) { try PlainJSON.value(.object([("$SS", .array([.number("1")]))])) }
    }
}
