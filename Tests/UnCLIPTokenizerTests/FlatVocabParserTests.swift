import Foundation
import XCTest
@testable import UnCLIPTokenizer
import UnCLIPTestSupport

/// The fast vocab.json parser must agree with Foundation's JSON parser (the reference) on every entry,
/// and hand anything outside its one shape back to it.
final class FlatVocabParserTests: XCTestCase {
    private func foundation(_ data: Data) throws -> [String: Int] {
        try JSONDecoder().decode([String: Int].self, from: data)
    }

    func testShippedVocabularyMatchesFoundation() throws {
        let url = Repository.url("weights/shapes/tokenizer/vocab.json")
        let data = try Data(contentsOf: url)
        let fast = try XCTUnwrap(FlatVocabParser.parse(data))
        XCTAssertGreaterThan(fast.count, 49_000)
        XCTAssertEqual(fast, try foundation(data))
    }

    func testEscapesMatchFoundation() throws {
        let json = #" { "a\"b": 1, "\\": 2, "\/x": 3, "\u00e9\u0120": 4, "\ud83d\ude00</w>": 5, "tab\t\n\r\b\f": 6, "é€": -7 } "#
        let data = Data(json.utf8)
        let fast = try XCTUnwrap(FlatVocabParser.parse(data))
        XCTAssertEqual(fast, try foundation(data))
        XCTAssertEqual(fast.count, 7)
    }

    func testOtherShapesAreLeftToFoundation() {
        for text in [#"{"a": 1.5}"#, #"{"a": 1e3}"#, #"{"a": 1, "a": 2}"#, #"["a"]"#, #"{"a": 1"#, #"{"a": 1} x"#,
                     #"{"a": "1"}"#, #"{"\ud83d": 1}"#, #"{"\q": 1}"#] {
            XCTAssertNil(FlatVocabParser.parse(Data(text.utf8)), text)
        }
        XCTAssertNil(FlatVocabParser.parse(Data([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D])), "invalid UTF-8")
        XCTAssertEqual(FlatVocabParser.parse(Data("{}".utf8)), [:])
    }
}
