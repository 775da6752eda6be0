@testable import GlobalTable
import TandemCore
import Testing

/// Nested map paths merge per path: the rules in the header of Item.swift.
@Suite struct NestedPathTests {
    static func at(_ ms: UInt64, _ node: UInt64 = 1) -> HLC { HLC(physicalMs: ms, logical: 0, node: node) }
    static let profile: AttributeValue = .map(["address": .map(["city": .string("Lyon")]), "phone": .string("1")])

    /// Every delivery order of `deltas` gives the same state; returns it.
    static func mergedInEveryOrder(_ deltas: [ItemState]) -> ItemState {
        func permutations(_ xs: [ItemState]) -> [[ItemState]] {
            guard xs.count > 1 else { return [xs] }
            return xs.indices.flatMap { i in
                var rest = xs
                let x = rest.remove(at: i)
                return permutations(rest).map { [x] + $0 }
            }
        }
        let states = permutations(deltas).map { $0.reduce(ItemState()) { $0.merged($1) } }
        for s in states { #expect(s == states[0]) }
        return states[0]
    }

    @Test func concurrentWritesToDifferentPathsBothSurvive() {
        var east = ItemState(), west = ItemState()
        let base = east.put(["profile": Self.profile], at: Self.at(1))
        west.merge(base)
        let d1 = east.set(DocumentPath("profile", ["address", "city"]), .string("Paris"), at: Self.at(2, 1))
        let d2 = west.set(DocumentPath("profile", ["phone"]), .string("2"), at: Self.at(2, 2))
        east.merge(d2)
        west.merge(d1)
        #expect(east == west)
        #expect(east.visible?["profile"] == .map(["address": .map(["city": .string("Paris")]), "phone": .string("2")]))
    }

    @Test func concurrentWritesToTheSamePathAreLastWriterWins() {
        var base = ItemState()
        _ = base.put(["profile": Self.profile], at: Self.at(1))
        var east = base, west = base
        let d1 = east.set(DocumentPath("profile", ["phone"]), .string("east"), at: Self.at(2, 1))
        let d2 = west.set(DocumentPath("profile", ["phone"]), .string("west"), at: Self.at(2, 2))
        let s = Self.mergedInEveryOrder([base, d1, d2])
        #expect(s.visible?["profile"] == .map(["address": .map(["city": .string("Lyon")]), "phone": .string("west")]))
    }

    @Test func aWholeMapSetHidesOlderPathWritesButNotNewerOnes() {
        var s = ItemState()
        let older = s.set(DocumentPath("profile", ["address", "city"]), .string("Paris"), at: Self.at(1))
        let whole = s.set("profile", .map(["phone": .string("9")]), at: Self.at(2))
        let newer = s.set(DocumentPath("profile", ["zip"]), .string("75001"), at: Self.at(3))
        // A whole-map write at a prefix of the path hides older writes below it too.
        let sub = s.set(DocumentPath("profile", ["address"]), .map(["street": .string("Rue")]), at: Self.at(4))
        let merged = Self.mergedInEveryOrder([newer, sub, whole, older])
        #expect(
            merged.visible?["profile"]
                == .map(["phone": .string("9"), "zip": .string("75001"), "address": .map(["street": .string("Rue")])]))
        #expect(merged == s)
    }

    @Test func removingAPathIsAPerPathTombstone() {
        var s = ItemState()
        let put = s.put(["profile": Self.profile], at: Self.at(1))
        let remove = s.remove(DocumentPath("profile", ["phone"]), at: Self.at(3, 1))
        var other = ItemState()
        other.merge(put)
        let concurrent = other.set(DocumentPath("profile", ["address", "zip"]), .string("69001"), at: Self.at(3, 2))
        // Older than the removal at the same path: loses.
        let stale = other.set(DocumentPath("profile", ["phone"]), .string("old"), at: Self.at(2, 2))
        let merged = Self.mergedInEveryOrder([put, remove, concurrent, stale])
        #expect(merged.visible?["profile"] == .map(["address": .map(["city": .string("Lyon"), "zip": .string("69001")])]))
        // Removing what is not there, or under a non-map, changes nothing.
        var t = merged
        _ = t.remove(DocumentPath("profile", ["nope", "deeper"]), at: Self.at(4))
        _ = t.remove(DocumentPath("profile", ["address", "city", "x"]), at: Self.at(5))
        #expect(t.visible == merged.visible)
    }

    @Test func aPutOfTheItemHidesOlderPathWrites() {
        var s = ItemState()
        let late = {
            var x = ItemState(); return x.set(DocumentPath("profile", ["phone"]), .string("late"), at: Self.at(1, 2))
        }()
        _ = s.put(["profile": Self.profile], at: Self.at(2))
        s.merge(late)
        #expect(s.visible?["profile"] == Self.profile)
        _ = s.set(DocumentPath("profile", ["phone"]), .string("new"), at: Self.at(3))
        #expect(s.visible?["profile"] == .map(["address": .map(["city": .string("Lyon")]), "phone": .string("new")]))
        _ = s.delete(at: Self.at(4))
        #expect(s.visible == nil)
    }

    @Test func aPathWriteUnderANonMapReplacesItWithMaps() {
        var s = ItemState()
        _ = s.set("profile", .string("plain"), at: Self.at(1))
        _ = s.remove(DocumentPath("profile", ["a"]), at: Self.at(2))
        #expect(s.visible?["profile"] == .string("plain"))
        _ = s.set(DocumentPath("profile", ["a", "b"]), .number(DecimalNumber(1)), at: Self.at(3))
        #expect(s.visible?["profile"] == .map(["a": .map(["b": .number(DecimalNumber(1))])]))
        // A path write on an attribute that does not exist creates it.
        _ = s.set(DocumentPath("fresh", ["k"]), .bool(true), at: Self.at(4))
        #expect(s.visible?["fresh"] == .map(["k": .bool(true)]))
    }

    @Test func writesAtOneTimestampApplyShorterPathFirst() {
        // One PATCH setting `profile` and `profile.b` shares a timestamp: the deeper write lands on top.
        var s = ItemState()
        let t = Self.at(1)
        _ = s.set(DocumentPath("profile", ["b"]), .number(DecimalNumber(2)), at: t)
        _ = s.set("profile", .map(["a": .number(DecimalNumber(1))]), at: t)
        #expect(s.visible?["profile"] == .map(["a": .number(DecimalNumber(1)), "b": .number(DecimalNumber(2))]))
    }

    @Test func countersAndSetsWorkAtPaths() {
        var east = ItemState(), west = ItemState()
        let put = east.put(["profile": .map(["visits": .number(DecimalNumber(5)), "tags": .stringSet(["a"])])], at: Self.at(1))
        west.merge(put)
        let visits = DocumentPath("profile", ["visits"]), tags = DocumentPath("profile", ["tags"])
        // Concurrent increments against the same base both count.
        let e1 = east.add(visits, DecimalNumber(1), at: Self.at(2, 1))!
        let w1 = west.add(visits, DecimalNumber(1), at: Self.at(2, 2))!
        let e2 = east.addToSet(tags, [.string("b")], at: Self.at(3, 1))!
        let w2 = west.removeFromSet(tags, [.string("a")], at: Self.at(3, 2))!
        let merged = Self.mergedInEveryOrder([put, e1, w1, e2, w2])
        #expect(merged.visible?["profile"] == .map(["visits": .number(DecimalNumber(7)), "tags": .stringSet(["b"])]))
        // A counter under a path that holds nothing starts from zero; a map or string is not a number.
        var s = merged
        #expect(s.add(DocumentPath("profile", ["new"]), DecimalNumber(3), at: Self.at(4)) != nil)
        #expect(s.visible?["profile"]?.lookup("new") == .number(DecimalNumber(3)))
        #expect(s.add("profile", DecimalNumber(1), at: Self.at(5)) == nil)
        #expect(s.addToSet(visits, [.string("x")], at: Self.at(5)) == nil)
        // A later whole-map write re-bases the counter: increments made before it are gone.
        _ = s.set("profile", .map(["visits": .number(DecimalNumber(100))]), at: Self.at(6))
        _ = s.add(visits, DecimalNumber(1), at: Self.at(7))
        #expect(s.visible?["profile"] == .map(["visits": .number(DecimalNumber(101))]))
    }

    @Test func pathsParseFromText() throws {
        #expect(try DocumentPath(parsing: "profile") == DocumentPath("profile"))
        #expect(try DocumentPath(parsing: "profile.address.city") == DocumentPath("profile", ["address", "city"]))
        #expect(try DocumentPath(parsing: #"profile.a\.b"#) == DocumentPath("profile", ["a.b"]))
        #expect(try DocumentPath(parsing: #"a\\.b"#) == DocumentPath(#"a\"#, ["b"]))
        for p in [DocumentPath("x.y", ["a\\b", "c.d", "é"]), DocumentPath("p", ["q"])] {
            #expect(try DocumentPath(parsing: p.description) == p)
        }
        for bad in ["", "a..b", ".a", "a.", #"a\x"#, #"a\"#, Array(repeating: "k", count: 34).joined(separator: ".")] {
            #expect(throws: TandemError.self, "\(bad)") { try DocumentPath(parsing: bad) }
        }
    }

    @Test func codecRoundTripsPathsAndSurvivesMutation() throws {
        var s = ItemState()
        _ = s.put(["profile": Self.profile], at: Self.at(1))
        _ = s.set(DocumentPath("profile", ["address", "zip"]), .string("69001"), at: Self.at(2))
        _ = s.remove(DocumentPath("profile", ["phone"]), at: Self.at(3))
        _ = s.add(DocumentPath("profile", ["visits"]), DecimalNumber(2), at: Self.at(4))
        _ = s.addToSet(DocumentPath("profile", ["tags"]), [.string("vip")], at: Self.at(5))
        let bytes = ItemCodec.encode(s)
        let decoded = try ItemCodec.decode(bytes)
        #expect(decoded == s)
        #expect(ItemCodec.encode(decoded) == bytes)
        for cut in 0..<bytes.count {
            #expect(throws: TandemError.self) { try ItemCodec.decode(Array(bytes.prefix(cut))) }
        }
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<5000 {
            var mutated = bytes
            for _ in 0..<Int(rng.next() % 4 + 1) {
                mutated[Int(rng.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            if let d = try? ItemCodec.decode(mutated) { _ = d.visible; _ = ItemCodec.encode(d) }
        }
    }

    @Test func pathDepthCountsTowardsTheNestingLimit() {
        var v: AttributeValue = .null
        for _ in 0..<5 { v = .map(["k": v]) }
        var s = ItemState()
        _ = s.set(DocumentPath("deep", Array(repeating: "k", count: 30)), v, at: Self.at(1))
        #expect(throws: TandemError.self) { try ItemCodec.decode(ItemCodec.encode(s)) }
    }
}

extension AttributeValue {
    func lookup(_ key: String) -> AttributeValue? {
        guard case .map(let m) = self else { return nil }
        return m[key]
    }
}
