import Foundation
import TandemCore
import Transport

/// Batch puts that count records, not requests: a batch answered 200 may still report some of
/// its records failed (`failedRecordCount`, Kinesis `FailedRecordCount`), and those were not
/// written. `connections` threads, each on a kept-alive connection, send one batch at a time
/// until `seconds` pass. (The load generator sees only statuses, so it cannot tell.)
struct BatchLoad {
    struct Result {
        var batches = 0
        var records = 0
        /// Records a 200 answer reported as failed.
        var failedRecords = 0
        /// Requests that failed, timed out or were not answered 200, or whose answer did not
        /// say how many records failed.
        var errors = 0
        var seconds = 0.0
        var latenciesMs: [Double] = []
        var recordsPerSecond: Double { Double(records) / max(seconds, 1e-9) }
        func percentile(_ p: Double) -> Double {
            guard !latenciesMs.isEmpty else { return .nan }
            let s = latenciesMs.sorted()
            return s[min(s.count - 1, Int(Double(s.count) * p))]
        }
    }

    var target: String
    var path: String
    var headers: [(String, String)] = []
    var body: [UInt8]
    var recordsPerBatch: Int
    /// The answer's count of failed records ("failedRecordCount" or "FailedRecordCount").
    var failedKey: String

    func run(connections: Int, seconds: Int) -> Result {
        final class Total: @unchecked Sendable {
            let lock = NSLock()
            var result = Result()
        }
        let total = Total()
        let done = DispatchSemaphore(value: 0)
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(Int64(seconds))
        for _ in 0..<connections {
            Thread { [self] in
                defer { done.signal() }
                var mine = Result()
                let session = try? HTTPSession(target)
                while clock.now < end {
                    let t0 = clock.now
                    guard let session, let r = try? session.request("POST", path, body: body, headers: headers), r.status == 200,
                        case .number(let n)? = (try? JSON.parse(r.body))?[failedKey], let failed = Int(n)
                    else {
                        mine.errors += 1
                        continue
                    }
                    mine.latenciesMs.append((clock.now - t0).seconds * 1e3)
                    mine.batches += 1
                    mine.records += recordsPerBatch - failed
                    mine.failedRecords += failed
                }
                total.lock.withLock {
                    total.result.batches += mine.batches
                    total.result.records += mine.records
                    total.result.failedRecords += mine.failedRecords
                    total.result.errors += mine.errors
                    total.result.latenciesMs += mine.latenciesMs
                }
            }.start()
        }
        for _ in 0..<connections { done.wait() }
        var result = total.lock.withLock { total.result }
        result.seconds = (clock.now - start).seconds
        return result
    }
}
