import Foundation
import TandemCore

public struct HTTPRequest {
    public var method: String
    /// The path without its query, percent-decoded per segment later by the router.
    public var path: String
    public var query: [String: String]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// Path segments, percent-decoded (`/v1/tables/a%2Fb` → `["v1", "tables", "a/b"]`).
    /// (Foundation's decoding only for segments that hold a `%`: on the put path it cost the
    /// leader about an eighth of its CPU, every router asking once per request.)
    public var segments: [String] {
        path.split(separator: "/").map { $0.utf8.contains(UInt8(ascii: "%")) ? ($0.removingPercentEncoding ?? String($0)) : String($0) }
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

    /// A JSON response from any JSONSerialization-compatible value.
    public static func json(_ status: Int, _ object: Any) -> HTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return HTTPResponse(status: status, body: Array(data) + [0x0A])
    }

    /// The one error shape of the API: `{"error": code, "message": text}`.
    public static func error(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        json(status, ["error": code, "message": message])
    }

    public static func error(_ e: TandemError) -> HTTPResponse {
        error(e.code.httpStatus, e.code.name, e.message)
    }

    func encode(keepAlive: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(HTTPResponse.reason(status))\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body.count)\r\n"
        head += keepAlive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
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
