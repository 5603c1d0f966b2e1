import XCTest
@testable import UnCLIPTensor

/// The bf16 kernels against their definition: inputs rounded to bf16 here (round-to-nearest-even, torch's rule),
/// products summed in Double. Tolerance: |kernel − reference| ≤ 1e-5 · Σₖ|aₖ·bₖ| per output, i.e. 1e-5 relative
/// to the magnitude of the terms the fp32 accumulator adds up (cancellation can make the output itself tiny).
final class BF16GemmTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(GemmPrecision.bf16Supported, "this CPU has no AVX512_BF16")
    }

    /// Pseudo-random values in [-scale, scale) with full fp32 mantissas (so bf16 rounding matters).
    func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var s = seed &* 0x9E3779B97F4A7C15 | 1
        let data = (0..<shape.reduce(1, *)).map { _ -> Float in
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return (Float(s >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
        return Tensor(shape: shape, data: data)
    }

    /// bf16 rounding by its definition on the bit pattern (round to nearest, ties to even), back as Double.
    func bf16(_ x: Float) -> Double {
        let u = x.bitPattern
        let rounded = (u &+ 0x7FFF &+ ((u >> 16) & 1)) & 0xFFFF_0000
        return Double(Float(bitPattern: rounded))
    }

    /// Checks each output against (reference, Σ|terms|); returns the worst error relative to max |reference|.
    @discardableResult
    func check(_ y: [Float], _ ref: [(value: Double, magnitude: Double)], file: StaticString = #filePath, line: UInt = #line) -> Double {
        XCTAssertEqual(y.count, ref.count, file: file, line: line)
        var bad = 0, worst = 0.0
        let scale = ref.map { abs($0.value) }.max() ?? 1
        for (v, r) in zip(y, ref) {
            let err = abs(Double(v) - r.value)
            if err > 1e-5 * r.magnitude + 1e-30 { bad += 1 }
            worst = max(worst, err / scale)
        }
        XCTAssertEqual(bad, 0, "\(bad) of \(y.count) outputs outside 1e-5·Σ|a·b| (worst error / max|ref| \(worst))", file: file, line: line)
        return worst
    }

    /// y = x · Wᵀ + b from the definition, inputs rounded to bf16 (the bias stays fp32, as in the kernel).
    func linearReference(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> [(value: Double, magnitude: Double)] {
        let k = w.shape[1], n = w.shape[0], rows = x.count / k
        var out: [(value: Double, magnitude: Double)] = []
        for r in 0..<rows {
            for o in 0..<n {
                var s = b.map { Double($0[flat: o]) } ?? 0, mag = abs(s)
                for i in 0..<k {
                    let t = bf16(x[flat: r * k + i]) * bf16(w[flat: o * k + i])
                    s += t; mag += abs(t)
                }
                out.append((s, mag))
            }
        }
        return out
    }

    /// Shapes covering partial micro-tiles (rows not a multiple of 6, columns not of 64), odd K, several
    /// K blocks (K > 256), and both ways of splitting the work across cores (by rows, by column panels).
    func testLinearMatchesDefinition() {
        for (rows, n, k, seed) in [(1, 1, 1, 1), (13, 70, 37, 2), (100, 130, 301, 3), (5, 512, 600, 4), (300, 200, 520, 5)] as [(Int, Int, Int, UInt64)] {
            let x = random([rows, k], seed: seed), w = random([n, k], seed: seed + 100, scale: 0.5)
            let b = random([n], seed: seed + 200)
            let packed = BF16Weight(w, layout: .lanes)
            check(linear(x, packed: packed, bias: b).scalars, linearReference(x, w, b))
            check(linear(x, packed: packed).scalars, linearReference(x, w, nil))
        }
    }

    /// The reference really is the bf16 one: the fp32 product differs from the kernel by far more than the tolerance.
    func testKernelRoundsInputsToBF16() {
        let x = random([12, 256], seed: 7), w = random([64, 256], seed: 8)
        let y = linear(x, packed: BF16Weight(w, layout: .lanes)).scalars
        let exact = linear(x, weight: w).scalars
        let worst = zip(y, exact).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(worst, 1e-3, "bf16 product indistinguishable from fp32: are inputs rounded?")
    }

    func testConv2dMatchesDefinition() {
        // (channels in, out, size, kernel, stride, padding, im2col band)
        let cases: [(Int, Int, Int, Int, Int, Int, Int)] = [
            (5, 7, 9, 3, 1, 1, 8 << 20), (5, 7, 9, 3, 2, 0, 8 << 20), (3, 13, 11, 3, 1, 1, 27 * 11 * 2),
            (33, 40, 24, 3, 1, 1, 8 << 20), (64, 70, 20, 1, 1, 0, 8 << 20), (40, 50, 12, 3, 1, 1, 8 << 20),
            (101, 13, 30, 3, 2, 1, 8 << 20),  // k = 909 (odd: a half pair), stride 2, panels that wrap output rows
        ]
        for (i, (c, o, size, kk, stride, pad, band)) in cases.enumerated() {
            let x = random([2, c, size, size + 1], seed: UInt64(10 + i)), w = random([o, c, kk, kk], seed: UInt64(20 + i), scale: 0.3)
            let b = random([o], seed: UInt64(30 + i))
            let (h, wd) = (size, size + 1)
            let oh = (h + 2 * pad - kk) / stride + 1, ow = (wd + 2 * pad - kk) / stride + 1
            var ref: [(value: Double, magnitude: Double)] = []
            for bi in 0..<2 { for oc in 0..<o { for oy in 0..<oh { for ox in 0..<ow {
                var s = Double(b[flat: oc]), mag = abs(s)
                for ic in 0..<c { for ky in 0..<kk { for kx in 0..<kk {
                    let iy = oy * stride - pad + ky, ix = ox * stride - pad + kx
                    guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                    let t = bf16(x[flat: ((bi * c + ic) * h + iy) * wd + ix]) * bf16(w[flat: ((oc * c + ic) * kk + ky) * kk + kx])
                    s += t; mag += abs(t)
                } } }
                ref.append((s, mag))
            } } } }
            let packed = BF16Weight(w, layout: .rows)
            let y = conv2d(x, weight: w, bias: b, stride: (stride, stride), padding: (pad, pad), bandFloats: band, packed: packed)
            XCTAssertEqual(y.shape, [2, o, oh, ow])
            check(y.scalars, ref)
            // The implicit-im2col path (the one models use): pairs of im2col rows gathered straight from the image.
            let yi = conv2d(x, packed: packed, outputs: o, kernel: (kk, kk), bias: b, stride: (stride, stride), padding: (pad, pad))
            XCTAssertEqual(yi.shape, [2, o, oh, ow])
            check(yi.scalars, ref)
        }
    }

    /// Direct convolution in Double (stride 1, padding 1, 3×3) of the given values.
    func conv3x3Reference(_ x: Tensor, _ w: Tensor, _ b: Tensor) -> [Double] {
        let (bn, c, h, wd, o) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0])
        var out: [Double] = []
        for bi in 0..<bn { for oc in 0..<o { for oy in 0..<h { for ox in 0..<wd {
            var s = Double(b[flat: oc])
            for ic in 0..<c { for ky in 0..<3 { for kx in 0..<3 {
                let iy = oy - 1 + ky, ix = ox - 1 + kx
                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                s += Double(x[flat: ((bi * c + ic) * h + iy) * wd + ix]) * Double(w[flat: ((oc * c + ic) * 3 + ky) * 3 + kx])
            } } }
            out.append(s)
        } } } }
        return out
    }

    /// Winograd F(2×2, 3×3) with integer inputs in [-2, 2]: every transformed value (Bᵀ d B: integers up to 8;
    /// G g Gᵀ: quarters up to 4.5) and every partial sum is exact in bf16 and fp32, so the kernel must give
    /// the direct convolution exactly. Cases: odd sizes (partial tiles), a 1×1 image, odd channel counts (a half
    /// pair), 300 channels (two channel blocks), several 64-tile panels across the batch, and both splits.
    func testWinogradConvIsExactOnIntegers() {
        func integers(_ shape: [Int], seed: UInt64) -> Tensor {
            var s = seed &* 0x9E3779B97F4A7C15 | 1
            return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in
                s ^= s << 13; s ^= s >> 7; s ^= s << 17
                return Float(Int(s % 5) - 2)
            })
        }
        // (batch, channels in, out, height, width)
        for (i, (bn, c, o, h, wd)) in [(2, 13, 10, 7, 5), (1, 3, 7, 1, 1), (2, 300, 14, 20, 21), (2, 128, 100, 8, 8),
                                       (1, 8, 9, 33, 40)].enumerated() {
            let x = integers([bn, c, h, wd], seed: UInt64(50 + i)), w = integers([o, c, 3, 3], seed: UInt64(60 + i))
            let b = integers([o], seed: UInt64(70 + i))
            let packed = BF16Weight(w, layout: .winograd3x3)
            let y = conv2d(x, packed: packed, outputs: o, kernel: (3, 3), bias: b, stride: (1, 1), padding: (1, 1))
            XCTAssertEqual(y.shape, [bn, o, h, wd])
            let ref = conv3x3Reference(x, w, b)
            let wrong = zip(y.scalars, ref).filter { !(abs(Double($0) - $1) <= 1e-6) }.count
            XCTAssertEqual(wrong, 0, "case \(i): \(wrong) of \(ref.count) outputs differ from the direct convolution")
        }
    }

    /// With full-mantissa values the transforms round to bf16, so Winograd is close to the exact convolution
    /// but not equal: within 2% of the largest output everywhere and 0.5% on average (a bf16 direct
    /// convolution is within 1e-5 of its own rounded-input definition, see above; this bounds the extra
    /// error of rounding transformed values instead).
    func testWinogradConvIsCloseOnRealValues() {
        let (bn, c, o, h, wd) = (2, 70, 20, 15, 16)
        let x = random([bn, c, h, wd], seed: 81), w = random([o, c, 3, 3], seed: 82, scale: 0.3), b = random([o], seed: 83)
        let y = conv2d(x, packed: BF16Weight(w, layout: .winograd3x3), outputs: o, kernel: (3, 3), bias: b,
                       stride: (1, 1), padding: (1, 1)).scalars
        let ref = conv3x3Reference(x, w, b)
        let scale = ref.map { abs($0) }.max()!, meanRef = ref.map { abs($0) }.reduce(0, +) / Double(ref.count)
        let errors = zip(y, ref).map { abs(Double($0) - $1) }
        XCTAssertLessThan(errors.max()!, 0.02 * scale)
        XCTAssertLessThan(errors.reduce(0, +) / Double(errors.count), 0.005 * meanRef)
        XCTAssertGreaterThan(errors.max()!, 0, "no rounding at all: is the bf16 kernel running?")
    }
}
