import Foundation
import StreamLog
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

// Seeking by time, retention (trimming whole segments from the head), reset after
// installStart, and the full scrub (`verify`) of a `SegmentLog`.

extension SegmentLog {
    // ==== ------------------------------------------------------------------------------------
    // MARK: Seeking and retention

    /// The first index whose timestamp is at or after `ms`, or nil when every entry is older
    /// (timestamps never decrease within a partition, so this is a binary search plus a short scan).
    public func index(atOrAfterTimestamp ms: UInt64) throws -> UInt64? {
        try locked {
            guard let seg = segments.first(where: { !$0.isEmpty && $0.lastTimestamp >= ms }) else { return nil }
            // The last point older than `ms` is a safe start: the answer lies after it.
            var start = 0
            if let p = seg.points.lastIndex(where: { $0.timestamp < ms }) { start = seg.points[p].offset }
            var cursor = RecordCursor(seg, from: start, recordBytesMax: settings.recordBytesMax)
            while true {
                let h = try cursor.nextGood(in: seg, dataFrom: .max).header
                if h.timestamp >= ms { return h.index }
            }
        }
    }

    /// Delete the segments that lie entirely below `index` (never part of one). The caller
    /// keeps `index` at or below what Raft has committed. Returns how many were deleted.
    @discardableResult
    public func trim(before index: UInt64) throws -> Int {
        try locked {
            var n = 0
            while n < segments.count, !segments[n].isEmpty, segments[n].lastIndex < index { n += 1 }
            try dropHeadLocked(n)
            return n
        }
    }

    /// Delete the segments whose last record is older than `ms` and that lie entirely below
    /// `limit` (pass the commit index + 1: retention must never drop uncommitted entries).
    @discardableResult
    public func trimOlderThan(timestampMs ms: UInt64, below limit: UInt64 = .max) throws -> Int {
        try locked {
            var n = 0
            while n < segments.count, !segments[n].isEmpty, segments[n].lastTimestamp < ms, segments[n].lastIndex < limit { n += 1 }
            try dropHeadLocked(n)
            return n
        }
    }

    private func dropHeadLocked(_ n: Int) throws {
        guard n > 0 else { return }
        let last = segments[n - 1]
        // The new base goes to disk first: if we stop halfway, open deletes the rest.
        try writeMeta(base: last.lastIndex, term: last.lastTerm)
        for seg in segments[..<n] {
            seg.deleted = true
            unlink(seg.logPath)
            unlink(seg.hintPath)
        }
        segments.removeFirst(n)
        directoryDirty = true
        if cacheHead < cache.count, cache[cacheHead].index <= baseIndex {
            let drop = min(cache.count - cacheHead, Int(baseIndex - cache[cacheHead].index + 1))
            for e in cache[cacheHead..<cacheHead + drop] { cacheBytes -= Self.headerBytes + e.data.count }
            cacheHead += drop
        }
    }

    /// Discard the whole log and restart it after `index` (whose term is `term`): the next
    /// append must be `index + 1`. For a follower too far behind the leader's trimmed head.
    public func reset(after index: UInt64, term: UInt64) throws {
        try locked {
            // Segments past `index` go first, so a reset interrupted before the meta write
            // leaves a shorter but valid log; after the meta write, open deletes the rest.
            var cutAny = false
            while let seg = segments.last, seg.firstIndex > index {
                seg.deleted = true
                unlink(seg.logPath)
                unlink(seg.hintPath)
                segments.removeLast()
                cutAny = true
            }
            if cutAny { guard faults.fsync(dirFD) == 0 else { throw DurableFile.errno("fsync \(directory)") } }
            try writeMeta(base: index, term: term)
            for seg in segments {
                seg.deleted = true
                unlink(seg.logPath)
                unlink(seg.hintPath)
            }
            segments = []
            directoryDirty = true
            cache = []
            cacheHead = 0
            cacheBytes = 0
            for ticket in syncCeilings.keys { syncCeilings[ticket] = min(syncCeilings[ticket]!, index) }
            durable = index  // the meta file is durable, and nothing else remains
        }
    }

    private func writeMeta(base: UInt64, term: UInt64) throws {
        var w = ByteWriter(capacity: 32)
        w.u32(Self.metaMagic)
        w.u8(Self.formatVersion)
        w.u64(base)
        w.u64(term)
        try DurableFile.write(path("log.meta"), DurableFile.sealed(w), faults: faults)
        baseIndex = base
        baseTerm = term
    }

    /// Read every record of every segment and check it (CRC, index order): a full scrub, for
    /// an operator command or a test. Throws `.corrupt` naming the file and offset.
    public func verify() throws {
        try locked {
            for seg in segments {
                var cursor = RecordCursor(seg, from: 0, recordBytesMax: settings.recordBytesMax)
                var expected = seg.firstIndex
                while expected <= seg.lastIndex {
                    let h = try cursor.nextGood(in: seg, dataFrom: .max).header
                    guard h.index == expected else {
                        throw TandemError(.corrupt, "\(seg.logPath) holds index \(h.index) at byte \(h.offset), expected \(expected)")
                    }
                    expected += 1
                }
            }
        }
    }

    /// First index of each live segment (for tests and status pages).
    public var segmentFirstIndexes: [UInt64] { locked { segments.map(\.firstIndex) } }

}
