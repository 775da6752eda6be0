/// DynamoDB's time to live, computed the same way on every node so that expiry needs no
/// coordination:
///
/// * an item expires when its TTL attribute is a number (epoch seconds) at or before now, and not
///   more than five years before now (DynamoDB ignores those, as it does non-numbers);
/// * an expired item reads as absent everywhere at once (up to the nodes' clock skew);
/// * the sweep deletes it with a timestamp derived from the item alone — the expiry time, or just
///   after the item's latest write if that came later (node id 0) — so every region that expires
///   the same state issues the same delete, and the merges agree byte for byte.
public enum TimeToLive {
    /// Items whose expiry is further in the past than this are never expired (DynamoDB's rule).
    public static let maxAgeSeconds: Int64 = 5 * 365 * 24 * 3600

    /// The attribute's expiry in epoch seconds, if it is a usable TTL value.
    public static func expirySeconds(_ value: AttributeValue?) -> Int64? {
        guard case .number(let n)? = value else { return nil }
        let text = n.description
        guard !text.hasPrefix("-") else { return nil }
        let whole = text.split(separator: ".", maxSplits: 1).first.map(String.init) ?? "0"
        // Past 2^47 ms the HLC cannot carry it; such an item is far enough in the future anyway.
        guard whole.count <= 12, let s = Int64(whole), s < (1 << 47) / 1000 else { return nil }
        return s
    }

    /// True if `item` has expired at `nowMs` under TTL attribute `attribute`.
    public static func isExpired(_ item: [String: AttributeValue], attribute: String, nowMs: UInt64) -> Bool {
        guard let s = expirySeconds(item[attribute]) else { return false }
        let now = Int64(nowMs / 1000)
        return s <= now && now - s <= maxAgeSeconds
    }

    /// The item as reads see it: nil if absent or expired.
    public static func visible(_ state: ItemState?, attribute: String?, nowMs: UInt64) -> [String: AttributeValue]? {
        guard let v = state?.visible else { return nil }
        if let attribute, isExpired(v, attribute: attribute, nowMs: nowMs) { return nil }
        return v
    }

    /// The deterministic delete for an expired item: a whole-item delete at
    /// `max(expiry, latest write + 1)` by node 0. Nil if the item is not expired.
    public static func expiryDelete(_ state: ItemState, attribute: String, nowMs: UInt64) -> ItemState? {
        guard let v = state.visible, isExpired(v, attribute: attribute, nowMs: nowMs),
            let s = expirySeconds(v[attribute])
        else { return nil }
        let expiry = UInt64(s) * 1000 << 16
        var copy = state
        return copy.delete(at: HLC(time: max(expiry, state.lastWriteTime + 1), node: 0))
    }
}
