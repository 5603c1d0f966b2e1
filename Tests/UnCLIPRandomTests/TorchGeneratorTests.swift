import Foundation
import XCTest
@testable import UnCLIPRandom
import UnCLIPTestSupport

/// TorchGenerator against values saved from torch 2.13 by notebooks-export/fixtures_rng.py.
final class TorchGeneratorTests: XCTestCase {
    struct Manifest: Decodable {
        let torch_version: String
        let data_file: String
        let cases: [Case]
    }

    struct Case: Decodable {
        let name: String
        let seed: UInt64
        let ops: [Op]
    }

    struct Op: Decodable {
        let op: String
        let shape: [Int]?
        let dtype: String?
        let offset: Int?
        let count: Int?
        let low: Int64?
        let high: Int64?
        let seed: UInt64?
    }

    func loadFixtures() throws -> (Manifest, Data) {
        let manifest = try Fixture.decode(Manifest.self, "rng/manifest.json")
        return (manifest, try Data(contentsOf: Fixture.url("rng/\(manifest.data_file)")))
    }

    /// Little-endian values of `op` from the fixture blob.
    func values<T>(_ type: T.Type, _ op: Op, in data: Data) throws -> [T] {
        let offset = try XCTUnwrap(op.offset), count = try XCTUnwrap(op.count)
        let size = MemoryLayout<T>.size
        XCTAssertLessThanOrEqual(offset + count * size, data.count, "fixture blob too short")
        return data.withUnsafeBytes { raw in
            (0..<count).map { raw.loadUnaligned(fromByteOffset: offset + $0 * size, as: T.self) }
        }
    }

    /// Fails unless both arrays are element-wise identical, naming the first differing index.
    func assertIdentical<T: Equatable>(_ actual: [T], _ expected: [T], _ label: String,
                                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, "\(label): count", file: file, line: line)
        let differing = zip(actual, expected).filter { $0 != $1 }.count
        if let first = zip(actual, expected).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
            XCTFail("\(label): \(differing) values differ; first at \(first.offset): got \(first.element.0), torch \(first.element.1)",
                    file: file, line: line)
        }
    }

    /// Every fixture case on one fresh generator per case.
    /// rand and randint must be identical. randn float32 must be bit-identical for >= 16 elements
    /// (torch's float path is pure IEEE arithmetic, reproduced op for op) and within 1e-6 for < 16
    /// elements (double libm sin/cos/log1p, then rounded to float). randn float64: within 1e-12.
    func testFixtureCases() throws {
        let (manifest, data) = try loadFixtures()
        XCTAssertGreaterThan(manifest.cases.count, 100)
        var checked = [String: Int]()
        var worstScalar: Float = 0, worstDouble = 0.0, inexactScalar = 0

        for testCase in manifest.cases {
            let generator = TorchGenerator(seed: testCase.seed)
            XCTAssertEqual(generator.initialSeed, testCase.seed)
            for (index, op) in testCase.ops.enumerated() {
                let label = "\(testCase.name) op \(index) (\(op.op) \(op.shape ?? []))"
                switch (op.op, op.dtype) {
                case ("manual_seed", _):
                    generator.manualSeed(try XCTUnwrap(op.seed))
                    continue
                case ("randn", "float32"):
                    let expected = try values(Float.self, op, in: data)
                    let actual = try generator.randn(shape: XCTUnwrap(op.shape))
                    XCTAssertEqual(actual.count, expected.count, label)
                    let diffs = zip(actual, expected).map { abs($0 - $1) }
                    let worst = diffs.max() ?? 0
                    if expected.count >= 16 {
                        assertIdentical(actual, expected, "\(label) (max abs diff \(worst))")
                    } else {
                        XCTAssertLessThanOrEqual(worst, 1e-6, label)
                        worstScalar = max(worstScalar, worst)
                        inexactScalar += diffs.filter { $0 != 0 }.count
                    }
                case ("randn", "float64"):
                    let expected = try values(Double.self, op, in: data)
                    let actual = try generator.randnDouble(XCTUnwrap(op.count))
                    XCTAssertEqual(actual.count, expected.count, label)
                    let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
                    XCTAssertLessThanOrEqual(worst, 1e-12, label)
                    worstDouble = max(worstDouble, worst)
                case ("rand", "float32"):
                    let expected = try values(Float.self, op, in: data)
                    assertIdentical(try generator.rand(shape: XCTUnwrap(op.shape)), expected, label)
                case ("randint", "int64"):
                    let expected = try values(Int64.self, op, in: data)
                    let actual = try generator.randint(low: XCTUnwrap(op.low), high: XCTUnwrap(op.high),
                                                       shape: XCTUnwrap(op.shape))
                    assertIdentical(actual, expected, label)
                default:
                    XCTFail("\(label): unknown op/dtype \(op.dtype ?? "nil")")
                }
                checked["\(op.op) \(op.dtype ?? "")", default: 0] += op.count ?? 0
            }
        }
        print("rng fixtures (torch \(manifest.torch_version)): values checked \(checked); "
              + "randn<16 float32 max diff \(worstScalar), inexact \(inexactScalar); float64 max diff \(worstDouble)")
    }

    /// The protocol form gives the same stream as torch.randn for seed 0.
    func testRandomSourceProtocol() throws {
        let (manifest, data) = try loadFixtures()
        let fixture = try XCTUnwrap(manifest.cases.first { $0.name == "randn_s0_4x64x64" })
        let source: any RandomSource = TorchGenerator(seed: 0)
        assertIdentical(try source.randn(count: 4 * 64 * 64), try values(Float.self, fixture.ops[0], in: data), "protocol randn")
    }

    /// C++ [rand.predef]: the 10000th output of a default-seeded (5489) mt19937 is 4123659995.
    func testMT19937StandardValue() {
        let engine = MT19937(seed: 5489)
        var last: UInt32 = 0
        for _ in 0..<10_000 { last = engine.next() }
        XCTAssertEqual(last, 4_123_659_995)
    }

    /// Bulk fill must continue exactly where single draws left off, across state refills.
    func testMT19937FillMatchesNext() {
        let single = MT19937(seed: 42), bulk = MT19937(seed: 42)
        let expected = (0..<2000).map { _ in single.next() }
        var actual = [UInt32](repeating: 0, count: 2000)
        actual[0] = bulk.next()
        actual.withUnsafeMutableBufferPointer { bulk.fill(UnsafeMutableBufferPointer(rebasing: $0[1..<1300])) }
        for i in 1300..<2000 { actual[i] = bulk.next() }
        assertIdentical(actual, expected, "fill vs next")
    }

    func testInvalidArgumentsThrow() {
        let generator = TorchGenerator(seed: 0)
        XCTAssertThrowsError(try generator.randint(low: 5, high: 5, count: 3)) {
            XCTAssertEqual($0 as? RandomError, .emptyRange(low: 5, high: 5))
        }
        XCTAssertThrowsError(try generator.randn(-1)) {
            XCTAssertEqual($0 as? RandomError, .negativeCount(operation: "randn", count: -1))
        }
        XCTAssertThrowsError(try generator.rand(shape: [2, -3])) {
            XCTAssertEqual($0 as? RandomError, .invalidShape(operation: "rand", shape: [2, -3]))
        }
        XCTAssertThrowsError(try generator.randn(shape: [Int.max, 2]))
        XCTAssertEqual(try generator.randn(shape: [3, 0]), [])
    }
}
