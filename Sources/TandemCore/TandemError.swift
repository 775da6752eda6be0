/// An error with an extensible code, a human message, and where it was raised.
///
/// A struct rather than a public enum so new codes never break callers (swift-nio's
/// `FileSystemError` shape). The HTTP layer maps `code.httpStatus` and renders
/// `{"error": code, "message": message}`.
public struct TandemError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public let httpStatus: Int
        public init(_ name: String, httpStatus: Int) {
            self.name = name
            self.httpStatus = httpStatus
        }
        public var description: String { name }

        public static let malformed = Code("malformed", httpStatus: 400)
        public static let tooLarge = Code("too_large", httpStatus: 413)
        public static let unsupportedVersion = Code("unsupported_version", httpStatus: 400)
        public static let badRequest = Code("bad_request", httpStatus: 400)
        public static let notFound = Code("not_found", httpStatus: 404)
        public static let methodNotAllowed = Code("method_not_allowed", httpStatus: 405)
        public static let unavailable = Code("unavailable", httpStatus: 503)
        /// A peer request that never left this node (the link could not connect): unlike a
        /// timeout, retrying it cannot apply it twice.
        public static let notDelivered = Code("not_delivered", httpStatus: 503)
        public static let io = Code("io_error", httpStatus: 500)
        /// The data dir's disk is full: nothing was written.
        public static let diskFull = Code("disk_full", httpStatus: 507)
        /// An fsync (or another write to the disk) failed: the write was not made durable and
        /// not acknowledged. Retryable: the node recovers by itself when the disk does.
        public static let diskFailed = Code("disk_failed", httpStatus: 503)
        public static let invalidArgument = Code("invalid_argument", httpStatus: 400)
    }

    public var code: Code
    public var message: String
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { "\(code): \(message)" }
}
