import Foundation
import XCTest
@testable import UnCLIPTokenizer
import UnCLIPTestSupport

/// Ids, masks and counts must equal transformers 5.23 CLIPTokenizer exactly (integers: no tolerance).
final class CLIPTokenizerFixtureTests: XCTestCase {
    func testFixtureCoversTheBrief() {
        let fixture = TokenizerFixture.shared
        XCTAssertEqual(fixture.transformers_version, "5.23.0")
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 300)
        let counts = Set(fixture.cases.compactMap(\.openai.token_count))
        for n in [2, 76, 77, 78] { XCTAssertTrue(counts.contains(n), "no case with \(n) tokens") }
        XCTAssertTrue(counts.contains { $0 > 300 }, "no very long case")
    }

    func testOpenAIFolderMatchesTransformers() {
        XCTAssertEqual(checkAllCases(Loaded.openAI, folder: "openai") { $0.openai }, 0)
    }

    func testSD2FolderMatchesTransformers() {
        // Pad "!" (id 0) is a special added token in transformers 5.x: every "!" in the text becomes id 0.
        XCTAssertEqual(checkAllCases(Loaded.sd2, folder: "sd2") { $0.sd2 }, 0)
    }

    func testShortMaxLengthMatchesTransformers() {
        let fixture = TokenizerFixture.shared
        XCTAssertEqual(checkAllCases(Loaded.openAI, folder: "openai max_length=\(fixture.short_max_length)",
                                     maxLength: fixture.short_max_length) { $0.openai_short }, 0)
    }

    /// stable-diffusion-2 style configs: AddedToken dicts with normalized=true and special_tokens_map's pad "!"
    /// overriding tokenizer_config's pad "<|endoftext|>".
    func testLegacySD2ConfigMatchesTransformers() throws {
        let dir = try makeTemporaryDirectory(for: self, prefix: "unclip-tokenizer")
        let fm = FileManager.default
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            try fm.copyItem(at: Paths.legacyConfig.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        for name in ["vocab.json", "merges.txt"] {
            try fm.copyItem(at: Paths.sd2.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        let tokenizer = try CLIPTokenizer(directory: dir)
        XCTAssertEqual(tokenizer.padTokenId, 0)
        XCTAssertEqual(checkAllCases(tokenizer, folder: "legacy") { $0.legacy }, 0)
        // normalized=true: an upper-case end token is recognised after lowercasing.
        XCTAssertEqual(tokenizer.encode("<|ENDOFTEXT|>"), [49407])
        XCTAssertNotEqual(Loaded.sd2.encode("<|ENDOFTEXT|>"), [49407])
    }

    func testSpecialTokenIdsAndSizes() {
        for tokenizer in [Loaded.openAI, Loaded.sd2] {
            XCTAssertEqual(tokenizer.bosTokenId, 49406)
            XCTAssertEqual(tokenizer.eosTokenId, 49407)
            XCTAssertEqual(tokenizer.vocabularySize, 49408)
            XCTAssertEqual(tokenizer.modelMaxLength, 77)
        }
        XCTAssertEqual(Loaded.openAI.padTokenId, 49407)
        XCTAssertEqual(Loaded.sd2.padTokenId, 0)
    }

    /// Truncation arithmetic checked against values derived by hand from the fixture's untruncated ids.
    func testTruncationKeepsBOSAndEOS() throws {
        let fixture = TokenizerFixture.shared
        let long = try XCTUnwrap(fixture.cases.first { ($0.openai.token_count ?? 0) > 300 })
        let content = Loaded.openAI.encode(long.text)
        XCTAssertEqual(Array(content.prefix(75)), Array(long.openai.input_ids[1..<76]))
        for maxLength in [2, 3, 10, 77, 1000] {
            let result = Loaded.openAI(long.text, maxLength: maxLength)
            XCTAssertEqual(result.ids.count, maxLength)
            XCTAssertEqual(result.ids.first, 49406)
            let kept = min(content.count, maxLength - 2)
            XCTAssertEqual(result.ids[kept + 1], 49407)
            XCTAssertEqual(Array(result.ids[1..<(kept + 1)]), Array(content.prefix(kept)))
            XCTAssertEqual(result.attentionMask.reduce(0, +), kept + 2)
            XCTAssertEqual(result.droppedTokens, content.count - kept)
            XCTAssertEqual(result.tokenCount, content.count + 2)
        }
    }
}

final class CLIPTokenizerConcurrencyTests: XCTestCase {
    /// The BPE cache is shared by copies of one tokenizer; using it from several threads must not change ids.
    func testConcurrentUseMatchesFixtures() throws {
        let tokenizer = try CLIPTokenizer(directory: Paths.sd2)  // fresh, empty cache
        let cases = TokenizerFixture.shared.cases
        let mismatches = Counter()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            var local = 0
            // Each worker walks the cases from a different starting point so cache fills interleave.
            for k in 0..<cases.count {
                let item = cases[(k + worker * cases.count / 4) % cases.count]
                if tokenizer(item.text).ids != item.sd2.input_ids { local += 1 }
            }
            mismatches.add(local)
        }
        XCTAssertEqual(mismatches.value, 0)
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    func add(_ n: Int) { lock.lock(); total += n; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return total }
}
