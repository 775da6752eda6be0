import Foundation
import Membership
import Storage
import TandemCore
import Transport

/// The HTTP API: health, members, metrics, and (opt-in) chaos.
extension Node {
    func route(_ request: HTTPRequest) -> HTTPResponse {
        let segments = request.segments
        switch (request.method, segments) {
        case ("GET", ["v1", "health"]):
            return .json(
                200,
                [
                    "status": membership.leaving ? "leaving" : "ok",
                    "name": JSON(config.name), "region": JSON(config.region),
                    "joined": JSON(membership.joined),
                    "uptimeMs": JSON(Int((loop.now - startedAt).milliseconds))
                ])
        case ("GET", ["v1", "members"]):
            return membersResponse()
        case ("GET", ["metrics"]):
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4", body: Array(metricsText().utf8))
        case ("POST", ["v1", "chaos"]), ("PUT", ["v1", "chaos"]):
            return setChaos(request)
        case ("DELETE", ["v1", "chaos"]):
            guard config.chaos else { return chaosDisabled }
            chaos = ChaosSettings()
            return .json(200, ["dropRate": 0, "block": [], "fsyncFails": false])
        case (_, let s) where s.count >= 2 && s[0] == "v1" && s[1] == "keys":
            return keysEndpoint(request)
        case (_, ["v1", "health"]), (_, ["v1", "members"]), (_, ["metrics"]), (_, ["v1", "chaos"]):
            return .error(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)")
        default:
            return .error(404, "not_found", "no endpoint \(request.method) \(request.path)")
        }
    }

    private func membersResponse() -> HTTPResponse {
        let me = membership.vivaldi.coordinate
        let members: [JSON] = membership.memberStates.map { s in
            var entry: [String: JSON] = [
                "name": JSON(s.name), "region": JSON(s.meta.region), "address": JSON(s.address), "api": JSON(s.meta.api),
                "role": JSON(s.meta.role.rawValue), "status": JSON(s.status.description), "incarnation": JSON(s.incarnation),
                "self": JSON(s.name == config.name)
            ]
            if let c = membership.members[s.name]?.coordinate {
                entry["rttEstimateMs"] = JSON((me.distance(to: c).milliseconds * 1000).rounded() / 1000)
            }
            return JSON(entry)
        }
        return .json(200, ["self": JSON(config.name), "localHealth": JSON(membership.awareness), "members": .array(members)])
    }

    /// The keyring of this node only (`tandem keys` fans out over members):
    /// `GET /v1/keys`, `POST /v1/keys {"key": base64}` (install), `POST /v1/keys/ID/use`,
    /// `DELETE /v1/keys/ID`. Key material is never returned, only IDs. Every change is persisted
    /// in the data dir before it is reported as done.
    private func keysEndpoint(_ request: HTTPRequest) -> HTTPResponse {
        guard let keyring else {
            return .error(409, "encryption_off", "this node runs without --keyring; start it with one to use keys")
        }
        func state(_ changed: Bool) -> HTTPResponse {
            .json(
                200,
                [
                    "node": JSON(config.name), "changed": JSON(changed), "primary": JSON(keyring.primary.idHex),
                    "keys": JSON(keyring.keys.map(\.idHex))
                ])
        }
        func change(_ what: String, _ body: () throws -> Bool) -> HTTPResponse {
            let before = keyring.keys
            do {
                let changed = try body()
                if changed {
                    try dataDir.storeKeyring(keyring)
                    logger.notice(
                        "keyring changed",
                        metadata: ["change": "\(what)", "primary": "\(keyring.primary.idHex)", "keys": "\(keyring.keys.count)"])
                }
                return state(changed)
            } catch let e as TandemError {
                keyring.restore(before)
                return .error(e)
            } catch {
                keyring.restore(before)
                return .error(500, "internal", "\(error)")
            }
        }
        func installed(_ id: String) throws -> Keyring.Key {
            guard let key = keyring.key(idHex: id) else { throw TandemError(.notFound, "key \(id) is not installed on \(config.name)") }
            return key
        }
        let s = request.segments
        switch (request.method, s.count) {
        case ("GET", 2):
            return state(false)
        case ("POST", 2):
            guard let text = (try? JSON.parse(request.body))?["key"]?.stringValue else {
                return .error(400, "invalid_json", "body must be {\"key\": \"<base64 32-byte key>\"}")
            }
            return change("install") { keyring.install(try Keyring.Key(base64: text)) }
        case ("POST", 4) where s[3] == "use":
            let id = s[2]
            return change("use \(id)") {
                let key = try installed(id)
                guard key != keyring.primary else { return false }
                try keyring.use(key)
                return true
            }
        case ("DELETE", 3):
            let id = s[2]
            return change("remove \(id)") {
                guard let key = keyring.key(idHex: id) else { return false }  // already gone: done
                try keyring.remove(key)
                return true
            }
        default:
            return .error(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)")
        }
    }

    private var chaosDisabled: HTTPResponse {
        .error(403, "chaos_disabled", "fault injection is off; start the node with --chaos to enable it")
    }

    private func setChaos(_ request: HTTPRequest) -> HTTPResponse {
        guard config.chaos else { return chaosDisabled }
        guard let object = try? JSON.parse(request.body), object.objectValue != nil else {
            return .error(400, "invalid_json", "body must be a JSON object like {\"dropRate\":0.1,\"block\":[\"127.0.0.1:7947\"]}")
        }
        var next = ChaosSettings()
        if let rate = object["dropRate"] {
            guard let r = rate.doubleValue, (0...1).contains(r) else {
                return .error(400, "invalid_argument", "dropRate must be a number between 0 and 1")
            }
            next.dropRate = r
        }
        if let block = object["block"] {
            guard let list = block.arrayValue?.compactMap(\.stringValue), list.count == block.arrayValue?.count else {
                return .error(400, "invalid_argument", "block must be an array of host:port strings")
            }
            for a in list {
                guard let addr = try? SocketAddress(a) else {
                    return .error(400, "invalid_argument", "block: '\(a)' is not host:port")
                }
                next.blocked.insert(addr.description)
            }
        }
        if let ms = object["delayMs"] {
            guard let d = ms.doubleValue, (0...60_000).contains(d) else {
                return .error(400, "invalid_argument", "delayMs must be a number of milliseconds, 0 to 60000")
            }
            next.delay = .milliseconds(Int64(d))
        }
        if let delays = object["delays"] {
            guard let map = delays.objectValue else {
                return .error(400, "invalid_argument", "delays must map a peer host (IP) to milliseconds")
            }
            for (host, value) in map {
                guard let d = value.doubleValue, (0...60_000).contains(d), (try? SocketAddress("\(host):1")) != nil else {
                    return .error(400, "invalid_argument", "delays: '\(host)' must be an IP address mapped to 0 to 60000 ms")
                }
                next.delays[host] = .milliseconds(Int64(d))
            }
        }
        if let fails = object["fsyncFails"] {
            guard let f = fails.boolValue else { return .error(400, "invalid_argument", "fsyncFails must be true or false") }
            next.fsyncFails = f
        }
        if let under = object["readFailsUnder"] {
            guard let u = under.stringValue else {
                return .error(400, "invalid_argument", "readFailsUnder must be a string (\"\" for none)")
            }
            next.readFailsUnder = u.isEmpty ? nil : u
        }
        chaos = next
        logger.notice(
            "chaos settings changed",
            metadata: [
                "dropRate": "\(next.dropRate)", "block": "\(next.blocked.sorted())",
                "delay": "\(next.delay)", "delays": "\(next.delays.count)",
                "fsyncFails": "\(next.fsyncFails)", "readFailsUnder": "\(next.readFailsUnder ?? "")"
            ])
        return .json(
            200,
            [
                "dropRate": JSON(next.dropRate), "block": JSON(next.blocked.sorted()),
                "delayMs": JSON(Double(next.delay.nanoseconds / 1_000_000)),
                "delays": JSON(next.delays.mapValues { JSON(Double($0.nanoseconds / 1_000_000)) }), "fsyncFails": JSON(next.fsyncFails)
            ])
    }

    /// Prometheus text exposition format, version 0.0.4.
    func metricsText() -> String {
        var out = MetricsText()
        let m = membership.stats
        out.add("tandem_membership_probes_total", .counter, "Direct probes started.", m.probes)
        out.add("tandem_membership_acks_total", .counter, "Probe acks received.", m.acks)
        out.add("tandem_membership_nacks_total", .counter, "Lifeguard nacks received.", m.nacks)
        out.add("tandem_membership_indirect_probes_total", .counter, "Ping-req requests sent.", m.indirectProbes)
        out.add("tandem_membership_indirect_relays_total", .counter, "Ping-req requests served for others.", m.indirectRelays)
        out.add("tandem_membership_suspicions_total", .counter, "Suspicions raised by this node's probes.", m.suspicionsRaised)
        out.add("tandem_membership_confirmations_total", .counter, "Suspicion confirmations received.", m.confirmations)
        out.add("tandem_membership_refutations_total", .counter, "Times this node refuted its own suspicion or death.", m.refutations)
        out.add("tandem_membership_deaths_declared_total", .counter, "Members this node declared dead.", m.deathsDeclared)
        out.add("tandem_membership_dead_retries_total", .counter, "Pings sent to dead members.", m.deadRetries)
        out.add("tandem_membership_push_pulls_total", .counter, "Push-pull state syncs started.", m.pushPulls)
        out.add("tandem_membership_push_pull_failures_total", .counter, "Push-pull syncs that failed.", m.pushPullFailures)
        out.add("tandem_membership_stalls_total", .counter, "Times this process noticed it had been stalled.", m.stalls)
        out.add("tandem_membership_messages_in_total", .counter, "Gossip messages received.", m.messagesIn)
        out.add("tandem_membership_messages_out_total", .counter, "Gossip messages sent.", m.messagesOut)
        out.add(
            "tandem_membership_pings_for_others_total", .counter, "Pings naming another member (a reused address), not answered.",
            m.pingsForOthers)
        out.add(
            "tandem_membership_address_conflicts_total", .counter, "Alive claims for a live member from another address, refused.",
            m.addressConflicts)
        out.add("tandem_membership_local_health", .gauge, "Lifeguard local health score (0 is healthy).", membership.awareness)
        out.add("tandem_membership_incarnation", .gauge, "This node's incarnation.", Int(membership.myself.incarnation))
        let states = membership.memberStates
        out.add(
            "tandem_membership_members", .gauge, "Members by status in this node's view.",
            samples: MemberStatus.allCases.map { status in ([("status", "\(status)")], states.filter { $0.status == status }.count) })
        out.add("tandem_gossip_packets_in_total", .counter, "Gossip datagrams received.", shell.packetsIn)
        out.add("tandem_gossip_packets_out_total", .counter, "Gossip datagrams sent.", shell.packetsOut)
        out.add("tandem_gossip_bytes_in_total", .counter, "Gossip bytes received.", shell.bytesIn)
        out.add("tandem_gossip_bytes_out_total", .counter, "Gossip bytes sent.", shell.bytesOut)
        out.add(
            "tandem_gossip_malformed_packets_total", .counter, "Gossip datagrams dropped as malformed or foreign.", shell.malformedPackets)
        out.add("tandem_gossip_send_failures_total", .counter, "Datagrams the kernel would not take.", udp.sendFailures)
        out.add(
            "tandem_gossip_unauthenticated_packets_total", .counter, "Gossip datagrams no keyring key opened, dropped unanswered.",
            shell.unauthenticatedPackets)
        out.add(
            "tandem_gossip_replayed_packets_total", .counter, "Sealed datagrams refused as too old, from the future, or seen before.",
            shell.replayedPackets)
        out.add("tandem_chaos_dropped_total", .counter, "Datagrams dropped by opt-in fault injection.", shell.chaosDropped)
        out.add("tandem_chaos_fsync_failures_total", .counter, "fsyncs failed by opt-in disk fault injection.", DiskFaults.process.injected)
        out.add(
            "tandem_chaos_read_failures_total", .counter, "Stream log reads failed by opt-in disk fault injection.",
            DiskFaults.process.injectedReads)
        let p = peers.stats
        out.add("tandem_peer_frames_in_total", .counter, "Peer frames received.", p.framesIn)
        out.add("tandem_peer_frames_out_total", .counter, "Peer frames sent.", p.framesOut)
        out.add("tandem_peer_bytes_in_total", .counter, "Peer link bytes received.", p.bytesIn)
        out.add("tandem_peer_bytes_out_total", .counter, "Peer link bytes sent.", p.bytesOut)
        out.add(
            "tandem_peer_malformed_frames_total", .counter, "Peer frames rejected (size, version, checksum, payload).", p.malformedFrames)
        out.add(
            "tandem_peer_unauthenticated_frames_total", .counter, "Peer frames no keyring key opened (connection closed, unanswered).",
            p.unauthenticatedFrames)
        out.add(
            "tandem_peer_replayed_frames_total", .counter, "Sealed peer frames refused as replays (connection closed, unanswered).",
            p.replayedFrames)
        out.add("tandem_peer_connect_failures_total", .counter, "Failed peer connection attempts.", p.connectFailures)
        out.add("tandem_peer_request_timeouts_total", .counter, "Peer requests that timed out.", p.requestTimeouts)
        let h = http.stats
        out.add("tandem_http_requests_total", .counter, "HTTP requests parsed.", h.requests)
        out.add("tandem_http_bad_requests_total", .counter, "HTTP requests rejected as malformed or over a limit.", h.badRequests)
        out.add("tandem_http_connections_total", .counter, "HTTP connections accepted.", h.connectionsAccepted)
        out.add(
            "tandem_http_connections_rejected_total", .counter, "HTTP connections refused at the connection limit.", h.connectionsRejected)
        out.add(
            "tandem_http_client_limit_rejected_total", .counter, "HTTP connections refused (429) at the per-client limit.",
            h.clientLimitRejected)
        out.add("tandem_http_request_timeouts_total", .counter, "Requests answered 408: headers or body too slow.", h.requestTimeouts)
        out.add("tandem_data_dir_write_failures_total", .counter, "Failed durable writes to the data dir.", shell.persistFailures)
        let t = tables.core.stats
        let c = tables.stats
        out.add("tandem_table_commits_total", .counter, "LMDB commits (each may carry many writes).", c.commits)
        out.add("tandem_table_writes_committed_total", .counter, "Item writes made durable (each changed item once per commit).", c.writes)
        out.add("tandem_table_commit_failures_total", .counter, "Commits that failed (writes not acknowledged).", c.failures)
        out.add(
            "tandem_table_store_read_failures_total", .counter, "Reads of the item store that failed (that work not done).",
            t.storeReadFailures)
        out.add("tandem_table_cache_items", .gauge, "Decoded items in the table cache.", tables.core.cache.count)
        out.add("tandem_table_cache_hits_total", .counter, "Item reads served by the table cache.", tables.core.cache.hits)
        out.add("tandem_table_cache_misses_total", .counter, "Item reads that went to LMDB.", tables.core.cache.misses)
        out.add(
            "tandem_table_pending_items", .gauge,
            "Items with a change not yet durable (all memory holds of tables besides their summaries).",
            tables.core.replicas.values.reduce(0) { $0 + $1.pendingCount })
        out.add("tandem_ttl_deleted_total", .counter, "Expired items (DynamoDB TTL) this node's sweep deleted.", tables.ttlDeleted)
        out.add("tandem_table_deltas_sent_total", .counter, "Deltas acknowledged by peers.", t.deltasSent)
        out.add("tandem_table_deltas_received_total", .counter, "Deltas received from peers.", t.deltasReceived)
        out.add(
            "tandem_table_deltas_dropped_total", .counter, "Deltas dropped from full or dead-peer queues (anti-entropy repairs).",
            t.deltasDropped)
        out.add("tandem_table_merges_total", .counter, "Remote deltas that changed an item here.", t.mergesApplied)
        out.add("tandem_table_anti_entropy_rounds_total", .counter, "Digest exchanges started.", t.antiEntropyRounds)
        out.add("tandem_table_items_repaired_total", .counter, "Items pushed to peers by anti-entropy.", t.itemsRepaired)
        out.add(
            "tandem_table_conflicts_resolved_total", .counter,
            "Remote deltas merged with concurrent local state (neither contained the other).", t.conflictsResolved)
        out.add("tandem_table_repair_bytes_total", .counter, "Bytes of anti-entropy pushes.", t.repairBytes)
        out.add("tandem_table_deltas_resent_total", .counter, "Deltas sent again after a failed batch.", t.deltasResent)
        out.add("tandem_table_clock_clamped_total", .counter, "Remote timestamps too far ahead of our clock, clamped.", t.clockClamped)
        out.add(
            "tandem_table_refused_from_expired_total", .counter, "Sync messages refused from members that must resync first.",
            t.refusedFromExpired)
        out.add("tandem_table_items_compacted_total", .counter, "Items whose tombstones were collected.", t.itemsCompacted)
        out.add("tandem_table_items_collected_total", .counter, "Deleted items dropped once their delete was stable.", t.itemsCollected)
        out.add("tandem_table_resyncs_total", .counter, "Times this node resynced after being expired.", t.resyncs)
        out.add(
            "tandem_table_stable_lag_ms", .gauge, "Wall time minus the stable time tombstones are collected below.",
            tables.core.stable == 0 ? 0 : Int(Tables.wallMs()) - Int(tables.core.stable >> 16))
        out.add("tandem_table_malformed_total", .counter, "Malformed table sync messages.", t.malformed)
        out.add("tandem_table_replication_lag_ms", "Write on its origin to applied here, in ms.", histograms: [([], tables.replicationLag)])
        streams.metrics(&out)
        processors.metrics(&out)
        center.metrics(&out)
        routes.metrics(&out)
        let dropped = shell.malformedPackets + p.malformedFrames + h.badRequests + t.malformed
        out.add("tandem_malformed_input_total", .counter, "All malformed input dropped (gossip, peer, HTTP).", dropped)
        out.add(
            "tandem_aws_errors_total", .counter, "Error answers of the DynamoDB and Kinesis APIs, by service and error type.",
            samples: shell.awsErrors.sorted { ($0.key.service, $0.key.type) < ($1.key.service, $1.key.type) }.map {
                (labels: [("service", $0.key.service), ("type", $0.key.type)], value: $0.value as any CustomStringConvertible)
            })
        return out.text
    }

}
