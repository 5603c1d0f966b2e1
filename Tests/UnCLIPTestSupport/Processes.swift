import Foundation

/// What a finished process said and how it ended.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// An executable product of this package, built beside the test bundle in the same configuration (e.g. "unclip").
public func builtProduct(_ name: String) -> URL {
    #if os(macOS)
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        return bundle.bundleURL.deletingLastPathComponent().appendingPathComponent(name)
    }
    #endif
    return Bundle.main.bundleURL.appendingPathComponent(name)
}

/// Runs `executable` to completion in `directory` (default: the repository root), with this process's
/// environment plus `environment`. Both streams are drained at once, so a chatty stderr cannot stall it.
public func runProcess(_ executable: URL, _ arguments: [String], in directory: URL = Repository.root,
                       environment: [String: String] = [:]) throws -> ProcessResult {
    let p = Process()
    p.executableURL = executable
    p.arguments = arguments
    p.currentDirectoryURL = directory
    p.environment = ProcessInfo.processInfo.environment.merging(environment, uniquingKeysWith: { $1 })
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let errData = DispatchGroup()
    nonisolated(unsafe) var e = Data()
    DispatchQueue.global().async(group: errData) { e = err.fileHandleForReading.readDataToEndOfFile() }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    errData.wait()
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                         stderr: String(decoding: e, as: UTF8.self))
}
