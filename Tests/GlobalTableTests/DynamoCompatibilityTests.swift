import GlobalTable
import TandemCore
import Testing

/// Issue 15's expression bugs, each as DynamoDB documents (or answers) it: the limits checked
/// before parsing, missing attributes under `<>`, list indexes past the end, REMOVE through a
/// non-map, and the requests DynamoDB refuses (or accepts) that Tandem answered otherwise.
@Suite struct DynamoCompatibilityTests {
    static func num(_ n: Int) -> AttributeValue { .number(DecimalNumber(n)) }
    static let values: [String: AttributeValue] = [
        ":one": num(1), ":two": num(2), ":s": .string("x"), ":l": .list([num(1)]), ":t": .string("N"),
        ":a": num(1), ":b": num(2), ":c": num(3)
    ]
    static let item: [String: AttributeValue] = ["id": .string("k"), "a": num(1), "b": num(2), "s": .string("hello")]

    /// The ValidationException message, "" if the expression parsed (any other error fails).
    func refusal(_ body: (inout ExpressionParser) throws -> Void) -> String {
        var p = ExpressionParser(names: [:], values: DynamoCompatibilityTests.values)
        do {
            try body(&p)
            return ""
        } catch let e as DynamoError where e.type == "ValidationException" {
            return e.message
        } catch {
            return "unexpected \(error)"
        }
    }

    func condition(_ text: String, kind: String = "ConditionExpression") -> String {
        refusal { p in _ = try p.condition(text, kind: kind) }
    }

    func holds(_ text: String, on item: [String: AttributeValue] = item) throws -> Bool {
        var p = ExpressionParser(values: DynamoCompatibilityTests.values)
        return try p.condition(text).evaluate(item)
    }

    // MARK: bug 1: limits before parsing (these overflowed the parser's stack: SIGSEGV)

    @Test func hugeDeepExpressionsAreRefusedBeforeParsing() {
        let deep = String(repeating: "(", count: 29_000) + "a < b" + String(repeating: ")", count: 29_000)
        #expect(condition(deep).contains("Expression size has exceeded the maximum allowed size; expression size: 58005"))
        #expect(
            condition(String(repeating: "NOT ", count: 100_000) + "a < b", kind: "FilterExpression").hasPrefix(
                "Invalid FilterExpression: Expression size"))
        #expect(
            refusal { p in _ = try p.update("SET a = " + String(repeating: "list_append(", count: 50_000)) }.contains("Expression size"))
        #expect(refusal { p in _ = try p.projection(String(repeating: "a.", count: 30_000) + "a") }.contains("Expression size"))
    }

    @Test func theSizeLimitIs4096Bytes() {
        let spaces = String(repeating: " ", count: 4096 - "a = :s".utf8.count)
        #expect(condition("a =" + spaces + " :s") == "")  // exactly 4096 bytes
        #expect(condition("a = " + spaces + " :s").contains("expression size: 4097"))
    }

    @Test func nestingWithinFourKilobytesIsRefusedCleanly() {
        // 2,046 parentheses around one comparison (4,095 bytes): redundant, as DynamoDB says.
        #expect(
            condition(String(repeating: "(", count: 2046) + "a<b" + String(repeating: ")", count: 2046)).contains("redundant parentheses"))
        #expect(condition(String(repeating: "(", count: 4096)).hasPrefix("Invalid ConditionExpression"))
        // 1,000 NOTs: too many operators.
        #expect(
            condition(String(repeating: "not ", count: 1000) + "a<b")
                == "Invalid ConditionExpression: The expression contains too many operators; operator count: 1001")
        // a < size(size(…(b)…)) and a < f(f(…(b)…)): functions count.
        #expect(
            condition("a < " + String(repeating: "size(", count: 680) + "b" + String(repeating: ")", count: 680)).contains(
                "too many operators"))
        #expect(
            condition("a < " + String(repeating: "f(", count: 1355) + "b" + String(repeating: ")", count: 1355)).contains(
                "too many operators"))
        // An UpdateExpression's `+` count (SET's `=` does not).
        func sums(_ n: Int) -> String { "SET " + (0..<n).map { "a\($0)=:a+:b" }.joined(separator: ",") }
        #expect(refusal { p in _ = try p.update(sums(300)) } == "")
        #expect(
            refusal { p in _ = try p.update(sums(301)) }
                == "Invalid UpdateExpression: The expression contains too many operators; operator count: 301")
    }

    @Test func threeHundredOperatorsParseAndEvaluate() throws {
        // a<b or (a<b or (…)): 149 levels, 299 operators, below the limit; 150 levels are 301.
        func nested(_ depth: Int) -> String { "a<b " + String(repeating: "or (a<b ", count: depth) + String(repeating: ")", count: depth) }
        #expect(try holds(nested(149)))
        #expect(condition(nested(150)).contains("operator count: 301"))
        // NOT × 299 around a comparison: 300 operators, nested 299 deep.
        #expect(try holds(String(repeating: "NOT (", count: 299) + "a < b" + String(repeating: ")", count: 299)) == false)
    }

    // MARK: bug 2: `<>` between two missing attributes

    @Test func notEqualHoldsWhenEitherSideIsMissing() throws {
        #expect(try holds("q <> z"))
        #expect(try holds("q <> z", on: [:]))
        #expect(try holds("q <> a"))
        #expect(try !holds("q = z"))
        #expect(try !holds("q < z") && !holds("q BETWEEN z AND x"))
    }

    // MARK: bugs 4 and 5: list indexes, REMOVE through a non-map

    func apply(_ text: String, to item: [String: AttributeValue]?) throws -> [String: AttributeValue]? {
        var state = ItemState()
        if let item { _ = state.put(item, at: HLC(physicalMs: 1, logical: 0, node: 1)) }
        var p = ExpressionParser(
            values: [":x": .string("a84"), ":y": .string("a17"), ":z": .string("a3"), ":v": .string("v")])
        _ = try DynamoUpdate.apply(try p.update(text), to: &state, keyNames: ["id"], at: HLC(physicalMs: 2, logical: 0, node: 1))
        return state.visible
    }

    @Test func setsPastTheEndAppendInIndexOrder() throws {
        let new = try apply("SET a[84] = :x, a[17] = :y", to: ["id": .string("k"), "a": .list([.string("one")])])
        #expect(new?["a"] == .list([.string("one"), .string("a17"), .string("a84")]))
        // Removals by number, not as text ([10] sorted before [9]): two different elements go.
        let list = AttributeValue.list((0..<12).map { DynamoCompatibilityTests.num($0) })
        let removed = try apply("REMOVE a[9], a[10]", to: ["id": .string("k"), "a": list])
        #expect(removed?["a"] == .list([0, 1, 2, 3, 4, 5, 6, 7, 8, 11].map { DynamoCompatibilityTests.num($0) }))
    }

    @Test func removeThroughANonMapIsRefused() throws {
        let item: [String: AttributeValue] = ["id": .string("k"), "a": .string("hello"), "b": .list([.string("hi")])]
        for text in ["REMOVE a.c", "REMOVE b.c", "REMOVE c.c", "REMOVE a[0]", "REMOVE c[0]"] {
            #expect(throws: DynamoError.validation("The document path provided in the update expression is invalid for update")) {
                _ = try apply(text, to: item)
            }
        }
        // Past the end of a list: nothing to remove, no error; a missing item: nothing either.
        #expect(try apply("REMOVE b[7]", to: item)?["b"] == .list([.string("hi")]))
        #expect(try apply("REMOVE c.c, d[0]", to: nil) == nil)
    }

    // MARK: bug 6: what DynamoDB refuses, and what it accepts

    @Test func redundantParenthesesAreRefused() throws {
        #expect(condition("((a = :one))") == "Invalid ConditionExpression: The expression has redundant parentheses;")
        #expect(condition("(((a = :one)) AND b = :two)").contains("redundant parentheses"))
        #expect(try holds("(a = :one) AND (b = :two OR (NOT a = :two))"))
    }

    @Test func constantsOfTheWrongTypeAreValidationErrors() throws {
        #expect(
            condition("a < :l")
                == "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: <, operand type: L")
        #expect(condition(":l >= a").contains("operand type: L"))
        #expect(condition("a BETWEEN :l AND :l").contains("operand type: L"))
        #expect(condition("begins_with(s, :one)").contains("operator or function: begins_with, operand type: N"))
        #expect(condition("a BETWEEN :two AND :one").contains("requires upper bound to be greater than or equal to lower bound"))
        #expect(condition("a BETWEEN :one AND :s").contains("requires same data type for lower and upper bounds"))
        // The same types read from the item only make the condition false.
        #expect(try !holds("s < :one") && !holds("begins_with(a, :s)") && !holds("a BETWEEN b AND :one"))
        #expect(try holds("a = :l") == false)
    }

    @Test func anAttributeComparedWithItselfIsRefused() throws {
        for text in ["a = a", "a <> a", "a BETWEEN :one AND a", "a IN (:one, a)", "contains(s, s)", "begins_with(s, s)"] {
            #expect(condition(text).contains("The first operand must be distinct from the remaining operands"), "\(text)")
        }
        #expect(try holds("a <> b") && holds("size(s) > a"))
    }

    @Test func functionsOfValuesAreAccepted() throws {
        #expect(try holds("attribute_type(:one, :t)"))
        #expect(try holds("size(:s) = :one"))
        #expect(condition("size(:one) = :one").contains("operator or function: size, operand type: N"))
        #expect(condition("attribute_type(a, s)").contains("attribute_type"))
        #expect(condition("attribute_type(a, :s)").contains("Invalid attribute type name found; type: x"))
        #expect(condition("if_not_exists(a, :one) = :one").contains("The function is not allowed in a condition expression"))
    }

    @Test func updateGrammarAsDynamoDBHasIt() {
        func update(_ text: String) -> String { refusal { p in _ = try p.update(text) } }
        #expect(update("SET n = :a + :b + :c").contains("Syntax error"))
        #expect(update("SET n = :a - :b") == "")
        #expect(update("SET l = list_append(list_append(:l, :l), :l)").contains("not allowed to be used this way"))
        #expect(update("SET l = list_append(if_not_exists(l, :l), :l)") == "")
        #expect(update("SET a.b = :a, a[1] = :b").contains("Two document paths conflict with each other"))
        #expect(update("SET _a = :a").contains("Syntax error"))
        #expect(refusal { p in _ = try p.projection("a.b, a[0]") }.contains("conflict"))
    }
}
