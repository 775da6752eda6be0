import CLMDB
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// The node's durable key-value store: one LMDB environment in the data dir. A committed write
/// transaction is on disk (LMDB syncs on commit), so a write acknowledged after `commit` survives
/// `kill -9` and power loss.
public final class LMDBStore: @unchecked Sendable {
    private var env: OpaquePointer?
    private var dbi: MDB_dbi = 0
    private let faults: DiskFaults
    /// The longest key LMDB takes (its default build, `mdb_env_get_maxkeysize`); a longer one
    /// fails the whole transaction with MDB_BAD_VALSIZE, so callers keep their keys within it.
    public static let maxKeyBytes = 511

    public init(path: String, mapSizeBytes: Int = 16 << 30, faults: DiskFaults = .process) throws {
        self.faults = faults
        try check(mdb_env_create(&env), "create environment")
        try check(mdb_env_set_maxdbs(env, 4), "set max dbs")
        try check(mdb_env_set_mapsize(env, mapSizeBytes), "set map size")
        try check(mdb_env_open(env, path, 0, 0o644), "open \(path)")
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn), "begin")
        try check(mdb_dbi_open(txn, "data", UInt32(MDB_CREATE), &dbi), "open db")
        try check(mdb_txn_commit(txn), "commit")
    }

    deinit { mdb_env_close(env) }

    private func check(_ rc: Int32, _ what: String) throws {
        guard rc == 0 else {
            // A full disk (or quota) is its own answer: 507, and it clears when space returns.
            if rc == ENOSPC || rc == EDQUOT || rc == MDB_MAP_FULL {
                throw TandemError(.diskFull, "lmdb \(what): \(String(cString: mdb_strerror(rc))); write not made, retry when space returns")
            }
            // A failed fsync in the commit: LMDB aborted the transaction (the meta page that
            // would publish it was not written), so nothing changed on disk.
            if rc == EIO {
                throw TandemError(
                    .diskFailed,
                    "lmdb \(what): fsync failed (\(String(cString: mdb_strerror(rc)))); the write is not durable and was not acknowledged; retry when the disk recovers"
                )
            }
            throw TandemError(.io, "lmdb \(what): \(String(cString: mdb_strerror(rc)))")
        }
    }

    /// Every pair whose key starts with `prefix`, in key order.
    public func scan(prefix: [UInt8]) throws -> [(key: [UInt8], value: [UInt8])] {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "begin read")
        defer { mdb_txn_abort(txn) }
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, dbi, &cursor), "cursor")
        defer { mdb_cursor_close(cursor) }
        var out: [(key: [UInt8], value: [UInt8])] = []
        var prefixCopy = prefix
        var k = MDB_val(mv_size: prefix.count, mv_data: nil)
        var v = MDB_val()
        var rc: Int32 = prefixCopy.withUnsafeMutableBytes { p in
            k.mv_data = p.baseAddress
            return prefix.isEmpty ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST) : mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
        }
        while rc == 0 {
            let key = Array(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size))
            guard key.starts(with: prefix) else { break }
            out.append((key, Array(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))))
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        guard rc == 0 || rc == MDB_NOTFOUND else { try check(rc, "scan"); return out }
        return out
    }

    /// Applies puts (value) and deletes (nil) in one transaction and syncs it.
    public func commit(_ writes: [(key: [UInt8], value: [UInt8]?)]) throws {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn), "begin write")
        for (key, value) in writes {
            var keyBytes = key
            let rc: Int32 = keyBytes.withUnsafeMutableBytes { kp in
                var k = MDB_val(mv_size: kp.count, mv_data: kp.baseAddress)
                guard var valueBytes = value else { return mdb_del(txn, dbi, &k, nil) }
                return valueBytes.withUnsafeMutableBytes { vp in
                    var v = MDB_val(mv_size: vp.count, mv_data: vp.baseAddress)
                    return mdb_put(txn, dbi, &k, &v, 0)
                }
            }
            if rc != 0 && !(value == nil && rc == MDB_NOTFOUND) {
                mdb_txn_abort(txn)
                try check(rc, "write")
            }
        }
        // The injected fault fails the commit where LMDB's own data fsync would: LMDB then
        // aborts the transaction before writing the meta page, so nothing becomes visible or
        // durable, and the next commit starts from the last good state.
        if faults.injectFailure() {
            mdb_txn_abort(txn)
            try check(EIO, "commit")
        }
        try check(mdb_txn_commit(txn), "commit")
    }
}

/// Group commit: writes that arrive while a commit is running wait and go together in the
/// next one, so many writers share one fsync. Commits run on libuv's thread pool; completions
/// run on the loop thread, in submission order.
public final class GroupCommitter {
    public typealias Write = (key: [UInt8], value: [UInt8]?)

    private final class Batch: @unchecked Sendable {
        let store: LMDBStore
        let writes: [Write]
        var error: TandemError?
        init(store: LMDBStore, writes: [Write]) {
            self.store = store
            self.writes = writes
        }
    }

    private let loop: EventLoop
    private let store: LMDBStore
    private var waiting: [(writes: [Write], done: (TandemError?) -> Void)] = []
    private var running: [(TandemError?) -> Void]?
    public private(set) var commits = 0
    public private(set) var writesCommitted = 0
    public private(set) var failures = 0
    /// Submissions waiting for a commit, including the one running.
    public var queuedWrites: Int { waiting.count + (running?.count ?? 0) }

    public init(loop: EventLoop, store: LMDBStore) {
        self.loop = loop
        self.store = store
    }

    public func submit(_ writes: [Write], _ done: @escaping (TandemError?) -> Void) {
        waiting.append((writes, done))
        if running == nil { startBatch() }
    }

    private func startBatch() {
        guard !waiting.isEmpty else { return }
        let taken = waiting
        waiting = []
        running = taken.map(\.done)
        let batch = Batch(store: store, writes: taken.flatMap(\.writes))
        loop.work(
            {
                do {
                    try batch.store.commit(batch.writes)
                } catch let e as TandemError {
                    batch.error = e
                } catch {
                    batch.error = TandemError(.io, "\(error)")
                }
            }, then: { [weak self] in self?.finish(batch) })
    }

    private func finish(_ batch: Batch) {
        let done = running ?? []
        running = nil
        if batch.error == nil {
            commits += 1
            writesCommitted += batch.writes.count
        } else {
            failures += 1
        }
        for d in done { d(batch.error) }
        startBatch()
    }
}
