import TandemCore

/// Membership updates waiting to be piggybacked (SWIM §4.1 "infection-style dissemination").
///
/// One update per member: a newer one replaces the older. Each packet takes the least-sent
/// updates first (newest first among equals), and an update is dropped once it has been sent
/// `limit` times — `retransmitMult × ceil(log10(n + 1))`, enough for it to reach every member
/// with high probability.
struct BroadcastQueue: Sendable {
    private struct Item: Sendable {
        var message: SwimMessage
        var size: Int
        var transmits: Int
        var order: UInt64
    }

    private var items: [String: Item] = [:]
    private var counter: UInt64 = 0

    var isEmpty: Bool { items.isEmpty }

    mutating func enqueue(_ message: SwimMessage) {
        guard let subject = message.subject else { return }
        counter += 1
        items[subject] = Item(message: message, size: Packet.encodedSize(message), transmits: 0, order: counter)
    }

    /// Takes updates that fit in `budget` bytes, counting a transmission for each.
    mutating func take(budget: Int, limit: Int, skipping skip: String? = nil) -> [SwimMessage] {
        guard !items.isEmpty, budget > 0 else { return [] }
        let ordered = items.sorted { a, b in
            a.value.transmits != b.value.transmits ? a.value.transmits < b.value.transmits : a.value.order > b.value.order
        }
        var left = budget
        var taken: [SwimMessage] = []
        for (subject, item) in ordered where item.size <= left && subject != skip {
            taken.append(item.message)
            left -= item.size
            if item.transmits + 1 >= limit {
                items[subject] = nil
            } else {
                items[subject]!.transmits += 1
            }
            if left < 16 { break }
        }
        return taken
    }
}
