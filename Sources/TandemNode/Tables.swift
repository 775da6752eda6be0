import Foundation
import GlobalTable
import TandemCore

/// Global tables on one node: the in-memory replicas (the read path), the HLC, and durable writes
/// through LMDB group commit. A write is acknowledged only after its commit is on disk.
///
/// Replication to peers is not here yet (see the issue note); every merge rule already is, in
/// `GlobalTable`, so replication will only move deltas.
final class Tables {
    static let maxItemBytes = 400 * 1024
    static let catalogPrefix: [UInt8] = [0x01]
    static let itemPrefix: [UInt8] = [0x02]

    private var replicas: [String: TableReplica] = [:]
    private var clock: HybridClock
    private let committer: GroupCommitter

    init(store: LMDBStore, loop: EventLoop, nodeName: String) throws {
        clock = HybridClock(node: stableHash64(Array(nodeName.utf8)))
        committer = GroupCommitter(loop: loop, store: store)
        for (key, value) in try store.scan(prefix: Tables.catalogPrefix) {
            let name = String(decoding: key.dropFirst(), as: UTF8.self)
            let schema = try Tables.decodeSchema(value)
            replicas[name] = TableReplica(name: name, schema: schema)
        }
        var wall: UInt64 = 0
        for (key, value) in try store.scan(prefix: Tables.itemPrefix) {
            var r = ByteReader(key, from: 1)
            let nameLength = Int(try r.u16())
            guard r.remaining >= nameLength else { throw TandemError(.malformed, "corrupt item key in store") }
            let name = String(decoding: key[3..<(3 + nameLength)], as: UTF8.self)
            let itemKey = try ItemKey(bytes: Array(key[(3 + nameLength)...]))
            let state = try ItemCodec.decode(value)
            replicas[name]?.merge(itemKey, state)
            wall = max(wall, Tables.latest(state))
        }
        // Never issue a timestamp below one already on disk, whatever the wall clock says now.
        clock.observe(HLC(time: wall, node: 0), wallMs: Tables.wallMs())
    }

    var stats: (commits: Int, writes: Int, failures: Int) {
        (committer.commits, committer.writesCommitted, committer.failures)
    }

    static func wallMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    static func latest(_ s: ItemState) -> UInt64 {
        var t = s.marker.time
        for a in s.attributes.values {
            if let r = a.register { t = max(t, r.at.time) }
            if let c = a.counter { t = max(t, c.lastWrite.time) }
            if let w = a.set?.lastWrite { t = max(t, w.time) }
        }
        return t
    }

    static func itemStorageKey(_ table: String, _ key: ItemKey) -> [UInt8] {
        var w = ByteWriter()
        w.raw(itemPrefix)
        let name = Array(table.utf8)
        w.u16(UInt16(name.count))
        w.raw(name)
        w.raw(key.bytes)
        return w.bytes
    }

    // MARK: schema encoding

    static func encodeSchema(_ s: KeySchema) -> [UInt8] {
        var members: [(String, JSON)] = [("partitionKey", .string(s.partitionKey)), ("partitionKeyType", .string(s.partitionKeyType))]
        if let sk = s.sortKey { members += [("sortKey", .string(sk)), ("sortKeyType", .string(s.sortKeyType))] }
        return Array(JSON.object(members).serialized.utf8)
    }

    static func decodeSchema(_ bytes: [UInt8]) throws -> KeySchema {
        let j = try JSON.parse(bytes)
        guard let pk = j["partitionKey"]?.stringValue else { throw TandemError(.badRequest, "partitionKey (a string) is required") }
        let pkType = j["partitionKeyType"]?.stringValue ?? "S"
        let sk = j["sortKey"]?.stringValue
        let skType = j["sortKeyType"]?.stringValue ?? "S"
        for t in [pkType, skType] where !["S", "N", "B"].contains(t) {
            throw TandemError(.badRequest, "key types are S, N or B, not '\(t)'")
        }
        guard !pk.isEmpty, sk.map({ !$0.isEmpty && $0 != pk }) ?? true else {
            throw TandemError(.badRequest, "key attribute names must be non-empty and distinct")
        }
        return KeySchema(partitionKey: pk, sortKey: sk, partitionKeyType: pkType, sortKeyType: skType)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: HTTP

    /// Handles `/v1/tables…`; false if the path is not ours.
    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        let s = request.segments
        guard s.count >= 2, s[0] == "v1", s[1] == "tables" else { return false }
        do {
            switch (request.method, s.count) {
            case ("GET", 2): respond(listTables())
            case ("PUT", 3): try createTable(s[2], request.body, respond)
            case ("GET", 3): respond(try describe(try replica(s[2])))
            case ("DELETE", 3): try deleteTable(s[2], respond)
            case ("GET", 4) where s[3] == "items": respond(try query(try replica(s[2]), request.query))
            case (_, 5...6) where s[3] == "items": try item(request, table: s[2], keyParts: Array(s[4...]), respond)
            default: respond(.error(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)"))
            }
        } catch let e as TandemError {
            respond(.error(e))
        } catch {
            respond(.error(400, "bad_request", "\(error)"))
        }
        return true
    }

    private func replica(_ name: String) throws -> TableReplica {
        guard let r = replicas[name] else { throw TandemError(.notFound, "no table '\(name)'") }
        return r
    }

    private func json(_ status: Int, _ j: JSON) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(j.serialized.utf8) + [0x0A])
    }

    private func tableJSON(_ r: TableReplica) -> JSON {
        var members: [(String, JSON)] = [("name", .string(r.name)), ("partitionKey", .string(r.schema.partitionKey)),
                                         ("partitionKeyType", .string(r.schema.partitionKeyType))]
        if let sk = r.schema.sortKey { members += [("sortKey", .string(sk)), ("sortKeyType", .string(r.schema.sortKeyType))] }
        members.append(("items", .number(String(r.items.values.filter { $0.visible != nil }.count))))
        return .object(members)
    }

    private func listTables() -> HTTPResponse {
        json(200, .object([("tables", .array(replicas.keys.sorted().map { tableJSON(replicas[$0]!) }))]))
    }

    private func describe(_ r: TableReplica) -> HTTPResponse { json(200, tableJSON(r)) }

    private func createTable(_ name: String, _ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) throws {
        guard name.utf8.count >= 3, name.utf8.count <= 255,
              name.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || "_.-".unicodeScalars.contains($0) }) else {
            throw TandemError(.badRequest, "table names are 3 to 255 characters of letters, digits, '_', '.' and '-'")
        }
        let schema = try Tables.decodeSchema(body)
        if let existing = replicas[name] {
            guard existing.schema == schema else {
                throw TandemError(TandemError.Code("table_exists", httpStatus: 409), "table '\(name)' exists with another key schema")
            }
            respond(describe(existing))
            return
        }
        replicas[name] = TableReplica(name: name, schema: schema)
        committer.submit([(Tables.catalogPrefix + Array(name.utf8), Tables.encodeSchema(schema))]) { [weak self] error in
            guard let self else { return }
            if let error { return respond(.error(error)) }
            respond(self.json(201, self.tableJSON(self.replicas[name] ?? TableReplica(name: name, schema: schema))))
        }
    }

    private func deleteTable(_ name: String, _ respond: @escaping (HTTPResponse) -> Void) throws {
        let r = try replica(name)
        replicas[name] = nil
        var writes: [GroupCommitter.Write] = [(Tables.catalogPrefix + Array(name.utf8), nil)]
        for key in r.items.keys { writes.append((Tables.itemStorageKey(name, key), nil)) }
        committer.submit(writes) { error in
            respond(error.map { .error($0) } ?? .json(200, ["deleted": name]))
        }
    }

    // MARK: items

    private func item(_ request: HTTPRequest, table: String, keyParts: [String], _ respond: @escaping (HTTPResponse) -> Void) throws {
        let r = try replica(table)
        let schema = r.schema
        guard (keyParts.count == 2) == (schema.sortKey != nil) else {
            throw TandemError(.badRequest, schema.sortKey == nil
                ? "table '\(table)' has no sort key: use /items/{\(schema.partitionKey)}"
                : "table '\(table)' needs /items/{\(schema.partitionKey)}/{\(schema.sortKey!)}")
        }
        guard let pk = KeySchema.keyValue(keyParts[0], type: schema.partitionKeyType) else {
            throw TandemError(.badRequest, "'\(keyParts[0])' is not a valid \(schema.partitionKeyType) key")
        }
        var sk: KeyValue?
        if keyParts.count == 2 {
            guard let v = KeySchema.keyValue(keyParts[1], type: schema.sortKeyType) else {
                throw TandemError(.badRequest, "'\(keyParts[1])' is not a valid \(schema.sortKeyType) key")
            }
            sk = v
        }
        let key = ItemKey(partition: pk, sort: sk)
        var state = r.state(key) ?? ItemState()
        let t = clock.now(wallMs: Tables.wallMs())
        let delta: ItemState
        switch request.method {
        case "GET":
            guard let visible = state.visible else { throw TandemError(.notFound, "no item \(keyDescription(key)) in '\(table)'") }
            return respond(json(200, .object([("item", PlainJSON.json(visible))])))
        case "PUT":
            var values = try itemObject(request.body)
            values[schema.partitionKey] = values[schema.partitionKey] ?? pk.attributeValue
            if let skName = schema.sortKey, let sk { values[skName] = values[skName] ?? sk.attributeValue }
            guard try schema.key(of: values) == key else {
                throw TandemError(.badRequest, "the item's key attributes do not match the URL")
            }
            delta = state.put(values, at: t)
        case "DELETE":
            delta = state.delete(at: t)
        case "PATCH":
            delta = try patch(&state, request.body, schema: schema, at: t)
        default:
            throw TandemError(.methodNotAllowed, "\(request.method) is not allowed on an item")
        }
        replicas[table]!.merge(key, delta)
        guard let encoded = replicas[table]!.encodedState(key), encoded.count <= Tables.maxItemBytes + 4096 else {
            throw TandemError(.tooLarge, "item exceeds \(Tables.maxItemBytes) bytes")
        }
        committer.submit([(Tables.itemStorageKey(table, key), encoded)]) { [weak self] error in
            guard let self else { return }
            if let error { return respond(.error(error)) }
            let visible = self.replicas[table]?.state(key)?.visible
            respond(self.json(200, .object([("item", visible.map { PlainJSON.json($0) } ?? .null)])))
        }
    }

    private func keyDescription(_ k: ItemKey) -> String { k.sort.map { "\(k.partition)/\($0)" } ?? "\(k.partition)" }

    private func itemObject(_ body: [UInt8]) throws -> [String: AttributeValue] {
        guard body.count <= Tables.maxItemBytes else { throw TandemError(.tooLarge, "item exceeds \(Tables.maxItemBytes) bytes") }
        guard case .map(let m) = try PlainJSON.value(try JSON.parse(body)) else {
            throw TandemError(.badRequest, "an item is a JSON object")
        }
        return m
    }

    /// `{"set":{...},"remove":[...],"add":{"n":1},"addToSet":{...},"removeFromSet":{...}}`
    private func patch(_ state: inout ItemState, _ body: [UInt8], schema: KeySchema, at t: HLC) throws -> ItemState {
        let j = try JSON.parse(body)
        guard case .object(let members) = j else { throw TandemError(.badRequest, "a patch is a JSON object") }
        var delta = ItemState()
        let keyNames = [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? [])
        func object(_ v: JSON, _ op: String) throws -> [(String, JSON)] {
            guard case .object(let m) = v else { throw TandemError(.badRequest, "'\(op)' takes an object") }
            for (name, _) in m where keyNames.contains(name) { throw TandemError(.badRequest, "'\(op)' cannot change key attribute '\(name)'") }
            return m
        }
        func elements(_ v: JSON, _ name: String) throws -> Set<SetElement> {
            guard case .array(let items) = v, !items.isEmpty else { throw TandemError(.badRequest, "'\(name)': give a non-empty array") }
            var out = Set<SetElement>()
            for item in items {
                switch try PlainJSON.value(item) {
                case .string(let s): out.insert(.string(s))
                case .number(let n): out.insert(.number(n))
                case .binary(let b): out.insert(.binary(b))
                default: throw TandemError(.badRequest, "'\(name)': set elements are strings, numbers or {\"$B\":…}")
                }
            }
            guard Set(out.map(\.rank)).count == 1 else { throw TandemError(.badRequest, "'\(name)': one set holds one type") }
            return out
        }
        for (op, value) in members {
            switch op {
            case "set":
                for (name, v) in try object(value, op) { delta.merge(state.set(name, try PlainJSON.value(v, path: name), at: t)) }
            case "remove":
                guard case .array(let names) = value else { throw TandemError(.badRequest, "'remove' takes an array of names") }
                for n in names {
                    guard let name = n.stringValue, !keyNames.contains(name) else {
                        throw TandemError(.badRequest, "'remove' takes names of non-key attributes")
                    }
                    delta.merge(state.remove(name, at: t))
                }
            case "add":
                for (name, v) in try object(value, op) {
                    guard case .number(let text) = v, let n = DecimalNumber(text) else {
                        throw TandemError(.badRequest, "'add.\(name)' takes a number")
                    }
                    guard let d = state.add(name, n, at: t) else {
                        throw TandemError(.badRequest, "'\(name)' is not a number, or the sum leaves DynamoDB's range")
                    }
                    delta.merge(d)
                }
            case "addToSet":
                for (name, v) in try object(value, op) {
                    guard let d = state.addToSet(name, try elements(v, name), at: t) else {
                        throw TandemError(.badRequest, "'\(name)' holds a value that is not a set")
                    }
                    delta.merge(d)
                }
            case "removeFromSet":
                for (name, v) in try object(value, op) {
                    guard let d = state.removeFromSet(name, try elements(v, name), at: t) else {
                        throw TandemError(.badRequest, "'\(name)' holds a value that is not a set")
                    }
                    delta.merge(d)
                }
            default:
                throw TandemError(.badRequest, "unknown patch operation '\(op)': use set, remove, add, addToSet, removeFromSet")
            }
        }
        return delta
    }

    // MARK: query and scan

    private func query(_ r: TableReplica, _ q: [String: String]) throws -> HTTPResponse {
        let limit = Int(q["limit"] ?? "100") ?? -1
        guard (1...1000).contains(limit) else { throw TandemError(.badRequest, "limit must be 1 to 1000") }
        var after: ItemKey?
        if let cursor = q["after"] {
            guard let bytes = Base64.decode(cursor), let k = try? ItemKey(bytes: bytes) else {
                throw TandemError(.badRequest, "'after' is not a cursor this API returned")
            }
            after = k
        }
        let page: (items: [(ItemKey, [String: AttributeValue])], more: Bool)
        if let pkText = q["pk"] {
            guard let pk = KeySchema.keyValue(pkText, type: r.schema.partitionKeyType) else {
                throw TandemError(.badRequest, "pk '\(pkText)' is not a valid \(r.schema.partitionKeyType) key")
            }
            let type = r.schema.sortKeyType
            func bound(_ name: String) throws -> KeyValue? {
                guard let t = q[name] else { return nil }
                guard let v = KeySchema.keyValue(t, type: type) else { throw TandemError(.badRequest, "\(name) '\(t)' is not a valid \(type) key") }
                return v
            }
            let from = try bound("skFrom"), to = try bound("skTo")
            let prefix = q["skBegins"]
            page = r.query(partition: pk, where: { sk in
                guard let sk else { return from == nil && to == nil && prefix == nil }
                if let from, sk < from { return false }
                if let to, to < sk { return false }
                if let prefix {
                    guard case .string(let s) = sk, s.hasPrefix(prefix) else { return false }
                }
                return true
            }, after: after, limit: limit)
        } else {
            guard q["skBegins"] == nil, q["skFrom"] == nil, q["skTo"] == nil else {
                throw TandemError(.badRequest, "sort-key conditions need pk")
            }
            page = r.scan(after: after, limit: limit)
        }
        var members: [(String, JSON)] = [("items", .array(page.items.map { PlainJSON.json($0.1) }))]
        if page.more, let last = page.items.last { members.append(("next", .string(Base64.encode(last.0.bytes)))) }
        return json(200, .object(members))
    }
}
