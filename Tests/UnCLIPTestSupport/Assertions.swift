import Foundation
import UnCLIPTensor
import XCTest

/// Largest |a − b| over all components; `.infinity` when the counts differ or exactly one side is NaN
/// (NaN on both sides counts as equal).
public func maxAbsDiff(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Float {
    guard a.count == b.count else { return .infinity }
    var worst: Float = 0
    for i in 0..<a.count {
        if a[i].isNaN || b[i].isNaN {
            if a[i].isNaN != b[i].isNaN { return .infinity }
            continue
        }
        worst = max(worst, abs(a[i] - b[i]))
    }
    return worst
}

/// Largest |a − b| of two tensors of one shape (`.infinity` when the shapes differ; NaN as above).
public func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Float {
    guard a.shape == b.shape else { return .infinity }
    return maxAbsDiff(UnsafeBufferPointer(start: a.pointer, count: a.count), UnsafeBufferPointer(start: b.pointer, count: b.count))
}

/// Largest |a − b| of two arrays of one length.
public func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in maxAbsDiff(pa, pb) } }
}

/// Fails unless `a` and `b` have one shape and differ by at most `tol` in every component.
public func assertClose(_ a: Tensor, _ b: Tensor, tol: Float, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "\(what): shape", file: file, line: line)
    guard a.shape == b.shape else { return }
    let d = maxAbsDiff(a, b)
    XCTAssertLessThanOrEqual(d, tol, "\(what): max abs diff \(d)", file: file, line: line)
}

/// Fails unless `a` and `b` have one length and differ by at most `tol` in every component.
public func assertClose(_ a: [Float], _ b: [Float], tol: Float = 1e-5, _ what: String = "values",
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): count", file: file, line: line)
    guard a.count == b.count else { return }
    let d = maxAbsDiff(a, b)
    XCTAssertLessThanOrEqual(d, tol, "\(what): max abs diff \(d)", file: file, line: line)
}

/// Mean and largest absolute difference of two images' 8-bit values (in /255 units); `want` as a fixture's
/// integer tensor.
public func pixelDifference(_ got: [UInt8], _ want: [Int]) -> (mean: Double, max: Int) {
    let d = zip(got, want).map { abs(Int($0) - $1) }
    return (Double(d.reduce(0, +)) / Double(max(d.count, 1)), d.max() ?? 0)
}

/// Fails unless the images have one size and differ by at most `meanTol` on average and `maxTol` anywhere
/// (the parity bound against diffusers' images: 1/255 mean, 4/255 max).
public func assertPixelsClose(_ got: [UInt8], _ want: [Int], _ what: String, meanTol: Double = 1, maxTol: Int = 4,
                              file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, want.count, "\(what): size", file: file, line: line)
    guard got.count == want.count else { return }
    let d = pixelDifference(got, want)
    XCTAssertLessThanOrEqual(d.mean, meanTol, "\(what): mean abs pixel diff \(d.mean)", file: file, line: line)
    XCTAssertLessThanOrEqual(d.max, maxTol, "\(what): max pixel diff \(d.max)", file: file, line: line)
}

/// Fails unless `body` throws an error whose description mentions every one of `needles` (errors must say
/// what is wrong and where).
public func assertThrows<T>(_ body: @autoclosure () throws -> T, mentioning needles: [String],
                            file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected an error mentioning \(needles)", file: file, line: line)
    } catch {
        let text = "\(error)"
        for n in needles where !text.contains(n) {
            XCTFail("error '\(text)' does not mention '\(n)'", file: file, line: line)
        }
    }
}
