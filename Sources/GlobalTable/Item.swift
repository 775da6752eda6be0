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
        for a in attributes.values {
            if let r = a.register { t = max(t, r.at.time) }
            if let c = a.counter { t = max(t, c.lastWrite.time) }
            if let w = a.set?.lastWrite { t = max(t, w.time) }
        }
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
        write(name, AttributeState(register: Register(value: value, at: t)))
    }

    public mutating func remove(_ name: String, at t: HLC) -> ItemState {
        write(name, AttributeState(register: Register(value: nil, at: t)))
    }

    /// Adds `amount` (may be negative) to a numeric attribute; nil if it is not numeric or the
    /// sum would leave DynamoDB's range.
    public mutating func add(_ name: String, _ amount: DecimalNumber, at t: HLC) -> ItemState? {
        let current = attributes[name] ?? AttributeState()
        var counter: Counter
        switch current.visibleComponent(after: marker) {
        case .counter(let c):
            counter = c
        case .register(let r) where r.value == nil:
            // A removed attribute counts from zero, as if never written (DynamoDB's ADD).
            counter = Counter(base: .zero, epoch: r.at)
        case .register(let r):
            guard case .number(let base)? = r.value else { return nil }
            counter = Counter(base: base, epoch: r.at)
        case .set:
            return nil
        case nil:
            // No base: every node that starts counting from nothing shares the epoch (the item
            // marker), so first increments made concurrently in two regions both count.
            counter = Counter(base: .zero, epoch: marker)
        }
        guard counter.add(amount, node: t.node, at: t), counter.value(after: marker) != nil else { return nil }
        return write(name, AttributeState(counter: counter))
    }

    public mutating func addToSet(_ name: String, _ elements: Set<SetElement>, at t: HLC) -> ItemState? {
        guard var set = setToEdit(name) else { return nil }
        for e in elements { set.adds[e, default: []].insert(t) }
        set.lastWrite = t
        return write(name, AttributeState(set: set))
    }

    public mutating func removeFromSet(_ name: String, _ elements: Set<SetElement>, at t: HLC) -> ItemState? {
        guard let current = setToEdit(name) else { return nil }
        var set = current
        for e in elements { set.removed[e, default: []].formUnion(current.adds[e] ?? []) }
        set.lastWrite = t
        return write(name, AttributeState(set: set))
    }

    /// The OR-set an edit starts from: the attribute's set, or — when the visible value is a set
    /// written whole (by `put` or `set`) — that value's elements tagged with the write's
    /// timestamp, which every replica derives alike. Nil if the attribute holds a non-set.
    private func setToEdit(_ name: String) -> ORSet? {
        switch attributes[name]?.visibleComponent(after: marker) {
        case nil: return attributes[name]?.set ?? ORSet()
        case .set(let s): return s
        case .counter: return nil
        case .register(let r):
            var seeded = attributes[name]?.set ?? ORSet()
            let elements: [SetElement]
            switch r.value {
            case .stringSet(let x)?: elements = x.map { .string($0) }
            case .numberSet(let x)?: elements = x.map { .number($0) }
            case .binarySet(let x)?: elements = x.map { .binary($0) }
            case nil: elements = []
            default: return nil
            }
            // Whatever the set held before the whole-value write is gone: tombstone it.
            for (e, tags) in seeded.adds { seeded.removed[e, default: []].formUnion(tags) }
            for e in elements { seeded.adds[e, default: []].insert(r.at) }
            return seeded
        }
    }

    private mutating func write(_ name: String, _ state: AttributeState) -> ItemState {
        var delta = ItemState()
        delta.attributes[name] = state
        merge(delta)
        return delta
    }
}

/// One attribute: its three CRDT components, each merged independently.
public struct AttributeState: Hashable, Sendable {
    public var register: Register?
    public var counter: Counter?
    public var set: ORSet?

    public init(register: Register? = nil, counter: Counter? = nil, set: ORSet? = nil) {
        self.register = register
        self.counter = counter
        self.set = set
    }

    public mutating func merge(_ other: AttributeState) {
        register = Register.join(register, other.register)
        counter = Counter.join(counter, other.counter)
        set = ORSet.join(set, other.set)
    }

    enum Component {
        case register(Register)
        case counter(Counter)
        case set(ORSet)
    }

    /// The component written last (ties: register, then counter, then set), if it is not
    /// older than the item marker.
    func visibleComponent(after marker: HLC) -> Component? {
        var best: (HLC, Component)?
        if let r = register { best = (r.at, .register(r)) }
        if let c = counter, best.map({ c.lastWrite > $0.0 }) ?? true { best = (c.lastWrite, .counter(c)) }
        if let s = set, let w = s.lastWrite, best.map({ w > $0.0 }) ?? true { best = (w, .set(s)) }
        guard let (at, component) = best, at >= marker else { return nil }
        return component
    }

    func visible(after marker: HLC) -> AttributeValue? {
        switch visibleComponent(after: marker) {
        case .register(let r): return r.value
        case .counter(let c): return c.value(after: marker).map { .number($0) }
        case .set(let s): return s.value(after: marker)
        case nil: return nil
        }
    }
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
