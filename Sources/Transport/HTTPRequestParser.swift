import CHTTPParser
import Foundation
import TandemCore

/// The parser's callbacks find their parser through `parser->data`.
/// Written once at first use and only read after, from any loop thread.
nonisolated(unsafe) private let parserSettings: UnsafeMutablePointer<http_parser_settings> = {
    let s = UnsafeMutablePointer<http_parser_settings>.allocate(capacity: 1)
    http_parser_settings_init(s)
    s.pointee.on_message_begin = { p in HTTPRequestParser.from(p).beginMessage() }
    s.pointee.on_url = { p, at, n in HTTPRequestParser.from(p).url(at, n) }
    s.pointee.on_header_field = { p, at, n in HTTPRequestParser.from(p).headerField(at, n) }
    s.pointee.on_header_value = { p, at, n in HTTPRequestParser.from(p).headerValue(at, n) }
    s.pointee.on_headers_complete = { p in HTTPRequestParser.from(p).headersComplete() }
    s.pointee.on_body = { p, at, n in HTTPRequestParser.from(p).body(at, n) }
    s.pointee.on_message_complete = { p in HTTPRequestParser.from(p).messageComplete() }
    return s
}()

/// The request side of one HTTP/1.1 connection without its socket: bytes in (C http-parser
/// plus our limits), requests out, or the JSON error that ends the connection. `HTTPConnection`
/// feeds it from the network; the fuzzer (`Fuzz/http.swift`) feeds it directly.
final class HTTPRequestParser {
    enum Phase { case headers, body, complete }

    let limits: HTTPLimits
    /// A request started (its header deadline starts), its headers are complete (the body
    /// deadline starts), or it is complete.
    var onPhase: (Phase) -> Void = { _ in }
    /// A complete request and whether the connection stays open after it; return false to
    /// stop reading at once (the caller drops the connection).
    var onRequest: (HTTPRequest, _ keepAlive: Bool) -> Bool = { _, _ in true }

    private let parser: UnsafeMutablePointer<http_parser>
    private var url: [UInt8] = []
    private var headers: [(name: String, value: String)] = []
    private var field: [UInt8] = []
    private var value: [UInt8] = []
    private var inValue = false
    private var headerBytes = 0
    private var bodyBytes: [UInt8] = []
    /// Set by a callback that rejects the request; answered once parsing stops.
    private var rejection: HTTPResponse?
    /// A `Connection: close` request was read: nothing after it is.
    private(set) var finished = false

    init(limits: HTTPLimits) {
        self.limits = limits
        parser = .allocate(capacity: 1)
        http_parser_init(parser, HTTP_REQUEST)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { parser.deallocate() }

    static func from(_ p: UnsafeMutablePointer<http_parser>?) -> HTTPRequestParser {
        Unmanaged<HTTPRequestParser>.fromOpaque(p!.pointee.data).takeUnretainedValue()
    }

    /// Parses `bytes`, calling `onRequest` for each complete request. Returns the error to
    /// answer when the input is malformed or over a limit; the connection ends after it.
    func feed(_ bytes: UnsafeRawBufferPointer) -> HTTPResponse? {
        guard !finished else { return nil }
        let parsed = http_parser_execute(parser, parserSettings, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        let errno = parser.pointee.http_errno
        if finished && rejection == nil { return nil }  // paused after a last request: not an error
        guard rejection != nil || errno != HPE_OK.rawValue || parsed != bytes.count else { return nil }
        let response =
            rejection
            ?? HTTPResponse.error(
                400, "malformed_request",
                "could not parse HTTP request: \(String(cString: http_errno_description(http_errno(rawValue: errno))))")
        rejection = nil
        return response
    }

    // MARK: parser callbacks (return non-zero to stop parsing)

    func beginMessage() -> Int32 {
        url.removeAll(keepingCapacity: true)
        headers.removeAll(keepingCapacity: true)
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        inValue = false
        headerBytes = 0
        bodyBytes.removeAll()
        onPhase(.headers)
        return 0
    }

    func url(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        guard url.count + n <= limits.maxURLBytes else {
            return reject(.error(414, "uri_too_long", "request target exceeds \(limits.maxURLBytes) bytes"))
        }
        url.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
        return 0
    }

    func headerField(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        if inValue { finishHeader() }
        guard addHeaderBytes(n) else { return 0 }
        field.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
        return 0
    }

    func headerValue(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        inValue = true
        guard addHeaderBytes(n) else { return 0 }
        value.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
        return 0
    }

    private func addHeaderBytes(_ n: Int) -> Bool {
        headerBytes += n
        if headerBytes > limits.maxHeaderBytes || headers.count >= limits.maxHeaders {
            _ = reject(
                .error(
                    431, "headers_too_large",
                    "headers exceed \(limits.maxHeaderBytes) bytes or \(limits.maxHeaders) fields"))
            return false
        }
        return true
    }

    private func finishHeader() {
        headers.append((String(decoding: field, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        inValue = false
    }

    /// Refuses a declared body that is too large before any of it is read.
    func headersComplete() -> Int32 {
        let declared = parser.pointee.content_length
        if declared != UInt64.max && declared > UInt64(limits.maxBodyBytes) {
            return reject(.error(413, "body_too_large", "request body of \(declared) bytes exceeds \(limits.maxBodyBytes)"))
        }
        onPhase(.body)
        return 0
    }

    func body(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        guard bodyBytes.count + n <= limits.maxBodyBytes else {
            return reject(.error(413, "body_too_large", "request body exceeds \(limits.maxBodyBytes) bytes"))
        }
        bodyBytes.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
        return 0
    }

    func messageComplete() -> Int32 {
        onPhase(.complete)
        if inValue { finishHeader() }
        let method = String(cString: http_method_str(http_method(rawValue: parser.pointee.method)))
        let keepAlive = http_should_keep_alive(parser) != 0
        let target = String(decoding: url, as: UTF8.self)
        let (path, query) = HTTPRequestParser.splitTarget(target)
        let request = HTTPRequest(method: method, path: path, query: query, headers: headers, body: bodyBytes)
        if !keepAlive { finished = true }
        if !onRequest(request, keepAlive) || !keepAlive {
            http_parser_pause(parser, 1)
        }
        return 0
    }

    /// Stops the parser (pausing works from every callback; a non-zero return from
    /// on_headers_complete would mean "skip the body" instead).
    private func reject(_ response: HTTPResponse) -> Int32 {
        if rejection == nil { rejection = response }
        http_parser_pause(parser, 1)
        return 0
    }

    static func splitTarget(_ target: String) -> (String, [String: String]) {
        // On UTF-8 code units: Character-wise search cost ~10k instructions per request.
        guard let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (target, [:]) }
        var query: [String: String] = [:]
        for pair in target[target.index(after: q)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[decodeComponent(parts[0])] = parts.count > 1 ? decodeComponent(parts[1]) : ""
        }
        return (String(target[..<q]), query)
    }

    /// `+` is a space and `%XX` a byte; most components have neither and skip Foundation.
    static func decodeComponent(_ s: Substring) -> String {
        guard s.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else { return String(s) }
        return String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
    }
}
