import Foundation
@testable import Storage
import StreamLog
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

// ==== ------------------------------------------------------------------------------------
// MARK: Benchmark

extension SegmentLog {
    /// Append + sync throughput and read speed, as lines of text. No test asserts on it. Run:
    /// `TANDEM_BENCH=1 .build/…/TandemPackageTests.xctest --testing-library swift-testing
    /// --filter SegmentLogTests/benchmark` (a release build with `-enable-testing` for real figures).
    static func benchmark(directory: String, records: Int = 100_000, recordBytes: Int = 256, batch: Int = 256) throws -> [String] {
        var lines: [String] = []
        let payload = (0..<recordBytes).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        func entries(from first: UInt64, _ n: Int) -> [LogEntry] {
            (0..<n).map { LogEntry(index: first + UInt64($0), term: 1, timestamp: first + UInt64($0), data: payload) }
        }
        func seconds(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        func rate(_ n: Int, _ s: Double) -> String { String(format: "%.0f/s", Double(n) / s) }
        func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
        let mib = Double(records * (recordBytes + headerBytes)) / 1048576

        // 1. One thread: append a batch, fsync, repeat (the latency-bound case).
        try? FileManager.default.removeItem(atPath: directory)
        var log = try SegmentLog(directory: directory)
        let serial = try seconds {
            var next: UInt64 = 1
            while next <= UInt64(records) {
                let n = min(batch, records - Int(next) + 1)
                try log.append(entries(from: next, n))
                try log.sync()
                next += UInt64(n)
            }
        }
        lines.append(
            "append+sync, one thread, \(records) × \(recordBytes) B, sync per \(batch): \(fixed(serial, 2)) s, "
                + "\(rate(records, serial)) records, \(fixed(mib / serial, 1)) MiB/s, \(rate(records / batch, serial)) syncs"
        )

        // 2. Group commit: a second thread syncs in a loop while the first appends.
        try? FileManager.default.removeItem(atPath: directory)
        log = try SegmentLog(directory: directory)
        let syncer = SyncThread(log)
        let grouped = try seconds {
            syncer.start()
            var next: UInt64 = 1
            while next <= UInt64(records) {
                let n = min(batch, records - Int(next) + 1)
                try log.append(entries(from: next, n))
                next += UInt64(n)
            }
            while log.durableIndex < UInt64(records) { try? log.sync() }
        }
        let syncs = syncer.stop()
        lines.append(
            "append with concurrent sync thread: \(fixed(grouped, 2)) s, \(rate(records, grouped)) records, "
                + "\(fixed(mib / grouped, 1)) MiB/s, \(syncs) syncs"
        )

        // 3. Reads: everything from the files (fresh open, so the cache is cold), then the
        // tail with and without the cache.
        let cold = try SegmentLog(directory: directory, settings: Settings(tailCacheBytesMax: 0))
        let scanAll = try seconds {
            var next: UInt64 = 1
            while next <= UInt64(records) {
                let got = try cold.readEntries(from: next, to: .max, maxBytes: 1 << 20)
                next += UInt64(got.count)
            }
        }
        lines.append("sequential read from files, 1 MiB per call: \(rate(records, scanAll)) records")
        let tail = min(10_000, records)
        let tailFrom = UInt64(records - tail + 1)
        let reads = 2_000
        var rng = SeededGenerator(seed: 1)
        let fromFiles = try seconds {
            for _ in 0..<reads { _ = try cold.readEntries(from: tailFrom + rng.next() % UInt64(tail), to: .max, maxBytes: 64 << 10) }
        }
        let fromCache = try seconds {
            for _ in 0..<reads { _ = try log.readEntries(from: tailFrom + rng.next() % UInt64(tail), to: .max, maxBytes: 64 << 10) }
        }
        lines.append(
            "follower-style reads (64 KiB from a random index in the last \(tail)): "
                + "files \(rate(reads, fromFiles)), tail cache \(rate(reads, fromCache))"
        )
        let terms = 20_000
        let termLookups = try seconds {
            for _ in 0..<terms { _ = try cold.term(at: 1 + rng.next() % UInt64(records)) }
        }
        lines.append("term(at:) at random indexes from files: \(rate(terms, termLookups))")
        try? FileManager.default.removeItem(atPath: directory)
        return lines
    }
}

/// A thread that calls `sync()` back to back until stopped (the benchmark's group commit).
final class SyncThread: @unchecked Sendable {
    private let lock = NSLock()
    private var stopping = false
    private var syncs = 0
    private let finished = DispatchSemaphore(value: 0)
    private let log: SegmentLog

    init(_ log: SegmentLog) { self.log = log }

    func start() {
        Thread.detachNewThread { [self] in
            while !lock.withLock({ stopping }) {
                // Like the shell: start a sync only when something was appended since the last.
                if log.durableIndex == log.lastIndex {
                    usleep(50)
                    continue
                }
                try? log.sync()
                lock.withLock { syncs += 1 }
            }
            finished.signal()
        }
    }

    /// Stop the thread and return how many syncs it ran.
    func stop() -> Int {
        lock.withLock { stopping = true }
        finished.wait()
        return lock.withLock { syncs }
    }
}
