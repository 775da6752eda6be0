import CSodium
import Foundation
import TandemCore
import Transport

/// Bearer tokens for the client API (`--api-tokens FILE`, one `TOKEN ROLE [ACCESS_KEY_ID]` per line).
///
/// Tokens are kept only as BLAKE2b hashes and compared with `sodium_memcmp` against every
/// entry, so neither the time taken nor an early exit tells a client how much of a guess was
/// right, and the length of a guess leaks nothing either. Tokens are never logged.
///
/// A line that names an access key id also lets AWS SDKs in (SigV4, `AWSAuth.swift`) with that
/// id and the token as secret access key. Verifying an HMAC needs the secret itself, so those
/// tokens are kept in memory as well as hashed; lines without an id keep only the hash.
public struct APITokens {
    public enum Role: Int, Comparable, CustomStringConvertible, Sendable {
        case read = 1, write, admin
        public static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }
        public var description: String { ["", "read", "write", "admin"][rawValue] }
        init?(_ name: String) {
            switch name {
            case "read": self = .read
            case "write": self = .write
            case "admin": self = .admin
            default: return nil
            }
        }
    }

    private var entries: [(hash: [UInt8], role: Role)] = []
    /// Access key id → secret access key and role, for SigV4.
    private var accessKeys: [String: (secret: [UInt8], role: Role)] = [:]
    public var count: Int { entries.count }

    public init(_ text: String) throws {
        Keyring.initSodium()
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            let parts = t.split(whereSeparator: \.isWhitespace)
            // The line number, never the token, goes into the error.
            guard parts.count == 2 || parts.count == 3, let role = Role(String(parts[1])) else {
                throw TandemError(
                    .invalidArgument, "api tokens line \(n + 1): expected 'TOKEN ROLE [ACCESS_KEY_ID]' with ROLE read, write or admin")
            }
            guard parts[0].utf8.count >= 16 else {
                throw TandemError(.invalidArgument, "api tokens line \(n + 1): a token must be at least 16 characters")
            }
            if parts.count == 3 {
                // The id goes into SigV4's credential scope (`ID/DATE/REGION/SERVICE/…`): no '/'.
                let id = String(parts[2])
                guard (1...128).contains(id.utf8.count),
                    id.utf8.allSatisfy({ $0 < 128 && (isalnum(Int32($0)) != 0 || "._-".utf8.contains($0)) })
                else {
                    throw TandemError(
                        .invalidArgument, "api tokens line \(n + 1): an access key id is 1 to 128 letters, digits, '.', '_' or '-'")
                }
                guard accessKeys[id] == nil else {
                    throw TandemError(.invalidArgument, "api tokens line \(n + 1): access key id \(id) appears twice")
                }
                accessKeys[id] = (Array(parts[0].utf8), role)
            }
            entries.append((APITokens.hash(String(parts[0])), role))
        }
        guard !entries.isEmpty else { throw TandemError(.invalidArgument, "the api tokens file holds no token") }
    }

    public static func load(path: String) throws -> APITokens {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TandemError(.invalidArgument, "cannot read api tokens file \(path)")
        }
        return try APITokens(text)
    }

    static func hash(_ token: String) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 32)
        let bytes = Array(token.utf8)
        crypto_generichash(&h, h.count, bytes, UInt64(bytes.count), nil, 0)
        return h
    }

    /// The role of a presented token, checking every entry (no early exit).
    public func role(of token: String) -> Role? {
        let presented = APITokens.hash(token)
        var found: Role?
        for e in entries where sodium_memcmp(e.hash, presented, 32) == 0 {
            found = max(found ?? e.role, e.role)
        }
        return found
    }

    /// The secret access key and role of an access key id (ids are not secret: AWS too says
    /// whether one exists).
    public func accessKey(_ id: String) -> (secret: [UInt8], role: Role)? { accessKeys[id] }

    /// The role a request needs; nil means open to all. The one table of who may do what:
    /// reads need `read`, changes to data `write`, and changes to the cluster's shape, keys and
    /// fault injection `admin`.
    public static func requiredRole(method: String, segments s: [String]) -> Role? {
        if s == ["v1", "health"] { return nil }
        let reading = method == "GET" || method == "HEAD"
        if s.count >= 2 && s[0] == "v1" {
            switch s[1] {
            case "keys", "chaos":
                return .admin
            case "tables" where s.count == 3 && !reading, "streams" where s.count == 3 && !reading:
                return .admin  // create or delete a table or stream
            case "split" where !reading, "edges" where !reading, "regions" where !reading:
                return .admin  // routing shares, edges, drain, capacity
            default: break
            }
        }
        return reading ? .read : .write
    }

    /// nil if the request may go ahead, else the 401 or 403 to answer with.
    public func check(_ request: HTTPRequest) -> HTTPResponse? {
        guard let needed = APITokens.requiredRole(method: request.method, segments: request.segments) else { return nil }
        guard let header = request.header("Authorization"), header.count > 7,
            header.prefix(7).lowercased() == "bearer "
        else {
            var r = HTTPResponse.error(401, "unauthorized", "this API needs 'Authorization: Bearer TOKEN'")
            r.headers.append(("WWW-Authenticate", "Bearer"))
            return r
        }
        guard let role = role(of: String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)) else {
            var r = HTTPResponse.error(401, "unauthorized", "unknown token")
            r.headers.append(("WWW-Authenticate", "Bearer error=\"invalid_token\""))
            return r
        }
        guard role >= needed else {
            return .error(403, "forbidden", "\(request.method) \(request.path) needs the \(needed) role; this token has \(role)")
        }
        return nil
    }
}
