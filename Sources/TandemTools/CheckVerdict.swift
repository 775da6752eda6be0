import Foundation
import TandemCore
import TandemTestKit
import Transport

/// The checker's verdict: after the faults, heal and verify tables, counters, sets, the stream,
/// its processors and the routes (each check says how much it saw, and fails when it saw too
/// little to judge).
extension CheckRun {
    struct Verdict {
        var ok = true
        var report = ""
        mutating func check(_ condition: Bool, _ line: String) {
            if !condition { ok = false }
            report += (condition ? "  ok    " : "  FAIL  ") + line + "\n"
        }
    }

    func healAndVerify() -> Verdict {
        var v = Verdict()
        defer { sh("\(nemesis) clear") }
        sh("\(nemesis) heal")
        sh("\(nemesis) clear")
        // With background loss, the cluster must converge through it too.
        if backgroundLoss > 0 { sh("\(nemesis) loss \(backgroundLoss)%") }
        for r in regions { sh("\(nemesis) start \(r)") }
        let healStart = Date()
        func digests() -> [String?] {
            apis.indices.map { i in
                guard let r = read(i, "/v1/tables/check"), r.status == 200, let j = try? JSON.parse(r.body) else { return nil }
                return j["digest"]?.stringValue
            }
        }
        let converged = eventually(timeout: .seconds(90), interval: .milliseconds(200)) {
            let d = digests()
            return d.allSatisfy { $0 != nil } && Set(d).count == 1
        }
        let convergence = Date().timeIntervalSince(healStart)
        v.report +=
            "faults injected: \(faults.count) (\(Set(faults.map { $0.split(separator: " ")[0] }).sorted().joined(separator: ", ")))\n"
        v.check(converged, String(format: "every replica of the table equal after the heal (%.1f s)", convergence))

        // Counters: every node holds the same value, at least every acknowledged increment and
        // at most those plus the ones whose outcome is unknown.
        var counterLines: [String] = []
        var countersOK = true
        let (acked, maybe, expected) = lock.withLock { (counterAcked, counterMaybe, elements) }
        for k in 0..<CheckRun.counters {
            let values = apis.indices.map { i -> Int? in
                guard let r = read(i, "/v1/tables/check/items/\(run)-ctr-\(k)"), r.status == 200,
                    let j = try? JSON.parse(r.body), case .number(let n)? = j["item"]?["n"]
                else { return acked[k] == 0 && maybe[k] == 0 ? 0 : nil }
                return Int(n)
            }
            let same = Set(values).count == 1
            let value = values.first.flatMap { $0 } ?? -1
            let within = value >= acked[k] && value <= acked[k] + maybe[k]
            if !(same && within) {
                countersOK = false
                counterLines.append(
                    "ctr-\(k): nodes \(values.map { $0.map(String.init) ?? "?" }), acknowledged \(acked[k]), unknown \(maybe[k])")
            }
        }
        v.check(
            countersOK,
            "counters: \(acked.reduce(0, +)) acknowledged increments all counted, none invented (\(maybe.reduce(0, +)) of unknown outcome)")
        for l in counterLines { v.report += "        \(l)\n" }

        // Sets: the add-wins expectation, element by element, on every node.
        var wrong: [String] = []
        for w in 0..<setWriters {
            let contents = apis.indices.map { i -> Set<String>? in
                guard let r = read(i, "/v1/tables/check/items/\(run)-set-\(w)") else { return nil }
                if r.status == 404 { return [] }
                guard r.status == 200, let j = try? JSON.parse(r.body), case .array(let xs)? = j["item"]?["members"]?["$SS"] else {
                    return []
                }
                return Set(xs.compactMap(\.stringValue))
            }
            // A node that cannot be read cannot be checked: that is a failure, not a skip.
            for (i, c) in contents.enumerated() where c == nil { wrong.append("set-\(w) unreadable on \(regions[i])") }
            if Set(contents.map { $0.map { $0.sorted() } }).count != 1 { wrong.append("set-\(w) differs between nodes") }
            guard let seen = contents.first ?? nil else { continue }
            for (e, presence) in expected where e.hasPrefix("e-\(w)-") {
                if presence == .present && !seen.contains(e) { wrong.append("\(e) acknowledged added, missing") }
                if presence == .absent && seen.contains(e) { wrong.append("\(e) acknowledged removed, present") }
            }
        }
        v.check(wrong.isEmpty, "sets: \(expected.count) elements match the add-wins expectation on every node")
        for l in wrong.prefix(10) { v.report += "        \(l)\n" }
        let logs = verifyStream(&v)
        processors?.verify(&v, logs: logs, check: self)
        verifyRoutes(&v)
        return v
    }

    /// Route answers judged against the fault timeline: no node names a region killed or
    /// stalled longer than the bound ago, and after every change (a fault, or its undo) the
    /// nodes that answer agree again within the bound — except while a partition lasts, when
    /// each side keeps its own view by design (the minority freezes its view; see Routing).
    func verifyRoutes(_ v: inout Verdict) {
        let (answers, events, stats, samples) = lock.withLock { (self.answers, self.events, self.probeStats, self.membershipSamples) }

        // Enough answers to judge by? A node's answerable probes are those due while it was
        // neither killed nor stopped (the client is never partitioned away). Faults cost a
        // working prober some answers (lost packets, 200 ms timeouts); when fewer than half
        // of a node's answerable probes were answered, the prober was not keeping up, and
        // what it missed is no longer a small random sample of what the node did.
        var downSeconds = Array(repeating: 0.0, count: apis.count)
        var deadWindows: [(from: Date, to: Date, node: Int)] = []
        for (k, e) in events.enumerated() where !e.undo {
            let parts = e.fault.split(separator: " ")
            guard parts[0] == "kill" || parts[0] == "stop", let i = regions.firstIndex(of: String(parts[1])) else { continue }
            let end = events[(k + 1)...].first { $0.undo && $0.fault == e.fault }?.at ?? probingUntil
            deadWindows.append((e.at, end, i))
            downSeconds[i] += end.timeIntervalSince(e.at)
        }
        let seconds = probingUntil.timeIntervalSince(probingFrom)
        var enough = true
        var perNode: [String] = []
        var dueAll = 0, answeredAll = 0
        for i in apis.indices {
            let due = Int(seconds * CheckRun.probeHz)
            let answerable = max(1, Int((seconds - downSeconds[i]) * CheckRun.probeHz))
            let answered = answers.filter { $0.node == i }.count
            dueAll += due
            answeredAll += answered
            if Double(answered) < CheckRun.minAnsweredShare * Double(answerable) { enough = false }
            perNode.append(
                String(
                    format: "%@ %d of %d answerable (%.0f%%; %d due, %d sent, %d failed, %d slots missed)",
                    regions[i], answered, answerable, 100 * Double(answered) / Double(answerable), due,
                    stats[i].sent, stats[i].failed, stats[i].missed))
        }
        v.check(
            enough,
            String(
                format:
                    "prober: %d answers of %d probes due (%d Hz × %d nodes × %.0f s); at least %.0f%% of each node's answerable probes needed to judge routes",
                answeredAll, dueAll, Int(CheckRun.probeHz), apis.count, seconds, 100 * CheckRun.minAnsweredShare))
        for l in perNode { v.report += "        \(l)\n" }

        // Failover after each kill or stall of region X. The contacts survivors sent to X in
        // the second before the fault must, after it, first still name X (the failover is the
        // last such answer) and then name another region. A fault with no answers before it,
        // or none naming X after it, is unobserved: never a failover of 0 s. X taking no probe
        // contact at the fault (still in its hold-down after an earlier fault) has none to see.
        var stale = 0
        var failovers: [Double] = []
        var unobserved: [String] = []
        var notRouted = 0
        for w in deadWindows {
            let x = regionNames[w.node]
            let survivors = answers.filter { $0.node != w.node }
            let before = survivors.filter { $0.at < w.from && $0.at >= w.from.addingTimeInterval(-1) }
            let homed = Set(before.filter { $0.region == x }.map(\.contact))
            let after = survivors.filter { $0.at > w.from && $0.at < w.to && homed.contains($0.contact) }
            stale +=
                survivors.filter { $0.at > w.from && $0.at < w.to && $0.region == x && $0.at.timeIntervalSince(w.from) > routeBound }.count
            let label = String(format: "%@ at +%.1f s", regions[w.node], w.from.timeIntervalSince(probingFrom))
            if before.isEmpty {
                unobserved.append("\(label): no answers in the second before")
                continue
            }
            if homed.isEmpty {
                notRouted += 1
                continue
            }
            guard let lastStale = after.filter({ $0.region == x }).map(\.at).max() else {
                unobserved.append("\(label): no answer after it named \(x)")
                continue
            }
            guard after.contains(where: { $0.at > lastStale && $0.region != x }) else {
                unobserved.append("\(label): still named \(x) at the last answer before the fault ended")
                continue
            }
            failovers.append(lastStale.timeIntervalSince(w.from))
        }
        let slowest = failovers.max().map { String(format: "%.2f s", $0) } ?? "none observed"
        v.check(
            stale == 0, String(format: "routes: no answer named a region dead for more than %.0f s (%d answers did)", routeBound, stale))
        v.check(
            unobserved.isEmpty,
            "routes: failover seen after every kill/stall (slowest \(slowest); \(failovers.count) observed, \(unobserved.count) unobserved, \(notRouted) not taking probe contacts at the time, of \(deadWindows.count) kills/stalls; \(answers.count) answers)"
        )
        for l in unobserved.prefix(10) { v.report += "        \(l)\n" }

        // Agreement: answers in 100 ms buckets; a bucket agrees when every node that answered
        // gave the same region for each probe contact.
        func agrees(_ bucket: [Answer]) -> Bool {
            Dictionary(grouping: bucket, by: \.contact).values.allSatisfy { Set($0.map(\.region)).count == 1 }
        }
        let changes = events.map(\.at)
        var worstAgreement = 0.0
        var disagreements = 0
        for (k, change) in changes.enumerated() {
            let next = k + 1 < changes.count ? changes[k + 1] : Date()
            // Partitions: skip until healed (each side keeps its own view on purpose).
            if let e = events.last(where: { $0.at <= change }), e.fault.hasPrefix("partition"), !e.undo { continue }
            let window = answers.filter { $0.at >= change && $0.at < next }
            let buckets = Dictionary(grouping: window) { Int($0.at.timeIntervalSince(change) * 10) }
            let lastDisagreeing = buckets.filter { !agrees($0.value) }.keys.max()
            if let b = lastDisagreeing {
                let t = Double(b + 1) / 10
                worstAgreement = max(worstAgreement, t)
                if t > routeBound {
                    disagreements += 1
                    v.report += describeDisagreement(
                        change: events[k], at: change.addingTimeInterval(Double(b) / 10), bucket: buckets[b]!, lasted: t,
                        samples: samples)
                }
            }
        }
        v.check(
            disagreements == 0,
            String(
                format: "routes: every node answered alike within %.0f s of each change (slowest %.1f s over %d changes)",
                routeBound, worstAgreement, changes.count))
    }

    /// A broken agreement, named: the change it followed, which nodes answered what for which
    /// contacts in the last disagreeing 100 ms (with the route table fingerprint each answer came
    /// from), and every node's membership view then.
    func describeDisagreement(
        change: (at: Date, fault: String, undo: Bool), at: Date, bucket: [Answer], lasted: Double, samples: [MembershipSample]
    ) -> String {
        var out = String(
            format: "        disagreement %.1f s after %@ '%@' at +%.1f s; last disagreeing at +%.1f s:\n", lasted,
            change.undo ? "the undo of" : "fault", change.fault, change.at.timeIntervalSince(probingFrom),
            at.timeIntervalSince(probingFrom))
        for (contact, group) in Dictionary(grouping: bucket, by: \.contact).sorted(by: { $0.key < $1.key })
        where Set(group.map(\.region)).count > 1 {
            let byNode = Dictionary(grouping: group, by: \.node).sorted { $0.key < $1.key }.map { node, a in
                "\(regions[node]) → \(Set(a.map(\.region)).sorted().joined(separator: "/")) (table \(Set(a.map(\.table)).sorted().joined(separator: "/")))"
            }
            out += "          contact \(probeContacts[contact]): \(byNode.joined(separator: ", "))\n"
        }
        for node in apis.indices {
            let nearest = samples.filter { $0.node == node }.min { abs($0.at.timeIntervalSince(at)) < abs($1.at.timeIntervalSince(at)) }
            let view = nearest.map { String(format: "%@ (sampled %+.2f s)", $0.view, $0.at.timeIntervalSince(at)) } ?? "no sample"
            out += "          \(regions[node]) members: \(view)\n"
            if let n = nearest { out += "          \(regions[node]) routes: \(n.routing)\n" }
        }
        return out
    }

    /// A partition's whole log as one node serves it: (sequence, payload) in order.
    func readAll(_ node: Int, partition p: Int) -> [(String, String)]? {
        var out: [(String, String)] = []
        var from = "trim-horizon"
        while true {
            guard let r = read(node, "/v1/streams/\(stream)/partitions/\(p)/records?from=\(from)&limit=1000"),
                r.status == 200, let j = try? JSON.parse(r.body), case .array(let records)? = j["records"]
            else { return nil }
            for rec in records {
                guard let seq = rec["sequence"]?.stringValue, let data = rec["data"]?.stringValue, let bytes = Base64.decode(data) else {
                    return nil
                }
                out.append((seq, String(decoding: bytes, as: UTF8.self)))
            }
            guard !records.isEmpty, let next = j["next"]?.stringValue else { return out }
            from = next
        }
    }

    /// Every acknowledged record exactly once, at its sequence, in the same order on every
    /// replica; nothing that was not put. Returns each partition's log (the longest a node
    /// served, when they still differ): the truth the processors are judged by.
    @discardableResult
    func verifyStream(_ v: inout Verdict) -> [[(String, String)]] {
        let (acked, maybe) = lock.withLock { (recordsAcked, recordsMaybe) }
        var problems: [String] = []
        var logs: [[[(String, String)]]] = []
        // Replicas catch up to the commit index after the heal: wait until they agree.
        let agreed = eventually(timeout: .seconds(60), interval: .milliseconds(500)) {
            logs = (0..<CheckRun.partitions).map { p in self.apis.indices.map { self.readAll($0, partition: p) ?? [] } }
            return logs.allSatisfy { perNode in
                perNode.dropFirst().allSatisfy { $0.map(\.0) == perNode[0].map(\.0) && $0.map(\.1) == perNode[0].map(\.1) }
            }
        }
        if !agreed { problems.append("replicas of some partition still differ 60 s after the heal") }
        var found: [String: (Int, String)] = [:]
        for (p, perNode) in logs.enumerated() {
            for (seq, payload) in perNode.first ?? [] where payload != "\u{0}" {
                if found[payload] != nil { problems.append("\(payload) appears twice") }
                found[payload] = (p, seq)
                if acked[payload] == nil && !maybe.contains(payload) { problems.append("\(payload) at \(p)/\(seq) was never put") }
            }
        }
        for (payload, at) in acked {
            guard let f = found[payload] else {
                problems.append("acknowledged \(payload) (\(at.partition)/\(at.sequence)) is missing"); continue
            }
            if f.0 != at.partition || f.1 != at.sequence {
                problems.append("\(payload) acknowledged at \(at.partition)/\(at.sequence), found at \(f.0)/\(f.1)")
            }
        }
        let total = logs.map { $0.first?.count ?? 0 }.reduce(0, +)
        v.check(
            problems.isEmpty,
            "stream: \(acked.count) acknowledged records all present once, at their sequence, same order on every replica (\(total) in the log, \(maybe.count) of unknown outcome)"
        )
        for l in problems.prefix(10) { v.report += "        \(l)\n" }
        return logs.map { perNode in perNode.max { $0.count < $1.count } ?? [] }
    }
}
