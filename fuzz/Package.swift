// swift-tools-version:6.0
import PackageDescription

// The libFuzzer driver: one executable running any target of UnCLIPFuzz (the root package's entry functions).
// Build and run it through fuzz/run.sh, which adds the sanitizer and coverage flags and links libFuzzer's
// no-main runtime (our main.swift picks the target, then hands control to LLVMFuzzerRunDriver).
let package = Package(
    name: "UnCLIPFuzzDriver",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "UnCLIP", path: "..")],
    targets: [
        .target(name: "CFuzzDriver"),
        .executableTarget(name: "unclip-fuzz", dependencies: ["CFuzzDriver", .product(name: "UnCLIPFuzz", package: "UnCLIP")]),
    ],
    swiftLanguageModes: [.v5]
)
