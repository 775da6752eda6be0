import Foundation
import StreamLog
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

// Opening a `SegmentLog`: recovery of a torn tail (see "Recovery" in SegmentLog.swift) and
// the per-segment hint files that let a sealed segment skip the scan.

extension SegmentLog {
    func recover() throws {
        if let meta = try DurableFile.read(path("log.meta"), limit: 4096) {
            do {
                var r = try DurableFile.checkedBody(meta, magic: Self.metaMagic, version: Self.formatVersion)
                baseIndex = try r.u64()
                baseTerm = try r.u64()
            } catch {
                throw TandemError(.corrupt, "\(path("log.meta")) is unreadable: \(error)")
            }
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        var firsts: [UInt64] = []
        for name in names {
            if name.hasSuffix(".tmp") { unlink(path(name)) }  // an unfinished DurableFile.write
            if name.hasSuffix(".log"), name.count == 24, let first = UInt64(name.prefix(20)), first > 0 {
                firsts.append(first)
            }
        }
        for name in names where name.hasSuffix(".idx") {
            if !firsts.contains(where: { Self.segmentName($0) + ".idx" == name }) { unlink(path(name)) }
        }
        firsts.sort()

        // Segments that start at or below the base were being deleted by a trim or reset when
        // the process stopped (the meta file is written before the deletions): finish the job.
        for first in firsts where first <= baseIndex {
            unlink(path(Self.segmentName(first) + ".log"))
            unlink(path(Self.segmentName(first) + ".idx"))
            recovery.staleSegmentsDeleted += 1
        }
        for first in firsts where first > baseIndex {
            segments.append(try Segment(directory: directory, firstIndex: first))
        }

        // A valid hint proves its segment was fsynced complete; everything after the last such
        // segment may hold a torn write.
        var hinted = [Bool](repeating: false, count: segments.count)
        for k in segments.indices.dropLast() { hinted[k] = loadHint(segments[k]) }
        if let last = segments.last { unlink(last.hintPath) }  // the active segment has none
        let lastHinted = hinted.lastIndex(of: true) ?? -1

        var expected = baseIndex + 1
        var prevTerm = baseTerm
        var k = 0
        while k < segments.count {
            let seg = segments[k]
            if seg.firstIndex != expected {
                // After an unsynced segment that lost its end, the next one no longer follows
                // on: it is unsynced too, so it goes. After a synced one this is lost data.
                guard k - 1 > lastHinted else {
                    throw TandemError(
                        .corrupt, "\(seg.logPath) starts at index \(seg.firstIndex), expected \(expected): a segment is missing")
                }
                recovery.tornReason = recovery.tornReason ?? "\(seg.logPath) does not follow index \(expected - 1)"
                recovery.tornBytes += dropSegments(from: k)
                break
            }
            if !hinted[k] {
                recovery.segmentsScanned += 1
                if let bad = try scan(seg, prevTerm: prevTerm) {
                    guard k > lastHinted else {
                        throw TandemError(
                            .corrupt,
                            "\(seg.logPath) is corrupt at byte \(bad.offset) (\(bad.reason)); later segments were synced, so this is not a torn write"
                        )
                    }
                    try cutTornTail(at: k, bad)
                }
            }
            prevTerm = seg.lastTerm
            expected = seg.lastIndex + 1
            k += 1
        }

        // What was scanned may still sit only in the page cache (the previous process died, the
        // machine did not): make it durable before calling it durable, and hint the sealed part.
        for (k, seg) in segments.enumerated() where !hinted[k] {
            // Drop preallocated zeros (and whatever lies past them, never part of the log): a
            // sealed segment must end at its last record; the active one grows them again.
            try release(seg)
            guard faults.fsync(seg.fd) == 0 else { throw DurableFile.errno("fsync \(seg.logPath)") }
            if k < segments.count - 1 {
                seg.sealed = true
                writeHint(seg)
            }
        }
        guard faults.fsync(dirFD) == 0 else { throw DurableFile.errno("fsync \(directory)") }
        durable = lastIndexLocked
    }

    /// Cut segment `k` at its first bad record and delete everything after it (all unsynced).
    private func cutTornTail(at k: Int, _ bad: (offset: Int, reason: String)) throws {
        let seg = segments[k]
        var st = stat()
        guard fstat(seg.fd, &st) == 0 else { throw DurableFile.errno("stat \(seg.logPath)") }
        let torn = Int(st.st_size) - bad.offset + dropSegments(from: k + 1)
        unlink(seg.hintPath)
        guard ftruncate(seg.fd, off_t(bad.offset)) == 0 else { throw DurableFile.errno("ftruncate \(seg.logPath)") }
        seg.allocated = bad.offset
        recovery.tornBytes += torn
        recovery.tornReason = recovery.tornReason ?? "\(seg.logPath) at byte \(bad.offset): \(bad.reason)"
    }

    /// Delete the (unsynced) segments from position `k` on, during recovery; returns their bytes.
    private func dropSegments(from k: Int) -> Int {
        var bytes = 0
        for seg in segments[k...] {
            bytes += seg.fileSize
            unlink(seg.logPath)
            unlink(seg.hintPath)
            recovery.tornSegmentsDeleted += 1
        }
        segments.removeLast(segments.count - k)
        return bytes
    }

    /// Read a whole segment, rebuilding its in-memory state. Returns the first bad record's
    /// offset and why, or nil when every byte belongs to a good record.
    private func scan(_ seg: Segment, prevTerm: UInt64) throws -> (offset: Int, reason: String)? {
        let size = seg.fileSize
        seg.resetToEmpty()
        var cursor = RecordCursor(fd: seg.fd, end: size, offset: 0, recordBytesMax: settings.recordBytesMax, chunk: 1 << 20)
        var term = prevTerm
        while true {
            let at = cursor.offset
            switch try cursor.next(dataFrom: .max) {
            case .end:
                return nil
            case .bad(let reason):
                return (at, reason)
            case .record(let h, _):
                guard h.index == seg.lastIndex + 1 else { return (at, "index \(h.index) where \(seg.lastIndex + 1) belongs") }
                guard h.term >= term else { return (at, "term \(h.term) after term \(term)") }
                term = h.term
                seg.noteAppended(h, indexIntervalBytes: settings.indexIntervalBytes)
            }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Hints

    func writeHint(_ seg: Segment) {
        guard !seg.isEmpty else { return }
        var w = ByteWriter(capacity: 64 + seg.points.count * 24)
        w.u32(Self.hintMagic)
        w.u8(Self.formatVersion)
        w.u64(seg.firstIndex)
        w.u64(seg.lastIndex)
        w.u64(seg.lastTerm)
        w.u64(seg.lastTimestamp)
        w.u64(UInt64(seg.fileSize))
        w.u64(UInt64(seg.lastOffset))
        w.u32(UInt32(seg.points.count))
        for p in seg.points {
            w.u64(p.index)
            w.u64(UInt64(p.offset))
            w.u64(p.timestamp)
        }
        // A hint needs no fsync: if it is lost or torn, open rebuilds it by scanning.
        let tmp = seg.hintPath + ".tmp"
        do {
            let fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return }
            defer { close(fd) }
            try DurableFile.pwriteFully(fd, DurableFile.sealed(w), at: 0)
            rename(tmp, seg.hintPath)
        } catch {
            unlink(tmp)
        }
    }

    /// Fill `seg` from its hint if the hint is intact and agrees with the file: same size, and
    /// the record it names as last is really there, intact, and ends the file.
    private func loadHint(_ seg: Segment) -> Bool {
        guard let bytes = try? DurableFile.read(seg.hintPath, limit: 64 << 20),
            var r = try? DurableFile.checkedBody(bytes, magic: Self.hintMagic, version: Self.formatVersion)
        else { return false }
        do {
            guard try r.u64() == seg.firstIndex else { return false }
            let last = try r.u64()
            let lastTerm = try r.u64()
            let lastTimestamp = try r.u64()
            let size = try r.u64()
            let lastOffset = try r.u64()
            let count = Int(try r.u32())
            guard last >= seg.firstIndex, size == UInt64(seg.fileSize), lastOffset < size,
                count >= 1, count * 24 == r.remaining
            else { return false }
            var points: [Segment.Point] = []
            for _ in 0..<count {
                let p = Segment.Point(index: try r.u64(), offset: Int(try r.u64()), timestamp: try r.u64())
                if let prev = points.last, p.index <= prev.index || p.offset <= prev.offset { return false }
                guard p.offset <= Int(lastOffset), p.index <= last else { return false }
                points.append(p)
            }
            guard points[0].index == seg.firstIndex, points[0].offset == 0 else { return false }
            var cursor = RecordCursor(seg, from: Int(lastOffset), recordBytesMax: settings.recordBytesMax)
            guard case .record(let h, _) = try cursor.next(dataFrom: .max),
                h.index == last, h.term == lastTerm, h.timestamp == lastTimestamp, h.offset + h.size == seg.fileSize
            else { return false }
            seg.points = points
            seg.lastIndex = last
            seg.lastTerm = lastTerm
            seg.lastTimestamp = lastTimestamp
            seg.lastOffset = Int(lastOffset)
            seg.sealed = true
            return true
        } catch {
            return false
        }
    }

}
