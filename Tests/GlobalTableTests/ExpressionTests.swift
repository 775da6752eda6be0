import GlobalTable
import TandemCore
import Testing

/// DynamoDB's expression language: parsing, precedence, every function, update semantics on the
/// CRDT, and the ValidationException texts for bad input.
@Suite struct ExpressionTests {
    static let item: [String: AttributeValue] = [
        "id": .string("c-1"), "n": .number(DecimalNumber(5)), "name": .string("Ada"),
        "tags": .stringSet(["vip", "new"]), "scores": .list([.number(DecimalNumber(1)), .string("x")]),
        "profile": .map(["city": .string("Lyon"), "age": .number(DecimalNumber(36))]), "flag": .bool(true), "nothing": .null
    ]

    static func values(_ v: [String: AttributeValue]) -> [String: AttributeValue] { v }

    func holds(_ text: String, names: [String: String] = [:], values: [String: AttributeValue] = [:]) throws -> Bool {
        var p = ExpressionParser(names: names, values: values)
        return try p.condition(text).evaluate(ExpressionTests.item)
    }

    func error(_ body: () throws -> Void) -> String {
        do {
            try body()
            return ""
        } catch let e as DynamoError {
            return e.type == "ValidationException" ? e.message : "\(e)"
        } catch {
            return "\(error)"
        }
    }

    @Test func comparatorsAndBetweenAndIn() throws {
        let v: [String: AttributeValue] = [
            ":five": .number(DecimalNumber(5)), ":six": .number(DecimalNumber(6)), ":a": .string("A"), ":z": .string("Z")
        ]
        #expect(try holds("n = :five", values: v))
        #expect(try holds("n <> :six", values: v))
        #expect(try holds("n < :six AND n <= :five AND :six > n AND n >= :five", values: v))
        #expect(try holds("n BETWEEN :five AND :six", values: v))
        #expect(try holds("#nm BETWEEN :a AND :z", names: ["#nm": "name"], values: v))
        #expect(try holds("n IN (:six, :five)", values: v))
        #expect(try !holds("n IN (:six)", values: v))
        // Different types never order, and a missing attribute equals nothing.
        #expect(try !holds("n < :z", values: v))
        #expect(try !holds("missing = :five", values: v))
        #expect(try holds("missing <> :five", values: v))
        #expect(try holds("profile.age > :six AND scores[0] = :five OR scores[1] = :a", values: v) == false)
    }

    @Test func precedenceNotThenAndThenOr() throws {
        let v: [String: AttributeValue] = [":t": .bool(true), ":f": .bool(false)]
        // OR binds loosest: false AND false OR true == (false AND false) OR true.
        #expect(try holds("flag = :f AND flag = :f OR flag = :t", values: v))
        // NOT binds tighter than AND: NOT false AND true.
        #expect(try holds("NOT flag = :f AND flag = :t", values: v))
        #expect(try !holds("NOT (flag = :f OR flag = :t)", values: v))
        #expect(try holds("flag = :t and not flag = :f", values: v), "keywords are case-insensitive")
    }

    @Test func everyFunction() throws {
        let v: [String: AttributeValue] = [
            ":s": .string("S"), ":ss": .string("SS"), ":pre": .string("Ad"), ":vip": .string("vip"),
            ":two": .number(DecimalNumber(2)), ":x": .string("x"), ":L": .string("L"), ":nul": .string("NULL")
        ]
        #expect(try holds("attribute_exists(profile.city) AND attribute_not_exists(profile.zip)"))
        #expect(
            try holds(
                "attribute_type(#n, :s) AND attribute_type(tags, :ss) AND attribute_type(scores, :L) AND attribute_type(nothing, :nul)",
                names: ["#n": "name"], values: v))
        #expect(try holds("begins_with(#n, :pre)", names: ["#n": "name"], values: v))
        #expect(try holds("contains(tags, :vip) AND contains(scores, :x) AND contains(#n, :pre)", names: ["#n": "name"], values: v))
        #expect(try holds("size(tags) = :two AND size(scores) = :two AND size(profile) = :two", values: v))
        #expect(try !holds("size(missing) = :two", values: v))
    }

    @Test func projectionKeepsOnlyThePaths() throws {
        var p = ExpressionParser(names: ["#p": "profile"])
        let paths = try p.projection("id, #p.city, scores[1]")
        #expect(
            project(ExpressionTests.item, paths) == [
                "id": .string("c-1"), "profile": .map(["city": .string("Lyon")]), "scores": .list([.string("x")])
            ])
    }

    /// Paths into the same list element come back in one element, as DynamoDB returns them
    /// (`a[0].b, a[0].c` is `[{b, c}]`, not `[{b}, {c}]`); different elements stay apart.
    @Test func projectionMergesPathsIntoTheSameListElement() throws {
        let item: [String: AttributeValue] = [
            "a": .list([
                .map(["b": .string("1"), "c": .string("2"), "d": .string("3")]),
                .map(["b": .string("4"), "c": .string("5")]),
                .map(["b": .list([.string("x"), .string("y")])])
            ])
        ]
        var p = ExpressionParser()
        let paths = try p.projection("a[1].b, a[0].c, a[0].b, a[2].b[1], a[2].b[0]")
        #expect(
            project(item, paths) == [
                "a": .list([
                    .map(["b": .string("1"), "c": .string("2")]),
                    .map(["b": .string("4")]),
                    .map(["b": .list([.string("x"), .string("y")])])
                ])
            ])
    }

    @Test func badInputIsAValidationException() {
        #expect(
            error {
                var p = ExpressionParser(); _ = try p.condition("a = :missing")
            }
                == "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :missing"
        )
        #expect(
            error {
                var p = ExpressionParser(); _ = try p.condition("#x = a")
            }
                == "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; attribute name: #x")
        #expect(
            error {
                var p = ExpressionParser(); _ = try p.condition("")
            } == "Invalid ConditionExpression: The expression can not be empty;")
        #expect(
            error {
                var p = ExpressionParser(values: [":v": .null]); _ = try p.condition("a = :v extra")
            }.hasPrefix("Invalid ConditionExpression: Syntax error; token: \"extra\""))
        #expect(
            error {
                var p = ExpressionParser(values: [":v": .null]); _ = try p.condition("a = = :v")
            }.hasPrefix("Invalid ConditionExpression: Syntax error"))
        #expect(
            error {
                var p = ExpressionParser(); _ = try p.condition("frob(a)")
            }.contains("Invalid function name; function: frob"))
        #expect(
            error {
                var p = ExpressionParser(values: [":v": .null]); _ = try p.update("SET a = :v REMOVE a")
            }.contains("Two document paths overlap"))
        #expect(
            error {
                var p = ExpressionParser(values: [":v": .null]); _ = try p.update("SET a = :v SET b = :v")
            }.contains("can only be used once"))
        #expect(
            error {
                var p = ExpressionParser(values: [":v": .null, ":w": .null]); _ = try p.condition("a = :v"); try p.checkAllUsed()
            }
                == "Value provided in ExpressionAttributeValues unused in expressions: keys: {:w}")
        #expect(
            error {
                var p = ExpressionParser(values: [":v": .null]); _ = try p.condition("a = :v AND b = c BETWEEN")
            }.contains("Syntax error"))
    }

    // MARK: updates on the CRDT

    static func t(_ ms: UInt64, node: UInt64 = 1) -> HLC { HLC(physicalMs: ms, logical: 0, node: node) }

    func update(_ state: inout ItemState, _ text: String, _ values: [String: AttributeValue] = [:], at ms: UInt64, node: UInt64 = 1) throws
        -> ItemState
    {
        var p = ExpressionParser(values: values)
        let u = try p.update(text)
        return try DynamoUpdate.apply(u, to: &state, keyNames: ["id"], at: ExpressionTests.t(ms, node: node))
    }

    @Test func setRemoveAddDeleteAndFunctions() throws {
        var s = ItemState()
        _ = s.put(ExpressionTests.item, at: ExpressionTests.t(1))
        let v: [String: AttributeValue] = [
            ":one": .number(DecimalNumber(1)), ":l": .list([.string("y")]), ":z": .number(.zero),
            ":d": .string("dflt"), ":new": .stringSet(["x"]), ":vip": .stringSet(["vip"])
        ]
        _ = try update(
            &s, "SET n = n + :one, scores = list_append(scores, :l), c = if_not_exists(c, :z) + :one, w = if_not_exists(w, :d)", v, at: 2)
        _ = try update(&s, "REMOVE name ADD tags :new", v, at: 3)
        _ = try update(&s, "DELETE tags :vip", v, at: 4)
        _ = try update(&s, "SET profile.city = :d, scores[0] = :z REMOVE scores[1]", v, at: 5)
        let got = s.visible!
        #expect(got["n"] == .number(DecimalNumber(6)) && got["c"] == .number(DecimalNumber(1)) && got["w"] == .string("dflt"))
        #expect(got["name"] == nil && got["tags"] == .stringSet(["new", "x"]))
        #expect(got["scores"] == .list([.number(.zero), .string("y")]))
        #expect(got["profile"] == .map(["city": .string("dflt"), "age": .number(DecimalNumber(36))]))
    }

    @Test func concurrentIncrementsFromTwoNodesBothCount() throws {
        var base = ItemState()
        _ = base.put(["id": .string("k"), "n": .number(DecimalNumber(10))], at: ExpressionTests.t(1))
        var a = base, b = base
        let one: [String: AttributeValue] = [":k": .number(DecimalNumber(1)), ":two": .number(DecimalNumber(2))]
        let da = try update(&a, "SET n = n + :k", one, at: 2, node: 1)
        let db = try update(&b, "ADD n :two", one, at: 2, node: 2)
        a.merge(db)
        b.merge(da)
        #expect(a == b && a.visible?["n"] == .number(DecimalNumber(13)))
    }

    @Test func updateErrors() {
        var s = ItemState()
        _ = s.put(["id": .string("k"), "s": .string("x")], at: ExpressionTests.t(1))
        let v: [String: AttributeValue] = [":one": .number(DecimalNumber(1)), ":str": .string("y")]
        #expect(
            error { _ = try update(&s, "SET id = :str", v, at: 2) }.contains(
                "Cannot update attribute id. This attribute is part of the key"))
        #expect(
            error { _ = try update(&s, "SET s = s + :one", v, at: 2) } == "An operand in the update expression has an incorrect data type")
        #expect(
            error { _ = try update(&s, "SET m = missing + :one", v, at: 2) }
                == "The provided expression refers to an attribute that does not exist in the item")
        #expect(error { _ = try update(&s, "ADD s :one", v, at: 2) } == "An operand in the update expression has an incorrect data type")
        #expect(error { _ = try update(&s, "ADD x :str", v, at: 2) }.contains("operator: ADD, operand type: STRING"))
        #expect(
            error { _ = try update(&s, "SET a.b = :one", v, at: 2) }
                == "The document path provided in the update expression is invalid for update")
    }

    @Test func dynamoJSONRoundTripsAndCanonicalizesNumbers() throws {
        let j = try JSON.parse(
            Array(#"{"a":{"N":"00042"},"b":{"N":"1.5E2"},"c":{"M":{"d":{"L":[{"S":"x"},{"NULL":true}]}}},"e":{"NS":["1","2"]}}"#.utf8))
        let item = try DynamoJSON.item(j)
        #expect(item["a"] == .number(DecimalNumber(42)) && item["b"] == .number(DecimalNumber(150)))
        #expect(DynamoJSON.json(item).serialized.contains(#""a":{"N":"42"},"b":{"N":"150"}"#))
        #expect(throws: DynamoError.self) { try DynamoJSON.value(try JSON.parse(Array(#"{"N":"abc"}"#.utf8))) }
        #expect(throws: DynamoError.self) { try DynamoJSON.value(try JSON.parse(Array(#"{"SS":["a","a"]}"#.utf8))) }
        #expect(throws: DynamoError.self) { try DynamoJSON.value(try JSON.parse(Array(#"{"S":"a","N":"1"}"#.utf8))) }
    }

    /// Fuzz regression (scripts/fuzz expr: `REMOVE s.a.b.a.b…`, 37 path elements): a REMOVE or
    /// ADD at a path deeper than the stored form allows was accepted and produced an item the
    /// codec could not read back (a depth it refuses on load; past 255 keys the encoder trapped).
    /// Such paths are refused as DynamoDB refuses them, and whatever an update accepts
    /// round-trips through the codec.
    @Test func pathsDeeperThanTheStoredFormAreRefused() throws {
        let deep = "s" + String(repeating: ".a", count: ItemCodec.maxDepth + 1)  // 33 keys
        let legal = "s" + String(repeating: ".a", count: ItemCodec.maxDepth)
        let values: [String: AttributeValue] = [":one": .number(DecimalNumber(1)), ":ss": .stringSet(["x"])]
        for text in [
            "REMOVE \(deep)", "ADD \(deep) :one", "DELETE \(deep) :ss", "SET \(deep) = :one",
            "REMOVE s" + String(repeating: ".a", count: 300)
        ] {
            var p = ExpressionParser(values: values)
            #expect(error { _ = try p.update(text) }.contains("nesting levels"), "\(text.prefix(40))")
        }
        var p = ExpressionParser(values: values)
        #expect(error { _ = try p.condition("attribute_exists(\(deep))") }.contains("nesting levels"))
        for text in ["REMOVE \(legal)"] {  // (ADD and SET need the parent maps to exist)
            var p = ExpressionParser()
            let u = try p.update(text)
            var state = ItemState()
            _ = try DynamoUpdate.apply(u, to: &state, keyNames: ["id"], at: HLC(physicalMs: 1, logical: 0, node: 1))
            #expect(try ItemCodec.decode(ItemCodec.encode(state)) == state, "\(text.prefix(40))")
        }
        // A list element written through an index counts its list's depth too.
        var nested = AttributeValue.number(DecimalNumber(1))
        for _ in 0..<ItemCodec.maxDepth { nested = .list([nested]) }
        var q = ExpressionParser(values: [":deep": nested])
        let u = try q.update("SET l[0] = :deep")
        var state = ItemState()
        _ = state.put(["id": .string("c-1"), "l": .list([.null])], at: HLC(physicalMs: 1, logical: 0, node: 1))
        #expect(
            error { _ = try DynamoUpdate.apply(u, to: &state, keyNames: ["id"], at: HLC(physicalMs: 2, logical: 0, node: 1)) }
                .contains("Nesting Levels"))
    }
}
