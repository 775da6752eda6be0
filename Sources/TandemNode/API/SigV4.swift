import CSodium
import Foundation
import Storage
import Transport

/// AWS Signature Version 4, the way AWS SDKs sign requests, for verifying them: the canonical
/// request, the string to sign, the signing key derived from the secret and the credential scope.
/// The steps follow AWS's published algorithm and are checked against its test suite
/// (`SigV4Tests`). Hashing and HMAC are libsodium's.
public enum SigV4 {
    public static let algorithm = "AWS4-HMAC-SHA256"

    /// The fields of `Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request,
    /// SignedHeaders=a;b, Signature=hex`.
    public struct Authorization: Equatable {
        public var accessKeyID: String
        public var date: String
        public var region: String
        public var service: String
        public var signedHeaders: [String]
        public var signature: String

        public var scope: String { "\(date)/\(region)/\(service)/aws4_request" }

        /// nil if the header is not a complete SigV4 authorization.
        public init?(header: String) {
            guard header.hasPrefix(SigV4.algorithm + " ") else { return nil }
            var fields: [String: String] = [:]
            for part in header.dropFirst(SigV4.algorithm.count + 1).split(separator: ",") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { return nil }
                fields[String(kv[0])] = String(kv[1])
            }
            guard let credential = fields["Credential"], let signed = fields["SignedHeaders"], let signature = fields["Signature"] else {
                return nil
            }
            // The access key id may not hold a '/', so the scope is the last four parts.
            let c = credential.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard c.count == 5, c[4] == "aws4_request", !c[0].isEmpty else { return nil }
            accessKeyID = c[0]
            date = c[1]
            region = c[2]
            service = c[3]
            signedHeaders = signed.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
            self.signature = signature
            guard !signedHeaders.contains("") else { return nil }
        }
    }

    // MARK: the canonical request

    /// `/a/./b/../c//` → `/a/c/`, each segment URI-encoded as received (an SDK's `%20` becomes
    /// `%2520`: AWS encodes paths twice for every service but S3).
    public static func canonicalURI(_ rawPath: String) -> String {
        var stack: [Substring] = []
        for segment in rawPath.split(separator: "/") {
            switch segment {
            case ".": continue
            case "..": _ = stack.popLast()
            default: stack.append(segment)
            }
        }
        var out = "/" + stack.map { encode(Array($0.utf8)) }.joined(separator: "/")
        if !stack.isEmpty, rawPath.hasSuffix("/") { out += "/" }
        return out
    }

    /// Parameters decoded, re-encoded, sorted by name then value, `a=1&b=` (a bare name gets `=`).
    public static func canonicalQuery(_ rawQuery: String) -> String {
        var pairs: [(String, String)] = []
        for p in rawQuery.split(separator: "&") {
            let kv = p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            pairs.append((encode(decode(kv[0])), kv.count > 1 ? encode(decode(kv[1])) : ""))
        }
        // Byte order of the encoded forms (ASCII), not the locale's.
        pairs.sort {
            Array($0.0.utf8).lexicographicallyPrecedes($1.0.utf8) || ($0.0 == $1.0 && Array($0.1.utf8).lexicographicallyPrecedes($1.1.utf8))
        }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// The signed headers' lines: every value of a name (in request order) trimmed, inner runs of
    /// spaces collapsed, joined by commas.
    public static func canonicalHeaders(_ headers: [(name: String, value: String)], signed: [String]) -> String {
        var out = ""
        for name in signed {
            let values = headers.filter { $0.name.lowercased() == name }.map { v in
                v.value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            }
            out += "\(name):\(values.joined(separator: ","))\n"
        }
        return out
    }

    public static func canonicalRequest(
        method: String, rawPath: String, rawQuery: String, headers: [(name: String, value: String)],
        signedHeaders: [String], payload: [UInt8]
    ) -> String {
        [
            method, canonicalURI(rawPath), canonicalQuery(rawQuery), canonicalHeaders(headers, signed: signedHeaders),
            signedHeaders.joined(separator: ";"), hex(sha256(payload))
        ].joined(separator: "\n")
    }

    public static func stringToSign(amzDate: String, scope: String, canonicalRequest: String) -> String {
        [algorithm, amzDate, scope, hex(sha256(Array(canonicalRequest.utf8)))].joined(separator: "\n")
    }

    /// HMAC chain from `"AWS4" + secret` over date, region, service and `aws4_request`.
    public static func signingKey(secret: [UInt8], date: String, region: String, service: String) -> [UInt8] {
        var key = Array("AWS4".utf8) + secret
        for part in [date, region, service, "aws4_request"] { key = hmac(key, Array(part.utf8)) }
        return key
    }

    /// The signature (32 bytes) of a request as `auth` describes it.
    public static func signature(
        secret: [UInt8], auth: Authorization, amzDate: String, method: String, rawPath: String,
        rawQuery: String, headers: [(name: String, value: String)], payload: [UInt8]
    ) -> [UInt8] {
        let request = canonicalRequest(
            method: method, rawPath: rawPath, rawQuery: rawQuery, headers: headers,
            signedHeaders: auth.signedHeaders, payload: payload)
        let text = stringToSign(amzDate: amzDate, scope: auth.scope, canonicalRequest: request)
        return hmac(signingKey(secret: secret, date: auth.date, region: auth.region, service: auth.service), Array(text.utf8))
    }

    // MARK: dates

    /// `20150830T123600Z` → milliseconds since the epoch (UTC); nil unless exactly that shape.
    public static func epochMs(amzDate s: String) -> Int64? {
        let b = Array(s.utf8)
        guard b.count == 16, b[8] == UInt8(ascii: "T"), b[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ r: Range<Int>) -> Int? {
            var n = 0
            for i in r {
                guard (48...57).contains(b[i]) else { return nil }
                n = n * 10 + Int(b[i] - 48)
            }
            return n
        }
        guard let y = number(0..<4), let m = number(4..<6), let d = number(6..<8), let hh = number(9..<11),
            let mm = number(11..<13), let ss = number(13..<15), (1...12).contains(m), (1...31).contains(d), hh < 24, mm < 60, ss < 61
        else { return nil }
        // Days from civil (Howard Hinnant's algorithm): no calendar or locale involved.
        let yy = m <= 2 ? y - 1 : y
        let era = yy / 400
        let yoe = yy - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Int64(((days * 24 + hh) * 60 + mm) * 60 + ss) * 1000
    }

    // MARK: primitives

    /// HMAC-SHA256 with a key of any length (the first key of the chain is not 32 bytes).
    public static func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var state = crypto_auth_hmacsha256_state()
        var out = [UInt8](repeating: 0, count: 32)
        crypto_auth_hmacsha256_init(&state, key, key.count)
        crypto_auth_hmacsha256_update(&state, data, UInt64(data.count))
        crypto_auth_hmacsha256_final(&state, &out)
        return out
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Lowercase or uppercase hex → bytes; nil if not hex.
    public static func unhex(_ s: String) -> [UInt8]? {
        let b = Array(s.utf8)
        guard b.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(b.count / 2)
        for i in stride(from: 0, to: b.count, by: 2) {
            guard let hi = nibble(b[i]), let lo = nibble(b[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }

    /// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, every other byte `%XX`.
    static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for c in bytes {
            switch c {
            case 65...90, 97...122, 48...57, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(c)
            default:
                out += [UInt8(ascii: "%"), digits[Int(c >> 4)], digits[Int(c & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `%XX` → byte; anything else (a `+` included) as is.
    static func decode(_ s: Substring) -> [UInt8] {
        let b = Array(s.utf8)
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let v = unhex(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self)) {
                out.append(v[0])
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }
}
