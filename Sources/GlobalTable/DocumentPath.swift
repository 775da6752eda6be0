import TandemCore

/// Where a write lands: an attribute, or a key in a map nested inside it
/// (`profile.address.city` is attribute `profile`, keys `address`, `city`).
///
/// Text form: the attribute name and map keys joined by dots. A dot inside a name or key is
/// written `\.` and a backslash `\\` (in JSON source that is `"profile.a\\.b"`). Paths into
/// lists (`tags[0]`) are not supported: a list is one value, written whole.
public struct DocumentPath: Hashable, Sendable, CustomStringConvertible {
    public var attribute: String
    /// Map keys below the attribute; empty when the path is the attribute itself.
    public var keys: [String]

    public init(_ attribute: String, _ keys: [String] = []) {
        self.attribute = attribute
        self.keys = keys
    }

    public init(parsing text: String) throws(TandemError) {
        var segments: [String] = []
        var current = String.UnicodeScalarView()
        var escaped = false
        for c in text.unicodeScalars {
            if escaped {
                guard c == "." || c == "\\" else { throw TandemError(.badRequest, "path '\(text)': '\\' escapes only '.' and '\\'") }
                current.append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else if c == "." {
                segments.append(String(current))
                current = String.UnicodeScalarView()
            } else {
                current.append(c)
            }
        }
        guard !escaped else { throw TandemError(.badRequest, "path '\(text)' ends inside an escape") }
        segments.append(String(current))
        guard !segments.contains(where: \.isEmpty) else { throw TandemError(.badRequest, "path '\(text)' has an empty name or key") }
        // The codec refuses values nested deeper than its limit; a path counts as nesting.
        guard segments.count <= ItemCodec.maxDepth + 1 else {
            throw TandemError(.badRequest, "path '\(text)' is nested deeper than \(ItemCodec.maxDepth)")
        }
        attribute = segments[0]
        keys = Array(segments.dropFirst())
    }

    public var description: String {
        ([attribute] + keys).map { segment in
            var out = ""
            for c in segment.unicodeScalars {
                if c == "." || c == "\\" { out.unicodeScalars.append("\\") }
                out.unicodeScalars.append(c)
            }
            return out
        }.joined(separator: ".")
    }
}

extension AttributeValue {
    /// Levels of map/list nesting: 0 for a scalar or set, 1 for a map of scalars.
    public var depth: Int {
        switch self {
        case .map(let m): 1 + (m.values.map(\.depth).max() ?? 0)
        case .list(let l): 1 + (l.map(\.depth).max() ?? 0)
        default: 0
        }
    }
}
