// swift-tools-version:6.0
import Foundation
import PackageDescription

/// The C boundary's export list, by absolute path: linker flags apply from the build folder.
let exportList = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Sources/LiversegCAPI/exports.map").path

/// Set by tools/fuzz.sh: the fuzz harness links the C layer into an executable, where the
/// export list would hide the sanitizer's allocator from the shared libraries it loads.
let fuzzBuild = ProcessInfo.processInfo.environment["LIVERSEG_FUZZ_BUILD"] != nil

/// GDCM's headers: Debian's libgdcm-dev installs them here and ships no pkg-config file
/// (only CMake files), so the include folder and the libraries are named directly.
/// GDCM_INCLUDE_DIR overrides it (a GDCM built elsewhere; add its libraries with -Xlinker -L).
let gdcmInclude =
    ProcessInfo.processInfo.environment["GDCM_INCLUDE_DIR"]
    ?? ["/usr/include/gdcm-3.0", "/usr/local/include/gdcm-3.0"].first { FileManager.default.fileExists(atPath: $0) }
    ?? "/usr/include/gdcm-3.0"

/// Debug information of the C targets in libliverseg.so as DWARF 4: valgrind 3.19 (Debian 12;
/// tools/sanitizers.sh) cannot read clang's default DWARF 5 and stops.
let dwarf4 = CSetting.unsafeFlags(["-gdwarf-4"])

/// The Swift core's layers, bottom to top; the C API, the CLI and the fuzz harnesses sit on
/// all of them, and each has a test target of the same name + Tests.
let coreLayers = [
    "LiversegSupport", "LiversegImageIO", "LiversegVolume", "LiversegNetwork", "LiversegCRF",
    "LiversegPipeline", "LiversegTraining",
]

let package = Package(
    name: "liverseg",
    products: [
        // libliverseg.so: the C ABI declared in include/liverseg.h. Build it with `make build`,
        // which adds the static Swift runtime, the SONAME and the export list.
        .library(name: "liverseg", type: .dynamic, targets: ["LiversegCAPI"]),
        // The `liverseg` command (the Makefile installs it under that name; SwiftPM cannot
        // have two products called liverseg).
        .executable(name: "liverseg-cli", targets: ["LiversegCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        // OpenBLAS through pkg-config (Debian: libopenblas-dev).
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        // zlib through pkg-config (Debian: zlib1g-dev): gzip/deflate for image files and PNG.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // DICOM series for the command only (libliverseg.so does not link it): a C interface
        // over GDCM (Debian: libgdcm-dev; BSD licence), whose C++ exceptions it catches.
        .target(
            name: "CDICOM", cxxSettings: [.unsafeFlags(["-I", gdcmInclude])],
            linkerSettings: ["gdcmMSFF", "gdcmDSED", "gdcmCommon"].map { .linkedLibrary($0) }),
        // The public header's types for Swift, and the thread-local last-error buffer.
        .target(name: "CLiverseg", cSettings: [dwarf4]),
        // The Swift core, one target per layer; each depends only on the layers below it
        // (docs/architecture.md). Release builds keep Swift's overflow and bounds checks (-O,
        // not -Ounchecked): a failed check stops a bug instead of letting it corrupt a host's
        // memory. The few hot loops where checks blocked vectorisation do their index
        // arithmetic without them by construction (lattice, spatial filter, col2im); with
        // those, the checks cost 2.5 % CPU time on the forward pass, 4 % on the volume3d CRF
        // and nothing measurable on slice2d (tools/bench_checks.py, 2 busy cores, AVX-512).
        // Errors, buffers, threads, JSON, files, grid sizes, axis codes, progress.
        .target(name: "LiversegSupport"),
        // NIfTI, NRRD, MetaImage and PNG files: bytes ↔ images (zlib for compression).
        .target(name: "LiversegImageIO", dependencies: ["LiversegSupport", "CZlib"]),
        // A CT volume as segmentation input: geometry, orientation, trilinear resampling.
        .target(name: "LiversegVolume", dependencies: ["LiversegSupport", "LiversegImageIO"]),
        // Layers with forward and backward passes, the DSN, safetensors (BLAS for GEMM).
        .target(name: "LiversegNetwork", dependencies: ["LiversegSupport", "COpenBLAS", "CKernels"]),
        // The hot loops of the network and the CRF lattice in C, compiled per vector extension
        // and chosen at load time (-O3 in debug builds too: the debug-built tests run them).
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"]), dwarf4]),
        // The fully connected CRF: permutohedral lattice, mean field, slice/volume refinement.
        .target(name: "LiversegCRF", dependencies: ["LiversegSupport", "LiversegVolume", "CKernels"]),
        // The model file and its metadata, inference, post-processing, preview pictures.
        .target(
            name: "LiversegPipeline",
            dependencies: [
                "LiversegSupport", "LiversegImageIO", "LiversegVolume", "LiversegNetwork", "LiversegCRF",
            ]),
        // Training data and trainer, SLiver07 metrics, learning curves.
        .target(
            name: "LiversegTraining",
            dependencies: [
                "LiversegSupport", "LiversegImageIO", "LiversegVolume", "LiversegNetwork", "LiversegPipeline",
            ]),
        // DICOM series → Image (GDCM through CDICOM): series choice, slice order and geometry
        // checks, rescaling. Used by the command only, beside the core layers.
        .target(name: "LiversegDICOM", dependencies: ["LiversegSupport", "LiversegImageIO", "CDICOM"]),
        // The thin @_cdecl layer exporting liverseg_* functions; libliverseg.so exports only
        // those (version script) and is named libliverseg.so.0 (SONAME), in every build. lld
        // (in the Swift toolchain) because gold leaves local Swift type symbols in .dynsym.
        .target(
            name: "LiversegCAPI", dependencies: coreLayers.map { .target(name: $0) } + ["CLiverseg"], exclude: ["exports.map"],
            linkerSettings: [
                .unsafeFlags(
                    ["-use-ld=lld"]
                        + (fuzzBuild
                            ? []
                            : [
                                "-Xlinker", "--version-script=\(exportList)",
                                "-Xlinker", "-soname=libliverseg.so.0",
                            ]))
            ]),
        // The command-line tool: segment, eval, info, train, loo, curves (CLiverseg: the header's
        // version; LiversegDICOM: DICOM folders as input).
        .executableTarget(
            name: "LiversegCLI",
            dependencies: [
                "CLiverseg", "LiversegDICOM", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ] + coreLayers.map { .target(name: $0) }),
        // libFuzzer harnesses, one per input surface (tools/fuzz.sh builds them with
        // -sanitize=fuzzer,address -DLIVERSEG_FUZZ); a plain build replays input files.
        .executableTarget(
            name: "LiversegFuzz", dependencies: coreLayers.map { .target(name: $0) } + ["LiversegCAPI", "CLiverseg"]),
        // Helpers the test targets share (test data builders).
        .target(name: "LiversegTestSupport", dependencies: ["LiversegSupport"], path: "Tests/LiversegTestSupport"),
        // Series choice and slice stacking on headers built in memory (files: Tests/python).
        .testTarget(name: "LiversegDICOMTests", dependencies: ["LiversegDICOM", "LiversegImageIO", "LiversegSupport"]),
    ]
        + coreLayers.indices.map { layer in
            // A layer's tests may build their inputs with the layers below it.
            .testTarget(
                name: "\(coreLayers[layer])Tests",
                dependencies: coreLayers[...layer].map { .target(name: $0) } + ["LiversegTestSupport"])
        },
    // Swift 5 mode: the numeric kernels share raw buffers across worker threads by design
    // (each index written by one thread), which Swift 6's Sendable checking cannot express.
    swiftLanguageModes: [.v5]
)
