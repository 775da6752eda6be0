import TandemCore

/// A processor as `PUT /v1/processors/{name}` defines it: checked field by field, every error a
/// message naming the field, limits checked before anything is built. `json` is the canonical
/// form (every default filled in) that is stored and described.
///
/// Defaults are Lambda's event source mapping's, but for two choices made for its users'
/// complaints: `maxRetryAttempts` 10 (Lambda: infinite, only `-1` asks for that here) and
/// `bisectOnError` true (Lambda: false), so one poison record is isolated and dead-lettered
/// instead of blocking its shard until its age runs out.
public struct ProcessorDefinition: Sendable, Equatable {
    public enum StartingPosition: Sendable, Equatable {
        case trimHorizon
        case latest
        case atTimestamp(ms: UInt64)
    }

    public enum Target: Sendable, Equatable {
        /// An HTTP endpoint, given Lambda's Kinesis event; a Lambda Invoke API URL
        /// (`…/2015-03-31/functions/{name}/invocations`) is called the same way.
        case function(url: String, timeoutMs: Int)
        case materialize(Materialize)
        case forward(stream: String, partitionKey: RecordPath?)
    }

    /// Built-in, no code: per record, an item of `table` at the key the record names, updated by
    /// the record's values (see `RecordPath`). `set` keeps the latest record's values per key,
    /// `add` counts, `addToSet`/`removeFromSet` keep set members; a record applies once per item
    /// even when delivered again.
    public struct Materialize: Sendable, Equatable {
        public var table: String
        public var key: [(String, RecordPath)]
        public var set: [(String, RecordPath)]
        public var add: [(String, RecordPath)]
        public var addToSet: [(String, RecordPath)]
        public var removeFromSet: [(String, RecordPath)]

        public static func == (a: Materialize, b: Materialize) -> Bool {
            func same(_ x: [(String, RecordPath)], _ y: [(String, RecordPath)]) -> Bool {
                x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            }
            return a.table == b.table && same(a.key, b.key) && same(a.set, b.set) && same(a.add, b.add)
                && same(a.addToSet, b.addToSet) && same(a.removeFromSet, b.removeFromSet)
        }
    }

    public var name: String
    /// The source stream ("" when the source is a table).
    public var stream: String
    /// The source table, whose change stream (DynamoDB Streams) is consumed: on each node, the
    /// changes that node took (see the node's `Processors`).
    public var table: String?
    /// The source as dead letters and events name it: the stream, or `table/<name>`.
    public var sourceName: String { table.map { "table/\($0)" } ?? stream }
    public var startingPosition: StartingPosition
    public var filters: [String]
    public var settings: ConsumerSettings
    public var target: Target
    /// The definition with every default filled in, as stored and described.
    public var json: JSON

    public static let maxFilters = 5
    public static let maxFilterBytes = 4_096
    public static let maxMappings = 32
    public static let maxTimeoutMs = 900_000

    public static func validName(_ s: String) -> Bool {
        (1...64).contains(s.utf8.count) && !s.hasPrefix("_")
            && s.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E
            }
    }

    /// Parses and checks a definition; `checkFilters` parses the filter patterns (the caller's
    /// filter engine) so a pattern that does not parse is refused here too.
    public init(name: String, json j: JSON, checkFilters: ([String]) throws(TandemError) -> Void) throws(TandemError) {
        func bad(_ field: String, _ why: String) -> TandemError { TandemError(.badRequest, "\(field): \(why)") }
        guard ProcessorDefinition.validName(name) else {
            throw bad("name", "1 to 64 letters, digits, '-', '_' and '.', not starting with '_'")
        }
        guard case .object(let members) = j else { throw bad("body", "a JSON object") }
        let known: Set<String> = [
            "source", "batchSize", "maxBatchingWindowMs", "parallelizationFactor", "maxRetryAttempts", "maxRecordAgeSeconds",
            "bisectOnError", "filters", "target"
        ]
        for (k, _) in members where !known.contains(k) { throw bad(k, "unknown field") }
        func int(_ field: String, _ dflt: Int, _ valid: (Int) -> Bool, _ range: String) throws(TandemError) -> Int {
            guard let v = j[field] else { return dflt }
            guard case .number(let t) = v, let n = Int(t), valid(n) else { throw bad(field, "an integer \(range)") }
            return n
        }
        self.name = name

        guard case .object? = j["source"] else { throw bad("source", "an object naming a stream") }
        let source = j["source"]!
        if let t = source["table"] {
            // A table's change stream (DynamoDB Streams): each node consumes the changes it took.
            guard case .string(let name) = t, (3...255).contains(name.utf8.count), !name.hasPrefix("_") else {
                throw bad("source.table", "the name of a table")
            }
            guard source["stream"] == nil else { throw bad("source", "a stream or a table, not both") }
            table = name
            stream = ""
        } else {
            guard let stream = source["stream"]?.stringValue, !stream.isEmpty, stream.utf8.count <= 128 else {
                throw bad("source.stream", "the name of a stream (or source.table, the name of a table)")
            }
            self.stream = stream
        }
        switch source["startingPosition"]?.stringValue ?? "trim-horizon" {
        case "trim-horizon": startingPosition = .trimHorizon
        case "latest": startingPosition = .latest
        case "at-timestamp":
            guard case .number(let t)? = source["timestampMs"], let ms = UInt64(t) else {
                throw bad("source.timestampMs", "milliseconds since the epoch, required with at-timestamp")
            }
            startingPosition = .atTimestamp(ms: ms)
        default: throw bad("source.startingPosition", "trim-horizon, latest or at-timestamp")
        }
        if table != nil, case .atTimestamp = startingPosition {
            // As Lambda's DynamoDB event source: a change stream is read from its start or its end.
            throw bad("source.startingPosition", "trim-horizon or latest for a table's change stream")
        }

        let batchSize = try int("batchSize", 100, { (1...10_000).contains($0) }, "in 1...10000")
        let window = try int("maxBatchingWindowMs", 0, { (0...300_000).contains($0) }, "in 0...300000")
        let parallel = try int("parallelizationFactor", 1, { (1...10).contains($0) }, "in 1...10")
        let retries = try int("maxRetryAttempts", 10, { (-1...10_000).contains($0) }, "in -1...10000 (-1: until the record's age runs out)")
        let age = try int("maxRecordAgeSeconds", 86_400, { $0 == -1 || (60...604_800).contains($0) }, "-1 or in 60...604800")
        var bisect = true
        if let b = j["bisectOnError"] {
            guard case .bool(let v) = b else { throw bad("bisectOnError", "true or false") }
            bisect = v
        }
        guard retries != -1 || age != -1 else {
            throw bad(
                "maxRetryAttempts", "-1 (infinite) needs a finite maxRecordAgeSeconds, or a poison record blocks its partition forever")
        }
        settings = ConsumerSettings(
            batchSize: batchSize, maxBatchingWindow: .milliseconds(Int64(window)), parallelization: parallel,
            maxRetryAttempts: retries == -1 ? nil : retries, maxRecordAgeMs: age == -1 ? nil : UInt64(age) * 1000,
            bisectOnError: bisect)

        var filters: [String] = []
        if let f = j["filters"] {
            guard case .array(let list) = f else { throw bad("filters", "an array of patterns") }
            guard list.count <= ProcessorDefinition.maxFilters else {
                throw bad("filters", "at most \(ProcessorDefinition.maxFilters) patterns")
            }
            for (i, p) in list.enumerated() {
                let text: String
                switch p {
                case .string(let s): text = s
                case .object where p["pattern"]?.stringValue != nil: text = p["pattern"]!.stringValue!
                case .object: text = p.serialized
                default: throw bad("filters[\(i)]", "a pattern object (or its JSON text)")
                }
                guard text.utf8.count <= ProcessorDefinition.maxFilterBytes else {
                    throw bad("filters[\(i)]", "at most \(ProcessorDefinition.maxFilterBytes) bytes")
                }
                filters.append(text)
            }
            do { try checkFilters(filters) } catch { throw bad("filters", error.message) }
        }
        self.filters = filters

        guard case .object(let targets)? = j["target"], targets.count == 1 else {
            throw bad("target", "an object with exactly one of function, materialize, forward")
        }
        let (kind, spec) = targets[0]
        guard case .object(let fields) = spec else { throw bad("target.\(kind)", "an object") }
        func only(_ allowed: Set<String>) throws(TandemError) {
            for (k, _) in fields where !allowed.contains(k) { throw bad("target.\(kind).\(k)", "unknown field") }
        }
        switch kind {
        case "function":
            try only(["url", "timeoutMs"])
            guard let url = spec["url"]?.stringValue, url.hasPrefix("http://") || url.hasPrefix("https://"), url.utf8.count <= 2048 else {
                throw bad("target.function.url", "an http:// or https:// URL")
            }
            var timeout = 30_000
            if let t = spec["timeoutMs"] {
                guard case .number(let s) = t, let n = Int(s), (1...ProcessorDefinition.maxTimeoutMs).contains(n) else {
                    throw bad("target.function.timeoutMs", "an integer in 1...900000")
                }
                timeout = n
            }
            target = .function(url: url, timeoutMs: timeout)
        case "materialize":
            try only(["table", "key", "set", "add", "addToSet", "removeFromSet"])
            guard let table = spec["table"]?.stringValue, !table.isEmpty, !table.hasPrefix("_") else {
                throw bad("target.materialize.table", "the name of a table")
            }
            func mappings(_ field: String, numbers: Bool) throws(TandemError) -> [(String, RecordPath)] {
                guard let m = spec[field] else { return [] }
                guard case .object(let list) = m, list.count <= ProcessorDefinition.maxMappings else {
                    throw bad(
                        "target.materialize.\(field)", "an object of at most \(ProcessorDefinition.maxMappings) attribute: value mappings")
                }
                var out: [(String, RecordPath)] = []
                for (attr, v) in list {
                    guard !attr.isEmpty, !attr.hasPrefix("_tandem") else {
                        throw bad("target.materialize.\(field)", "bad attribute name '\(attr)'")
                    }
                    do { out.append((attr, try RecordPath(v))) } catch { throw bad("target.materialize.\(field).\(attr)", error.message) }
                    if numbers, case .literal(let lit) = out.last!.1, case .number = lit {
                    } else if numbers, case .literal = out.last!.1 {
                        throw bad("target.materialize.\(field).\(attr)", "a number or a $ path")
                    }
                }
                return out
            }
            let key = try mappings("key", numbers: false)
            guard (1...2).contains(key.count) else { throw bad("target.materialize.key", "one or two key attributes, each a $ path") }
            let m = Materialize(
                table: table, key: key, set: try mappings("set", numbers: false), add: try mappings("add", numbers: true),
                addToSet: try mappings("addToSet", numbers: false), removeFromSet: try mappings("removeFromSet", numbers: false))
            guard !(m.set.isEmpty && m.add.isEmpty && m.addToSet.isEmpty && m.removeFromSet.isEmpty) else {
                throw bad("target.materialize", "at least one of set, add, addToSet, removeFromSet")
            }
            target = .materialize(m)
        case "forward":
            try only(["stream", "partitionKey"])
            guard let to = spec["stream"]?.stringValue, !to.isEmpty, to.utf8.count <= 128 else {
                throw bad("target.forward.stream", "the name of a stream")
            }
            guard to != stream else { throw bad("target.forward.stream", "a stream other than the source (it would feed itself)") }
            var key: RecordPath?
            if let k = spec["partitionKey"] {
                do { key = try RecordPath(k) } catch { throw bad("target.forward.partitionKey", error.message) }
            }
            target = .forward(stream: to, partitionKey: key)
        default:
            throw bad("target", "one of function, materialize, forward (not '\(kind)')")
        }

        var canonical: [(String, JSON)] = []
        var src: [(String, JSON)] = table.map { [("table", .string($0))] } ?? [("stream", .string(stream))]
        switch startingPosition {
        case .trimHorizon: src.append(("startingPosition", .string("trim-horizon")))
        case .latest: src.append(("startingPosition", .string("latest")))
        case .atTimestamp(let ms): src += [("startingPosition", .string("at-timestamp")), ("timestampMs", .number(String(ms)))]
        }
        canonical.append(("source", .object(src)))
        canonical += [
            ("batchSize", .number(String(batchSize))), ("maxBatchingWindowMs", .number(String(window))),
            ("parallelizationFactor", .number(String(parallel))), ("maxRetryAttempts", .number(String(retries))),
            ("maxRecordAgeSeconds", .number(String(age))), ("bisectOnError", .bool(bisect)),
            ("filters", .array(filters.map { (try? JSON.parse(Array($0.utf8))) ?? .string($0) })), ("target", .object([(kind, spec)]))
        ]
        json = .object(canonical)
    }

    public static func == (a: ProcessorDefinition, b: ProcessorDefinition) -> Bool { a.name == b.name && a.json == b.json }
}

/// A value taken from a record: `$.a.b` (a path into the record's data, as JSON; `$` is the
/// whole of it), `$partitionKey`, `$sequenceNumber`, `$timestamp` (arrival, ms), or a literal
/// (any JSON that is not a string starting with `$`).
public enum RecordPath: Sendable, Equatable {
    case data([String])
    case partitionKey
    case sequenceNumber
    case timestamp
    case literal(JSON)

    public init(_ j: JSON) throws(TandemError) {
        guard case .string(let s) = j, s.hasPrefix("$") else {
            self = .literal(j)
            return
        }
        switch s {
        case "$partitionKey": self = .partitionKey
        case "$sequenceNumber": self = .sequenceNumber
        case "$timestamp": self = .timestamp
        case "$": self = .data([])
        default:
            guard s.hasPrefix("$."), s.utf8.count <= 512 else {
                throw TandemError(.badRequest, "'\(s)': a path is $, $.field.field, $partitionKey, $sequenceNumber or $timestamp")
            }
            let parts = s.dropFirst(2).split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard parts.count <= 16, parts.allSatisfy({ !$0.isEmpty }) else {
                throw TandemError(.badRequest, "'\(s)': empty field name, or deeper than 16")
            }
            self = .data(parts)
        }
    }

    /// The value for `record` (`data` its data parsed as JSON, nil if it is not JSON); nil if
    /// the path leads nowhere.
    public func value(_ record: ProcessorRecord, data: JSON?) -> JSON? {
        switch self {
        case .partitionKey: return .string(record.key)
        case .sequenceNumber: return .string(SequenceText.format(record.sequence))
        case .timestamp: return .number(String(record.timestamp))
        case .literal(let j): return j
        case .data(let parts):
            var at = data
            for p in parts { at = at?[p] }
            return at
        }
    }
}
