import Foundation
import TandemCore
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// The node's data directory: what must survive a restart.
///
/// - `identity`: the node's name, fixed at first start (a data dir belongs to one node);
/// - `incarnation`: the highest SWIM incarnation this node has used. A restart comes back
///   one higher, so it refutes any "dead" the cluster holds about its previous life;
/// - `lock`: held with `flock` while the node runs, so two processes never share a dir.
public final class DataDir {
    public let path: String
    private var lockFD: Int32 = -1

    public init(path: String, name: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        lockFD = open(path + "/lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard lockFD >= 0, flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
            throw TandemError(.unavailable, "data dir \(path) is in use by another process")
        }
        let identity = path + "/identity"
        if let existing = try? String(contentsOfFile: identity, encoding: .utf8) {
            let stored = existing.trimmingCharacters(in: .whitespacesAndNewlines)
            guard stored == name else {
                throw TandemError(.invalidArgument, "data dir \(path) belongs to node '\(stored)', not '\(name)'")
            }
        } else {
            try DataDir.writeDurably(identity, name + "\n")
        }
    }

    deinit { if lockFD >= 0 { close(lockFD) } }

    public func loadIncarnation() -> UInt64 {
        guard let text = try? String(contentsOfFile: path + "/incarnation", encoding: .utf8) else { return 0 }
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    public func storeIncarnation(_ value: UInt64) throws {
        try DataDir.writeDurably(path + "/incarnation", "\(value)\n")
    }

    /// The keyring as rotated at runtime (`tandem keys`): it outlives the `--keyring` file the
    /// node first started with. Readable by the owner only.
    public var keyringPath: String { path + "/keyring" }

    public func storeKeyring(_ keyring: Keyring) throws {
        try DataDir.writeDurably(keyringPath, keyring.text, mode: 0o600)
    }

    /// Write to a temporary file, fsync it, rename over the target, fsync the directory: a crash
    /// at any instant leaves either the old or the new content, never a torn file.
    static func writeDurably(_ file: String, _ content: String, mode: mode_t = 0o644) throws {
        let tmp = file + ".tmp"
        let fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, mode)
        guard fd >= 0 else { throw TandemError(.io, "open \(tmp): \(String(cString: strerror(errno)))") }
        let bytes = Array(content.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = DiskFaults.process.fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0 else {
            throw TandemError(.io, "write \(tmp): \(String(cString: strerror(errno)))")
        }
        guard rename(tmp, file) == 0 else { throw TandemError(.io, "rename \(tmp): \(String(cString: strerror(errno)))") }
        let dir = open((file as NSString).deletingLastPathComponent, O_RDONLY | O_CLOEXEC)
        if dir >= 0 {
            _ = DiskFaults.process.fsync(dir)
            close(dir)
        }
    }
}
