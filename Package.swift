// swift-tools-version:6.0
import PackageDescription

// Hot numeric code must be compiled for a CPU with FMA/AVX2, or Swift's SIMD types
// lower to one scalar fmaf call per lane (BENCHMARKS.md, "Figures behind choices in the code").
// UNCLIP_CHECKED_RELEASE (set by fuzz/run.sh) keeps -O's overflow and bounds checks, which -Ounchecked removes: the
// fuzzers want optimized speed and still every trap.
let releaseOptimization = Context.environment["UNCLIP_CHECKED_RELEASE"] == nil ? "-Ounchecked" : "-O"
let fastSwift: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "haswell", releaseOptimization, "-wmo"], .when(configuration: .release)),
    .unsafeFlags(["-target-cpu", "haswell"], .when(configuration: .debug)),
]
let fastC: [CSetting] = [.unsafeFlags(["-O3", "-march=x86-64-v3"])]

let package = Package(
    name: "UnCLIP",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "unclip", targets: ["unclip"]),
        .executable(name: "unclip-bench", targets: ["unclip-bench"]),
        .executable(name: "unclip-store-bench", targets: ["unclip-store-bench"]),
        .library(name: "UnCLIP", targets: ["UnCLIPPipelines", "UnCLIPEngine", "UnCLIPStore", "UnCLIPStoreSQLite", "UnCLIPStorePostgres",
                                           "UnCLIPService"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libpng-dev, libjpeg62-turbo-dev, libwebp-dev, libsqlite3-dev).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CWebP", pkgConfig: "libwebpdemux", providers: [.apt(["libwebp-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // Fused element-wise kernels in C, built for AVX2/FMA.
        .target(name: "CKernels", cSettings: fastC),

        // Tensor core: Float32 tensors and the operations the models need, on OpenBLAS.
        .target(name: "UnCLIPTensor", dependencies: ["CBLAS", "CKernels"], swiftSettings: fastSwift),
        // torch-compatible random numbers (mt19937, torch's randn/rand/randint).
        .target(name: "UnCLIPRandom", swiftSettings: fastSwift),
        // CLIP byte-level BPE tokenizer, as transformers' CLIPTokenizer.
        .target(name: "UnCLIPTokenizer", swiftSettings: fastSwift),
        // PNG in/out (libpng), JPEG/WebP input (libjpeg-turbo, libwebp) and CLIPImageProcessor preprocessing.
        .target(name: "UnCLIPImage", dependencies: ["CPNG", "CJPEG", "CWebP"], swiftSettings: fastSwift),
        // safetensors (mmap) and diffusers/transformers folder loading.
        .target(name: "UnCLIPWeights", dependencies: ["UnCLIPTensor"], swiftSettings: fastSwift),
        // Noise schedulers sharing one protocol, configured from scheduler_config.json.
        .target(name: "UnCLIPSchedulers", dependencies: ["UnCLIPTensor", "UnCLIPRandom", "UnCLIPWeights"], swiftSettings: fastSwift),
        // Models, one file per family, configured from config.json.
        .target(name: "UnCLIPModels",
                dependencies: ["UnCLIPTensor", "UnCLIPWeights", "UnCLIPTokenizer", "UnCLIPImage", "UnCLIPRandom", "UnCLIPSchedulers"],
                swiftSettings: fastSwift),

        // Pipelines: read top to bottom, orchestrating tokenizer → encoders → prior → decoder.
        .target(name: "UnCLIPPipelines",
                dependencies: ["UnCLIPModels", "UnCLIPSchedulers", "UnCLIPTokenizer", "UnCLIPRandom", "UnCLIPImage", "UnCLIPWeights"],
                swiftSettings: fastSwift),

        // The shapes-world pixel checker (measures what the shipped model draws).
        .target(name: "UnCLIPEval", dependencies: ["UnCLIPPipelines", "UnCLIPImage"], swiftSettings: fastSwift),
        // Engines: one conformer per pipeline family behind `ImageEngine`, chosen by model_index.json's class
        // (EngineRegistry); model resolution, requests, observers, parameter checks and memory estimates.
        .target(name: "UnCLIPEngine", dependencies: ["UnCLIPPipelines", "UnCLIPModels", "UnCLIPWeights", "UnCLIPImage", "UnCLIPTensor", "CKernels"],
                swiftSettings: fastSwift),
        // The store protocol (backend-neutral records, errors, search over an embedding source); no SQL here.
        .target(name: "CStoreKernels", cSettings: fastC),
        .target(name: "UnCLIPStore", dependencies: ["CStoreKernels", "UnCLIPTensor"], swiftSettings: fastSwift),
        // The SQLite backend of the store protocol: every line of SQL lives here.
        .target(name: "UnCLIPStoreSQLite", dependencies: ["CSQLite", "UnCLIPStore", "UnCLIPTensor"], swiftSettings: fastSwift),
        // The PostgreSQL backend of the same protocol (a store shared by many machines, with the job queue its
        // workers claim from): every line of its SQL lives here.
        .target(name: "UnCLIPStorePostgres",
                dependencies: ["UnCLIPStore", "UnCLIPTensor", .product(name: "PostgresNIO", package: "postgres-nio"),
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: fastSwift),
        // Generation with memory: an engine and a store; caches, variations, interpolation, text diffs, search.
        .target(name: "UnCLIPService",
                dependencies: ["UnCLIPEngine", "UnCLIPStore", "UnCLIPPipelines", "UnCLIPSchedulers", "UnCLIPImage", "UnCLIPTensor", "UnCLIPWeights"],
                swiftSettings: fastSwift),

        // The HTTP server: A1111's and OpenAI's image APIs and our own over one job queue kept in the store.
        // Above the service layer, beside the CLI; no model code.
        .target(name: "UnCLIPServer",
                dependencies: ["UnCLIPService", "UnCLIPEngine", "UnCLIPStore", "UnCLIPStoreSQLite", "UnCLIPImage", "UnCLIPSchedulers",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "Prometheus", package: "swift-prometheus")],
                // The gallery's static files, compiled into the binary (no bundle to lose beside it).
                resources: [.embedInCode("Web/index.html"), .embedInCode("Web/app.js"), .embedInCode("Web/style.css")],
                swiftSettings: fastSwift),

        .executableTarget(name: "unclip",
                          dependencies: ["UnCLIPPipelines", "UnCLIPEval", "UnCLIPRandom", "UnCLIPStore", "UnCLIPStoreSQLite", "UnCLIPStorePostgres",
                                         "UnCLIPEngine", "UnCLIPService", "UnCLIPSchedulers", "UnCLIPServer",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: fastSwift),
        // Model benchmarks against notebooks-export/bench_peer.py, plus kernel micro-benchmarks (not a test).
        .executableTarget(name: "unclip-bench",
                          dependencies: ["UnCLIPPipelines", "UnCLIPModels", "UnCLIPSchedulers", "UnCLIPRandom", "UnCLIPWeights",
                                         "UnCLIPTensor", "CBLAS"],
                          swiftSettings: fastSwift),

        // Search benchmark over 100k / 1M random embeddings in a real store (not a test).
        .executableTarget(name: "unclip-store-bench", dependencies: ["UnCLIPStore", "UnCLIPStoreSQLite", "UnCLIPStorePostgres", "CBLAS"],
                          swiftSettings: fastSwift),

        // Helpers the test targets share: fixture paths and files, tolerance and pixel checks, error-message
        // checks, temporary folders, pseudo-random inputs, running a built executable. A plain target beside the
        // tests (not a test target), so any test target can depend on it; only tests link it.
        .target(name: "UnCLIPTestSupport", dependencies: ["UnCLIPTensor", "UnCLIPWeights"], path: "Tests/UnCLIPTestSupport"),

        .testTarget(name: "UnCLIPStoreTests", dependencies: ["UnCLIPStore", "UnCLIPStoreSQLite", "UnCLIPStorePostgres", "CStoreKernels", "UnCLIPService",
                                                         "UnCLIPEngine", "UnCLIPPipelines", "UnCLIPImage", "UnCLIPTestSupport"],
                    swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPTensorTests", dependencies: ["UnCLIPTensor", "UnCLIPTestSupport"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPRandomTests", dependencies: ["UnCLIPRandom", "UnCLIPWeights", "UnCLIPTestSupport"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPTokenizerTests", dependencies: ["UnCLIPTokenizer", "UnCLIPTestSupport"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPImageTests", dependencies: ["UnCLIPImage", "UnCLIPWeights", "UnCLIPTestSupport"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPWeightsTests", dependencies: ["UnCLIPWeights", "UnCLIPTestSupport"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPSchedulersTests", dependencies: ["UnCLIPSchedulers", "UnCLIPRandom", "UnCLIPTensor", "UnCLIPWeights"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPModelsTests", dependencies: ["UnCLIPModels", "UnCLIPTestSupport"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPPipelinesTests", dependencies: ["UnCLIPPipelines", "UnCLIPTestSupport"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPEvalTests", dependencies: ["UnCLIPEval", "UnCLIPTestSupport"], swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPServerTests", dependencies: ["UnCLIPServer", "UnCLIPStore", "UnCLIPStoreSQLite", "UnCLIPStorePostgres", "UnCLIPImage",
                                                          "UnCLIPTestSupport"],
                    swiftSettings: fastSwift),
        .testTarget(name: "UnCLIPCLITests", dependencies: ["unclip", "UnCLIPImage", "UnCLIPStore", "UnCLIPStoreSQLite", "UnCLIPTestSupport"],
                    swiftSettings: fastSwift),
    ],
    // Swift 5 mode: the numeric core shares raw buffers across Dispatch workers by design.
    swiftLanguageModes: [.v5]
)

// Fuzzing (issue 20; fuzz/README.md). `UnCLIPFuzz` holds every fuzz target's entry function; the libFuzzer driver
// (fuzz/Package.swift, which depends on this package by path) and the corpus-replay test (UnCLIPFuzzTests) both call
// it, so CI replays exactly the fuzzed code. Only the driver and the test use it.
package.products.append(.library(name: "UnCLIPFuzz", targets: ["UnCLIPFuzz"]))
package.targets += [
    .target(name: "UnCLIPFuzz",
            dependencies: ["UnCLIPWeights", "UnCLIPModels", "UnCLIPSchedulers", "UnCLIPTokenizer", "UnCLIPImage", "UnCLIPServer",
                           "UnCLIPStore", "UnCLIPStoreSQLite"],
            swiftSettings: fastSwift),
    .testTarget(name: "UnCLIPFuzzTests", dependencies: ["UnCLIPFuzz"], swiftSettings: fastSwift),
]
