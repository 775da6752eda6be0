import Foundation
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Disk fault injection: every fsync the node's stores make (LMDB commits, stream segments,
/// Raft hard state, data dir files) goes through `fsync(_:)`, which fails with EIO while
/// `fsyncFails` is set, as a dying disk or a lost iSCSI path would. Set through the chaos API
/// (`POST /v1/chaos {"fsyncFails":true}`, needs `--chaos`); off otherwise.
///
/// Reads fail the same way while `readFailsUnder` is set: every `term(at:)` and `entries` of a
/// stream log whose directory contains that string throws EIO, as an unreadable sector would
/// (`{"readFailsUnder":"/events/"}` picks one stream's replicas). It fails reads the tail cache
/// would have answered too, so a test need not first push entries out of the cache.
///
/// One instance per process (`process`) because the syncs run on libuv's thread pool, far from
/// any node object; a unit test that wants a failing disk of its own passes its own instance.
public final class DiskFaults: @unchecked Sendable {
    public static let process = DiskFaults()

    private let lock = NSLock()
    private var failing = false
    private var count = 0
    private var readFailPattern: String?
    private var readCount = 0

    public init() {}

    public var fsyncFails: Bool {
        get { lock.withLock { failing } }
        set { lock.withLock { failing = newValue } }
    }

    /// fsyncs refused so far.
    public var injected: Int { lock.withLock { count } }

    public var readFailsUnder: String? {
        get { lock.withLock { readFailPattern } }
        set { lock.withLock { readFailPattern = newValue.flatMap { $0.isEmpty ? nil : $0 } } }
    }

    /// Reads refused so far.
    public var injectedReads: Int { lock.withLock { readCount } }

    /// Throws EIO (`.diskFailed`) when reads under `path` must fail now.
    func checkRead(_ path: String) throws {
        let fail = lock.withLock {
            guard let p = readFailPattern, path.contains(p) else { return false }
            readCount += 1
            return true
        }
        if fail { throw TandemError(.diskFailed, "read of \(path): \(String(cString: strerror(EIO))) (injected)") }
    }

    /// `fdatasync(2)`, or -1 with errno EIO while the fault is on.
    public func fdatasync(_ fd: Int32) -> Int32 { injectFailure() ? eio() : Glibc.fdatasync(fd) }

    /// `fsync(2)`, or -1 with errno EIO while the fault is on.
    public func fsync(_ fd: Int32) -> Int32 { injectFailure() ? eio() : Glibc.fsync(fd) }

    private func eio() -> Int32 {
        errno = EIO
        return -1
    }

    /// True (and counted) when a sync must fail now; for stores whose sync is not a plain fsync.
    func injectFailure() -> Bool {
        lock.withLock {
            if failing { count += 1 }
            return failing
        }
    }
}
