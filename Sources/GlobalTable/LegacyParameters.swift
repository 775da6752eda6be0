import TandemCore

/// DynamoDB's legacy (pre-expression) parameters, which older SDK code still sends, translated
/// into the trees the expression forms parse to, so both are evaluated by the same code:
/// `Expected`, `QueryFilter`, `ScanFilter` (with `ConditionalOperator`) and `KeyConditions` become
/// a `Condition`, `AttributeUpdates` an `UpdateExpression`, `AttributesToGet` a projection.
/// Names in these parameters are top-level attributes, taken literally (a dot is part of the name).
/// Pure; `check` holds DynamoDB's rules on which parameters one request may combine.
public enum LegacyParameters {
    /// The legacy parameters and the expression parameters that replace them: a request may use
    /// one family or the other, never both (DynamoDB's rule).
    public static let legacy = ["AttributeUpdates", "Expected", "KeyConditions", "QueryFilter", "ScanFilter", "AttributesToGet"]
    public static let expressions = [
        "UpdateExpression", "ConditionExpression", "KeyConditionExpression", "FilterExpression", "ProjectionExpression"
    ]

    /// Refuses a request mixing the two families, placeholders without expressions, and
    /// ConditionalOperator without the conditions it joins; in DynamoDB's words.
    public static func check(_ request: JSON, conditions: String? = nil) throws(DynamoError) {
        func present(_ field: String) -> Bool { request[field].map { $0 != .null } ?? false }
        let old = legacy.filter(present), new = expressions.filter(present)
        if !old.isEmpty && !new.isEmpty {
            throw .validation(
                "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {\(old.joined(separator: ", "))} Expression parameters: {\(new.joined(separator: ", "))}"
            )
        }
        if new.isEmpty {
            for field in ["ExpressionAttributeNames", "ExpressionAttributeValues"] where present(field) {
                throw .validation("\(field) can only be specified when using expressions")
            }
        }
        if present("ConditionalOperator") {
            guard case .string(let op)? = request["ConditionalOperator"], ["AND", "OR"].contains(op) else {
                let shown = if case .string(let s)? = request["ConditionalOperator"] { s } else { "\(request["ConditionalOperator"]!)" }
                throw .validation(
                    "1 validation error detected: Value '\(shown)' at 'conditionalOperator' failed to satisfy constraint: Member must satisfy enum value set: [OR, AND]"
                )
            }
            guard let conditions, case .object(let members)? = request[conditions], !members.isEmpty else {
                throw .validation(
                    "ConditionalOperator can only be used when \(conditions ?? "a condition parameter") is specified with conditions")
            }
        }
    }

    // MARK: conditions

    /// `Expected` (conditions on the item a write replaces): each entry is `Value`/`Exists` or
    /// `ComparisonOperator`/`AttributeValueList`, joined by `ConditionalOperator` (AND unless OR).
    public static func expected(_ request: JSON) throws(DynamoError) -> Condition? {
        try conditions(request, "Expected", allowExists: true)
    }

    /// `QueryFilter` or `ScanFilter`: ComparisonOperator conditions, joined as `Expected`'s are.
    public static func filter(_ request: JSON, _ field: String) throws(DynamoError) -> Condition? {
        try conditions(request, field, allowExists: false)
    }

    /// `KeyConditions`: ComparisonOperator conditions on the key attributes, always joined by AND
    /// (the caller checks them against the key schema, as for KeyConditionExpression).
    public static func keyConditions(_ request: JSON) throws(DynamoError) -> Condition? {
        guard case .object(let members)? = request["KeyConditions"] else { return nil }
        var parts: [Condition] = []
        for (name, spec) in members {
            guard let op = try string(spec, "ComparisonOperator", name) else {
                throw .validation("One or more parameter values were invalid: ComparisonOperator is required for key attribute \(name)")
            }
            guard ["EQ", "LE", "LT", "GE", "GT", "BEGINS_WITH", "BETWEEN"].contains(op) else {
                throw .validation("Attempted conditional constraint is not an indexable operation")
            }
            parts.append(try comparison(name, op, try valueList(spec, name)))
        }
        return parts.dropFirst().reduce(parts.first) { .and($0!, $1) }
    }

    static func conditions(_ request: JSON, _ field: String, allowExists: Bool) throws(DynamoError) -> Condition? {
        guard let j = request[field], j != .null else { return nil }
        guard case .object(let members) = j else { throw .serialization("\(field) must be a map") }
        var parts: [Condition] = []
        for (name, spec) in members {
            try DynamoJSON.checkName(name)
            guard case .object = spec else { throw .serialization("\(field).\(name) must be a map") }
            parts.append(allowExists ? try expectedEntry(name, spec) : try filterEntry(name, spec))
        }
        let or = request["ConditionalOperator"] == .string("OR")
        return parts.dropFirst().reduce(parts.first) { or ? .or($0!, $1) : .and($0!, $1) }
    }

    /// One `Expected` entry. `{Value: v}` (Exists true or absent) is `a = v`; `{Exists: false}` is
    /// `attribute_not_exists(a)`; Exists true alone, or false with a Value, means nothing and is
    /// refused, as is a ComparisonOperator given with either.
    static func expectedEntry(_ name: String, _ spec: JSON) throws(DynamoError) -> Condition {
        let value = try spec["Value"].flatMap { j throws(DynamoError) in j == .null ? nil : try DynamoJSON.value(j) }
        let exists: Bool?
        switch spec["Exists"] {
        case nil, .null?: exists = nil
        case .bool(let b)?: exists = b
        default: throw .serialization("Exists must be a boolean")
        }
        if spec["ComparisonOperator"].map({ $0 != .null }) ?? false {
            guard value == nil, exists == nil else {
                throw .validation(
                    "One or more parameter values were invalid: Value or Exists cannot be used with ComparisonOperator for Attribute: \(name)"
                )
            }
            return try filterEntry(name, spec)
        }
        if spec["AttributeValueList"].map({ $0 != .null }) ?? false {
            throw .validation(
                "One or more parameter values were invalid: AttributeValueList can only be used with a ComparisonOperator for Attribute: \(name)"
            )
        }
        switch (exists ?? true, value) {
        case (true, let v?): return .compare(.path(path(name)), .eq, .value(v))
        case (false, nil): return .notExists(path(name))
        case (true, nil):
            throw .validation(
                "One or more parameter values were invalid: Value must be provided when Exists is true for Attribute: \(name)")
        case (false, _?):
            throw .validation(
                "One or more parameter values were invalid: Value cannot be used when Exists is false for Attribute: \(name)")
        }
    }

    /// A `ComparisonOperator`/`AttributeValueList` condition.
    static func filterEntry(_ name: String, _ spec: JSON) throws(DynamoError) -> Condition {
        guard let op = try string(spec, "ComparisonOperator", name) else {
            throw .validation("One or more parameter values were invalid: ComparisonOperator is required for Attribute: \(name)")
        }
        return try comparison(name, op, try valueList(spec, name))
    }

    /// DynamoDB's comparison operators, with its rules on how many values each takes and of
    /// which types (a wrong count or type is a ValidationException, not a false condition).
    static func comparison(_ name: String, _ op: String, _ values: [AttributeValue]) throws(DynamoError) -> Condition {
        let p = path(name), a = Operand.path(p)
        func count(_ n: Int) throws(DynamoError) {
            guard values.count == n else {
                throw .validation(
                    "One or more parameter values were invalid: Invalid number of argument(s) for the \(op) ComparisonOperator")
            }
        }
        func scalar(_ v: AttributeValue, _ types: Set<String> = ["S", "N", "B"]) throws(DynamoError) -> Operand {
            guard types.contains(v.typeName) else {
                throw .validation(
                    "One or more parameter values were invalid: ComparisonOperator \(op) is not valid for \(v.typeName) AttributeValue type"
                )
            }
            return .value(v)
        }
        switch op {
        case "EQ", "NE":
            try count(1)
            return .compare(a, op == "EQ" ? .eq : .ne, .value(values[0]))
        case "LE", "LT", "GE", "GT":
            try count(1)
            let cmp: [String: Comparator] = ["LE": .le, "LT": .lt, "GE": .ge, "GT": .gt]
            return .compare(a, cmp[op]!, try scalar(values[0]))
        case "NOT_NULL", "NULL":
            try count(0)
            return op == "NULL" ? .notExists(p) : .exists(p)
        case "CONTAINS":
            try count(1)
            return .contains(a, try scalar(values[0]))
        case "NOT_CONTAINS":
            // False on a missing attribute (unlike NE), as DynamoDB answers.
            try count(1)
            return .and(.exists(p), .not(.contains(a, try scalar(values[0]))))
        case "BEGINS_WITH":
            try count(1)
            return .beginsWith(a, try scalar(values[0], ["S", "B"]))
        case "IN":
            guard !values.isEmpty, values.count <= 100 else {
                throw .validation(
                    "One or more parameter values were invalid: Invalid number of argument(s) for the \(op) ComparisonOperator")
            }
            let first = try scalar(values[0])
            for v in values.dropFirst() where v.typeName != values[0].typeName {
                throw .validation(
                    "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type")
            }
            return .isIn(a, [first] + values.dropFirst().map { .value($0) })
        case "BETWEEN":
            try count(2)
            let low = try scalar(values[0]), high = try scalar(values[1])
            guard values[0].typeName == values[1].typeName else {
                throw .validation(
                    "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type")
            }
            guard let order = Condition.order(values[0], values[1]), order <= 0 else {
                throw .validation(
                    "One or more parameter values were invalid: Invalid BETWEEN ComparisonOperator: the lower bound is greater than the upper bound"
                )
            }
            return .between(a, low, high)
        default:
            throw .validation(
                "1 validation error detected: Value '\(op)' at 'comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
            )
        }
    }

    // MARK: updates and projections

    /// `AttributeUpdates`: per attribute an Action (PUT, the default; DELETE; ADD) and a Value.
    /// PUT sets the value; DELETE without a value removes the attribute, with a set removes those
    /// elements; ADD adds a number, adds set elements, or appends a list (as DynamoDB documents);
    /// on a missing attribute ADD starts from zero, the empty set or the empty list.
    public static func attributeUpdates(_ request: JSON) throws(DynamoError) -> UpdateExpression? {
        guard let j = request["AttributeUpdates"], j != .null else { return nil }
        guard case .object(let members) = j else { throw .serialization("AttributeUpdates must be a map") }
        var u = UpdateExpression()
        for (name, spec) in members {
            try DynamoJSON.checkName(name)
            guard case .object = spec else { throw .serialization("AttributeUpdates.\(name) must be a map") }
            let action = try string(spec, "Action", name) ?? "PUT"
            let value = try spec["Value"].flatMap { j throws(DynamoError) in j == .null ? nil : try DynamoJSON.value(j) }
            let p = path(name)
            switch (action, value) {
            case ("PUT", let v?): u.sets.append((p, .value(v)))
            case ("DELETE", nil): u.removes.append(p)
            case ("DELETE", let v?):
                guard ["SS", "NS", "BS"].contains(v.typeName) else {
                    throw .validation(
                        "One or more parameter values were invalid: DELETE action with value is not supported for the type \(v.typeName)")
                }
                u.deletes.append((p, v))
            case ("ADD", .list(let l)?):
                u.sets.append((p, .listAppend(.ifNotExists(p, .value(.list([]))), .value(.list(l)))))
            case ("ADD", let v?):
                guard ["N", "SS", "NS", "BS"].contains(v.typeName) else {
                    throw .validation("One or more parameter values were invalid: ADD action is not supported for the type \(v.typeName)")
                }
                u.adds.append((p, v))
            case ("PUT", nil), ("ADD", nil):
                throw .validation(
                    "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified")
            default:
                throw .validation(
                    "1 validation error detected: Value '\(action)' at 'attributeUpdates.\(name).member.action' failed to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]"
                )
            }
        }
        return u
    }

    /// `AttributesToGet`: a non-empty list of distinct top-level attribute names.
    public static func attributesToGet(_ request: JSON) throws(DynamoError) -> [AttributePath]? {
        guard let j = request["AttributesToGet"], j != .null else { return nil }
        guard case .array(let names) = j, !names.isEmpty else {
            throw .validation(
                "1 validation error detected: Value '[]' at 'attributesToGet' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        }
        var seen: Set<String> = []
        var out: [AttributePath] = []
        for n in names {
            guard case .string(let name) = n else { throw .serialization("AttributesToGet must be a list of strings") }
            try DynamoJSON.checkName(name)
            guard seen.insert(name).inserted else {
                throw .validation("One or more parameter values were invalid: Duplicate value in attribute name: \(name)")
            }
            out.append(path(name))
        }
        return out
    }

    // MARK: helpers

    static func path(_ name: String) -> AttributePath { AttributePath([.key(name)]) }

    static func string(_ j: JSON, _ field: String, _ name: String) throws(DynamoError) -> String? {
        guard let v = j[field], v != .null else { return nil }
        guard case .string(let s) = v else { throw .serialization("\(field) of \(name) must be a string") }
        return s
    }

    static func valueList(_ spec: JSON, _ name: String) throws(DynamoError) -> [AttributeValue] {
        guard let j = spec["AttributeValueList"], j != .null else { return [] }
        guard case .array(let list) = j else { throw .serialization("AttributeValueList of \(name) must be a list") }
        var out: [AttributeValue] = []
        for v in list { out.append(try DynamoJSON.value(v)) }
        return out
    }
}
