import XCTest
@testable import UnCLIPTensor
import UnCLIPTestSupport

/// Every fp32 convolution path (`ConvPath`: im2col + sgemm, the implicit-im2col kernel in AVX2 + FMA and in
/// AVX-512) on the same cases, each against a float64 convolution computed here from the definition.
///
/// `conv2d` alone would only ever exercise the best path of the CPU at hand (AVX-512 on the development
/// machine), so each test names its path per call; a path the CPU lacks is skipped with XCTSkip, and the
/// skip message names it, so the test log says which paths ran on this CPU.
///
/// Tolerance: |ours − exact| ≤ 2e-5 · (|bias| + Σ|w·x|) per output. An fp32 sum of n terms in any order is
/// within about n·2⁻²⁴·Σ|terms| of the exact sum in the worst case and ~√n·2⁻²⁴ typically; blocked sums (KC
/// deep blocks, then across blocks) stay well inside 2e-5 ≈ 336·2⁻²⁴ for the depths here (up to 11 520 terms).
final class ConvPathTests: XCTestCase {
    /// One case: input [n, c, h, w], `o` outputs, k×k kernel, stride, padding; `why` names what it covers.
    struct Case { let n, c, h, w, o, k, stride, pad: Int; let why: String }

    /// Shapes chosen against the kernels' blocking: AVX2 tiles are 4 rows × 24 pixels, K blocks 256 deep,
    /// 240-pixel packed blocks; AVX-512 tiles are 6 × 64, K blocks 128, 512-pixel blocks.
    static let cases: [Case] = [
        Case(n: 2, c: 3, h: 9, w: 7, o: 5, k: 3, stride: 1, pad: 1, why: "odd sizes, fewer outputs than one tile, batch 2"),
        Case(n: 2, c: 3, h: 9, w: 7, o: 5, k: 3, stride: 2, pad: 1, why: "stride 2, padding 1"),
        Case(n: 1, c: 20, h: 30, w: 37, o: 13, k: 3, stride: 1, pad: 1, why: "1110 pixels: several pixel blocks, panels wrapping rows"),
        Case(n: 2, c: 20, h: 30, w: 37, o: 13, k: 3, stride: 2, pad: 0, why: "stride 2, padding 0, batch 2"),
        Case(n: 1, c: 20, h: 30, w: 37, o: 13, k: 3, stride: 1, pad: 0, why: "3×3 without padding"),
        Case(n: 2, c: 7, h: 11, w: 13, o: 9, k: 1, stride: 1, pad: 0, why: "1×1 (the image is the matrix)"),
        Case(n: 1, c: 7, h: 11, w: 13, o: 9, k: 1, stride: 2, pad: 0, why: "1×1 stride 2"),
        Case(n: 1, c: 576, h: 6, w: 5, o: 11, k: 1, stride: 1, pad: 0, why: "1×1, 576 deep: K blocks with a remainder"),
        Case(n: 1, c: 1280, h: 5, w: 7, o: 7, k: 3, stride: 1, pad: 1, why: "3×3, 1280 channels: 11 520 deep"),
        Case(n: 2, c: 64, h: 5, w: 5, o: 203, k: 3, stride: 1, pad: 1, why: "many outputs, few pixels: split by output rows, partial tiles"),
        Case(n: 1, c: 33, h: 17, w: 19, o: 70, k: 3, stride: 1, pad: 1, why: "channel and pixel counts off every block size"),
    ]

    /// The exact convolution in float64 and, per output, the sum of the magnitudes of its terms.
    static func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor, _ cs: Case) -> (value: [Double], magnitude: [Double]) {
        let oh = (cs.h + 2 * cs.pad - cs.k) / cs.stride + 1, ow = (cs.w + 2 * cs.pad - cs.k) / cs.stride + 1
        let xs = x.scalars.map(Double.init), ws = w.scalars.map(Double.init)
        var value = [Double](), magnitude = [Double]()
        value.reserveCapacity(cs.n * cs.o * oh * ow); magnitude.reserveCapacity(cs.n * cs.o * oh * ow)
        for n in 0..<cs.n { for oc in 0..<cs.o { for i in 0..<oh { for j in 0..<ow {
            var s = Double(b[flat: oc]), m = abs(s)
            for ic in 0..<cs.c { for ki in 0..<cs.k { for kj in 0..<cs.k {
                let y = i * cs.stride - cs.pad + ki, xx = j * cs.stride - cs.pad + kj
                guard y >= 0 && y < cs.h && xx >= 0 && xx < cs.w else { continue }
                let t = xs[((n * cs.c + ic) * cs.h + y) * cs.w + xx] * ws[((oc * cs.c + ic) * cs.k + ki) * cs.k + kj]
                s += t; m += abs(t)
            } } }
            value.append(s); magnitude.append(m)
        } } } }
        return (value, magnitude)
    }

    static let relativeTolerance = 2e-5

    /// Runs every case through `path` (skipped, by name, when this CPU or build lacks it).
    func check(_ path: ConvPath) throws {
        try XCTSkipUnless(path.isSupported, "\(path.rawValue): not supported on this CPU/build, skipped")
        for (index, cs) in Self.cases.enumerated() {
            let seed = UInt64(100 + 3 * index)
            let x = Tensor.pseudoRandom([cs.n, cs.c, cs.h, cs.w], seed: seed)
            let w = Tensor.pseudoRandom([cs.o, cs.c, cs.k, cs.k], seed: seed + 1), b = Tensor.pseudoRandom([cs.o], seed: seed + 2)
            let (exact, magnitude) = Self.reference(x, w, b, cs)
            let y = conv2d(x, weight: w, bias: b, stride: (cs.stride, cs.stride), padding: (cs.pad, cs.pad), path: path)
            let oh = (cs.h + 2 * cs.pad - cs.k) / cs.stride + 1, ow = (cs.w + 2 * cs.pad - cs.k) / cs.stride + 1
            XCTAssertEqual(y.shape, [cs.n, cs.o, oh, ow], "\(path.rawValue), case \(index)")
            let ys = y.scalars
            var worst = 0.0, worstAt = 0
            for i in 0..<exact.count {
                let err = abs(Double(ys[i]) - exact[i]) / max(magnitude[i], .leastNormalMagnitude)
                if !(err <= worst) { worst = err; worstAt = i }   // NaN counts as worst
            }
            XCTAssert(worst <= Self.relativeTolerance,
                      "\(path.rawValue), case \(index) (\(cs.why)): output \(worstAt) is \(ys[worstAt]), exact \(exact[worstAt]), "
                      + "error \(worst) of Σ|terms| > \(Self.relativeTolerance)")
        }
        // Without bias: the kernels add it only in their first K block, so check that path too (deep, several blocks).
        let cs = Self.cases[8]
        let x = Tensor.pseudoRandom([cs.n, cs.c, cs.h, cs.w], seed: 7), w = Tensor.pseudoRandom([cs.o, cs.c, cs.k, cs.k], seed: 8)
        let (exact, magnitude) = Self.reference(x, w, Tensor(shape: [cs.o], data: [Float](repeating: 0, count: cs.o)), cs)
        let y = conv2d(x, weight: w, bias: nil, stride: (1, 1), padding: (1, 1), path: path).scalars
        for i in 0..<exact.count where !(abs(Double(y[i]) - exact[i]) <= Self.relativeTolerance * magnitude[i]) {
            XCTFail("\(path.rawValue), no bias: output \(i) is \(y[i]), exact \(exact[i])"); break
        }
    }

    func testIm2colSgemm() throws { try check(.im2colSgemm) }
    func testImplicitAVX2() throws { try check(.implicitAVX2) }
    func testImplicitAVX512() throws { try check(.implicitAVX512) }

    /// conv2d's default is the first supported of AVX-512, AVX2 + FMA, im2col + sgemm; the log line lists them.
    func testBestIsTheFirstSupportedPath() {
        let supported = [ConvPath.implicitAVX512, .implicitAVX2, .im2colSgemm].filter(\.isSupported)
        print("ConvPathTests: paths on this CPU/build: \(ConvPath.allCases.map { "\($0.rawValue) \($0.isSupported ? "runs" : "SKIPPED")" }.joined(separator: ", ")); conv2d uses \(ConvPath.best.rawValue)")
        XCTAssertEqual(ConvPath.best, supported.first)
        XCTAssert(ConvPath.im2colSgemm.isSupported)
    }
}
