import Testing
import StreamLog

@Suite struct PartitionHashTests {
    @Test func sameKeySamePartitionAndKeysSpreadEvenly() {
        #expect(partition(forKey: "a-17", partitions: 4) == partition(forKey: "a-17", partitions: 4))
        var counts = [Int](repeating: 0, count: 4)
        for i in 0..<4000 { counts[partition(forKey: "agent-\(i)", partitions: 4)] += 1 }
        // 4000 keys over 4 partitions: each within ±15% of 1000.
        #expect(counts.allSatisfy { $0 > 850 && $0 < 1150 }, "\(counts)")
    }
}
