import TandemCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the membership core asks its shell to do.
public enum MembershipDirective: Sendable, Equatable {
    /// Send one datagram (already bounded to `Packet.maxSize` when encoded).
    case send(to: String, Packet)
    /// Exchange full state with `to` over TCP: send `pushPullMessage(join:)`, feed the answer to
    /// `onPushPullResponse`, or report `onPushPullFailed`.
    case pushPull(to: String, join: Bool)
    /// Make this incarnation durable: a restart must come back with a higher one.
    case persistIncarnation(UInt64)
    /// A member's status changed in this node's view (`previous` nil: first seen).
    case memberChanged(MemberState, previous: MemberStatus?)
}

/// Counters of protocol events, exported by the shell as Prometheus metrics.
public struct MembershipStats: Sendable, Equatable {
    public var probes = 0
    public var acks = 0
    public var nacks = 0
    public var indirectProbes = 0
    public var indirectRelays = 0
    public var suspicionsRaised = 0
    public var confirmations = 0
    public var refutations = 0
    public var deathsDeclared = 0
    public var deadRetries = 0
    public var pushPulls = 0
    public var pushPullFailures = 0
    public var stalls = 0
    public var messagesIn = 0
    public var messagesOut = 0
    public var pingsForOthers = 0
    public var addressConflicts = 0
}

/// SWIM membership with Lifeguard, as a pure state machine.
///
/// Das, Gupta & Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process Group
/// Membership Protocol" (DSN 2002), with the Lifeguard extensions (Dadgar, Phillips & Currey,
/// 2018) as HashiCorp memberlist implements them, plus two changes of ours:
/// - dead members are pinged every `deadRetryInterval` with their death notice piggybacked, so
///   a healed or restarted node refutes and is back within a round trip or two;
/// - a tick that arrives long after the previous one means this process was stalled: pending
///   timeouts are pushed back so it reads its inbox before it judges anyone.
///
/// Inputs: `onTick(now:)`, `onPacket(_:from:now:)`, the push-pull callbacks, `join`, `leave`.
/// Output: `[MembershipDirective]`. It never reads a clock, touches a socket or draws from global
/// randomness; the shell calls `onTick` again at `nextDeadline`.
public struct MembershipInstance: Sendable {
    public let settings: MembershipSettings
    public private(set) var myself: MemberState
    /// Every other member this node knows of, by name.
    /// Changed only through `store` and `forget`, which keep `names` and the counts in step.
    public private(set) var members: [String: Member] = [:]
    private var liveOthers = 0
    private var deadOthers = 0
    /// Member names in a fixed order: dictionary order differs per process, and every random
    /// choice must be a function of the seed alone.
    private var names: [String] = []
    public private(set) var stats = MembershipStats()
    /// Lifeguard's local health score: 0 is healthy; timeouts are scaled by `awareness + 1`.
    public private(set) var awareness = 0
    public private(set) var vivaldi = Vivaldi()
    public private(set) var joined: Bool
    public private(set) var leaving = false
    /// This node's view is the cluster's: it has merged a whole view from a peer (a push-pull
    /// either way) since it started, or it is a new node with nobody to learn from. Until then a
    /// returning node knows only itself and whoever has spoken to it, and what it decides from
    /// that (routes) differs from what everyone else decides. (Chaos check seed 973408: a node
    /// restarted after a kill answered routes for 1–6 s from a view missing a live member.)
    public private(set) var synced: Bool
    /// When the others last saw this node come back: its first sync after a restart (they
    /// merge its new incarnation then), or its refutation of its own death at its current
    /// incarnation (after a stall, a partition, a false death). Routing holds this node down from
    /// then, as the others do when they see it return, so that they agree.
    public private(set) var returnedAt: Instant?
    /// The incarnation this node started with, and the highest one it has been declared dead at
    /// since: a death notice at an incarnation above both is news (`returnedAt`), one at or
    /// below them a repeat or a previous life's.
    private let startIncarnation: UInt64
    private var deathSeen: UInt64 = 0
    private let startedAt: Instant
    private let restarted: Bool

    private var rng: SeededGenerator
    private var now: Instant
    private var sequence: UInt32 = 0
    private var nameByAddress: [String: String] = [:]

    private var probeRing: [String] = []
    private var probeCursor = 0
    /// Suspects this node has not probed since the suspicion began: probed next, out of turn.
    private var suspectsToProbe: [String] = []
    /// Probes in flight, by target: one at most in classic SWIM, one per watched member (and
    /// per suspect) with `watchers`.
    private var probes: [String: ProbeInFlight] = [:]
    /// With `watchers`: when each member was last heard from (any datagram from its address),
    /// when this node last started a probe of it, and the round trips measured to it.
    private var lastHeard: [String: Instant] = [:]
    private var lastProbedAt: [String: Instant] = [:]
    private var rtt: [String: RTTEstimate] = [:]
    private var relays: [UInt32: IndirectRelay] = [:]
    private var suspicions: [String: Suspicion] = [:]
    private var broadcasts = BroadcastQueue()

    private var nextProbeAt: Instant
    private var nextGossipAt: Instant
    private var lastGossipAt: Instant = .zero
    private var nextPushPullAt: Instant
    private var nextDeadRetryAt: Instant
    private var nextReapAt: Instant
    private var nextJoinAt: Instant?
    private var joinSeeds: [String] = []
    private var joinBackoff: Duration
    private var lastTickAt: Instant?

    static let maxRelays = 1024
    /// More members than any deployment needs; a peer cannot make us track more.
    public static let maxMembers = PushPullMessage.maxMembers

    /// One probe of one member: direct ping, then ping-req through helpers, then judgement.
    struct ProbeInFlight: Sendable {
        var seq: UInt32
        var target: String
        /// The target's incarnation when the probe started: a failed probe is evidence against
        /// that incarnation only.
        var incarnation: UInt64
        var sentAt: Instant
        var directDeadline: Instant
        var endsAt: Instant
        var indirectSent = false
        /// The direct ping was sent again at `directDeadline` (its ack then gives no RTT sample).
        var retried = false
        /// With `watchers`: when the resent ping has waited its own direct timeout. No answer by
        /// then (two direct pings unanswered) raises the suspicion while the helpers are still out.
        var retryDeadline: Instant?
        /// This probe has raised its suspicion; helper nacks that arrive now confirm it at once.
        var suspected = false
        var expectedNacks = 0
        var nacks = 0
        /// Helpers that answered "I could not reach it either".
        var nackers: [String] = []
        var acked = false
    }

    /// Smoothed round trip and its mean deviation, as TCP keeps them (RFC 6298: gains 1/8, 1/4).
    struct RTTEstimate: Sendable {
        var srtt: Duration
        var rttvar: Duration

        init(first sample: Duration) {
            srtt = sample
            // RFC 6298 starts at half the sample; a quarter reaches the steady timeout in a few
            // probes instead of a dozen (simulated 80 ms links: 0.37 s → 0.22 s after 6 probes).
            rttvar = sample / 4
        }

        mutating func add(_ sample: Duration) {
            let deviation = sample > srtt ? sample - srtt : srtt - sample
            rttvar = rttvar * 0.75 + deviation * 0.25
            srtt = srtt * 0.875 + sample * 0.125
        }
    }

    /// This node acting as a ping-req helper for someone else.
    struct IndirectRelay: Sendable {
        var originalSeq: UInt32
        var requester: String
        var nackAt: Instant
    }

    /// - Parameters:
    ///   - incarnation: one more than any incarnation this node used before (from its data dir).
    ///   - seed: seeds this core's random choices (probe order, gossip targets).
    public init(
        settings: MembershipSettings, name: String, address: String, meta: MemberMeta,
        incarnation: UInt64, seed: UInt64, now: Instant
    ) {
        self.settings = settings
        var meta = meta
        // A restart is a return: the others hold this node down from when they see it.
        if incarnation > 1 { meta.returned = incarnation }
        self.myself = MemberState(name: name, address: address, incarnation: incarnation, status: .alive, meta: meta)
        self.rng = SeededGenerator(seed: seed)
        self.now = now
        self.joined = true
        self.synced = incarnation <= 1
        self.restarted = incarnation > 1
        self.startIncarnation = incarnation
        self.startedAt = now
        self.joinBackoff = settings.joinRetryMin
        // Spread the first probes of nodes started together.
        self.nextProbeAt = now + settings.probeInterval * rng.unit()
        self.nextGossipAt = now + settings.gossipInterval
        self.nextPushPullAt = now + settings.pushPullInterval * (0.5 + rng.unit())
        self.nextDeadRetryAt = now + settings.deadRetryInterval
        self.nextReapAt = now + .seconds(1)
        broadcasts.enqueue(.alive(myself))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Queries

    /// Members that count toward `n`: live others plus this node.
    public var clusterSize: Int { liveOthers + 1 }

    /// This node and every member it knows, sorted by name.
    public var memberStates: [MemberState] {
        ([myself] + members.values.map(\.state)).sorted { $0.name < $1.name }
    }

    /// When `onTick` must next be called.
    public var nextDeadline: Instant {
        var t = min(nextGossipAt, nextDeadRetryAt, nextPushPullAt, nextReapAt)
        if watching {
            if !leaving { for name in watchedMembers() where probes[name] == nil { t = min(t, watchDue(name)) } }
        } else {
            t = min(t, nextProbeAt)
        }
        for p in probes.values {
            t = min(t, p.indirectSent || p.acked ? p.endsAt : p.directDeadline)
            if !p.acked, !p.suspected, let r = p.retryDeadline { t = min(t, r) }
        }
        if let j = nextJoinAt { t = min(t, j) }
        for s in suspicions.values { t = min(t, s.deadline) }
        for r in relays.values { t = min(t, r.nackAt) }
        return t
    }

    /// Lifeguard: a node that is itself unhealthy stretches its own timeouts.
    func scaled(_ d: Duration) -> Duration { d * Double(awareness + 1) }

    var retransmitLimit: Int {
        settings.retransmitMult * Int(ceil(log10(Double(clusterSize + 1))))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Join and leave

    /// Starts joining through `seeds` (addresses); retried with backoff until one answers.
    public mutating func join(seeds: [String], now: Instant) -> [MembershipDirective] {
        self.now = now
        joinSeeds = seeds.filter { $0 != myself.address }
        guard !joinSeeds.isEmpty else { return [] }
        joined = false
        synced = false
        nextJoinAt = now
        return onTick(now: now)
    }

    /// Leaves gracefully: tells members directly and by gossip, then stops probing.
    /// The shell keeps the loop running a little while so the notice spreads.
    public mutating func leave(now: Instant) -> [MembershipDirective] {
        self.now = now
        var out: [MembershipDirective] = []
        guard !leaving else { return out }
        leaving = true
        myself.status = .left
        let notice = SwimMessage.leave(name: myself.name, incarnation: myself.incarnation)
        broadcasts.enqueue(notice)
        for m in names.compactMap({ members[$0] }) where m.status.isLive {
            out.append(.send(to: m.state.address, Packet([notice])))
            stats.messagesOut += 1
        }
        probes.removeAll()
        return out
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Timers

    public mutating func onTick(now: Instant) -> [MembershipDirective] {
        self.now = now
        var out: [MembershipDirective] = []
        noticeStall()
        lastTickAt = now

        for target in probes.keys.sorted() {
            guard var p = probes[target] else { continue }
            if !p.acked, !p.indirectSent, now >= p.directDeadline {
                sendIndirectProbes(&p, into: &out)
                probes[target] = p
            }
            if !p.acked, !p.suspected, let r = p.retryDeadline, now >= r, now < p.endsAt {
                suspectEarly(&p, into: &out)
                probes[target] = p
            }
            if now >= p.endsAt { finishProbe(p, into: &out) }
        }
        if watching {
            watch(into: &out)
        } else if now >= nextProbeAt {
            startProbe(into: &out)
        }

        // Sorted: dictionary order differs per process, and the output must not.
        for seq in relays.keys.sorted() where now >= relays[seq]!.nackAt {
            let relay = relays.removeValue(forKey: seq)!
            send([.nack(seq: relay.originalSeq)], to: relay.requester, into: &out)
        }
        for name in suspicions.keys.sorted() where now >= suspicions[name]!.deadline {
            declareDead(name, suspicion: suspicions[name]!, into: &out)
        }
        if now >= nextGossipAt { gossip(into: &out) }
        if now >= nextPushPullAt { periodicPushPull(into: &out) }
        if now >= nextDeadRetryAt { retryDead(into: &out) }
        if let j = nextJoinAt, now >= j { attemptJoin(into: &out) }
        if now >= nextReapAt { reap() }
        return out
    }

    private mutating func noticeStall() {
        guard let last = lastTickAt, now - last > settings.stallThreshold else { return }
        let gap = now - last
        stats.stalls += 1
        awareness = min(settings.awarenessMaxMultiplier - 1, awareness + 1)
        for target in probes.keys {
            probes[target]!.directDeadline = probes[target]!.directDeadline + gap
            probes[target]!.endsAt = probes[target]!.endsAt + gap
            probes[target]!.retryDeadline = probes[target]!.retryDeadline.map { $0 + gap }
        }
        nextProbeAt = nextProbeAt + gap
        for name in suspicions.keys { suspicions[name]!.postpone(by: gap) }
        for seq in relays.keys { relays[seq]!.nackAt = relays[seq]!.nackAt + gap }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Probing (SWIM §3.1, Lifeguard §IV-A)

    private mutating func startProbe(into out: inout [MembershipDirective]) {
        let interval = scaled(settings.probeInterval)
        nextProbeAt = now + interval
        probes.removeAll()  // classic SWIM: a probe ends where the next begins
        guard !leaving, let target = nextProbeTarget() else { return }
        startProbe(of: target, directTimeout: scaled(settings.probeTimeout), endsAt: nextProbeAt, into: &out)
    }

    private mutating func startProbe(
        of target: String, directTimeout: Duration, endsAt: Instant,
        into out: inout [MembershipDirective]
    ) {
        let member = members[target]!
        let seq = nextSequence()
        probes[target] = ProbeInFlight(
            seq: seq, target: target, incarnation: member.incarnation, sentAt: now,
            directDeadline: now + directTimeout, endsAt: endsAt)
        lastProbedAt[target] = now
        stats.probes += 1
        // Buddy rule (Lifeguard §IV-C): a suspect hears of its suspicion from whoever probes it.
        send(
            [.ping(seq: seq, target: target)], to: member.state.address, into: &out,
            about: member.status == .suspect ? member : nil)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: The watched ring (`watchers` > 0)

    var watching: Bool { settings.watchers > 0 }

    /// This node's ring neighbours among live members sorted by name: ⌈k/2⌉ after it and ⌊k/2⌋
    /// before, so with k even "a watches b" is "b watches a" and one ping-ack serves both.
    public func watchedMembers() -> [String] {
        var ring = names.filter { members[$0]?.status.isLive ?? false }
        guard ring.count > settings.watchers else { return ring }
        let mine = insertionIndex(in: ring, myself.name)
        ring.insert(myself.name, at: mine)
        var picked: [String] = []
        let after = (settings.watchers + 1) / 2
        for step in 1...after { picked.append(ring[(mine + step) % ring.count]) }
        for step in 0..<(settings.watchers - after) { picked.append(ring[(mine - step - 1 + ring.count) % ring.count]) }
        return picked
    }

    /// When `name` needs a ping. The lower name of a pair pings it every `probeInterval`; the
    /// higher one only hears those pings and pings back only if they stop (a quarter interval
    /// late), so in a quiet cluster a pair costs one ping and one ack per interval, not two of
    /// each. Anything heard from it counts as such a ping (an ack is heard a round trip after its
    /// ping went out, which is when the pair's clock started). Never twice within an interval,
    /// so a failed probe is not repeated in a loop.
    func watchDue(_ name: String) -> Instant {
        let interval = scaled(settings.probeInterval)
        let heard = lastHeard[name] ?? members[name]?.statusChangedAt ?? now
        let roundTrip: Duration = rtt[name]?.srtt ?? .zero
        let wait: Duration = myself.name < name ? interval - roundTrip : interval * 1.15
        let due = heard + wait
        guard let probed = lastProbedAt[name] else { return due }
        return max(due, probed + interval)
    }

    private mutating func watch(into out: inout [MembershipDirective]) {
        guard !leaving else { return }
        for name in watchedMembers() where probes[name] == nil && now >= watchDue(name) {
            startWatchProbe(of: name, into: &out)
        }
    }

    private mutating func startWatchProbe(of name: String, into out: inout [MembershipDirective]) {
        let direct = scaled(directTimeout(to: name))
        let indirect = direct + (rtt[name]?.srtt ?? direct) + settings.rttSlack
        startProbe(of: name, directTimeout: direct, endsAt: now + direct + scaled(indirect), into: &out)
    }

    /// The direct ping's timeout: from the round trips measured to `name` (else from Vivaldi,
    /// else the profile's fixed `probeTimeout`).
    public func directTimeout(to name: String) -> Duration {
        guard watching else { return settings.probeTimeout }
        let estimate: Duration
        if let r = rtt[name] {
            estimate = r.srtt + r.rttvar * 4
        } else if let farthest = rtt.values.map({ $0.srtt + $0.rttvar * 4 }).max() {
            // Not measured yet (not one of ours to watch): no nearer than the farthest we know.
            estimate = farthest
        } else if let c = members[name]?.coordinate, vivaldi.coordinate.error < 0.5 {
            estimate = vivaldi.coordinate.distance(to: c) * 1.5
        } else {
            return settings.probeTimeout
        }
        return min(settings.probeTimeout, max(settings.probeTimeoutMin, estimate + settings.rttSlack))
    }

    /// The round trip measured to `name`, if any (smoothed).
    public func measuredRTT(to name: String) -> Duration? { rtt[name]?.srtt }

    /// The shell saw a peer connection to `address` close (a killed process's kernel closes
    /// its sockets): with `watchers`, probe that member now rather than at its next turn. It is
    /// only a probe; nothing is concluded without failed pings.
    public mutating func onLinkLost(address: String, now: Instant) -> [MembershipDirective] {
        self.now = now
        var out: [MembershipDirective] = []
        guard watching, !leaving, let name = nameByAddress[address], let m = members[name], m.status.isLive,
            probes[name] == nil
        else { return out }
        startWatchProbe(of: name, into: &out)
        return out
    }

    /// Round-robin over live members in a random order, reshuffled each lap (SWIM §4.3), so
    /// every member is probed within a bounded time.
    ///
    /// A suspect jumps the queue, once per suspicion, even for the node that raised it. If it is
    /// alive, the buddy rule puts the suspicion on our ping and its ack carries the refutation
    /// back, so a node that missed the refutation gossip cannot sit on the suspicion until it
    /// expires (a false death). If it is dead, our failed probe is an independent confirmation
    /// that shortens the suspicion.
    private mutating func nextProbeTarget() -> String? {
        while !suspectsToProbe.isEmpty {
            let name = suspectsToProbe.removeFirst()
            if members[name]?.status == .suspect { return name }
        }
        for _ in 0..<(probeRing.count + 1) {
            if probeCursor >= probeRing.count {
                probeRing = names.filter { members[$0]?.status.isLive ?? false }
                probeRing.shuffle(using: &rng)
                probeCursor = 0
                if probeRing.isEmpty { return nil }
            }
            let name = probeRing[probeCursor]
            probeCursor += 1
            if let m = members[name], m.status.isLive { return name }
        }
        return nil
    }

    private mutating func sendIndirectProbes(_ p: inout ProbeInFlight, into out: inout [MembershipDirective]) {
        p.indirectSent = true
        guard let target = members[p.target] else { return }
        if watching {
            // One lost datagram must not start a suspicion: ask the target again ourselves too.
            p.retried = true
            p.retryDeadline = now + (p.directDeadline - p.sentAt)
            send([.ping(seq: p.seq, target: p.target)], to: target.state.address, into: &out)
        }
        let probed = p.target
        for helper in randomMembers(settings.indirectChecks, where: { $0.status == .alive && $0.name != probed }) {
            send(
                [.pingReq(seq: p.seq, target: p.target, targetAddress: target.state.address)],
                to: helper.state.address, into: &out)
            stats.indirectProbes += 1
            p.expectedNacks += 1
        }
    }

    private mutating func finishProbe(_ p: ProbeInFlight, into out: inout [MembershipDirective]) {
        if probes[p.target]?.seq == p.seq { probes[p.target] = nil }
        if p.acked { return }
        // Lifeguard: missing nacks mean the trouble may be ours, so grow our own timeouts.
        let delta = p.expectedNacks > 0 ? max(0, p.expectedNacks - p.nacks) : 1
        awareness = min(settings.awarenessMaxMultiplier - 1, awareness + delta)
        // Suspect the incarnation that was probed, not the current one: if the member refuted, or
        // died and came back, while this probe was in flight, the newer incarnation never failed a
        // probe (the ping may have gone to the old process), and suspecting it would be false.
        guard let m = members[p.target], m.status.isLive, m.incarnation == p.incarnation else { return }
        if !p.suspected {
            if m.status == .alive { stats.suspicionsRaised += 1 }
            accuse(p.target, incarnation: p.incarnation, from: myself.name, into: &out)
        }
        if watching {
            // A helper's nack says it pinged the target itself and got nothing back: an
            // independent failure, so it confirms the suspicion (gossiped in the helper's name,
            // which is what it observed) without a second full probe a round trip later.
            for helper in p.nackers where members[helper]?.status == .alive {
                accuse(p.target, incarnation: p.incarnation, from: helper, into: &out)
            }
        }
    }

    /// With `watchers`: the direct ping and its resend both went unanswered (each waited the
    /// timeout the measured round trip allows), so the suspicion starts now rather than when the
    /// helpers' answers are due a round trip later; their nacks confirm it as they arrive and a
    /// relayed ack changes nothing already said (the suspect, told at once, refutes). The death
    /// still needs what it needed before — an independent failure (a helper's nack or another
    /// node's probe) and no refutation within `suspicionMin` — it only starts its clock one
    /// helper round trip sooner (~0.2 s of the ~1.2 s it took at 80 ms one way).
    private mutating func suspectEarly(_ p: inout ProbeInFlight, into out: inout [MembershipDirective]) {
        p.suspected = true
        guard let m = members[p.target], m.status.isLive, m.incarnation == p.incarnation else { return }
        if m.status == .alive { stats.suspicionsRaised += 1 }
        accuse(p.target, incarnation: p.incarnation, from: myself.name, into: &out)
        for helper in p.nackers where members[helper]?.status == .alive {
            accuse(p.target, incarnation: p.incarnation, from: helper, into: &out)
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Packets

    /// Handles one datagram from `from` (the sender's gossip address).
    public mutating func onPacket(_ packet: Packet, from: String, now: Instant) -> [MembershipDirective] {
        self.now = now
        var out: [MembershipDirective] = []
        stats.messagesIn += packet.messages.count
        let sender = watching ? nameByAddress[from].flatMap { members[$0] != nil ? $0 : nil } : nil
        if let name = sender { lastHeard[name] = now }
        // Updates first: a ping that carries "you are dead" must be answered by the refutation.
        for m in packet.messages { applyUpdate(m, into: &out) }
        // A member we still hold dead just spoke to us (a healed partition: its dead-retry ping
        // reached us): show it its death notice now, so it refutes within a round trip rather
        // than when our one-at-a-time dead retries come round to it.
        if let name = sender, let m = members[name], m.status == .dead, !leaving,
            lastProbedAt[name].map({ now - $0 >= settings.deadRetryInterval }) ?? true
        {
            lastProbedAt[name] = now
            stats.deadRetries += 1
            send([.ping(seq: nextSequence(), target: name)], to: m.state.address, into: &out, about: m)
        }
        for m in packet.messages { applyControl(m, from: from, into: &out) }
        return out
    }

    private mutating func applyUpdate(_ m: SwimMessage, into out: inout [MembershipDirective]) {
        switch m {
        case .alive(let s): handleAlive(s, into: &out)
        case .suspect(let name, let inc, let from): handleSuspect(name, incarnation: inc, from: from, into: &out)
        case .dead(let name, let inc, let from): handleDead(name, incarnation: inc, from: from, into: &out)
        case .leave(let name, let inc): handleLeave(name, incarnation: inc, into: &out)
        case .ping, .ack, .nack, .pingReq: break
        }
    }

    private mutating func applyControl(_ m: SwimMessage, from: String, into out: inout [MembershipDirective]) {
        switch m {
        case .ping(let seq, let target):
            guard target == myself.name else {
                stats.pingsForOthers += 1
                return
            }
            let sender = nameByAddress[from].flatMap { members[$0] }
            let about = sender.flatMap { $0.status == .alive ? nil : $0 }
            send([.ack(seq: seq, forwarded: false, coordinate: vivaldi.coordinate)], to: from, into: &out, about: about)

        case .ack(let seq, let forwarded, let coordinate):
            if var p = probes.values.first(where: { $0.seq == seq }), !p.acked {
                p.acked = true
                // Classic SWIM keeps the probe until its period ends (the next one starts then);
                // a watcher is done, and its next ping is due an interval after this answer.
                probes[p.target] = watching ? nil : p
                stats.acks += 1
                awareness = max(0, awareness - 1)
                let direct = !forwarded && members[p.target]?.state.address == from
                if direct && !p.retried && watching {
                    // Karn's rule: an ack to a resent ping is no sample (which ping did it answer?).
                    let sample = now - p.sentAt
                    if rtt[p.target] == nil { rtt[p.target] = RTTEstimate(first: sample) } else { rtt[p.target]!.add(sample) }
                }
                if direct, let c = coordinate {
                    vivaldi.observe(rtt: now - p.sentAt, from: p.target, peerCoordinate: c, rng: &rng)
                    members[p.target]?.coordinate = c
                }
            } else if let relay = relays.removeValue(forKey: seq) {
                send([.ack(seq: relay.originalSeq, forwarded: true, coordinate: nil)], to: relay.requester, into: &out)
            }

        case .nack(let seq):
            if var p = probes.values.first(where: { $0.seq == seq }) {
                p.nacks += 1
                if let helper = nameByAddress[from], !p.nackers.contains(helper) {
                    p.nackers.append(helper)
                    // The suspicion is out already: this helper's failure confirms it now.
                    if p.suspected, !p.acked, members[helper]?.status == .alive, members[p.target]?.incarnation == p.incarnation {
                        accuse(p.target, incarnation: p.incarnation, from: helper, into: &out)
                    }
                }
                probes[p.target] = p
                stats.nacks += 1
            }

        case .pingReq(let seq, let target, let targetAddress):
            guard relays.count < MembershipInstance.maxRelays, target != myself.name else { return }
            let relaySeq = nextSequence()
            // With `watchers` the requester allows a round trip to us plus our direct timeout.
            let wait = watching ? directTimeout(to: target) : settings.probeTimeout * 0.8
            relays[relaySeq] = IndirectRelay(originalSeq: seq, requester: from, nackAt: now + wait)
            stats.indirectRelays += 1
            send([.ping(seq: relaySeq, target: target)], to: targetAddress, into: &out)

        case .alive, .suspect, .dead, .leave: break
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Membership updates (SWIM §4.2 suspicion, §4.4 incarnations)

    private mutating func handleAlive(_ s: MemberState, into out: inout [MembershipDirective]) {
        if s.name == myself.name {
            // Someone holds a newer or different "me" (a previous life, or a name clash).
            if !leaving,
                s.incarnation > myself.incarnation
                    || (s.incarnation == myself.incarnation && (s.address != myself.address || s.meta != myself.meta))
            {
                refute(seen: s.incarnation, into: &out)
            }
            return
        }
        var state = s
        state.status = .alive
        guard var m = members[s.name] else {
            guard !leaving else { return }
            guard members.count < MembershipInstance.maxMembers else { return }
            store(Member(state: state, statusChangedAt: now, coordinate: nil))
            nameByAddress[s.address] = s.name
            addToProbeRing(s.name)
            broadcast(.alive(state))
            out.append(.memberChanged(state, previous: nil))
            return
        }
        // Only a higher incarnation overrides: at equal incarnation suspect/dead/left win.
        guard s.incarnation > m.incarnation else { return }
        // memberlist's rule: a live member does not move to another address (two processes
        // claiming one name would flip it back and forth); once dead or left, it may.
        if m.status.isLive && m.state.address != s.address {
            stats.addressConflicts += 1
            return
        }
        let previous = m.status
        let deadIncarnation = m.incarnation
        if m.state.address != s.address {
            nameByAddress[m.state.address] = nil
            nameByAddress[s.address] = s.name
        }
        let returned = state.meta.returned > m.state.meta.returned
        if returned { m.returnedAt = now }
        m.state = state
        if previous != .alive { m.statusChangedAt = now }
        store(m)
        suspicions[s.name] = nil
        broadcast(.alive(state))
        if previous != .alive || returned { out.append(.memberChanged(state, previous: previous)) }
        if previous == .dead || previous == .left {
            // Back from the dead: sync whole views both ways at once rather than on the next period.
            out.append(.pushPull(to: s.address, join: false))
            stats.pushPulls += 1
            addToProbeRing(s.name)
        }
        if previous == .dead && !leaving {
            // It may have refuted a suspicion without ever hearing of the death that followed
            // (its refutation crossed our notice): tell it, so that it holds itself down in
            // routing as we now do (`returnedAt`). Old news to its membership (no new refutation).
            stats.messagesOut += 1
            out.append(.send(to: s.address, Packet([.dead(name: s.name, incarnation: deadIncarnation, from: myself.name)])))
        }
    }

    private mutating func handleSuspect(
        _ name: String, incarnation inc: UInt64, from: String,
        into out: inout [MembershipDirective]
    ) {
        if name == myself.name {
            if !leaving { refute(seen: inc, into: &out) }
            return
        }
        guard var m = members[name], inc >= m.incarnation, m.status.isLive else { return }
        if m.status == .suspect, inc == m.incarnation, var s = suspicions[name] {
            if s.confirm(from) {
                suspicions[name] = s
                stats.confirmations += 1
                broadcast(.suspect(name: name, incarnation: inc, from: from))
            }
            return
        }
        let previous = m.status
        m.state.incarnation = inc
        m.state.status = .suspect
        m.statusChangedAt = now
        store(m)
        let n = clusterSize
        if watching {
            // Two nodes that each failed to reach it (direct, resent and through helpers) bring
            // it to `suspicionMin`; a lone accuser (or no one left to confirm) waits the long one.
            let wanted = min(settings.suspicionConfirmations, max(0, n - 2))
            // The accuser starts its clock a one-way trip before anyone else hears of it: it waits
            // that much longer, so that every node's clock runs out together and each has had
            // the same time (`suspicionMin` less a one-way trip) to hear the suspect's
            // refutation. (The 15-node, 80 ms, 10 % loss simulation found an accuser that waited
            // only `suspicionMin`: the refutation's direct copy to it was lost and another path
            // brought it 16 ms late. Waiting a whole round trip more, as this did before, made the
            // accuser the last to know — 80 ms of every detection at 80 ms one way.)
            let oneWay = (rtt[name]?.srtt ?? directTimeout(to: name)) / 2
            let minimum = from == myself.name ? settings.suspicionMin + oneWay : settings.suspicionMin
            suspicions[name] = Suspicion(
                incarnation: inc, from: from, now: now,
                minTimeout: wanted == 0 ? settings.suspicionMax : minimum,
                maxTimeout: settings.suspicionMax, wanted: wanted)
        } else {
            var wanted = Int(settings.suspicionMult) - 2
            if n - 2 < wanted { wanted = 0 }
            let minTimeout = Suspicion.minTimeout(settings: settings, clusterSize: n)
            suspicions[name] = Suspicion(
                incarnation: inc, from: from, now: now, minTimeout: minTimeout,
                maxTimeout: minTimeout * settings.suspicionMaxTimeoutMult, wanted: wanted)
        }
        broadcast(.suspect(name: name, incarnation: inc, from: from))
        if previous != .suspect { out.append(.memberChanged(m.state, previous: previous)) }
        if !watching {
            if !suspectsToProbe.contains(name) { suspectsToProbe.append(name) }
        } else if from == myself.name {
            // Tell the suspect at once, so it refutes within a round trip if it is alive (twice:
            // losing this one datagram costs the suspect a round trip of its `suspicionMin`).
            send([], to: m.state.address, into: &out, about: members[name])
            if let notice = notice(for: members[name]!) {
                stats.messagesOut += 1
                out.append(.send(to: m.state.address, Packet([notice])))
            }
        } else if probes[name] == nil && !leaving {
            // Everyone who hears of a suspicion probes the suspect once, out of turn: a live one
            // hears of it from each ping (buddy rule) and refutes, a dead one is confirmed fast.
            startWatchProbe(of: name, into: &out)
        }
    }

    private mutating func declareDead(_ name: String, suspicion s: Suspicion, into out: inout [MembershipDirective]) {
        suspicions[name] = nil
        guard let m = members[name], m.status == .suspect, m.incarnation == s.incarnation else { return }
        stats.deathsDeclared += 1
        handleDead(name, incarnation: s.incarnation, from: myself.name, into: &out)
        if watching { tellEveryone(.dead(name: name, incarnation: s.incarnation, from: myself.name), except: name, into: &out) }
    }

    /// A failed probe of this node's accuses `name` in `from`'s name (this node's, or a helper's
    /// that nacked). With `watchers` a new suspicion or confirmation goes to every live member
    /// at once, not to three random ones per gossip round: each node's suspicion clock starts
    /// when it hears, and a node that hears a gossip round late declares the death that much
    /// later (5 nodes, 80 ms one way: the first death came ~0.43 s after the suspicion where
    /// ~0.38 s was due). At most a few datagrams per member per suspicion, and suspicions are
    /// rare at rest.
    private mutating func accuse(_ name: String, incarnation inc: UInt64, from: String, into out: inout [MembershipDirective]) {
        let before = suspicions[name].map { ($0.incarnation, $0.confirmers.count) }
        handleSuspect(name, incarnation: inc, from: from, into: &out)
        let after = suspicions[name].map { ($0.incarnation, $0.confirmers.count) }
        guard watching, let after, before.map({ $0 != after }) ?? true else { return }
        tellEveryone(.suspect(name: name, incarnation: inc, from: from), except: name, into: &out)
    }

    /// Sends `message` alone to every live member but `subject` (at most 64).
    private mutating func tellEveryone(_ message: SwimMessage, except subject: String, into out: inout [MembershipDirective]) {
        for m in names.compactMap({ members[$0] }).prefix(64) where m.status.isLive && m.name != subject {
            stats.messagesOut += 1
            out.append(.send(to: m.state.address, Packet([message])))
        }
    }

    private mutating func handleDead(
        _ name: String, incarnation inc: UInt64, from: String,
        into out: inout [MembershipDirective]
    ) {
        if name == myself.name {
            if !leaving { refuteDeath(at: inc, into: &out) }
            return
        }
        guard var m = members[name], inc >= m.incarnation, m.status.isLive else { return }
        let previous = m.status
        m.state.incarnation = inc
        m.state.status = .dead
        m.statusChangedAt = now
        store(m)
        suspicions[name] = nil
        vivaldi.forget(name)
        broadcast(.dead(name: name, incarnation: inc, from: from))
        out.append(.memberChanged(m.state, previous: previous))
    }

    /// Someone declared this node dead at `inc`. The first notice of a death of this life is
    /// when the others start holding it down; later copies (dead-member retries, gossip) and
    /// deaths of a previous life are not. Not "at the current incarnation": a node back from a
    /// stall often reads a suspicion first, refutes it (a higher incarnation), and only then the
    /// death that followed it.
    ///
    /// The first notice is answered with a new incarnation that says so (`meta.returned`), even
    /// when this node already refuted the suspicion before it: the others then hold it down from
    /// about the same moment, whether or not they applied the death themselves.
    private mutating func refuteDeath(at inc: UInt64, into out: inout [MembershipDirective]) {
        guard inc >= startIncarnation, inc > deathSeen || deathSeen == 0 else {
            refute(seen: inc, into: &out)
            return
        }
        deathSeen = inc
        returnedAt = now
        refute(seen: max(inc, myself.incarnation), returned: true, into: &out)
    }

    private mutating func handleLeave(_ name: String, incarnation inc: UInt64, into out: inout [MembershipDirective]) {
        if name == myself.name {
            if !leaving && inc >= myself.incarnation { refute(seen: inc, into: &out) }
            return
        }
        guard var m = members[name], inc >= m.incarnation, m.status != .left else { return }
        let previous = m.status
        m.state.incarnation = inc
        m.state.status = .left
        m.statusChangedAt = now
        store(m)
        suspicions[name] = nil
        broadcast(.leave(name: name, incarnation: inc))
        out.append(.memberChanged(m.state, previous: previous))
    }

    /// SWIM §4.2: only the member itself may clear a suspicion, by announcing a higher
    /// incarnation. A stale rumour (older incarnation) is answered by re-announcing the current one.
    private mutating func refute(seen inc: UInt64, returned: Bool = false, into out: inout [MembershipDirective]) {
        if inc >= myself.incarnation {
            myself.incarnation = inc + 1
            if returned { myself.meta.returned = myself.incarnation }
            stats.refutations += 1
            // Lifeguard: being suspected hints that we are the slow one.
            awareness = min(settings.awarenessMaxMultiplier - 1, awareness + 1)
            out.append(.persistIncarnation(myself.incarnation))
            if watching {
                // A suspicion may end in a death within `suspicionMin`: tell every member at
                // once (a few datagrams, rarely) rather than a few at a time by gossip.
                // Twice each: a lost copy leaves a member to gossip, which may come too late. Members
                // we hold dead too: whoever told us of our death may be back from a partition.
                for m in names.compactMap({ members[$0] }).prefix(64) where m.status != .left {
                    stats.messagesOut += 2
                    out.append(.send(to: m.state.address, Packet([.alive(myself)])))
                    out.append(.send(to: m.state.address, Packet([.alive(myself)])))
                }
            }
        }
        broadcast(.alive(myself))
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Dissemination

    private mutating func broadcast(_ m: SwimMessage) {
        broadcasts.enqueue(m)
        // Fresh news goes out now (rate-limited) instead of waiting for the next gossip period.
        nextGossipAt = min(nextGossipAt, max(now, lastGossipAt + settings.gossipMinGap))
    }

    /// Sends `control` to `address` with as many queued updates as fit. `about`: a member whose
    /// current state (suspect/dead) must ride first — it is news to that member itself.
    private mutating func send(
        _ control: [SwimMessage], to address: String, into out: inout [MembershipDirective],
        about: Member? = nil
    ) {
        var messages = control
        var budget = Packet.maxSize - Packet.headerSize - control.reduce(0) { $0 + Packet.encodedSize($1) }
        var skip: String?
        if let m = about, let notice = notice(for: m) {
            messages.append(notice)
            budget -= Packet.encodedSize(notice)
            skip = m.name
        }
        messages += broadcasts.take(budget: budget, limit: retransmitLimit, skipping: skip)
        stats.messagesOut += messages.count
        out.append(.send(to: address, Packet(messages)))
    }

    private func notice(for m: Member) -> SwimMessage? {
        switch m.status {
        case .suspect: .suspect(name: m.name, incarnation: m.incarnation, from: myself.name)
        case .dead: .dead(name: m.name, incarnation: m.incarnation, from: myself.name)
        case .alive, .left: nil
        }
    }

    private mutating func gossip(into out: inout [MembershipDirective]) {
        nextGossipAt = now + settings.gossipInterval
        guard !broadcasts.isEmpty else { return }
        lastGossipAt = now
        for target in randomMembers(settings.gossipNodes, where: { $0.status.isLive }) {
            let messages = broadcasts.take(budget: Packet.maxSize - Packet.headerSize, limit: retransmitLimit)
            guard !messages.isEmpty else { break }
            stats.messagesOut += messages.count
            out.append(.send(to: target.state.address, Packet(messages)))
        }
    }

    /// Pings one dead member, its death notice piggybacked: if it is back it refutes in the ack.
    private mutating func retryDead(into out: inout [MembershipDirective]) {
        nextDeadRetryAt = now + settings.deadRetryInterval
        guard !leaving, deadOthers > 0 else { return }
        let (now, retain) = (self.now, settings.deadRetainTime)
        guard let target = randomMembers(1, where: { $0.status == .dead && now - $0.statusChangedAt < retain }).first
        else { return }
        stats.deadRetries += 1
        send([.ping(seq: nextSequence(), target: target.name)], to: target.state.address, into: &out, about: target)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Push-pull state sync (over the shell's TCP)

    private mutating func periodicPushPull(into out: inout [MembershipDirective]) {
        let n = clusterSize
        // memberlist's scaling: past 32 members, sync less often so total load stays flat.
        let scale = n <= 32 ? 1.0 : ceil(log2(Double(n)) - log2(32.0)) + 1
        nextPushPullAt = now + settings.pushPullInterval * scale
        guard !leaving else { return }
        guard let target = randomMembers(1, where: { $0.status == .alive }).first else { return }
        stats.pushPulls += 1
        out.append(.pushPull(to: target.state.address, join: false))
    }

    private mutating func attemptJoin(into out: inout [MembershipDirective]) {
        guard !joined else {
            nextJoinAt = nil
            return
        }
        for seed in joinSeeds {
            stats.pushPulls += 1
            out.append(.pushPull(to: seed, join: true))
        }
        nextJoinAt = now + joinBackoff
        joinBackoff = min(settings.joinRetryMax, joinBackoff * 2)
    }

    /// The message this node sends in a push-pull exchange.
    public func pushPullMessage(join: Bool) -> PushPullMessage {
        PushPullMessage(join: join, senderName: myself.name, states: memberStates)
    }

    /// Another node opened a push-pull: merge its view and answer with ours (after the merge, so
    /// any refutation it provoked is in the answer).
    public mutating func onPushPullRequest(_ message: PushPullMessage, from: String, now: Instant)
        -> (reply: PushPullMessage, directives: [MembershipDirective])
    {
        self.now = now
        var out: [MembershipDirective] = []
        merge(message, into: &out)
        return (pushPullMessage(join: false), out)
    }

    public mutating func onPushPullResponse(
        _ message: PushPullMessage, from: String, join: Bool,
        now: Instant
    ) -> [MembershipDirective] {
        self.now = now
        var out: [MembershipDirective] = []
        guard message.senderName != myself.name else { return out }  // a seed that was ourselves
        merge(message, into: &out)
        if join && !joined {
            joined = true
            nextJoinAt = nil
        }
        return out
    }

    public mutating func onPushPullFailed(to: String, join: Bool, now: Instant) -> [MembershipDirective] {
        self.now = now
        stats.pushPullFailures += 1
        return []
    }

    /// memberlist's merge rules: a remote "dead" becomes a local suspicion, so one node's stale
    /// view cannot kill a member that others can still reach; it must be confirmed by probing.
    /// Synced, or alone long enough (`pushPullInterval`) that there is nobody to sync with.
    public func isSynced(now: Instant) -> Bool { synced || now - startedAt >= settings.pushPullInterval }

    private mutating func merge(_ message: PushPullMessage, into out: inout [MembershipDirective]) {
        if !synced && restarted { returnedAt = now }
        synced = true
        for s in message.states {
            switch s.status {
            case .alive:
                handleAlive(s, into: &out)
            case .suspect, .dead:
                if s.name == myself.name {
                    if !leaving && s.status == .dead { refuteDeath(at: s.incarnation, into: &out) }
                    if !leaving && s.status == .suspect { refute(seen: s.incarnation, into: &out) }
                } else if members[s.name] != nil {
                    handleSuspect(s.name, incarnation: s.incarnation, from: message.senderName, into: &out)
                } else if s.status == .suspect {
                    // A member we never heard of, suspected over there: still a member (a
                    // suspicion is not a failure, and routing still serves it). Ignoring it, as
                    // memberlist does, left a node that (re)joined while a peer was suspected
                    // without that peer until it refuted — "synced", yet routing from a view
                    // missing a live member (chaos check seed 973408, after a restart).
                    var alive = s
                    alive.status = .alive
                    handleAlive(alive, into: &out)
                    handleSuspect(s.name, incarnation: s.incarnation, from: message.senderName, into: &out)
                }
            case .left:
                handleLeave(s.name, incarnation: s.incarnation, into: &out)
            }
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Housekeeping

    private mutating func reap() {
        nextReapAt = now + .seconds(1)
        for m in members.values {
            let age = now - m.statusChangedAt
            let expired =
                (m.status == .dead && age > settings.deadRetainTime)
                || (m.status == .left && age > settings.leftRetainTime)
            if expired {
                forget(m.name)
                if nameByAddress[m.state.address] == m.name { nameByAddress[m.state.address] = nil }
                vivaldi.forget(m.name)
            }
        }
    }

    /// New and returning members join the current lap at a random place (SWIM §4.3).
    private mutating func addToProbeRing(_ name: String) {
        guard !probeRing.contains(name) else { return }
        probeRing.insert(name, at: Int.random(in: 0...probeRing.count, using: &rng))
    }

    private mutating func store(_ m: Member) {
        if let old = members.updateValue(m, forKey: m.name) {
            count(old.status, -1)
        } else {
            names.insert(m.name, at: insertionIndex(m.name))
        }
        count(m.status, 1)
    }

    private mutating func forget(_ name: String) {
        guard let old = members.removeValue(forKey: name) else { return }
        count(old.status, -1)
        let i = insertionIndex(name)
        if i < names.count && names[i] == name { names.remove(at: i) }
        probeRing.removeAll { $0 == name }
        probeCursor = min(probeCursor, probeRing.count)
        lastHeard[name] = nil
        lastProbedAt[name] = nil
        rtt[name] = nil
    }

    private mutating func count(_ status: MemberStatus, _ delta: Int) {
        if status.isLive { liveOthers += delta } else if status == .dead { deadOthers += delta }
    }

    private func insertionIndex(_ name: String) -> Int { insertionIndex(in: names, name) }

    private func insertionIndex(in sorted: [String], _ name: String) -> Int {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < name { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Up to `k` distinct members matching `predicate`, chosen uniformly at random.
    private mutating func randomMembers(_ k: Int, where predicate: (Member) -> Bool) -> [Member] {
        var candidates = names.compactMap { members[$0] }.filter(predicate)
        let take = min(k, candidates.count)
        for i in 0..<take { candidates.swapAt(i, Int.random(in: i..<candidates.count, using: &rng)) }
        return Array(candidates.prefix(take))
    }

    private mutating func nextSequence() -> UInt32 {
        sequence &+= 1
        return sequence
    }
}
