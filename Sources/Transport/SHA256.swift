import CSodium

/// SHA-256 (libsodium): SigV4's canonical-request hashes, long table keys.
public func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    crypto_hash_sha256(&out, bytes, UInt64(bytes.count))
    return out
}
