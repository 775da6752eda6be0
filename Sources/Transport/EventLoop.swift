import CLibUV
import TandemCore

#if canImport(Glibc)
    import Glibc
#endif

/// A libuv error code rendered with libuv's own name and message.
public struct UVError: Error, CustomStringConvertible {
    public let code: Int32
    public let operation: String
    public init(_ code: Int32, _ operation: String) {
        self.code = code
        self.operation = operation
    }
    public var description: String {
        "\(operation): \(String(cString: uv_err_name(code))) (\(String(cString: uv_strerror(code))))"
    }
}

@discardableResult
func check(_ rc: Int32, _ operation: String) throws -> Int32 {
    if rc < 0 { throw UVError(rc, operation) }
    return rc
}

/// One libuv loop, run on one thread. Every handle below belongs to exactly one loop and is
/// only touched from its thread, so the shell needs no locks.
public final class EventLoop {
    let raw: UnsafeMutablePointer<uv_loop_t>

    public init() {
        _ = EventLoop.ignoreSIGPIPE
        raw = .allocate(capacity: 1)
        uv_loop_init(raw)
    }

    /// A write to a socket its peer has reset raises SIGPIPE, whose default action ends the
    /// process; libuv reports EPIPE instead only when the signal is ignored. Without this a
    /// client hanging up mid-answer killed the node (seen under load in the crash torture).
    /// Process-wide, so once, by the first loop.
    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

    deinit {
        // Give pending close callbacks a chance to run, then release the loop.
        uv_run(raw, UV_RUN_NOWAIT)
        uv_loop_close(raw)
        raw.deallocate()
    }

    /// Monotonic time in nanoseconds (`uv_hrtime`), the only clock the cores ever see.
    public var now: Instant { Instant(nanoseconds: uv_hrtime()) }

    /// Runs `job` on libuv's thread pool, then `done` back on this loop's thread: the one way the
    /// shell moves blocking work (fsync, an LMDB commit) off the loop. `job` must touch nothing
    /// the loop thread touches meanwhile; what it produces is handed to `done`.
    public func work(_ job: @escaping @Sendable () -> Void, then done: @escaping () -> Void) {
        let req = UnsafeMutablePointer<uv_work_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(WorkItem(loop: self, job: job, done: done)).toOpaque()
        pendingWork += 1
        let rc = uv_queue_work(
            raw, req,
            { req in
                Unmanaged<WorkItem>.fromOpaque(req!.pointee.data).takeUnretainedValue().job()
            },
            { req, _ in
                let item = Unmanaged<WorkItem>.fromOpaque(req!.pointee.data).takeRetainedValue()
                req!.deallocate()
                item.loop.pendingWork -= 1
                item.done()
            })
        // Only fails for a loop that is closing or a null callback: run the job here instead.
        if rc != 0 {
            let item = Unmanaged<WorkItem>.fromOpaque(req.pointee.data!).takeRetainedValue()
            req.deallocate()
            pendingWork -= 1
            item.job()
            item.done()
        }
    }

    /// Jobs handed to `work` whose `done` has not run yet.
    public private(set) var pendingWork = 0

    /// After `run` returns: lets the jobs still out on the thread pool finish and their `done`
    /// run (timers and I/O run meanwhile), for at most `timeout`. Their callbacks reach the
    /// services that started them, so the owner must still be alive; left for the loop's
    /// deinit, they ran into a half-destroyed node (seen: a table commit in flight at SIGINT
    /// answered into a node already gone, and the process aborted instead of exiting 0).
    public func finishWork(timeout: Duration) {
        let deadline = now + timeout
        while pendingWork > 0 && now < deadline { uv_run(raw, UV_RUN_ONCE) }
    }

    private final class WorkItem: @unchecked Sendable {
        let loop: EventLoop
        let job: @Sendable () -> Void
        let done: () -> Void
        init(loop: EventLoop, job: @escaping @Sendable () -> Void, done: @escaping () -> Void) {
            self.loop = loop
            self.job = job
            self.done = done
        }
    }

    public func run() { uv_run(raw, UV_RUN_DEFAULT) }
    public func runOnce() { uv_run(raw, UV_RUN_ONCE) }
    public func stop() { uv_stop(raw) }
}

/// Box that lets a C callback find its Swift owner through `handle->data`.
func owner<T: AnyObject>(_ data: UnsafeMutableRawPointer?) -> T {
    Unmanaged<T>.fromOpaque(data!).takeUnretainedValue()
}

/// Closes a libuv handle and frees its memory once libuv is done with it.
func closeAndFree<H>(_ handle: UnsafeMutablePointer<H>) {
    handle.withMemoryRebound(to: uv_handle_t.self, capacity: 1) { h in
        if uv_is_closing(h) != 0 { return }
        h.pointee.data = nil
        uv_close(h) { h in
            h?.deallocate()
        }
    }
}

/// Runs its callback once, right after the loop's current poll phase (a libuv check handle):
/// work gathered from every read of one loop turn is done together, with no extra turn. While
/// armed, an idle handle keeps that poll from blocking (armed from a timer, the callback must
/// not wait for the next I/O).
public final class AfterPoll {
    let check: UnsafeMutablePointer<uv_check_t>
    let idle: UnsafeMutablePointer<uv_idle_t>
    private let callback: () -> Void
    private var armed = false

    public init(loop: EventLoop, _ callback: @escaping () -> Void) {
        self.callback = callback
        check = .allocate(capacity: 1)
        idle = .allocate(capacity: 1)
        uv_check_init(loop.raw, check)
        uv_idle_init(loop.raw, idle)
        check.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        closeAndFree(check)
        closeAndFree(idle)
    }

    public func arm() {
        guard !armed else { return }
        armed = true
        uv_idle_start(idle) { _ in }
        uv_check_start(check) { h in
            guard let data = h?.pointee.data else { return }
            let me: AfterPoll = owner(data)
            me.armed = false
            uv_check_stop(me.check)
            uv_idle_stop(me.idle)
            me.callback()
        }
    }
}

/// A one-shot or repeating timer.
public final class LoopTimer {
    let handle: UnsafeMutablePointer<uv_timer_t>
    private var callback: () -> Void = {}

    public init(loop: EventLoop) {
        handle = .allocate(capacity: 1)
        uv_timer_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { closeAndFree(handle) }

    /// Fires once after `delay` (libuv timers have millisecond resolution; sub-millisecond
    /// delays round up so a deadline is never run early).
    public func start(after delay: Duration, repeating: Duration? = nil, _ callback: @escaping () -> Void) {
        self.callback = callback
        let ms = UInt64(max(0, (delay.nanoseconds + 999_999) / 1_000_000))
        let repeatMs = repeating.map { UInt64(max(1, $0.nanoseconds / 1_000_000)) } ?? 0
        uv_timer_start(
            handle,
            { h in
                guard let data = h?.pointee.data else { return }
                let timer: LoopTimer = owner(data)
                timer.callback()
            }, ms, repeatMs)
    }

    public func stop() { uv_timer_stop(handle) }

    /// Keeps the loop from staying alive just for this timer.
    public func unref() { handle.withMemoryRebound(to: uv_handle_t.self, capacity: 1) { uv_unref($0) } }
}

/// Watches one signal (SIGINT, SIGTERM) on the loop.
public final class SignalWatcher {
    let handle: UnsafeMutablePointer<uv_signal_t>
    private let callback: () -> Void

    public init(loop: EventLoop, signal: Int32, _ callback: @escaping () -> Void) {
        self.callback = callback
        handle = .allocate(capacity: 1)
        uv_signal_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_signal_start(
            handle,
            { h, _ in
                guard let data = h?.pointee.data else { return }
                let watcher: SignalWatcher = owner(data)
                watcher.callback()
            }, signal)
    }

    deinit { closeAndFree(handle) }
}

// ==== ----------------------------------------------------------------------------------------
// MARK: Addresses

/// A resolved `host:port` (IPv4 `1.2.3.4:7946` or IPv6 `[::1]:7946`).
public struct SocketAddress: Hashable, CustomStringConvertible {
    var storage = sockaddr_storage()

    public init(_ text: String) throws(TandemError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int32(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw TandemError(.invalidArgument, "address '\(text)' is not host:port")
        }
        var host = String(text[..<colon])
        if host == "localhost" { host = "127.0.0.1" }
        var rc: Int32
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            rc = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(host, port, $0) }
            }
        } else {
            rc = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(host, port, $0) }
            }
        }
        guard rc == 0 else { throw TandemError(.invalidArgument, "address '\(text)': host is not an IP address") }
    }

    init(_ addr: UnsafePointer<sockaddr>) {
        let size = addr.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        withUnsafeMutableBytes(of: &storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: addr, count: size))
        }
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>) -> R) -> R {
        withUnsafePointer(to: storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
    }

    public var port: Int {
        withUnsafePointer(to: storage) { p in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    public var description: String {
        var buf = [CChar](repeating: 0, count: 64)
        return withUnsafePointer(to: storage) { p in
            if storage.ss_family == sa_family_t(AF_INET6) {
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { _ = uv_ip6_name($0, &buf, buf.count) }
                return "[\(cStringToString(buf))]:\(port)"
            }
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { _ = uv_ip4_name($0, &buf, buf.count) }
            return "\(cStringToString(buf)):\(port)"
        }
    }

    /// `0.0.0.0` or `[::]`: every local address, which cannot be told to anyone as one to reach.
    public var isWildcard: Bool {
        let host = description[..<description.lastIndex(of: ":")!]
        return host == "0.0.0.0" || host == "[::]"
    }

    /// `host:port` with a DNS name for host, resolved now (blocking: call it on the thread
    /// pool) to the first address getaddrinfo gives, as `SocketAddress.description`; nil when
    /// it does not resolve. An IP address comes back canonical without a lookup.
    public static func resolve(_ hostPort: String) -> String? {
        if let address = try? SocketAddress(hostPort) { return address.description }
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int32(hostPort[hostPort.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(hostPort[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let n = node {
            if let sa = n.pointee.ai_addr, n.pointee.ai_family == AF_INET || n.pointee.ai_family == AF_INET6 {
                var address = SocketAddress(sa)
                address.setPort(Int(port))
                return address.description
            }
            node = n.pointee.ai_next
        }
        return nil
    }

    mutating func setPort(_ port: Int) {
        withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = UInt16(port).bigEndian }
        }
    }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool { a.description == b.description }
    public func hash(into h: inout Hasher) { h.combine(description) }
}

// ==== ----------------------------------------------------------------------------------------
// MARK: UDP

/// A bound UDP socket delivering whole datagrams.
public final class UDPSocket {
    let handle: UnsafeMutablePointer<uv_udp_t>
    private let buffer: UnsafeMutablePointer<CChar>
    static let bufferSize = 65536
    var onDatagram: ([UInt8], SocketAddress) -> Void = { _, _ in }
    /// Datagrams the kernel would not take (send buffer full): dropped, like any UDP loss.
    public private(set) var sendFailures = 0

    public init(loop: EventLoop, bind address: SocketAddress) throws {
        handle = .allocate(capacity: 1)
        buffer = .allocate(capacity: UDPSocket.bufferSize)
        uv_udp_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let rc = address.withSockaddr { uv_udp_bind(handle, $0, 0) }
        // deinit runs after a throwing init too, and releases the handle and the buffer.
        if rc < 0 { throw UVError(rc, "bind udp \(address)") }
    }

    deinit {
        uv_udp_recv_stop(handle)
        closeAndFree(handle)
        buffer.deallocate()
    }

    public func start(_ onDatagram: @escaping ([UInt8], SocketAddress) -> Void) throws {
        self.onDatagram = onDatagram
        try check(
            uv_udp_recv_start(
                handle,
                { h, _, buf in
                    let socket: UDPSocket = owner(h!.pointee.data)
                    buf!.pointee.base = socket.buffer
                    buf!.pointee.len = UDPSocket.bufferSize
                },
                { h, nread, buf, addr, _ in
                    // nread == 0 with an address is an empty datagram (input too: it is counted as malformed).
                    guard nread >= 0, let addr, let data = h?.pointee.data else { return }
                    let socket: UDPSocket = owner(data)
                    let bytes = nread == 0 ? [] : Array(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
                    socket.onDatagram(bytes, SocketAddress(addr))
                }), "udp recv start")
    }

    /// Sends at once or drops (UDP semantics); never blocks the loop.
    public func send(_ bytes: [UInt8], to address: SocketAddress) {
        let rc = bytes.withUnsafeBytes { raw -> Int32 in
            var buf = uv_buf_init(
                UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: CChar.self)),
                UInt32(raw.count))
            return address.withSockaddr { uv_udp_try_send(handle, &buf, 1, $0) }
        }
        if rc < 0 { sendFailures += 1 }
    }
}

func cStringToString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
