import Membership
import TandemCore
import Testing

// Helpers for driving one `MembershipInstance` by hand: peers are just names whose packets the
// test writes itself, and time moves only when the test says so.

let t0 = Instant(nanoseconds: 1_000_000_000)

extension Instant {
    static func - (a: Instant, d: Duration) -> Instant { a + (.zero - d) }
}

func ms(_ n: Int) -> Duration { .milliseconds(n) }

func addr(_ name: String) -> String { "\(name):7946" }

func memberState(_ name: String, inc: UInt64 = 1, status: MemberStatus = .alive, returned: UInt64 = 0) -> MemberState {
    MemberState(
        name: name, address: addr(name), incarnation: inc, status: status,
        meta: MemberMeta(region: "r-\(name)", api: "\(name):8080", returned: returned))
}

/// A node named `name` that has learned `peers` (all alive at incarnation 1) at `t0`.
func makeNode(
    _ name: String = "a", incarnation: UInt64 = 1, settings: MembershipSettings = .lan,
    seed: UInt64 = 1, peers: [String] = []
) -> MembershipInstance {
    var node = MembershipInstance(
        settings: settings, name: name, address: addr(name),
        meta: MemberMeta(region: "r-\(name)", api: "\(name):8080"),
        incarnation: incarnation, seed: seed, now: t0)
    if !peers.isEmpty {
        _ = node.onPacket(Packet(peers.map { .alive(memberState($0)) }), from: addr(peers[0]), now: t0)
    }
    return node
}

struct Sent: Equatable {
    var at: Instant
    var to: String
    var packet: Packet
    var messages: [SwimMessage] { packet.messages }
}

extension Array where Element == MembershipDirective {
    var sends: [(to: String, packet: Packet)] {
        compactMap { if case .send(let to, let p) = $0 { (to, p) } else { nil } }
    }

    /// Every message sent, with its destination.
    var sentMessages: [(to: String, message: SwimMessage)] {
        sends.flatMap { s in s.packet.messages.map { (s.to, $0) } }
    }

    var persisted: [UInt64] {
        compactMap { if case .persistIncarnation(let i) = $0 { i } else { nil } }
    }

    var pushPulls: [(to: String, join: Bool)] {
        compactMap { if case .pushPull(let to, let join) = $0 { (to, join) } else { nil } }
    }

    var changes: [(state: MemberState, previous: MemberStatus?)] {
        compactMap { if case .memberChanged(let s, let p) = $0 { (s, p) } else { nil } }
    }
}

extension SwimMessage {
    var pingSeq: UInt32? { if case .ping(let seq, _) = self { seq } else { nil } }
    var pingTarget: String? { if case .ping(_, let t) = self { t } else { nil } }
    var isPingReq: Bool { if case .pingReq = self { true } else { false } }
}

/// Drives one instance the way the shell does: `onTick` exactly at `nextDeadline`, and records
/// every directive with its time. Peers listed in `responsive` answer pings for themselves at
/// once (so their probes succeed); everyone else is silent unless the test speaks for them.
struct Driver {
    var node: MembershipInstance
    var now: Instant = t0
    var responsive: Set<String> = []
    private(set) var log: [(at: Instant, directive: MembershipDirective)] = []

    init(_ node: MembershipInstance, responsive: Set<String> = []) {
        self.node = node
        self.responsive = responsive
    }

    var directives: [MembershipDirective] { log.map(\.directive) }

    /// Every packet sent so far, in order, with its time.
    var sent: [Sent] {
        log.compactMap { e in
            if case .send(let to, let p) = e.directive { Sent(at: e.at, to: to, packet: p) } else { nil }
        }
    }

    /// Probe pings (and dead-member retries): every `.ping` this node sent, with its time.
    var pings: [(at: Instant, to: String, seq: UInt32, target: String)] {
        sent.flatMap { s in
            s.messages.compactMap { m in
                if case .ping(let seq, let target) = m { (s.at, s.to, seq, target) } else { nil }
            }
        }
    }

    @discardableResult
    mutating func tick(at t: Instant) -> [MembershipDirective] {
        now = t
        return record(node.onTick(now: t))
    }

    @discardableResult
    mutating func deliver(_ messages: [SwimMessage], from peer: String, at t: Instant? = nil) -> [MembershipDirective] {
        if let t { now = t }
        return record(node.onPacket(Packet(messages), from: addr(peer), now: now))
    }

    /// Ticks at every deadline up to and including `end`.
    mutating func run(until end: Instant) {
        while node.nextDeadline <= end {
            tick(at: max(now, node.nextDeadline))
        }
        now = max(now, end)
    }

    /// Ticks deadline by deadline until `condition` holds (checked after each tick), at most until `limit`.
    @discardableResult
    mutating func run(until limit: Instant, stopWhen condition: (Driver) -> Bool) -> Bool {
        if condition(self) { return true }
        while node.nextDeadline <= limit {
            tick(at: max(now, node.nextDeadline))
            if condition(self) { return true }
        }
        now = max(now, limit)
        return false
    }

    private mutating func record(_ out: [MembershipDirective]) -> [MembershipDirective] {
        var all: [MembershipDirective] = []
        var pending = out
        while !pending.isEmpty {
            let batch = pending
            pending = []
            for d in batch {
                all.append(d)
                log.append((now, d))
                guard case .send(let to, let packet) = d else { continue }
                for m in packet.messages {
                    guard case .ping(let seq, let target) = m, addr(target) == to, responsive.contains(target) else { continue }
                    pending += node.onPacket(Packet([.ack(seq: seq, forwarded: false, coordinate: nil)]), from: to, now: now)
                }
            }
        }
        return all
    }
}
