import Foundation
import TandemCore

/// TCP links to peers, one per address, opened on demand and re-opened after a failure
/// (with backoff), carrying request/response frames. Inbound connections are served by
/// `onRequest`; its reply goes back on the connection the request came in on.
public final class PeerLinks {
    public struct Limits {
        public var maxFrameSize = 4 << 20
        public var maxQueuedBytes = 16 << 20
        public var connectTimeout: Duration = .seconds(1)
        public var reconnectBackoffMin: Duration = .milliseconds(50)
        public var reconnectBackoffMax: Duration = .seconds(2)
        public var maxInboundConnections = 256
        /// An inbound connection with no traffic for this long is closed.
        public var inboundIdleTimeout: Duration = .seconds(120)
        public init() {}
    }

    public struct Stats {
        public var framesIn = 0
        public var framesOut = 0
        public var bytesIn = 0
        public var bytesOut = 0
        public var malformedFrames = 0
        public var connectFailures = 0
        public var requestTimeouts = 0
        public var connectionsRefused = 0
        /// Frames no keyring key opened (the connection is closed, nothing answered).
        public var unauthenticatedFrames = 0
        /// Sealed frames that were not the next of a fresh session: replayed, repeated,
        /// reordered or spliced from another connection (the connection is closed).
        public var replayedFrames = 0
    }

    private final class Link {
        var connection: TCPConnection?
        var connected = false
        /// Plain frames waiting for the connection (sealed when written: the seal names the session).
        var queue: [[UInt8]] = []
        var queuedBytes = 0
        var decoder: FrameDecoder
        /// The session of the current connection (sealed links).
        var session: FrameSession?
        var backoff: Duration
        var retryAfter: Instant = .zero
        init(maxFrameSize: Int, keyring: Keyring?, backoff: Duration) {
            decoder = FrameDecoder(maxFrameSize: maxFrameSize, keyring: keyring)
            self.backoff = backoff
        }
    }

    private struct Pending {
        var address: String
        var timer: LoopTimer
        var completion: (Result<Frame, TandemError>) -> Void
    }

    private let loop: EventLoop
    private let limits: Limits
    private var links: [String: Link] = [:]
    private var pending: [UInt32: Pending] = [:]
    private var nextRequestID: UInt32 = 0
    public private(set) var stats = Stats()
    /// Handles an inbound request; call `reply` once with the response payload.
    public var onRequest: (Frame, SocketAddress?, _ reply: @escaping ([UInt8]) -> Void) -> Void = { _, _, _ in }
    /// Opt-in fault injection for tests: return true to refuse traffic with `address`.
    public var isBlocked: (String) -> Bool = { _ in false }
    /// Opt-in one-way delay of what we send to a host (an IP address, so replies on inbound
    /// connections, which show only an ephemeral port, are delayed alike).
    /// Nil (the default, and without `--chaos`) costs nothing per frame.
    public var delay: ((String) -> Duration)?
    private lazy var delayLine = DelayLine(loop: loop)
    /// Seals every frame when set (`--keyring`); shared with the node, so rotations apply here.
    public let keyring: Keyring?
    /// Told about each frame no keyring key opened (the node logs it, rate-limited).
    public var onUnauthenticated: (SocketAddress?) -> Void = { _ in }
    /// Told about each sealed frame refused as a replay (the node logs it, rate-limited).
    public var onReplayed: (SocketAddress?) -> Void = { _ in }
    /// Told when an established outbound link to a peer closes (the peer's kernel closed it: its
    /// process may be gone), with the peer's address.
    public var onLinkClosed: (String) -> Void = { _ in }
    /// Wall time in ms: a session's first frame must be from within the replay window.
    public var wallMs: () -> UInt64 = WallClock.nowMs
    /// Sessions inbound connections have started (each may start only once).
    private let acceptedSessions = FrameSessionGuard()

    public init(loop: EventLoop, server: TCPServer, keyring: Keyring? = nil, limits: Limits = Limits()) {
        self.loop = loop
        self.limits = limits
        self.keyring = keyring
        server.start { [weak self] connection in self?.accept(connection) }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Outbound

    /// Sends a request to `address` and calls `completion` with the response or an error.
    public func request(
        to address: String, kind: UInt8, payload: [UInt8], timeout: Duration,
        _ completion: @escaping (Result<Frame, TandemError>) -> Void
    ) {
        nextRequestID = nextRequestID == UInt32.max ? 1 : nextRequestID + 1
        let id = nextRequestID
        let timer = LoopTimer(loop: loop)
        pending[id] = Pending(address: address, timer: timer, completion: completion)
        timer.start(after: timeout) { [weak self] in
            self?.stats.requestTimeouts += 1
            self?.finish(id, .failure(TandemError(.unavailable, "request to \(address) timed out")))
        }
        guard !isBlocked(address) else { return }  // a blocked peer behaves like a silent one
        let bytes = Frame(kind: kind, requestID: id, payload: payload).encode()
        delayed(to: address) { [weak self] in self?.enqueue(bytes, to: address) }
    }

    /// Runs `send` now, or after the chaos delay towards `address`'s host when one is set.
    private func delayed(to address: @autoclosure () -> String, _ send: @escaping () -> Void) {
        guard let delay else { return send() }
        delayLine.after(delay(PeerLinks.host(of: address())), send)
    }

    /// A plain frame as it goes on the wire of a connection: as is, or sealed under the primary
    /// key with the connection's session (nil: an accepting side that has not heard its peer).
    func wire(_ plain: [UInt8], _ session: FrameSession?) -> [UInt8]? {
        guard let keyring else { return plain }
        return session?.seal(plain, keyring: keyring)
    }

    /// The host part of `host:port`.
    public static func host(of address: String) -> String {
        guard let colon = address.lastIndex(of: ":") else { return address }
        return String(address[..<colon])
    }

    /// Sends a one-way frame (request ID 0: the receiver does not answer). Lost like a datagram
    /// when the link is down or its queue is full; the protocol above retries (Raft does).
    public func send(to address: String, kind: UInt8, payload: [UInt8]) {
        guard !isBlocked(address) else { return }
        let bytes = Frame(kind: kind, requestID: 0, payload: payload).encode()
        delayed(to: address) { [weak self] in self?.enqueue(bytes, to: address) }
    }

    /// The last connection attempt to `address` failed and the next one waits for its backoff:
    /// a request now would sit queued until it times out, so callers with a fallback skip it.
    public func isBackingOff(_ address: String) -> Bool {
        guard let link = links[address] else { return false }
        return link.connection == nil && loop.now < link.retryAfter
    }

    private func finish(_ id: UInt32, _ result: Result<Frame, TandemError>) {
        guard let p = pending.removeValue(forKey: id) else { return }
        p.timer.stop()
        p.completion(result)
    }

    private func enqueue(_ bytes: [UInt8], to address: String) {
        let link =
            links[address]
            ?? {
                let l = Link(maxFrameSize: limits.maxFrameSize, keyring: keyring, backoff: limits.reconnectBackoffMin)
                links[address] = l
                return l
            }()
        guard link.queuedBytes + bytes.count <= limits.maxQueuedBytes else { return }
        if link.connected, let c = link.connection, c.pendingWriteBytes < limits.maxQueuedBytes {
            if let sealed = wire(bytes, link.session) {
                c.write(sealed)
                count(out: sealed.count)
            }
            return
        }
        link.queue.append(bytes)
        link.queuedBytes += bytes.count
        if link.connection == nil && loop.now >= link.retryAfter { connect(link, address) }
    }

    private func count(out bytes: Int) {
        stats.framesOut += 1
        stats.bytesOut += bytes
    }

    private func connect(_ link: Link, _ address: String) {
        guard let target = try? SocketAddress(address) else {
            failAll(address, TandemError(.invalidArgument, "bad peer address \(address)"))
            return
        }
        let connection = TCPConnection.connect(loop: loop, to: target, timeout: limits.connectTimeout) { [weak self, weak link] c, error in
            guard let self, let link else { return }
            guard let c, error == nil else {
                self.stats.connectFailures += 1
                link.connection = nil
                link.retryAfter = self.loop.now + link.backoff
                link.backoff = min(self.limits.reconnectBackoffMax, link.backoff * 2)
                link.queue.removeAll()
                link.queuedBytes = 0
                // Queued requests never left: say so, so callers may retry them safely.
                self.failAll(address, TandemError(.notDelivered, "cannot reach \(address): \(error.map { "\($0)" } ?? "closed")"))
                return
            }
            link.connected = true
            link.backoff = self.limits.reconnectBackoffMin
            // Every connection is a new session: frames sealed for an earlier one are refused.
            let session = FrameSession(connectingAtMs: self.wallMs())
            link.session = session
            link.decoder = FrameDecoder(maxFrameSize: self.limits.maxFrameSize, keyring: self.keyring, session: session)
            c.onData = { [weak self, weak link] bytes in
                guard let self, let link else { return }
                self.receive(bytes, on: c, decoder: &link.decoder, reply: nil, session: session)
            }
            c.onClose = { [weak self, weak link] in
                guard let self, let link else { return }
                link.connection = nil
                link.connected = false
                link.session = nil
                self.failAll(address, TandemError(.unavailable, "link to \(address) closed"))
                self.onLinkClosed(address)
            }
            c.startReading()
            for bytes in link.queue {
                guard let sealed = self.wire(bytes, session) else { continue }
                c.write(sealed)
                self.count(out: sealed.count)
            }
            link.queue.removeAll()
            link.queuedBytes = 0
        }
        // A connect that failed at once has already reported (and cleared the link); only an
        // attempt still under way is the link's connection.
        if connection.isOpen { link.connection = connection }
    }

    private func failAll(_ address: String, _ error: TandemError) {
        for (id, p) in pending where p.address == address { finish(id, .failure(error)) }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Inbound

    private var inbound = 0

    private func accept(_ c: TCPConnection) {
        guard inbound < limits.maxInboundConnections else {
            stats.connectionsRefused += 1
            c.close()
            return
        }
        inbound += 1
        let idle = LoopTimer(loop: loop)
        let idleTimeout = limits.inboundIdleTimeout
        idle.start(after: idleTimeout) { [weak c] in c?.close() }
        c.onClose = { [weak self] in
            idle.stop()
            self?.inbound -= 1
        }
        let session = FrameSession(accepting: acceptedSessions)
        var decoder = FrameDecoder(maxFrameSize: limits.maxFrameSize, keyring: keyring, session: session)
        c.onData = { [weak self, weak c] bytes in
            guard let self, let c else { return }
            idle.start(after: idleTimeout) { [weak c] in c?.close() }
            if let peer = c.peer, self.isBlocked(peer.description) {
                c.close()
                return
            }
            self.receive(bytes, on: c, decoder: &decoder, reply: c, session: session)
        }
        c.startReading()
    }

    private func receive(
        _ bytes: UnsafeRawBufferPointer, on c: TCPConnection, decoder: inout FrameDecoder,
        reply: TCPConnection?, session: FrameSession
    ) {
        stats.bytesIn += bytes.count
        let frames: [Frame]
        do {
            frames = try decoder.feed(bytes, nowMs: keyring == nil ? 0 : wallMs())
        } catch {
            // A peer that sends garbage, holds no key of ours, or replays what it recorded loses
            // its connection unanswered; the node keeps running.
            if error.code == FrameDecoder.unauthenticated {
                stats.unauthenticatedFrames += 1
                onUnauthenticated(c.peer)
            } else if error.code == FrameDecoder.replayed {
                stats.replayedFrames += 1
                onReplayed(c.peer)
            } else {
                stats.malformedFrames += 1
            }
            c.close()
            return
        }
        for frame in frames {
            stats.framesIn += 1
            if frame.isResponse {
                finish(frame.requestID, .success(frame))
            } else if let reply {
                let kind = frame.kind | Frame.responseBit
                let id = frame.requestID
                onRequest(frame, reply.peer) { [weak self, weak reply] payload in
                    guard id != 0, let self else { return }  // 0: one-way, no answer
                    self.delayed(to: reply?.peer?.description ?? "") { [weak self] in
                        self?.respond(on: reply, session, kind: kind, id: id, payload: payload)
                    }
                }
            }
        }
    }

    private func respond(on reply: TCPConnection?, _ session: FrameSession, kind: UInt8, id: UInt32, payload: [UInt8]) {
        guard let reply, reply.isOpen else { return }
        // A peer that sends requests and never reads the answers loses the link.
        guard reply.pendingWriteBytes < limits.maxQueuedBytes else {
            reply.close()
            return
        }
        guard let bytes = wire(Frame(kind: kind, requestID: id, payload: payload).encode(), session) else { return }
        reply.write(bytes)
        count(out: bytes.count)
    }

    /// Counts a malformed request payload seen by a handler above this layer.
    public func countMalformed() { stats.malformedFrames += 1 }
}
