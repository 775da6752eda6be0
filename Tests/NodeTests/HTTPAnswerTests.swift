@testable import Storage
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
}
