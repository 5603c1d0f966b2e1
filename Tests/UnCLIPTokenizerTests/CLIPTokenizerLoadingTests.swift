import Foundation
import XCTest
@testable import UnCLIPTokenizer
import UnCLIPTestSupport

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
        let dir = try makeTemporaryDirectory(for: self, prefix: "unclip-tokenizer")
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
        assertThrows(try CLIPTokenizer(directory: url), mentioning: ["/nonexistent/clip-tokenizer", "folder"])
    }

    func testMissingFiles() throws {
        let dir = try makeTemporaryDirectory(for: self, prefix: "unclip-tokenizer")
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: ["vocab.json", "merges.txt", "tokenizer.json", dir.path])

        try FileManager.default.copyItem(at: Paths.openAI.appendingPathComponent("vocab.json"),
                                         to: dir.appendingPathComponent("vocab.json"))
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: ["merges.txt", "tokenizer.json", dir.path])

        let mergesOnly = try makeTemporaryDirectory(for: self, prefix: "unclip-tokenizer")
        try FileManager.default.copyItem(at: Paths.openAI.appendingPathComponent("merges.txt"),
                                         to: mergesOnly.appendingPathComponent("merges.txt"))
        assertThrows(try CLIPTokenizer(directory: mergesOnly), mentioning: ["vocab.json", mergesOnly.path])
    }

    func testMalformedFiles() throws {
        let dir = try makeTemporaryDirectory(for: self, prefix: "unclip-tokenizer")
        let vocab = dir.appendingPathComponent("vocab.json")
        let merges = dir.appendingPathComponent("merges.txt")
        try FileManager.default.copyItem(at: Paths.openAI.appendingPathComponent("vocab.json"), to: vocab)

        try "#version: 0.2\ni n\nthis line has three\n".write(to: merges, atomically: true, encoding: .utf8)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: [merges.path, "line 3"])

        try "#version: 0.2\ni n\nzzzq qqqz\n".write(to: merges, atomically: true, encoding: .utf8)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: ["merge 2", "zzzq qqqz"])

        try "#version: 0.2\ni n\n".write(to: merges, atomically: true, encoding: .utf8)
        try "{\"a\": 1,".write(to: vocab, atomically: true, encoding: .utf8)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: [vocab.path])

        try "{\"<|startoftext|>\": 0, \"<|endoftext|>\": 1}".write(to: vocab, atomically: true, encoding: .utf8)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: ["byte token"])

        let badJSON = try makeTemporaryDirectory(for: self, prefix: "unclip-tokenizer")
        try "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}"
            .write(to: badJSON.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
        assertThrows(try CLIPTokenizer(directory: badJSON), mentioning: ["tokenizer.json", "end_of_word_suffix"])
    }

    func testUnknownSpecialTokenIsAnError() throws {
        let dir = try makeTemporaryDirectory(for: self, prefix: "unclip-tokenizer")
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(at: Paths.openAI.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        try "{\"pad_token\": \"<pad>\"}".write(to: dir.appendingPathComponent("tokenizer_config.json"),
                                              atomically: true, encoding: .utf8)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: ["pad_token", "<pad>", "not in the vocabulary"])
    }
}
