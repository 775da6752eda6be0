import Foundation
@testable import Storage
import StreamLog
import TandemCore
@testable import TandemNode
@testable import TandemTestKit
import Testing
@testable import Transport

/// A fresh directory under /tmp, removed when the test ends.
final class TempDir {
    let path = "/tmp/tandem-seglog-\(UUID().uuidString)"
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
    func files(_ suffix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(suffix) }.sorted()
    }
    func read(_ name: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: file(name))!) }
    func write(_ name: String, _ bytes: [UInt8]) { _ = FileManager.default.createFile(atPath: file(name), contents: Data(bytes)) }
    /// Every file, to put the directory back exactly as it was.
    func snapshot() -> [String: [UInt8]] { Dictionary(uniqueKeysWithValues: files("").map { ($0, read($0)) }) }
    func restore(_ files: [String: [UInt8]]) {
        for name in self.files("") { try? FileManager.default.removeItem(atPath: file(name)) }
        for (name, bytes) in files { write(name, bytes) }
    }
}

/// Small segments so a few hundred entries span many of them.
let smallSegments = SegmentLog.Settings(segmentBytesMax: 2048, indexIntervalBytes: 200, tailCacheBytesMax: 0)

func makeEntries(_ range: ClosedRange<UInt64>, term: UInt64 = 1, seed: UInt64 = 1) -> [LogEntry] {
    var rng = SeededGenerator(seed: seed &+ range.lowerBound)
    return range.map { i in
        let size = Int(rng.next() % 120)
        let kind: LogEntry.Kind = i % 17 == 0 ? .noop : .record
        return LogEntry(
            index: i, term: term, kind: kind, timestamp: 1000 + i / 3 * 10,
            data: (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
    }
}

func recordBytes(_ e: LogEntry) -> Int { 33 + e.data.count }

@Suite struct SegmentLogTests {
    @Test func roundTripAcrossRollsAndReopen() throws {
        let dir = TempDir()
        let all = makeEntries(1...600)
        for cache in [0, 1 << 20] {
            var settings = smallSegments
            settings.tailCacheBytesMax = cache
            try? FileManager.default.removeItem(atPath: dir.path)
            do {
                let log = try SegmentLog(directory: dir.path, settings: settings)
                #expect(try log.firstIndex == 1 && log.lastIndex == 0 && log.term(at: 0) == 0)
                var rng = SeededGenerator(seed: 9)
                var next = 0
                while next < all.count {
                    let n = min(all.count - next, Int(rng.next() % 40) + 1)
                    try log.append(Array(all[next..<next + n]))
                    next += n
                }
                try log.sync()
                #expect(log.segmentFirstIndexes.count > 10)
                #expect(log.lastIndex == 600 && log.durableIndex == 600)
                #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == all)
                for _ in 0..<200 {
                    let a = rng.next() % 600 + 1
                    let b = a + rng.next() % 50
                    #expect(try log.entries(from: a, to: b, maxBytes: .max) == Array(all[Int(a - 1)..<Int(min(b, 600))]))
                    #expect(try log.term(at: a) == 1)
                }
                // maxBytes stops early but always yields one entry.
                let limited = try log.entries(from: 10, to: 600, maxBytes: 300)
                #expect(!limited.isEmpty && limited.first == all[9])
                #expect(limited.dropFirst().reduce(0) { $0 + $1.data.count } <= 300)
                #expect(try log.entries(from: 10, to: 600, maxBytes: 0).count == 1)
                #expect(try log.term(at: 601) == nil && log.entries(from: 601, to: 700, maxBytes: .max).isEmpty)
            }
            // Reopen: sealed segments come from their hints, only the active one is scanned.
            let log = try SegmentLog(directory: dir.path, settings: settings)
            #expect(log.recovery.segmentsScanned == 1 && log.recovery.tornBytes == 0)
            #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == all)
            #expect(dir.files(".idx").count == log.segmentFirstIndexes.count - 1)
        }
        // A missing hint is rebuilt by scanning.
        try FileManager.default.removeItem(atPath: dir.file(dir.files(".idx")[2]))
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(log.recovery.segmentsScanned == 2)
        #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == all)
        #expect(dir.files(".idx").count == log.segmentFirstIndexes.count - 1)
    }

    @Test func recordsLargerThanTheReadBuffers() throws {
        // Records up to 300 KiB straddle the 64 KiB read and 1 MiB scan buffers.
        let dir = TempDir()
        var rng = SeededGenerator(seed: 2)
        let all = (1...60).map { i in
            LogEntry(
                index: UInt64(i), term: 1, timestamp: UInt64(i),
                data: (0..<Int(rng.next() % 300_000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        let settings = SegmentLog.Settings(segmentBytesMax: 3 << 20, tailCacheBytesMax: 0)
        do {
            let log = try SegmentLog(directory: dir.path, settings: settings)
            try log.append(all)
            try log.sync()
            #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == all)
            for i in 1...60 { #expect(try log.entries(from: UInt64(i), to: UInt64(i), maxBytes: 0) == [all[i - 1]]) }
        }
        for idx in dir.files(".idx") { try FileManager.default.removeItem(atPath: dir.file(idx)) }
        let log = try SegmentLog(directory: dir.path, settings: settings)
        #expect(log.recovery.segmentsScanned == log.segmentFirstIndexes.count && log.recovery.tornBytes == 0)
        #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == all)
        try log.verify()
    }

    @Test func conflictingSuffixIsCutAcrossSegments() throws {
        let dir = TempDir()
        let old = makeEntries(1...400)
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        try log.append(old)
        try log.sync()
        let firsts = log.segmentFirstIndexes
        // Cut in the middle of the third segment, and exactly at the start of the second.
        for cut in [firsts[2] + 3, firsts[1]] {
            let replacement = makeEntries(cut...(cut + 30), term: 2 + cut, seed: 7)
            try log.append(replacement)
            #expect(log.lastIndex == cut + 30)
            #expect(log.segmentFirstIndexes.last! <= cut + 30)
            #expect(log.durableIndex <= cut - 1)
            let expected = Array(old[0..<Int(cut - 1)]) + replacement
            #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == expected)
            try log.sync()
            #expect(log.durableIndex == cut + 30)
            let reopened = try SegmentLog(directory: dir.path, settings: smallSegments)
            #expect(try reopened.entries(from: 1, to: .max, maxBytes: .max) == expected)
            #expect(reopened.recovery.tornBytes == 0)
        }
        // Overwriting from the very first index empties the log first.
        try log.append(makeEntries(1...3, term: 50))
        #expect(try log.lastIndex == 3 && log.term(at: 3) == 50 && log.segmentFirstIndexes == [1])
    }

    @Test func badAppendsAreRefused() throws {
        let dir = TempDir()
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        try log.append(makeEntries(1...10, term: 3))
        #expect(throws: TandemError.self) { try log.append(makeEntries(12...13, term: 3)) }  // gap
        #expect(throws: TandemError.self) { try log.append([LogEntry(index: 11, term: 3), LogEntry(index: 13, term: 3)]) }
        #expect(throws: TandemError.self) { try log.append([LogEntry(index: 11, term: 2)]) }  // term went down
        #expect(throws: TandemError.self) { try log.append([LogEntry(index: 5, term: 2)]) }  // ... and no cut happens
        #expect(log.lastIndex == 10)
        #expect(throws: TandemError.self) {
            try log.append([LogEntry(index: 11, term: 3, data: [UInt8](repeating: 0, count: (8 << 20) + 1))])
        }
        #expect(log.lastIndex == 10)
    }

    /// Entries 1...n, synced and closed; returns where the last record starts in the last file.
    /// A synced log whose last segment file holds exactly its records: the zeros preallocated
    /// after them are cut off here, so tests can damage the records' bytes precisely (the
    /// preallocation itself is `preallocatedZerosAreNotATornWrite`'s subject).
    func writeClosedLog(_ dir: TempDir, _ all: [LogEntry]) throws -> (file: String, lastRecordAt: Int) {
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        try log.append(all)
        try log.sync()
        let lastFirst = log.segmentFirstIndexes.last!
        let before = all.filter { $0.index >= lastFirst && $0.index < all.last!.index }.reduce(0) { $0 + recordBytes($1) }
        let file = dir.files(".log").last!
        let bytes = dir.read(file)
        let end = before + recordBytes(all.last!)
        #expect(bytes.count > end && bytes[end...].allSatisfy { $0 == 0 }, "the active segment is preallocated with zeros")
        dir.write(file, Array(bytes[..<end]))
        return (file, before)
    }

    /// The active segment grows in preallocated steps; after a crash its zeros read as the end
    /// of the log (not a torn write), a torn record before them is still cut, and sealed
    /// segments end exactly at their last record.
    @Test func preallocatedZerosAreNotATornWrite() throws {
        let dir = TempDir()
        let all = makeEntries(1...300)
        var firsts: [UInt64] = []
        do {
            let log = try SegmentLog(directory: dir.path, settings: smallSegments)
            try log.append(all)
            try log.sync()
            firsts = log.segmentFirstIndexes
        }  // no clean close: what a kill leaves
        for (k, first) in firsts.enumerated() {
            let records = all.filter { $0.index >= first && (k + 1 == firsts.count || $0.index < firsts[k + 1]) }.reduce(0) {
                $0 + recordBytes($1)
            }
            let size = dir.read(SegmentLogTests.name(first)).count
            if k + 1 < firsts.count {
                #expect(size == records, "sealed segment \(first)")
            } else {
                #expect(size > records, "active segment")
            }
        }
        let pristine = dir.snapshot()
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == all)
        #expect(log.recovery.tornBytes == 0 && log.recovery.tornReason == nil)
        try log.append(makeEntries(301...320))
        try log.sync()
        #expect(
            try SegmentLog(directory: dir.path, settings: smallSegments).entries(from: 1, to: .max, maxBytes: .max) == all
                + makeEntries(301...320))

        // A record half written into the zeros: cut there, and the log goes on after it.
        dir.restore(pristine)
        let name = SegmentLogTests.name(firsts.last!)
        var bytes = dir.read(name)
        let end = all.filter { $0.index >= firsts.last! }.reduce(0) { $0 + recordBytes($1) }
        let extra = makeEntries(301...301)[0]
        var encoded: [UInt8] = []
        SegmentLog.encode(extra, into: &encoded)
        for (i, b) in encoded.prefix(encoded.count - 1).enumerated() { bytes[end + i] = b }  // all but its last byte
        dir.write(name, bytes)
        let torn = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(torn.lastIndex == 300)
        #expect(torn.recovery.tornReason != nil)
        #expect(try torn.entries(from: 1, to: .max, maxBytes: .max) == all)
    }

    @Test func tornTailIsCutAtEveryOffset() throws {
        let dir = TempDir()
        let all = makeEntries(1...100)
        let (file, start) = try writeClosedLog(dir, all)
        let pristine = dir.snapshot()
        let full = pristine[file]!
        #expect(full.count == start + recordBytes(all.last!))
        for length in start..<full.count {
            dir.restore(pristine)
            dir.write(file, Array(full[..<length]))
            let log = try SegmentLog(directory: dir.path, settings: smallSegments)
            #expect(log.lastIndex == 99, "cut at \(length)")
            // Written bytes that are all zeros cannot be told from preallocated space: the log
            // ends there all the same, only without a torn-write report.
            #expect(log.recovery.tornBytes == (full[start..<length].allSatisfy { $0 == 0 } ? 0 : length - start))
            #expect(log.durableIndex == 99)
            // Appending continues right after the surviving record, and survives a reopen.
            let fresh = makeEntries(100...102, term: 2, seed: 5)
            try log.append(fresh)
            try log.sync()
            let reopened = try SegmentLog(directory: dir.path, settings: smallSegments)
            #expect(try reopened.entries(from: 1, to: .max, maxBytes: .max) == Array(all.dropLast()) + fresh)
            #expect(reopened.recovery.tornBytes == 0)
        }
    }

    @Test func garbageAfterTheTailIsCut() throws {
        let dir = TempDir()
        let all = makeEntries(1...100)
        let (file, _) = try writeClosedLog(dir, all)
        let pristine = dir.snapshot()
        var rng = SeededGenerator(seed: 4)
        // Random bytes, zeros (a file extended but never written: preallocation, so the log
        // ends there without a torn write), and a header whose length claims far more than the
        // limit (must not be allocated).
        var tails: [[UInt8]] = (0..<30).map { _ in (0..<Int(rng.next() % 200) + 1).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        tails.append([UInt8](repeating: 0, count: 4096))
        tails.append([0xFF, 0xFF, 0xFF, 0xF0] + [UInt8](repeating: 1, count: 60))
        for tail in tails {
            dir.restore(pristine)
            dir.write(file, pristine[file]! + tail)
            let log = try SegmentLog(directory: dir.path, settings: smallSegments)
            #expect(log.lastIndex == 100)
            #expect(log.recovery.tornBytes == (tail.allSatisfy { $0 == 0 } ? 0 : tail.count))
            #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == all)
            try log.append(makeEntries(101...101))
            #expect(try SegmentLog(directory: dir.path, settings: smallSegments).lastIndex == 101)
        }
    }

    @Test func flippedByteInTheLastRecordIsCaught() throws {
        let dir = TempDir()
        let all = makeEntries(1...100)
        let (file, start) = try writeClosedLog(dir, all)
        let pristine = dir.snapshot()
        for position in start..<pristine[file]!.count {
            dir.restore(pristine)
            var bytes = pristine[file]!
            bytes[position] ^= 0x40
            dir.write(file, bytes)
            let log = try SegmentLog(directory: dir.path, settings: smallSegments)
            #expect(log.lastIndex == 99, "flip at \(position)")
            #expect(log.recovery.tornReason != nil)
        }
    }

    @Test func tornWriteInAnUnsyncedSealedSegment() throws {
        // A crash before the first sync: no hints, so every segment may be torn. A bad record
        // in one cuts the log there and drops the (unsynced) segments after it.
        let dir = TempDir()
        let all = makeEntries(1...300)
        var firsts: [UInt64] = []
        do {
            let log = try SegmentLog(directory: dir.path, settings: smallSegments)
            try log.append(all)
            firsts = log.segmentFirstIndexes
        }
        #expect(dir.files(".idx").isEmpty)
        let k = firsts.count - 2
        let name = SegmentLogTests.name(firsts[k])
        var bytes = dir.read(name)
        let offset = all.filter { $0.index >= firsts[k] && $0.index < firsts[k] + 2 }.reduce(0) { $0 + recordBytes($1) }
        bytes[offset + 10] ^= 1  // inside record firsts[k] + 2
        dir.write(name, bytes)
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(log.lastIndex == firsts[k] + 1)
        #expect(log.recovery.tornSegmentsDeleted == 1)
        #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == Array(all[0..<Int(firsts[k] + 1)]))
    }

    @Test func unsyncedSegmentThatLostItsEnd() throws {
        // Before any sync, a sealed segment may come back shorter (cut at a record boundary, or
        // empty) while the next segment's file exists: the next one no longer follows and goes.
        let dir = TempDir()
        let all = makeEntries(1...300)
        var firsts: [UInt64] = []
        do {
            let log = try SegmentLog(directory: dir.path, settings: smallSegments)
            try log.append(all)
            firsts = log.segmentFirstIndexes
        }
        let pristine = dir.snapshot()
        let k = firsts.count - 3
        let name = SegmentLogTests.name(firsts[k])
        let keep = all.filter { $0.index >= firsts[k] && $0.index < firsts[k] + 3 }.reduce(0) { $0 + recordBytes($1) }
        for length in [keep, 0] {
            dir.restore(pristine)
            dir.write(name, Array(pristine[name]![..<length]))
            let log = try SegmentLog(directory: dir.path, settings: smallSegments)
            let last = length == 0 ? firsts[k] - 1 : firsts[k] + 2
            #expect(log.lastIndex == last)
            #expect(log.recovery.tornSegmentsDeleted == 2)
            #expect(try log.entries(from: 1, to: .max, maxBytes: .max) == Array(all[0..<Int(last)]))
            try log.append(makeEntries((last + 1)...(last + 1)))
            #expect(try SegmentLog(directory: dir.path, settings: smallSegments).lastIndex == last + 1)
        }
    }

    static func name(_ first: UInt64) -> String {
        let digits = String(first)
        return String(repeating: "0", count: 20 - digits.count) + digits + ".log"
    }

    @Test func corruptionInAnOlderSegmentThrows() throws {
        let dir = TempDir()
        let all = makeEntries(1...300)
        var firsts: [UInt64] = []
        do {
            let log = try SegmentLog(directory: dir.path, settings: smallSegments)
            try log.append(all)
            try log.sync()
            firsts = log.segmentFirstIndexes
        }
        let name = SegmentLogTests.name(firsts[1])
        var bytes = dir.read(name)
        bytes[bytes.count / 2] ^= 0x10
        dir.write(name, bytes)

        // The hint still matches the file's size and last record, so open trusts the segment,
        // but reading the damaged record or a scrub reports it.
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(log.lastIndex == 300)
        #expect(throws: TandemError.self) { try log.verify() }
        #expect(throws: TandemError.self) { try log.readEntries(from: firsts[1], to: firsts[2] - 1, maxBytes: .max) }
        #expect(try log.readEntries(from: 1, to: firsts[1] - 1, maxBytes: .max) == Array(all[0..<Int(firsts[1] - 1)]))

        // Without the hint the segment is scanned; later segments were synced, so the damage
        // cannot be a torn write: opening fails loudly instead of dropping data.
        try FileManager.default.removeItem(atPath: dir.file(String(name.dropLast(4)) + ".idx"))
        do {
            _ = try SegmentLog(directory: dir.path, settings: smallSegments)
            Issue.record("opened a log with a corrupt older segment")
        } catch let error as TandemError {
            #expect(error.code == .corrupt)
            #expect(error.message.contains(name))
        }
        // A length field far above the limit in an older segment is corruption too.
        bytes = dir.read(name)
        bytes[bytes.count / 2] ^= 0x10
        bytes[0] = 0x7F
        dir.write(name, bytes)
        #expect(throws: TandemError.self) { try SegmentLog(directory: dir.path, settings: smallSegments) }
    }

    @Test func retentionDeletesWholeSegmentsOnly() throws {
        let dir = TempDir()
        let all = makeEntries(1...300)
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        try log.append(all)
        try log.append(makeEntries(301...320, term: 4))
        try log.sync()
        let firsts = log.segmentFirstIndexes

        #expect(try log.trim(before: firsts[2] - 1) == 1)  // the second segment holds the index: kept
        #expect(log.firstIndex == firsts[1])
        #expect(try log.trim(before: firsts[3] + 2) == 2)
        #expect(log.firstIndex == firsts[3])
        #expect(try log.term(at: firsts[3] - 1) == 1 && log.term(at: firsts[3] - 2) == nil)
        #expect(try log.entries(from: 1, to: firsts[3] + 1, maxBytes: .max) == Array(all[Int(firsts[3] - 1)...Int(firsts[3])]))
        #expect(dir.files(".log").count == firsts.count - 3)

        // Timestamps are 1000 + i/3*10: drop segments whose last record is older than entry 150's.
        let cutoff = all[149].timestamp
        let dropped = try log.trimOlderThan(timestampMs: cutoff)
        #expect(dropped > 0)
        #expect(try log.entries(from: log.firstIndex - 1, to: log.firstIndex - 1, maxBytes: .max).isEmpty)
        let prevLast = log.firstIndex - 1
        #expect(all[Int(prevLast) - 1].timestamp < cutoff)
        #expect(all[Int(log.firstIndex) - 1].timestamp >= cutoff || log.segmentFirstIndexes.first == log.firstIndex)
        // `below` keeps what is not committed yet.
        #expect(try log.trimOlderThan(timestampMs: .max, below: log.firstIndex) == 0)

        let first = log.firstIndex
        let reopened = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(reopened.firstIndex == first && reopened.lastIndex == 320)
        #expect(try reopened.term(at: first - 1) == 1 && reopened.term(at: 320) == 4)
        #expect(try reopened.entries(from: 1, to: .max, maxBytes: .max) == Array(all[Int(first - 1)...]) + makeEntries(301...320, term: 4))
    }

    /// Segments also roll by age, so retention can drop a slowly written partition's old
    /// records long before a segment fills: each segment spans less than `segmentAgeMaxMs` of
    /// entry timestamps, one batch or one entry at a time alike.
    @Test func segmentsRollByAge() throws {
        let entries = (1...60).map { i in
            LogEntry(index: UInt64(i), term: 1, timestamp: 1000 + UInt64(i) * 30, data: [UInt8](repeating: 7, count: 40))
        }
        let settings = SegmentLog.Settings(segmentBytesMax: 1 << 20, indexIntervalBytes: 200, tailCacheBytesMax: 0, segmentAgeMaxMs: 100)
        var layouts: [[UInt64]] = []
        for oneByOne in [false, true] {
            let dir = TempDir()
            let log = try SegmentLog(directory: dir.path, settings: settings)
            if oneByOne { for e in entries { try log.append([e]) } } else { try log.append(entries) }
            try log.sync()
            let firsts = log.segmentFirstIndexes
            layouts.append(firsts)
            // First records at 1030, 1150, 1270, ...: every fourth entry starts a segment.
            #expect(firsts == Array(stride(from: 1, through: 60, by: 4)).map(UInt64.init), "\(firsts)")
            // Retention at 1400 drops the segments wholly before it (their last record < 1400).
            #expect(try log.trimOlderThan(timestampMs: 1400) == 3)
            #expect(try log.firstIndex == 13 && log.entries(from: 1, to: 13, maxBytes: .max).map(\.index) == [13])
            let reopened = try SegmentLog(directory: dir.path, settings: settings)
            #expect(reopened.firstIndex == 13 && reopened.lastIndex == 60)
        }
        #expect(layouts[0] == layouts[1])
        // Off by default: one segment.
        let dir = TempDir()
        let log = try SegmentLog(directory: dir.path, settings: SegmentLog.Settings(segmentBytesMax: 1 << 20))
        try log.append(entries)
        #expect(log.segmentFirstIndexes == [1])
    }

    @Test func interruptedTrimIsFinishedOnOpen() throws {
        let dir = TempDir()
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        try log.append(makeEntries(1...200))
        try log.sync()
        let firsts = log.segmentFirstIndexes
        let saved = dir.read(SegmentLogTests.name(1))
        try log.trim(before: firsts[1])
        dir.write(SegmentLogTests.name(1), saved)  // as if the unlink never reached the disk
        let reopened = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(reopened.recovery.staleSegmentsDeleted == 1)
        #expect(reopened.firstIndex == firsts[1] && reopened.lastIndex == 200)
        #expect(!dir.files(".log").contains(SegmentLogTests.name(1)))
    }

    @Test func resetStartsAfterTheGivenIndex() throws {
        let dir = TempDir()
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        try log.append(makeEntries(1...200))
        try log.sync()
        try log.reset(after: 1000, term: 7)
        #expect(log.firstIndex == 1001 && log.lastIndex == 1000 && log.durableIndex == 1000)
        #expect(try log.term(at: 1000) == 7 && log.term(at: 999) == nil)
        #expect(try log.entries(from: 1, to: .max, maxBytes: .max).isEmpty)
        #expect(throws: TandemError.self) { try log.append(makeEntries(5...6, term: 7)) }
        #expect(throws: TandemError.self) { try log.append(makeEntries(1002...1003, term: 7)) }
        try log.append(makeEntries(1001...1050, term: 7))
        try log.sync()
        let reopened = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(try reopened.firstIndex == 1001 && reopened.lastIndex == 1050 && reopened.term(at: 1000) == 7)
        #expect(try reopened.entries(from: 1, to: .max, maxBytes: .max) == makeEntries(1001...1050, term: 7))

        // A reset inside the log, and an empty reopen right after it.
        try reopened.reset(after: 20, term: 9)
        let empty = try SegmentLog(directory: dir.path, settings: smallSegments)
        #expect(try empty.firstIndex == 21 && empty.lastIndex == 20 && empty.term(at: 20) == 9)
        #expect(dir.files(".log").isEmpty)
    }

    @Test func timestampSeek() throws {
        let dir = TempDir()
        let all = makeEntries(1...500)  // timestamps 1000 + i/3*10, so runs of equal ones
        let log = try SegmentLog(directory: dir.path, settings: smallSegments)
        try log.append(all)
        for ms in stride(from: UInt64(900), through: all.last!.timestamp + 20, by: 3) {
            let expected = all.first(where: { $0.timestamp >= ms })?.index
            #expect(try log.index(atOrAfterTimestamp: ms) == expected, "ms \(ms)")
        }
        try log.trim(before: 200)
        #expect(try log.index(atOrAfterTimestamp: 0) == log.firstIndex)
    }

    @Test func syncFromAnotherThreadWhileAppending() async throws {
        let dir = TempDir()
        let log = try SegmentLog(directory: dir.path, settings: SegmentLog.Settings(segmentBytesMax: 64 << 10, indexIntervalBytes: 512))
        let observed = Observations()
        let syncer = Task.detached {
            var last: UInt64 = 0
            while !observed.isDone {
                try log.sync()
                let now = log.durableIndex
                if now < last { observed.regressed() }
                last = now
            }
        }
        var next: UInt64 = 1
        let payload = [UInt8](repeating: 0xAB, count: 256)
        while next <= 20_000 {
            try log.append((next..<next + 100).map { LogEntry(index: $0, term: 1, timestamp: $0, data: payload) })
            next += 100
            #expect(log.durableIndex <= log.lastIndex)
        }
        observed.finish()
        try await syncer.value
        try log.sync()
        #expect(!observed.sawRegression)
        #expect(log.durableIndex == 20_000)
        #expect(log.segmentFirstIndexes.count > 50)
        let reopened = try SegmentLog(directory: dir.path)
        #expect(reopened.lastIndex == 20_000 && reopened.recovery.segmentsScanned == 1)
        #expect(try reopened.entries(from: 19_990, to: .max, maxBytes: .max).map(\.index) == Array(19_990...20_000))
    }

    /// CRC32C (slicing-by-8) against the standard check value and a bit-at-a-time reference.
    /// After a failed fsync nothing more is trusted: appends and syncs keep failing, the
    /// durable index stays where the last good sync left it, and reopening with it cuts every
    /// entry written after it (across segments), durably, while the fault lasts it cannot.
    @Test func failedFsyncIsPermanentAndReopenCutsTheUnsyncedSuffix() throws {
        let dir = TempDir()
        let faults = DiskFaults()
        let all = makeEntries(1...300)
        var durable: UInt64 = 0
        do {
            let log = try SegmentLog(directory: dir.path, settings: smallSegments, faults: faults)
            try log.append(Array(all[0..<100]))
            try log.sync()
            durable = log.durableIndex
            #expect(durable == 100)
            try log.append(Array(all[100..<250]))  // into the page cache, over several segments
            faults.fsyncFails = true
            #expect(throws: TandemError.self) { try log.sync() }
            #expect(log.durableIndex == 100)
            faults.fsyncFails = false
            // A later fsync could succeed without the pages the failed one dropped: refused.
            #expect(throws: TandemError.self) { try log.sync() }
            #expect(throws: TandemError.self) { try log.append(Array(all[250..<251])) }
            #expect(log.durableIndex == 100)
        }
        faults.fsyncFails = true
        #expect(throws: TandemError.self) {
            try SegmentLog(directory: dir.path, settings: smallSegments, faults: faults, keepingThrough: durable)
        }
        faults.fsyncFails = false
        let reopened = try SegmentLog(directory: dir.path, settings: smallSegments, faults: faults, keepingThrough: durable)
        #expect(reopened.lastIndex == 100 && reopened.durableIndex == 100)
        #expect(reopened.recovery.unsyncedEntriesDropped == 150)
        #expect(try reopened.entries(from: 1, to: .max, maxBytes: .max) == Array(all[0..<100]))
        try reopened.append(Array(all[100..<300]))
        try reopened.sync()
        #expect(try SegmentLog(directory: dir.path, settings: smallSegments).entries(from: 1, to: .max, maxBytes: .max) == all)
        #expect(faults.injected == 2)
    }

    @Test func checksumMatchesTheReference() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        func reference(_ bytes: [UInt8], seed: UInt32) -> UInt32 {
            var crc = ~seed
            for b in bytes {
                crc ^= UInt32(b)
                for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            }
            return ~crc
        }
        var rng = SeededGenerator(seed: 8)
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 1000] {
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let seed = UInt32(truncatingIfNeeded: rng.next())
            #expect(CRC32C.checksum(bytes, seed: seed) == reference(bytes, seed: seed))
            if n > 0 { #expect(CRC32C.checksum(bytes[1...], seed: seed) == reference(Array(bytes.dropFirst()), seed: seed)) }
        }
    }

    @Test func hardStateRoundTrip() throws {
        let dir = TempDir()
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let file = RaftHardStateFile(path: dir.file("raft.state"))
        #expect(try file.load() == nil)
        for state in [HardState(term: 3, vote: "node-b", commit: 17), HardState(term: 4, vote: nil, commit: 20)] {
            try file.store(state)
            #expect(try file.load() == state)
        }
        // The format, byte for byte: magic "TRHS", version 1, term, commit, vote (flag, length,
        // UTF-8), CRC32C of all that (big-endian).
        try file.store(HardState(term: 3, vote: "node-b", commit: 17))
        let be64 = { (v: UInt64) in (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }
        let body: [UInt8] = [0x54, 0x52, 0x48, 0x53, 1] + be64(3) + be64(17) + [1, 6] + Array("node-b".utf8)
        let crc = CRC32C.checksum(body)
        #expect(dir.read("raft.state") == body + (0..<4).map { UInt8(truncatingIfNeeded: crc >> (24 - 8 * $0)) })
        var bytes = dir.read("raft.state")
        bytes[6] ^= 1
        dir.write("raft.state", bytes)
        #expect(throws: TandemError.self) { try file.load() }
    }

    /// Prints append+sync and read figures when TANDEM_BENCH=1; never asserts on them.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TANDEM_BENCH"] == "1"))
    func benchmark() throws {
        for line in try SegmentLog.benchmark(directory: "/tmp/tandem-seglog-bench") { print(line) }
    }
}

final class Observations: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private var regression = false
    var isDone: Bool { lock.withLock { done } }
    var sawRegression: Bool { lock.withLock { regression } }
    func finish() { lock.withLock { done = true } }
    func regressed() { lock.withLock { regression = true } }
}
