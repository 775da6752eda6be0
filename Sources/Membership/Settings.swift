/// Timing and limits of the membership protocol. Each profile states the network it assumes.
public struct MembershipSettings: Sendable, Equatable {
    /// Time between probes of one member (SWIM's protocol period), before Lifeguard scaling.
    public var probeInterval: Duration
    /// How long a direct ping waits for its ack before ping-req helpers are asked.
    public var probeTimeout: Duration
    /// How many helpers a failed direct ping asks (SWIM's k).
    public var indirectChecks: Int
    /// Suspicion lasts `suspicionMult × max(1, log10(n)) × probeInterval` at least (Lifeguard).
    public var suspicionMult: Double
    /// …and at most `suspicionMaxTimeoutMult` times that, shrinking as confirmations arrive.
    public var suspicionMaxTimeoutMult: Double
    /// Each update is retransmitted `retransmitMult × ceil(log10(n + 1))` times.
    public var retransmitMult: Int
    /// How often queued updates are gossiped to `gossipNodes` random members.
    public var gossipInterval: Duration
    public var gossipNodes: Int
    /// Fresh updates go out at once, but no more often than this (bounds bursts).
    public var gossipMinGap: Duration
    /// Full-state sync with one random member (over TCP), scaled up past 32 members.
    public var pushPullInterval: Duration
    /// Lifeguard's local health multiplier ceiling (timeouts stretch up to this factor).
    public var awarenessMaxMultiplier: Int
    /// How often one dead member is pinged, so a healed partition or a restarted node rejoins
    /// within about this time rather than on a slow reconnect timer.
    public var deadRetryInterval: Duration
    /// How long dead members are kept and retried before they are forgotten.
    public var deadRetainTime: Duration
    /// How long left members are remembered (so stale gossip cannot resurrect them).
    public var leftRetainTime: Duration
    /// Join retries back off from `joinRetryMin` doubling up to `joinRetryMax`.
    public var joinRetryMin: Duration
    public var joinRetryMax: Duration
    /// A gap between ticks longer than this means this process was stalled (SIGSTOP, swap,
    /// a long GC-like pause): pending timeouts are pushed back so a stalled node reads its
    /// inbox before it judges anyone.
    public var stallThreshold: Duration
    /// A push-pull exchange (TCP) that has not answered by then has failed.
    public var pushPullTimeout: Duration
    /// After announcing its leave, a node keeps gossiping this long before it exits.
    public var leaveGrace: Duration

    // The watched-ring detector (the `region` profile). Zero/nil: classic SWIM, as memberlist.

    /// 0: classic SWIM, one probe per `probeInterval`, round robin over every member.
    /// k > 0: each node watches only its k neighbours on the ring of live members sorted by name
    /// (half on each side), each at most every `probeInterval`, so every member is watched by k
    /// others whatever the cluster's size, and a node sends about k/`probeInterval` pings a second.
    public var watchers: Int = 0
    /// With `watchers`: the direct ping's timeout is the measured round trip to the target
    /// (smoothed, plus 4 deviations, TCP's rule) plus this, within `probeTimeoutMin`…`probeTimeout`.
    public var rttSlack: Duration = .zero
    public var probeTimeoutMin: Duration = .zero
    /// With `watchers`: fixed suspicion bounds instead of the `probeInterval` multiples, and the
    /// independent confirmations that bring a suspicion from `suspicionMax` down to `suspicionMin`.
    public var suspicionMin: Duration = .zero
    public var suspicionMax: Duration = .zero
    public var suspicionConfirmations = 0

    /// The default: sub-second failover between regions 20–80 ms apart one way, for a few
    /// packets a second per node (see `region`'s numbers below).
    public static let standard = MembershipSettings.region

    /// Regions 20–80 ms apart one way, 3–15 nodes: every member watched by its two ring
    /// neighbours every 400 ms (one ping and one ack per pair: the watched side skips its own
    /// ping while the other's keep arriving), direct timeouts from the measured RTT, and a death
    /// once two nodes have independently failed to reach a member (direct, retried and through
    /// two helpers) and it did not refute within `suspicionMin`.
    ///
    /// Measured (scripts/bench-membership-ns, 5 regions in namespaces; docs/FIGURES.md): kill -9
    /// → dead everywhere p50 0.55 / 0.68 / 0.87–0.92 s at 20 / 40 / 80 ms one way (0 % loss),
    /// 80 ms at 10 % loss p50 1.02 s, max 1.19 s (before the early suspicion and the queue fix:
    /// 0.63 / 0.77 / 1.27 s, and 1.54 s at 10 %). Idle 1.1–2.6 KB/s and 7–12 packets/s per node,
    /// all traffic, depending on the machine's load. 400 ms, not 300: membership is ~5 of the
    /// 7–8 packets a second at rest. `suspicionMin` 250 ms: at 200, 12-seed simulations at 80 ms
    /// and 10 % loss declared 7 live nodes dead in 10 minutes; at 300 and at 250 (the accuser
    /// waiting a one-way trip more, refutations sent twice to everyone, a suspicion only after two
    /// unanswered pings), 0 (12 seeds, 5 and 15 nodes, 10 minutes each). 300 → 250 took the
    /// simulated 80 ms / 10 % loss detection p50 from 1,014 to 978 ms (40 kills).
    public static let region: MembershipSettings = {
        var s = MembershipSettings(
            probeInterval: .milliseconds(400), probeTimeout: .milliseconds(800), indirectChecks: 2,
            suspicionMult: 4, suspicionMaxTimeoutMult: 6, retransmitMult: 4,
            gossipInterval: .milliseconds(200), gossipNodes: 3, gossipMinGap: .milliseconds(5),
            pushPullInterval: .seconds(30), awarenessMaxMultiplier: 8,
            deadRetryInterval: .milliseconds(200), deadRetainTime: .seconds(3600), leftRetainTime: .seconds(600),
            joinRetryMin: .milliseconds(50), joinRetryMax: .seconds(10), stallThreshold: .seconds(1),
            pushPullTimeout: .seconds(2), leaveGrace: .milliseconds(600))
        s.watchers = 2
        s.rttSlack = .milliseconds(25)
        s.probeTimeoutMin = .milliseconds(60)
        s.suspicionMin = .milliseconds(250)
        s.suspicionMax = .milliseconds(3000)
        s.suspicionConfirmations = 1
        return s
    }()

    /// memberlist's LAN numbers: a data-center network.
    public static let lan = MembershipSettings(
        probeInterval: .seconds(1), probeTimeout: .milliseconds(500), indirectChecks: 3,
        suspicionMult: 4, suspicionMaxTimeoutMult: 6, retransmitMult: 4,
        gossipInterval: .milliseconds(200), gossipNodes: 3, gossipMinGap: .milliseconds(10),
        pushPullInterval: .seconds(30), awarenessMaxMultiplier: 8,
        deadRetryInterval: .milliseconds(200), deadRetainTime: .seconds(3600), leftRetainTime: .seconds(600),
        joinRetryMin: .milliseconds(50), joinRetryMax: .seconds(10), stallThreshold: .seconds(2),
        pushPullTimeout: .seconds(2), leaveGrace: .milliseconds(600))

    /// Cross-region links: 50–300 ms RTT, occasional loss.
    public static let wan = MembershipSettings(
        probeInterval: .seconds(5), probeTimeout: .seconds(3), indirectChecks: 3,
        suspicionMult: 6, suspicionMaxTimeoutMult: 6, retransmitMult: 4,
        gossipInterval: .milliseconds(500), gossipNodes: 4, gossipMinGap: .milliseconds(50),
        pushPullInterval: .seconds(60), awarenessMaxMultiplier: 8,
        deadRetryInterval: .seconds(1), deadRetainTime: .seconds(6 * 3600), leftRetainTime: .seconds(600),
        joinRetryMin: .milliseconds(200), joinRetryMax: .seconds(30), stallThreshold: .seconds(10),
        pushPullTimeout: .seconds(10), leaveGrace: .seconds(1))

    /// Sub-second detection on a good network (loopback, one rack): 100 ms probes.
    public static let fast = MembershipSettings(
        probeInterval: .milliseconds(100), probeTimeout: .milliseconds(40), indirectChecks: 3,
        suspicionMult: 3, suspicionMaxTimeoutMult: 6, retransmitMult: 4,
        gossipInterval: .milliseconds(30), gossipNodes: 3, gossipMinGap: .milliseconds(2),
        pushPullInterval: .seconds(5), awarenessMaxMultiplier: 8,
        deadRetryInterval: .milliseconds(50), deadRetainTime: .seconds(3600), leftRetainTime: .seconds(600),
        joinRetryMin: .milliseconds(20), joinRetryMax: .seconds(2), stallThreshold: .milliseconds(500),
        pushPullTimeout: .seconds(1), leaveGrace: .milliseconds(200))

    public static func profile(named name: String) -> MembershipSettings? {
        switch name {
        case "region": .region
        case "lan": .lan
        case "wan": .wan
        case "fast": .fast
        default: nil
        }
    }
}
