import Foundation
import XCTest
@testable import UnCLIPTokenizer

/// Load and tokenize times, printed for the record (speed is measured, not asserted: timed assertions flake
/// on shared machines). The test checks that repeated, cached tokenization stays correct.
final class CLIPTokenizerSpeedTests: XCTestCase {
    func testLoadAndTokenizeSpeed() throws {
        var loadSeconds = Double.infinity
        var tokenizer: CLIPTokenizer?
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            tokenizer = try CLIPTokenizer(directory: Paths.openAI)
            loadSeconds = min(loadSeconds, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let clip = try XCTUnwrap(tokenizer)
        // A 77-token (untruncated) prompt from the fixture.
        let prompt = try XCTUnwrap(TokenizerFixture.shared.cases.first { $0.kind == "length" && $0.openai.token_count == 77
            && $0.text.contains("Universe") }).text

        var start = DispatchTime.now().uptimeNanoseconds
        let first = clip(prompt)
        let coldSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        XCTAssertEqual(first.tokenCount, 77)

        let iterations = 2000
        start = DispatchTime.now().uptimeNanoseconds
        var checksum = 0
        for _ in 0..<iterations { checksum &+= clip(prompt).ids[40] }
        let warmSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(iterations)
        XCTAssertEqual(checksum, first.ids[40] &* iterations)

        print(String(format: "CLIPTokenizer: load %.1f ms, 77-token prompt %.1f us cold, %.1f us cached",
                     loadSeconds * 1e3, coldSeconds * 1e6, warmSeconds * 1e6))
    }
}
