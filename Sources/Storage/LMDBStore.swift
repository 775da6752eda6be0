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
    /// One change in a commit.
    public enum Op: Sendable {
        case put([UInt8], [UInt8])
        case delete([UInt8])
        /// Every key that starts with these bytes.
        case deletePrefix([UInt8])
    }

    private var env: OpaquePointer?
    private var dbi: MDB_dbi = 0
    /// The loop thread's read transaction (`get`, `range`): a snapshot of the last commit,
    /// renewed by `refresh` (the group committer does it before it reports a commit, so a
    /// reader never misses what was acknowledged).
    private var reader: OpaquePointer?
    private let faults: DiskFaults
    /// The longest key LMDB takes (its default build, `mdb_env_get_maxkeysize`); a longer one
    /// fails the whole transaction with MDB_BAD_VALSIZE, so callers keep their keys within it.
    public static let maxKeyBytes = 511

    public init(path: String, mapSizeBytes: Int = 16 << 30, faults: DiskFaults = .process) throws {
        self.faults = faults
        try check(mdb_env_create(&env), "create environment")
        try check(mdb_env_set_maxdbs(env, 4), "set max dbs")
        try check(mdb_env_set_mapsize(env, mapSizeBytes), "set map size")
        // MDB_NOTLS: read transactions are not tied to threads, so the loop's long-lived reader
        // and a scan at start can coexist.
        try check(mdb_env_open(env, path, UInt32(MDB_NOTLS), 0o644), "open \(path)")
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn), "begin")
        try check(mdb_dbi_open(txn, "data", UInt32(MDB_CREATE), &dbi), "open db")
        try check(mdb_txn_commit(txn), "commit")
    }

    deinit {
        if reader != nil { mdb_txn_abort(reader) }
        mdb_env_close(env)
    }

    /// Makes the last commit visible to `get` and `range` (loop thread).
    public func refresh() throws {
        if let reader {
            mdb_txn_reset(reader)
            let rc = mdb_txn_renew(reader)
            if rc != 0 {
                mdb_txn_abort(reader)
                self.reader = nil
                try check(rc, "renew read")
            }
        } else {
            try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &reader), "begin read")
        }
    }

    private func readTxn() throws -> OpaquePointer? {
        if reader == nil { try refresh() }
        return reader
    }

    /// The value at `key` as of the last `refresh` (loop thread).
    public func get(_ key: [UInt8]) throws -> [UInt8]? {
        let txn = try readTxn()
        var keyBytes = key
        var v = MDB_val()
        let rc: Int32 = keyBytes.withUnsafeMutableBytes { kp in
            var k = MDB_val(mv_size: kp.count, mv_data: kp.baseAddress)
            return mdb_get(txn, dbi, &k, &v)
        }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "get")
        return Array(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    /// Up to `limit` pairs in key order (or its reverse) from `start` (or past it, if `after`),
    /// while keys start with `prefix`, as of the last `refresh` (loop thread).
    public func range(
        from start: [UInt8], after: Bool = false, descending: Bool = false, prefix: [UInt8], limit: Int, valueBytes: Int = .max
    ) throws -> [(key: [UInt8], value: [UInt8])] {
        let txn = try readTxn()
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, dbi, &cursor), "cursor")
        defer { mdb_cursor_close(cursor) }
        var out: [(key: [UInt8], value: [UInt8])] = []
        var startCopy = start
        var k = MDB_val(mv_size: start.count, mv_data: nil)
        var v = MDB_val()
        var rc: Int32 = startCopy.withUnsafeMutableBytes { p in
            k.mv_data = p.baseAddress
            return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
        }
        if descending {
            // At the first key ≥ start: step back unless it is start itself and included.
            if rc == MDB_NOTFOUND {
                rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST)
            } else if rc == 0 {
                let at = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
                if after || !at.elementsEqual(start) { rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV) }
            }
        }
        while rc == 0 && out.count < limit {
            let key = Array(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size))
            guard key.starts(with: prefix) else { break }
            if !(after && key == start) {
                out.append((key, Array(UnsafeRawBufferPointer(start: v.mv_data, count: min(v.mv_size, valueBytes)))))
            }
            rc = mdb_cursor_get(cursor, &k, &v, descending ? MDB_PREV : MDB_NEXT)
        }
        guard rc == 0 || rc == MDB_NOTFOUND else { try check(rc, "range"); return out }
        return out
    }

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

    /// Applies the ops in one transaction and syncs it.
    public func commit(_ ops: [Op]) throws {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn), "begin write")
        for op in ops {
            var rc: Int32
            switch op {
            case .put(var key, var value):
                rc = key.withUnsafeMutableBytes { kp in
                    var k = MDB_val(mv_size: kp.count, mv_data: kp.baseAddress)
                    return value.withUnsafeMutableBytes { vp in
                        var v = MDB_val(mv_size: vp.count, mv_data: vp.baseAddress)
                        return mdb_put(txn, dbi, &k, &v, 0)
                    }
                }
            case .delete(var key):
                rc = key.withUnsafeMutableBytes { kp in
                    var k = MDB_val(mv_size: kp.count, mv_data: kp.baseAddress)
                    return mdb_del(txn, dbi, &k, nil)
                }
                if rc == MDB_NOTFOUND { rc = 0 }
            case .deletePrefix(let prefix):
                rc = deletePrefix(prefix, txn)
            }
            if rc != 0 {
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

extension LMDBStore {
    private func deletePrefix(_ prefix: [UInt8], _ txn: OpaquePointer?) -> Int32 {
        var cursor: OpaquePointer?
        var rc = mdb_cursor_open(txn, dbi, &cursor)
        guard rc == 0 else { return rc }
        defer { mdb_cursor_close(cursor) }
        var start = prefix
        var k = MDB_val(mv_size: prefix.count, mv_data: nil)
        var v = MDB_val()
        rc = start.withUnsafeMutableBytes { p in
            k.mv_data = p.baseAddress
            return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
        }
        while rc == 0 {
            let key = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            guard key.starts(with: prefix) else { break }
            rc = mdb_cursor_del(cursor, 0)
            guard rc == 0 else { return rc }
            // Seek again rather than rely on where a delete leaves the cursor.
            k = MDB_val(mv_size: prefix.count, mv_data: nil)
            rc = start.withUnsafeMutableBytes { p in
                k.mv_data = p.baseAddress
                return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
            }
        }
        return rc == MDB_NOTFOUND ? 0 : rc
    }
}

/// Group commit: writes that arrive while a commit is running wait and go together in the
/// next one, so many writers share one fsync. Commits run on libuv's thread pool; completions
/// run on the loop thread, in submission order.
public final class GroupCommitter {
    public typealias Write = LMDBStore.Op

    private final class Batch: @unchecked Sendable {
        let store: LMDBStore
        let make: [@Sendable () -> [Write]]
        var count = 0
        var error: TandemError?
        init(store: LMDBStore, make: [@Sendable () -> [Write]]) {
            self.store = store
            self.make = make
        }
    }

    private let loop: EventLoop
    private let store: LMDBStore
    private var waiting: [(make: @Sendable () -> [Write], done: (TandemError?) -> Void)] = []
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
        submit({ writes }, done)
    }

    /// `make` runs on the thread pool, where the commit does: building the records of a batch
    /// (keys, index entries) is then off the loop.
    public func submit(_ make: @escaping @Sendable () -> [Write], _ done: @escaping (TandemError?) -> Void) {
        waiting.append((make, done))
        if running == nil { startBatch() }
    }

    private func startBatch() {
        guard !waiting.isEmpty else { return }
        let taken = waiting
        waiting = []
        running = taken.map { $0.done }
        let batch = Batch(store: store, make: taken.map { $0.make })
        loop.work(
            {
                do {
                    let writes = batch.make.flatMap { $0() }
                    batch.count = writes.count
                    try batch.store.commit(writes)
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
            // Reads see the commit before anyone hears of it. The commit is durable: if reads
            // cannot be brought up to it, reporting a failure would undo in memory what the disk
            // holds, so the node stops instead (a restart reads the disk as it is).
            do { try store.refresh() } catch { fatalError("LMDB read view cannot be renewed after a commit: \(error)") }
        }
        if batch.error == nil {
            commits += 1
            writesCommitted += batch.count
        } else {
            failures += 1
        }
        for d in done { d(batch.error) }
        startBatch()
    }
}
