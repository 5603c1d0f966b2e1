import CKernels
import XCTest
@testable import UnCLIPTensor
import UnCLIPTestSupport

/// The fused attention kernel (both instruction sets) against softmax(q·kᵀ·scale)·v evaluated in double
/// precision straight from the definition, on shapes that leave partial key blocks and row tiles.
final class FusedAttentionTests: XCTestCase {
    /// softmax over visible keys, in double; a row with no visible key is defined as zeros.
    func reference(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, causal: Bool, mask: [Int]?, scale: Double) -> [Float] {
        let (b, tq, w) = (q.shape[0], q.shape[1], q.shape[2]), tk = k.shape[1], d = w / heads
        let qs = q.scalars, ks = k.scalars, vs = v.scalars
        var out = [Float](repeating: 0, count: b * tq * w)
        for bi in 0..<b { for h in 0..<heads { for i in 0..<tq {
            var scores = [Double](repeating: -.infinity, count: tk)
            for j in 0..<tk where !(causal && j > i) && (mask?[bi * tk + j] ?? 1) != 0 {
                var s = 0.0
                for e in 0..<d { s += Double(qs[(bi * tq + i) * w + h * d + e]) * Double(ks[(bi * tk + j) * w + h * d + e]) }
                scores[j] = s * scale
            }
            let m = scores.max()!
            if m == -.infinity { continue }
            let ex = scores.map { exp($0 - m) }, z = ex.reduce(0, +)
            for e in 0..<d {
                var s = 0.0
                for j in 0..<tk { s += ex[j] / z * Double(vs[(bi * tk + j) * w + h * d + e]) }
                out[(bi * tq + i) * w + h * d + e] = Float(s)
            }
        } } }
        return out
    }

    struct Case {
        var b: Int, tq: Int, tk: Int, heads: Int, d: Int
        var causal = false, mask: [Int]? = nil, scale: Float? = nil, magnitude: Float = 1
    }

    /// The instruction sets this CPU can run for head size d (AVX2 always, AVX-512 when present).
    func isas(_ d: Int) -> [Int32] {
        let best = uc_attention_best_isa(d)
        return best == 2 ? [1, 2] : best == 1 ? [1] : []
    }

    func check(_ c: Case, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let w = c.heads * c.d
        let q = Tensor.pseudoRandom([c.b, c.tq, w], seed: seed), k = Tensor.pseudoRandom([c.b, c.tk, w], seed: seed + 1), v = Tensor.pseudoRandom([c.b, c.tk, w], seed: seed + 2)
        if c.magnitude != 1 { for i in 0..<q.count { q.pointer[i] *= c.magnitude } }
        let scale = c.scale ?? 1 / Float(c.d).squareRoot()
        let expected = reference(q, k, v, heads: c.heads, causal: c.causal, mask: c.mask, scale: Double(scale))
        let kernels = isas(c.d)
        XCTAssertFalse(kernels.isEmpty, "no fused kernel for d = \(c.d)", file: file, line: line)
        for isa in kernels {
            let got = fusedAttention(query: q, key: k, value: v, heads: c.heads, causal: c.causal, keyMask: c.mask,
                                     scale: c.scale, isa: isa).scalars
            // Outputs are convex combinations of values in [-1, 1], so this is also a relative bound.
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-5, "isa \(isa), \(c): max abs diff \(worst)", file: file, line: line)
            XCTAssertFalse(got.contains { !$0.isFinite }, "isa \(isa): non-finite output", file: file, line: line)
        }
    }

    func testSelfAttentionPartialBlocks() {
        // 130 = 2 key blocks of 64 + 2 keys; 130 rows = 21 tiles of 6 + 4 rows; 200 rows = 2 tasks + 8 rows.
        check(Case(b: 2, tq: 130, tk: 130, heads: 2, d: 64), seed: 10)
        check(Case(b: 1, tq: 200, tk: 64, heads: 1, d: 64), seed: 20)
        check(Case(b: 1, tq: 5, tk: 3, heads: 3, d: 16), seed: 30)
    }

    func testCrossAttentionTextLength() {
        // UNet cross-attention: 77 text tokens = one full key block and 13 keys.
        check(Case(b: 2, tq: 100, tk: 77, heads: 3, d: 64), seed: 40)
        check(Case(b: 1, tq: 1, tk: 77, heads: 2, d: 32), seed: 50)
    }

    func testHeadSizes() {
        // 8 and 24 are AVX2-only sizes; 128 spans two 64-wide value tiles; 512 is the VAE's single head.
        check(Case(b: 1, tq: 20, tk: 70, heads: 2, d: 8), seed: 60)
        check(Case(b: 1, tq: 20, tk: 70, heads: 2, d: 24), seed: 70)
        check(Case(b: 1, tq: 40, tk: 90, heads: 1, d: 128), seed: 80)
        check(Case(b: 1, tq: 13, tk: 65, heads: 1, d: 512), seed: 90)
    }

    func testCausalAndKeyMask() {
        // CLIP text encoder: causal with padding keys masked; the prior: causal over its tokens.
        var mask = [Int](repeating: 1, count: 2 * 77)
        for j in 9..<77 { mask[j] = 0 }
        for j in 0..<77 where j % 5 == 3 { mask[77 + j] = 0 }
        check(Case(b: 2, tq: 77, tk: 77, heads: 2, d: 64, causal: true, mask: mask), seed: 100)
        check(Case(b: 2, tq: 77, tk: 77, heads: 2, d: 64, causal: false, mask: mask), seed: 110)
        check(Case(b: 1, tq: 150, tk: 150, heads: 2, d: 16, causal: true), seed: 120)
        // More queries than keys: rows past the last key still see every key.
        check(Case(b: 1, tq: 140, tk: 70, heads: 1, d: 32, causal: true), seed: 130)
    }

    func testScaleAndLargeScores() {
        // Large scores exercise the running-max rescaling across key blocks.
        check(Case(b: 1, tq: 30, tk: 200, heads: 2, d: 64, scale: 0.5), seed: 140)
        check(Case(b: 1, tq: 30, tk: 200, heads: 2, d: 64, magnitude: 8), seed: 150)
    }

    func testFullyMaskedRowsGiveZeros() {
        // Our documented choice (torch gives NaN): a query with no visible key returns zeros.
        let mask = [0, 0, 0, 0, 1, 1, 1, 1]
        check(Case(b: 2, tq: 3, tk: 4, heads: 2, d: 16, mask: mask), seed: 160)
        let q = Tensor.pseudoRandom([2, 3, 32], seed: 170), k = Tensor.pseudoRandom([2, 4, 32], seed: 171), v = Tensor.pseudoRandom([2, 4, 32], seed: 172)
        let out = attention(query: q, key: k, value: v, heads: 2, keyMask: mask).scalars
        XCTAssertEqual(Array(out[0..<96]), [Float](repeating: 0, count: 96))
    }

    func testPublicEntryMatchesUnfusedPath() {
        // The public function (fused) against the sgemm path it replaced, on a UNet-like shape.
        let q = Tensor.pseudoRandom([2, 300, 320], seed: 180), k = Tensor.pseudoRandom([2, 300, 320], seed: 181), v = Tensor.pseudoRandom([2, 300, 320], seed: 182)
        let fused = attention(query: q, key: k, value: v, heads: 5).scalars
        let unfused = attentionUnfused(query: q, key: k, value: v, heads: 5).scalars
        let worst = zip(fused, unfused).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-5, "max abs diff \(worst)")
    }
}

/// The bf16-product kernel against the definition evaluated in double on its bf16-rounded operands: q, the
/// keys times scale·log2(e) (the kernel works in base 2), and v. The kernel also rounds each probability to
/// bf16 (relative error ≤ 2⁻⁹) before the product with v, so |error| ≤ 2⁻⁹·max|v| plus fp32 rounding.
final class FusedAttentionBF16Tests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(uc_attention_bf16_supported(16) != 0, "this CPU has no AVX512_BF16")
    }

    func bf16(_ x: Float) -> Double { Double(Float(bitPattern: UInt32(uc_f32_to_bf16(x)) << 16)) }

    func reference(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, causal: Bool, mask: [Int]?, scale: Float) -> [Float] {
        let (b, tq, w) = (q.shape[0], q.shape[1], q.shape[2]), tk = k.shape[1], d = w / heads
        let s2 = scale * 1.44269504088896341
        let qs = q.scalars.map(bf16), ks = k.scalars.map { bf16($0 * s2) }, vs = v.scalars.map(bf16)
        var out = [Float](repeating: 0, count: b * tq * w)
        for bi in 0..<b { for h in 0..<heads { for i in 0..<tq {
            var scores = [Double](repeating: -.infinity, count: tk)
            for j in 0..<tk where !(causal && j > i) && (mask?[bi * tk + j] ?? 1) != 0 {
                var s = 0.0
                for e in 0..<d { s += qs[(bi * tq + i) * w + h * d + e] * ks[(bi * tk + j) * w + h * d + e] }
                scores[j] = s
            }
            let m = scores.max()!
            if m == -.infinity { continue }
            let ex = scores.map { exp2($0 - m) }, z = ex.reduce(0, +)
            for e in 0..<d {
                var s = 0.0
                for j in 0..<tk { s += ex[j] / z * vs[(bi * tk + j) * w + h * d + e] }
                out[(bi * tq + i) * w + h * d + e] = Float(s)
            }
        } } }
        return out
    }

    func check(b: Int, tq: Int, tk: Int, heads: Int, d: Int, causal: Bool = false, mask: [Int]? = nil, magnitude: Float = 1,
               seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let w = heads * d
        let q = Tensor.pseudoRandom([b, tq, w], seed: seed), k = Tensor.pseudoRandom([b, tk, w], seed: seed + 1), v = Tensor.pseudoRandom([b, tk, w], seed: seed + 2)
        if magnitude != 1 { for i in 0..<q.count { q.pointer[i] *= magnitude } }
        let expected = reference(q, k, v, heads: heads, causal: causal, mask: mask, scale: 1 / Float(d).squareRoot())
        let got = attention(query: q, key: k, value: v, heads: heads, causal: causal, keyMask: mask, precision: .bf16).scalars
        let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? 0
        // Values lie in [-1, 1].
        XCTAssertLessThanOrEqual(worst, 1.0 / 512 + 1e-5, "\(b)×\(tq)×\(tk), \(heads) heads of \(d): max abs diff \(worst)", file: file, line: line)
        XCTAssertFalse(got.contains { !$0.isFinite }, "non-finite output", file: file, line: line)
    }

    func testShapesBlocksAndMasks() {
        check(b: 2, tq: 130, tk: 130, heads: 2, d: 64, seed: 10)       // partial key block and row tile
        check(b: 2, tq: 100, tk: 77, heads: 3, d: 64, seed: 40)        // cross-attention, odd key count
        check(b: 1, tq: 13, tk: 65, heads: 1, d: 512, seed: 90)        // the VAE's single head
        check(b: 1, tq: 40, tk: 90, heads: 1, d: 48, seed: 80)         // 64-wide value tile plus a 16-wide one
        check(b: 1, tq: 30, tk: 200, heads: 2, d: 64, magnitude: 8, seed: 150)  // running-max rescaling
        var mask = [Int](repeating: 1, count: 2 * 77)
        for j in 9..<77 { mask[j] = 0 }
        for j in 0..<77 where j % 5 == 3 { mask[77 + j] = 0 }
        check(b: 2, tq: 77, tk: 77, heads: 2, d: 64, causal: true, mask: mask, seed: 100)
        check(b: 1, tq: 140, tk: 70, heads: 1, d: 32, causal: true, seed: 130)
    }

    func testHeadSizesTheKernelCannotTakeUseTheFp32Path() {
        // d = 8 is not a multiple of 16: the bf16 request falls back to the fp32 kernel (same result as fp32).
        let q = Tensor.pseudoRandom([1, 20, 16], seed: 1), k = Tensor.pseudoRandom([1, 30, 16], seed: 2), v = Tensor.pseudoRandom([1, 30, 16], seed: 3)
        XCTAssertEqual(attention(query: q, key: k, value: v, heads: 2, precision: .bf16).scalars,
                       attention(query: q, key: k, value: v, heads: 2).scalars)
    }
}
