import Foundation
import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

/// SigV4 verification: AWS's published test vectors (signature-v4-test-suite, credentials
/// AKIDEXAMPLE, 2015-08-30 12:36:00 UTC, us-east-1, service "service"), then the checks a node
/// makes on the AWS-compatible `POST /` when API tokens are on.
@Suite struct SigV4Tests {
    static let secret = Array("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".utf8)
    static let amzDate = "20150830T123600Z"

    /// Signs a suite request (`path?query`, headers besides Host and X-Amz-Date) and returns the hex signature.
    static func suiteSignature(
        _ method: String, _ target: String, _ extra: [(String, String)] = [], signed: [String]? = nil,
        body: String = ""
    ) -> String {
        let q = target.firstIndex(of: "?")
        let path = q.map { String(target[..<$0]) } ?? target
        let query = q.map { String(target[target.index(after: $0)...]) } ?? ""
        let headers: [(name: String, value: String)] =
            [("Host", "example.amazonaws.com"), ("X-Amz-Date", amzDate)] + extra.map { ($0.0, $0.1) }
        let names = signed ?? Array(Set(headers.map { $0.name.lowercased() })).sorted()
        let auth = SigV4.Authorization(
            header:
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=\(names.joined(separator: ";")), Signature=00"
        )!
        return SigV4.hex(
            SigV4.signature(
                secret: secret, auth: auth, amzDate: amzDate, method: method, rawPath: path, rawQuery: query,
                headers: headers, payload: Array(body.utf8)))
    }

    @Test func awsTestSuiteVectors() {
        // get-vanilla, step by step: canonical request, string to sign, signature.
        let headers: [(name: String, value: String)] = [("Host", "example.amazonaws.com"), ("X-Amz-Date", Self.amzDate)]
        let canonical = SigV4.canonicalRequest(
            method: "GET", rawPath: "/", rawQuery: "", headers: headers, signedHeaders: ["host", "x-amz-date"], payload: [])
        #expect(
            canonical
                == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        #expect(
            SigV4.stringToSign(amzDate: Self.amzDate, scope: "20150830/us-east-1/service/aws4_request", canonicalRequest: canonical)
                == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        )
        #expect(Self.suiteSignature("GET", "/") == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        // Query parameters sorted by name, then value; unreserved characters kept.
        #expect(
            Self.suiteSignature("GET", "/?Param2=value2&Param1=value1")
                == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
        #expect(
            Self.suiteSignature("GET", "/?Param1=value2&Param1=Value1")
                == "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1")
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        #expect(
            Self.suiteSignature("GET", "/?\(unreserved)=\(unreserved)")
                == "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197")
        #expect(Self.suiteSignature("GET", "/\(unreserved)") == "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f")
        // Paths normalized.
        #expect(
            Self.suiteSignature("GET", "/example1/example2/../..") == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        #expect(Self.suiteSignature("GET", "//") == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        #expect(Self.suiteSignature("GET", "/./example") == "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5")
        #expect(Self.suiteSignature("GET", "/example space/") == "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741")
        // Header values trimmed and their inner spaces collapsed; repeated headers joined in order.
        #expect(
            Self.suiteSignature("GET", "/", [("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")])
                == "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736")
        #expect(
            Self.suiteSignature("GET", "/", [("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")])
                == "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea")
        #expect(
            Self.suiteSignature("POST", "/", [("My-Header1", "VALUE1")])
                == "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d")
        #expect(Self.suiteSignature("POST", "/") == "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
        // A body is hashed into the signature.
        #expect(
            Self.suiteSignature("POST", "/", [("Content-Type", "application/x-www-form-urlencoded")], body: "Param1=value1")
                == "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
        // Signing key derivation (AWS's documented example: 2012-02-15, us-east-1, iam).
        #expect(
            SigV4.hex(SigV4.signingKey(secret: Self.secret, date: "20120215", region: "us-east-1", service: "iam"))
                == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d")
    }

    @Test func authorizationHeaderAndDates() {
        let a = SigV4.Authorization(
            header:
                "AWS4-HMAC-SHA256 Credential=AKID/20150830/eu-west-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd")
        #expect(
            a?.accessKeyID == "AKID" && a?.region == "eu-west-1" && a?.service == "dynamodb" && a?.signedHeaders == ["host", "x-amz-date"])
        #expect(
            SigV4.Authorization(header: "AWS4-HMAC-SHA256 Credential=AKID/20150830/eu-west-1/dynamodb, SignedHeaders=host, Signature=ab")
                == nil)
        #expect(
            SigV4.Authorization(header: "AWS4-HMAC-SHA256 Credential=AKID/20150830/eu-west-1/dynamodb/aws4_request, Signature=ab") == nil)
        #expect(SigV4.Authorization(header: "Bearer abc") == nil)
        #expect(SigV4.epochMs(amzDate: "20150830T123600Z") == 1_440_938_160_000)
        #expect(SigV4.epochMs(amzDate: "20000229T000000Z") == 951_782_400_000)
        #expect(SigV4.epochMs(amzDate: "19700101T000000Z") == 0)
        #expect(SigV4.epochMs(amzDate: "2015-08-30T12:36:00Z") == nil)
        #expect(SigV4.epochMs(amzDate: "20151330T123600Z") == nil)
    }

    // MARK: what a node answers

    static let tokens = """
        reader-secret-0123456789 read  READERKEY
        writer-secret-0123456789 write WRITERKEY
        admin-secret-01234567890 admin
        """
    static let now: Int64 = 1_440_938_160_000  // 20150830T123600Z

    /// A DynamoDB request as an SDK signs it: with `id` and `secret`, dated `at`.
    static func signed(
        _ op: String, id: String, secret: String, at: Int64 = now, service: String = "dynamodb",
        body: String = #"{"TableName":"calls"}"#, tamper: Bool = false
    ) -> HTTPRequest {
        let date = amzDate(at)
        var headers: [(name: String, value: String)] = [
            ("Host", "127.0.0.1:7700"), ("X-Amz-Date", date), ("X-Amz-Target", "DynamoDB_20120810.\(op)"),
            ("Content-Type", "application/x-amz-json-1.0")
        ]
        let auth = SigV4.Authorization(
            header:
                "AWS4-HMAC-SHA256 Credential=\(id)/\(date.prefix(8))/us-east-1/\(service)/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00"
        )!
        let sig = SigV4.signature(
            secret: Array(secret.utf8), auth: auth, amzDate: date, method: "POST", rawPath: "/", rawQuery: "",
            headers: headers, payload: Array(body.utf8))
        headers.append(
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=\(id)/\(date.prefix(8))/us-east-1/\(service)/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=\(SigV4.hex(sig))"
            ))
        return HTTPRequest(method: "POST", path: "/", query: [:], headers: headers, body: Array((tamper ? body + " " : body).utf8))
    }

    static func amzDate(_ ms: Int64) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    /// The `__type` after its `#`, or nil if the request may go ahead.
    static func refusal(_ tokens: APITokens, _ r: HTTPRequest, at: Int64 = now) -> String? {
        guard let denial = tokens.checkAWS(r, target: r.header("X-Amz-Target")!, nowMs: at) else { return nil }
        #expect(denial.status == 400)
        let j = try? JSON.parse(denial.body)
        return j?["__type"]?.stringValue.map { String($0.split(separator: "#").last!) }
    }

    @Test func nodeChecks() throws {
        let t = try APITokens(Self.tokens)
        #expect(t.accessKey("READERKEY")?.role == .read && t.accessKey("admin-secret-01234567890") == nil)
        // Right key and secret: reads for the reader, writes for the writer, tables for neither.
        #expect(Self.refusal(t, Self.signed("GetItem", id: "READERKEY", secret: "reader-secret-0123456789")) == nil)
        #expect(Self.refusal(t, Self.signed("PutItem", id: "READERKEY", secret: "reader-secret-0123456789")) == "AccessDeniedException")
        #expect(Self.refusal(t, Self.signed("PutItem", id: "WRITERKEY", secret: "writer-secret-0123456789")) == nil)
        #expect(Self.refusal(t, Self.signed("CreateTable", id: "WRITERKEY", secret: "writer-secret-0123456789")) == "AccessDeniedException")
        // Unknown key, wrong secret, altered body, wrong service in the scope.
        #expect(
            Self.refusal(t, Self.signed("GetItem", id: "NOSUCHKEY", secret: "reader-secret-0123456789")) == "UnrecognizedClientException")
        #expect(Self.refusal(t, Self.signed("GetItem", id: "READERKEY", secret: "writer-secret-0123456789")) == "InvalidSignatureException")
        #expect(
            Self.refusal(t, Self.signed("GetItem", id: "READERKEY", secret: "reader-secret-0123456789", tamper: true))
                == "InvalidSignatureException")
        #expect(
            Self.refusal(t, Self.signed("GetItem", id: "READERKEY", secret: "reader-secret-0123456789", service: "s3"))
                == "InvalidSignatureException")
        // Dated within 15 minutes either way is fine; beyond, refused.
        let minute: Int64 = 60_000
        #expect(
            Self.refusal(t, Self.signed("GetItem", id: "READERKEY", secret: "reader-secret-0123456789", at: Self.now - 14 * minute)) == nil)
        #expect(
            Self.refusal(t, Self.signed("GetItem", id: "READERKEY", secret: "reader-secret-0123456789", at: Self.now + 14 * minute)) == nil)
        #expect(
            Self.refusal(t, Self.signed("GetItem", id: "READERKEY", secret: "reader-secret-0123456789", at: Self.now - 16 * minute))
                == "InvalidSignatureException")
        #expect(
            Self.refusal(t, Self.signed("GetItem", id: "READERKEY", secret: "reader-secret-0123456789", at: Self.now + 16 * minute))
                == "InvalidSignatureException")
        // No Authorization at all; a bearer token still works (and its role counts).
        var bare = Self.signed("GetItem", id: "READERKEY", secret: "reader-secret-0123456789")
        bare.headers.removeAll { $0.name == "Authorization" }
        #expect(Self.refusal(t, bare) == "MissingAuthenticationTokenException")
        var bearer = bare
        bearer.headers.append(("Authorization", "Bearer admin-secret-01234567890"))
        #expect(Self.refusal(t, bearer) == nil)
        bearer.headers[bearer.headers.count - 1].value = "Bearer nobody-0123456789abcdef"
        #expect(Self.refusal(t, bearer) == "UnrecognizedClientException")
        // Kinesis answers in its own shape.
        let k = HTTPRequest(method: "POST", path: "/", query: [:], headers: [("X-Amz-Target", "Kinesis_20131202.PutRecord")], body: [])
        let denial = t.checkAWS(k, target: "Kinesis_20131202.PutRecord", nowMs: Self.now)
        #expect(denial?.headers.first { $0.0 == "Content-Type" }?.1 == "application/x-amz-json-1.1")
        #expect((try? JSON.parse(denial?.body ?? []))?["__type"] == .string("MissingAuthenticationTokenException"))
    }

    @Test func tokensFileWithAccessKeys() {
        // The two-column form stays valid; ids are checked and unique.
        #expect((try? APITokens("abcdefghijklmnopqrst read\nbcdefghijklmnopqrstu write KEY1\n"))?.count == 2)
        #expect(throws: TandemError.self) { try APITokens("abcdefghijklmnopqrst read KEY/1\n") }
        #expect(throws: TandemError.self) { try APITokens("abcdefghijklmnopqrst read KEY1\nbcdefghijklmnopqrstu write KEY1\n") }
        #expect(throws: TandemError.self) { try APITokens("abcdefghijklmnopqrst read KEY1 extra\n") }
        for (op, role) in [
            ("DynamoDB_20120810.Query", APITokens.Role.read), ("DynamoDB_20120810.BatchWriteItem", .write),
            ("DynamoDB_20120810.DeleteTable", .admin), ("Kinesis_20131202.GetRecords", .read),
            ("Kinesis_20131202.PutRecords", .write), ("Kinesis_20131202.CreateStream", .admin),
            ("DynamoDB_20120810.Frobnicate", .write)
        ] {
            #expect(APITokens.requiredRole(awsTarget: op) == role, "\(op)")
        }
    }
}
