import Foundation
import XCTest
@testable import UnCLIPTokenizer
import UnCLIPTestSupport

/// The tokenizer folders the tests read: the shipped ones and the fixtures.
enum Paths {
    static let fixtures = Fixture.url("tokenizer")
    static let openAI = Repository.url("weights/clip-tokenizer")
    static let sd2 = Repository.url("weights/clip-tokenizer-sd2")
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
            return try Fixture.decode(TokenizerFixture.self, "tokenizer/cases.json")
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
