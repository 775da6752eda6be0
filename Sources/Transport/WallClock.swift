import Foundation

/// The one place the shell reads the wall clock (ms since the Unix epoch). Cores never read it:
/// the shell passes it in (`wallMs:` arguments), and a component that needs it in the shell
/// takes a `() -> UInt64` defaulting to this, so a test can pin it.
public enum WallClock {
    public static func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }
}
