import Foundation
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Real `tandem node` processes on 127.0.0.1 ports, each with its own data dir under one
/// temporary root: used by the process tests, `tandem demo` and `tandem bench`.
public final class LocalCluster {
    public struct NodeProcess {
        public let name: String
        public let bind: String
        public let api: String
        public let dataDir: String
        public var pid: pid_t?
    }

    public let root: String
    public let profile: String
    public private(set) var nodes: [NodeProcess] = []
    public let binary: String
    public let chaos: Bool
    /// Log level passed to every node (`info` shows membership changes).
    public var logLevel = "warning"
    /// Region of node `i` is `regions[i % regions.count]`.
    public var regions = ["region-0", "region-1", "region-2"]
    /// Bearer token for the helpers below, when nodes run with `--api-tokens`.
    public var token: String?
    /// Extra arguments for every `tandem node` (e.g. `--keyring FILE`).
    public var nodeArgs: [String] = []
    var auth: [(String, String)] { token.map { [("Authorization", "Bearer \($0)")] } ?? [] }

    public init(size: Int, profile: String = "fast", chaos: Bool = false, binary: String? = nil) throws {
        self.binary = binary ?? LocalCluster.findBinary()
        root = NSTemporaryDirectory() + "tandem-cluster-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        self.profile = profile
        let base = LocalCluster.freePortBase(count: size * 2)
        for i in 0..<size {
            nodes.append(
                NodeProcess(
                    name: "n\(i + 1)", bind: "127.0.0.1:\(base + i)", api: "127.0.0.1:\(base + size + i)",
                    dataDir: "\(root)/n\(i + 1)", pid: nil))
        }
        self.chaos = chaos
    }

    deinit {
        for i in nodes.indices { kill9(i) }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// The `tandem` binary built next to this test bundle.
    public static func findBinary() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // The bundle may be `X.xctest` (a file) or a directory tree; walk up until `tandem` appears.
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("tandem").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "tandem"
    }

    /// A run of `count` consecutive ports free for both UDP and TCP right now.
    public static func freePortBase(count: Int) -> Int {
        for _ in 0..<200 {
            let base = Int.random(in: 20000..<60000)
            if (base..<base + count).allSatisfy({ portIsFree($0) }) { return base }
        }
        return 40000
    }

    public static func portIsFree(_ port: Int) -> Bool {
        for type in [Int32(SOCK_STREAM.rawValue), Int32(SOCK_DGRAM.rawValue)] {
            let fd = socket(AF_INET, type, 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc != 0 { return false }
        }
        return true
    }

    public func start(_ i: Int, extraArgs: [String] = []) throws {
        let n = nodes[i]
        var args = [
            "node", "--name", n.name, "--region", regions[i % regions.count], "--bind", n.bind, "--api", n.api,
            "--data-dir", n.dataDir, "--profile", profile, "--log-level", logLevel
        ]
        if i != 0 { args += ["--seed", nodes[0].bind] }
        if chaos { args.append("--chaos") }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        nodes[i].pid = try spawn(binary, args + nodeArgs + extraArgs, log: "\(root)/\(n.name).log")
    }

    public func startAll() throws { for i in nodes.indices { try start(i) } }

    public func kill9(_ i: Int) {
        guard let pid = nodes[i].pid else { return }
        kill(pid, SIGKILL)
        _ = waitExit(pid)
        nodes[i].pid = nil
    }

    /// SIGTERM and wait; returns the exit status (or 128 + signal).
    public func terminate(_ i: Int) -> Int32 {
        guard let pid = nodes[i].pid else { return -1 }
        kill(pid, SIGTERM)
        nodes[i].pid = nil
        return waitExit(pid)
    }

    public func signal(_ i: Int, _ sig: Int32) {
        if let pid = nodes[i].pid { kill(pid, sig) }
    }

    /// Sets fault injection on node `i` (needs `chaos: true`).
    @discardableResult
    public func setChaos(
        _ i: Int, dropRate: Double = 0, block: [String] = [], delayMs: Int = 0, fsyncFails: Bool = false,
        readFailsUnder: String = ""
    ) -> Bool {
        let body =
            "{\"dropRate\":\(dropRate),\"delayMs\":\(delayMs),\"fsyncFails\":\(fsyncFails),\"readFailsUnder\":\"\(readFailsUnder)\",\"block\":[\(block.map { "\"\($0)\"" }.joined(separator: ","))]}"
        return (try? HTTPClient.request("POST", nodes[i].api, "/v1/chaos", body: Array(body.utf8), headers: auth, timeout: .seconds(2)))?
            .status == 200
    }

    /// "running", or how the process ended (reaping it), for post-mortems.
    public func processState(_ i: Int) -> String {
        guard let pid = nodes[i].pid else { return "not started" }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return "running, pid \(pid)" }
        nodes[i].pid = nil
        let signal = status & 0x7f
        return signal == 0 ? "exited with status \((status >> 8) & 0xff)" : "killed by signal \(signal)"
    }

    /// `name → (status, incarnation)` as node `i` sees the cluster, or nil if it does not answer.
    public func view(from i: Int) -> [String: (status: String, incarnation: Int)]? {
        guard let r = try? HTTPClient.request("GET", nodes[i].api, "/v1/members", headers: auth, timeout: .seconds(1)), r.status == 200,
            let members = r.json()?["members"]?.arrayValue
        else { return nil }
        var out: [String: (String, Int)] = [:]
        for m in members {
            if let name = m["name"]?.stringValue, let status = m["status"]?.stringValue, let inc = m["incarnation"]?.intValue {
                out[name] = (status, inc)
            }
        }
        return out
    }

    public func metric(_ name: String, node i: Int) -> Double? {
        guard let r = try? HTTPClient.request("GET", nodes[i].api, "/metrics", headers: auth, timeout: .seconds(1)), r.status == 200 else {
            return nil
        }
        for line in r.text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ")[1])
        }
        return nil
    }

    /// The sum of a metric over all its label sets on node `i` (`name{…} v` lines); 0 when absent.
    public func metricTotal(_ name: String, node i: Int) -> Double {
        guard let r = try? HTTPClient.request("GET", nodes[i].api, "/metrics", headers: auth, timeout: .seconds(1)), r.status == 200 else {
            return 0
        }
        return r.text.split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
            .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }

    /// CPU time (user + system) node `i` has used, from /proc; nil if it is not running.
    public func cpuSeconds(_ i: Int) -> Double? {
        nodes[i].pid.flatMap(LocalCluster.cpuSeconds(pid:))
    }

    /// CPU time (user + system) process `pid` has used, from /proc.
    public static func cpuSeconds(pid: pid_t) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state is field 3, utime 14 and stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    public func log(_ i: Int) -> String { (try? String(contentsOfFile: "\(root)/\(nodes[i].name).log", encoding: .utf8)) ?? "" }
}

/// Polls `condition` every `interval` until it holds or `timeout` passes.
public func eventually(timeout: Duration, interval: Duration = .milliseconds(20), _ condition: () -> Bool) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        usleep(UInt32(interval.nanoseconds / 1000))
    }
    return condition()
}

/// Starts `path args…` with stdout and stderr appended to `log` (posix_spawn: Foundation's
/// Process can miss a child's exit on Linux and hang in waitUntilExit).
public func spawn(_ path: String, _ args: [String], log: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([path] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    // The test runner's threads may block signals; the child must start with a clean mask.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t()
    sigemptyset(&empty)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    sigaddset(&defaults, SIGTERM)
    sigaddset(&defaults, SIGINT)
    posix_spawnattr_setsigmask(&attributes, &empty)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var pid: pid_t = 0
    // Children exit when this process is gone (see Node.watchParent).
    var entries: [String] = ["TANDEM_PARENT_PID=\(getpid())"]
    for (k, v) in ProcessInfo.processInfo.environment where k != "TANDEM_PARENT_PID" { entries.append("\(k)=\(v)") }
    let env: [UnsafeMutablePointer<CChar>?] = entries.map { strdup($0) } + [nil]
    defer { for e in env { free(e) } }
    let rc = posix_spawn(&pid, path, &actions, &attributes, argv, env)
    guard rc == 0 else { throw NSError(domain: "spawn", code: Int(rc)) }
    return pid
}

/// Waits for `pid` to exit; returns its exit code, or 128 + the signal that ended it.
public func waitExit(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    if status & 0x7f == 0 { return (status >> 8) & 0xff }
    return 128 + (status & 0x7f)
}
