import Foundation
import UnCLIPTestSupport
import UnCLIPWeights
import XCTest

/// Config files that are not UTF-8 text get an error naming the file and the byte; before the check,
/// Foundation's JSON5 scanner stopped the process (SIGILL) when invalid bytes replaced a key's opening quote
/// (found by mutating weights/shapes/image_encoder/config.json, issue 20).
final class ConfigTextTests: XCTestCase {
    struct AnyConfig: Decodable {
        init(from decoder: Decoder) throws { _ = try ConfigReader(decoder) }
    }

    func testInvalidUTF8WhereAKeyStartsIsAnErrorNotACrash() throws {
        let tmp = try makeTemporaryDirectory(for: self)
        let url = tmp.appendingPathComponent("config.json")
        // A key whose opening quote became three non-UTF-8 bytes: JSON5 reads it as an unquoted key.
        var bytes = Data(#"{"num_hidden_layers": 2,\#n  "patch_size": 4}"#.utf8)
        let quote = bytes.firstRange(of: Data(#""patch_size""#.utf8))!.lowerBound
        bytes.replaceSubrange(quote..<quote + 1, with: [0xFF, 0xE2, 0xF4])
        try bytes.write(to: url)
        XCTAssertThrowsError(try loadJSONConfig(AnyConfig.self, from: url)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(url.path) && text.contains("not UTF-8") && text.contains("offset \(quote)"), text)
        }
        // A truncated multi-byte sequence inside a quoted key, and one at the very end.
        for broken in [Data([0x7B, 0x22, 0xC3, 0x22, 0x3A, 0x31, 0x7D]), Data(#"{"a": 1}"#.utf8) + Data([0xE2, 0x82])] {
            try broken.write(to: url)
            XCTAssertThrowsError(try loadJSONConfig(AnyConfig.self, from: url)) { XCTAssertTrue("\($0)".contains("not UTF-8"), "\($0)") }
        }
        // Valid multi-byte text is still read.
        try Data(#"{"name": "café ☕ 𝄞"}"#.utf8).write(to: url)
        XCTAssertNoThrow(try loadJSONConfig(AnyConfig.self, from: url))
    }
}
