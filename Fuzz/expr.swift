// libFuzzer harness: the DynamoDB expression parser (GlobalTable/Expressions.swift) and what
// runs on its output: condition/filter evaluation, key conditions against two key schemas,
// update expressions applied to an item (DynamoUpdate) and projections. The input is the
// expression text; the placeholders below resolve to values of every type. Built by scripts/fuzz
// (with Fuzz/expr.dict).
import GlobalTable
import TandemCore

func value(_ json: String) -> AttributeValue { try! DynamoJSON.value(try! JSON.parse(Array(json.utf8))) }

let names = ["#a": "a", "#b": "b", "#n": "n", "#l": "l", "#m": "m", "#pk": "pk", "#sk": "sk", "#s": "ss", "#d": "a.b"]
let values: [String: AttributeValue] = [
    ":s": value(#"{"S":"x"}"#), ":t": value(#"{"S":"xyz"}"#), ":e": value(#"{"S":""}"#),
    ":n": value(#"{"N":"5"}"#), ":big": value(#"{"N":"99999999999999999999999999999999999999"}"#),
    ":neg": value(#"{"N":"-1E-130"}"#), ":b": value(#"{"B":"AQI="}"#), ":z": value(#"{"NULL":true}"#),
    ":true": value(#"{"BOOL":true}"#), ":l": value(#"{"L":[{"N":"1"},{"S":"y"}]}"#),
    ":m": value(#"{"M":{"k":{"S":"v"},"n":{"N":"2"}}}"#), ":ss": value(#"{"SS":["x","y"]}"#),
    ":ns": value(#"{"NS":["1","2.5"]}"#), ":bs": value(#"{"BS":["AQI="]}"#)
]
let item = try! DynamoJSON.item(
    try! JSON.parse(
        Array(
            #"""
            {"pk":{"S":"k"},"sk":{"N":"3"},"a":{"N":"1"},"n":{"N":"7"},"s":{"S":"xyz"},"b":{"B":"AQID"},
             "l":{"L":[{"N":"1"},{"M":{"x":{"S":"y"}}},{"L":[]}]},"m":{"M":{"b":{"M":{"c":{"S":"d"}}},"n":{"N":"2"}}},
             "ss":{"SS":["x","y"]},"ns":{"NS":["1","2"]},"z":{"NULL":true},"t":{"BOOL":false}}
            """#.utf8)))
let schemas = [
    KeySchema(partitionKey: "pk", sortKey: "sk", partitionKeyType: "S", sortKeyType: "N"),
    KeySchema(partitionKey: "pk", sortKey: "s", partitionKeyType: "S", sortKeyType: "S"),
    KeySchema(partitionKey: "b", sortKey: nil, partitionKeyType: "B")
]
let keys: [KeyValue] = [.string("x"), .string("xyz"), .string(""), .binary([1, 2])]
let t0 = HLC(physicalMs: 1_000, logical: 0, node: 1)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    // DynamoDB's size limit is checked before any parsing (seeds in Fuzz/corpus-expr go far past it).
    if text.utf8.count > ExpressionParser.maxBytes {
        var p = ExpressionParser(names: names, values: values)
        precondition((try? p.condition(text)) == nil && (try? p.update(text)) == nil, "an expression over the size limit parsed")
    }
    for subject in [item, [:]] {
        var p = ExpressionParser(names: names, values: values)
        if let c = try? p.condition(text) { _ = try? c.evaluate(subject) }
    }
    var kp = ExpressionParser(names: names, values: values)
    if let c = try? kp.condition(text, kind: "KeyConditionExpression") {
        for schema in schemas {
            if let kc = try? KeyCondition(c, schema: schema) {
                for k in keys + [kc.partition] { _ = kc.sort(k) }
            }
        }
    }
    var up = ExpressionParser(names: names, values: values)
    if let u = try? up.update(text) {
        _ = try? up.checkAllUsed()
        for start in [item, [:]] {
            var state = ItemState()
            _ = state.put(start, at: t0)
            let before = state
            if (try? DynamoUpdate.apply(u, to: &state, keyNames: ["pk"], at: HLC(physicalMs: 2_000, logical: 0, node: 1))) != nil {
                // An update is a CRDT delta: merging it again changes nothing.
                precondition(state.merged(state) == state, "merge idempotence")
                precondition(before.merged(state) == state.merged(before), "merge commutativity")
                _ = project(state.visible ?? [:], u.paths)
                let encoded = ItemCodec.encode(state)
                precondition((try? ItemCodec.decode(encoded)) == state, "item codec round trip")
            }
        }
    }
    var pp = ExpressionParser(names: names, values: values)
    if let paths = try? pp.projection(text) { _ = project(item, paths) }
    return 0
}
