import Foundation
import XCTest

/// A fresh, empty folder in the system's temporary directory, removed when `test` ends.
public func makeTemporaryDirectory(for test: XCTestCase, prefix: String = "unclip-test") throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// A temporary copy of `source` (typically a fixture model folder), removed when `test` ends: a test edits the
/// copy, never the committed fixture.
public func temporaryCopy(of source: URL, for test: XCTestCase) throws -> URL {
    let url = try makeTemporaryDirectory(for: test).appendingPathComponent(source.lastPathComponent)
    try FileManager.default.copyItem(at: source, to: url)
    return url
}

/// Rewrites the JSON object in `url` (a config.json) after `edit` changed its top-level keys.
public func editJSONObject(at url: URL, _ edit: (inout [String: Any]) throws -> Void) throws {
    guard var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
        throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: url.path])
    }
    try edit(&object)
    try JSONSerialization.data(withJSONObject: object).write(to: url)
}
