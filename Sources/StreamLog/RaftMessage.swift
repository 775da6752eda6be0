import TandemCore

/// One message between members of a Raft group. The shell frames it (with the stream and
/// partition it belongs to) and carries it over the peer link; `encode`/`decode` are the body.
public struct RaftMessage: Sendable, Equatable {
    public enum Body: Sendable, Equatable {
        /// Pre-vote (Raft thesis §9.6): "would you vote for me in `term`?" — `term` is the
        /// candidate's term + 1, and nobody changes state on it.
        case preVote(lastIndex: UInt64, lastTerm: UInt64)
        /// `term` is the proposed term when granted, the responder's own term when not.
        case preVoteResponse(granted: Bool)
        /// `transfer`: the candidate campaigns because the leader told it to (TimeoutNow), so
        /// followers that still hear from the leader grant it anyway (thesis §3.10).
        case requestVote(lastIndex: UInt64, lastTerm: UInt64, transfer: Bool)
        case voteResponse(granted: Bool)
        /// AppendEntries. `entries` follow `prevIndex` without gaps (checked on decode).
        /// `persisted`: the leader's log was durable through here when it sent this (it replicates
        /// before its own fsync, so this often trails the entries); see `persisted(index:)`.
        case append(prevIndex: UInt64, prevTerm: UInt64, entries: [LogEntry], commit: UInt64, persisted: UInt64)
        /// On success `index` is the last index the follower now holds durably that matches the
        /// leader; on rejection it is the `prevIndex` that did not match, and `hintIndex`/`hintTerm`
        /// say where the follower's log could match (fast backtracking, etcd's `findConflictByTerm`).
        case appendResponse(success: Bool, index: UInt64, hintIndex: UInt64, hintTerm: UInt64)
        /// Keeps followers from campaigning; `commit` is at most what that follower has.
        case heartbeat(commit: UInt64)
        case heartbeatResponse
        /// The follower is behind the leader's first retained entry: discard its log and continue
        /// after (`index`, `term`). Records before it have expired, so nothing else is sent.
        case installStart(index: UInt64, term: UInt64, configuration: RaftConfiguration)
        /// Leadership transfer: campaign now, without pre-vote.
        case timeoutNow
        /// The leader's log is now durable through `index` (sent after its fsync, to a follower
        /// that got those entries before they were durable). With the follower's own copy that
        /// is two holders; where two are a majority the follower knows they are committed
        /// without waiting for the leader to count its ack (see `RaftNode.commitFromLeaderDurability`).
        case persisted(index: UInt64)
        /// The leader's newest configuration, at `configurationIndex`, has committed and does not
        /// hold the node that asked for a vote: a member removed while it was down (so it never got
        /// the removing entry) learns that it is out and may drop its data (`RaftNode.isRemoved`).
        case removed(configurationIndex: UInt64)
    }

    public var from: NodeID
    public var term: UInt64
    public var body: Body

    public init(from: NodeID, term: UInt64, body: Body) {
        self.from = from
        self.term = term
        self.body = body
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Codec

    public static let version: UInt8 = 2
    /// More entries than any batch the leader builds (`RaftSettings.maxBatchBytes` stops it first).
    public static let maxEntries = 65_535
    /// One record's data; the shell rejects larger puts before they reach Raft.
    public static let maxEntryBytes = 4 << 20
    /// An encoded entry is at least index, term, kind, timestamp and a data length.
    static let minEntrySize = 8 + 8 + 1 + 8 + 4

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.u8(RaftMessage.version)
        w.nodeID(from)
        w.u64(term)
        switch body {
        case .preVote(let lastIndex, let lastTerm):
            w.u8(1)
            w.u64(lastIndex)
            w.u64(lastTerm)
        case .preVoteResponse(let granted):
            w.u8(2)
            w.bool(granted)
        case .requestVote(let lastIndex, let lastTerm, let transfer):
            w.u8(3)
            w.u64(lastIndex)
            w.u64(lastTerm)
            w.bool(transfer)
        case .voteResponse(let granted):
            w.u8(4)
            w.bool(granted)
        case .append(let prevIndex, let prevTerm, let entries, let commit, let persisted):
            w.u8(5)
            w.u64(prevIndex)
            w.u64(prevTerm)
            w.u64(commit)
            w.u64(persisted)
            w.u16(UInt16(entries.count))
            for e in entries {
                w.u64(e.index)
                w.u64(e.term)
                w.u8(e.kind.rawValue)
                w.u64(e.timestamp)
                w.blob(e.data)
            }
        case .appendResponse(let success, let index, let hintIndex, let hintTerm):
            w.u8(6)
            w.bool(success)
            w.u64(index)
            w.u64(hintIndex)
            w.u64(hintTerm)
        case .heartbeat(let commit):
            w.u8(7)
            w.u64(commit)
        case .heartbeatResponse:
            w.u8(8)
        case .installStart(let index, let term, let configuration):
            w.u8(9)
            w.u64(index)
            w.u64(term)
            configuration.encode(into: &w)
        case .timeoutNow:
            w.u8(10)
        case .persisted(let index):
            w.u8(11)
            w.u64(index)
        case .removed(let index):
            w.u8(12)
            w.u64(index)
        }
        return w.bytes
    }

    /// Decodes one message. Anything malformed throws; nothing allocates beyond the limits above.
    public static func decode(_ bytes: [UInt8]) throws(TandemError) -> RaftMessage {
        var r = ByteReader(bytes)
        let version = try r.u8()
        guard version == RaftMessage.version else {
            throw TandemError(.unsupportedVersion, "raft message version \(version)")
        }
        let from = try r.nodeID()
        let term = try r.u64()
        let body: Body
        switch try r.u8() {
        case 1: body = .preVote(lastIndex: try r.u64(), lastTerm: try r.u64())
        case 2: body = .preVoteResponse(granted: try r.bool())
        case 3: body = .requestVote(lastIndex: try r.u64(), lastTerm: try r.u64(), transfer: try r.bool())
        case 4: body = .voteResponse(granted: try r.bool())
        case 5:
            let prevIndex = try r.u64()
            let prevTerm = try r.u64()
            let commit = try r.u64()
            let persisted = try r.u64()
            let n = try r.count16(limit: maxEntries, minElementSize: minEntrySize)
            var entries: [LogEntry] = []
            entries.reserveCapacity(n)
            for k in 0..<n {
                let index = try r.u64()
                // The follower's log-matching logic relies on a gap-free run after prevIndex.
                guard prevIndex < UInt64.max - UInt64(n), index == prevIndex + 1 + UInt64(k) else {
                    throw TandemError(.malformed, "append entry \(index) does not follow \(prevIndex) at \(k)")
                }
                let entryTerm = try r.u64()
                guard let kind = LogEntry.Kind(rawValue: try r.u8()) else {
                    throw TandemError(.malformed, "unknown log entry kind")
                }
                let timestamp = try r.u64()
                let data = try r.blob(limit: maxEntryBytes)
                entries.append(LogEntry(index: index, term: entryTerm, kind: kind, timestamp: timestamp, data: data))
            }
            body = .append(prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit, persisted: persisted)
        case 6:
            body = .appendResponse(success: try r.bool(), index: try r.u64(), hintIndex: try r.u64(), hintTerm: try r.u64())
        case 7: body = .heartbeat(commit: try r.u64())
        case 8: body = .heartbeatResponse
        case 9:
            body = .installStart(index: try r.u64(), term: try r.u64(), configuration: try RaftConfiguration.decode(from: &r))
        case 10: body = .timeoutNow
        case 11: body = .persisted(index: try r.u64())
        case 12: body = .removed(configurationIndex: try r.u64())
        case let t: throw TandemError(.malformed, "unknown raft message type \(t)")
        }
        guard r.isAtEnd else { throw TandemError(.malformed, "\(r.remaining) trailing bytes after raft message") }
        return RaftMessage(from: from, term: term, body: body)
    }
}

extension RaftConfiguration {
    /// Limits a peer cannot exceed: no Raft group has more members than this.
    public static let maxMembers = 64

    func encode(into w: inout ByteWriter) {
        w.u16(UInt16(voters.count))
        for v in voters { w.nodeID(v) }
        w.u16(UInt16(witnesses.count))
        for v in witnesses { w.nodeID(v) }
    }

    static func decode(from r: inout ByteReader) throws(TandemError) -> RaftConfiguration {
        var voters: [NodeID] = []
        for _ in 0..<(try r.count16(limit: maxMembers, minElementSize: 1)) { voters.append(try r.nodeID()) }
        var witnesses: [NodeID] = []
        for _ in 0..<(try r.count16(limit: maxMembers, minElementSize: 1)) { witnesses.append(try r.nodeID()) }
        guard Set(voters + witnesses).count == voters.count + witnesses.count else {
            throw TandemError(.malformed, "configuration lists a member twice")
        }
        return RaftConfiguration(voters: voters, witnesses: witnesses)
    }

    /// The payload of a `.configuration` log entry.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        encode(into: &w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(TandemError) -> RaftConfiguration {
        var r = ByteReader(bytes)
        let c = try decode(from: &r)
        guard r.isAtEnd else { throw TandemError(.malformed, "trailing bytes after configuration") }
        return c
    }
}
