import Foundation
import UnCLIPWeights

/// The repository's folders, found from this file's own path (Tests/UnCLIPTestSupport/Paths.swift), so tests
/// need no bundle resources or environment variables in a fresh clone.
public enum Repository {
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A path relative to the repository root, e.g. "weights/shapes" or "prompts/shapes-eval.txt".
    public static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }
}

/// The committed reference fixtures under Tests/Fixtures, written by the notebooks-export/ scripts from
/// diffusers, transformers and torch (tests never compare against our own output).
public enum Fixture {
    public static let root = Repository.url("Tests/Fixtures")

    public static func url(_ path: String) -> URL { root.appendingPathComponent(path) }

    /// A fixture's safetensors file (reference tensors), memory-mapped.
    public static func file(_ path: String) throws -> SafeTensorsFile { try SafeTensorsFile(path: url(path).path) }

    /// A fixture's JSON file decoded as `type` (manifests, case lists).
    public static func decode<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(contentsOf: url(path)))
    }

    /// The `cases` array of a fixture's JSON sidecar, untyped (each case carries the settings it was run with).
    public static func cases(_ path: String) throws -> [[String: Any]] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url(path)))
        guard let cases = (json as? [String: Any])?["cases"] as? [[String: Any]] else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: url(path).path])
        }
        return cases
    }
}
