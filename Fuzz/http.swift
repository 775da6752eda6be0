// libFuzzer harness: the HTTP request path without sockets: HTTPRequestParser (C http-parser,
// our limits, target splitting and percent decoding), then what every request meets before an
// endpoint (path segments, header lookup, the bearer-token check). The input picks two points
// at which it is cut into three reads, as TCP would deliver it, and runs under the default
// limits and under small ones (so every limit is reachable in a short input). Built by
// scripts/fuzz (with Fuzz/http.dict).
import TandemCore
@testable import Transport

nonisolated(unsafe) let tokens = try! APITokens("0123456789abcdef-read read\n0123456789abcdef-admin admin\n")
let small: HTTPLimits = {
    var l = HTTPLimits()
    l.maxURLBytes = 64
    l.maxHeaderBytes = 256
    l.maxHeaders = 4
    l.maxBodyBytes = 128
    l.maxPipelined = 3
    return l
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 2, count: size - 2))
    let cuts = [Int(data[0]) % (bytes.count + 1), Int(data[1]) % (bytes.count + 1)].sorted()
    let chunks = [bytes[..<cuts[0]], bytes[cuts[0]..<cuts[1]], bytes[cuts[1]...]]
    for limits in [HTTPLimits(), small] {
        let parser = HTTPRequestParser(limits: limits)
        var requests = 0
        var lastWasFinal = false
        parser.onRequest = { request, keepAlive in
            precondition(!lastWasFinal, "a request parsed after Connection: close")
            requests += 1
            lastWasFinal = !keepAlive
            precondition(request.body.count <= limits.maxBodyBytes, "body over the limit")
            precondition(request.headers.count <= limits.maxHeaders, "headers over the limit")
            _ = request.segments
            _ = request.header("Authorization")
            _ = request.header("X-Amz-Target")
            if let denial = tokens.check(request) { precondition(denial.status == 401 || denial.status == 403) }
            _ = APITokens.requiredRole(method: request.method, segments: request.segments)
            return requests < limits.maxPipelined  // a connection stops reading there
        }
        for chunk in chunks {
            guard let error = Array(chunk).withUnsafeBytes({ parser.feed($0) }) else { continue }
            precondition((400..<500).contains(error.status), "a parse error answered \(error.status)")
            _ = error.encode(keepAlive: false)
            break  // the connection ends with its error
        }
    }
    return 0
}
