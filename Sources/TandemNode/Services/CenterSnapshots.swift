import ContactCenter
import Foundation
import Storage
import TandemCore
import Transport

/// Snapshots of the contact center's state, so the `_cc` log can be trimmed and a restart
/// does not replay it from the start.
///
/// - Every replica writes its own, every `snapshotEvery` applied entries (`--cc-snapshot-entries`, 20,000): the state at an
///   applied index (a value copy, encoded and written durably on the thread pool — temporary
///   file, fsync, rename, directory fsync — while the loop goes on), in the partition's
///   directory (`cc-snapshot`), so it goes with the incarnation it belongs to.
/// - Once written, the replica trims its log below it (whole segments: `SegmentLog.trim`).
/// - A restart loads it and applies the entries after it.
/// - A replica whose log starts after what it applied (its leader trimmed and sent it
///   `installStart`, or its own log was trimmed by retention) fetches the newest snapshot of
///   another replica in chunks (a frame is at most 4 MiB) and goes on from there; one whose
///   index is below its log's start is useless and it asks again later.
///
/// File: `magic u32 | incarnation u64 | index u64 | term u64 | blob(state) | crc32c u32`.
enum CenterSnapshot {
    static let magic: UInt32 = 0x4343_5331  // "CCS1"
    static let file = "cc-snapshot"
    static let chunk = 2 << 20
    static let maxBytes = 1 << 30

    struct Header {
        var incarnation: UInt64
        var index: UInt64
        var term: UInt64
    }

    static func encode(_ h: Header, _ state: ContactCenterState) -> [UInt8] {
        let body = state.encodedSnapshot()
        var w = ByteWriter(capacity: body.count + 40)
        w.u32(magic)
        w.u64(h.incarnation)
        w.u64(h.index)
        w.u64(h.term)
        w.blob(body)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws -> (Header, ContactCenterState) {
        guard bytes.count >= 32 else { throw TandemError(.malformed, "short contact-center snapshot") }
        var tail = ByteReader(Array(bytes[(bytes.count - 4)...]))
        guard try tail.u32() == CRC32C.checksum(bytes[..<(bytes.count - 4)]) else {
            throw TandemError(.malformed, "contact-center snapshot checksum")
        }
        var r = ByteReader(Array(bytes[..<(bytes.count - 4)]))
        guard try r.u32() == magic else { throw TandemError(.malformed, "not a contact-center snapshot file") }
        let h = Header(incarnation: try r.u64(), index: try r.u64(), term: try r.u64())
        let state = try ContactCenterState(snapshot: try r.blob(limit: maxBytes))
        return (h, state)
    }

    static func path(_ directory: String) -> String { directory + "/" + file }

    /// The file as stored, nil if there is none or it cannot be read.
    static func read(_ directory: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path(directory)).map { [UInt8]($0) }
    }
}

/// The peer frame that fetches a snapshot: `incarnation u64 | index u64 (0: the newest) |
/// offset u64` → `index u64 | total u64 | blob(chunk)` (index 0: none).
enum CenterSnapshotFrame {
    static let kind: UInt8 = 21
}

extension Center {
    /// After applying: writes a snapshot when enough entries were applied since the last one.
    func maybeSnapshot(_ part: StreamPartition) {
        guard !snapshotting, applied >= snapshotIndex + snapshotEvery, let incarnation else { return }
        snapshotting = true
        let copy = state
        let header = CenterSnapshot.Header(incarnation: incarnation, index: applied, term: appliedTerm)
        let directory = part.directory
        let outcome = SnapshotOutcome()
        loop.work(
            {
                do {
                    try DurableFile.write(CenterSnapshot.path(directory), CenterSnapshot.encode(header, copy))
                } catch {
                    outcome.error = "\(error)"
                }
            },
            then: { [weak self, weak part] in
                guard let self else { return }
                self.snapshotting = false
                if let error = outcome.error {
                    self.stats.errors["snapshot_failed", default: 0] += 1
                    self.logger.warning("cannot write the contact center's snapshot", metadata: ["error": "\(error)"])
                    return
                }
                self.snapshotIndex = header.index
                self.stats.snapshots += 1
                // Whole segments below the snapshot go; the snapshot stands for them.
                if let part, self.incarnation == header.incarnation { _ = try? part.log.trim(before: header.index + 1) }
            })
    }

    /// On opening `_cc` here: the state from this replica's snapshot, if it has one of this
    /// incarnation.
    func loadSnapshot(_ part: StreamPartition, incarnation: UInt64) {
        guard let bytes = CenterSnapshot.read(part.directory) else { return }
        do {
            let (h, s) = try CenterSnapshot.decode(bytes)
            guard h.incarnation == incarnation else { return }
            adopt(s, index: h.index, term: h.term)
            snapshotIndex = h.index
        } catch {
            logger.warning("ignoring an unreadable contact-center snapshot", metadata: ["error": "\(error)"])
        }
    }

    /// Another replica asks for this one's newest snapshot (a chunk of it).
    func serveSnapshot(_ frame: Frame, reply: @escaping ([UInt8]) -> Void) {
        var r = ByteReader(frame.payload)
        guard let incarnation = try? r.u64(), let index = try? r.u64(), let offset = try? r.u64() else {
            peers.countMalformed()
            return
        }
        var w = ByteWriter(capacity: 64)
        guard let d = streams.definitions[Center.stream], d.incarnation == incarnation, let part = streams.localPartition(Center.stream, 0),
            let bytes = CenterSnapshot.read(part.directory), bytes.count >= 32
        else {
            w.u64(0)
            w.u64(0)
            w.blob([])
            return reply(w.bytes)
        }
        var h = ByteReader(Array(bytes[4..<28]))
        let stored = (try? h.u64()).flatMap { _ in try? h.u64() } ?? 0
        guard index == 0 || index == stored, offset <= UInt64(bytes.count) else {
            w.u64(stored)
            w.u64(UInt64(bytes.count))
            w.blob([])
            return reply(w.bytes)
        }
        let end = min(bytes.count, Int(offset) + CenterSnapshot.chunk)
        w.u64(stored)
        w.u64(UInt64(bytes.count))
        w.blob(Array(bytes[Int(offset)..<end]))
        reply(w.bytes)
    }

    /// This replica's log starts after what it applied: fetch a snapshot from another replica.
    func fetchSnapshot(_ part: StreamPartition, incarnation: UInt64) {
        guard !fetching, let d = streams.definitions[Center.stream] else { return }
        let alive = Set(streams.members().filter(\.alive).map(\.id))
        let others = d.voters[0].filter { $0 != selfID && alive.contains($0) }
        let preferred = part.raft.leader.flatMap { l in others.contains(l) ? l : nil }
        guard let source = preferred ?? others.first, let address = streams.addressOf(source) else { return }
        fetching = true
        fetchChunk(address, incarnation: incarnation, index: 0, offset: 0, into: [])
    }

    private func fetchChunk(_ address: String, incarnation: UInt64, index: UInt64, offset: UInt64, into got: [UInt8]) {
        var w = ByteWriter(capacity: 24)
        w.u64(incarnation)
        w.u64(index)
        w.u64(offset)
        peers.request(to: address, kind: CenterSnapshotFrame.kind, payload: w.bytes, timeout: .seconds(10)) { [weak self] result in
            guard let self else { return }
            guard case .success(let frame) = result else {
                self.fetching = false
                return
            }
            var r = ByteReader(frame.payload)
            guard let stored = try? r.u64(), let total = try? r.u64(), let chunk = try? r.blob(limit: CenterSnapshot.chunk),
                stored > 0, total <= UInt64(CenterSnapshot.maxBytes), index == 0 || stored == index, !chunk.isEmpty || offset == total
            else {
                self.fetching = false
                return
            }
            let bytes = got + chunk
            if UInt64(bytes.count) < total {
                return self.fetchChunk(address, incarnation: incarnation, index: stored, offset: UInt64(bytes.count), into: bytes)
            }
            self.fetching = false
            self.installFetched(bytes, incarnation: incarnation)
        }
    }

    private func installFetched(_ bytes: [UInt8], incarnation: UInt64) {
        guard let part = streams.localPartition(Center.stream, 0), self.incarnation == incarnation,
            let (h, s) = try? CenterSnapshot.decode(bytes), h.incarnation == incarnation, h.index > applied,
            h.index + 1 >= part.raft.firstIndex
        else { return }
        logger.notice("contact center: loaded another replica's snapshot", metadata: ["index": "\(h.index)"])
        adopt(s, index: h.index, term: h.term)
        stats.snapshotsFetched += 1
        // Kept here too, so a restart does not fetch it again.
        snapshotIndex = 0
        maybeSnapshot(part)
        catchUp()
    }
}

final class SnapshotOutcome: @unchecked Sendable {
    var error: String?
}
