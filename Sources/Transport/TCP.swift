import CLibUV
import TandemCore

/// A TCP byte stream on the loop. It keeps itself alive while libuv holds its handle and
/// releases itself in the close callback, so owners may drop it at any time.
public final class TCPConnection {
    let handle: UnsafeMutablePointer<uv_tcp_t>
    private let loop: EventLoop
    private var readBuffer: UnsafeMutablePointer<CChar>?
    static let readBufferSize = 65536
    private var selfRetain: Unmanaged<TCPConnection>?
    private var connectTimer: LoopTimer?
    private var connectCallback: ((UVError?) -> Void)?

    public var onData: (UnsafeRawBufferPointer) -> Void = { _ in }
    public var onClose: () -> Void = {}
    public private(set) var isOpen = true
    /// Bytes handed to libuv and not yet written: callers bound their queues with it.
    public private(set) var pendingWriteBytes = 0
    public internal(set) var peer: SocketAddress?

    init(loop: EventLoop) {
        self.loop = loop
        handle = .allocate(capacity: 1)
        uv_tcp_init(loop.raw, handle)
        uv_tcp_nodelay(handle, 1)
        selfRetain = Unmanaged.passRetained(self)
        handle.pointee.data = selfRetain!.toOpaque()
    }

    /// Connects to `address`, failing after `timeout`.
    public static func connect(
        loop: EventLoop, to address: SocketAddress, timeout: Duration,
        _ completion: @escaping (TCPConnection?, UVError?) -> Void
    ) -> TCPConnection {
        let c = TCPConnection(loop: loop)
        c.peer = address
        c.connectCallback = { error in completion(error == nil ? c : nil, error) }
        let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passUnretained(c).toOpaque()
        let rc = address.withSockaddr { sa in
            uv_tcp_connect(req, c.handle, sa) { req, status in
                let c: TCPConnection = owner(req!.pointee.data)
                req!.deallocate()
                c.connectTimer?.stop()
                c.connectTimer = nil
                guard let cb = c.connectCallback else { return }
                c.connectCallback = nil
                if status < 0 {
                    cb(UVError(status, "connect \(c.peer.map { "\($0)" } ?? "?")"))
                    c.close()
                } else {
                    cb(nil)
                }
            }
        }
        if rc < 0 {
            req.deallocate()
            let cb = c.connectCallback
            c.connectCallback = nil
            cb?(UVError(rc, "connect \(address)"))
            c.close()
            return c
        }
        let timer = LoopTimer(loop: loop)
        c.connectTimer = timer
        timer.start(after: timeout) { [weak c] in
            guard let c, let cb = c.connectCallback else { return }
            c.connectCallback = nil
            cb(UVError(UV_ETIMEDOUT.rawValue, "connect \(address)"))
            c.close()
        }
        return c
    }

    public func startReading() {
        guard isOpen else { return }
        readBuffer = .allocate(capacity: TCPConnection.readBufferSize)
        handle.withMemoryRebound(to: uv_stream_t.self, capacity: 1) { stream in
            _ = uv_read_start(
                stream,
                { h, _, buf in
                    let c: TCPConnection = owner(h!.pointee.data)
                    buf!.pointee.base = c.readBuffer
                    buf!.pointee.len = TCPConnection.readBufferSize
                },
                { stream, nread, buf in
                    guard let data = stream?.pointee.data else { return }
                    let c: TCPConnection = owner(data)
                    if nread < 0 {
                        c.close()
                    } else if nread > 0 {
                        c.onData(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
                    }
                })
        }
    }

    public func write(_ bytes: [UInt8]) {
        guard isOpen, !bytes.isEmpty else { return }
        // Most writes go out at once. uv_try_write makes them without a request, a copy of the
        // bytes, and libuv's completion pass, which re-arms the socket in epoll: an epoll_ctl
        // per write, measured as one syscall in five on a node answering puts. It refuses
        // (EAGAIN) while earlier writes are still queued, so the order holds.
        var sent = 0
        let rc = bytes.withUnsafeBytes { raw in
            var buf = uv_buf_init(UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: CChar.self)), UInt32(raw.count))
            return handle.withMemoryRebound(to: uv_stream_t.self, capacity: 1) { uv_try_write($0, &buf, 1) }
        }
        if rc >= 0 {
            sent = Int(rc)
            if sent == bytes.count { return }
        } else if rc != UV_EAGAIN.rawValue {
            return close()
        }
        let count = bytes.count - sent
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: count)
        bytes.withUnsafeBytes {
            copy.initialize(from: $0.baseAddress!.advanced(by: sent).assumingMemoryBound(to: CChar.self), count: count)
        }
        let req = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        req.pointee.data = UnsafeMutableRawPointer(copy)
        var buf = uv_buf_init(copy, UInt32(count))
        pendingWriteBytes += count
        let queued = handle.withMemoryRebound(to: uv_stream_t.self, capacity: 1) { stream in
            uv_write(req, stream, &buf, 1) { req, _ in
                req!.pointee.data.assumingMemoryBound(to: CChar.self).deallocate()
                let stream = req!.pointee.handle
                if let data = stream?.pointee.data {
                    let c: TCPConnection = owner(data)
                    c.writeCompleted()
                }
                req!.deallocate()
            }
        }
        writeSizes.append(count)
        if queued < 0 {
            copy.deallocate()
            req.deallocate()
            writeSizes.removeLast()
            pendingWriteBytes -= count
            close()
        }
    }

    private var writeSizes: [Int] = []
    private func writeCompleted() {
        // libuv completes writes in order.
        if !writeSizes.isEmpty { pendingWriteBytes -= writeSizes.removeFirst() }
    }

    /// Finishes writing, half-closes, and discards whatever the peer still sends until it closes
    /// or `linger` passes. Closing with unread input would send a reset that can destroy the
    /// response (an error answer to an oversized request) before the client reads it.
    public func closeGracefully(linger: Duration = .seconds(2)) {
        guard isOpen, lingerTimer == nil else { return }
        onData = { _ in }
        let timer = LoopTimer(loop: loop)
        lingerTimer = timer
        timer.start(after: linger) { [weak self] in self?.close() }
        let req = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        let rc = handle.withMemoryRebound(to: uv_stream_t.self, capacity: 1) { stream in
            uv_shutdown(req, stream) { req, _ in req?.deallocate() }
        }
        if rc < 0 {
            req.deallocate()
            close()
        }
    }

    private var lingerTimer: LoopTimer?

    /// Closes once; `onClose` runs once libuv has released the handle.
    public func close() {
        guard isOpen else { return }
        isOpen = false
        connectTimer?.stop()
        connectTimer = nil
        lingerTimer?.stop()
        lingerTimer = nil
        handle.withMemoryRebound(to: uv_handle_t.self, capacity: 1) { h in
            uv_close(h) { h in
                let c: TCPConnection = owner(h!.pointee.data)
                h!.pointee.data = nil
                c.readBuffer?.deallocate()
                c.readBuffer = nil
                let onClose = c.onClose
                c.onClose = {}
                c.onData = { _ in }
                onClose()
                let retain = c.selfRetain
                c.selfRetain = nil
                retain?.release()
            }
        }
    }

    deinit { handle.deallocate() }
}

/// A listening TCP socket.
public final class TCPServer {
    let handle: UnsafeMutablePointer<uv_tcp_t>
    private let loop: EventLoop
    private var onConnection: (TCPConnection) -> Void = { _ in }

    public init(loop: EventLoop, bind address: SocketAddress, backlog: Int32 = 511) throws {
        self.loop = loop
        handle = .allocate(capacity: 1)
        uv_tcp_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        var rc = address.withSockaddr { uv_tcp_bind(handle, $0, 0) }
        if rc == 0 {
            rc = handle.withMemoryRebound(to: uv_stream_t.self, capacity: 1) { stream in
                uv_listen(stream, backlog) { server, status in
                    guard status >= 0, let data = server?.pointee.data else { return }
                    let s: TCPServer = owner(data)
                    s.accept()
                }
            }
        }
        // deinit runs after a throwing init too, and closes the handle.
        if rc < 0 { throw UVError(rc, "listen tcp \(address)") }
    }

    deinit { closeAndFree(handle) }

    public func start(_ onConnection: @escaping (TCPConnection) -> Void) { self.onConnection = onConnection }

    private func accept() {
        let c = TCPConnection(loop: loop)
        let rc = handle.withMemoryRebound(to: uv_stream_t.self, capacity: 1) { server in
            c.handle.withMemoryRebound(to: uv_stream_t.self, capacity: 1) { uv_accept(server, $0) }
        }
        guard rc == 0 else {
            c.close()
            return
        }
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(c.handle, $0, &len) }
        }
        if ok == 0 {
            c.peer = withUnsafePointer(to: storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0) } }
        }
        onConnection(c)
    }
}
