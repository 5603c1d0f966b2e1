import Foundation
import UnCLIPFuzz
import XCTest

/// Replays every committed fuzz corpus (fuzz/corpus/TARGET/*) through the same entry function the fuzzer calls.
/// The seeds and the inputs of every defect the fuzzer found are there, so a regression crashes this test.
final class CorpusReplayTests: XCTestCase {
    static let corpusRoot = FuzzTargets.repositoryRoot.appendingPathComponent("fuzz/corpus")

    static func folders() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: corpusRoot.path).filter { name in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: corpusRoot.appendingPathComponent(name).path, isDirectory: &isDir) && isDir.boolValue
        }.sorted()
    }

    static func inputs(_ folder: String) throws -> [URL] {
        let url = corpusRoot.appendingPathComponent(folder)
        return try FileManager.default.contentsOfDirectory(atPath: url.path).filter { !$0.hasPrefix(".") }.sorted()
            .map { url.appendingPathComponent($0) }
    }

    /// A corpus folder whose target is not registered would never be replayed: refuse it. (The checkpoint reader's
    /// `unpickler` corpus needs its entry in `FuzzTargets.all` too.)
    func testEveryCorpusFolderHasATargetAndEveryTargetHasSeeds() throws {
        let folders = try Self.folders()
        for folder in folders {
            XCTAssertNotNil(FuzzTargets.named(folder),
                            "fuzz/corpus/\(folder) has no fuzz target: register its entry function in FuzzTargets.all (Sources/UnCLIPFuzz)")
        }
        for target in FuzzTargets.all {
            XCTAssertTrue(folders.contains(target.name), "fuzz target \(target.name) has no seed corpus fuzz/corpus/\(target.name)")
            if folders.contains(target.name) {
                XCTAssertFalse(try Self.inputs(target.name).isEmpty, "fuzz/corpus/\(target.name) is empty")
            }
        }
    }

    /// Each folder's inputs through its target's entry function. A crash here names the folder on the line before it.
    func testReplayEveryCorpus() throws {
        var replayed = 0
        for folder in try Self.folders() {
            guard let target = FuzzTargets.named(folder) else { continue }  // reported by the test above
            let inputs = try Self.inputs(folder)
            print("replaying fuzz/corpus/\(folder): \(inputs.count) inputs")
            let start = Date()
            for url in inputs {
                target.run(try Data(contentsOf: url))
                replayed += 1
            }
            // The fuzzer's own timeout is 20 s per input; a whole committed corpus taking that long is a hang.
            XCTAssertLessThan(Date().timeIntervalSince(start), 20, "fuzz/corpus/\(folder) took over 20 s to replay")
        }
        XCTAssertGreaterThan(replayed, 0, "no corpus input was replayed")
    }
}
