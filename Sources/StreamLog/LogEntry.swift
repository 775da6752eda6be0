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
/// can predict it. The rule of streams created before `KeyHash.md5` (they keep it).
public func partition(forKey key: String, partitions: Int) -> Int {
    precondition(partitions > 0)
    return Int(stableHash64(Array(key.utf8)) % UInt64(partitions))
}

/// A stream's rule from record key to partition, recorded with the stream so it never changes
/// under it (records of one key stay in one partition, in order).
public enum KeyHash: String, Sendable {
    /// `partition(forKey:partitions:)`: streams created before Kinesis's rule was adopted.
    case fnv1a
    /// Kinesis's rule: the MD5 of the key, read as a 128-bit big-endian integer (the hash key),
    /// falls in one partition's HashKeyRange: the 2^128 hash keys split evenly, partition `p`
    /// starting at `p × ⌊2^128 / n⌋` (as Kinesis splits a new stream), the last taking the rest.
    /// Client code that computes shards, or aggregates records per shard, agrees with it.
    case md5

    public func partition(forKey key: String, partitions: Int) -> Int {
        switch self {
        case .fnv1a: StreamLog.partition(forKey: key, partitions: partitions)
        case .md5: KeyHash.partition(hashKey: KeyHash.hashKey(key), partitions: partitions)
        }
    }

    /// The 128-bit hash key of a partition key, as Kinesis computes it.
    public static func hashKey(_ key: String) -> UInt128 {
        MD5.digest(Array(key.utf8)).reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
    }

    /// The first hash key of each partition but the first is a multiple of this: ⌊2^128 / n⌋.
    public static func step(_ partitions: Int) -> UInt128 {
        precondition(partitions > 0)
        guard partitions > 1 else { return .max }  // one partition holds every hash key
        let n = UInt128(partitions)
        // 2^128 does not fit: ⌊(2^128 − 1) / n⌋, plus one when n divides 2^128.
        return UInt128.max / n + (UInt128.max % n == n - 1 ? 1 : 0)
    }

    /// The partition whose HashKeyRange holds `hashKey` (any stream's: ExplicitHashKey).
    public static func partition(hashKey: UInt128, partitions: Int) -> Int {
        Int(min(hashKey / step(partitions), UInt128(partitions - 1)))
    }

    /// Partition `p`'s HashKeyRange.
    public static func range(_ p: Int, partitions: Int) -> ClosedRange<UInt128> {
        let step = step(partitions)
        return step * UInt128(p)...(p == partitions - 1 ? UInt128.max : step * UInt128(p + 1) - 1)
    }
}
