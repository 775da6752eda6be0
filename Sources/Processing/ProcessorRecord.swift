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

/// Sequence numbers as the stream APIs write them (Raft indexes as 20 decimal digits, so they
/// sort as text) — the streams service's `Sequence` too.
public enum SequenceText {
    public static func format(_ index: UInt64) -> String {
        String(unsafeUninitializedCapacity: 20) { out in
            var v = index
            for k in stride(from: 19, through: 0, by: -1) {
                out[k] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
            return 20
        }
    }

    public static func parse(_ text: String) -> UInt64? {
        guard !text.isEmpty, text.utf8.count <= 20, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(text)
    }
}
