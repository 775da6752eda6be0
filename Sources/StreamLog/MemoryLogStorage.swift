/// A `LogStorage` in memory, for tests and the simulator.
///
/// It models a disk that loses unsynced writes on a crash: `append` writes, `sync` makes what
/// was written durable, `dropUnsynced` is the crash. It is pessimistic about truncation: a
/// truncated suffix counts as gone at once, and the new suffix only survives once synced.
public final class MemoryLogStorage: LogStorage {
    private var log: [LogEntry] = []
    /// The position just before the first held entry (index 0, term 0 for a new log).
    public private(set) var boundary = LogPosition(index: 0, term: 0)
    /// Entries through this index survive a crash.
    public private(set) var syncedIndex: UInt64 = 0
    /// While set, every read throws, as a disk that stopped answering would (fault injection
    /// for the core's halting on a failed read).
    public var readsFail = false

    public struct ReadFault: Error, CustomStringConvertible {
        public var description: String { "injected read fault" }
    }

    public init() {}

    public var firstIndex: UInt64 { boundary.index + 1 }
    public var lastIndex: UInt64 { boundary.index + UInt64(log.count) }

    public func term(at index: UInt64) throws -> UInt64? {
        if readsFail { throw ReadFault() }
        return heldTerm(at: index)
    }

    private func heldTerm(at index: UInt64) -> UInt64? {
        if index == boundary.index { return boundary.term }
        guard index > boundary.index, index <= lastIndex else { return nil }
        return log[Int(index - boundary.index - 1)].term
    }

    public func entries(from: UInt64, to: UInt64, maxBytes: Int) throws -> [LogEntry] {
        if readsFail { throw ReadFault() }
        let lo = max(from, firstIndex)
        let hi = min(to, lastIndex)
        guard lo <= hi else { return [] }
        var out: [LogEntry] = []
        var bytes = 0
        for i in lo...hi {
            let e = log[Int(i - boundary.index - 1)]
            if !out.isEmpty && bytes + e.data.count > maxBytes { break }
            bytes += e.data.count
            out.append(e)
        }
        return out
    }

    /// Writes `entries` (a gap-free run), first dropping any held entry at or after the first
    /// one's index — the shell's rule for every `RaftReady.entries`.
    public func append(_ entries: [LogEntry]) {
        guard let first = entries.first else { return }
        precondition(
            first.index >= firstIndex && first.index <= lastIndex + 1,
            "append at \(first.index) to a log holding \(firstIndex)...\(lastIndex)")
        log.removeLast(Int(lastIndex + 1 - first.index))
        syncedIndex = min(syncedIndex, first.index - 1)
        for (k, e) in entries.enumerated() {
            precondition(e.index == first.index + UInt64(k), "append of a run with a gap at \(e.index)")
            log.append(e)
        }
    }

    /// Discards the whole log: it continues after `position` (a follower told `installStart`).
    /// Durable at once, like a rename of a fresh segment directory.
    public func reset(after position: LogPosition) {
        log = []
        boundary = position
        syncedIndex = position.index
    }

    /// Retention: drops entries before `index`, keeping the term of the one before it.
    public func trim(before index: UInt64) {
        guard index > firstIndex else { return }
        let cut = min(index, lastIndex + 1)
        let boundaryTerm = heldTerm(at: cut - 1)!
        log.removeFirst(Int(cut - firstIndex))
        boundary = LogPosition(index: cut - 1, term: boundaryTerm)
        syncedIndex = max(syncedIndex, boundary.index)
    }

    /// fsync: everything written so far survives a crash.
    public func sync() { syncedIndex = lastIndex }

    /// A crash: what was written but not synced is gone.
    public func dropUnsynced() {
        guard syncedIndex < lastIndex else { return }
        log.removeLast(Int(lastIndex - syncedIndex))
    }

    /// The last configuration entry held, if any (what a restarting node passes to `RaftNode`).
    public func lastConfiguration() -> (index: UInt64, configuration: RaftConfiguration)? {
        for e in log.reversed() where e.kind == .configuration {
            if let c = try? RaftConfiguration.decode(e.data) { return (e.index, c) }
        }
        return nil
    }
}
