/// The merge rules of global tables, all in this file.
///
/// An item is a map of attributes plus an item-level marker. Every attribute keeps up to three
/// CRDT components — a last-writer-wins register, a counter and an add-wins observed-remove set —
/// each merged on its own, so merging whole attribute states is a join of joins: commutative,
/// associative and idempotent (tested as properties). What a reader sees comes from the
/// component written last. Timestamps are HLCs, unique per write across the cluster.
///
/// - `set`/`remove` write the register (a removal is a register holding nothing).
/// - `add n k` is a counter: per-node running totals over a base. The base is the register value
///   the writer saw (so `SET n = 5` then `ADD n 1` reads 6), and the counter's epoch is that
///   base's timestamp. Concurrent increments in two regions both count; a `set` concurrent with
///   an `add` wins over it (the add was made against a base the set replaced).
/// - `addToSet`/`removeFromSet` are an OR-set: each add carries a fresh tag, a remove tombstones
///   the tags it observed, so an add concurrent with a remove survives (add wins).
/// - `put` (replace the item) and `delete` write the item marker at their timestamp; everything
///   written before it is hidden, anything written after still lands.
/// - Nested map paths merge per path. Every write names a `DocumentPath`; a write below the
///   attribute (`set profile.address.city`) goes to that path's own three components in
///   `AttributeState.paths` (the attribute's own components are the path with no keys), so
///   writes to different paths never meet in a merge. The visible value is folded from every
///   path's newest component, applied oldest first: a write at P replaces what is at P, and a
///   write at a prefix of P (or the item marker) therefore hides older writes under it while
///   newer ones land on top. Same path: last writer wins, as for attributes. A write under
///   something that is not a map (a string, a list) replaces it with maps on the way down — it
///   is the newer write; a removal under a non-map has nothing to remove. Reads see plain nested
///   `.map` values.
public struct ItemState: Hashable, Sendable {
    /// put/delete timestamp: writes older than it are hidden.
    public private(set) var marker: HLC = .zero
    public private(set) var attributes: [String: AttributeState] = [:]

    public init() {}

    /// Assembles a state from decoded parts (the codec's door in; writers use the operations).
    struct Builder {
        var marker: HLC
        var attributes: [String: AttributeState] = [:]
        func build() -> ItemState {
            var s = ItemState()
            s.marker = marker
            s.attributes = attributes
            return s
        }
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Merge

    public mutating func merge(_ other: ItemState) {
        marker = max(marker, other.marker)
        for (name, state) in other.attributes {
            attributes[name, default: AttributeState()].merge(state)
        }
    }

    public func merged(_ other: ItemState) -> ItemState {
        var copy = self
        copy.merge(other)
        return copy
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Reading

    /// The HLC time of the latest write this state holds (marker or any component).
    public var lastWriteTime: UInt64 {
        var t = marker.time
        for a in attributes.values { t = max(t, a.lastWrite.time) }
        return t
    }

    /// The item as a reader sees it, or nil if it does not exist (never written, or deleted and
    /// not written since).
    public var visible: [String: AttributeValue]? {
        var out: [String: AttributeValue] = [:]
        for (name, state) in attributes {
            if let v = state.visible(after: marker) { out[name] = v }
        }
        return out.isEmpty ? nil : out
    }

    /// One attribute as a reader sees it (what `visible?[name]` gives, without folding the rest).
    public func visible(_ name: String) -> AttributeValue? {
        attributes[name]?.visible(after: marker)
    }

    // ==== ------------------------------------------------------------------------------------
    // MARK: Writing (each returns the delta to replicate; applying it locally is `merge`)

    /// Replaces the whole item.
    public mutating func put(_ values: [String: AttributeValue], at t: HLC) -> ItemState {
        var delta = ItemState()
        delta.marker = t
        for (name, value) in values { delta.attributes[name] = AttributeState(register: Register(value: value, at: t)) }
        merge(delta)
        return delta
    }

    public mutating func delete(at t: HLC) -> ItemState {
        var delta = ItemState()
        delta.marker = t
        merge(delta)
        return delta
    }

    public mutating func set(_ name: String, _ value: AttributeValue, at t: HLC) -> ItemState {
        set(DocumentPath(name), value, at: t)
    }

    public mutating func set(_ path: DocumentPath, _ value: AttributeValue, at t: HLC) -> ItemState {
        write(path, AttributeState(register: Register(value: value, at: t)))
    }

    public mutating func remove(_ name: String, at t: HLC) -> ItemState {
        remove(DocumentPath(name), at: t)
    }

    /// A removal is a register holding nothing: at a path, a per-path tombstone.
    public mutating func remove(_ path: DocumentPath, at t: HLC) -> ItemState {
        write(path, AttributeState(register: Register(value: nil, at: t)))
    }

    public mutating func add(_ name: String, _ amount: DecimalNumber, at t: HLC) -> ItemState? {
        add(DocumentPath(name), amount, at: t)
    }

    /// Adds `amount` (may be negative) to a number; nil if the value there is not a number or
    /// the sum would leave DynamoDB's range. Nothing there counts from zero.
    ///
    /// The running total is this node's (`t.node`) unless a `slot` is named: a writer that is
    /// not a node but a role that moves between nodes — a stream processor's consumer of one
    /// partition. Its totals only grow and merge by max, so a new owner that replays records
    /// from an older state reaches the same totals at the same record and never counts one twice
    /// (issue 16's materialized counters).
    public mutating func add(_ path: DocumentPath, _ amount: DecimalNumber, at t: HLC, slot: UInt64? = nil) -> ItemState? {
        let base = (attributes[path.attribute] ?? AttributeState()).base(at: path.keys, after: marker)
        var counter: Counter
        switch base.value {
        case .number(let n)?:
            if case .counter(let c)? = base.own { counter = c } else { counter = Counter(base: n, epoch: base.at) }
        case nil:
            if case .counter(let c)? = base.own {
                counter = c
            } else {
                // Every node that starts counting from nothing after the same write shares that
                // write's time as the epoch, so first increments made concurrently in two regions
                // both count.
                counter = Counter(base: .zero, epoch: base.at)
            }
        default:
            return nil
        }
        let writer = slot ?? t.node
        guard counter.add(amount, node: writer, at: t), counter.value(after: marker) != nil else { return nil }
        // The delta carries this writer's running total only, not the others' as this replica
        // has them: a total travels only in its own writer's writes. A processor's slot total
        // stands for the records up to its applied mark, which only its own owner writes; sent
        // along in another writer's delta it could reach a replica before that mark, and an
        // owner taking over there would count the records in between again (issue 16).
        return write(path, AttributeState(counter: counter.only(writer)))
    }

    public mutating func addToSet(_ name: String, _ elements: Set<SetElement>, at t: HLC) -> ItemState? {
        addToSet(DocumentPath(name), elements, at: t)
    }

    public mutating func addToSet(_ path: DocumentPath, _ elements: Set<SetElement>, at t: HLC) -> ItemState? {
        guard var set = setToEdit(path) else { return nil }
        for e in elements { set.adds[e, default: []].insert(t) }
        set.lastWrite = t
        return write(path, AttributeState(set: set))
    }

    public mutating func removeFromSet(_ name: String, _ elements: Set<SetElement>, at t: HLC) -> ItemState? {
        removeFromSet(DocumentPath(name), elements, at: t)
    }

    public mutating func removeFromSet(_ path: DocumentPath, _ elements: Set<SetElement>, at t: HLC) -> ItemState? {
        guard let current = setToEdit(path) else { return nil }
        var set = current
        for e in elements { set.removed[e, default: []].formUnion(current.adds[e] ?? []) }
        set.lastWrite = t
        return write(path, AttributeState(set: set))
    }

    /// The OR-set an edit starts from: the path's own set if it wrote the value there last, or —
    /// when that value was written whole (by `put`, `set`, or a write above the path) — its
    /// elements tagged with that write's timestamp, which every replica derives alike. Nil if a
    /// non-set is there.
    private func setToEdit(_ path: DocumentPath) -> ORSet? {
        let attribute = attributes[path.attribute] ?? AttributeState()
        let base = attribute.base(at: path.keys, after: marker)
        let elements: [SetElement]
        switch base.value {
        case .stringSet(let x)?: elements = x.map { .string($0) }
        case .numberSet(let x)?: elements = x.map { .number($0) }
        case .binarySet(let x)?: elements = x.map { .binary($0) }
        case nil: elements = []
        default: return nil
        }
        if case .set(let s)? = base.own { return s }
        var seeded = attribute.state(at: path.keys)?.set ?? ORSet()
        // Whatever the set held before the whole-value write is gone: tombstone it.
        for (e, tags) in seeded.adds { seeded.removed[e, default: []].formUnion(tags) }
        for e in elements { seeded.adds[e, default: []].insert(base.at) }
        return seeded
    }

    private mutating func write(_ path: DocumentPath, _ state: AttributeState) -> ItemState {
        var delta = ItemState()
        delta.attributes[path.attribute] = path.keys.isEmpty ? state : AttributeState(paths: [path.keys: state])
        merge(delta)
        return delta
    }
}

/// One attribute: its three CRDT components, each merged independently, and the same three for
/// every nested map path written on its own.
public struct AttributeState: Hashable, Sendable {
    public var register: Register?
    public var counter: Counter?
    public var set: ORSet?
    /// Per map-key path below the attribute (never empty), that path's own components; their
    /// `paths` stay empty. Merged pointwise, so merge stays a join.
    public var paths: [[String]: AttributeState]

    public init(register: Register? = nil, counter: Counter? = nil, set: ORSet? = nil, paths: [[String]: AttributeState] = [:]) {
        self.register = register
        self.counter = counter
        self.set = set
        self.paths = paths
    }

    public mutating func merge(_ other: AttributeState) {
        register = Register.join(register, other.register)
        counter = Counter.join(counter, other.counter)
        set = ORSet.join(set, other.set)
        for (keys, state) in other.paths { paths[keys, default: AttributeState()].merge(state) }
    }

    /// The latest write this attribute holds, at any path (`.zero` if none).
    var lastWrite: HLC {
        var t = HLC.zero
        if let r = register { t = max(t, r.at) }
        if let c = counter { t = max(t, c.lastWrite) }
        if let w = set?.lastWrite { t = max(t, w) }
        for p in paths.values { t = max(t, p.lastWrite) }
        return t
    }

    /// The components at `keys` (self for none).
    func state(at keys: [String]) -> AttributeState? { keys.isEmpty ? self : paths[keys] }

    enum Component {
        case register(Register)
        case counter(Counter)
        case set(ORSet)

        func value(after marker: HLC) -> AttributeValue? {
            switch self {
            case .register(let r): r.value
            case .counter(let c): c.value(after: marker).map { .number($0) }
            case .set(let s): s.value(after: marker)
            }
        }
    }

    /// The component written last at this path (ties: register, then counter, then set) and
    /// its time, if it is not older than the item marker.
    func newest(after marker: HLC) -> (at: HLC, component: Component)? {
        var best: (at: HLC, component: Component)?
        if let r = register { best = (r.at, .register(r)) }
        if let c = counter, best.map({ c.lastWrite > $0.at }) ?? true { best = (c.lastWrite, .counter(c)) }
        if let s = set, let w = s.lastWrite, best.map({ w > $0.at }) ?? true { best = (w, .set(s)) }
        guard let best, best.at >= marker else { return nil }
        return best
    }

    /// One step of the fold that builds the visible value: a path's newest component.
    struct Layer {
        var keys: [String]
        var at: HLC
        var component: Component
    }

    /// Every path's newest component, in the order the fold applies them: oldest first, and at
    /// equal times (one PATCH writing `profile` and `profile.city`) the shorter path first, so
    /// the deeper write lands on top. HLCs are unique per write, so the order is total.
    func layers(after marker: HLC) -> [Layer] {
        var out: [Layer] = []
        if let n = newest(after: marker) { out.append(Layer(keys: [], at: n.at, component: n.component)) }
        for (keys, p) in paths {
            if let n = p.newest(after: marker) { out.append(Layer(keys: keys, at: n.at, component: n.component)) }
        }
        return out.sorted { a, b in
            if a.at != b.at { return a.at < b.at }
            if a.keys.count != b.keys.count { return a.keys.count < b.keys.count }
            return a.keys.lexicographicallyPrecedes(b.keys)
        }
    }

    func visible(after marker: HLC) -> AttributeValue? {
        var value: AttributeValue?
        for layer in layers(after: marker) { value = replacing(value, at: layer.keys[...], with: layer.component.value(after: marker)) }
        return value
    }

    /// What an edit at `keys` starts from: the value there now; the time of the write that
    /// decided it — the newest layer at `keys` or above, else the item marker — which is the
    /// epoch of a new counter or the tag of a seeded set, the same on every replica that saw the
    /// same writes; and that layer's component if it is the path's own, for the edit to continue.
    func base(at keys: [String], after marker: HLC) -> (value: AttributeValue?, at: HLC, own: Component?) {
        var value: AttributeValue?
        var decider: Layer?
        for layer in layers(after: marker) {
            value = replacing(value, at: layer.keys[...], with: layer.component.value(after: marker))
            if keys.starts(with: layer.keys) { decider = layer }
        }
        return (lookup(value, keys[...]), decider?.at ?? marker, decider.flatMap { $0.keys == keys ? $0.component : nil })
    }
}

/// `value` with the part at `keys` replaced by `new` (nil: removed). A write makes maps on its
/// way down over anything that is not a map (it is newer than that value); a removal under a
/// non-map has nothing to remove.
private func replacing(_ value: AttributeValue?, at keys: ArraySlice<String>, with new: AttributeValue?) -> AttributeValue? {
    guard let key = keys.first else { return new }
    var map: [String: AttributeValue]
    if case .map(let m)? = value {
        map = m
    } else {
        guard new != nil else { return value }
        map = [:]
    }
    map[key] = replacing(map[key], at: keys.dropFirst(), with: new)
    return .map(map)
}

private func lookup(_ value: AttributeValue?, _ keys: ArraySlice<String>) -> AttributeValue? {
    guard let key = keys.first else { return value }
    guard case .map(let m)? = value else { return nil }
    return lookup(m[key], keys.dropFirst())
}

/// Last-writer-wins register; `value == nil` is a removal.
public struct Register: Hashable, Sendable {
    public var value: AttributeValue?
    public var at: HLC

    static func join(_ a: Register?, _ b: Register?) -> Register? {
        guard let a else { return b }
        guard let b else { return a }
        return b.at > a.at ? b : a
    }
}

/// A counter over a base: per-node running totals (separately for increments and decrements,
/// each only ever growing, so merge is a per-node max), valid within one epoch — the timestamp
/// of the base. A newer epoch replaces an older one whole.
public struct Counter: Hashable, Sendable {
    public var base: DecimalNumber
    public var epoch: HLC
    public var increments: [UInt64: DecimalNumber] = [:]
    public var decrements: [UInt64: DecimalNumber] = [:]
    public var lastWrite: HLC

    init(base: DecimalNumber, epoch: HLC) {
        self.base = base
        self.epoch = epoch
        self.lastWrite = epoch
    }

    mutating func add(_ amount: DecimalNumber, node: UInt64, at t: HLC) -> Bool {
        if amount.negative {
            guard let sum = decrements[node, default: .zero] + (-amount) else { return false }
            decrements[node] = sum
        } else {
            guard let sum = increments[node, default: .zero] + amount else { return false }
            increments[node] = sum
        }
        lastWrite = max(lastWrite, t)
        return true
    }

    /// One writer's part of this counter (its running totals, over the same base and epoch): the
    /// delta of its write. Merged where the counter is, it changes what the write changed.
    func only(_ node: UInt64) -> Counter {
        var c = Counter(base: base, epoch: epoch)
        c.increments[node] = increments[node]
        c.decrements[node] = decrements[node]
        c.lastWrite = lastWrite
        return c
    }

    /// base (if written after the marker) + Σ increments − Σ decrements, summed in node order so
    /// every replica computes the same digits.
    func value(after marker: HLC) -> DecimalNumber? {
        var total: DecimalNumber? = epoch >= marker ? base : .zero
        for node in increments.keys.sorted() { total = total.flatMap { $0 + increments[node]! } }
        for node in decrements.keys.sorted() { total = total.flatMap { $0 + (-decrements[node]!) } }
        return total
    }

    static func join(_ a: Counter?, _ b: Counter?) -> Counter? {
        guard let a else { return b }
        guard let b else { return a }
        if a.epoch != b.epoch { return b.epoch > a.epoch ? b : a }
        var c = a
        c.base = b.epoch == a.epoch && b.base != a.base ? max(a.base, b.base) : a.base
        c.increments.merge(b.increments) { max($0, $1) }
        c.decrements.merge(b.decrements) { max($0, $1) }
        c.lastWrite = max(a.lastWrite, b.lastWrite)
        return c
    }
}

/// Add-wins observed-remove set: each add is tagged with its write's HLC; removes tombstone the
/// tags they saw. Present: elements with a tag that is neither tombstoned nor older than the item
/// marker.
public struct ORSet: Hashable, Sendable {
    public var adds: [SetElement: Set<HLC>] = [:]
    /// Per element, the add tags a remove observed (a tag alone is not unique: elements of a set
    /// written whole share the write's timestamp).
    public var removed: [SetElement: Set<HLC>] = [:]
    /// Latest add or remove (a remove that empties the set is still the latest write).
    public var lastWrite: HLC?

    public init() {}

    static func join(_ a: ORSet?, _ b: ORSet?) -> ORSet? {
        guard let a else { return b }
        guard let b else { return a }
        var c = a
        c.adds.merge(b.adds) { $0.union($1) }
        c.removed.merge(b.removed) { $0.union($1) }
        c.lastWrite = [a.lastWrite, b.lastWrite].compactMap { $0 }.max() ?? c.adds.values.flatMap { $0 }.max()
        return c
    }

    func value(after marker: HLC) -> AttributeValue? {
        let present = adds.filter { e, tags in tags.contains { $0 >= marker && !(removed[e]?.contains($0) ?? false) } }.keys
        guard let first = present.first else { return nil }
        switch first {
        case .string:
            return .stringSet(Set(present.compactMap { if case .string(let s) = $0 { s } else { nil } }))
        case .number:
            return .numberSet(Set(present.compactMap { if case .number(let n) = $0 { n } else { nil } }))
        case .binary:
            return .binarySet(Set(present.compactMap { if case .binary(let b) = $0 { b } else { nil } }))
        }
    }
}
