import GlobalTable
import Testing

@Suite struct DecimalNumberTests {
    @Test(arguments: [
        ("00042", "42"), ("1.5E2", "150"), ("-0.0", "0"), ("+7", "7"), (".5", "0.5"), ("5.", "5"),
        ("1.2300", "1.23"), ("-12.5e-3", "-0.0125"), ("1e2", "100"), ("0.000", "0"),
        ("123456789012345678901234567890.12345678", "123456789012345678901234567890.12345678")
    ])
    func canonicalFormMatchesDynamoDB(input: String, expected: String) {
        #expect(DecimalNumber(input)?.description == expected)
    }

    @Test(arguments: ["", "-", "abc", "1.2.3", "1e", "1e+", "--1", "1x", "12345678901234567890123456789012345678901", "1e126", "1e-131"])
    func malformedOrOutOfRangeIsRejected(input: String) {
        #expect(DecimalNumber(input) == nil)
    }

    @Test func additionIsExact() {
        func n(_ s: String) -> DecimalNumber { DecimalNumber(s)! }
        #expect((n("0.1") + n("0.2"))?.description == "0.3")
        #expect((n("100") + n("-0.5"))?.description == "99.5")
        #expect((n("-3") + n("3"))?.description == "0")
        #expect((n("-3") + n("1"))?.description == "-2")
        #expect((n("1e20") + n("1"))?.description == "100000000000000000001")
        // 39 significant digits do not fit.
        #expect((n("1e38") + n("1")) == nil)
    }

    @Test func orderingIsNumeric() {
        let xs = ["-10", "-1.5", "0", "0.01", "2", "10", "1e3"].map { DecimalNumber($0)! }
        #expect(xs == xs.shuffled().sorted())
    }
}

@Suite struct HybridClockTests {
    @Test func timestampsStrictlyIncreaseEvenWhenTheWallClockStalls() {
        var clock = HybridClock(node: 1)
        var last = HLC.zero
        for wall in [100, 100, 100, 99, 150, 150] as [UInt64] {
            let t = clock.now(wallMs: wall)
            #expect(t > last)
            last = t
        }
        #expect(last.physicalMs == 150)
    }

    @Test func observingARemoteTimestampMovesPastIt() {
        var clock = HybridClock(node: 1)
        let remote = HLC(physicalMs: 5_000, logical: 3, node: 2)
        let accepted = clock.observe(remote, wallMs: 4_990)
        #expect(accepted)
        let next = clock.now(wallMs: 4_990)
        #expect(next > remote)
    }

    @Test func aRemoteClockFarAheadIsClamped() {
        var clock = HybridClock(node: 1, maxAheadMs: 1_000)
        let wild = HLC(physicalMs: 1_000_000, logical: 0, node: 2)
        let accepted = clock.observe(wild, wallMs: 10_000)
        #expect(!accepted)
        let next = clock.now(wallMs: 10_000)
        #expect(next.physicalMs <= 11_000)
    }
}
