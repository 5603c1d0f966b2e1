import Foundation
import XCTest
@testable import UnCLIPTokenizer

final class CLIPTokenizerLoadingTests: XCTestCase {
    /// Tests/Fixtures/tokenizer/tokenizer-json-only/tokenizer.json was saved by transformers 5.23 (merges as [a, b] pairs).
    func testTokenizerJSONOnlyFolder() throws {
        let tokenizer = try CLIPTokenizer(directory: Paths.jsonOnly)
        XCTAssertEqual(tokenizer.vocabularySize, 49408)
        XCTAssertEqual(tokenizer.padTokenId, 49407)
        XCTAssertEqual(tokenizer.modelMaxLength, 77)  // no tokenizer_config.json
        XCTAssertEqual(checkAllCases(tokenizer, folder: "tokenizer.json") { $0.openai }, 0)
    }

    /// Older tokenizers write merges as "a b" strings; the same file in that form must give the same ids.
    func testTokenizerJSONWithStringMerges() throws {
        let dir = try makeTemporaryDirectory(self)
        let data = try Data(contentsOf: Paths.jsonOnly.appendingPathComponent("tokenizer.json"))
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        var model = try XCTUnwrap(root["model"] as? [String: Any])
        let pairs = try XCTUnwrap(model["merges"] as? [[String]])
        XCTAssertEqual(pairs.count, 48894)
        model["merges"] = pairs.map { $0.joined(separator: " ") }
        root["model"] = model
        try JSONSerialization.data(withJSONObject: root).write(to: dir.appendingPathComponent("tokenizer.json"))
        let tokenizer = try CLIPTokenizer(directory: dir)
        XCTAssertEqual(checkAllCases(tokenizer, folder: "tokenizer.json string merges") { $0.openai }, 0)
    }

    func testMissingFolder() {
        let url = URL(fileURLWithPath: "/nonexistent/clip-tokenizer")
        assertError(try CLIPTokenizer(directory: url), contains: ["/nonexistent/clip-tokenizer", "folder"])
    }

    func testMissingFiles() throws {
        let dir = try makeTemporaryDirectory(self)
        assertError(try CLIPTokenizer(directory: dir), contains: ["vocab.json", "merges.txt", "tokenizer.json", dir.path])

        try FileManager.default.copyItem(at: Paths.openAI.appendingPathComponent("vocab.json"),
                                         to: dir.appendingPathComponent("vocab.json"))
        assertError(try CLIPTokenizer(directory: dir), contains: ["merges.txt", "tokenizer.json", dir.path])

        let mergesOnly = try makeTemporaryDirectory(self)
        try FileManager.default.copyItem(at: Paths.openAI.appendingPathComponent("merges.txt"),
                                         to: mergesOnly.appendingPathComponent("merges.txt"))
        assertError(try CLIPTokenizer(directory: mergesOnly), contains: ["vocab.json", mergesOnly.path])
    }

    func testMalformedFiles() throws {
        let dir = try makeTemporaryDirectory(self)
        let vocab = dir.appendingPathComponent("vocab.json")
        let merges = dir.appendingPathComponent("merges.txt")
        try FileManager.default.copyItem(at: Paths.openAI.appendingPathComponent("vocab.json"), to: vocab)

        try "#version: 0.2\ni n\nthis line has three\n".write(to: merges, atomically: true, encoding: .utf8)
        assertError(try CLIPTokenizer(directory: dir), contains: [merges.path, "line 3"])

        try "#version: 0.2\ni n\nzzzq qqqz\n".write(to: merges, atomically: true, encoding: .utf8)
        assertError(try CLIPTokenizer(directory: dir), contains: ["merge 2", "zzzq qqqz"])

        try "#version: 0.2\ni n\n".write(to: merges, atomically: true, encoding: .utf8)
        try "{\"a\": 1,".write(to: vocab, atomically: true, encoding: .utf8)
        assertError(try CLIPTokenizer(directory: dir), contains: [vocab.path])

        try "{\"<|startoftext|>\": 0, \"<|endoftext|>\": 1}".write(to: vocab, atomically: true, encoding: .utf8)
        assertError(try CLIPTokenizer(directory: dir), contains: ["byte token"])

        let badJSON = try makeTemporaryDirectory(self)
        try "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}"
            .write(to: badJSON.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
        assertError(try CLIPTokenizer(directory: badJSON), contains: ["tokenizer.json", "end_of_word_suffix"])
    }

    func testUnknownSpecialTokenIsAnError() throws {
        let dir = try makeTemporaryDirectory(self)
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(at: Paths.openAI.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        try "{\"pad_token\": \"<pad>\"}".write(to: dir.appendingPathComponent("tokenizer_config.json"),
                                              atomically: true, encoding: .utf8)
        assertError(try CLIPTokenizer(directory: dir), contains: ["pad_token", "<pad>", "not in the vocabulary"])
    }

    private func assertError<T>(_ body: @autoclosure () throws -> T, contains parts: [String],
                                file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected an error mentioning \(parts)", file: file, line: line)
        } catch {
            let text = String(describing: error)
            for part in parts where !text.contains(part) {
                XCTFail("error \"\(text)\" does not mention \(part)", file: file, line: line)
            }
        }
    }
}
