import GlobalTable
import StreamLog
@testable import TandemNode
import TandemCore
import Testing

/// Stream definitions as catalog items: the typed form written now, and the older form (the
/// placement as JSON text in a string) that data on disk and older nodes still hold.
@Suite struct StreamCatalogTests {
    static let definition = StreamDefinition(
        name: "orders", partitions: 2, retentionHours: 48, incarnation: 1_796_661_607_632,
        voters: [["n1:7000", "n3:7000", "n2:7000"], ["n2:7000", "n1:7000"]],
        witnesses: [[], ["w1:7000"]])

    @Test func theTypedFormRoundTrips() {
        let item = Streams.catalogItem(Self.definition)
        #expect(item["partitions"] == .number(DecimalNumber(2)) && item["retentionHours"] == .number(DecimalNumber(48)))
        #expect(item["incarnation"] == .string("1796661607632"))
        guard case .list(let placement)? = item["placement"] else {
            Issue.record("placement is not a list: \(String(describing: item["placement"]))")
            return
        }
        #expect(placement[1] == .map(["voters": .list([.string("n2:7000"), .string("n1:7000")]), "witnesses": .list([.string("w1:7000")])]))
        #expect(Streams.decodeDefinition(item) == Self.definition)
    }

    @Test func theOlderStringFormIsStillRead() {
        // As nodes before the typed form stored it (the item a client PUT of this JSON made).
        let placement =
            #"[{"voters":["n1:7000","n3:7000","n2:7000"],"witnesses":[]},{"voters":["n2:7000","n1:7000"],"witnesses":["w1:7000"]}]"#
        let old: [String: AttributeValue] = [
            "name": .string("orders"), "partitions": .number(DecimalNumber(2)),
            "retentionHours": .number(DecimalNumber(48)), "incarnation": .string("1796661607632"),
            "placement": .string(placement)
        ]
        #expect(Streams.decodeDefinition(old) == Self.definition)
    }

    @Test func aPlacementStoredByAddressIsReadByName() {
        // Nodes before ids were names stored bind addresses; the addresses members had map to
        // their names, one nobody had stays as it was.
        var legacy = LegacyAddresses()
        for (address, name) in [("10.0.0.1:7000", "n1"), ("10.0.0.2:7000", "n2"), ("10.0.0.3:7000", "n3")] {
            legacy.add(address: address, name: NodeID(name))
        }
        let old = StreamDefinition(
            name: "orders", partitions: 2, retentionHours: 48, incarnation: 7,
            voters: [["10.0.0.1:7000", "10.0.0.3:7000", "10.0.0.2:7000"], ["10.0.0.2:7000", "10.0.0.9:7000"]],
            witnesses: [[], ["10.0.0.3:7000"]])
        let read = Streams.decodeDefinition(Streams.catalogItem(old))!.resolving(legacy)
        #expect(read.voters == [["n1", "n3", "n2"], ["n2", "10.0.0.9:7000"]])
        #expect(read.witnesses == [[], ["n3"]])
        #expect(legacy.unresolved("10.0.0.9:7000", known: ["n1", "n2", "n3"]))
        #expect(!legacy.unresolved("n1", known: ["n1", "n2", "n3"]))
        // A node named like an address is a name, not an address to map.
        #expect(!legacy.unresolved("10.0.0.9:7000", known: ["10.0.0.9:7000"]))
    }

    @Test func aStreamKeepsItsKeyHash() {
        // Stored without keyHash (before Kinesis's rule): FNV-1a, as the stream was created with.
        var item = Streams.catalogItem(Self.definition)
        #expect(item["keyHash"] == .string("fnv1a"))
        item["keyHash"] = nil
        #expect(Streams.decodeDefinition(item)?.keyHash == .fnv1a)
        var md5 = Self.definition
        md5.keyHash = .md5
        #expect(Streams.decodeDefinition(Streams.catalogItem(md5)) == md5)
        item["keyHash"] = .string("sha3")  // a rule this node does not know is not guessed
        #expect(Streams.decodeDefinition(item) == nil)
    }

    @Test func malformedItemsAreNotDefinitions() {
        var item = Streams.catalogItem(Self.definition)
        item["placement"] = .list([])  // not one entry per partition
        #expect(Streams.decodeDefinition(item) == nil)
        item = Streams.catalogItem(Self.definition)
        item["incarnation"] = .number(DecimalNumber(5))  // stored as a string, always
        #expect(Streams.decodeDefinition(item) == nil)
        item = Streams.catalogItem(Self.definition)
        item["placement"] = .string("not json")
        #expect(Streams.decodeDefinition(item) == nil)
    }
}
