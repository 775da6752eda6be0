import GlobalTable
import TandemCore
import Testing

/// The legacy parameters translate into the same trees the expressions parse to, so one
/// evaluator serves both; and DynamoDB's rules on mixing the two families.
@Suite struct LegacyParameterTests {
    func request(_ text: String) throws -> JSON { try JSON.parse(Array(text.utf8)) }

    func parsed(_ text: String, _ values: [String: AttributeValue] = [:]) throws -> Condition {
        var p = ExpressionParser(values: values)
        return try p.condition(text)
    }

    static let one = AttributeValue.number(DecimalNumber(1)), three = AttributeValue.number(DecimalNumber(3))

    @Test func expectedIsTheConditionExpressionItReplaces() throws {
        let v = [":one": Self.one, ":three": Self.three]
        #expect(
            try LegacyParameters.expected(request(#"{"Expected":{"a":{"Value":{"N":"1"}},"b":{"Exists":false}}}"#))
                == parsed("a = :one AND attribute_not_exists(b)", v))
        #expect(
            try LegacyParameters.expected(
                request(
                    #"{"Expected":{"a":{"ComparisonOperator":"BETWEEN","AttributeValueList":[{"N":"1"},{"N":"3"}]},"#
                        + #""b":{"ComparisonOperator":"NE","AttributeValueList":[{"N":"3"}]}},"ConditionalOperator":"OR"}"#))
                == parsed("a BETWEEN :one AND :three OR b <> :three", v))
        // NOT_CONTAINS is false on a missing attribute, where NOT contains(…) would be true.
        let notContains = try LegacyParameters.filter(
            request(#"{"ScanFilter":{"s":{"ComparisonOperator":"NOT_CONTAINS","AttributeValueList":[{"S":"x"}]}}}"#), "ScanFilter")
        #expect(try notContains?.evaluate([:]) == false)
        #expect(try notContains?.evaluate(["s": .string("abc")]) == true)
        // A dot is part of a legacy attribute name, not a path.
        #expect(
            try LegacyParameters.expected(request(#"{"Expected":{"a.b":{"Exists":false}}}"#))
                == .notExists(AttributePath([.key("a.b")])))
    }

    @Test func attributeUpdatesAreTheUpdateExpressionTheyReplace() throws {
        let u = try LegacyParameters.attributeUpdates(
            request(
                #"{"AttributeUpdates":{"a":{"Value":{"N":"1"}},"b":{"Action":"DELETE"},"n":{"Action":"ADD","Value":{"N":"3"}},"#
                    + #""s":{"Action":"DELETE","Value":{"SS":["x"]}}}}"#))
        var p = ExpressionParser(values: [":one": Self.one, ":three": Self.three, ":x": .stringSet(["x"])])
        #expect(u == (try p.update("SET a = :one REMOVE b ADD n :three DELETE s :x")))
    }

    @Test func badLegacyParametersAreValidationErrors() throws {
        let bad = [
            #"{"Expected":{"a":{"Exists":true}}}"#,
            #"{"Expected":{"a":{"Exists":false,"Value":{"N":"1"}}}}"#,
            #"{"Expected":{"a":{"ComparisonOperator":"EQ","AttributeValueList":[{"N":"1"},{"N":"2"}]}}}"#,
            #"{"Expected":{"a":{"ComparisonOperator":"IN","AttributeValueList":[{"N":"1"},{"S":"2"}]}}}"#,
            #"{"Expected":{"a":{"ComparisonOperator":"BETWEEN","AttributeValueList":[{"N":"3"},{"N":"1"}]}}}"#,
            #"{"Expected":{"a":{"ComparisonOperator":"BEGINS_WITH","AttributeValueList":[{"N":"3"}]}}}"#,
            #"{"Expected":{"a":{"ComparisonOperator":"SOUNDS_LIKE","AttributeValueList":[]}}}"#
        ]
        for text in bad {
            #expect(throws: DynamoError.self, "\(text)") { try LegacyParameters.expected(try request(text)) }
        }
        let mixed = [
            #"{"AttributeUpdates":{},"UpdateExpression":"SET a = :v"}"#, #"{"Expected":{},"ConditionExpression":"a = :v"}"#,
            #"{"KeyConditions":{},"FilterExpression":"a = :v"}"#, #"{"AttributesToGet":["a"],"ProjectionExpression":"a"}"#,
            #"{"AttributeUpdates":{},"ExpressionAttributeValues":{":v":{"N":"1"}}}"#,
            #"{"Expected":{},"ConditionalOperator":"OR"}"#, #"{"Expected":{"a":{"Exists":false}},"ConditionalOperator":"or"}"#
        ]
        for text in mixed {
            #expect(throws: DynamoError.self, "\(text)") { try LegacyParameters.check(try request(text), conditions: "Expected") }
        }
        try LegacyParameters.check(request(#"{"Expected":{"a":{"Exists":false}},"ConditionalOperator":"OR"}"#), conditions: "Expected")
    }
}
