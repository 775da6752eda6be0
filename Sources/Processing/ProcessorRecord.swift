/// One stream record as a processor sees it: the partition's sequence number (a Raft index),
/// the partition key, the payload and the arrival time (ms since the epoch, the leader's clock).
public struct ProcessorRecord: Sendable, Equatable {
    public var sequence: UInt64
    public var key: String
    public var data: [UInt8]
    public var timestamp: UInt64

    public init(sequence: UInt64, key: String, data: [UInt8], timestamp: UInt64) {
        self.sequence = sequence
        self.key = key
        self.data = data
        self.timestamp = timestamp
    }
}

/// Sequence numbers as the stream APIs write them: 20 decimal digits, so they sort as text.
public enum SequenceText {
    public static func format(_ index: UInt64) -> String {
        let digits = String(index)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    public static func parse(_ text: String) -> UInt64? {
        guard !text.isEmpty, text.utf8.count <= 20, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(text)
    }
}
