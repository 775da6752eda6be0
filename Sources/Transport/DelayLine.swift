import TandemCore

/// Holds actions back for a while, then runs them in due order (ties in arrival order): the
/// opt-in one-way delay of peer traffic (`--chaos`, `delayMs` / `delays`). This kernel has no
/// netem, so `cluster/` uses it for latency between regions; it is off unless set.
public final class DelayLine {
    private let loop: EventLoop
    private let timer: LoopTimer
    private var waiting: [(due: Instant, seq: UInt64, run: () -> Void)] = []
    private var seq: UInt64 = 0

    public init(loop: EventLoop) {
        self.loop = loop
        timer = LoopTimer(loop: loop)
    }

    public var count: Int { waiting.count }

    public func after(_ delay: Duration, _ run: @escaping () -> Void) {
        guard delay > .zero else { return run() }
        seq += 1
        let due = loop.now + delay
        // Mostly appended at the end (one delay per destination); insert in order otherwise.
        let at = waiting.lastIndex { $0.due <= due }.map { $0 + 1 } ?? 0
        waiting.insert((due, seq, run), at: at)
        if at == 0 { arm() }
    }

    private func arm() {
        guard let first = waiting.first else { return timer.stop() }
        let now = loop.now
        timer.start(after: first.due > now ? first.due - now : .zero) { [weak self] in self?.fire() }
    }

    private func fire() {
        let now = loop.now
        while let first = waiting.first, first.due <= now {
            waiting.removeFirst()
            first.run()
        }
        arm()
    }
}
