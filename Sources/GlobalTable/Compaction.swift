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

    /// Whether some write in `incoming` arrives already beaten here — a newer write to the same
    /// attribute, or a newer put/delete: a conflict the merge rules resolved (for the metric).
    public func supersedes(_ incoming: ItemState) -> Bool {
        for (name, a) in incoming.attributes {
            let theirs = a.lastWrite
            if marker > theirs || (attributes[name].map { $0.lastWrite > theirs } ?? false) { return true }
        }
        return incoming.marker != .zero && incoming.marker < marker
    }

    /// Whether compaction could drop anything once every write here is stable: cheap, and
    /// false for the common live item (one component per attribute, nothing hidden), so
    /// tombstone collection only visits items that hold tombstones.
    public var hasGarbage: Bool {
        if marker != .zero && attributes.isEmpty { return true }
        for a in attributes.values {
            if a.lastWrite < marker || !a.paths.isEmpty { return true }
            let components = (a.register != nil ? 1 : 0) + (a.counter != nil ? 1 : 0) + (a.set != nil ? 1 : 0)
            if components > 1 || (a.register != nil && a.register!.value == nil) { return true }
            if let s = a.set, !s.removed.isEmpty || s.adds.isEmpty { return true }
        }
        return false
    }

    public func admitted(stable: UInt64) -> ItemState {
        guard stable > 0 else { return self }
        var attributes: [String: AttributeState] = [:]
        for (name, a) in self.attributes {
            if let kept = a.admitted(stable: stable) { attributes[name] = kept }
        }
        return Builder(marker: marker.time >= stable ? marker : .zero, attributes: attributes).build()
    }
}

extension AttributeState {
    /// The time of the component written last at this path (its own, not the paths below).
    var ownLatest: HLC {
        [register?.at, counter?.lastWrite, set?.lastWrite].compactMap { $0 }.max() ?? .zero
    }

    func compacted(stable: UInt64, marker: HLC) -> AttributeState? {
        // Hidden by a stable put/delete: nothing older can arrive to make it count again.
        if lastWrite < marker && marker.time < stable { return nil }
        var a = compactedComponents(stable: stable, marker: marker)
        a.paths = [:]
        for (keys, p) in paths {
            let latest = p.ownLatest
            if latest < marker && marker.time < stable { continue }
            // Hidden by a stable write at a prefix (the attribute itself, or a map above):
            // the fold applies it after this one, replacing whatever this one put there.
            let covering = (0..<keys.count).map { n in n == 0 ? ownLatest : (paths[Array(keys[..<n])]?.ownLatest ?? .zero) }
            if covering.contains(where: { $0 > latest && $0.time < stable }) { continue }
            let kept = p.compactedComponents(stable: stable, marker: marker)
            if kept.register != nil || kept.counter != nil || kept.set != nil { a.paths[keys] = kept }
        }
        // A stable removal with nothing left under it: nobody can observe it.
        if ownLatest.time < stable, a.paths.isEmpty, a.counter == nil, a.set == nil, a.register.map({ $0.value == nil }) ?? true {
            return nil
        }
        return a
    }

    /// The register, counter and set of one path, compacted (no paths).
    private func compactedComponents(stable: UInt64, marker: HLC) -> AttributeState {
        var a = AttributeState(register: register, counter: counter, set: set)
        let latest = ownLatest
        if latest.time < stable {
            // The latest write is stable, so the register or counter it replaced is replaced
            // for good: only the newest component is ever read or edited. A replaced set stays
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
        return a
    }

    /// The parts written at or after `stable`, at every path.
    func admitted(stable: UInt64) -> AttributeState? {
        var kept = AttributeState()
        if let r = register, r.at.time >= stable { kept.register = r }
        if let c = counter, c.lastWrite.time >= stable { kept.counter = c }
        if var s = set, let w = s.lastWrite, w.time >= stable {
            // Old add tags are here already, or were collected with their removal.
            s.adds = s.adds.compactMapValues { tags in
                let fresh = tags.filter { $0.time >= stable }
                return fresh.isEmpty ? nil : fresh
            }
            kept.set = s
        }
        for (keys, p) in paths {
            if let k = p.admitted(stable: stable) { kept.paths[keys] = k }
        }
        return kept.register != nil || kept.counter != nil || kept.set != nil || !kept.paths.isEmpty ? kept : nil
    }
}
