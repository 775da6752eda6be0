import StreamLog

extension Streams {
    /// The streams metrics in the Prometheus text format (`/metrics`).
    func metricsText() -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) { out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        let sorted = partitions.values.sorted { ($0.id.stream, $0.id.partition) < ($1.id.stream, $1.id.partition) }
        func labels(_ p: StreamPartition) -> String { "stream=\"\(p.id.stream)\",partition=\"\(p.id.partition)\"" }
        family("tandem_stream_partition_leader", "gauge", "1 if this node leads the partition.")
        for p in sorted { out += "tandem_stream_partition_leader{\(labels(p))} \(p.isLeader ? 1 : 0)\n" }
        family("tandem_stream_partition_term", "gauge", "Raft term of this replica.")
        for p in sorted { out += "tandem_stream_partition_term{\(labels(p))} \(p.raft.term)\n" }
        family("tandem_stream_partition_commit_index", "gauge", "Commit index of this replica.")
        for p in sorted { out += "tandem_stream_partition_commit_index{\(labels(p))} \(p.raft.commitIndex)\n" }
        family("tandem_stream_partition_last_index", "gauge", "Last index in this replica's log.")
        for p in sorted { out += "tandem_stream_partition_last_index{\(labels(p))} \(p.raft.lastIndex)\n" }
        family("tandem_stream_follower_lag_entries", "gauge", "On the leader: entries each follower is behind.")
        for p in sorted where p.isLeader {
            for (f, pr) in p.raft.progress.sorted(by: { $0.key < $1.key }) {
                out += "tandem_stream_follower_lag_entries{\(labels(p)),follower=\"\(f)\"} \(p.raft.lastIndex - min(pr.match, p.raft.lastIndex))\n"
            }
        }
        family("tandem_stream_elections_total", "counter", "Elections this replica started.")
        for p in sorted { out += "tandem_stream_elections_total{\(labels(p))} \(p.raft.metrics.electionsStarted)\n" }
        family("tandem_stream_elections_won_total", "counter", "Elections this replica won.")
        for p in sorted { out += "tandem_stream_elections_won_total{\(labels(p))} \(p.raft.metrics.electionsWon)\n" }
        family("tandem_stream_leader_changes_total", "counter", "Leader changes seen by this replica.")
        for p in sorted { out += "tandem_stream_leader_changes_total{\(labels(p))} \(p.raft.metrics.leaderChanges)\n" }
        family("tandem_stream_fsyncs_total", "counter", "Group-commit fsyncs.")
        for p in sorted { out += "tandem_stream_fsyncs_total{\(labels(p))} \(p.fsyncs)\n" }
        family("tandem_stream_fsyncs_on_loop_total", "counter", "Group-commit fsyncs small enough to run on the event loop instead of the thread pool.")
        for p in sorted { out += "tandem_stream_fsyncs_on_loop_total{\(labels(p))} \(p.syncsOnLoop)\n" }
        family("tandem_stream_synced_writes_total", "counter", "Raft ready writes made durable (many per fsync under load).")
        for p in sorted { out += "tandem_stream_synced_writes_total{\(labels(p))} \(p.writesSynced)\n" }
        family("tandem_stream_append_latency_ms", "histogram", "On the leader: propose to commit, in ms.")
        for p in sorted { out += p.appendLatency.render("tandem_stream_append_latency_ms", labels: labels(p)) }
        family("tandem_stream_fsync_latency_ms", "histogram", "Group-commit fsync duration, in ms.")
        for p in sorted { out += p.fsyncLatency.render("tandem_stream_fsync_latency_ms", labels: labels(p)) }
        family("tandem_stream_errors_total", "counter", "Stream API errors by code (bad input, no leader, ...).")
        for (code, n) in stats.errors.sorted(by: { $0.key < $1.key }) { out += "tandem_stream_errors_total{code=\"\(code)\"} \(n)\n" }
        family("tandem_stream_puts_forwarded_total", "counter", "Puts forwarded to another node.")
        out += "tandem_stream_puts_forwarded_total \(stats.putsForwarded)\n"
        family("tandem_stream_puts_answered_by_replica_total", "counter",
               "Puts this node forwarded and answered itself once its replica had committed them (before the leader's answer).")
        out += "tandem_stream_puts_answered_by_replica_total \(stats.putsAnsweredByReplica)\n"
        family("tandem_stream_puts_for_peers_total", "counter", "Forwarded puts served for other nodes.")
        out += "tandem_stream_puts_for_peers_total \(stats.putsServedForPeers)\n"
        family("tandem_stream_reads_proxied_total", "counter", "Reads proxied to a replica.")
        out += "tandem_stream_reads_proxied_total \(stats.readsProxied)\n"
        family("tandem_stream_unknown_group_messages_total", "counter", "Raft messages for partitions this node does not hold.")
        out += "tandem_stream_unknown_group_messages_total \(stats.unknownGroupMessages)\n"
        family("tandem_stream_malformed_frames_total", "counter", "Malformed stream peer frames.")
        out += "tandem_stream_malformed_frames_total \(stats.malformedFrames)\n"
        family("tandem_stream_disk_failures_total", "counter", "Replicas stopped because their log could not be written or synced.")
        out += "tandem_stream_disk_failures_total \(stats.diskFailures)\n"
        family("tandem_stream_replicas_reopened_total", "counter", "Stopped replicas reopened once their disk worked again.")
        out += "tandem_stream_replicas_reopened_total \(stats.replicasReopened)\n"
        family("tandem_stream_replicas_stopped", "gauge", "Replicas stopped by a disk failure right now.")
        out += "tandem_stream_replicas_stopped \(stoppedReplicas.count)\n"
        return out
    }
}
