import Foundation
import XCTest
@testable import UnCLIPServer

/// Request bodies that size something (issue 20): numbers whose products overflow, nesting, lengths. Each is a 400
/// naming the field, never a trap. These call the routes' first step (`RequestParsing`) without a server.
final class RequestParsingTests: XCTestCase {
    func assertBadRequest<T>(_ body: @autoclosure () throws -> T, field: String?, mentioning needle: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected a 400 mentioning '\(needle)'", file: file, line: line)
        } catch let e as APIError {
            XCTAssertEqual(e.status.code, 400, e.message, file: file, line: line)
            XCTAssertEqual(e.field, field, e.message, file: file, line: line)
            XCTAssertTrue(e.message.contains(needle), "'\(e.message)' does not mention '\(needle)'", file: file, line: line)
        } catch {
            XCTFail("expected an APIError, got \(error)", file: file, line: line)
        }
    }

    func testWidthTimesHeightOverflowIsRefused() {
        let body = Data(#"{"kind":"text-to-image","prompt":"x","width":4611686018427387904,"height":4}"#.utf8)
        assertBadRequest(try RequestParsing.nativeJob(body), field: "width", mentioning: "pixels")
        // The ordinary case still says how many pixels were asked for.
        let big = Data(#"{"kind":"text-to-image","prompt":"x","width":2048,"height":2048}"#.utf8)
        assertBadRequest(try RequestParsing.nativeJob(big), field: "width", mentioning: "4194304 pixels")
    }

    func testBatchSizeTimesIterationsOverflowIsRefused() {
        let body = Data(#"{"prompt":"x","batch_size":4611686018427387904,"n_iter":4}"#.utf8)
        assertBadRequest(try RequestParsing.a1111Generation(body, img2img: false), field: "batch_size", mentioning: "batch_size × n_iter")
        let ok = Data(#"{"prompt":"x","batch_size":2,"n_iter":3,"sampler_name":"Euler a"}"#.utf8)
        XCTAssertEqual(try RequestParsing.a1111Generation(ok, img2img: false).count, 6)
    }

    /// Deep nesting is refused by the JSON parser's own depth limit (Foundation's), as a bad request.
    func testDeeplyNestedJSONIsABadRequest() {
        let body = Data((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8)
        assertBadRequest(try RequestParsing.nativeJob(body), field: nil, mentioning: "not valid JSON")
        let inField = Data((#"{"kind":"text-to-image","prompt":"# + String(repeating: "[", count: 100_000)).utf8)
        assertBadRequest(try RequestParsing.nativeJob(inField), field: nil, mentioning: "not valid JSON")
    }

    func testMultipartWithoutItsBoundaryIsRefused() {
        assertBadRequest(try RequestParsing.multipart(Data("--x\r\n".utf8), contentType: "multipart/form-data"), field: "image",
                         mentioning: "boundary")
        assertBadRequest(try RequestParsing.multipart(Data("--b\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n1".utf8),
                                                      contentType: "multipart/form-data; boundary=b"),
                         field: nil, mentioning: "does not end")
    }
}
