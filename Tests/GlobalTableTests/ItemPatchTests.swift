import GlobalTable
import TandemCore
import Testing

@Suite struct ItemPatchTests {
    static func patch(_ state: inout ItemState, _ text: String, at ms: UInt64) throws -> ItemState {
        try ItemPatch.apply(try JSON.parse(Array(text.utf8)), to: &state, keyNames: ["id"], at: HLC(physicalMs: ms, logical: 0, node: 1))
    }

    @Test func pathsInEveryOperation() throws {
        var s = ItemState()
        _ = s.put(
            ["id": .string("a-1"), "profile": .map(["phone": .string("1"), "tags": .stringSet(["a"])])],
            at: HLC(physicalMs: 1, logical: 0, node: 1))
        let delta = try Self.patch(
            &s,
            #"""
            {"set":{"profile.address.city":"Lyon","profile.a\\.b":true,"plain":1},
             "remove":["profile.phone"],
             "add":{"profile.visits":2},
             "addToSet":{"profile.tags":["b"]},
             "removeFromSet":{"profile.tags":["a"]}}
            """#, at: 2)
        #expect(
            s.visible?["profile"]
                == .map([
                    "address": .map(["city": .string("Lyon")]), "a.b": .bool(true),
                    "visits": .number(DecimalNumber(2)), "tags": .stringSet(["b"])
                ]))
        #expect(s.visible?["plain"] == .number(DecimalNumber(1)))
        // The delta carries exactly the path writes, not the whole map.
        #expect(delta.attributes["profile"]?.register == nil)
        #expect(
            Set(delta.attributes["profile"]?.paths.keys.map { $0 } ?? []) == [["address", "city"], ["a.b"], ["phone"], ["visits"], ["tags"]]
        )
    }

    @Test(arguments: [
        #"{"set":{"id.x":1}}"#, #"{"remove":["id"]}"#, #"{"set":{"a..b":1}}"#, #"{"remove":["a.\\x"]}"#,
        #"{"add":{"profile.phone":1}}"#, #"{"addToSet":{"profile":["x"]}}"#, #"{"remove":[1]}"#, #"{"set":[]}"#
    ])
    func badPatchesAreRefused(text: String) {
        var s = ItemState()
        _ = s.put(["id": .string("a-1"), "profile": .map(["phone": .string("1")])], at: HLC(physicalMs: 1, logical: 0, node: 1))
        #expect(throws: TandemError.self) { try Self.patch(&s, text, at: 2) }
    }

    @Test func aPathCountsTowardsTheNestingLimit() throws {
        var s = ItemState()
        let keys = Array(repeating: "k", count: 30).joined(separator: ".")
        _ = try Self.patch(&s, #"{"set":{"deep.\#(keys)":{"a":{"b":1}}}}"#, at: 1)
        #expect(throws: TandemError.self) { try Self.patch(&s, #"{"set":{"deep.\#(keys)":{"a":{"b":{"c":1}}}}}"#, at: 2) }
        #expect(try ItemCodec.decode(ItemCodec.encode(s)) == s)
    }
}
