import TandemCore

// The consumer of one (processor, partition): which records go to the target in which batch,
// what a failure does, when a record is given up to the dead-letter stream, and how far the
// checkpoint may move. A pure state machine in the house style: the shell feeds it inputs and
// carries out the directives `ready` returns.
//
// Semantics are those of Lambda's Kinesis event source mapping, with its users' complaints fixed:
// - Records leave in batches of up to `batchSize` (and `maxBatchBytes`), once the batch is full
//   or its oldest record has waited `maxBatchingWindow`.
// - `parallelization` lanes per partition, a key always in the same lane and one batch in
//   flight per lane: order is kept per key, at most `parallelization` batches are in flight.
// - A failed batch is split in two when `bisectOnError` (a split does not use up a retry) until
//   the failing record is alone; a record, or an unsplittable batch, is retried with exponential
//   backoff and jitter from `retryBase` to `retryMax`. A partial-batch answer marks everything
//   before its lowest failed sequence done and retries from there.
// - When retries (`maxRetryAttempts`, nil = until the record's age runs out) or the record's age
//   (`maxRecordAge`) run out, the failing records go to the dead-letter stream and the lane moves
//   on — one poison record never blocks a partition for a week. After a partial-batch answer it
//   is the lowest failed record alone that is given up (the function named it).
// - The checkpoint is the highest sequence below which every record is done: delivered with
//   success or written to the dead-letter stream (never merely given up). A consumer started
//   again from it redelivers what was in flight — at least once, never skipped.
//
// The shell's loop:
//
//     feed inputs: fetched(...), fetchFailed(...), finished(batch:...), deadLettered(...),
//                  deadLetterFailed(...), tick(now:wallMs:)
//     for d in ready(now:wallMs:) {
//         .fetch(after:limit:)       read the partition after that sequence; answer fetched/fetchFailed
//         .deliver(batch)            invoke the target; answer finished(batch:outcome:)
//         .deadLetter(letter)        append to the dead-letter stream; answer deadLettered/deadLetterFailed
//         .checkpoint(sequence)      store it (monotonic; the shell may coalesce writes)
//     }
//     call tick again at nextDeadline
//
// Nothing here reads a clock or draws global randomness: `now` (monotonic) and `wallMs` (record
// ages are wall-clock: records carry their arrival time) come in with every input.

public struct ConsumerSettings: Sendable, Equatable {
    public var batchSize: Int
    public var maxBatchBytes: Int
    public var maxBatchingWindow: Duration
    public var parallelization: Int
    /// Failed attempts after the first before records are dead-lettered; nil retries until the
    /// records' age runs out.
    public var maxRetryAttempts: Int?
    /// Records older than this (by arrival time) are dead-lettered instead of retried; nil never.
    public var maxRecordAgeMs: UInt64?
    public var bisectOnError: Bool
    public var retryBase: Duration
    public var retryMax: Duration
    /// Records read ahead of the checkpoint and not yet delivered, at most.
    public var maxBuffered: Int

    public init(
        batchSize: Int = 100, maxBatchBytes: Int = 6 << 20, maxBatchingWindow: Duration = .zero, parallelization: Int = 1,
        maxRetryAttempts: Int? = 10, maxRecordAgeMs: UInt64? = 86_400_000, bisectOnError: Bool = true,
        retryBase: Duration = .seconds(1), retryMax: Duration = .seconds(60), maxBuffered: Int = 20_000
    ) {
        self.batchSize = batchSize
        self.maxBatchBytes = maxBatchBytes
        self.maxBatchingWindow = maxBatchingWindow
        self.parallelization = parallelization
        self.maxRetryAttempts = maxRetryAttempts
        self.maxRecordAgeMs = maxRecordAgeMs
        self.bisectOnError = bisectOnError
        self.retryBase = retryBase
        self.retryMax = retryMax
        self.maxBuffered = maxBuffered
    }
}

/// What the target answered for a batch.
public enum DeliveryOutcome: Sendable, Equatable {
    case success
    /// Everything before `lowestFailed` succeeded; it and the rest are to be retried.
    case partialFailure(lowestFailed: UInt64)
    case failure(String)
    /// A built-in target can never apply this record (its data lacks the key the target
    /// needs): everything before it succeeded, it is dead-lettered at once, the rest goes on.
    case rejected(sequence: UInt64, reason: String)
}

/// A batch on its way to the target. `attempt` counts from 1 for the records' first delivery.
public struct ConsumerBatch: Sendable, Equatable {
    public var id: UInt64
    public var lane: Int
    public var records: [ProcessorRecord]
    public var attempt: Int
}

/// Records given up, to be written to the dead-letter stream.
public struct DeadLetter: Sendable, Equatable {
    public enum Condition: String, Sendable {
        case retryAttemptsExhausted = "RetryAttemptsExhausted"
        case recordAgeExceeded = "RecordAgeExceeded"
        case rejected = "Rejected"
    }

    public var id: UInt64
    public var lane: Int
    public var records: [ProcessorRecord]
    /// Deliveries tried (0 when the records were too old before the first).
    public var attempts: Int
    public var lastError: String
    public var condition: Condition
}

public enum ConsumerDirective: Sendable, Equatable {
    case fetch(after: UInt64, limit: Int)
    case deliver(ConsumerBatch)
    case deadLetter(DeadLetter)
    case checkpoint(UInt64)
}

public final class PartitionConsumer {
    public let settings: ConsumerSettings
    /// Every record at or below it is done: just below the lowest record still owed, or all
    /// that was read.
    public var checkpoint: UInt64 { lanes.compactMap(\.firstOwed?.sequence).min().map { $0 - 1 } ?? fetchedThrough }
    /// The last sequence read from the partition (records or not).
    public private(set) var fetchedThrough: UInt64
    public private(set) var retries = 0
    public private(set) var deadLettered = 0
    public private(set) var delivered = 0

    private var lanes: [Lane]
    private var fetching = false
    private var fetchRetryAt: Instant?
    private var fetchFailures = 0
    private var storedCheckpoint: UInt64
    private var nextID: UInt64 = 1
    private var random: SeededGenerator
    private var stopping = false
    /// Dead letters decided by an answer (`rejected`), handed out by the next `ready`.
    private var rejectedLetters: [DeadLetter] = []

    /// Records not yet handed out, as one run in sequence order, plus what failed.
    private struct Segment {
        var records: [ProcessorRecord]
        var attempts: Int
        var lastError: String
        /// Set after a partial answer: only the first record is given up when retries run out.
        var lowestNamed: Bool
    }

    private struct Lane {
        var queue: [ProcessorRecord] = []
        var queueStart = 0
        /// When the oldest queued record arrived here (the batching window runs from it).
        var queuedSince: Instant?
        /// Failed records waiting for their retry, in order, before anything queued.
        var retrying: [Segment] = []
        var retryAt: Instant = .zero
        var inFlight: (id: UInt64, segment: Segment)?
        var deadLettering: (id: UInt64, segment: Segment)?

        var queued: ArraySlice<ProcessorRecord> { queue[queueStart...] }
        var busy: Bool { inFlight != nil || deadLettering != nil }

        /// The first record this lane still owes: in flight or being dead-lettered, else the
        /// first waiting for a retry, else the first queued (each is before the next in order).
        var firstOwed: ProcessorRecord? {
            inFlight?.segment.records.first ?? deadLettering?.segment.records.first ?? retrying.first?.records.first ?? queued.first
        }

        var pending: Int {
            queue.count - queueStart + retrying.reduce(0) { $0 + $1.records.count } + (inFlight?.segment.records.count ?? 0)
                + (deadLettering?.segment.records.count ?? 0)
        }

        mutating func take(_ n: Int) -> [ProcessorRecord] {
            let out = Array(queue[queueStart..<queueStart + n])
            queueStart += n
            if queueStart > 4_096 && queueStart * 2 > queue.count {
                queue.removeFirst(queueStart)
                queueStart = 0
            }
            return out
        }
    }

    /// A consumer that resumes after `checkpoint` (records at or below it are done).
    public init(settings: ConsumerSettings, checkpoint: UInt64, seed: UInt64) {
        precondition(settings.parallelization >= 1 && settings.batchSize >= 1)
        self.settings = settings
        self.storedCheckpoint = checkpoint
        self.fetchedThrough = checkpoint
        self.lanes = Array(repeating: Lane(), count: settings.parallelization)
        self.random = SeededGenerator(seed: seed)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Inputs

    /// A fetch's answer: the records after the fetch's position, through sequence `last`
    /// (the read covered up to it, records or not).
    public func fetched(_ records: [ProcessorRecord], through last: UInt64, now: Instant) {
        fetching = false
        fetchFailures = 0
        for r in records where r.sequence > fetchedThrough {
            let lane = Self.lane(of: r.key, lanes: lanes.count)
            if lanes[lane].queued.isEmpty { lanes[lane].queuedSince = now }
            lanes[lane].queue.append(r)
        }
        fetchedThrough = max(fetchedThrough, last, records.last?.sequence ?? 0)
    }

    /// The fetch failed (no replica, a disk error): try again after a short backoff.
    public func fetchFailed(now: Instant) {
        fetching = false
        fetchFailures += 1
        fetchRetryAt = now + backoff(fetchFailures, base: .milliseconds(100), cap: .seconds(5))
    }

    /// The target's answer for batch `id` (answers for unknown batches are ignored).
    public func finished(batch id: UInt64, _ outcome: DeliveryOutcome, now: Instant) {
        guard let l = lanes.firstIndex(where: { $0.inFlight?.id == id }), let segment = lanes[l].inFlight?.segment else { return }
        lanes[l].inFlight = nil
        switch outcome {
        case .success:
            delivered += segment.records.count
        case .partialFailure(let lowest):
            let split = segment.records.firstIndex { $0.sequence >= lowest } ?? segment.records.count
            delivered += split
            guard split < segment.records.count else { break }
            let failed = Segment(
                records: Array(segment.records[split...]), attempts: segment.attempts + 1,
                lastError: "the function reported record \(SequenceText.format(lowest)) failed", lowestNamed: true)
            retry(l, failed, now: now)
        case .rejected(let sequence, let reason):
            let split = segment.records.firstIndex { $0.sequence >= sequence } ?? segment.records.count
            delivered += split
            guard split < segment.records.count else { break }
            var rest = Array(segment.records[(split + 1)...])
            let given = Segment(records: [segment.records[split]], attempts: segment.attempts + 1, lastError: reason, lowestNamed: true)
            if !rest.isEmpty {
                lanes[l].retrying.insert(Segment(records: rest, attempts: 0, lastError: "", lowestNamed: false), at: 0)
                lanes[l].retryAt = now
                rest = []
            }
            lanes[l].deadLettering = (newID(), given)
            rejectedLetters.append(
                DeadLetter(
                    id: lanes[l].deadLettering!.id, lane: l, records: given.records, attempts: given.attempts, lastError: reason,
                    condition: .rejected))
        case .failure(let error):
            if settings.bisectOnError && segment.records.count > 1 {
                // Halves go back in order; a split is not a retry (Lambda's rule too).
                let mid = segment.records.count / 2
                let first = Segment(
                    records: Array(segment.records[..<mid]), attempts: segment.attempts, lastError: error, lowestNamed: false)
                let second = Segment(
                    records: Array(segment.records[mid...]), attempts: segment.attempts, lastError: error, lowestNamed: false)
                lanes[l].retrying.insert(contentsOf: [first, second], at: 0)
                lanes[l].retryAt = now
            } else {
                var failed = segment
                failed.attempts += 1
                failed.lastError = error
                failed.lowestNamed = false
                retry(l, failed, now: now)
            }
        }
    }

    /// The dead letters of `id` are durable in the dead-letter stream: those records are done.
    public func deadLettered(_ id: UInt64) {
        guard let l = lanes.firstIndex(where: { $0.deadLettering?.id == id }) else { return }
        deadLettered += lanes[l].deadLettering!.segment.records.count
        lanes[l].deadLettering = nil
    }

    /// Writing the dead letters failed: they are kept and written again after a backoff.
    public func deadLetterFailed(_ id: UInt64, now: Instant) {
        guard let l = lanes.firstIndex(where: { $0.deadLettering?.id == id }), let segment = lanes[l].deadLettering?.segment else { return }
        lanes[l].deadLettering = nil
        // Back to the head, marked to be given up again at once.
        lanes[l].retrying.insert(segment, at: 0)
        lanes[l].retryAt = now + .seconds(1)
    }

    /// Stop handing out work: what is in flight may still finish (`isIdle` then turns true).
    public func stop() { stopping = true }

    public var isIdle: Bool { !fetching && lanes.allSatisfy { !$0.busy } }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Output

    /// What to do now: deliveries and dead letters due, a fetch if there is room, the checkpoint
    /// if it moved.
    public func ready(now: Instant, wallMs: UInt64) -> [ConsumerDirective] {
        var out: [ConsumerDirective] = rejectedLetters.map { .deadLetter($0) }
        rejectedLetters = []
        if !stopping {
            for l in lanes.indices where !lanes[l].busy {
                if let d = dispatch(l, now: now, wallMs: wallMs) { out.append(d) }
            }
            let buffered = lanes.reduce(0) { $0 + $1.pending }
            if !fetching, fetchRetryAt.map({ now >= $0 }) ?? true, buffered < settings.maxBuffered {
                fetching = true
                fetchRetryAt = nil
                out.append(.fetch(after: fetchedThrough, limit: min(10_000, settings.maxBuffered - buffered)))
            }
        }
        let checkpoint = self.checkpoint
        if checkpoint > storedCheckpoint {
            storedCheckpoint = checkpoint
            out.append(.checkpoint(checkpoint))
        }
        return out
    }

    /// When `ready` next has something time-driven to do (a retry, a batching window, a fetch
    /// backoff); nil if only an input can change anything.
    public var nextDeadline: Instant? {
        var t: Instant?
        func consider(_ x: Instant) { t = t.map { min($0, x) } ?? x }
        if let f = fetchRetryAt { consider(f) }
        for lane in lanes where !lane.busy {
            if !lane.retrying.isEmpty {
                consider(lane.retryAt)
            } else if let since = lane.queuedSince, !lane.queued.isEmpty {
                consider(since + settings.maxBatchingWindow)
            }
        }
        return t
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Figures

    /// Records read and not yet done.
    public var pending: Int { lanes.reduce(0) { $0 + $1.pending } }
    public var inFlight: Int { lanes.reduce(0) { $0 + ($1.inFlight == nil ? 0 : 1) } }
    /// The arrival time of the oldest record not yet done, if any.
    public var oldestPendingTimestamp: UInt64? {
        lanes.compactMap(\.firstOwed?.timestamp).min()
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Rules

    /// The lane a key's records go to: a stable hash, so a key's records stay in order.
    public static func lane(of key: String, lanes: Int) -> Int {
        lanes == 1 ? 0 : Int(stableHash64(Array(key.utf8)) % UInt64(lanes))
    }

    private func retry(_ l: Int, _ failed: Segment, now: Instant) {
        retries += 1
        lanes[l].retrying.insert(failed, at: 0)
        lanes[l].retryAt = now + backoff(failed.attempts, base: settings.retryBase, cap: settings.retryMax)
    }

    /// Exponential backoff with full jitter over its upper half: `base × 2^(n−1)`, capped,
    /// then a uniform draw in [half, whole], so retries of many partitions do not align.
    private func backoff(_ n: Int, base: Duration, cap: Duration) -> Duration {
        let exp = min(n - 1, 30)
        let full = min(Double(base.nanoseconds) * Double(1 << max(exp, 0)), Double(cap.nanoseconds))
        return .nanoseconds(Int64(full * (0.5 + 0.5 * random.unit())))
    }

    private func newID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    /// The lane's next batch, retry or dead letter, if one is due.
    private func dispatch(_ l: Int, now: Instant, wallMs: UInt64) -> ConsumerDirective? {
        if !lanes[l].retrying.isEmpty {
            guard now >= lanes[l].retryAt else { return nil }
            var segment = lanes[l].retrying.removeFirst()
            if let letter = giveUp(&segment, wallMs: wallMs) {
                if !segment.records.isEmpty { lanes[l].retrying.insert(segment, at: 0) }
                lanes[l].deadLettering = (newID(), letter.segment)
                return .deadLetter(
                    DeadLetter(
                        id: lanes[l].deadLettering!.id, lane: l, records: letter.segment.records, attempts: letter.segment.attempts,
                        lastError: letter.segment.lastError, condition: letter.condition))
            }
            return send(l, segment)
        }
        let queued = lanes[l].queued
        guard let first = queued.first else { return nil }
        // Too old before its first delivery: given up without one.
        if let maxAge = settings.maxRecordAgeMs, wallMs > first.timestamp, wallMs - first.timestamp > maxAge {
            var n = 0
            for r in queued {
                guard wallMs > r.timestamp, wallMs - r.timestamp > maxAge, n < settings.batchSize else { break }
                n += 1
            }
            let segment = Segment(records: lanes[l].take(n), attempts: 0, lastError: "record age exceeded", lowestNamed: false)
            lanes[l].queuedSince = lanes[l].queued.isEmpty ? nil : now
            lanes[l].deadLettering = (newID(), segment)
            return .deadLetter(
                DeadLetter(
                    id: lanes[l].deadLettering!.id, lane: l, records: segment.records, attempts: 0, lastError: segment.lastError,
                    condition: .recordAgeExceeded))
        }
        let full = queued.count >= settings.batchSize
        let windowOver = now >= (lanes[l].queuedSince ?? now) + settings.maxBatchingWindow
        guard full || windowOver else { return nil }
        var n = 0
        var bytes = 0
        for r in queued {
            let size = r.data.count + r.key.utf8.count + 256
            guard n < settings.batchSize, n == 0 || bytes + size <= settings.maxBatchBytes else { break }
            n += 1
            bytes += size
        }
        let records = lanes[l].take(n)
        lanes[l].queuedSince = lanes[l].queued.isEmpty ? nil : now
        return send(l, Segment(records: records, attempts: 0, lastError: "", lowestNamed: false))
    }

    private func send(_ l: Int, _ segment: Segment) -> ConsumerDirective {
        let id = newID()
        lanes[l].inFlight = (id, segment)
        return .deliver(ConsumerBatch(id: id, lane: l, records: segment.records, attempt: segment.attempts + 1))
    }

    /// Whether a failed segment is to be given up now, and which part: all of it, or after a
    /// partial answer only its first record (what is left stays in `segment`, retries fresh).
    private func giveUp(_ segment: inout Segment, wallMs: UInt64) -> (segment: Segment, condition: DeadLetter.Condition)? {
        let retriesOut = settings.maxRetryAttempts.map { segment.attempts > $0 } ?? false
        let oldest = segment.records.first.map(\.timestamp) ?? wallMs
        let tooOld = settings.maxRecordAgeMs.map { wallMs > oldest && wallMs - oldest > $0 } ?? false
        guard retriesOut || tooOld else { return nil }
        let condition: DeadLetter.Condition = retriesOut ? .retryAttemptsExhausted : .recordAgeExceeded
        if segment.lowestNamed && segment.records.count > 1 {
            let given = Segment(records: [segment.records[0]], attempts: segment.attempts, lastError: segment.lastError, lowestNamed: true)
            segment = Segment(records: Array(segment.records.dropFirst()), attempts: 0, lastError: "", lowestNamed: false)
            return (given, condition)
        }
        let given = segment
        segment.records = []
        return (given, condition)
    }
}
