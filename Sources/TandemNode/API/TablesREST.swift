import Foundation
import GlobalTable
import TandemCore
import Transport

/// The tables endpoints: `GET /v1/tables`, `PUT|GET|DELETE /v1/tables/{t}`, `GET
/// /v1/tables/{t}/items` (query and scan) and `GET|PUT|PATCH|DELETE
/// /v1/tables/{t}/items/{pk}[/{sk}]`. Writes go through `Tables.commit` and `changeTable`,
/// answered once durable.
extension Tables {
    /// Handles `/v1/tables…`; false if the path is not ours.
    func route(_ request: HTTPRequest, _ respond: @escaping (HTTPResponse) -> Void) -> Bool {
        let s = request.segments
        guard s.count >= 2, s[0] == "v1", s[1] == "tables" else { return false }
        do {
            // Names starting with '_' are the node's own (`_routing`, `_streams`, `_checkpoints`):
            // clients may only read them (the node writes them through `Tables.put`/`commit`).
            if s.count >= 3, s[2].hasPrefix("_"), request.method != "GET" {
                throw TandemError(TandemError.Code("reserved_table", httpStatus: 403), "table '\(s[2])' is reserved; use its own API")
            }
            // Writes wait for the group commit; past the bound the disk is behind, and a client
            // is told to come back rather than queue without limit (reads go on).
            if request.method != "GET", overloaded {
                respond(.error(503, "overloaded", "\(queuedWrites) writes are waiting for disk; retry shortly"))
                return true
            }
            switch (request.method, s.count) {
            case ("GET", 2): respond(listTables())
            case ("PUT", 3): try createTable(s[2], request.body, respond)
            case ("GET", 3): respond(describe(try replica(s[2])))
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

    /// A table's key schema from a `PUT /v1/tables/{name}` body.
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

    private func replica(_ name: String) throws -> TableReplica {
        guard let r = replicas[name] else { throw TandemError(.notFound, "no table '\(name)'") }
        return r
    }

    private func json(_ status: Int, _ j: JSON) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(j.serialized.utf8) + [0x0A])
    }

    private func tableJSON(_ r: TableReplica) -> JSON {
        var members: [(String, JSON)] = [
            ("name", .string(r.name)), ("partitionKey", .string(r.schema.partitionKey)),
            ("partitionKeyType", .string(r.schema.partitionKeyType))
        ]
        if let sk = r.schema.sortKey { members += [("sortKey", .string(sk)), ("sortKeyType", .string(r.schema.sortKeyType))] }
        // Items stored (a deleted one until its tombstone is collected), from the summary.
        members.append(("items", .number(String(r.summary.items))))
        // Equal roots on two nodes mean equal replicas (anti-entropy's view of the table).
        members.append(("digest", .string(String(r.digest.root, radix: 16))))
        return .object(members)
    }

    private func listTables() -> HTTPResponse {
        json(200, .object([("tables", .array(replicas.keys.sorted().map { tableJSON(replicas[$0]!) }))]))
    }

    private func describe(_ r: TableReplica) -> HTTPResponse { json(200, tableJSON(r)) }

    private func createTable(_ name: String, _ body: [UInt8], _ respond: @escaping (HTTPResponse) -> Void) throws {
        guard !name.hasPrefix("_") else { throw TandemError(.badRequest, "table names starting with '_' are reserved") }
        guard name.utf8.count >= 3, name.utf8.count <= 255,
            name.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || "_.-".unicodeScalars.contains($0) })
        else {
            throw TandemError(.badRequest, "table names are 3 to 255 characters of letters, digits, '_', '.' and '-'")
        }
        let schema = try Tables.decodeSchema(body)
        guard replicas[name]?.schema != schema else { return respond(describe(try replica(name))) }
        try changeTable(name, schema: schema) { [weak self] error in
            guard let self else { return }
            if let error { return respond(.error(error)) }
            respond(
                self.json(
                    201,
                    self.tableJSON(
                        self.replicas[name]
                            ?? TableReplica(new: name, schema: schema, at: HLC.zero, store: self.itemStore, cache: self.core.cache))
                ))
        }
    }

    private func deleteTable(_ name: String, _ respond: @escaping (HTTPResponse) -> Void) throws {
        guard !name.hasPrefix("_") else { throw TandemError(.badRequest, "table names starting with '_' are reserved") }
        try changeTable(name, schema: nil) { error in
            respond(error.map { .error($0) } ?? .json(200, ["deleted": JSON(name)]))
        }
    }

    // MARK: items

    private func item(_ request: HTTPRequest, table: String, keyParts: [String], _ respond: @escaping (HTTPResponse) -> Void) throws {
        // Only the schema and the one item are copied out: holding a copy of the replica while
        // writing to it would copy all its items (copy-on-write) on every write.
        let schema = try replica(table).schema
        guard (keyParts.count == 2) == (schema.sortKey != nil) else {
            throw TandemError(
                .badRequest,
                schema.sortKey == nil
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
        var state = try replicas[table]!.state(key) ?? ItemState()
        let t = core.now(wallMs: Tables.wallMs())
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
        guard ItemCodec.encode(state).count <= Tables.maxItemBytes + 4096 else {
            throw TandemError(.tooLarge, "item exceeds \(Tables.maxItemBytes) bytes")
        }
        commit([(table, key, delta)]) { [weak self] error in
            guard let self else { return }
            if let error { return respond(.error(error)) }
            let visible = (try? self.replicas[table]?.state(key))??.visible
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

    /// The PATCH body, parsed and applied by `ItemPatch` (nested paths, escapes, key checks).
    private func patch(_ state: inout ItemState, _ body: [UInt8], schema: KeySchema, at t: HLC) throws -> ItemState {
        let keyNames = [schema.partitionKey] + (schema.sortKey.map { [$0] } ?? [])
        return try ItemPatch.apply(try JSON.parse(body), to: &state, keyNames: keyNames, at: t)
    }

    // MARK: query and scan

    private func query(_ r: TableReplica, _ q: [String: String]) throws -> HTTPResponse {
        let limit = Int(q["limit"] ?? "100") ?? -1
        guard (1...1000).contains(limit) else { throw TandemError(.badRequest, "limit must be 1 to 1000") }
        var after: ItemKey?
        if let cursor = q["after"] {
            // URL-safe alphabet, so a cursor needs no escaping in a query string.
            let standard = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            guard let bytes = Base64.decode(standard), let k = try? ItemKey(bytes: bytes) else {
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
                guard let v = KeySchema.keyValue(t, type: type) else {
                    throw TandemError(.badRequest, "\(name) '\(t)' is not a valid \(type) key")
                }
                return v
            }
            let from = try bound("skFrom"), to = try bound("skTo")
            let prefix = q["skBegins"]
            page = try r.query(
                partition: pk,
                where: { sk in
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
            page = try r.scan(after: after, limit: limit)
        }
        var members: [(String, JSON)] = [("items", .array(page.items.map { PlainJSON.json($0.1) }))]
        if page.more, let last = page.items.last {
            let cursor = Base64.encode(last.0.bytes).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            members.append(("next", .string(cursor)))
        }
        return json(200, .object(members))
    }
}
