import GlobalTable
import TandemCore
import Testing

@Suite struct TimeToLiveTests {
    let nowMs: UInt64 = 1_800_000_000_000

    func item(_ ttl: String?) -> [String: AttributeValue] {
        var v: [String: AttributeValue] = ["pk": .string("a")]
        if let ttl { v["exp"] = .number(DecimalNumber(ttl)!) }
        return v
    }

    @Test func expiryFollowsDynamoDBRules() {
        let now = nowMs / 1000
        #expect(TimeToLive.isExpired(item(String(now)), attribute: "exp", nowMs: nowMs), "due now")
        #expect(TimeToLive.isExpired(item("\(now - 10).75"), attribute: "exp", nowMs: nowMs), "fractions are floored")
        #expect(!TimeToLive.isExpired(item(String(now + 1)), attribute: "exp", nowMs: nowMs), "future")
        #expect(
            !TimeToLive.isExpired(item(String(now - UInt64(TimeToLive.maxAgeSeconds) - 1)), attribute: "exp", nowMs: nowMs),
            "over five years old: ignored")
        #expect(!TimeToLive.isExpired(item("-5"), attribute: "exp", nowMs: nowMs))
        #expect(!TimeToLive.isExpired(item(nil), attribute: "exp", nowMs: nowMs), "no attribute")
        #expect(!TimeToLive.isExpired(["exp": .string("\(now - 5)")], attribute: "exp", nowMs: nowMs), "not a number")
        #expect(!TimeToLive.isExpired(item(String(now * 1000)), attribute: "exp", nowMs: nowMs), "milliseconds by mistake: far future")
    }

    /// Two regions with the same state expire the item with the same delete, so their replicas
    /// end byte-identical whichever order the deletes arrive in.
    @Test func expiryDeleteIsDeterministicAndConverges() {
        let expiry = nowMs / 1000 - 30
        var a = ItemState(), b = ItemState()
        var clockA = HybridClock(node: 1), clockB = HybridClock(node: 2)
        let put = a.put(item(String(expiry)), at: clockA.now(wallMs: nowMs - 60_000))
        b.merge(put)
        let counter = b.add("n", DecimalNumber(3), at: clockB.now(wallMs: nowMs - 50_000))!
        a.merge(counter)
        #expect(a == b)
        let da = TimeToLive.expiryDelete(a, attribute: "exp", nowMs: nowMs)!
        let db = TimeToLive.expiryDelete(b, attribute: "exp", nowMs: nowMs + 700)!
        #expect(da == db, "the delete depends on the item, not on who sweeps or when")
        #expect(da.marker == HLC(time: expiry * 1000 << 16, node: 0), "written before expiry: deleted at the expiry time")
        a.merge(da); a.merge(db); b.merge(db); b.merge(da)
        #expect(a == b && a.visible == nil)
        #expect(ItemCodec.encode(a) == ItemCodec.encode(b))
        #expect(TimeToLive.expiryDelete(a, attribute: "exp", nowMs: nowMs) == nil, "nothing left to expire")
    }

    /// An item written after its expiry time (put already expired) is still deleted: the delete
    /// lands just after its latest write.
    @Test func itemWrittenAfterItsExpiryIsStillDeleted() {
        var s = ItemState()
        var clock = HybridClock(node: 7)
        let w = clock.now(wallMs: nowMs)
        _ = s.put(item(String(nowMs / 1000 - 100)), at: w)
        #expect(TimeToLive.visible(s, attribute: "exp", nowMs: nowMs) == nil)
        #expect(TimeToLive.visible(s, attribute: nil, nowMs: nowMs) != nil, "TTL off: visible")
        let d = TimeToLive.expiryDelete(s, attribute: "exp", nowMs: nowMs)!
        #expect(d.marker == HLC(time: w.time + 1, node: 0))
        s.merge(d)
        #expect(s.visible == nil)
        // A later write (a new TTL in the future) is not hidden by the expiry.
        let later = s.set("exp", .number(DecimalNumber(Int(nowMs / 1000 + 100))), at: clock.now(wallMs: nowMs + 1))
        var other = ItemState()
        other.merge(later); other.merge(d)
        #expect(TimeToLive.visible(other, attribute: "exp", nowMs: nowMs) != nil)
    }
}
