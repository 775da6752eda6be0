import TandemCore

/// One entry of a partition's replicated log. The Raft index is the record's sequence number,
/// so sequences are strictly increasing within a partition (leader no-ops and configuration
/// changes take indexes too; readers skip them).
public struct LogEntry: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case record = 0  // a stream record; `data` is its encoded key, payload and metadata
        case noop = 1  // written by a new leader to commit entries of earlier terms
        case configuration = 2  // `data` is an encoded voter/witness set
    }

    public var index: UInt64
    public var term: UInt64
    public var kind: Kind
    /// Milliseconds since the epoch, assigned by the leader at proposal (never decreasing
    /// within a partition), so readers can seek by time through the storage's sparse index.
    public var timestamp: UInt64
    public var data: [UInt8]

    public init(index: UInt64, term: UInt64, kind: Kind = .record, timestamp: UInt64 = 0, data: [UInt8] = []) {
        self.index = index
        self.term = term
        self.kind = kind
        self.timestamp = timestamp
        self.data = data
    }
}

/// What the Raft core may read of the durable log. The shell backs it with segment files;
/// tests and the simulator back it with memory. Writes go the other way: the core hands the
/// shell entries to append (in `RaftReady`), and the shell makes them durable.
///
/// The reads that may go to the disk throw (an unreadable or damaged file); the core then
/// halts and says so in its next `RaftReady.storageFailure` (the rule is at the top of
/// Raft.swift). The bounds are kept in memory and cannot fail.
public protocol LogStorage: AnyObject {
    /// First index still held (1 until retention trims the head).
    var firstIndex: UInt64 { get }
    /// Last index held; `firstIndex - 1` when the log is empty.
    var lastIndex: UInt64 { get }
    /// Term of the entry at `index`; also answers for `firstIndex - 1` (the term of the last
    /// trimmed entry, kept so log matching works at the boundary). Nil outside that range.
    func term(at index: UInt64) throws -> UInt64?
    /// Entries in `from...to` (clamped to what is held), stopping once `maxBytes` of data is
    /// collected but always returning at least one entry when any is in range.
    func entries(from: UInt64, to: UInt64, maxBytes: Int) throws -> [LogEntry]
}

/// A `LogStorage` read failed, as the halted core reports it (`RaftReady.storageFailure`).
public struct StorageReadFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "storage read failed: \(message)" }
}

/// Which partition a record key belongs to: FNV-1a 64 of the key's UTF-8 bytes, modulo the
/// partition count. Every node computes the same answer; documented in README so producers
/// can predict it.
public func partition(forKey key: String, partitions: Int) -> Int {
    precondition(partitions > 0)
    return Int(stableHash64(Array(key.utf8)) % UInt64(partitions))
}
