import TandemCore
import Testing

@testable import Processing

/// Drives a `PartitionConsumer` over an in-memory partition, answering deliveries with a policy.
/// Time only moves to the consumer's next deadline; nothing sleeps.
final class ConsumerHarness {
    var log: [ProcessorRecord] = []
    var consumer: PartitionConsumer
    var now = Instant(nanoseconds: 1_000_000_000)
    var wallMs: UInt64 = 1_700_000_000_000
    var stored: UInt64 = 0
    var deliveries: [ConsumerBatch] = []
    var letters: [DeadLetter] = []
    /// Records whose delivery succeeded (in the order the target saw them succeed).
    var succeeded: [ProcessorRecord] = []
    var policy: (ConsumerBatch) -> DeliveryOutcome = { _ in .success }
    var failDeadLetterWrites = false

    init(settings: ConsumerSettings = ConsumerSettings(), records: Int = 0, keys: Int = 4) {
        consumer = PartitionConsumer(settings: settings, checkpoint: 0, seed: 7)
        append(records, keys: keys)
    }

    func append(_ n: Int, keys: Int = 4) {
        for _ in 0..<n {
            let s = UInt64(log.count + 1) * 2  // sparse, as Raft indexes are (no-ops, config entries)
            log.append(ProcessorRecord(sequence: s, key: "k\(log.count % keys)", data: Array("r\(s)".utf8), timestamp: wallMs))
        }
    }

    /// Runs `ready` and carries out its directives once; deliveries are answered at once.
    @discardableResult
    func step() -> [ConsumerDirective] {
        let ds = consumer.ready(now: now, wallMs: wallMs)
        for d in ds {
            switch d {
            case .fetch(let after, let limit):
                let records = log.filter { $0.sequence > after }.prefix(limit)
                consumer.fetched(Array(records), through: records.last?.sequence ?? after, now: now)
            case .deliver(let b):
                deliveries.append(b)
                let outcome = policy(b)
                switch outcome {
                case .success: succeeded += b.records
                case .partialFailure(let lowest), .rejected(let lowest, _): succeeded += b.records.filter { $0.sequence < lowest }
                case .failure: break
                }
                consumer.finished(batch: b.id, outcome, now: now)
            case .deadLetter(let letter):
                if failDeadLetterWrites {
                    consumer.deadLetterFailed(letter.id, now: now)
                } else {
                    letters.append(letter)
                    consumer.deadLettered(letter.id)
                }
            case .checkpoint(let s):
                #expect(s > stored, "the checkpoint only moves forward")
                stored = s
            }
        }
        return ds
    }

    /// Steps until every record is done, moving time to each deadline when only time can help; bounded.
    func run(maxSteps: Int = 100_000) {
        for _ in 0..<maxSteps {
            let ds = step()
            if consumer.pending == 0 && consumer.fetchedThrough >= (log.last?.sequence ?? 0) && consumer.checkpoint == stored { return }
            if !ds.contains(where: { if case .fetch = $0 { false } else { true } }), let t = consumer.nextDeadline {
                now = max(now, t)
            }
        }
        Issue.record("the consumer did not settle in \(maxSteps) steps")
    }
}

@Suite struct PartitionConsumerTests {
    @Test func batchesAreFullSizedAndTheCheckpointFollowsSuccess() {
        let h = ConsumerHarness(settings: ConsumerSettings(batchSize: 10), records: 35)
        h.run()
        #expect(h.deliveries.map(\.records.count) == [10, 10, 10, 5])
        #expect(h.deliveries.allSatisfy { $0.attempt == 1 })
        #expect(h.succeeded == h.log)
        #expect(h.stored == h.log.last!.sequence)
    }

    @Test func aBatchingWindowWaitsForAFullBatchOrTheWindow() {
        let h = ConsumerHarness(settings: ConsumerSettings(batchSize: 10, maxBatchingWindow: .milliseconds(500)), records: 3)
        h.step()
        h.step()
        #expect(h.deliveries.isEmpty, "3 of 10 records: waits for the window")
        #expect(h.consumer.nextDeadline == h.now + .milliseconds(500))
        h.append(10)
        h.step()
        h.step()
        #expect(h.deliveries.map(\.records.count) == [10], "a full batch leaves at once")
        h.now = h.now + .milliseconds(500)
        h.step()
        #expect(h.deliveries.map(\.records.count) == [10, 3])
    }

    @Test func aPartialAnswerCheckpointsBelowTheLowestFailedAndRetriesFromIt() {
        let h = ConsumerHarness(settings: ConsumerSettings(batchSize: 10, bisectOnError: false), records: 10)
        var first = true
        h.policy = { b in
            defer { first = false }
            return first ? .partialFailure(lowestFailed: b.records[6].sequence) : .success
        }
        h.step()  // fetch
        h.step()  // deliver, answered
        h.step()  // the checkpoint
        #expect(h.stored == h.log[6].sequence - 1, "records before the lowest failed one are done")
        #expect(h.consumer.nextDeadline! >= h.now + .milliseconds(500), "retried after a backoff")
        h.run()
        #expect(h.deliveries.count == 2)
        #expect(h.deliveries[1].records == Array(h.log[6...]))
        #expect(h.deliveries[1].attempt == 2)
        #expect(h.stored == h.log.last!.sequence)
    }

    @Test func bisectingIsolatesAPoisonRecordWhichIsDeadLetteredAndTheRestGoesOn() {
        let h = ConsumerHarness(settings: ConsumerSettings(batchSize: 16, maxRetryAttempts: 2), records: 16)
        let poison = h.log[11].sequence
        h.policy = { b in b.records.contains { $0.sequence == poison } ? .failure("boom") : .success }
        h.run()
        #expect(h.letters.count == 1)
        #expect(h.letters[0].records.map(\.sequence) == [poison])
        #expect(h.letters[0].attempts == 3, "the first delivery and two retries")
        #expect(h.letters[0].condition == .retryAttemptsExhausted)
        #expect(h.letters[0].lastError == "boom")
        #expect(Set(h.succeeded.map(\.sequence)) == Set(h.log.map(\.sequence)).subtracting([poison]))
        #expect(h.stored == h.log.last!.sequence)
        // Splits do not use up retries: 16 → 8 → 4 → 2 → 1 fail once each, then two retries.
        let poisonDeliveries = h.deliveries.filter { $0.records.contains { $0.sequence == poison } }
        #expect(poisonDeliveries.map(\.records.count) == [16, 8, 4, 2, 1, 1, 1])
        #expect(poisonDeliveries.map(\.attempt) == [1, 1, 1, 1, 1, 2, 3])
    }

    @Test func withoutBisectTheWholeBatchIsDeadLettered() {
        let h = ConsumerHarness(settings: ConsumerSettings(batchSize: 5, maxRetryAttempts: 1, bisectOnError: false), records: 10)
        h.policy = { b in b.records.contains { $0.sequence == 4 } ? .failure("boom") : .success }
        h.run()
        #expect(h.letters.map { $0.records.map(\.sequence) } == [Array(h.log[0..<5]).map(\.sequence)])
        #expect(h.succeeded == Array(h.log[5...]))
        #expect(h.stored == h.log.last!.sequence)
    }

    @Test func afterAPartialAnswerOnlyTheNamedRecordIsGivenUp() {
        let h = ConsumerHarness(settings: ConsumerSettings(batchSize: 10, maxRetryAttempts: 1), records: 10)
        let bad = h.log[3].sequence
        h.policy = { b in b.records.contains { $0.sequence == bad } ? .partialFailure(lowestFailed: bad) : .success }
        h.run()
        #expect(h.letters.map { $0.records.map(\.sequence) } == [[bad]])
        #expect(Set(h.succeeded.map(\.sequence)) == Set(h.log.map(\.sequence)).subtracting([bad]))
    }

    @Test func recordsTooOldAreDeadLetteredWithoutDelivery() {
        let h = ConsumerHarness(settings: ConsumerSettings(maxRecordAgeMs: 60_000), records: 4)
        h.wallMs += 61_000
        h.append(2)
        h.run()
        #expect(h.letters.count == 1)
        #expect(h.letters[0].records == Array(h.log[0..<4]))
        #expect(h.letters[0].condition == .recordAgeExceeded)
        #expect(h.letters[0].attempts == 0)
        #expect(h.succeeded == Array(h.log[4...]))
    }

    @Test func retriesUntilTheRecordsAgeRunsOutWhenRetriesAreUnbounded() {
        let h = ConsumerHarness(settings: ConsumerSettings(maxRetryAttempts: nil, maxRecordAgeMs: 60_000), records: 1)
        h.policy = { _ in .failure("down") }
        for _ in 0..<200 where h.letters.isEmpty {
            h.step()
            if let t = h.consumer.nextDeadline {
                h.wallMs += UInt64(max(0, (t - h.now).milliseconds))
                h.now = max(h.now, t)
            }
        }
        #expect(h.letters.count == 1)
        #expect(h.letters[0].condition == .recordAgeExceeded)
        #expect(h.deliveries.count > 3)
        // Backoff doubles and is capped at 60 s (jitter draws from the upper half).
        #expect(h.deliveries.count < 12)
    }

    @Test func aFailedDeadLetterWriteIsRetriedAndTheCheckpointWaitsForIt() {
        let h = ConsumerHarness(settings: ConsumerSettings(maxRetryAttempts: 0, bisectOnError: false), records: 3)
        h.policy = { _ in .failure("boom") }
        h.failDeadLetterWrites = true
        for _ in 0..<5 {
            h.step()
            h.now = h.now + .seconds(2)
        }
        #expect(h.letters.isEmpty)
        #expect(h.stored < h.log[0].sequence, "records not yet in the dead-letter stream are not done")
        h.failDeadLetterWrites = false
        h.run()
        #expect(h.letters.count == 1)
        #expect(h.stored == h.log.last!.sequence)
    }

    @Test func lanesKeepOrderPerKeyAndBoundWhatIsInFlight() {
        let settings = ConsumerSettings(batchSize: 3, parallelization: 4)
        let consumer = PartitionConsumer(settings: settings, checkpoint: 0, seed: 1)
        var log: [ProcessorRecord] = []
        for i in 1...200 { log.append(ProcessorRecord(sequence: UInt64(i), key: "key-\(i % 13)", data: [], timestamp: 0)) }
        var inFlight: [ConsumerBatch] = []
        var seen: [String: [UInt64]] = [:]
        var now = Instant(nanoseconds: 1)
        var rng = SeededGenerator(seed: 3)
        var maxInFlight = 0
        for _ in 0..<2_000 {
            for d in consumer.ready(now: now, wallMs: 0) {
                switch d {
                case .fetch(let after, let limit):
                    let rs = log.filter { $0.sequence > after }.prefix(limit)
                    consumer.fetched(Array(rs), through: rs.last?.sequence ?? after, now: now)
                case .deliver(let b): inFlight.append(b)
                default: break
                }
            }
            maxInFlight = max(maxInFlight, inFlight.count)
            #expect(Set(inFlight.map(\.lane)).count == inFlight.count, "one batch in flight per lane")
            if !inFlight.isEmpty {
                let b = inFlight.remove(at: Int(rng.next() % UInt64(inFlight.count)))
                for r in b.records { seen[r.key, default: []].append(r.sequence) }
                consumer.finished(batch: b.id, .success, now: now)
            }
            now = now + .milliseconds(1)
        }
        #expect(maxInFlight <= 4 && maxInFlight > 1)
        #expect(seen.values.allSatisfy { $0 == $0.sorted() }, "each key's records in order")
        #expect(seen.values.reduce(0) { $0 + $1.count } == 200)
        #expect(consumer.checkpoint == 200)
    }

    /// Random outcomes, lost answers and restarts from the stored checkpoint, over many seeds:
    /// every record ends done (succeeded or dead-lettered), nothing at or below a stored
    /// checkpoint was left undone, and each key's records first succeed in sequence order.
    @Test(arguments: 0..<40)
    func survivesFaultsAndRestartsWithoutSkipping(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let settings = ConsumerSettings(
            batchSize: Int(rng.next() % 20) + 1, parallelization: Int(rng.next() % 4) + 1, maxRetryAttempts: Int(rng.next() % 4),
            maxRecordAgeMs: nil, bisectOnError: rng.chance(0.5), retryBase: .milliseconds(10), retryMax: .milliseconds(200))
        var log: [ProcessorRecord] = []
        var stored: UInt64 = 0
        var consumer = PartitionConsumer(settings: settings, checkpoint: 0, seed: seed)
        var now = Instant(nanoseconds: 1)
        var inFlight: [ConsumerBatch] = []
        var lettersInFlight: [DeadLetter] = []
        var done: Set<UInt64> = []
        var firstSuccess: [String: [UInt64]] = [:]
        let poison = Set((0..<5).map { _ in UInt64(rng.next() % 300) + 1 })
        for step in 0..<6_000 {
            if log.count < 300 && rng.chance(0.3) {
                let s = UInt64(log.count + 1)
                log.append(ProcessorRecord(sequence: s, key: "k\(rng.next() % 7)", data: [], timestamp: 0))
            }
            if rng.chance(0.002) {
                // Crash: answers in flight are lost; a new consumer resumes from the stored checkpoint.
                consumer = PartitionConsumer(settings: settings, checkpoint: stored, seed: seed &+ UInt64(step))
                inFlight = []
                lettersInFlight = []
            }
            for d in consumer.ready(now: now, wallMs: 0) {
                switch d {
                case .fetch(let after, let limit):
                    if rng.chance(0.05) {
                        consumer.fetchFailed(now: now)
                    } else {
                        let rs = log.filter { $0.sequence > after }.prefix(limit)
                        consumer.fetched(Array(rs), through: rs.last?.sequence ?? after, now: now)
                    }
                case .deliver(let b): inFlight.append(b)
                case .deadLetter(let l): lettersInFlight.append(l)
                case .checkpoint(let c):
                    #expect(c >= stored)
                    #expect((1...c).allSatisfy { s in s > log.count || done.contains(s) }, "checkpoint \(c) passes an undone record")
                    stored = c
                }
            }
            if !inFlight.isEmpty && rng.chance(0.7) {
                let b = inFlight.remove(at: Int(rng.next() % UInt64(inFlight.count)))
                let bad = b.records.first { poison.contains($0.sequence) || rng.chance(0.02) }
                let outcome: DeliveryOutcome
                if let bad {
                    outcome = rng.chance(0.5) ? .partialFailure(lowestFailed: bad.sequence) : .failure("bad \(bad.sequence)")
                } else {
                    outcome = .success
                }
                let ok = b.records.filter { r in
                    switch outcome {
                    case .success: true
                    case .partialFailure(let low), .rejected(let low, _): r.sequence < low
                    case .failure: false
                    }
                }
                for r in ok where !done.contains(r.sequence) {
                    done.insert(r.sequence)
                    firstSuccess[r.key, default: []].append(r.sequence)
                }
                consumer.finished(batch: b.id, outcome, now: now)
            }
            if !lettersInFlight.isEmpty {
                let l = lettersInFlight.removeFirst()
                if rng.chance(0.1) {
                    consumer.deadLetterFailed(l.id, now: now)
                } else {
                    for r in l.records { done.insert(r.sequence) }
                    consumer.deadLettered(l.id)
                }
            }
            now = now + .milliseconds(5)
        }
        // Quiesce: no more failures, everything ends done.
        for _ in 0..<20_000 where stored < UInt64(log.count) {
            for d in consumer.ready(now: now, wallMs: 0) {
                switch d {
                case .fetch(let after, let limit):
                    let rs = log.filter { $0.sequence > after }.prefix(limit)
                    consumer.fetched(Array(rs), through: rs.last?.sequence ?? after, now: now)
                case .deliver(let b):
                    for r in b.records where !done.contains(r.sequence) {
                        done.insert(r.sequence)
                        firstSuccess[r.key, default: []].append(r.sequence)
                    }
                    consumer.finished(batch: b.id, .success, now: now)
                case .deadLetter(let l):
                    for r in l.records { done.insert(r.sequence) }
                    consumer.deadLettered(l.id)
                case .checkpoint(let c): stored = c
                }
            }
            for b in inFlight { consumer.finished(batch: b.id, .failure("late"), now: now) }
            inFlight = []
            for l in lettersInFlight { consumer.deadLetterFailed(l.id, now: now) }
            lettersInFlight = []
            now = now + .milliseconds(20)
        }
        #expect(stored == UInt64(log.count), "seed \(seed): every record done")
        #expect(done.count == log.count)
        #expect(firstSuccess.values.allSatisfy { $0 == $0.sorted() }, "seed \(seed): a key's records succeed in order")
    }
}

@Suite struct RejectedRecordTests {
    @Test func aRejectedRecordIsDeadLetteredAtOnceAndTheRestGoesOn() {
        let h = ConsumerHarness(settings: ConsumerSettings(batchSize: 10), records: 10)
        let bad = h.log[4].sequence
        var rejectedOnce = false
        h.policy = { b in
            if !rejectedOnce, b.records.contains(where: { $0.sequence == bad }) {
                rejectedOnce = true
                return .rejected(sequence: bad, reason: "no key")
            }
            return .success
        }
        h.run()
        #expect(h.letters.map { $0.records.map(\.sequence) } == [[bad]])
        #expect(h.letters.first?.condition == .rejected)
        #expect(h.letters.first?.lastError == "no key")
        #expect(h.succeeded.map(\.sequence) == h.log.map(\.sequence).filter { $0 != bad })
        #expect(h.deliveries.count == 2, "the rest goes again at once, without a backoff")
        #expect(h.stored == h.log.last!.sequence)
    }
}
