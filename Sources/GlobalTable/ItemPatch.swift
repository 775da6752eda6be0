import TandemCore

/// The PATCH body of the table API, applied to an item:
/// `{"set":{…},"remove":[…],"add":{"n":1},"addToSet":{"s":["x"]},"removeFromSet":{…}}`.
///
/// Every name is a `DocumentPath` in text form: `profile.address.city` writes one key of a
/// nested map (merged per path), `a\.b` is an attribute whose name holds a dot. Key attributes
/// cannot be changed, at any depth.
public enum ItemPatch {
    /// Applies the patch at `t`; returns the delta to replicate.
    public static func apply(_ body: JSON, to state: inout ItemState, keyNames: [String], at t: HLC) throws(TandemError) -> ItemState {
        guard case .object(let members) = body else { throw TandemError(.badRequest, "a patch is a JSON object") }
        func path(_ text: String, _ op: String) throws(TandemError) -> DocumentPath {
            let p = try DocumentPath(parsing: text)
            guard !keyNames.contains(p.attribute) else {
                throw TandemError(.badRequest, "'\(op)' cannot change key attribute '\(p.attribute)'")
            }
            return p
        }
        func object(_ v: JSON, _ op: String) throws(TandemError) -> [(DocumentPath, JSON)] {
            guard case .object(let m) = v else { throw TandemError(.badRequest, "'\(op)' takes an object") }
            var out: [(DocumentPath, JSON)] = []
            for (name, value) in m { out.append((try path(name, op), value)) }
            return out
        }
        func elements(_ v: JSON, _ p: DocumentPath) throws(TandemError) -> Set<SetElement> {
            guard case .array(let items) = v, !items.isEmpty else { throw TandemError(.badRequest, "'\(p)': give a non-empty array") }
            var out = Set<SetElement>()
            for item in items {
                switch try PlainJSON.value(item) {
                case .string(let s): out.insert(.string(s))
                case .number(let n): out.insert(.number(n))
                case .binary(let b): out.insert(.binary(b))
                default: throw TandemError(.badRequest, "'\(p)': set elements are strings, numbers or {\"$B\":…}")
                }
            }
            guard Set(out.map(\.rank)).count == 1 else { throw TandemError(.badRequest, "'\(p)': one set holds one type") }
            return out
        }
        var delta = ItemState()
        for (op, value) in members {
            switch op {
            case "set":
                for (p, v) in try object(value, op) {
                    let value = try PlainJSON.value(v, path: p.description)
                    // The stored form refuses deeper nesting, and a path's keys are nesting too.
                    guard p.keys.count + value.depth <= ItemCodec.maxDepth else {
                        throw TandemError(.badRequest, "'\(p)': value nested deeper than \(ItemCodec.maxDepth)")
                    }
                    delta.merge(state.set(p, value, at: t))
                }
            case "remove":
                guard case .array(let names) = value else { throw TandemError(.badRequest, "'remove' takes an array of paths") }
                for n in names {
                    guard let text = n.stringValue else { throw TandemError(.badRequest, "'remove' takes an array of paths") }
                    delta.merge(state.remove(try path(text, op), at: t))
                }
            case "add":
                for (p, v) in try object(value, op) {
                    guard case .number(let text) = v, let n = DecimalNumber(text) else {
                        throw TandemError(.badRequest, "'add.\(p)' takes a number")
                    }
                    guard let d = state.add(p, n, at: t) else {
                        throw TandemError(.badRequest, "'\(p)' is not a number, or the sum leaves DynamoDB's range")
                    }
                    delta.merge(d)
                }
            case "addToSet", "removeFromSet":
                for (p, v) in try object(value, op) {
                    let es = try elements(v, p)
                    guard let d = op == "addToSet" ? state.addToSet(p, es, at: t) : state.removeFromSet(p, es, at: t) else {
                        throw TandemError(.badRequest, "'\(p)' holds a value that is not a set")
                    }
                    delta.merge(d)
                }
            default:
                throw TandemError(.badRequest, "unknown patch operation '\(op)': use set, remove, add, addToSet, removeFromSet")
            }
        }
        return delta
    }
}
