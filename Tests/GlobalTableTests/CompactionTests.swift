import GlobalTable
import TandemCore
import Testing

/// Tombstone collection by causal stability, as properties over random histories: with every
/// write before `stable` delivered everywhere, compacting never changes what readers see,
/// replicas that compact at different moments still converge, and stale state from a member
/// that was gone too long cannot bring anything back.
@Suite struct CompactionTests {
    func compact(_ s: ItemState, _ stable: UInt64) -> ItemState { s.compacted(stable: stable) ?? ItemState() }

    /// Two replicas that both hold every delta written before `stable`, plus each a random
    /// subset of the later ones; and a stale replica holding only part of the stable ones.
    func scenario(_ seed: UInt64) -> (stable: UInt64, a: ItemState, b: ItemState, stale: ItemState, all: ItemState) {
        let h = MergeLawTests.randomHistory(seed: seed, steps: 60)
        var rng = SeededGenerator(seed: seed &* 31 &+ 7)
        let stable = h.deltas[Int(rng.next() % UInt64(h.deltas.count))].lastWriteTime
        var a = ItemState(), b = ItemState(), stale = ItemState(), all = ItemState()
        for d in h.deltas {
            all.merge(d)
            if d.lastWriteTime < stable {
                a.merge(d)
                b.merge(d)
                if rng.chance(0.5) { stale.merge(d) }
            } else {
                if rng.chance(0.6) { a.merge(d) }
                if rng.chance(0.6) { b.merge(d) }
            }
        }
        return (stable, a, b, stale, all)
    }

    @Test func compactingNeverChangesWhatReadersSee() {
        for seed in UInt64(1)...400 {
            let s = scenario(seed)
            for x in [s.a, s.b, s.all] {
                let c = compact(x, s.stable)
                #expect(c.visible == x.visible, "seed \(seed)")
                #expect(compact(c, s.stable) == c, "idempotent, seed \(seed)")
                #expect(ItemCodec.encode(c).count <= ItemCodec.encode(x).count, "seed \(seed)")
            }
        }
    }

    @Test func replicasCompactingAtDifferentMomentsConverge() {
        for seed in UInt64(1)...400 {
            let s = scenario(seed)
            // Once `stable` passes every write (quiescence), compaction histories do not matter.
            let settled = max(s.a.lastWriteTime, s.b.lastWriteTime) + 1
            let reference = compact(s.a.merged(s.b), settled)
            let early = [
                compact(s.a, s.stable).merged(s.b), compact(s.a, s.stable).merged(compact(s.b, s.stable)),
                s.a.merged(compact(s.b, s.stable))
            ]
            for (i, x) in early.enumerated() {
                #expect(x.visible == s.a.merged(s.b).visible, "case \(i), seed \(seed)")
                #expect(compact(compact(x, s.stable), settled) == reference, "case \(i), seed \(seed)")
            }
        }
    }

    @Test func staleStateCannotBringAnythingBack() {
        for seed in UInt64(1)...400 {
            let s = scenario(seed)
            let settled = compact(s.all, s.stable)
            #expect(compact(settled.merged(s.stale.admitted(stable: s.stable)), s.stable) == settled, "seed \(seed)")
        }
    }

    @Test func editsOnCompactedStateReadTheSame() {
        for seed in UInt64(1)...300 {
            let s = scenario(seed)
            var plain = s.a, compacted = compact(s.a, s.stable)
            let t = HLC(time: max(s.a.lastWriteTime, s.stable) + 1, node: 9)
            switch seed % 4 {
            case 0:
                _ = plain.add("n", DecimalNumber(2), at: t)
                _ = compacted.add("n", DecimalNumber(2), at: t)
            case 1:
                _ = plain.addToSet("s", [.string("q")], at: t)
                _ = compacted.addToSet("s", [.string("q")], at: t)
            case 2:
                _ = plain.removeFromSet("s", [.string("x")], at: t)
                _ = compacted.removeFromSet("s", [.string("x")], at: t)
            default:
                _ = plain.add("a", DecimalNumber(1), at: t)
                _ = compacted.add("a", DecimalNumber(1), at: t)
            }
            #expect(plain.visible == compacted.visible, "seed \(seed)")
        }
    }

    @Test func aStableDeleteLeavesNothingAndAStaleCopyCannotRevive() {
        var item = ItemState()
        let put = item.put(["status": .string("available")], at: HLC(physicalMs: 1, logical: 0, node: 1))
        _ = item.delete(at: HLC(physicalMs: 2, logical: 0, node: 2))
        #expect(item.compacted(stable: HLC(physicalMs: 2, logical: 0, node: 0).time) != nil, "the delete is not stable yet")
        let stable = HLC(physicalMs: 3, logical: 0, node: 0).time
        #expect(item.compacted(stable: stable) == nil)
        // A member that slept through the delete pushes its old copy: the door keeps it out.
        #expect(put.admitted(stable: stable).visible == nil)
        #expect(ItemState().merged(put.admitted(stable: stable)).compacted(stable: stable) == nil)
    }
}

extension CompactionTests {
    /// `hasGarbage` is what keeps collection cheap; it must never miss an item compaction would
    /// change.
    @Test func itemsWithoutGarbageAreLeftAsTheyAre() {
        for seed in UInt64(1)...400 {
            let s = scenario(seed)
            for x in [s.a, s.b, s.all, s.stale] where !x.hasGarbage {
                #expect(compact(x, UInt64.max) == x, "seed \(seed)")
            }
        }
    }
}
