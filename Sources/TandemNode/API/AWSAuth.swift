import CSodium
import Foundation
import Storage
import TandemCore
import Transport

/// Authorization of the AWS-compatible `POST /` when API tokens are on: AWS SDKs sign with
/// SigV4 (an access key id from the tokens file, its token as secret access key); a bearer token
/// works too. Failures are answered as the services answer them: HTTP 400 with their `__type`
/// codes (DynamoDB's documented status for all of these), so SDKs raise their usual exceptions.
extension APITokens {
    /// AWS accepts a signature dated within 15 minutes of its clock, either way.
    public static let maxSkewMs: Int64 = 15 * 60 * 1000

    /// The role an operation needs: reads `read`, data changes `write`, creating and deleting
    /// tables and streams and changing a table's TTL or tags, or a stream's retention or tags, `admin` (as `requiredRole(method:segments:)`
    /// does for the REST API). Operations not named here, unknown ones included, need `write`.
    public static func requiredRole(awsTarget target: String) -> Role {
        let op = target.split(separator: ".", maxSplits: 1).last.map(String.init) ?? ""
        switch op {
        case "GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable", "ListTables", "DescribeTimeToLive", "ListTagsOfResource",
            "DescribeEndpoints", "DescribeLimits", "ListStreams", "ListTagsForStream", "DescribeStream", "DescribeStreamSummary",
            "ListShards",
            "GetShardIterator", "GetRecords":
            return .read
        case "CreateTable", "DeleteTable", "UpdateTable", "UpdateTimeToLive", "TagResource", "UntagResource", "CreateStream",
            "DeleteStream", "IncreaseStreamRetentionPeriod", "DecreaseStreamRetentionPeriod", "AddTagsToStream", "RemoveTagsFromStream":
            return .admin
        default:
            return .write
        }
    }

    /// nil if the AWS request may go ahead, else the error to answer with.
    public func checkAWS(_ request: HTTPRequest, target: String, nowMs: Int64) -> HTTPResponse? {
        let kinesis = target.hasPrefix("Kinesis_")
        func fail(_ type: String, _ message: String) -> HTTPResponse { APITokens.awsError(type, message, kinesis: kinesis) }
        guard let header = request.header("Authorization") else {
            return fail("MissingAuthenticationTokenException", "Request is missing Authentication Token")
        }
        let needed = APITokens.requiredRole(awsTarget: target)
        let role: Role
        let who: String
        if header.count > 7, header.prefix(7).lowercased() == "bearer " {
            guard let r = self.role(of: String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)) else {
                return fail("UnrecognizedClientException", "The security token included in the request is invalid.")
            }
            (role, who) = (r, "this token")
        } else {
            guard let auth = SigV4.Authorization(header: header) else {
                return fail(
                    "IncompleteSignatureException",
                    "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters of \(SigV4.algorithm)")
            }
            guard let key = accessKey(auth.accessKeyID) else {
                return fail("UnrecognizedClientException", "The security token included in the request is invalid.")
            }
            if let failure = APITokens.verify(auth, secret: key.secret, request, service: kinesis ? "kinesis" : "dynamodb", nowMs: nowMs) {
                return fail(failure.type, failure.message)
            }
            (role, who) = (key.role, "access key \(auth.accessKeyID)")
        }
        guard role >= needed else {
            let op = target.split(separator: ".").last.map(String.init) ?? target
            return fail(
                "AccessDeniedException",
                "\(who) (role \(role)) is not authorized to perform: \(kinesis ? "kinesis" : "dynamodb"):\(op), which needs the \(needed) role"
            )
        }
        return nil
    }

    /// Checks a SigV4 signature: the scope, the date (±15 minutes of ours), the signed headers,
    /// then the HMAC, compared in constant time. nil if it holds.
    static func verify(
        _ auth: SigV4.Authorization, secret: [UInt8], _ request: HTTPRequest, service: String,
        nowMs: Int64
    ) -> (type: String, message: String)? {
        let invalid = "InvalidSignatureException"
        guard let amzDate = request.header("X-Amz-Date") else {
            return ("IncompleteSignatureException", "Authorization header requires existence of a 'X-Amz-Date' header")
        }
        guard let at = SigV4.epochMs(amzDate: amzDate) else {
            return (invalid, "X-Amz-Date must be in ISO-8601 basic format (YYYYMMDD'T'HHMMSS'Z'); got \(amzDate)")
        }
        guard auth.date == String(amzDate.prefix(8)) else {
            return (
                invalid,
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '\(auth.date)' != '\(amzDate.prefix(8))', from '\(amzDate)'."
            )
        }
        guard auth.service == service else { return (invalid, "Credential should be scoped to correct service: '\(service)'.") }
        guard auth.signedHeaders.contains("host"), auth.signedHeaders.contains("x-amz-date") else {
            return (invalid, "'Host' and 'X-Amz-Date' must be SignedHeaders in the AWS Authorization.")
        }
        if at < nowMs - maxSkewMs {
            return (
                invalid,
                "Signature expired: \(amzDate) is now earlier than 15 minutes before the server's time (\(nowMs / 1000) s since the epoch)."
            )
        }
        if at > nowMs + maxSkewMs {
            return (
                invalid,
                "Signature not yet current: \(amzDate) is still later than 15 minutes after the server's time (\(nowMs / 1000) s since the epoch)."
            )
        }
        let expected = SigV4.signature(
            secret: secret, auth: auth, amzDate: amzDate, method: request.method, rawPath: request.path,
            rawQuery: request.rawQuery, headers: request.headers, payload: request.body)
        // A presented signature of the wrong shape is compared against zeros, so every mismatch
        // takes the same path.
        let presented = SigV4.unhex(auth.signature).flatMap { $0.count == 32 ? $0 : nil } ?? [UInt8](repeating: 0, count: 32)
        guard sodium_memcmp(expected, presented, 32) == 0, auth.signature.utf8.count == 64 else {
            return (
                invalid,
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
            )
        }
        return nil
    }

    /// An auth error as the service's SDK expects it (DynamoDB prefixes the type with the coral
    /// namespace, Kinesis sends it bare; SDKs keep what follows the `#`).
    static func awsError(_ type: String, _ message: String, kinesis: Bool) -> HTTPResponse {
        let body = JSON.object([("__type", .string(kinesis ? type : "com.amazon.coral.service#\(type)")), ("message", .string(message))])
        return HTTPResponse(
            status: 400, contentType: kinesis ? KinesisAPI.contentType : DynamoAPI.contentType, body: Array(body.serialized.utf8))
    }
}
