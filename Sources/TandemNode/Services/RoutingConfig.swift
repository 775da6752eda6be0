import GlobalTable
import Routing
import TandemCore

/// The routing inputs held in the reserved `_routing` table, one item per key:
///
/// | key              | attributes                                                   |
/// |------------------|--------------------------------------------------------------|
/// | `split`          | `weights` {region: basis points}, `overrides` {edge: region} |
/// | `edges`          | `edges` {edge: {`rttMicros` {region: µs}, `volume` n}}       |
/// | `drain/<r>`      | `drained` bool                                               |
/// | `capacity/<r>`   | `agents` n                                                   |
/// | `health/<node>`  | `healthy` bool                                               |
/// | `rtt/<node>`     | `region` string, `rttMs` {region: ms}                        |
///
/// The attributes are typed (maps of numbers, strings, bools). Nodes before this form wrote the
/// same fields as JSON text in one string attribute `doc`; those items are still on disk and
/// still written by older nodes, so both are read (a put replaces the whole item, so an item
/// holds one form or the other) and only the typed form is written.
struct RoutingConfig: Equatable {
    var split = SplitConfig()
    var edges = EdgeConfig()
    var capacity: [String: Int64] = [:]
    var healthy: [String: Bool] = [:]
    var rtt: [String: RTTReport] = [:]

    /// The config from every visible item of `_routing` (keyed by their string partition key).
    init(items: [(key: String, attributes: [String: AttributeValue])] = []) {
        for (key, attributes) in items { add(key, RoutingConfig.fields(attributes)) }
    }

    /// Folds in one item's fields; a field of the wrong type is ignored, as the JSON form always
    /// ignored it.
    private mutating func add(_ key: String, _ f: [String: AttributeValue]) {
        if key == "split" {
            split.weights = RoutingConfig.intMap(f["weights"])?.mapValues { Int($0) } ?? [:]
            split.overrides = RoutingConfig.stringMap(f["overrides"]) ?? [:]
        } else if key == "edges" {
            guard case .map(let all)? = f["edges"] else { return }
            for (name, value) in all {
                guard case .map(let e) = value, let rtt = RoutingConfig.intMap(e["rttMicros"]) else { continue }
                edges.edges[name] = EdgeConfig.Edge(rttMicros: rtt, volume: e["volume"].flatMap(RoutingConfig.int) ?? 1)
            }
        } else if key.hasPrefix("drain/"), f["drained"] == .bool(true) {
            split.drained.insert(String(key.dropFirst(6)))
        } else if key.hasPrefix("capacity/"), let agents = f["agents"].flatMap(RoutingConfig.int) {
            capacity[String(key.dropFirst(9))] = agents
        } else if key.hasPrefix("health/"), case .bool(let ok)? = f["healthy"] {
            healthy[String(key.dropFirst(7))] = ok
        } else if key.hasPrefix("rtt/"), case .string(let region)? = f["region"], let ms = RoutingConfig.intMap(f["rttMs"]) {
            rtt[String(key.dropFirst(4))] = RTTReport(region: region, rttMs: ms)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Writing (typed attributes, without the key)

    static func item(split: SplitConfig) -> [String: AttributeValue] {
        [
            "weights": .map(split.weights.mapValues { .number(DecimalNumber($0)) }),
            "overrides": .map(split.overrides.mapValues { .string($0) })
        ]
    }

    static func item(edges: EdgeConfig) -> [String: AttributeValue] {
        [
            "edges": .map(
                edges.edges.mapValues { e in
                    .map(["rttMicros": numbers(e.rttMicros), "volume": .number(DecimalNumber(Int(e.volume)))])
                })
        ]
    }

    static func item(drained: Bool) -> [String: AttributeValue] { ["drained": .bool(drained)] }
    static func item(agents: Int64) -> [String: AttributeValue] { ["agents": .number(DecimalNumber(Int(agents)))] }
    static func item(healthy: Bool) -> [String: AttributeValue] { ["healthy": .bool(healthy)] }
    static func item(rtt: RTTReport) -> [String: AttributeValue] { ["region": .string(rtt.region), "rttMs": numbers(rtt.rttMs)] }

    private static func numbers(_ m: [String: Int64]) -> AttributeValue { .map(m.mapValues { .number(DecimalNumber(Int($0))) }) }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Reading

    /// An item's fields: its typed attributes, or those of its legacy `doc` JSON text.
    static func fields(_ attributes: [String: AttributeValue]) -> [String: AttributeValue] {
        guard case .string(let text)? = attributes["doc"] else { return attributes }
        guard let doc = try? JSON.parse(Array(text.utf8)), case .map(let fields) = attributeValue(doc) else { return [:] }
        return fields
    }

    /// JSON as an attribute value (a later duplicate member wins, as it did when parsed into a
    /// dictionary). A number beyond DynamoDB's range becomes `null`, so it reads as no number.
    static func attributeValue(_ json: JSON) -> AttributeValue {
        switch json {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .number(let text): return DecimalNumber(text).map { .number($0) } ?? .null
        case .string(let s): return .string(s)
        case .array(let items): return .list(items.map(attributeValue))
        case .object(let members):
            var out: [String: AttributeValue] = [:]
            for (name, value) in members { out[name] = attributeValue(value) }
            return .map(out)
        }
    }

    /// A whole number (`5`, `5.0`, `5E2`); nil for a fraction, anything out of Int64, or not a number.
    static func int(_ v: AttributeValue) -> Int64? {
        guard case .number(let n) = v else { return nil }
        return Int64(n.description)
    }

    /// A map whose values are all whole numbers; nil if any is not (the whole field is ignored).
    static func intMap(_ v: AttributeValue?) -> [String: Int64]? {
        guard case .map(let m)? = v else { return nil }
        var out: [String: Int64] = [:]
        for (k, x) in m {
            guard let n = int(x) else { return nil }
            out[k] = n
        }
        return out
    }

    /// A map whose values are all strings; nil if any is not.
    static func stringMap(_ v: AttributeValue?) -> [String: String]? {
        guard case .map(let m)? = v else { return nil }
        var out: [String: String] = [:]
        for (k, x) in m {
            guard case .string(let s) = x else { return nil }
            out[k] = s
        }
        return out
    }
}
