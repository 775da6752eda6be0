import StreamLog
import TandemCore
import Transport

/// Streams' peer frames: Raft messages batched into one frame per destination per loop turn,
/// and the put and read requests other nodes forward here.
extension Streams {
    /// A member's peer address (nil: not a member this node knows).
    func address(of id: NodeID) -> String? { addressOf(id) }

    func send(_ to: NodeID, _ g: GroupID, _ m: RaftMessage) {
        var w = ByteWriter(capacity: 64)
        g.encode(into: &w)
        w.blob(m.encode())
        // Appended in place: a copy taken out of the dictionary and put back copied the whole
        // pending buffer on every message.
        outbox[to, default: ([], 0)].buffer.append(contentsOf: w.bytes)
        outbox[to, default: ([], 0)].count += 1
        let (bytes, count) = (outbox[to]!.buffer.count, outbox[to]!.count)
        if bytes >= 1 << 20 || count >= StreamWire.maxMessagesPerFrame {
            flush(to)
        } else if !flushScheduled {
            flushScheduled = true
            flushTimer.start(after: .zero) { [weak self] in
                guard let self else { return }
                self.flushScheduled = false
                for to in Array(self.outbox.keys) { self.flush(to) }
            }
        }
    }

    private func flush(_ to: NodeID) {
        guard let entry = outbox.removeValue(forKey: to), entry.count > 0 else { return }
        // A member not known (yet, or any more) is one that cannot be reached: lost like a
        // datagram, and Raft retries.
        guard let address = address(of: to) else { return }
        var w = ByteWriter(capacity: entry.buffer.count + 3)
        w.u8(StreamWire.version)
        w.u16(UInt16(entry.count))
        w.raw(entry.buffer)
        peers.send(to: address, kind: StreamFrameKind.raft, payload: w.bytes)
    }

    /// A stream frame from a peer.
    func serve(_ frame: Frame, reply: @escaping ([UInt8]) -> Void) {
        do {
            switch frame.kind {
            case StreamFrameKind.raft:
                var reconciled = false
                for (g, m) in try StreamWire.decodeRaftBatch(frame.payload) {
                    if partitions[g] == nil && !reconciled {
                        // The catalog item may have arrived after the first vote request.
                        reconciled = true
                        reconcile()
                    }
                    guard let p = partitions[g] ?? openAddedReplica(g, m) else {
                        stats.unknownGroupMessages += 1
                        continue
                    }
                    p.step(m)
                }
            case StreamFrameKind.put:
                let req = try StreamWire.decodePut(frame.payload)
                stats.putsServedForPeers += 1
                let deadline = loop.now + .milliseconds(Int64(min(req.waitMs, 10_000)))
                submit(req.group, req.records, deadline: deadline, hops: req.hops) { [weak self] result in
                    let leader = self?.partitions[req.group]?.raft.leader ?? self?.leaderHints[req.group]
                    reply(StreamWire.encodePutResult(result, leader: leader))
                }
            case StreamFrameKind.read:
                let req = try StreamWire.decodeRead(frame.payload)
                serveProxiedRead(req.stream, req.partition, req.query) { status, body in
                    reply(StreamWire.encodeReadResult(status: status, body: body))
                }
            default:
                stats.malformedFrames += 1
            }
        } catch {
            stats.malformedFrames += 1
            peers.countMalformed()
        }
    }
}
