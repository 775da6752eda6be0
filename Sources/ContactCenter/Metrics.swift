// Real-time metrics, computed from the state (so every replica that applied the same entries
// shows the same figures; the node serves them from its own replica, fresh to within its
// replication lag). Definitions follow Amazon Connect's real-time metrics:
// - Online: signed in with a status other than an OFFLINE one.
// - Available: can be offered a contact now (routable status, no next status, a free slot).
// - On contact: holds a connected or held contact. ACW: in after-contact work and on nothing else.
// - Non-productive (NPT): online in a CUSTOM status and working on no contact.
// - Staffed: online and not non-productive (Connect: Available, ACW or busy on contacts).
// - Service level: answered within the queue's threshold / (answered + abandoned), in percent,
//   over the current interval — contacts that left the queue, as Connect counts it.
// - Abandonment rate: abandoned / enqueued in the current interval, in percent.
// - Average handle time: talk + hold + after-contact work of contacts handled in the interval.
// A ratio with no denominator is nil, as Connect returns null rather than 0.
// For a queue, agents count when their routing profile serves the queue; contacts and agents are
// split by region (the contact's, the agent's signed-in one).

public struct QueueMetrics: Sendable, Equatable {
    public var contactsInQueue = 0
    public var oldestContactAgeMs: UInt64?
    public var agentsOnline = 0
    public var agentsAvailable = 0
    public var agentsOnContact = 0
    public var agentsAfterContactWork = 0
    public var agentsNonProductive = 0
    public var agentsStaffed = 0
    public var contactsEnqueued = 0
    public var contactsAnswered = 0
    public var contactsAnsweredWithinServiceLevel = 0
    public var contactsAbandoned = 0
    public var contactsHandled = 0
    public var handleTimeMs: UInt64 = 0
    public var answerWaitMs: UInt64 = 0

    public var serviceLevelPercent: Double? {
        let left = contactsAnswered + contactsAbandoned
        return left == 0 ? nil : Double(contactsAnsweredWithinServiceLevel) * 100 / Double(left)
    }
    public var abandonmentRatePercent: Double? { contactsEnqueued == 0 ? nil : Double(contactsAbandoned) * 100 / Double(contactsEnqueued) }
    public var averageHandleTimeMs: UInt64? { contactsHandled == 0 ? nil : handleTimeMs / UInt64(contactsHandled) }
    public var averageAnswerWaitMs: UInt64? { contactsAnswered == 0 ? nil : answerWaitMs / UInt64(contactsAnswered) }

    mutating func add(_ t: IntervalTotals) {
        contactsEnqueued += t.enqueued
        contactsAnswered += t.answered
        contactsAnsweredWithinServiceLevel += t.answeredWithinServiceLevel
        contactsAbandoned += t.abandoned
        contactsHandled += t.handled
        handleTimeMs += t.handleTimeMs
        answerWaitMs += t.answerWaitMs
    }
}

/// One scope's figures: all regions together, and each region.
public struct RealtimeMetrics: Sendable, Equatable {
    public var global = QueueMetrics()
    public var regions: [String: QueueMetrics] = [:]

    mutating func update(region: String?, _ change: (inout QueueMetrics) -> Void) {
        change(&global)
        if let region { change(&regions[region, default: QueueMetrics()]) }
    }
}

/// Where a waiting contact stands.
public struct WaitEstimate: Sendable, Equatable {
    /// 1 for the contact at the head of its queue's line.
    public var position: Int
    /// Work ahead (position × average handle time) shared by the agents staffed for the queue;
    /// nil until the interval has a handled contact or while no agent is staffed.
    public var estimatedWaitMs: UInt64?
}

extension ContactCenterState {
    /// The metrics of one queue; nil for an unknown queue.
    public func metrics(queue: String) -> RealtimeMetrics? {
        guard queues[queue] != nil else { return nil }
        return metrics { $0 == queue }
    }

    /// The whole center: every queue's contacts, every agent.
    public func centerMetrics() -> RealtimeMetrics { metrics { _ in true } }

    private func metrics(of includes: (String) -> Bool) -> RealtimeMetrics {
        var m = RealtimeMetrics()
        for (_, line) in lines.filter({ includes($0.key) }) {
            for w in line {
                let c = contacts[w.contactId]!
                let age = elapsed(since: c.queuedAt)
                m.update(region: c.region) {
                    $0.contactsInQueue += 1
                    $0.oldestContactAgeMs = max($0.oldestContactAgeMs ?? 0, age)
                }
            }
        }
        for agent in agents.values {
            guard agent.signedIn, statusType(of: agent.status) != .offline,
                let profile = routingProfiles[agent.definition.routingProfile], profile.queues.contains(where: { includes($0.queue) })
            else { continue }
            let states = agent.contacts.compactMap { contacts[$0]?.state }
            let onContact = states.contains { $0 == .connected || $0 == .onHold }
            let inAfterContactWork = !onContact && states.contains(.afterContactWork)
            let nonProductive = statusType(of: agent.status) == .custom && !onContact && !inAfterContactWork
            let available = isRoutable(agent) && hasFreeSlot(agent)
            m.update(region: agent.region) {
                $0.agentsOnline += 1
                if available { $0.agentsAvailable += 1 }
                if onContact { $0.agentsOnContact += 1 }
                if inAfterContactWork { $0.agentsAfterContactWork += 1 }
                if nonProductive { $0.agentsNonProductive += 1 } else { $0.agentsStaffed += 1 }
            }
        }
        for t in intervalTotals.values where includes(t.queue) { m.update(region: t.region) { $0.add(t) } }
        return m
    }

    /// A queued contact's place in line and estimated wait; nil if it is not queued.
    public func waitEstimate(contact id: String) -> WaitEstimate? {
        guard let c = contacts[id], c.state == .queued, let line = lines[c.queue], let i = line.firstIndex(at: c.position) else {
            return nil
        }
        let position = i + 1
        let m = metrics(queue: c.queue)!.global
        guard let handle = m.averageHandleTimeMs, m.agentsStaffed > 0 else { return WaitEstimate(position: position, estimatedWaitMs: nil) }
        return WaitEstimate(position: position, estimatedWaitMs: handle * UInt64(position) / UInt64(m.agentsStaffed))
    }
}
