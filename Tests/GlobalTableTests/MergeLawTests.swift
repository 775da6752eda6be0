import GlobalTable
import TandemCore
import Testing

/// Merge laws as properties over random operations on every attribute type.
@Suite struct MergeLawTests {
    /// A random history: `replicas` nodes each applying random operations to their own copy of
    /// one item, producing the deltas they would replicate.
    struct History {
        var deltas: [ItemState] = []
        var finals: [ItemState] = []
    }

    static let names = ["a", "b", "n", "s", "m"]
    /// Nested paths, overlapping on purpose (`m.x` is a prefix of `m.x.y`; `a` is often a string).
    static let paths: [DocumentPath] = [
        DocumentPath("m", ["x"]), DocumentPath("m", ["x", "y"]), DocumentPath("m", ["x", "z"]), DocumentPath("m", ["w"]),
        DocumentPath("a", ["x"]), DocumentPath("m", ["c"]), DocumentPath("m", ["s"]), DocumentPath("m", ["x", "c"])
    ]
    static let elements: [SetElement] = ["x", "y", "z"].map { .string($0) }

    static func randomHistory(seed: UInt64, replicas: Int = 3, steps: Int = 40) -> History {
        var rng = SeededGenerator(seed: seed)
        var states = Array(repeating: ItemState(), count: replicas)
        var clocks = (0..<replicas).map { HybridClock(node: UInt64($0 + 1)) }
        var wall: UInt64 = 1_000
        var history = History()
        for _ in 0..<steps {
            wall += rng.next() % 3
            let r = Int(rng.next() % UInt64(replicas))
            // Sometimes a replica first catches up with a random earlier delta (partial sync).
            if !history.deltas.isEmpty, rng.chance(0.5) {
                let d = history.deltas[Int(rng.next() % UInt64(history.deltas.count))]
                states[r].merge(d)
                clocks[r].observe(HLC(time: d.lastWriteTime, node: 0), wallMs: wall)
            }
            let t = clocks[r].now(wallMs: wall)
            let name = names[Int(rng.next() % UInt64(names.count))]
            let delta: ItemState?
            let path = paths[Int(rng.next() % UInt64(paths.count))]
            switch rng.next() % 11 {
            case 0: delta = states[r].set(name, .string("v\(rng.next() % 5)"), at: t)
            case 1: delta = states[r].set(name, .number(DecimalNumber(Int(rng.next() % 10))), at: t)
            case 2: delta = states[r].remove(name, at: t)
            case 3: delta = states[r].add("n", DecimalNumber(Int(rng.next() % 7) - 3), at: t)
            case 4: delta = states[r].addToSet("s", [elements[Int(rng.next() % 3)]], at: t)
            case 5: delta = states[r].removeFromSet("s", [elements[Int(rng.next() % 3)]], at: t)
            case 6 where rng.chance(0.3): delta = states[r].set("s", .stringSet(["x", "w"]), at: t)
            case 6: delta = states[r].put(["a": .string("p"), "n": .number(DecimalNumber(1))], at: t)
            case 7: delta = rng.chance(0.3) ? states[r].delete(at: t) : states[r].add("n", DecimalNumber(1), at: t)
            case 8: delta = states[r].set(path, rng.chance(0.7) ? .string("p\(rng.next() % 5)") : .map(["y": .string("deep")]), at: t)
            case 9: delta = states[r].remove(path, at: t)
            default:
                switch rng.next() % 5 {
                case 0: delta = states[r].set("m", .map(["x": .map(["y": .string("whole")]), "c": .number(DecimalNumber(4))]), at: t)
                case 1: delta = states[r].put(["m": .map(["s": .stringSet(["x"]), "w": .string("put")])], at: t)
                case 2:
                    delta = states[r].add(rng.chance(0.5) ? DocumentPath("m", ["c"]) : path, DecimalNumber(Int(rng.next() % 5) - 2), at: t)
                case 3:
                    delta = states[r].addToSet(rng.chance(0.5) ? DocumentPath("m", ["s"]) : path, [elements[Int(rng.next() % 3)]], at: t)
                default: delta = states[r].removeFromSet(DocumentPath("m", ["s"]), [elements[Int(rng.next() % 3)]], at: t)
                }
            }
            if let delta { history.deltas.append(delta) }
        }
        history.finals = states
        return history
    }

    @Test func mergeIsCommutativeAssociativeAndIdempotent() {
        for seed in UInt64(1)...300 {
            let h = Self.randomHistory(seed: seed)
            let (a, b, c) = (h.finals[0], h.finals[1], h.finals[2])
            #expect(a.merged(b) == b.merged(a), "commutativity, seed \(seed)")
            #expect(a.merged(b).merged(c) == a.merged(b.merged(c)), "associativity, seed \(seed)")
            #expect(a.merged(a) == a, "idempotence, seed \(seed)")
            #expect(a.merged(b).visible == b.merged(a).visible, "seed \(seed)")
        }
    }

    @Test func replicasConvergeWhateverTheDeliveryOrder() {
        for seed in UInt64(1)...200 {
            let h = Self.randomHistory(seed: seed)
            var rng = SeededGenerator(seed: seed ^ 0xABCDEF)
            var replicas: [ItemState] = []
            for _ in 0..<3 {
                var order = h.deltas + h.deltas.filter { _ in rng.chance(0.3) }  // with duplicates
                order.shuffle(using: &rng)
                var s = ItemState()
                for d in order { s.merge(d) }
                replicas.append(s)
            }
            #expect(replicas[0] == replicas[1] && replicas[1] == replicas[2], "seed \(seed)")
            // And equal to every origin's state merged together.
            let all = h.finals.reduce(ItemState()) { $0.merged($1) }
            #expect(replicas[0].visible == all.visible, "seed \(seed)")
        }
    }

    @Test func concurrentWritesToDifferentAttributesBothSurvive() {
        var east = ItemState(), west = ItemState()
        let base = east.put(["id": .string("a-17"), "status": .string("available")], at: HLC(physicalMs: 1, logical: 0, node: 1))
        west.merge(base)
        let d1 = east.set("x", .string("from-east"), at: HLC(physicalMs: 2, logical: 0, node: 1))
        let d2 = west.set("y", .string("from-west"), at: HLC(physicalMs: 2, logical: 0, node: 2))
        east.merge(d2)
        west.merge(d1)
        #expect(east == west)
        #expect(east.visible?["x"] == .string("from-east"))
        #expect(east.visible?["y"] == .string("from-west"))
        #expect(east.visible?["status"] == .string("available"))
    }

    @Test func concurrentIncrementsAllCountAndALaterSetResets() {
        var east = ItemState(), west = ItemState()
        var t: UInt64 = 10
        var deltasEast: [ItemState] = [], deltasWest: [ItemState] = []
        for i in 0..<1000 {
            t += 1
            if i % 2 == 0 {
                deltasEast.append(east.add("handled", DecimalNumber(1), at: HLC(physicalMs: t, logical: 0, node: 1))!)
            } else {
                deltasWest.append(west.add("handled", DecimalNumber(1), at: HLC(physicalMs: t, logical: 0, node: 2))!)
            }
        }
        for d in deltasWest { east.merge(d) }
        for d in deltasEast { west.merge(d) }
        #expect(east == west)
        #expect(east.visible?["handled"] == .number(DecimalNumber(1000)))

        _ = east.set("handled", .number(DecimalNumber(5)), at: HLC(physicalMs: t + 10, logical: 0, node: 1))
        _ = east.add("handled", DecimalNumber(2), at: HLC(physicalMs: t + 11, logical: 0, node: 1))
        #expect(east.visible?["handled"] == .number(DecimalNumber(7)))
    }

    @Test func addWinsOverAConcurrentRemove() {
        var east = ItemState(), west = ItemState()
        let add = east.addToSet("skills", [.string("billing")], at: HLC(physicalMs: 1, logical: 0, node: 1))!
        west.merge(add)
        let remove = west.removeFromSet("skills", [.string("billing")], at: HLC(physicalMs: 2, logical: 0, node: 2))!
        let addAgain = east.addToSet("skills", [.string("billing")], at: HLC(physicalMs: 2, logical: 0, node: 1))!
        east.merge(remove)
        west.merge(addAgain)
        #expect(east == west)
        #expect(east.visible?["skills"] == .stringSet(["billing"]))
    }

    @Test func aSetWrittenWholeCanBeEditedElementwise() {
        var east = ItemState(), west = ItemState()
        let put = east.put(["skills": .stringSet(["billing", "voice"])], at: HLC(physicalMs: 1, logical: 0, node: 1))
        west.merge(put)
        let add = east.addToSet("skills", [.string("chat")], at: HLC(physicalMs: 2, logical: 0, node: 1))!
        let remove = west.removeFromSet("skills", [.string("voice")], at: HLC(physicalMs: 2, logical: 0, node: 2))!
        east.merge(remove)
        west.merge(add)
        #expect(east == west)
        #expect(east.visible?["skills"] == .stringSet(["billing", "chat"]))
        var counter = ItemState()
        _ = counter.set("n", .number(DecimalNumber(3)), at: HLC(physicalMs: 1, logical: 0, node: 1))
        #expect(counter.addToSet("n", [.string("x")], at: HLC(physicalMs: 2, logical: 0, node: 1)) == nil)
    }

    @Test func deleteHidesOlderWritesAndALaterUpdateStillLands() {
        var s = ItemState()
        _ = s.put(["a": .string("1"), "b": .string("2")], at: HLC(physicalMs: 1, logical: 0, node: 1))
        _ = s.delete(at: HLC(physicalMs: 2, logical: 0, node: 1))
        #expect(s.visible == nil)
        // A write made before the delete, arriving late, stays hidden.
        var late = ItemState()
        _ = late.set("c", .string("old"), at: HLC(physicalMs: 1, logical: 5, node: 2))
        s.merge(late)
        #expect(s.visible == nil)
        _ = s.set("d", .string("new"), at: HLC(physicalMs: 3, logical: 0, node: 2))
        #expect(s.visible == ["d": .string("new")])
    }
}

extension MergeLawTests {
    /// The random histories do reach nested maps assembled from several paths (else the laws
    /// above would say little about them).
    @Test func randomHistoriesExerciseNestedPaths() {
        var nested = 0
        for seed in UInt64(1)...200 {
            let all = Self.randomHistory(seed: seed).finals.reduce(ItemState()) { $0.merged($1) }
            if case .map(let m)? = all.visible?["m"], m.count >= 2, (all.attributes["m"]?.paths.count ?? 0) >= 2 { nested += 1 }
        }
        #expect(nested >= 40, "\(nested) of 200 histories")
    }
}
