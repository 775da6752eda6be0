import StreamLog
import TandemCore
import Transport

/// One put's outcome for one record: its partition, and its sequence number or why it failed.
struct PutOutcome {
    var partition: Int
    var result: Result<UInt64, PutFailure>
}

/// The put path: records go to their partition's leader (here, or forwarded), answered after commit.
extension Streams {
    /// Streams only the node itself writes: the contact center's command log (`_cc`), whose
    /// every record is a command its leader checked before proposing (a record put from outside
    /// would be a command nobody checked).
    static let nodeOnlyStreams: Set<String> = ["_cc"]

    static func checkWritable(_ stream: String) throws(StreamsError) {
        guard !nodeOnlyStreams.contains(stream) else {
            throw StreamsError(status: 403, code: "reserved", message: "stream '\(stream)' is written only by the node itself")
        }
    }

    /// Puts one record (`record` is `StreamRecord.encode`d; its partition is its key's by the
    /// stream's rule, or the one whose HashKeyRange holds `hashKey`): a failure is the call's failure.
    func putRecord(
        _ stream: String, key: String, hashKey: UInt128? = nil, record: [UInt8],
        _ done: @escaping (Result<(partition: Int, sequence: UInt64), StreamsError>) -> Void
    ) {
        let d: Definition
        do throws(StreamsError) {
            try requireServing()
            try Streams.checkWritable(stream)
            d = try definition(stream)
        } catch {
            return done(.failure(error))
        }
        let p =
            hashKey.map { KeyHash.partition(hashKey: $0, partitions: d.partitions) }
            ?? d.keyHash.partition(forKey: key, partitions: d.partitions)
        let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
        submit(gid, [record], deadline: loop.now + Streams.noLeaderWait, hops: 0) { result in
            switch result {
            case .success(let range): done(.success((p, range.lowerBound)))
            case .failure(let f): done(.failure(StreamsError(f)))
            }
        }
    }

    /// Puts a batch: one proposal per partition, records in request order within it; each
    /// record's outcome in request order (some may fail while others succeed).
    func putRecords(
        _ stream: String, _ records: [(key: String, hashKey: UInt128?, record: [UInt8])],
        _ done: @escaping (Result<[PutOutcome], StreamsError>) -> Void
    ) {
        let d: Definition
        do throws(StreamsError) {
            try requireServing()
            try Streams.checkWritable(stream)
            d = try definition(stream)
        } catch {
            return done(.failure(error))
        }
        // Never left unanswered (no partition would call back).
        guard !records.isEmpty else { return done(.success([])) }
        let partitionOf = records.map { r in
            r.hashKey.map { KeyHash.partition(hashKey: $0, partitions: d.partitions) }
                ?? d.keyHash.partition(forKey: r.key, partitions: d.partitions)
        }
        var byPartition: [Int: [Int]] = [:]
        for (i, p) in partitionOf.enumerated() { byPartition[p, default: []].append(i) }
        var results = [Result<UInt64, PutFailure>?](repeating: nil, count: records.count)
        var remaining = byPartition.count
        let deadline = loop.now + Streams.noLeaderWait
        for (p, indexes) in byPartition {
            let gid = GroupID(stream: d.name, incarnation: d.incarnation, partition: p)
            submit(gid, indexes.map { records[$0].record }, deadline: deadline, hops: 0) { result in
                for (k, i) in indexes.enumerated() {
                    results[i] = result.map { range in range.lowerBound + UInt64(k) }
                }
                remaining -= 1
                guard remaining == 0 else { return }
                done(.success(zip(partitionOf, results).map { PutOutcome(partition: $0, result: $1!) }))
            }
        }
    }

    typealias PutResult = Result<ClosedRange<UInt64>, PutFailure>

    /// Proposes `records` (already encoded) to partition `g`: here if this node leads it, else
    /// through the leader. Waits for a leader until `deadline`; answers after commit.
    func submit(
        _ g: GroupID, _ records: [[UInt8]], deadline: Instant, hops: Int, attempt: Int = 0,
        _ done: @escaping (PutResult) -> Void
    ) {
        guard let d = definitions[g.stream], d.incarnation == g.incarnation, g.partition < d.partitions else {
            return done(
                .failure(
                    PutFailure(status: 404, code: "not_found", message: "no stream '\(g.stream)' (or it was re-created)", retryable: false))
            )
        }
        let local = partitions[g]
        if let local, local.canPropose {
            // Puts waiting for their commit are bounded per partition: past the bound the leader
            // (or its followers) is behind, and a client is told to back off instead of queueing.
            guard local.pendingPuts < maxPendingPuts else {
                return done(
                    .failure(
                        PutFailure(
                            status: 503, code: "overloaded",
                            message: "\(local.pendingPuts) puts to \(g.description) are waiting for their commit; retry shortly",
                            retryable: true)))
            }
            do {
                return try local.propose(records, wallMs: Tables.wallMs(), commitTimeout: Streams.commitTimeout, done)
            } catch {
                // Lost leadership in between: fall through and look for the leader.
            }
        }
        let now = loop.now
        let stoppedHere = stoppedReplicas[g]
        var target = local?.raft.leader ?? leaderHints[g]
        if local == nil && target == nil {
            // Not a replica and no hint: any live replica knows the leader (rotating on failure).
            // A replica stopped here by its disk knows nothing: ask the others.
            let alive = Set(members().filter(\.alive).map(\.id))
            let candidates = d.voters[g.partition].filter { alive.contains($0) && !(stoppedHere != nil && $0 == selfID) }
            if !candidates.isEmpty { target = candidates[attempt % candidates.count] }
        }
        func retry(_ done: @escaping (PutResult) -> Void) {
            guard loop.now < deadline else { return done(.failure(.noLeader(g.description))) }
            after(.milliseconds(10)) { [weak self] in self?.submit(g, records, deadline: deadline, hops: hops, attempt: attempt + 1, done) }
        }
        guard let target, target != selfID, hops < 3 else {
            if let stoppedHere, target == nil || target == selfID {
                // Nobody else to ask: say why at once rather than wait out the deadline.
                return done(
                    .failure(
                        PutFailure.disk(
                            g, full: stoppedHere.full,
                            "cannot write its log on this node (\(stoppedHere.reason)); nothing was appended; retry when the disk recovers")
                    ))
            }
            return retry(done)
        }
        guard let address = address(of: target), !peers.isBackingOff(address) else {
            // Just failed to connect (a dead leader, most likely): look again shortly rather
            // than queue behind the reconnect backoff.
            if leaderHints[g] == target { leaderHints[g] = nil }
            return retry(done)
        }
        stats.putsForwarded += 1
        // Only one answer reaches the client: this replica's, once it has committed the put,
        // or the leader's (or the failure), whichever comes first.
        let once = AnswerOnce(done)
        var sent = records
        var put: UInt64?
        if let local, replicasAnswerForwardedPuts {
            // A replica will see the records come back in the leader's append: tagged, it
            // recognises them and answers once it has committed them — a round trip before
            // the leader's answer could arrive.
            putsTagged += 1
            put = putsTagged
            sent[0] = StreamRecord.tagged(records[0], origin: origin, put: putsTagged)
            local.awaitForwarded(put: putsTagged, count: records.count) { [weak self] range in
                self?.stats.putsAnsweredByReplica += 1
                once(.success(range))
            }
        }
        let waitMs = UInt32(max(0, (deadline - now).milliseconds))
        let payload = StreamWire.encode(StreamWire.PutRequest(group: g, hops: hops + 1, waitMs: waitMs, records: sent))
        peers.request(
            to: address, kind: StreamFrameKind.put, payload: payload,
            timeout: .milliseconds(Int64(waitMs)) + Streams.commitTimeout + .seconds(1)
        ) { [weak self, weak local] result in
            if let put { local?.forgetForwarded(put: put) }
            let done = once.callAsFunction
            guard let self else { return }
            switch result {
            case .success(let frame):
                guard let (answer, leader) = try? StreamWire.decodePutResult(frame.payload) else {
                    self.peers.countMalformed()
                    return done(
                        .failure(
                            PutFailure(status: 502, code: "bad_peer_answer", message: "malformed answer from \(target)", retryable: true)))
                }
                if let leader, leader != self.selfID { self.leaderHints[g] = leader } else { self.leaderHints[g] = nil }
                if case .failure(let f) = answer, f.code == "no_leader", self.loop.now < deadline { return retry(done) }
                done(answer)
            case .failure(let error):
                if self.leaderHints[g] == target { self.leaderHints[g] = nil }
                // Never sent (the link could not connect): look for the leader again.
                if error.code == .notDelivered { return retry(done) }
                // Sent, but no answer: the leader may have appended it. Proposing again could
                // append it twice, so the client learns the outcome is unknown (a Kinesis
                // client retrying a failed PutRecord faces the same choice).
                done(
                    .failure(
                        PutFailure(
                            status: 503, code: "unknown_outcome",
                            message: "no answer from \(target); the records may or may not have been appended", retryable: true)))
            }
        }
    }

    /// Passes on the first answer only.
    final class AnswerOnce {
        private var done: ((PutResult) -> Void)?
        init(_ done: @escaping (PutResult) -> Void) { self.done = done }
        func callAsFunction(_ result: PutResult) {
            guard let d = done else { return }
            done = nil
            d(result)
        }
    }
}
