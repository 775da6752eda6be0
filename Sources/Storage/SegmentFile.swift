import Foundation
import StreamLog
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

// The segment file format: one record's encoding and checksum, the in-memory view of a
// segment file (`Segment`, with its sparse index), and the cursor that reads records back.
// The layout is documented on `SegmentLog`.

extension SegmentLog {
    static func encode(_ e: LogEntry, into buf: inout [UInt8]) {
        let start = buf.count
        putU32(&buf, UInt32(e.data.count))
        putU32(&buf, 0)  // the CRC, filled in below
        putU64(&buf, e.index)
        putU64(&buf, e.term)
        buf.append(e.kind.rawValue)
        putU64(&buf, e.timestamp)
        buf.append(contentsOf: e.data)
        let crc = buf.withUnsafeBytes { b in
            recordCRC(UnsafeRawBufferPointer(rebasing: b[start..<buf.count]))
        }
        buf.withUnsafeMutableBytes { $0.storeBytes(of: crc.bigEndian, toByteOffset: start + 4, as: UInt32.self) }
    }

    /// CRC32C over a whole record except its CRC field (bytes 4..<8).
    static func recordCRC(_ record: UnsafeRawBufferPointer) -> UInt32 {
        let lengthCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[0..<4]))
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[8...]), seed: lengthCRC)
    }

}

// ==== ------------------------------------------------------------------------------------
// MARK: Segment and record cursor

/// Where a record sits and what its header says.
struct RecordHeader {
    var index: UInt64
    var term: UInt64
    var kind: LogEntry.Kind
    var timestamp: UInt64
    var offset: Int
    var size: Int
}

/// One segment file and what is known about it in memory. A class so an in-flight sync can
/// hold it (and its fd, closed on deinit) after the log let go of it.
final class Segment {
    struct Point {
        var index: UInt64
        var offset: Int
        var timestamp: UInt64
    }

    let firstIndex: UInt64
    let logPath: String
    let hintPath: String
    let fd: Int32
    /// `firstIndex - 1` while empty.
    var lastIndex: UInt64
    var lastTerm: UInt64 = 0
    var lastTimestamp: UInt64 = 0
    var lastOffset = 0
    /// Bytes of whole, good records.
    var fileSize: Int
    /// The file's size: `fileSize` plus the zeros preallocated after it (active segment only;
    /// a sealed segment is cut to `fileSize`).
    var allocated: Int
    /// The sparse index: the first record, then one every `indexIntervalBytes`.
    var points: [Point] = []
    /// No longer appended to (a later segment exists).
    var sealed = false
    /// Written since the last sync started.
    var dirty = false
    /// Unlinked (cut or trimmed); kept alive only by an in-flight sync.
    var deleted = false

    init(directory: String, firstIndex: UInt64, create: Bool = false) throws {
        let base = directory + "/" + SegmentLog.segmentName(firstIndex)
        self.firstIndex = firstIndex
        logPath = base + ".log"
        hintPath = base + ".idx"
        lastIndex = firstIndex - 1
        fd = create ? open(logPath, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o644) : open(logPath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw DurableFile.errno("open \(logPath)") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            throw DurableFile.errno("stat \(logPath)")
        }
        fileSize = Int(st.st_size)
        allocated = fileSize
    }

    deinit { close(fd) }

    var isEmpty: Bool { lastIndex < firstIndex }

    func resetToEmpty() {
        lastIndex = firstIndex - 1
        lastTerm = 0
        lastTimestamp = 0
        lastOffset = 0
        points = []
        fileSize = 0
    }

    /// Account for a record just written (or found by a scan) at the end of the segment.
    func noteAppended(_ h: RecordHeader, indexIntervalBytes: Int) {
        precondition(
            h.index == lastIndex + 1 && h.offset == fileSize,
            "record \(h.index)@\(h.offset) does not extend \(logPath) (\(lastIndex)@\(fileSize))"
        )
        if points.isEmpty || h.offset - points[points.count - 1].offset >= indexIntervalBytes {
            points.append(Point(index: h.index, offset: h.offset, timestamp: h.timestamp))
        }
        lastIndex = h.index
        lastTerm = h.term
        lastTimestamp = h.timestamp
        lastOffset = h.offset
        fileSize = h.offset + h.size
    }

    /// Forget records from `index` on; the file was cut at byte `offset`; `previous` is the
    /// record before `index` (nil when the segment is now empty).
    func cut(at offset: Int, index: UInt64, previous: RecordHeader?) {
        fileSize = offset
        allocated = offset
        points.removeAll { $0.index >= index }
        lastIndex = index - 1
        lastTerm = previous?.term ?? 0
        lastTimestamp = previous?.timestamp ?? 0
        lastOffset = previous?.offset ?? 0
    }

    /// The sparse-index point to start a scan for `index` from.
    func point(atOrBefore index: UInt64) -> Point {
        var lo = 0
        var hi = points.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if points[mid].index <= index { lo = mid } else { hi = mid - 1 }
        }
        return points[lo]
    }
}

/// Reads records one after another from a segment file through a buffer, checking each one.
struct RecordCursor {
    enum Step {
        case record(RecordHeader, [UInt8])
        case end
        case bad(String)
    }

    let fd: Int32
    /// Bytes of the file that may be read.
    let end: Int
    let recordBytesMax: Int
    let chunk: Int
    private(set) var offset: Int
    private var buffer: [UInt8] = []
    private var bufferStart = 0

    init(fd: Int32, end: Int, offset: Int, recordBytesMax: Int, chunk: Int) {
        self.fd = fd
        self.end = end
        self.offset = offset
        self.recordBytesMax = recordBytesMax
        self.chunk = chunk
    }

    init(_ seg: Segment, from offset: Int, recordBytesMax: Int) {
        self.init(fd: seg.fd, end: seg.fileSize, offset: offset, recordBytesMax: recordBytesMax, chunk: 64 << 10)
    }

    /// The next record; its data is copied out only when its index is at least `dataFrom`
    /// (scans that look at headers do not pay for the payloads).
    mutating func next(dataFrom: UInt64) throws -> Step {
        let left = end - offset
        if left == 0 { return .end }
        // Zeros where a header belongs: the preallocated rest of the file, not a record (no
        // record starts with a zero length, zero CRC and index 0: indexes start at 1). Looked
        // at only when the length field reads zero, not for every record.
        try fill(min(left, SegmentLog.headerBytes))
        let head = offset - bufferStart
        if left < 4 || load32(head) == 0,
            buffer[head..<(head + min(left, SegmentLog.headerBytes))].allSatisfy({ $0 == 0 })
        {
            return .end
        }
        if left < SegmentLog.headerBytes { return .bad("partial header: \(left) bytes") }
        let length = Int(load32(offset - bufferStart))
        if length > recordBytesMax { return .bad("length \(length) above the limit \(recordBytesMax)") }
        let size = SegmentLog.headerBytes + length
        if size > left { return .bad("record of \(size) bytes runs past the end (\(left) left)") }
        try fill(size)  // may move the buffer: positions are taken after it
        let at = offset - bufferStart
        let crcOK = buffer.withUnsafeBytes { b in
            let stored = UInt32(bigEndian: b.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self))
            return SegmentLog.recordCRC(UnsafeRawBufferPointer(rebasing: b[at..<at + size])) == stored
        }
        if !crcOK { return .bad("checksum mismatch") }
        guard let kind = LogEntry.Kind(rawValue: buffer[at + 24]) else { return .bad("unknown kind \(buffer[at + 24])") }
        let header = RecordHeader(
            index: load64(at + 8), term: load64(at + 16), kind: kind, timestamp: load64(at + 25), offset: offset, size: size)
        let data = header.index >= dataFrom ? Array(buffer[(at + SegmentLog.headerBytes)..<(at + size)]) : []
        offset += size
        return .record(header, data)
    }

    /// `next` where only a good record is acceptable (reading inside the known log).
    mutating func nextGood(in seg: Segment, dataFrom: UInt64) throws -> (header: RecordHeader, data: [UInt8]) {
        let at = offset
        switch try next(dataFrom: dataFrom) {
        case .record(let h, let data): return (h, data)
        case .end: throw TandemError(.corrupt, "\(seg.logPath) ends at byte \(at) before index \(seg.lastIndex)")
        case .bad(let reason): throw TandemError(.corrupt, "\(seg.logPath) is corrupt at byte \(at): \(reason)")
        }
    }

    /// Make the buffer hold the `n` bytes at `offset`, reading at least `chunk` bytes at a time.
    private mutating func fill(_ n: Int) throws {
        if offset >= bufferStart && offset + n <= bufferStart + buffer.count { return }
        let want = min(max(n, chunk), end - offset)
        if buffer.count != want { buffer = [UInt8](repeating: 0, count: want) }
        bufferStart = offset
        let got = try DurableFile.preadFully(fd, &buffer, at: offset)
        guard got == want else { throw TandemError(.corrupt, "file shorter than expected: \(got) of \(want) bytes at \(offset)") }
    }

    private func load32(_ at: Int) -> UInt32 {
        buffer.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    }

    private func load64(_ at: Int) -> UInt64 {
        buffer.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
    }
}

@inline(__always) private func putU32(_ buf: inout [UInt8], _ v: UInt32) {
    withUnsafeBytes(of: v.bigEndian) { buf.append(contentsOf: $0) }
}

@inline(__always) private func putU64(_ buf: inout [UInt8], _ v: UInt64) {
    withUnsafeBytes(of: v.bigEndian) { buf.append(contentsOf: $0) }
}
