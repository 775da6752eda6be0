import Foundation
import TandemCore

public struct HTTPRequest {
    public let method: String
    /// The path without its query.
    public let path: String
    /// Path segments, percent-decoded (`/v1/tables/a%2Fb` → `["v1", "tables", "a/b"]`), split
    /// once here: every router looks at them.
    public let segments: [String]
    public var query: [String: String]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The query as sent, still encoded (SigV4 signs it in that form).
    public var rawQuery: String

    public init(
        method: String, path: String, query: [String: String], headers: [(name: String, value: String)], body: [UInt8],
        rawQuery: String = ""
    ) {
        self.method = method
        self.path = path
        // Foundation's decoding only for segments that hold a `%` (it is slow).
        segments = path.utf8.split(separator: UInt8(ascii: "/")).map {
            $0.contains(UInt8(ascii: "%"))
                ? (String(Substring($0)).removingPercentEncoding ?? String(Substring($0))) : String(Substring($0))
        }
        self.query = query
        self.headers = headers
        self.body = body
        self.rawQuery = rawQuery
    }

    /// The first header of this name (ASCII case-insensitive, as HTTP field names are).
    public func header(_ name: String) -> String? {
        headers.first { HTTPRequest.sameField($0.name, name) }?.value
    }

    static func sameField(_ a: String, _ b: String) -> Bool {
        func lower(_ c: UInt8) -> UInt8 { c >= 65 && c <= 90 ? c | 0x20 : c }
        return a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { lower($0) == lower($1) }
    }
}

public struct HTTPResponse {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, contentType: String = "application/json", body: [UInt8]) {
        self.status = status
        self.headers = [("Content-Type", contentType)]
        self.body = body
    }

    /// A JSON answer and a newline. Objects built from dictionaries (`["a": …]`,
    /// `JSON([String: JSON])`) have their keys sorted, so an answer is the same on every run.
    public static func json(_ status: Int, _ body: JSON) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(body.serialized.utf8) + [0x0A])
    }

    /// The one error shape of the API: `{"error": code, "message": text}`.
    public static func error(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        json(status, ["error": JSON(code), "message": JSON(message)])
    }

    public static func error(_ e: TandemError) -> HTTPResponse {
        error(e.code.httpStatus, e.code.name, e.message)
    }

    /// Bytes appended straight into one buffer (String interpolation here was a visible share
    /// of a small answer's cost).
    func encode(keepAlive: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + body.count)
        func add(_ s: String) { out.append(contentsOf: s.utf8) }
        add("HTTP/1.1 ")
        add(String(status))
        add(" ")
        add(HTTPResponse.reason(status))
        add("\r\n")
        for (k, v) in headers {
            add(k)
            add(": ")
            add(v)
            add("\r\n")
        }
        add("Content-Length: ")
        add(String(body.count))
        add(keepAlive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
        out.append(contentsOf: body)
        return out
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// Limits on HTTP requests and connections (`HTTPServer.Limits`).
public struct HTTPLimits {
    public var maxURLBytes = 8 << 10
    public var maxHeaderBytes = 32 << 10
    public var maxHeaders = 100
    public var maxBodyBytes = 4 << 20
    public var maxConnections = 512
    /// Connections from one client IP: one client cannot take the whole pool (half of it
    /// leaves room for others while a load generator on one host still gets 256).
    public var maxConnectionsPerClient = 256
    /// From a request's first byte until its headers are complete, and then until its body
    /// is: a client trickling bytes (slow loris) is answered 408 and cut off, whatever its
    /// pace keeps the idle timer from doing.
    public var headerTimeout: Duration = .seconds(10)
    public var bodyTimeout: Duration = .seconds(30)
    /// Requests parsed but not yet answered on one connection (pipelining), and bytes of
    /// answers the client has not read: past either, the connection is closed.
    public var maxPipelined = 32
    public var maxUnreadResponseBytes = 4 << 20
    /// A connection with no traffic for this long is closed (also bounds slow requests).
    public var idleTimeout: Duration = .seconds(30)
    public init() {}
}
