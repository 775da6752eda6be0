import TandemCore

/// Membership updates waiting to be piggybacked (SWIM §4.1 "infection-style dissemination").
///
/// One update per member: a newer one replaces the older — except that suspicions of the same
/// incarnation by different accusers stay side by side. Each is an independent failure to reach
/// the member, and a receiver needs them all to shorten its own suspicion (Lifeguard's
/// confirmations): with one slot per member, an accuser's own "suspect" was replaced by the
/// helper confirmation it queued a moment later, so the others heard one accuser, waited for the
/// long timeout and only came down to the short one after a probe of their own (~0.6 s at 80 ms
/// one way). Each packet takes the least-sent updates first (newest first among equals), and an
/// update is dropped once it has been sent `limit` times — `retransmitMult × ceil(log10(n + 1))`,
/// enough for it to reach every member with high probability.
struct BroadcastQueue: Sendable {
    private struct Item: Sendable {
        var message: SwimMessage
        var size: Int
        var transmits: Int
        var order: UInt64
    }

    /// By member, then by accuser for suspicions ("" for every other update).
    private var items: [String: [String: Item]] = [:]
    private var counter: UInt64 = 0

    var isEmpty: Bool { items.isEmpty }

    mutating func enqueue(_ message: SwimMessage) {
        guard let subject = message.subject else { return }
        counter += 1
        let item = Item(message: message, size: Packet.encodedSize(message), transmits: 0, order: counter)
        if case .suspect(_, let incarnation, let from) = message,
            var queued = items[subject], queued.values.allSatisfy({ $0.message.isSuspicion(of: incarnation) })
        {
            queued[from] = item
            items[subject] = queued
        } else {
            items[subject] = [message.accuser: item]
        }
    }

    /// Takes updates that fit in `budget` bytes, counting a transmission for each.
    mutating func take(budget: Int, limit: Int, skipping skip: String? = nil) -> [SwimMessage] {
        guard !items.isEmpty, budget > 0 else { return [] }
        let ordered = items.flatMap { subject, byAccuser in byAccuser.map { (subject, $0.key, $0.value) } }.sorted { a, b in
            a.2.transmits != b.2.transmits ? a.2.transmits < b.2.transmits : a.2.order > b.2.order
        }
        var left = budget
        var taken: [SwimMessage] = []
        for (subject, accuser, item) in ordered where item.size <= left && subject != skip {
            taken.append(item.message)
            left -= item.size
            if item.transmits + 1 >= limit {
                items[subject]![accuser] = nil
                if items[subject]!.isEmpty { items[subject] = nil }
            } else {
                items[subject]![accuser]!.transmits += 1
            }
            if left < 16 { break }
        }
        return taken
    }
}

extension SwimMessage {
    /// The member that accused, for a suspicion; "" for any other update.
    fileprivate var accuser: String {
        if case .suspect(_, _, let from) = self { from } else { "" }
    }

    fileprivate func isSuspicion(of incarnation: UInt64) -> Bool {
        if case .suspect(_, let inc, _) = self { inc == incarnation } else { false }
    }
}
