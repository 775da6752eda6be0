import TandemCore

/// A Query's KeyConditionExpression, checked against the table's key schema: the partition key
/// it fixes and the sort-key test (pure, so the fuzzer can reach it without a node).
public struct KeyCondition {
    public var partition: KeyValue
    public var sort: (KeyValue) -> Bool = { _ in true }
    /// Bounds of the matching sort keys where the condition gives them: a walk starts at
    /// `low` (ascending) or `high` (descending) instead of the partition's end.
    public var low: KeyValue?
    public var high: KeyValue?

    public init(_ c: Condition, schema: KeySchema) throws(DynamoError) {
        var parts: [Condition] = []
        func flatten(_ c: Condition) throws(DynamoError) {
            switch c {
            case .and(let a, let b):
                try flatten(a)
                try flatten(b)
            case .or: throw .validation("Invalid operator used in KeyConditionExpression: OR")
            case .not: throw .validation("Invalid operator used in KeyConditionExpression: NOT")
            default: parts.append(c)
            }
        }
        try flatten(c)
        func keyName(_ o: Operand) -> String? {
            if case .path(let p) = o, p.elements.count == 1 { return p.attribute }
            return nil
        }
        func keyValue(_ o: Operand, _ type: String) throws(DynamoError) -> KeyValue {
            guard case .value(let v) = o else {
                throw .validation("Invalid KeyConditionExpression: a key is compared with an expression attribute value")
            }
            guard let k = KeyValue(v), v.typeName == type else {
                throw .validation("One or more parameter values were invalid: Condition parameter type does not match schema type")
            }
            return k
        }
        var partition: KeyValue?
        var sort: ((KeyValue) -> Bool)?
        var low: KeyValue?, high: KeyValue?
        for part in parts {
            var name: String?
            var test: ((KeyValue) -> Bool)?
            var bounds: (KeyValue?, KeyValue?) = (nil, nil)
            var equalsValue: Operand?
            switch part {
            case .compare(let a, let op, let b):
                // `:v < sk` reads as `sk > :v`.
                let flipped: [Comparator: Comparator] = [.lt: .gt, .gt: .lt, .le: .ge, .ge: .le, .eq: .eq]
                let (path, value, cmp) = keyName(a) != nil ? (a, b, op) : (b, a, flipped[op] ?? op)
                guard let n = keyName(path), cmp != Comparator.ne else { throw .validation("Query key condition not supported") }
                name = n
                if cmp == .eq { equalsValue = value }
                let type = n == schema.partitionKey ? schema.partitionKeyType : schema.sortKeyType
                let v = try keyValue(value, type)
                bounds =
                    switch cmp {
                    case .eq: (v, v)
                    case .lt, .le: (nil, v)
                    default: (v, nil)
                    }
                test =
                    switch cmp {
                    case .eq: { $0 == v }
                    case .lt: { $0 < v }
                    case .le: { $0 <= v }
                    case .gt: { $0 > v }
                    default: { $0 >= v }
                    }
            case .between(let a, let lo, let hi):
                guard let n = keyName(a) else { throw .validation("Query key condition not supported") }
                name = n
                let l = try keyValue(lo, schema.sortKeyType), h = try keyValue(hi, schema.sortKeyType)
                guard l <= h else {
                    throw .validation(
                        "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {\(l)}, upper bound operand: AttributeValue: {\(h)}"
                    )
                }
                test = { $0 >= l && $0 <= h }
                bounds = (l, h)
            case .beginsWith(let a, let b):
                guard let n = keyName(a) else { throw .validation("Query key condition not supported") }
                name = n
                let prefixValue = try keyValue(b, schema.sortKeyType)
                bounds = (prefixValue, nil)  // every key with the prefix sorts at or after it
                switch prefixValue {
                case .string(let prefix): test = { if case .string(let s) = $0 { s.utf8.starts(with: prefix.utf8) } else { false } }
                case .binary(let prefix): test = { if case .binary(let s) = $0 { s.starts(with: prefix) } else { false } }
                default:
                    throw .validation(
                        "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"
                    )
                }
            default:
                throw .validation("Invalid KeyConditionExpression: only =, <, <=, >, >=, BETWEEN and begins_with on key attributes")
            }
            if name == schema.partitionKey {
                guard partition == nil, let equalsValue else {
                    throw .validation("Query key condition not supported")
                }
                partition = try keyValue(equalsValue, schema.partitionKeyType)
            } else if name == schema.sortKey {
                guard sort == nil else { throw .validation("KeyConditionExpressions must only contain one condition per key") }
                sort = test
                (low, high) = bounds
            } else {
                throw .validation("Query condition missed key schema element: \(name ?? "")")
            }
        }
        guard let partition else { throw .validation("Query condition missed key schema element: \(schema.partitionKey)") }
        self.partition = partition
        self.sort = sort ?? { _ in true }
        self.low = low
        self.high = high
    }
}
