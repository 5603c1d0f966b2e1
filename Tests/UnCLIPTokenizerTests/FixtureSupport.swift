import Foundation
import XCTest
@testable import UnCLIPTokenizer

/// Paths inside the repository, found from this file so a fresh clone needs no resources.
enum Paths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/Fixtures/tokenizer")
    static let openAI = root.appendingPathComponent("weights/clip-tokenizer")
    static let sd2 = root.appendingPathComponent("weights/clip-tokenizer-sd2")
    static let jsonOnly = fixtures.appendingPathComponent("tokenizer-json-only")
    static let legacyConfig = fixtures.appendingPathComponent("legacy-sd2-config")
}

/// Tests/Fixtures/tokenizer/cases.json, written by notebooks-export/fixtures_tokenizer.py from transformers.
struct TokenizerFixture: Decodable {
    struct Expected: Decodable {
        var input_ids: [Int]
        var attention_mask: [Int]
        var token_count: Int?
    }

    struct Case: Decodable {
        var text: String
        var kind: String
        var openai: Expected
        var sd2: Expected
        var legacy: Expected
        var openai_short: Expected
    }

    var transformers_version: String
    var max_length: Int
    var short_max_length: Int
    var cases: [Case]

    static let shared: TokenizerFixture = {
        do {
            let data = try Data(contentsOf: Paths.fixtures.appendingPathComponent("cases.json"))
            return try JSONDecoder().decode(TokenizerFixture.self, from: data)
        } catch {
            fatalError("cannot read Tests/Fixtures/tokenizer/cases.json: \(error)")
        }
    }()
}

/// Tokenizers are loaded once per test process.
enum Loaded {
    static let openAI = load(Paths.openAI)
    static let sd2 = load(Paths.sd2)

    static func load(_ url: URL) -> CLIPTokenizer {
        do {
            return try CLIPTokenizer(directory: url)
        } catch {
            fatalError("cannot load \(url.path): \(error)")
        }
    }
}

/// A fresh temporary folder, removed by the test's teardown.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-tokenizer-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Compares `tokenizer` with the transformers ids of every fixture case; returns the number of mismatching cases.
@discardableResult
func checkAllCases(_ tokenizer: CLIPTokenizer, folder: String, maxLength: Int? = nil,
                   expected: (TokenizerFixture.Case) -> TokenizerFixture.Expected,
                   file: StaticString = #filePath, line: UInt = #line) -> Int {
    let fixture = TokenizerFixture.shared
    let length = maxLength ?? fixture.max_length
    var mismatches = 0
    for item in fixture.cases {
        let want = expected(item)
        let got = tokenizer(item.text, maxLength: length)
        var ok = got.ids == want.input_ids && got.attentionMask == want.attention_mask
        if let count = want.token_count {
            ok = ok && got.tokenCount == count && got.droppedTokens == max(0, count - length)
                && tokenizer.encode(item.text).count == count - 2
        }
        if !ok {
            mismatches += 1
            XCTFail("""
                \(folder) [\(item.kind)] \(item.text.debugDescription)
                  want \(want.input_ids) mask \(want.attention_mask) count \(want.token_count.map(String.init) ?? "-")
                  got  \(got.ids) mask \(got.attentionMask) count \(got.tokenCount) dropped \(got.droppedTokens)
                """, file: file, line: line)
        }
    }
    return mismatches
}
