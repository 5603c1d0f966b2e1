import Foundation
import XCTest
import UnCLIPTensor
import UnCLIPWeights

/// The committed reference fixtures (written by notebooks-export/ scripts from diffusers/transformers).
enum Fixture {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func url(_ path: String) -> URL { root.appendingPathComponent(path) }

    static func file(_ path: String) throws -> SafeTensorsFile { try SafeTensorsFile(path: url(path).path) }
}

/// Max |a − b| over all components, with shapes checked.
func maxAbsDiff(_ a: Tensor, _ b: Tensor, file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(a.shape, b.shape, "shape", file: file, line: line)
    guard a.shape == b.shape else { return .infinity }
    var worst: Float = 0
    for i in 0..<a.count { worst = max(worst, abs(a.pointer[i] - b.pointer[i])) }
    return worst
}

func assertClose(_ a: Tensor, _ b: Tensor, tol: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    let d = maxAbsDiff(a, b, file: file, line: line)
    XCTAssertLessThanOrEqual(d, tol, "\(what): max abs diff \(d)", file: file, line: line)
}

/// Rows of a 2-D integer tensor.
func rows(_ flat: [Int], _ width: Int) -> [[Int]] {
    stride(from: 0, to: flat.count, by: width).map { Array(flat[$0..<($0 + width)]) }
}
