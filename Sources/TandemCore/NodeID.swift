/// A node's stable identity: its name (`tandem node --name`), the same in membership, tables,
/// streams and routes, and what every store and message names a node by (Raft configurations
/// and votes, stream placements, the table core's stability record and its HLC id, routing's
/// health items).
///
/// The name and not an address: a data dir belongs to one name (`DataDir` locks it to it), while
/// the address a node is reached at may change (a new `--advertise`, a rescheduled pod). Nodes
/// before this type named a node by its bind address in tables and streams; such stored
/// records are mapped to names when read (`LegacyAddresses`), see docs/DESIGN-NOTES.md.
///
/// On the wire and on disk it is the name's UTF-8 bytes as a short string (1 to 255 bytes), as
/// the addresses were, so the encodings did not change.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible, CustomDebugStringConvertible,
    ExpressibleByStringLiteral, ExpressibleByStringInterpolation
{
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }

    public var description: String { rawValue }
    /// As a string literal, so lists of ids print as lists of names (`["n1", "n2"]`).
    public var debugDescription: String { rawValue.debugDescription }
    public static func < (a: NodeID, b: NodeID) -> Bool { a.rawValue < b.rawValue }

    /// Whether this id has the form of a `host:port` address (an IPv4 address, a bracketed IPv6
    /// one, or a host name, and a port): how records written before node ids were names are
    /// told apart from names. A node named like an address is never mapped (its name is known).
    public var looksLikeAddress: Bool {
        let s = rawValue
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
            return false
        }
        let host = s[..<colon]
        if host.hasPrefix("[") { return host.hasSuffix("]") && host.count > 2 }
        return !host.isEmpty && !host.contains(":")
    }
}

extension ByteWriter {
    public mutating func nodeID(_ id: NodeID) { shortString(id.rawValue) }
}

extension ByteReader {
    public mutating func nodeID() throws(TandemError) -> NodeID { NodeID(try shortString()) }
}

/// How records that named nodes by address (before `NodeID` was the name) are read: the
/// address each known node had, mapped to its name. Built by the shell from what it knows
/// (its own bind and advertised addresses, and every member membership lists with its address);
/// the cores take it as data.
public struct LegacyAddresses: Sendable, Equatable {
    public private(set) var names: [NodeID: NodeID] = [:]

    public init(_ names: [NodeID: NodeID] = [:]) { self.names = names }

    public mutating func add(address: String, name: NodeID) {
        guard NodeID(address) != name else { return }
        names[NodeID(address)] = name
    }

    /// `id` as a name: an address a known node had becomes its name; anything else is kept.
    public func resolve(_ id: NodeID) -> NodeID { names[id] ?? id }
    public func resolve(_ ids: [NodeID]) -> [NodeID] { ids.map(resolve) }

    /// Whether `id` still looks like an address no known node had (`known`: the names of the
    /// nodes known, so a node named like an address is not counted).
    public func unresolved(_ id: NodeID, known: Set<NodeID>) -> Bool {
        names[id] == nil && !known.contains(id) && id.looksLikeAddress
    }
}
