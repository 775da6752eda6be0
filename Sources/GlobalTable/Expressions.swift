import TandemCore

// DynamoDB's expression language — condition, filter, key-condition, projection and update
// expressions — parsed into small trees and evaluated against an item's visible value. Pure:
// the API layer supplies `ExpressionAttributeNames`/`Values` and the item.

/// One step of a document path: a map key (or the attribute name) or a list index.
public enum PathElement: Hashable, Sendable, CustomStringConvertible {
    case key(String)
    case index(Int)

    public var description: String {
        switch self {
        case .key(let k): k
        case .index(let i): "[\(i)]"
        }
    }
}

/// `a.b[2].c`: the first element is always a key (the attribute).
public struct AttributePath: Hashable, Sendable, CustomStringConvertible {
    public var elements: [PathElement]

    public init(_ elements: [PathElement]) { self.elements = elements }

    public var attribute: String {
        guard case .key(let k) = elements[0] else { return "" }
        return k
    }

    /// The map keys below the attribute, if the path has no list index (the engine merges per
    /// map path; lists are written whole).
    public var mapKeys: [String]? {
        var keys: [String] = []
        for e in elements.dropFirst() {
            guard case .key(let k) = e else { return nil }
            keys.append(k)
        }
        return keys
    }

    public var description: String {
        var out = ""
        for e in elements {
            if case .key = e, !out.isEmpty { out += "." }
            out += e.description
        }
        return out
    }

    /// The value at this path in `item`, nil if anything on the way is missing.
    public func resolve(in item: [String: AttributeValue]) -> AttributeValue? {
        var current: AttributeValue? = item[attribute]
        for e in elements.dropFirst() {
            switch (e, current) {
            case (.key(let k), .map(let m)?): current = m[k]
            case (.index(let i), .list(let l)?): current = i < l.count ? l[i] : nil
            default: return nil
            }
        }
        return current
    }

    /// One path is the other or lies under it (DynamoDB refuses such pairs in one update).
    public func overlaps(_ other: AttributePath) -> Bool {
        elements.starts(with: other.elements) || other.elements.starts(with: elements)
    }

    /// The paths part where one goes on by a map key and the other by a list index (`a.b` and
    /// `a[1]`): one value cannot be both, so DynamoDB refuses the pair.
    public func conflicts(_ other: AttributePath) -> Bool {
        for (x, y) in zip(elements, other.elements) where x != y {
            switch (x, y) {
            case (.key, .index), (.index, .key): return true
            default: return false
            }
        }
        return false
    }

    /// Refuses overlapping or conflicting paths in one projection or update, in DynamoDB's words.
    static func checkDistinct(_ paths: [AttributePath], kind: String) throws(DynamoError) {
        for (i, a) in paths.enumerated() {
            for b in paths[(i + 1)...] {
                let what = a.overlaps(b) ? "overlap" : a.conflicts(b) ? "conflict" : nil
                if let what {
                    throw .validation(
                        "Invalid \(kind): Two document paths \(what) with each other; must remove or rewrite one of these paths; path one: [\(a)], path two: [\(b)]"
                    )
                }
            }
        }
    }

    /// Document order: keys before indexes at one level, indexes by number (not as text: `[9]`
    /// comes before `[10]`).
    static func precedes(_ a: AttributePath, _ b: AttributePath) -> Bool {
        a.elements.lexicographicallyPrecedes(b.elements) { x, y in
            switch (x, y) {
            case (.index(let i), .index(let j)): i < j
            case (.key(let k), .key(let l)): k < l
            case (.key, .index): true
            case (.index, .key): false
            }
        }
    }
}

public indirect enum Operand: Hashable, Sendable {
    case path(AttributePath)
    case value(AttributeValue)
    case size(Operand)  // of a path or a value
    case ifNotExists(AttributePath, Operand)
    case listAppend(Operand, Operand)
    case plus(Operand, Operand)
    case minus(Operand, Operand)
}

public enum Comparator: String, Sendable {
    case eq = "=", ne = "<>", lt = "<", le = "<=", gt = ">", ge = ">="
}

public indirect enum Condition: Hashable, Sendable {
    case compare(Operand, Comparator, Operand)
    case between(Operand, Operand, Operand)
    case isIn(Operand, [Operand])
    case exists(AttributePath)
    case notExists(AttributePath)
    case attributeType(Operand, AttributeValue)  // of a path or a value; the type name is a value
    case beginsWith(Operand, Operand)
    case contains(Operand, Operand)
    case and(Condition, Condition)
    case or(Condition, Condition)
    case not(Condition)
}

/// A parsed UpdateExpression: each clause at most once, actions in the order written.
public struct UpdateExpression: Hashable, Sendable {
    public var sets: [(AttributePath, Operand)] = []
    public var removes: [AttributePath] = []
    public var adds: [(AttributePath, AttributeValue)] = []
    public var deletes: [(AttributePath, AttributeValue)] = []

    public init() {}

    public var paths: [AttributePath] { sets.map(\.0) + removes + adds.map(\.0) + deletes.map(\.0) }

    public static func == (a: UpdateExpression, b: UpdateExpression) -> Bool {
        a.sets.elementsEqual(b.sets) { $0.0 == $1.0 && $0.1 == $1.1 } && a.removes == b.removes
            && a.adds.elementsEqual(b.adds) { $0.0 == $1.0 && $0.1 == $1.1 }
            && a.deletes.elementsEqual(b.deletes) { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    public func hash(into h: inout Hasher) { h.combine(paths) }
}

// ==== ----------------------------------------------------------------------------------------
// MARK: Parsing

/// Parses the expressions of one request, resolving `#name` and `:value` placeholders and
/// remembering which were used (DynamoDB refuses unused ones: `checkAllUsed`).
public struct ExpressionParser {
    public let names: [String: String]
    public let values: [String: AttributeValue]
    public private(set) var usedNames: Set<String> = []
    public private(set) var usedValues: Set<String> = []

    public init(names: [String: String] = [:], values: [String: AttributeValue] = [:]) {
        self.names = names
        self.values = values
    }

    enum Token: Equatable {
        case word(String)  // identifier or keyword
        case name(String)  // #placeholder
        case value(String)  // :placeholder
        case integer(Int)
        case symbol(String)
    }

    struct Cursor {
        var tokens: [Token]
        var at = 0
        let kind: String
        /// Token indexes of the last parenthesized condition closed (to find redundant ones).
        var lastGroup: (open: Int, close: Int)?
        var peek: Token? { at < tokens.count ? tokens[at] : nil }
        var peek2: Token? { at + 1 < tokens.count ? tokens[at + 1] : nil }
        mutating func next() -> Token? {
            defer { at += 1 }
            return peek
        }
        func isKeyword(_ k: String) -> Bool {
            if case .word(let w)? = peek { return w.uppercased() == k }
            return false
        }
        mutating func accept(_ symbol: String) -> Bool {
            guard peek == .symbol(symbol) else { return false }
            at += 1
            return true
        }
        mutating func acceptKeyword(_ k: String) -> Bool {
            guard isKeyword(k) else { return false }
            at += 1
            return true
        }
        func error(_ what: String) -> DynamoError {
            let near = peek.map { "\($0.text)" } ?? "<EOF>"
            return .validation("Invalid \(kind): Syntax error; token: \"\(near)\", \(what)")
        }
        mutating func expect(_ symbol: String) throws(DynamoError) {
            guard accept(symbol) else { throw error("expected '\(symbol)'") }
        }
    }

    static func tokenize(_ text: String, kind: String) throws(DynamoError) -> [Token] {
        var out: [Token] = []
        let chars = Array(text.unicodeScalars)
        var i = 0
        func isWord(_ c: Unicode.Scalar) -> Bool { c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" }
        // A name or keyword starts with a letter (`_a` is a syntax error in DynamoDB, as `1a` is).
        while i < chars.count {
            let c = chars[i]
            if c.properties.isWhitespace {
                i += 1
            } else if c == "#" || c == ":" {
                var j = i + 1
                while j < chars.count && isWord(chars[j]) { j += 1 }
                guard j > i + 1 else { throw .validation("Invalid \(kind): Syntax error; token: \"\(c)\", near: \"\(c)\"") }
                let word = String(String.UnicodeScalarView(chars[i..<j]))
                out.append(c == "#" ? .name(word) : .value(word))
                i = j
            } else if ("0"..."9").contains(c) {
                var j = i
                while j < chars.count && ("0"..."9").contains(chars[j]) { j += 1 }
                guard let n = Int(String(String.UnicodeScalarView(chars[i..<j]))), n <= 1 << 31 else {
                    throw .validation("Invalid \(kind): list index too large")
                }
                out.append(.integer(n))
                i = j
            } else if c.properties.isAlphabetic {
                var j = i
                while j < chars.count && isWord(chars[j]) { j += 1 }
                out.append(.word(String(String.UnicodeScalarView(chars[i..<j]))))
                i = j
            } else {
                let two = i + 1 < chars.count ? String(String.UnicodeScalarView([c, chars[i + 1]])) : ""
                if ["<>", "<=", ">="].contains(two) {
                    out.append(.symbol(two))
                    i += 2
                } else if "=<>(),.[]+-".unicodeScalars.contains(c) {
                    out.append(.symbol(String(c)))
                    i += 1
                } else {
                    throw .validation("Invalid \(kind): Syntax error; token: \"\(c)\", near: \"\(c)\"")
                }
            }
        }
        return out
    }

    // MARK: limits

    /// DynamoDB's limits on one expression: its size in bytes, and its operators and functions
    /// (`a = :v OR NOT b` has three; `+` and `-` count, as do BETWEEN and IN; parentheses do not).
    public static let maxBytes = 4096
    public static let maxOperators = 300

    /// The tokens of `text`, once it is known to be within DynamoDB's limits. Everything here is
    /// a loop; only after these checks does the recursive descent start, so its depth is bounded
    /// (each nesting level needs an operator or a parenthesis, and both are bounded here): a
    /// request nested 100,000 deep is a ValidationException, not a stack overflow.
    static func cursor(_ text: String, kind: String) throws(DynamoError) -> Cursor {
        let size = text.utf8.count
        guard size <= maxBytes else {
            throw .validation("Invalid \(kind): Expression size has exceeded the maximum allowed size; expression size: \(size)")
        }
        let tokens = try tokenize(text, kind: kind)
        var operators = 0, ands = 0, betweens = 0, depth = 0, deepest = 0
        for (i, t) in tokens.enumerated() {
            switch t {
            case .symbol("("):
                depth += 1
                deepest = max(deepest, depth)
            case .symbol(")"): depth -= 1
            case .symbol("="): if kind != "UpdateExpression" { operators += 1 }  // SET's `=` assigns
            case .symbol(let s) where ["<>", "<", "<=", ">", ">=", "+", "-"].contains(s): operators += 1
            case .word(let w):
                switch w.uppercased() {
                case "AND": ands += 1
                case "BETWEEN":
                    betweens += 1
                    operators += 1
                case "OR", "NOT", "IN": operators += 1
                default: if i + 1 < tokens.count, tokens[i + 1] == .symbol("(") { operators += 1 }  // a function
                }
            default: break
            }
        }
        operators += max(0, ands - betweens)  // BETWEEN's own AND is part of it
        guard operators <= maxOperators else {
            throw .validation("Invalid \(kind): The expression contains too many operators; operator count: \(operators)")
        }
        // Beyond this, parentheses must be redundant ones (DynamoDB refuses those anyway).
        guard deepest <= maxOperators else {
            throw .validation("Invalid \(kind): The expression has redundant parentheses; nesting levels: \(deepest)")
        }
        return Cursor(tokens: tokens, kind: kind)
    }

    // MARK: public entry points

    public mutating func condition(_ text: String, kind: String = "ConditionExpression") throws(DynamoError) -> Condition {
        var c = try ExpressionParser.cursor(text, kind: kind)
        guard c.peek != nil else { throw .validation("Invalid \(kind): The expression can not be empty;") }
        let result = try orCondition(&c)
        guard c.peek == nil else { throw c.error("expected end of expression") }
        return result
    }

    public mutating func projection(_ text: String) throws(DynamoError) -> [AttributePath] {
        var c = try ExpressionParser.cursor(text, kind: "ProjectionExpression")
        guard c.peek != nil else { throw .validation("Invalid ProjectionExpression: The expression can not be empty;") }
        var out = [try path(&c)]
        while c.accept(",") { out.append(try path(&c)) }
        guard c.peek == nil else { throw c.error("expected ',' or end of expression") }
        try AttributePath.checkDistinct(out, kind: "ProjectionExpression")
        return out
    }

    public mutating func update(_ text: String) throws(DynamoError) -> UpdateExpression {
        var c = try ExpressionParser.cursor(text, kind: "UpdateExpression")
        guard c.peek != nil else { throw .validation("Invalid UpdateExpression: The expression can not be empty;") }
        var u = UpdateExpression()
        var seen: Set<String> = []
        while c.peek != nil {
            guard case .word(let w)? = c.next(), ["SET", "REMOVE", "ADD", "DELETE"].contains(w.uppercased()) else {
                c.at -= 1
                throw c.error("expected SET, REMOVE, ADD or DELETE")
            }
            let clause = w.uppercased()
            guard seen.insert(clause).inserted else {
                throw .validation("Invalid UpdateExpression: The \"\(clause)\" section can only be used once in an update expression;")
            }
            repeat {
                let p = try path(&c)
                switch clause {
                case "SET":
                    try c.expect("=")
                    u.sets.append((p, try setValue(&c)))
                case "REMOVE":
                    u.removes.append(p)
                case "ADD", "DELETE":
                    guard case .value(let v) = try operand(&c, allowFunctions: false) else {
                        throw .validation("Invalid UpdateExpression: \(clause) takes a path and an expression attribute value")
                    }
                    if clause == "ADD" { u.adds.append((p, v)) } else { u.deletes.append((p, v)) }
                default: break
                }
            } while c.accept(",")
        }
        try AttributePath.checkDistinct(u.paths, kind: "UpdateExpression")
        return u
    }

    /// DynamoDB refuses names and values that no expression of the request used.
    public func checkAllUsed() throws(DynamoError) {
        let unusedValues = Set(values.keys).subtracting(usedValues)
        if !unusedValues.isEmpty {
            throw .validation(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {\(unusedValues.sorted().joined(separator: ", "))}"
            )
        }
        let unusedNames = Set(names.keys).subtracting(usedNames)
        if !unusedNames.isEmpty {
            throw .validation(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {\(unusedNames.sorted().joined(separator: ", "))}")
        }
    }

    // MARK: grammar

    private mutating func orCondition(_ c: inout Cursor) throws(DynamoError) -> Condition {
        var left = try andCondition(&c)
        while c.acceptKeyword("OR") { left = .or(left, try andCondition(&c)) }
        return left
    }

    private mutating func andCondition(_ c: inout Cursor) throws(DynamoError) -> Condition {
        var left = try notCondition(&c)
        while c.acceptKeyword("AND") { left = .and(left, try notCondition(&c)) }
        return left
    }

    private mutating func notCondition(_ c: inout Cursor) throws(DynamoError) -> Condition {
        if c.acceptKeyword("NOT") { return .not(try notCondition(&c)) }
        return try primaryCondition(&c)
    }

    private static let conditionFunctions: Set<String> = [
        "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains"
    ]

    private mutating func primaryCondition(_ c: inout Cursor) throws(DynamoError) -> Condition {
        if c.accept("(") {
            let open = c.at - 1
            let inner = try orCondition(&c)
            // `((a = :v))`: the inner group is all there is between these parentheses.
            if let g = c.lastGroup, g.open == open + 1, g.close == c.at - 1 {
                throw .validation("Invalid \(c.kind): The expression has redundant parentheses;")
            }
            try c.expect(")")
            c.lastGroup = (open, c.at - 1)
            return inner
        }
        if case .word(let f)? = c.peek, c.peek2 == .symbol("("), ExpressionParser.conditionFunctions.contains(f) {
            c.at += 2
            let result: Condition
            switch f {
            case "attribute_exists": result = .exists(try path(&c))
            case "attribute_not_exists": result = .notExists(try path(&c))
            case "attribute_type":
                let a = try operand(&c)
                try c.expect(",")
                // The type is a value from the request, one of DynamoDB's type names.
                guard case .value(let type) = try operand(&c) else {
                    throw .validation(
                        "Invalid \(c.kind): Incorrect operand type for operator or function; operator or function: attribute_type, operand type: PATH"
                    )
                }
                let types = ["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"]
                guard case .string(let name) = type, types.contains(name) else {
                    let shown = if case .string(let name) = type { name } else { type.typeName }
                    throw .validation(
                        "Invalid \(c.kind): Invalid attribute type name found; type: \(shown), valid types: { B,NULL,SS,BOOL,L,BS,N,NS,S,M }"
                    )
                }
                result = .attributeType(a, type)
            case "begins_with":
                let a = try operand(&c)
                try c.expect(",")
                let b = try operand(&c)
                try ExpressionParser.checkConstants([a, b], only: ["S", "B"], "begins_with", c.kind)
                try ExpressionParser.checkDistinct(a, [b], "begins_with", c.kind)
                result = .beginsWith(a, b)
            default:
                let a = try operand(&c)
                try c.expect(",")
                let b = try operand(&c)
                try ExpressionParser.checkDistinct(a, [b], "contains", c.kind)
                result = .contains(a, b)
            }
            try c.expect(")")
            return result
        }
        let left = try operand(&c)
        if case .symbol(let s)? = c.peek, let cmp = Comparator(rawValue: s) {
            c.at += 1
            let right = try operand(&c)
            if ![.eq, .ne].contains(cmp) { try ExpressionParser.checkConstants([left, right], only: ["S", "N", "B"], s, c.kind) }
            try ExpressionParser.checkDistinct(left, [right], s, c.kind)
            return .compare(left, cmp, right)
        }
        if c.acceptKeyword("BETWEEN") {
            let low = try operand(&c)
            guard c.acceptKeyword("AND") else { throw c.error("BETWEEN needs AND") }
            let high = try operand(&c)
            try ExpressionParser.checkConstants([left, low, high], only: ["S", "N", "B"], "BETWEEN", c.kind)
            try ExpressionParser.checkDistinct(left, [low, high], "BETWEEN", c.kind)
            // Two constant bounds must be of one type and in order (else no value could match).
            if case .value(let l) = low, case .value(let h) = high {
                let bounds =
                    "lower bound operand: AttributeValue: {\(l.typeName):\(l)}, upper bound operand: AttributeValue: {\(h.typeName):\(h)}"
                guard let order = Condition.order(l, h) else {
                    throw .validation(
                        "Invalid \(c.kind): The BETWEEN operator requires same data type for lower and upper bounds; \(bounds)")
                }
                guard order <= 0 else {
                    throw .validation(
                        "Invalid \(c.kind): The BETWEEN operator requires upper bound to be greater than or equal to lower bound; \(bounds)"
                    )
                }
            }
            return .between(left, low, high)
        }
        if c.acceptKeyword("IN") {
            try c.expect("(")
            var list = [try operand(&c)]
            while c.accept(",") { list.append(try operand(&c)) }
            try c.expect(")")
            try ExpressionParser.checkDistinct(left, list, "IN", c.kind)
            guard list.count <= 100 else {
                throw .validation(
                    "Invalid \(c.kind): The IN operator is provided with too many operands; number of operands: \(list.count)")
            }
            return .isIn(left, list)
        }
        throw c.error("expected a comparison, BETWEEN, IN or a function")
    }

    /// Comparing with a constant that cannot be ordered (a list, a map…), or `begins_with` a
    /// number, is a mistake in the request, refused before any item is read; the same types
    /// read from the item only make the condition false.
    static func checkConstants(_ operands: [Operand], only types: Set<String>, _ op: String, _ kind: String) throws(DynamoError) {
        for case .value(let v) in operands where !types.contains(v.typeName) {
            throw .validation(
                "Invalid \(kind): Incorrect operand type for operator or function; operator or function: \(op), operand type: \(v.typeName)"
            )
        }
    }

    /// `a = a`, `contains(a, a)`: an attribute compared with itself is refused by DynamoDB (it
    /// is always true or always false, so surely a mistake).
    static func checkDistinct(_ first: Operand, _ rest: [Operand], _ op: String, _ kind: String) throws(DynamoError) {
        guard case .path(let p) = first, rest.contains(first) else { return }
        throw .validation(
            "Invalid \(kind): The first operand must be distinct from the remaining operands for this operator or function; operator: \(op), first operand: [\(p)]"
        )
    }

    /// A SET value: one term, or two joined by `+` or `-` (DynamoDB's grammar has no longer sums:
    /// `:a + :b + :c` is a syntax error).
    private mutating func setValue(_ c: inout Cursor) throws(DynamoError) -> Operand {
        let left = try operand(&c, update: true)
        if c.accept("+") { return .plus(left, try operand(&c, update: true)) }
        if c.accept("-") { return .minus(left, try operand(&c, update: true)) }
        return left
    }

    private mutating func operand(_ c: inout Cursor, allowFunctions: Bool = true, update: Bool = false) throws(DynamoError) -> Operand {
        switch c.peek {
        case .value(let v)?:
            c.at += 1
            guard let value = values[v] else {
                throw .validation(
                    "Invalid \(c.kind): An expression attribute value used in expression is not defined; attribute value: \(v)")
            }
            usedValues.insert(v)
            return .value(value)
        case .word(let f)? where allowFunctions && c.peek2 == .symbol("("):
            c.at += 2
            let result: Operand
            switch f {
            case "size" where !update:
                let a = try operand(&c, allowFunctions: false)
                if case .value(let v) = a, ["N", "BOOL", "NULL"].contains(v.typeName) {
                    throw .validation(
                        "Invalid \(c.kind): Incorrect operand type for operator or function; operator or function: size, operand type: \(v.typeName)"
                    )
                }
                result = .size(a)
            case "if_not_exists" where update:
                let p = try path(&c)
                try c.expect(",")
                result = .ifNotExists(p, try operand(&c, update: true))
            case "list_append" where update:
                let a = try operand(&c, update: true), b: Operand
                try c.expect(",")
                b = try operand(&c, update: true)
                for case .listAppend in [a, b] {
                    throw .validation(
                        "Invalid \(c.kind): The function is not allowed to be used this way in an expression; function: list_append")
                }
                result = .listAppend(a, b)
            case "size", "if_not_exists", "list_append":
                let other = update ? "an update" : "a condition"
                throw .validation("Invalid \(c.kind): The function is not allowed in \(other) expression; function: \(f)")
            case _ where ExpressionParser.conditionFunctions.contains(f):
                throw .validation("Invalid \(c.kind): The function is not allowed to be used this way in an expression; function: \(f)")
            default:
                throw .validation("Invalid \(c.kind): Invalid function name; function: \(f)")
            }
            try c.expect(")")
            return result
        default:
            return .path(try path(&c))
        }
    }

    private mutating func path(_ c: inout Cursor) throws(DynamoError) -> AttributePath {
        var elements = [PathElement.key(try pathName(&c))]
        while true {
            if c.accept(".") {
                elements.append(.key(try pathName(&c)))
            } else if c.accept("[") {
                guard case .integer(let i)? = c.next() else {
                    c.at -= 1
                    throw c.error("a list index is a non-negative integer")
                }
                try c.expect("]")
                elements.append(.index(i))
            } else {
                // The stored form holds at most this many levels (a path's keys are nesting too);
                // a deeper path would make an item that cannot be read back.
                guard elements.count <= ItemCodec.maxDepth + 1 else {
                    throw .validation(
                        "Invalid \(c.kind): The document path has too many nesting levels; nesting levels: \(elements.count - 1)")
                }
                return AttributePath(elements)
            }
        }
    }

    private mutating func pathName(_ c: inout Cursor) throws(DynamoError) -> String {
        switch c.next() {
        case .name(let n)?:
            guard let real = names[n] else {
                throw .validation(
                    "Invalid \(c.kind): An expression attribute name used in the document path is not defined; attribute name: \(n)")
            }
            usedNames.insert(n)
            return real
        case .word(let w)?:
            guard !["AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"].contains(w.uppercased()) else {
                c.at -= 1
                throw .validation("Invalid \(c.kind): Attribute name is a reserved keyword; reserved keyword: \(w)")
            }
            guard let first = w.unicodeScalars.first, !("0"..."9").contains(first) else {
                c.at -= 1
                throw c.error("an attribute name cannot start with a digit")
            }
            return w
        default:
            c.at -= 1
            throw c.error("expected an attribute name")
        }
    }
}

extension ExpressionParser.Token {
    var text: String {
        switch self {
        case .word(let s), .name(let s), .value(let s), .symbol(let s): s
        case .integer(let i): String(i)
        }
    }
}

// ==== ----------------------------------------------------------------------------------------
// MARK: Evaluation

extension Operand {
    /// The document paths the operand reads.
    public var paths: [AttributePath] {
        switch self {
        case .path(let p): [p]
        case .value: []
        case .size(let a): a.paths
        case .ifNotExists(let p, let a): [p] + a.paths
        case .listAppend(let a, let b), .plus(let a, let b), .minus(let a, let b): a.paths + b.paths
        }
    }
}

extension Condition {
    /// The document paths the condition reads (a Query's filter may not read the key).
    public var paths: [AttributePath] {
        switch self {
        case .compare(let a, _, let b), .beginsWith(let a, let b), .contains(let a, let b): a.paths + b.paths
        case .between(let a, let l, let h): a.paths + l.paths + h.paths
        case .isIn(let a, let list): a.paths + list.flatMap(\.paths)
        case .exists(let p), .notExists(let p): [p]
        case .attributeType(let a, _): a.paths
        case .and(let a, let b), .or(let a, let b): a.paths + b.paths
        case .not(let a): a.paths
        }
    }
}

extension Operand {
    /// The operand's value for `item` (nil: missing). Errors only for arithmetic and
    /// list_append on the wrong types, as DynamoDB's do.
    public func evaluate(_ item: [String: AttributeValue]) throws(DynamoError) -> AttributeValue? {
        switch self {
        case .path(let p): return p.resolve(in: item)
        case .value(let v): return v
        case .size(let a):
            guard let v = try a.evaluate(item) else { return nil }
            let n: Int? =
                switch v {
                case .string(let s): s.utf8.count
                case .binary(let b): b.count
                case .map(let m): m.count
                case .list(let l): l.count
                case .stringSet(let s): s.count
                case .numberSet(let s): s.count
                case .binarySet(let s): s.count
                default: nil
                }
            return n.map { .number(DecimalNumber($0)) }
        case .ifNotExists(let p, let fallback):
            if let v = p.resolve(in: item) { return v }
            return try fallback.evaluate(item)
        case .listAppend(let a, let b):
            guard case .list(let x)? = try a.evaluate(item), case .list(let y)? = try b.evaluate(item) else {
                throw .validation(
                    "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: not a list"
                )
            }
            return .list(x + y)
        case .plus(let a, let b), .minus(let a, let b):
            let op = if case .plus = self { "+" } else { "-" }
            guard let x = try a.evaluate(item), let y = try b.evaluate(item) else {
                throw .validation("The provided expression refers to an attribute that does not exist in the item")
            }
            guard case .number(let m) = x, case .number(let n) = y else {
                throw .validation("An operand in the update expression has an incorrect data type")
            }
            guard let sum = op == "+" ? m + n : m + (-n) else {
                throw .validation("Number overflow. Attempting to store a number with magnitude larger than supported range")
            }
            return .number(sum)
        }
    }
}

extension Condition {
    public func evaluate(_ item: [String: AttributeValue]) throws(DynamoError) -> Bool {
        switch self {
        case .and(let a, let b):
            guard try a.evaluate(item) else { return false }
            return try b.evaluate(item)
        case .or(let a, let b):
            if try a.evaluate(item) { return true }
            return try b.evaluate(item)
        case .not(let a): return try !a.evaluate(item)
        case .exists(let p): return p.resolve(in: item) != nil
        case .notExists(let p): return p.resolve(in: item) == nil
        case .attributeType(let a, let type):
            guard case .string(let name) = type else { return false }
            return try a.evaluate(item)?.typeName == name
        case .beginsWith(let a, let b):
            switch (try a.evaluate(item), try b.evaluate(item)) {
            case (.string(let s)?, .string(let prefix)?): return s.utf8.starts(with: prefix.utf8)
            case (.binary(let s)?, .binary(let prefix)?): return s.starts(with: prefix)
            default: return false
            }
        case .contains(let a, let b):
            guard let hay = try a.evaluate(item), let needle = try b.evaluate(item) else { return false }
            switch (hay, needle) {
            case (.string(let s), .string(let sub)): return sub.isEmpty || s.contains(sub)
            case (.binary(let s), .binary(let sub)): return sub.isEmpty || s.indices.contains { s[$0...].starts(with: sub) }
            case (.stringSet(let s), .string(let x)): return s.contains(x)
            case (.numberSet(let s), .number(let x)): return s.contains(x)
            case (.binarySet(let s), .binary(let x)): return s.contains(x)
            case (.list(let l), let x): return l.contains(x)
            default: return false
            }
        case .compare(let a, let cmp, let b):
            let x = try a.evaluate(item), y = try b.evaluate(item)
            switch cmp {
            case .eq: return x != nil && x == y
            // A missing attribute equals nothing, not even another missing one: `q <> z` holds.
            case .ne: return x == nil || y == nil || x != y
            default:
                guard let x, let y, let order = Condition.order(x, y) else { return false }
                switch cmp {
                case .lt: return order < 0
                case .le: return order <= 0
                case .gt: return order > 0
                default: return order >= 0
                }
            }
        case .between(let a, let low, let high):
            guard let x = try a.evaluate(item), let l = try low.evaluate(item), let h = try high.evaluate(item),
                let lo = Condition.order(x, l), let hi = Condition.order(x, h)
            else { return false }
            return lo >= 0 && hi <= 0
        case .isIn(let a, let list):
            guard let x = try a.evaluate(item) else { return false }
            for o in list where try o.evaluate(item) == x { return true }
            return false
        }
    }

    /// -1/0/1 for two scalars of the same ordered type (S, N, B), else nil.
    static func order(_ a: AttributeValue, _ b: AttributeValue) -> Int? {
        guard let x = SetElement(a), let y = SetElement(b), x.rank == y.rank else { return nil }
        return x < y ? -1 : (x == y ? 0 : 1)
    }
}

/// `ProjectionExpression`: the item with only the given paths (list elements picked by index
/// come back in index order, compacted, as DynamoDB returns them).
public func project(_ item: [String: AttributeValue], _ paths: [AttributePath]) -> [String: AttributeValue] {
    var out: [String: AttributeValue] = [:]
    var previous: [PathElement] = []  // of the last path inserted
    for p in paths.sorted(by: AttributePath.precedes) {
        guard let v = p.resolve(in: item) else { continue }
        let shared = zip(previous, p.elements).prefix { $0 == $1 }.count
        out[p.attribute] = inserting(out[p.attribute], p.elements.dropFirst(), v, shared: shared)
        previous = p.elements
    }
    return out
}

/// `rest` keeps its indices into the whole path; the first `shared` elements are those of the
/// previous path inserted.
private func inserting(
    _ container: AttributeValue?, _ rest: ArraySlice<PathElement>, _ value: AttributeValue,
    shared: Int
) -> AttributeValue {
    guard let first = rest.first else { return value }
    switch first {
    case .key(let k):
        var m: [String: AttributeValue] = if case .map(let m)? = container { m } else { [:] }
        m[k] = inserting(m[k], rest.dropFirst(), value, shared: shared)
        return .map(m)
    case .index:
        // Paths arrive sorted, so elements land in index order; a deeper path into the same
        // element as the previous path goes into that element, not a new one.
        var l: [AttributeValue] = if case .list(let l)? = container { l } else { [] }
        if rest.startIndex < shared, let last = l.popLast() {
            l.append(inserting(last, rest.dropFirst(), value, shared: shared))
        } else {
            l.append(inserting(nil, rest.dropFirst(), value, shared: shared))
        }
        return .list(l)
    }
}
