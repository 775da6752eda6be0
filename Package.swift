// swift-tools-version:6.0
import PackageDescription

/// Release builds skip the run-time exclusivity checks (the compile-time ones stay, and debug
/// builds — the tests — keep both): on the put path the checks were ~9% of the leader's
/// instructions, each access to a class's stored property calling into the runtime.
let fast: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

/// The release binary carries the Swift runtime and Foundation inside it, linked by lld with
/// packed relative relocations. An idle node's own heap is ~2 MB; the rest of what it holds
/// resident is code: with the shared Swift libraries the dynamic loader relocated and touched
/// ~9 MB of Foundation, FoundationEssentials and ICU pages at start, and the PIE's 80,000
/// relative relocations were a 1.9 MB table (RELA) read at every start, 15 KB packed (RELR,
/// glibc ≥ 2.36). Idle node alone, resident: 24.8 → 18.8 MB (static alone ~20 MB; docs/FIGURES.md).
/// The binary no longer needs the toolchain's libraries at run time. Debug builds (the tests)
/// link as before, which is faster. The objects are compiled as usual, so the static archives
/// behind Foundation (ICU, its collections and C shims, CoreFoundation) and Synchronization are
/// named here (`swift build --static-swift-stdlib` would add them, but recompiles everything and
/// every script would need the flag); a toolchain that renames them fails this link loudly.
let releaseLink: [LinkerSetting] = [
    .unsafeFlags(
        [
            "-static-stdlib", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
            "-l_FoundationICU", "-l_FoundationCollections", "-l_FoundationCShims", "-lCoreFoundation", "-lswiftSynchronization"
        ],
        .when(platforms: [.linux], configuration: .release))
]

let package = Package(
    name: "Tandem",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tandem", targets: ["tandem"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0")
    ],
    targets: [
        // C libraries, each behind a tiny system-library target. Only TandemNode imports them.
        .systemLibrary(name: "CLibUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"]), .brew(["libuv"])]),
        .systemLibrary(name: "CHTTPParser", providers: [.apt(["libhttp-parser-dev"])]),
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"]), .brew(["lmdb"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"]), .brew(["libsodium"])]),

        // Pure code: no I/O, no clocks, no global randomness.
        .target(name: "TandemCore", swiftSettings: fast),
        .target(name: "Membership", dependencies: ["TandemCore"], swiftSettings: fast),
        .target(name: "GlobalTable", dependencies: ["TandemCore"], swiftSettings: fast),
        .target(name: "StreamLog", dependencies: ["TandemCore"], swiftSettings: fast),
        .target(name: "Routing", dependencies: ["TandemCore"], swiftSettings: fast),
        // Stream processors (the Lambda role): the per-partition consumer core, filters, the
        // Lambda event and response formats.
        .target(name: "Processing", dependencies: ["TandemCore"], swiftSettings: fast),
        // The contact center's assignment state machine (issue 17): agents, queues, contacts,
        // offers, applied in the order of the `_cc` log.
        .target(name: "ContactCenter", dependencies: ["TandemCore"], swiftSettings: fast),
        .target(name: "Simulation", dependencies: ["TandemCore", "Membership", "GlobalTable", "StreamLog"]),

        // The libuv shell, in rooms (docs/ARCHITECTURE.md): transport (event loop, TCP, HTTP, peer
        // frames and links, keys), storage (segment log, LMDB, hard state, data dir), then the
        // services and wire APIs of one node. Only these import the C libraries.
        .target(
            name: "Transport",
            dependencies: ["TandemCore", "CLibUV", "CHTTPParser", "CSodium"],
            swiftSettings: fast
        ),
        .target(
            name: "Storage",
            dependencies: ["TandemCore", "StreamLog", "Transport", "CLMDB"],
            swiftSettings: fast
        ),
        .target(
            name: "TandemNode",
            dependencies: [
                "TandemCore", "Membership", "GlobalTable", "StreamLog", "Routing", "Processing", "ContactCenter", "Transport", "Storage",
                "CSodium", .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: fast
        ),
        // What tests, benchmarks and the demo use and a node does not: local clusters of real
        // processes, the load generator, the crash torture.
        .target(name: "TandemTestKit", dependencies: ["TandemCore", "Transport"], swiftSettings: fast),
        // Benchmarks, the demo and the chaos checker: the logic behind `tandem bench|demo|check`,
        // each a type run with an options struct; the CLI only parses flags and calls in.
        .target(
            name: "TandemTools",
            dependencies: ["TandemTestKit", "Transport", "TandemCore", "Routing", "Membership", "Simulation", "ContactCenter"]
        ),
        .executableTarget(
            name: "tandem",
            dependencies: [
                "TandemTools", "TandemNode", "TandemTestKit", "Transport", "Storage", "TandemCore", "Membership", "Routing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log")
            ],
            linkerSettings: releaseLink
        ),

        .testTarget(name: "MembershipTests", dependencies: ["Membership", "TandemCore"]),
        .testTarget(name: "GlobalTableTests", dependencies: ["GlobalTable", "TandemCore"]),
        .testTarget(name: "RoutingTests", dependencies: ["Routing", "Simulation", "Membership", "TandemCore"]),
        .testTarget(name: "StreamLogTests", dependencies: ["StreamLog", "TandemCore"]),
        .testTarget(name: "ProcessingTests", dependencies: ["Processing", "TandemCore"]),
        .testTarget(name: "ContactCenterTests", dependencies: ["ContactCenter", "TandemCore"]),
        .testTarget(name: "SimulationTests", dependencies: ["Simulation", "Membership", "GlobalTable", "StreamLog", "TandemCore"]),
        .testTarget(
            name: "NodeTests",
            dependencies: [
                "TandemNode", "TandemTestKit", "Transport", "Storage", "TandemCore", "Membership", "GlobalTable", "StreamLog", "Routing",
                "Processing", "ContactCenter"
            ])
    ]
)
