/// Tombstone garbage collection, by causal stability.
///
/// `stable` is an HLC time below which every write anywhere has reached every member still
/// counted (see `StabilityTracker`). Below it nothing new can arrive, so:
///
/// - `compacted(stable:)` drops what can never be seen again: registers and counters an
///   attribute's later write replaced, attributes hidden by the item marker, removals nobody can
///   observe, the tombstones of set elements whose removal is stable, and whole deleted items.
///   It never changes what a reader sees, and merging uncompacted state back in only brings
///   back what the next compaction drops again, so replicas that compact at different moments
///   hold the same bytes once `stable` has passed their last write.
/// - `admitted(stable:)` is what a member that was gone longer than the retention bound keeps
///   of its own state before it rejoins: only the parts written after `stable`. Older parts
///   are either everywhere already or stale, and merging stale parts could bring back what a
///   collected tombstone deleted. So deletes never come back.
extension ItemState {
    /// Nil when nothing of the item is left (a stable delete, or stable removals only).
    public func compacted(stable: UInt64) -> ItemState? {
        guard stable > 0 else { return self }
        var attributes: [String: AttributeState] = [:]
        for (name, a) in self.attributes {
            if let kept = a.compacted(stable: stable, marker: marker) { attributes[name] = kept }
        }
        if attributes.isEmpty && marker.time < stable { return nil }
        return Builder(marker: marker, attributes: attributes).build()
    }

    public func admitted(stable: UInt64) -> ItemState {
        guard stable > 0 else { return self }
        var attributes: [String: AttributeState] = [:]
        for (name, a) in self.attributes {
            var kept = AttributeState()
            if let r = a.register, r.at.time >= stable { kept.register = r }
            if let c = a.counter, c.lastWrite.time >= stable { kept.counter = c }
            if var s = a.set, let w = s.lastWrite, w.time >= stable {
                // Old add tags are here already, or were collected with their removal.
                s.adds = s.adds.compactMapValues { tags in
                    let fresh = tags.filter { $0.time >= stable }
                    return fresh.isEmpty ? nil : fresh
                }
                kept.set = s
            }
            if kept.register != nil || kept.counter != nil || kept.set != nil { attributes[name] = kept }
        }
        return Builder(marker: marker.time >= stable ? marker : .zero, attributes: attributes).build()
    }
}

extension AttributeState {
    /// The time of the component written last.
    var latestWrite: HLC {
        [register?.at, counter?.lastWrite, set?.lastWrite].compactMap { $0 }.max() ?? .zero
    }

    func compacted(stable: UInt64, marker: HLC) -> AttributeState? {
        let latest = latestWrite
        // Hidden by a stable put/delete: nothing older can arrive to make it count again.
        if latest < marker && marker.time < stable { return nil }
        var a = self
        if latest.time < stable {
            // The latest write is stable, so the register or counter it replaced is replaced
            // for good: only the visible component is ever read or edited. A replaced set stays
            // while it has live tags: a set edit starting from a whole-set write tombstones the
            // old set's live tags, and must find them to do so on every replica alike.
            if let r = a.register, r.at != latest { a.register = nil }
            if let c = a.counter, c.lastWrite != latest { a.counter = nil }
        }
        if var s = a.set, let w = s.lastWrite, w.time < stable {
            // Every add and remove of this set is stable: removed tags, and tags the marker
            // hides, will never be seen again; the tombstones that recorded them can go.
            var adds: [SetElement: Set<HLC>] = [:]
            for (e, tags) in s.adds {
                let live = tags.filter { $0 >= marker && !(s.removed[e]?.contains($0) ?? false) }
                if !live.isEmpty { adds[e] = live }
            }
            s.adds = adds
            s.removed = [:]
            a.set = s.adds.isEmpty && latest.time < stable ? nil : s
        }
        // What is left is a stable removal with nothing under it: nobody can observe it.
        if latest.time < stable, a.counter == nil, a.set == nil, a.register.map({ $0.value == nil }) ?? true { return nil }
        return a
    }
}
