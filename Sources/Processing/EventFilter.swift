import TandemCore

// Lambda's event-filtering patterns for a Kinesis source (Lambda uses EventBridge's pattern
// syntax: "invocation-eventfiltering", "with-kinesis-filtering" and EventBridge's "comparison
// operators" pages; aws/event-ruler's JsonRuleCompiler for what a pattern may not be).
//
// A pattern is a JSON object. Its top-level fields name the record as Lambda presents it in the
// event's `kinesis` object:
//   - `partitionKey` (string), `sequenceNumber` (string, the 20 digits of `SequenceText`),
//     `approximateArrivalTimestamp` (number, seconds with milliseconds), `kinesisSchemaVersion`
//     ("1.0"): each takes a list of matchers;
//   - `data`: an object pattern matched against the record's data parsed as JSON. Data that is not
//     JSON fails every pattern that has a `data` field and is matched on the other fields only by
//     a pattern that has none (Lambda's "properly filtering Kinesis messages" table). A `data`
//     that is not an object in the pattern is refused, as Lambda refuses a non-JSON data filter.
// Any other top-level field is refused (the outer event fields — eventSource, awsRegion, … — are
// the same for every record of a processor).
//
// Matchers (a field's list is OR-ed; the fields of an object are AND-ed):
//   - exact values: a string (byte for byte: no case folding, no Unicode normalization), a number
//     (equal numerically or as the same text: 300 matches 300.0 and 3e2), true, false, null
//     (matches an explicit null only, not a missing field), "" (the empty string);
//   - {"prefix": "s"} / {"suffix": "s"}, each also as {"prefix": {"equals-ignore-case": "s"}};
//   - {"equals-ignore-case": "s"};
//   - {"anything-but": v} with v a string, a number, a list of strings or a list of numbers (not
//     mixed), {"prefix": "s"}, {"suffix": "s"} (non-empty), or {"equals-ignore-case": "s" | [..]};
//     it needs the field present (a missing field does not match), and matches any value of
//     another type (a number is "anything but" a string);
//   - {"numeric": ["=", n]} or one or two bounds: [">" | ">=", n] and/or ["<" | "<=", n], the
//     lower first ([">", 0, "<=", 5]); the lower bound must be below the upper; numbers only;
//   - {"exists": true | false}.
// Values in the event: a field whose value is an array matches if any element matches (arrays of
// arrays are flattened); a nested pattern over an array of objects matches if some element
// matches it as a whole. As in EventBridge, `exists` and every matcher look at leaf values
// (strings, numbers, booleans, null): a field holding an object "does not exist" for a matcher.
//
// Not supported, refused by name: `$or`, `wildcard`, `cidr` and any other operator; string
// values that look like IP addresses are plain strings (EventBridge turns them into CIDR ranges).
// Limits, checked before any work: ≤ 5 patterns a set, each ≤ 4096 bytes, nesting ≤ 32 levels.

/// Why a filter pattern was refused: the message names the field and what is wrong with it.
public struct FilterError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One compiled pattern.
public struct EventFilter: Sendable {
    public static let maxPatternBytes = 4096
    public static let maxDepth = 32

    enum Metadata: String, Sendable, CaseIterable {
        case partitionKey, sequenceNumber, approximateArrivalTimestamp, kinesisSchemaVersion
    }

    indirect enum Node: Sendable {
        case object([(String, Node)])
        case leaf([Matcher])
    }

    struct Bound: Sendable {
        var value: Double
        var inclusive: Bool
    }

    enum Matcher: Sendable {
        case string([UInt8])
        case number(text: String, value: Double)
        case bool(Bool)
        case null
        case prefix([UInt8], ignoreCase: Bool)
        case suffix([UInt8], ignoreCase: Bool)
        case equalsIgnoreCase([UInt8])
        case anythingButStrings([[UInt8]])
        case anythingButNumbers([Double])
        case anythingButIgnoreCase([[UInt8]])
        case anythingButPrefix([UInt8])
        case anythingButSuffix([UInt8])
        case numeric(lower: Bound?, upper: Bound?)
        case exists(Bool)
    }

    let metadata: [(Metadata, [Matcher])]
    /// The `data` pattern's fields, nil when the pattern does not look into data.
    let data: [(String, Node)]?

    /// Whether this pattern looks into the record's data (and so drops records whose data is not JSON).
    public var readsData: Bool { data != nil }

    public init(parsing text: String) throws(FilterError) {
        let size = text.utf8.count
        guard size <= Self.maxPatternBytes else {
            throw FilterError("pattern is \(size) bytes; at most \(Self.maxPatternBytes)")
        }
        let json: JSON
        do {
            json = try JSON.parse(Array(text.utf8), maxDepth: Self.maxDepth)
        } catch {
            throw FilterError("pattern is not valid JSON: \(error.message)")
        }
        guard case .object(let members) = json else { throw FilterError("pattern must be a JSON object") }
        guard !members.isEmpty else { throw FilterError("pattern is an empty object") }
        var metadata: [(Metadata, [Matcher])] = []
        var data: [(String, Node)]?
        var seen: Set<String> = []
        for (name, value) in members {
            guard seen.insert(name).inserted else { throw FilterError("\(name): field appears twice") }
            if name == "data" {
                guard case .object(let fields) = value else {
                    throw FilterError("data: must be an object (Kinesis data is matched as JSON)")
                }
                data = try Self.fields(fields, path: "data")
            } else if let field = Metadata(rawValue: name) {
                guard case .array(let items) = value else {
                    throw FilterError("\(name): must be an array of matchers")
                }
                metadata.append((field, try Self.matchers(items, path: name)))
            } else {
                let known = (Metadata.allCases.map(\.rawValue) + ["data"]).joined(separator: ", ")
                throw FilterError("\(name): unknown field for a Kinesis record (known: \(known))")
            }
        }
        self.metadata = metadata
        self.data = data
    }

    // MARK: Compiling

    static func fields(_ members: [(String, JSON)], path: String) throws(FilterError) -> [(String, Node)] {
        guard !members.isEmpty else { throw FilterError("\(path): empty objects are not allowed") }
        var out: [(String, Node)] = []
        var seen: Set<String> = []
        for (name, value) in members {
            let here = path + "." + name
            guard seen.insert(name).inserted else { throw FilterError("\(here): field appears twice") }
            if name == "$or" { throw FilterError("\(here): unsupported operator \"$or\" (list alternatives as separate patterns)") }
            switch value {
            case .object(let inner): out.append((name, .object(try fields(inner, path: here))))
            case .array(let items): out.append((name, .leaf(try matchers(items, path: here))))
            default: throw FilterError("\(here): must be an object or an array")
            }
        }
        return out
    }

    static func matchers(_ items: [JSON], path: String) throws(FilterError) -> [Matcher] {
        guard !items.isEmpty else { throw FilterError("\(path): empty arrays are not allowed") }
        var out: [Matcher] = []
        for item in items {
            switch item {
            case .string(let s): out.append(.string(Array(s.utf8)))
            case .number(let n): out.append(.number(text: n, value: try number(n, path: path)))
            case .bool(let b): out.append(.bool(b))
            case .null: out.append(.null)
            case .object(let members): out.append(try operation(members, path: path))
            case .array: throw FilterError("\(path): a match value must be a string, number, true, false, null or an operator object")
            }
        }
        return out
    }

    static func number(_ text: String, path: String) throws(FilterError) -> Double {
        guard let d = Double(text), d.isFinite else { throw FilterError("\(path): number \(text) is out of range") }
        return d
    }

    static func operation(_ members: [(String, JSON)], path: String) throws(FilterError) -> Matcher {
        guard members.count == 1, let (op, value) = members.first else {
            throw FilterError("\(path): an operator object must have exactly one key, not \(members.count)")
        }
        let here = "\(path): \"\(op)\""
        switch op {
        case "prefix", "suffix":
            let (text, ignoreCase) = try affix(value, what: here)
            return op == "prefix" ? .prefix(text, ignoreCase: ignoreCase) : .suffix(text, ignoreCase: ignoreCase)
        case "equals-ignore-case":
            guard case .string(let s) = value else { throw FilterError("\(here) needs a string") }
            return .equalsIgnoreCase(Array(s.lowercased().utf8))
        case "anything-but":
            return try anythingBut(value, what: here)
        case "numeric":
            return try numeric(value, what: here)
        case "exists":
            guard case .bool(let b) = value else { throw FilterError("\(here) must be true or false") }
            return .exists(b)
        case "wildcard", "cidr", "$or":
            throw FilterError("\(path): unsupported operator \"\(op)\"")
        default:
            throw FilterError("\(path): unknown operator \"\(op)\"")
        }
    }

    /// A prefix or suffix: a string, or {"equals-ignore-case": string}.
    static func affix(_ value: JSON, what: String) throws(FilterError) -> ([UInt8], Bool) {
        switch value {
        case .string(let s): return (Array(s.utf8), false)
        case .object(let m) where m.count == 1 && m[0].0 == "equals-ignore-case":
            guard case .string(let s) = m[0].1 else { throw FilterError("\(what) equals-ignore-case needs a string") }
            return (Array(s.lowercased().utf8), true)
        default: throw FilterError("\(what) needs a string or {\"equals-ignore-case\": string}")
        }
    }

    static func anythingBut(_ value: JSON, what: String) throws(FilterError) -> Matcher {
        switch value {
        case .string(let s): return .anythingButStrings([Array(s.utf8)])
        case .number(let n): return .anythingButNumbers([try number(n, path: what)])
        case .array(let items):
            var strings: [[UInt8]] = []
            var numbers: [Double] = []
            for item in items {
                switch item {
                case .string(let s): strings.append(Array(s.utf8))
                case .number(let n): numbers.append(try number(n, path: what))
                default: throw FilterError("\(what) list may hold strings or numbers only")
                }
            }
            guard strings.isEmpty != numbers.isEmpty else {
                throw FilterError("\(what) list must be all strings or all numbers, and not empty")
            }
            return strings.isEmpty ? .anythingButNumbers(numbers) : .anythingButStrings(strings)
        case .object(let m) where m.count == 1:
            let (op, inner) = m[0]
            switch op {
            case "prefix", "suffix":
                guard case .string(let s) = inner, !s.isEmpty else {
                    throw FilterError("\(what) \(op) needs a non-empty string")
                }
                return op == "prefix" ? .anythingButPrefix(Array(s.utf8)) : .anythingButSuffix(Array(s.utf8))
            case "equals-ignore-case":
                switch inner {
                case .string(let s): return .anythingButIgnoreCase([Array(s.lowercased().utf8)])
                case .array(let items) where !items.isEmpty:
                    var out: [[UInt8]] = []
                    for item in items {
                        guard case .string(let s) = item else { throw FilterError("\(what) equals-ignore-case list may hold strings only") }
                        out.append(Array(s.lowercased().utf8))
                    }
                    return .anythingButIgnoreCase(out)
                default: throw FilterError("\(what) equals-ignore-case needs a string or a non-empty list of strings")
                }
            default: throw FilterError("\(what) does not support \"\(op)\"")
            }
        default:
            throw FilterError("\(what) needs a string, a number, a list, or {prefix|suffix|equals-ignore-case}")
        }
    }

    static func numeric(_ value: JSON, what: String) throws(FilterError) -> Matcher {
        guard case .array(let items) = value, !items.isEmpty else { throw FilterError("\(what) needs a non-empty array") }
        var i = 0
        func step() throws(FilterError) -> (String, Double) {
            guard i + 1 < items.count, case .string(let op) = items[i] else {
                throw FilterError("\(what) needs operator, number pairs")
            }
            guard case .number(let n) = items[i + 1] else { throw FilterError("\(what) value of \(op) must be a number") }
            i += 2
            return (op, try number(n, path: what))
        }
        let (op, v) = try step()
        var lower: Bound?
        var upper: Bound?
        switch op {
        case "=":
            guard i == items.count else { throw FilterError("\(what) \"=\" takes one number and nothing after it") }
            return .numeric(lower: Bound(value: v, inclusive: true), upper: Bound(value: v, inclusive: true))
        case ">", ">=": lower = Bound(value: v, inclusive: op == ">=")
        case "<", "<=": upper = Bound(value: v, inclusive: op == "<=")
        default: throw FilterError("\(what) unknown comparison \"\(op)\"")
        }
        if i < items.count {
            guard lower != nil else { throw FilterError("\(what) a range gives its lower bound first") }
            let (op2, v2) = try step()
            guard op2 == "<" || op2 == "<=" else { throw FilterError("\(what) upper bound must be \"<\" or \"<=\", not \"\(op2)\"") }
            guard i == items.count else { throw FilterError("\(what) has too many terms") }
            guard let low = lower, low.value < v2 else { throw FilterError("\(what) lower bound must be below the upper bound") }
            upper = Bound(value: v2, inclusive: op2 == "<=")
        }
        return .numeric(lower: lower, upper: upper)
    }

    // MARK: Matching

    public func matches(_ r: ProcessorRecord) -> Bool {
        var cache = DataCache()
        return matches(r, data: &cache)
    }

    /// The record's data parsed once for all the patterns of a set.
    struct DataCache {
        var parsed = false
        var json: JSON?

        mutating func get(_ r: ProcessorRecord) -> JSON? {
            if !parsed {
                parsed = true
                json = try? JSON.parse(r.data)
            }
            return json
        }
    }

    func matches(_ r: ProcessorRecord, data cache: inout DataCache) -> Bool {
        for (field, matchers) in metadata {
            let value: JSON
            switch field {
            case .partitionKey: value = .string(r.key)
            case .sequenceNumber: value = .string(SequenceText.format(r.sequence))
            case .approximateArrivalTimestamp: value = .number(LambdaEvent.arrivalSeconds(r.timestamp))
            case .kinesisSchemaVersion: value = .string("1.0")
            }
            guard Self.matchLeaves(matchers, value) else { return false }
        }
        guard let data else { return true }
        guard let json = cache.get(r) else { return false }
        return Self.matchObject(data, json)
    }

    static func matchObject(_ fields: [(String, Node)], _ value: JSON?) -> Bool {
        if case .array(let items)? = value {
            if items.isEmpty { return matchObject(fields, nil) }
            return items.contains { matchObject(fields, $0) }
        }
        let members = value?.objectValue
        for (name, node) in fields {
            let child = members?.first { $0.0 == name }?.1
            switch node {
            case .object(let inner): guard matchObject(inner, child) else { return false }
            case .leaf(let matchers): guard matchLeaves(matchers, child) else { return false }
            }
        }
        return true
    }

    static func leaves(of value: JSON?, into out: inout [JSON]) {
        switch value {
        case nil, .object?: return
        case .array(let items)?: for item in items { leaves(of: item, into: &out) }
        case let leaf?: out.append(leaf)
        }
    }

    static func matchLeaves(_ matchers: [Matcher], _ value: JSON?) -> Bool {
        var values: [JSON] = []
        leaves(of: value, into: &values)
        for m in matchers {
            if case .exists(let present) = m {
                if present != values.isEmpty { return true }
                continue
            }
            for v in values where m.matches(v) { return true }
        }
        return false
    }
}

extension EventFilter.Matcher {
    func matches(_ v: JSON) -> Bool {
        switch self {
        case .string(let s):
            if case .string(let x) = v { return x.utf8.elementsEqual(s) }
            return false
        case .number(let text, let value):
            if case .number(let x) = v { return x == text || Double(x) == value }
            return false
        case .bool(let b):
            if case .bool(let x) = v { return x == b }
            return false
        case .null:
            if case .null = v { return true }
            return false
        case .prefix(let p, let ignoreCase):
            guard case .string(let x) = v else { return false }
            return ignoreCase ? x.lowercased().utf8.starts(with: p) : x.utf8.starts(with: p)
        case .suffix(let p, let ignoreCase):
            guard case .string(let x) = v else { return false }
            return ignoreCase ? x.lowercased().utf8.hasSuffix(p) : x.utf8.hasSuffix(p)
        case .equalsIgnoreCase(let s):
            guard case .string(let x) = v else { return false }
            return x.lowercased().utf8.elementsEqual(s)
        case .anythingButStrings(let set):
            if case .string(let x) = v { return !set.contains { x.utf8.elementsEqual($0) } }
            return true
        case .anythingButNumbers(let set):
            if case .number(let x) = v, let d = Double(x) { return !set.contains(d) }
            return true
        case .anythingButIgnoreCase(let set):
            if case .string(let x) = v {
                let lower = x.lowercased()
                return !set.contains { lower.utf8.elementsEqual($0) }
            }
            return true
        case .anythingButPrefix(let p):
            if case .string(let x) = v { return !x.utf8.starts(with: p) }
            return true
        case .anythingButSuffix(let p):
            if case .string(let x) = v { return !x.utf8.hasSuffix(p) }
            return true
        case .numeric(let lower, let upper):
            guard case .number(let x) = v, let d = Double(x) else { return false }
            if let lower, lower.inclusive ? d < lower.value : d <= lower.value { return false }
            if let upper, upper.inclusive ? d > upper.value : d >= upper.value { return false }
            return true
        case .exists:
            return false  // handled by matchLeaves
        }
    }
}

extension String.UTF8View {
    fileprivate func hasSuffix(_ p: [UInt8]) -> Bool {
        guard count >= p.count else { return false }
        return self.suffix(p.count).elementsEqual(p)
    }
}

/// Up to five patterns, OR-ed: a record passes if any pattern matches it; no patterns pass all.
public struct FilterSet: Sendable {
    public static let maxPatterns = 5

    public let filters: [EventFilter]

    public init(patterns: [String]) throws(FilterError) {
        guard patterns.count <= Self.maxPatterns else {
            throw FilterError("filters: \(patterns.count) patterns; at most \(Self.maxPatterns)")
        }
        var filters: [EventFilter] = []
        for (i, text) in patterns.enumerated() {
            do {
                filters.append(try EventFilter(parsing: text))
            } catch {
                throw FilterError("filters[\(i)]: \(error.message)")
            }
        }
        self.filters = filters
    }

    public func matches(_ r: ProcessorRecord) -> Bool {
        if filters.isEmpty { return true }
        var cache = EventFilter.DataCache()
        for f in filters where f.matches(r, data: &cache) { return true }
        return false
    }
}
