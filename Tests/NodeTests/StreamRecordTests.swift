@testable import Storage
import TandemCore
@testable import TandemNode
@testable import TandemTestKit
import Testing
@testable import Transport

/// The put path's shortcut for `{"key","data"}` bodies must encode exactly what the general
/// JSON path encodes, and leave every other shape (and every bad input) to that path.
@Suite struct StreamRecordTests {
    /// The general path: parse the tree, take key and data, encode.
    func general(_ body: String) -> [UInt8]? {
        guard let j = try? JSON.parse(Array(body.utf8)), let key = j["key"]?.stringValue,
            let data = j["data"]?.stringValue.flatMap({ Base64.decode($0) })
        else { return nil }
        return StreamRecord.encode(key: key, data: data)
    }

    @Test func simpleBodiesEncodeAsTheGeneralPathDoes() {
        var rng = SeededGenerator(seed: 7)
        for n in [0, 1, 2, 3, 50, 256, 1000] {
            let data = Base64.encode((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            for body in [
                #"{"key":"k","data":"\#(data)"}"#, #" { "data" : "\#(data)" ,"key":"agent-17é" } "#,
                "{\n\t\"key\": \"x\",\r\n \"data\": \"\(data)\"\n}"
            ] {
                let fast = StreamRecord.encodeSimpleBody(Array(body.utf8))
                #expect(fast != nil, "\(body)")
                #expect(fast?.record == general(body), "\(body)")
                #expect(fast?.key == (try? JSON.parse(Array(body.utf8)))?["key"]?.stringValue)
            }
        }
    }

    @Test func otherShapesAreLeftToTheJSONParser() {
        for body in [
            #"{"key":"a\"b","data":"eA=="}"#,  // an escape
            #"{"key":"k","data":"eA==","extra":1}"#,  // a third member
            #"{"key":"k"}"#, #"{"data":"eA=="}"#,  // one missing
            #"{"key":"k","key":"j"}"#,  // twice
            #"{"key":"","data":"eA=="}"#,  // empty key
            #"{"key":"k","data":"eA="}"#,  // bad base64
            #"{"key":"k","data":"eA=="} x"#,  // trailing bytes
            #"{"key":"k","data":"eA==""#, #"{"key":"k","data":1}"#, "", "[]",
            #"{"records":[{"key":"k","data":"eA=="}]}"#,
            "{\"key\":\"" + String(repeating: "k", count: 256) + "\",\"data\":\"eA==\"}"
        ] {
            #expect(StreamRecord.encodeSimpleBody(Array(body.utf8)) == nil, "\(body)")
        }
        #expect(StreamRecord.encodeSimpleBody([0x7B, 0x22, 0x6B, 0x65, 0x79, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x2C]) == nil)  // not UTF-8
    }

    @Test func sequenceNumbersAreTwentyDigits() {
        #expect(Sequence.format(0) == "00000000000000000000")
        #expect(Sequence.format(17) == "00000000000000000017")
        #expect(Sequence.format(UInt64.max) == "18446744073709551615")
    }
}
