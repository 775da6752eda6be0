import Testing
import StreamLog
import TandemCore

@Suite struct PartitionHashTests {
    @Test func sameKeySamePartitionAndKeysSpreadEvenly() {
        #expect(partition(forKey: "a-17", partitions: 4) == partition(forKey: "a-17", partitions: 4))
        var counts = [Int](repeating: 0, count: 4)
        for i in 0..<4000 { counts[partition(forKey: "agent-\(i)", partitions: 4)] += 1 }
        // 4000 keys over 4 partitions: each within ±15% of 1000.
        #expect(counts.allSatisfy { $0 > 850 && $0 < 1150 }, "\(counts)")
    }
}

/// Kinesis's rule: MD5 of the key (RFC 1321's digest), read big-endian, in an even split of the
/// 2^128 hash keys.
@Suite struct KinesisKeyHashTests {
    func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    @Test func md5MatchesRFC1321() {
        // The test suite of RFC 1321, appendix A.5.
        let vectors = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"), ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"), ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            (String(repeating: "1234567890", count: 8), "57edf4a22be3c955ac49da2e2107b67a")
        ]
        for (text, digest) in vectors { #expect(hex(MD5.digest(Array(text.utf8))) == digest, "\(text)") }
    }

    @Test func hashKeysFallInEvenRanges() {
        #expect(KeyHash.hashKey("a") == UInt128("0cc175b9c0f1b6a831c399e269772661", radix: 16))
        // Four shards: 2^126 each, as Kinesis splits them; three: ⌊2^128 / 3⌋.
        #expect(KeyHash.range(1, partitions: 4) == (UInt128(1) << 126)...((UInt128(1) << 127) - 1))
        #expect(KeyHash.range(3, partitions: 4).upperBound == UInt128.max)
        #expect(KeyHash.range(1, partitions: 3).lowerBound == UInt128("113427455640312821154458202477256070485"))
        #expect(KeyHash.range(0, partitions: 1) == 0...UInt128.max)
        for n in [1, 2, 3, 4, 7, 64] {
            for p in 0..<n {
                let r = KeyHash.range(p, partitions: n)
                #expect(
                    KeyHash.partition(hashKey: r.lowerBound, partitions: n) == p
                        && KeyHash.partition(hashKey: r.upperBound, partitions: n) == p)
            }
        }
        // "a" hashes below 2^126: shard 0 of 4, where FNV-1a picks another.
        #expect(KeyHash.md5.partition(forKey: "a", partitions: 4) == 0)
        #expect(KeyHash.fnv1a.partition(forKey: "a-17", partitions: 4) == partition(forKey: "a-17", partitions: 4))
    }
}
