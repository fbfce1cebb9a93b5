// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "liverseg",
    products: [
        // libliverseg.so: the C ABI declared in include/liverseg.h. Build it with `make build`,
        // which adds the static Swift runtime, the SONAME and the export list.
        .library(name: "liverseg", type: .dynamic, targets: ["LiversegCAPI"]),
    ],
    targets: [
        // OpenBLAS through pkg-config (Debian: libopenblas-dev).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // zlib through pkg-config (Debian: zlib1g-dev): gzip/deflate for image files and PNG.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The public header's types for Swift, and the thread-local last-error buffer.
        .target(name: "CLiverseg"),
        // The Swift core: network, model file, volume handling, inference. No C types.
        .target(name: "LiversegCore", dependencies: ["COpenBLAS", "CZlib"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
        // The thin @_cdecl layer exporting liverseg_* functions.
        .target(name: "LiversegCAPI", dependencies: ["LiversegCore", "CLiverseg"]),
        .testTarget(name: "LiversegCoreTests", dependencies: ["LiversegCore"]),
    ],
    // Swift 5 mode: the numeric kernels share raw buffers across worker threads by design
    // (each index written by one thread), which Swift 6's Sendable checking cannot express.
    swiftLanguageModes: [.v5]
)
