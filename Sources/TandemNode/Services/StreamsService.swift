import Foundation
import StreamLog
import TandemCore

/// A failed call of the streams service. The REST API answers `status` with
/// `{"error": code, "message": message}`, plus `"retryable"` for the errors that say it
/// (puts, and reads no replica could serve); the Kinesis API maps `status` to its error types.
struct StreamsError: Error, Equatable {
    var status: Int
    var code: String
    var message: String
    var retryable: Bool?

    init(status: Int, code: String, message: String, retryable: Bool? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
    }

    init(_ e: TandemError) { self.init(status: e.code.httpStatus, code: e.code.name, message: e.message) }
    init(_ f: PutFailure) { self.init(status: f.status, code: f.code, message: f.message, retryable: f.retryable) }
    init(_ code: TandemError.Code, _ message: String) { self.init(TandemError(code, message)) }

    static let witness = StreamsError(status: 403, code: "witness", message: "a witness node votes in Raft but serves no clients")
}

/// A stream and, for each partition, what this node knows of it. Members are named by their
/// node ids (names; an address only where an older node's record names a node no member had).
struct StreamDescription {
    var definition: Streams.Definition
    var partitions: [Partition]

    struct Partition {
        var partition: Int
        var replicas: [String]
        var witnesses: [String]
        var preferredLeader: String?
        var state: State

        enum State {
            /// This node holds a replica: the full Raft view (`followers` where it leads).
            case replica(
                role: RaftRole, leader: String?, term: UInt64, commitIndex: UInt64, firstIndex: UInt64, lastIndex: UInt64,
                followers: [Follower]?)
            /// This node's replica is stopped by a disk failure.
            case stopped(reason: String, durableThrough: UInt64)
            /// No replica here: the leader this node last heard of.
            case remote(leader: String?)
        }

        struct Follower {
            var node: String
            var match: UInt64
            var lagEntries: UInt64
        }

        /// The leader as this node knows it (none while its replica is stopped).
        var leader: String? {
            switch state {
            case .replica(_, let leader, _, _, _, _, _): leader
            case .stopped: nil
            case .remote(let leader): leader
            }
        }
    }
}

/// A consumer's checkpoint on one partition.
struct StreamCheckpoint {
    var stream: String
    var consumer: String
    var partition: Int
    /// As stored (formatted).
    var sequence: String
}

/// The streams service: the typed calls the REST API (`StreamsREST`) and the Kinesis API
/// (`KinesisAPI`) translate their wire formats to. Puts are in `StreamsPut.swift`, reads in
/// `StreamsRead.swift`. A witness serves none of them but `list` and `describe`.
extension Streams {
    static let partitionCounts = 1...256
    static let retentionHourRange = 1...8760

    static func validName(_ s: String) -> Bool {
        (1...128).contains(s.utf8.count) && !s.hasPrefix("_")
            && s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "_.-".unicodeScalars.contains($0) }
    }

    static func checkName(_ name: String) throws(StreamsError) {
        guard validName(name) else {
            throw StreamsError(.badRequest, "stream names are 1 to 128 letters, digits, '_', '.' and '-', not starting with '_'")
        }
    }

    /// Witnesses vote in Raft and hold no records: they serve no client calls but `list` and `describe`.
    func requireServing() throws(StreamsError) {
        if isWitness { throw StreamsError.witness }
    }

    func definition(_ name: String) throws(StreamsError) -> Definition {
        guard let d = definitions[name] else { throw StreamsError(.notFound, "no stream '\(name)'") }
        return d
    }

    /// Partition `p` of `d`, or 404.
    static func checkPartition(_ d: Definition, _ p: Int) throws(StreamsError) {
        guard p >= 0 && p < d.partitions else {
            throw StreamsError(.notFound, "stream '\(d.name)' has partitions 0 to \(d.partitions - 1)")
        }
    }

    /// Every stream, by name.
    var streamList: [Definition] { definitions.keys.sorted().map { definitions[$0]! } }

    /// Creates a stream placed over the live members (`Placement.place`). Creating one that
    /// exists with the same settings answers its description (`created` false); with other
    /// settings it is 409 `stream_exists`.
    func createStream(
        _ name: String, partitions: Int, retentionHours: Int,
        _ done: @escaping (Result<(description: StreamDescription, created: Bool), StreamsError>) -> Void
    ) {
        do throws(StreamsError) {
            try Streams.checkName(name)
        } catch {
            return done(.failure(error))
        }
        create(name, partitions: partitions, retentionHours: retentionHours, done)
    }

    /// Creates a stream of the node's own (`_events`, `_dlq.<processor>`): names starting with
    /// `_`, which clients cannot create, read through the ordinary read API.
    func createSystemStream(
        _ name: String, partitions: Int, retentionHours: Int,
        _ done: @escaping (Result<(description: StreamDescription, created: Bool), StreamsError>) -> Void
    ) {
        precondition(name.hasPrefix("_"))
        create(name, partitions: partitions, retentionHours: retentionHours, done)
    }

    /// Whether this node leads partition `p` of `stream` and can propose to it now.
    func leads(_ stream: String, _ p: Int) -> Bool {
        guard let d = definitions[stream] else { return false }
        return partitions[GroupID(stream: d.name, incarnation: d.incarnation, partition: p)]?.canPropose ?? false
    }

    /// This node's replica of partition `p` of `stream`, if it holds one.
    func localPartition(_ stream: String, _ p: Int) -> StreamPartition? {
        guard let d = definitions[stream] else { return nil }
        return partitions[GroupID(stream: d.name, incarnation: d.incarnation, partition: p)]
    }

    private func create(
        _ name: String, partitions: Int, retentionHours: Int,
        _ done: @escaping (Result<(description: StreamDescription, created: Bool), StreamsError>) -> Void
    ) {
        do throws(StreamsError) {
            try requireServing()
            guard Streams.partitionCounts.contains(partitions) else {
                throw StreamsError(.badRequest, "partitions must be an integer in 1...256")
            }
            guard Streams.retentionHourRange.contains(retentionHours) else {
                throw StreamsError(.badRequest, "retentionHours must be an integer in 1...8760")
            }
            if let existing = definitions[name] {
                guard existing.partitions == partitions && existing.retentionHours == retentionHours else {
                    throw StreamsError(status: 409, code: "stream_exists", message: "stream '\(name)' exists with other settings")
                }
                return done(.success((describe(existing), false)))
            }
            let live = members().filter { $0.alive && !$0.left }
            let (voters, witnesses) = Placement.place(
                stream: name, partitions: partitions,
                candidates: live.map { Placement.Candidate($0.id, region: $0.region, witness: $0.role == .witness) })
            guard voters.allSatisfy({ !$0.isEmpty }) else {
                throw StreamsError(.unavailable, "no live non-witness member to place partitions on")
            }
            let d = Definition(
                name: name, partitions: partitions, retentionHours: retentionHours, incarnation: Tables.wallMs(),
                voters: voters, witnesses: witnesses, keyHash: .md5)
            writeDefinition(d) { [weak self] error in
                guard let self else { return }
                if let error { return done(.failure(StreamsError(error))) }
                self.reconcile()
                guard let d = self.definitions[name] else {
                    return done(.failure(StreamsError(status: 500, code: "internal", message: "stream written but not readable")))
                }
                self.logger.info("stream created", metadata: ["stream": "\(name)", "partitions": "\(partitions)"])
                done(.success((self.describe(d), true)))
            }
        } catch {
            done(.failure(error))
        }
    }

    func deleteStream(_ name: String, _ done: @escaping (StreamsError?) -> Void) {
        do throws(StreamsError) {
            try requireServing()
            try Streams.checkWritable(name)
            _ = try definition(name)
        } catch {
            return done(error)
        }
        deleteDefinition(name) { [weak self] error in
            if let error { return done(StreamsError(error)) }
            self?.reconcile()
            done(nil)
        }
    }

    /// Changes how long a stream keeps records: its definition rewritten, replicated like any
    /// catalog write; every replica trims by it from its next retention pass (whole segments:
    /// after a decrease, records in a segment that also holds newer ones stay readable until
    /// the segment ages out).
    func setRetention(_ name: String, hours: Int, _ done: @escaping (StreamsError?) -> Void) {
        var d: Definition
        do throws(StreamsError) {
            try requireServing()
            try Streams.checkWritable(name)
            d = try definition(name)
            guard Streams.retentionHourRange.contains(hours) else {
                throw StreamsError(.badRequest, "retentionHours must be an integer in 1...8760")
            }
        } catch {
            return done(error)
        }
        d.retentionHours = hours
        writeDefinition(d) { [weak self] error in
            if let error { return done(StreamsError(error)) }
            self?.reconcile()
            done(nil)
        }
    }

    private func memberName(_ id: NodeID?) -> String? { id?.rawValue }

    /// The stream and, for each partition, what this node knows: the full Raft view where it
    /// holds a replica (with per-follower lag where it leads), the placement elsewhere.
    func describe(_ d: Definition) -> StreamDescription {
        var parts: [StreamDescription.Partition] = []
        for p in 0..<d.partitions {
            let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
            let state: StreamDescription.Partition.State
            if let part = partitions[gid] {
                let r = part.raft
                let followers =
                    r.role != .leader
                    ? nil
                    : r.progress.keys.sorted().map { f in
                        let match = r.progress[f]!.match
                        return StreamDescription.Partition.Follower(
                            node: memberName(f)!, match: match, lagEntries: r.lastIndex - min(match, r.lastIndex))
                    }
                state = .replica(
                    role: r.role, leader: memberName(r.leader), term: r.term, commitIndex: r.commitIndex,
                    firstIndex: r.firstIndex, lastIndex: r.lastIndex, followers: followers)
            } else if let stopped = stoppedReplicas[gid] {
                state = .stopped(reason: stopped.reason, durableThrough: stopped.durableThrough)
            } else {
                state = .remote(leader: memberName(leaderHints[gid]))
            }
            parts.append(
                .init(
                    partition: p, replicas: d.voters[p].map { memberName($0)! }, witnesses: d.witnesses[p].map { memberName($0)! },
                    preferredLeader: memberName(d.voters[p].first), state: state))
        }
        return StreamDescription(definition: d, partitions: parts)
    }

    // MARK: consumer checkpoints

    /// The stream, partition and consumer a checkpoint call names, checked in that order.
    func checkCheckpoint(_ stream: String, consumer: String, partition p: Int) throws(StreamsError) {
        try requireServing()
        let d = try definition(stream)
        try Streams.checkPartition(d, p)
        guard Streams.validName(consumer) else {
            throw StreamsError(.badRequest, "consumer names are 1 to 128 letters, digits, '_', '.' and '-'")
        }
    }

    /// A consumer's checkpoints on every partition that has one.
    func checkpoints(_ stream: String, consumer: String) throws(StreamsError) -> [StreamCheckpoint] {
        try requireServing()
        let d = try definition(stream)
        return (0..<d.partitions).compactMap { checkpointIfStored(stream, consumer, $0) }
    }

    func checkpoint(_ stream: String, consumer: String, partition p: Int) throws(StreamsError) -> StreamCheckpoint {
        try checkCheckpoint(stream, consumer: consumer, partition: p)
        guard let c = checkpointIfStored(stream, consumer, p) else {
            throw StreamsError(.notFound, "no checkpoint for \(consumer) on \(stream)/\(p)")
        }
        return c
    }

    /// Stores a checkpoint (last writer wins); answers it as then stored (nil if it cannot be read back).
    func setCheckpoint(
        _ stream: String, consumer: String, partition p: Int, sequence: UInt64,
        _ done: @escaping (Result<StreamCheckpoint?, StreamsError>) -> Void
    ) {
        do throws(StreamsError) {
            try checkCheckpoint(stream, consumer: consumer, partition: p)
        } catch {
            return done(.failure(error))
        }
        writeCheckpoint(stream, consumer, p, sequence: sequence) { [weak self] error in
            guard let self else { return }
            if let error { return done(.failure(StreamsError(error))) }
            done(.success(self.checkpointIfStored(stream, consumer, p)))
        }
    }

    private func checkpointIfStored(_ stream: String, _ consumer: String, _ p: Int) -> StreamCheckpoint? {
        storedCheckpoint(stream, consumer, p).map { StreamCheckpoint(stream: stream, consumer: consumer, partition: p, sequence: $0) }
    }

    /// Counts an error a client was answered with (`tandem_stream_errors_total`).
    func countError(_ code: String) {
        stats.errors[code, default: 0] += 1
    }
}
