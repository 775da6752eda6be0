import Foundation
import StreamLog
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// The hard state of one Raft group (the core's `HardState`: term, vote, commit index) in a
/// small file:
/// `magic "TRHS" | version u8 | term u64 | commit u64 | hasVote u8 | vote shortString? | crc32c u32`
/// (big-endian, CRC over everything before it). Every store replaces the whole file through
/// temp + fsync + rename + directory fsync, so a crash leaves the old or the new state, never a
/// mix; the CRC catches a file damaged afterwards.
public struct RaftHardStateFile: Sendable {
    static let magic: UInt32 = 0x5452_4853  // "TRHS"
    static let version: UInt8 = 1

    public let path: String

    /// Where the write's fsyncs go (fault injection).
    public let faults: DiskFaults

    public init(path: String, faults: DiskFaults = .process) {
        self.path = path
        self.faults = faults
    }

    /// The stored state, or nil when the file does not exist (a new group).
    public func load() throws -> HardState? {
        guard let bytes = try DurableFile.read(path, limit: 4096) else { return nil }
        do {
            var r = try DurableFile.checkedBody(bytes, magic: Self.magic, version: Self.version)
            let term = try r.u64()
            let commit = try r.u64()
            let vote = try r.bool() ? try r.nodeID() : nil
            guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes") }
            return HardState(term: term, vote: vote, commit: commit)
        } catch {
            throw TandemError(.corrupt, "Raft hard state \(path) is unreadable: \(error)")
        }
    }

    public func store(_ state: HardState) throws {
        var w = ByteWriter(capacity: 64)
        w.u32(Self.magic)
        w.u8(Self.version)
        w.u64(state.term)
        w.u64(state.commit)
        if let vote = state.vote {
            guard ByteWriter.fitsShortString(vote.rawValue) else { throw TandemError(.invalidArgument, "vote name too long") }
            w.bool(true)
            w.nodeID(vote)
        } else {
            w.bool(false)
        }
        try DurableFile.write(path, DurableFile.sealed(w), faults: faults)
    }
}

/// The configuration entries of one partition's log, oldest first (`configurations`).
public struct RaftConfigurationFile: Sendable {
    public struct Record: Sendable, Equatable {
        public var index: UInt64
        public var term: UInt64
        public var configuration: RaftConfiguration
        public init(index: UInt64, term: UInt64, configuration: RaftConfiguration) {
            self.index = index
            self.term = term
            self.configuration = configuration
        }
    }
    static let magic: UInt32 = 0x5452_4346  // "TRCF"
    static let version: UInt8 = 1

    public let path: String
    /// Where the write's fsyncs go (fault injection).
    public let faults: DiskFaults

    public init(path: String, faults: DiskFaults = .process) {
        self.path = path
        self.faults = faults
    }

    public func load() throws -> [Record] {
        guard let bytes = try DurableFile.read(path, limit: 1 << 20) else { return [] }
        do {
            var r = try DurableFile.checkedBody(bytes, magic: Self.magic, version: Self.version)
            var out: [Record] = []
            for _ in 0..<(try r.u32()) {
                let index = try r.u64()
                let term = try r.u64()
                out.append(Record(index: index, term: term, configuration: try RaftConfiguration.decode(try r.blob(limit: 1 << 16))))
            }
            guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes") }
            return out
        } catch {
            throw TandemError(.corrupt, "Raft configurations \(path) are unreadable: \(error)")
        }
    }

    public func store(_ records: [Record]) throws {
        var w = ByteWriter(capacity: 64 + records.count * 128)
        w.u32(Self.magic)
        w.u8(Self.version)
        w.u32(UInt32(records.count))
        for rec in records {
            w.u64(rec.index)
            w.u64(rec.term)
            w.blob(rec.configuration.encoded())
        }
        try DurableFile.write(path, DurableFile.sealed(w), faults: faults)
    }
}

extension TandemError.Code {
    /// Data on disk failed a checksum or a structural check where a crash cannot explain it.
    public static let corrupt = TandemError.Code("corrupt", httpStatus: 500)
}

/// Small whole files written atomically and durably, with a trailing CRC32C.
public enum DurableFile {
    static func errno(_ what: String) -> TandemError {
        let e = Glibc.errno
        // A full disk clears when space returns, a failed write or fsync when the disk does;
        // each has its own answer (507, 503) rather than a bare 500.
        let code: TandemError.Code =
            switch e {
            case ENOSPC, EDQUOT: .diskFull
            case EIO: .diskFailed
            default: .io
            }
        return TandemError(code, "\(what): \(String(cString: strerror(e)))")
    }

    /// Append the CRC32C of everything written so far.
    static func sealed(_ w: ByteWriter) -> [UInt8] {
        var w = w
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Check the trailing CRC, magic and version; returns a reader positioned after them.
    static func checkedBody(_ bytes: [UInt8], magic: UInt32, version: UInt8) throws -> ByteReader {
        guard bytes.count >= 9 else { throw TandemError(.malformed, "file of \(bytes.count) bytes is too short") }
        var tail = ByteReader(bytes, from: bytes.count - 4)
        guard try tail.u32() == CRC32C.checksum(bytes[..<(bytes.count - 4)]) else {
            throw TandemError(.malformed, "checksum mismatch")
        }
        var r = ByteReader(bytes, to: bytes.count - 4)
        guard try r.u32() == magic else { throw TandemError(.malformed, "bad magic") }
        let v = try r.u8()
        guard v == version else { throw TandemError(.unsupportedVersion, "version \(v)") }
        return r
    }

    /// The whole file, nil when it does not exist; a file above `limit` bytes is refused
    /// rather than read (a small file that grew is damage, not data).
    static func read(_ path: String, limit: Int) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if Glibc.errno == ENOENT { return nil }
            throw errno("open \(path)")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw errno("stat \(path)") }
        guard Int(st.st_size) <= limit else { throw TandemError(.corrupt, "\(path) is \(st.st_size) bytes, limit \(limit)") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        guard try preadFully(fd, &bytes, at: 0) == bytes.count else { throw TandemError(.io, "short read of \(path)") }
        return bytes
    }

    /// Write to a temporary file, fsync it, rename over the target, fsync the directory: a crash
    /// at any instant leaves either the old or the new content (DataDir.writeDurably, for bytes).
    public static func write(_ path: String, _ bytes: [UInt8], faults: DiskFaults = .process) throws {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw errno("open \(tmp)") }
        do {
            try pwriteFully(fd, bytes, at: 0)
            guard faults.fsync(fd) == 0 else { throw errno("fsync \(tmp)") }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        guard rename(tmp, path) == 0 else { throw errno("rename \(tmp)") }
        try syncDirectory(of: path, faults: faults)
    }

    static func syncDirectory(of path: String, faults: DiskFaults = .process) throws {
        let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw errno("open directory of \(path)") }
        defer { close(dir) }
        guard faults.fsync(dir) == 0 else { throw errno("fsync directory of \(path)") }
    }

    /// pwrite until everything is written (a regular file may still take a short write).
    static func pwriteFully(_ fd: Int32, _ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done))
                if n < 0 {
                    if Glibc.errno == EINTR { continue }
                    throw errno("pwrite")
                }
                done += n
            }
        }
    }

    /// pread until `bytes` is full or the file ends; returns how many bytes were read.
    static func preadFully(_ fd: Int32, _ bytes: inout [UInt8], at offset: Int) throws -> Int {
        try bytes.withUnsafeMutableBytes { buf in
            var done = 0
            while done < buf.count {
                let n = pread(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done))
                if n < 0 {
                    if Glibc.errno == EINTR { continue }
                    throw errno("pread")
                }
                if n == 0 { break }
                done += n
            }
            return done
        }
    }
}
