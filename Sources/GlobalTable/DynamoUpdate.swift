import TandemCore

/// Applies a DynamoDB UpdateExpression to an item's CRDT state, choosing for each action the
/// merge rule that keeps its meaning across regions:
/// - `SET a = v` writes a last-writer-wins register at `a` (nested map keys merge per path).
/// - `SET n = n + :k` (or `n - :k`, `if_not_exists(n, :zero) + :k`) and `ADD n :k` are counter
///   increments: concurrent increments in two regions all count.
/// - `ADD s :set` / `DELETE s :set` are add-wins set operations.
/// - `REMOVE a` is a per-path tombstone.
/// - A path through a list index (`l[2]`) rewrites the list that holds it, as one value.
/// Values are computed from the item as it was before the update, as DynamoDB does.
public enum DynamoUpdate {
    public static func apply(_ u: UpdateExpression, to state: inout ItemState, keyNames: [String], at t: HLC) throws(DynamoError)
        -> ItemState
    {
        let old = state.visible ?? [:]
        // REMOVE below a missing or wrong-typed parent is refused, except on a missing item, where
        // DynamoDB lets any REMOVE pass (and writes nothing for it).
        let exists = state.visible != nil
        for p in u.paths where keyNames.contains(p.attribute) {
            throw .validation(
                "One or more parameter values were invalid: Cannot update attribute \(p.attribute). This attribute is part of the key")
        }
        var delta = ItemState()
        var wholeValues: [(AttributePath, AttributeValue?)] = []  // writes through list indexes

        for (p, value) in u.sets {
            if let (amount, keys) = counterIncrement(p, value, old) {
                guard let d = state.add(DocumentPath(p.attribute, keys), amount, at: t) else {
                    throw .validation("Number overflow. Attempting to store a number with magnitude larger than supported range")
                }
                delta.merge(d)
                continue
            }
            guard let v = try value.evaluate(old) else {
                throw .validation("The provided expression refers to an attribute that does not exist in the item")
            }
            try checkParent(p, old)
            if let keys = p.mapKeys {
                guard keys.count + v.depth <= ItemCodec.maxDepth else { throw .validation("Nesting Levels have exceeded supported limits") }
                delta.merge(state.set(DocumentPath(p.attribute, keys), v, at: t))
            } else {
                wholeValues.append((p, v))
            }
        }
        for p in u.removes {
            if exists { try checkParent(p, old) }
            if let keys = p.mapKeys {
                delta.merge(state.remove(DocumentPath(p.attribute, keys), at: t))
            } else {
                wholeValues.append((p, nil))
            }
        }
        for (p, v) in u.adds + u.deletes.map({ ($0.0, $0.1) }) {
            let isAdd = u.adds.contains { $0.0 == p }
            guard let keys = p.mapKeys else {
                throw .validation("Invalid UpdateExpression: ADD and DELETE do not take list indexes; path: \(p)")
            }
            try checkParent(p, old)
            let path = DocumentPath(p.attribute, keys)
            let current = p.resolve(in: old)
            switch v {
            case .number(let n) where isAdd:
                guard current == nil || current?.typeName == "N" else { throw typeMismatch(isAdd, v, current) }
                guard let d = state.add(path, n, at: t) else {
                    throw .validation("Number overflow. Attempting to store a number with magnitude larger than supported range")
                }
                delta.merge(d)
            case .stringSet, .numberSet, .binarySet:
                guard current == nil || current?.typeName == v.typeName else { throw typeMismatch(isAdd, v, current) }
                let elements = setElements(v)
                guard let d = isAdd ? state.addToSet(path, elements, at: t) : state.removeFromSet(path, elements, at: t) else {
                    throw typeMismatch(isAdd, v, current)
                }
                delta.merge(d)
            default:
                throw .validation(
                    "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: \(isAdd ? "ADD" : "DELETE"), operand type: \(typeWord(v))"
                )
            }
        }
        // List edits: each rewrites its list from the old item (paths never overlap, but two may
        // share a list: apply them to one copy). Indexes name positions in the old list, so sets
        // go first, in index order (sets past the end append in index order, as DynamoDB
        // documents), then removals from the highest index down.
        var lists: [AttributePath: AttributeValue] = [:]
        let sets = wholeValues.filter { $0.1 != nil }.sorted { AttributePath.precedes($0.0, $1.0) }
        let removals = wholeValues.filter { $0.1 == nil }.sorted { AttributePath.precedes($1.0, $0.0) }
        for (p, v) in sets + removals {
            let cut = p.elements.firstIndex { if case .index = $0 { true } else { false } }!
            let listPath = AttributePath(Array(p.elements[..<cut]))
            guard let list = lists[listPath] ?? listPath.resolve(in: old) else {
                if v == nil { continue }
                throw .validation("The document path provided in the update expression is invalid for update")
            }
            guard let updated = replacing(list, p.elements[cut...], v) else {
                throw .validation("The document path provided in the update expression is invalid for update")
            }
            lists[listPath] = updated
        }
        for (listPath, value) in lists {
            let keys = listPath.mapKeys ?? []
            guard keys.count + value.depth <= ItemCodec.maxDepth else { throw .validation("Nesting Levels have exceeded supported limits") }
            delta.merge(state.set(DocumentPath(listPath.attribute, keys), value, at: t))
        }
        return delta
    }

    /// `SET p = p + :k` (either order for +), `p - :k`, or with `if_not_exists(p, :0)` in place of
    /// `p`, on a number (or nothing, for the if_not_exists form): the amount and map keys.
    static func counterIncrement(_ p: AttributePath, _ value: Operand, _ old: [String: AttributeValue]) -> (DecimalNumber, [String])? {
        guard let keys = p.mapKeys else { return nil }
        func isSelf(_ o: Operand) -> Bool {
            switch o {
            case .path(let q): return q == p && p.resolve(in: old)?.typeName == "N"
            case .ifNotExists(let q, .value(.number(let zero))):
                guard q == p else { return false }
                guard let current = p.resolve(in: old) else { return zero == .zero }
                return current.typeName == "N"
            default: return false
            }
        }
        switch value {
        case .plus(let a, .value(.number(let k))) where isSelf(a): return (k, keys)
        case .plus(.value(.number(let k)), let b) where isSelf(b): return (k, keys)
        case .minus(let a, .value(.number(let k))) where isSelf(a): return (-k, keys)
        default: return nil
        }
    }

    /// DynamoDB writes below a path only if the map above it exists.
    static func checkParent(_ p: AttributePath, _ old: [String: AttributeValue]) throws(DynamoError) {
        guard p.elements.count > 1 else { return }
        let parent = AttributePath(Array(p.elements.dropLast()))
        switch (parent.resolve(in: old), p.elements.last!) {
        case (.map?, .key), (.list?, .index): return
        default: throw .validation("The document path provided in the update expression is invalid for update")
        }
    }

    /// `container` with the value at `rest` replaced (nil removes; an index past the end of a
    /// list appends, as DynamoDB's SET does).
    static func replacing(_ container: AttributeValue, _ rest: ArraySlice<PathElement>, _ value: AttributeValue?) -> AttributeValue? {
        guard let first = rest.first else { return value }
        switch (first, container) {
        case (.key(let k), .map(var m)):
            if rest.count == 1 {
                m[k] = value
            } else {
                guard let inner = m[k], let r = replacing(inner, rest.dropFirst(), value) else { return nil }
                m[k] = r
            }
            return .map(m)
        case (.index(let i), .list(var l)):
            if rest.count == 1 {
                if let value {
                    if i < l.count { l[i] = value } else { l.append(value) }
                } else if i < l.count {
                    l.remove(at: i)
                }
            } else {
                guard i < l.count, let r = replacing(l[i], rest.dropFirst(), value) else { return nil }
                l[i] = r
            }
            return .list(l)
        default:
            return nil
        }
    }

    static func setElements(_ v: AttributeValue) -> Set<SetElement> {
        switch v {
        case .stringSet(let s): Set(s.map { .string($0) })
        case .numberSet(let s): Set(s.map { .number($0) })
        case .binarySet(let s): Set(s.map { .binary($0) })
        default: []
        }
    }

    static func typeWord(_ v: AttributeValue) -> String {
        switch v {
        case .string: "STRING"
        case .number: "NUMBER"
        case .binary: "BINARY"
        case .bool: "BOOLEAN"
        case .null: "NULL"
        case .map: "MAP"
        case .list: "LIST"
        case .stringSet: "SET<STRING>"
        case .numberSet: "SET<NUMBER>"
        case .binarySet: "SET<BINARY>"
        }
    }

    static func typeMismatch(_ isAdd: Bool, _ v: AttributeValue, _ current: AttributeValue?) -> DynamoError {
        .validation("An operand in the update expression has an incorrect data type")
    }
}
