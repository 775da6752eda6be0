import StreamLog
import Transport

extension Streams {
    /// The streams' families of `/metrics`.
    func metrics(_ out: inout MetricsText) {
        let sorted = partitions.values.sorted { ($0.id.stream, $0.id.partition) < ($1.id.stream, $1.id.partition) }
        func labels(_ p: StreamPartition) -> [(String, String)] { [("stream", p.id.stream), ("partition", "\(p.id.partition)")] }
        func perReplica(_ name: String, _ kind: MetricsText.Kind, _ help: String, _ value: (StreamPartition) -> any CustomStringConvertible)
        {
            out.add(name, kind, help, samples: sorted.map { (labels($0), value($0)) })
        }
        perReplica("tandem_stream_partition_leader", .gauge, "1 if this node leads the partition.") { $0.isLeader ? 1 : 0 }
        perReplica("tandem_stream_partition_term", .gauge, "Raft term of this replica.") { $0.raft.term }
        perReplica("tandem_stream_partition_commit_index", .gauge, "Commit index of this replica.") { $0.raft.commitIndex }
        perReplica("tandem_stream_partition_last_index", .gauge, "Last index in this replica's log.") { $0.raft.lastIndex }
        out.add(
            "tandem_stream_follower_lag_entries", .gauge, "On the leader: entries each follower is behind.",
            samples: sorted.filter(\.isLeader).flatMap { p in
                p.raft.progress.sorted(by: { $0.key < $1.key }).map { f, pr in
                    (
                        labels(p) + [("follower", f.rawValue)],
                        p.raft.lastIndex - min(pr.match, p.raft.lastIndex) as any CustomStringConvertible
                    )
                }
            })
        perReplica("tandem_stream_elections_total", .counter, "Elections this replica started.") { $0.raft.metrics.electionsStarted }
        perReplica("tandem_stream_elections_won_total", .counter, "Elections this replica won.") { $0.raft.metrics.electionsWon }
        perReplica("tandem_stream_leader_changes_total", .counter, "Leader changes seen by this replica.") { $0.raft.metrics.leaderChanges }
        perReplica("tandem_stream_fsyncs_total", .counter, "Group-commit fsyncs.") { $0.fsyncs }
        perReplica(
            "tandem_stream_fsyncs_on_loop_total", .counter,
            "Group-commit fsyncs small enough to run on the event loop instead of the thread pool."
        ) { $0.syncsOnLoop }
        perReplica("tandem_stream_synced_writes_total", .counter, "Raft ready writes made durable (many per fsync under load).") {
            $0.writesSynced
        }
        out.add(
            "tandem_stream_append_latency_ms", "On the leader: propose to commit, in ms.",
            histograms: sorted.map { (labels($0), $0.appendLatency) })
        out.add(
            "tandem_stream_fsync_latency_ms", "Group-commit fsync duration, in ms.",
            histograms: sorted.map { (labels($0), $0.fsyncLatency) })
        out.add(
            "tandem_stream_errors_total", .counter, "Stream API errors by code (bad input, no leader, ...).",
            samples: stats.errors.sorted(by: { $0.key < $1.key }).map { ([("code", $0.key)], $0.value) })
        out.add("tandem_stream_puts_forwarded_total", .counter, "Puts forwarded to another node.", stats.putsForwarded)
        out.add(
            "tandem_stream_puts_answered_by_replica_total", .counter,
            "Puts this node forwarded and answered itself once its replica had committed them (before the leader's answer).",
            stats.putsAnsweredByReplica)
        out.add("tandem_stream_puts_for_peers_total", .counter, "Forwarded puts served for other nodes.", stats.putsServedForPeers)
        out.add("tandem_stream_reads_proxied_total", .counter, "Reads proxied to a replica.", stats.readsProxied)
        out.add(
            "tandem_stream_unknown_group_messages_total", .counter, "Raft messages for partitions this node does not hold.",
            stats.unknownGroupMessages)
        out.add("tandem_stream_malformed_frames_total", .counter, "Malformed stream peer frames.", stats.malformedFrames)
        out.add(
            "tandem_stream_disk_failures_total", .counter, "Replicas stopped because their log could not be written, synced or read.",
            stats.diskFailures)
        out.add(
            "tandem_stream_replicas_reopened_total", .counter, "Stopped replicas reopened once their disk worked again.",
            stats.replicasReopened)
        out.add("tandem_stream_replicas_stopped", .gauge, "Replicas stopped by a disk failure right now.", stoppedReplicas.count)
    }
}
