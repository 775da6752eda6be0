import Foundation
@testable import Storage
import TandemCore
@testable import TandemNode
@testable import TandemTestKit
import Testing
@testable import Transport

/// Answers that ask the client to come back (503, 429) say when, whichever endpoint made them.
@Suite struct HTTPAnswerTests {
    @Test func comeBackLaterAnswersCarryRetryAfter() {
        for status in [503, 429] {
            let r = HTTPConnection.withRetryAfter(.error(status, "disk_failed", "x"))
            #expect(r.headers.filter { $0.0 == "Retry-After" }.map(\.1) == ["1"], "status \(status)")
            let bytes = String(decoding: r.encode(keepAlive: true), as: UTF8.self)
            #expect(bytes.contains("\r\nRetry-After: 1\r\n"))
        }
        var own = HTTPResponse.error(503, "overloaded", "x")
        own.headers.append(("retry-after", "5"))
        #expect(HTTPConnection.withRetryAfter(own).headers.filter { $0.0.lowercased() == "retry-after" }.map(\.1) == ["5"])
        for status in [200, 400, 404, 500, 507] {
            #expect(!HTTPConnection.withRetryAfter(.error(status, "x", "y")).headers.contains { $0.0 == "Retry-After" })
        }
    }

    /// The typed answers say what JSONSerialization said for the same values (numbers as it
    /// printed them: 1.0 → `1`), with object keys in sorted order.
    @Test func jsonAnswersSayWhatJSONSerializationSaid() throws {
        let keys = ["region-2", "region-10", "Edge-a", "edge-9", "b", "B", "_x", "a_b", "a-b", "aa", "127.0.0.9", "rttMs", ""]
        let doubles = [1.0, 0.5, 0.25, 1e-5, 1e20, 33.33, 0.3333, 66.67, 8.5, -0.0, 0, 123456.789, 1e16]
        let texts = ["a/b", "q\"uote", "back\\slash", "line\nbreak", "tab\t", "é😀"]
        var old: [String: Any] = [:]
        var new: [String: JSON] = [:]
        for (i, k) in keys.enumerated() {
            let d = doubles[i % doubles.count], t = texts[i % texts.count]
            old[k] = ["d": d, "i": i, "big": UInt64.max, "t": t, "b": i % 2 == 0, "l": [t, k]] as [String: Any]
            new[k] = ["d": JSON(d), "i": JSON(i), "big": JSON(UInt64.max), "t": JSON(t), "b": JSON(i % 2 == 0), "l": JSON([t, k])]
        }
        func sortedKeys(_ j: JSON) -> JSON {
            switch j {
            case .object(let m): .object(m.map { ($0.0, sortedKeys($0.1)) }.sorted { $0.0 < $1.0 })
            case .array(let a): .array(a.map(sortedKeys))
            default: j
            }
        }
        let want = try JSON.parse(Array(JSONSerialization.data(withJSONObject: old)))
        let got = HTTPResponse.json(200, JSON(new)).body
        #expect(got.last == 0x0A)
        let answer = try JSON.parse(Array(got.dropLast()))
        #expect(answer == sortedKeys(want))
        #expect(answer == sortedKeys(answer))
        #expect(HTTPResponse.json(200, ["nan": JSON(Double.nan)]).body == Array(#"{"nan":null}"#.utf8) + [0x0A])
    }
}
