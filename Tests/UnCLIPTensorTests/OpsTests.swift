import XCTest
@testable import UnCLIPTensor
import UnCLIPTestSupport

/// Each op against a direct, loop-by-loop evaluation of its mathematical definition.
final class OpsTests: XCTestCase {
    func testLinear() {
        let x = Tensor.pseudoRandom([2, 3, 5]), w = Tensor.pseudoRandom([4, 5], seed: 2), b = Tensor.pseudoRandom([4], seed: 3)
        var expected = [Float]()
        for r in 0..<6 { for o in 0..<4 {
            var s = b[flat: o]
            for i in 0..<5 { s += x[flat: r * 5 + i] * w[flat: o * 5 + i] }
            expected.append(s)
        } }
        let y = linear(x, weight: w, bias: b)
        XCTAssertEqual(y.shape, [2, 3, 4])
        assertClose(y.scalars, expected)
        assertClose(linear(x, weight: w).scalars, zip(expected, (0..<24).map { b[flat: $0 % 4] }).map { $0 - $1 })
    }

    func testMatmulTransposes() {
        let a = Tensor.pseudoRandom([3, 4]), b = Tensor.pseudoRandom([4, 2], seed: 5)
        let c = matmul(a, b)
        var expected = [Float](repeating: 0, count: 6)
        for i in 0..<3 { for j in 0..<2 { for k in 0..<4 { expected[i * 2 + j] += a[flat: i * 4 + k] * b[flat: k * 2 + j] } } }
        assertClose(c.scalars, expected)
        let bt = permute(b, [1, 0]), at = permute(a, [1, 0])
        assertClose(matmul(a, bt, transposeB: true).scalars, expected)
        assertClose(matmul(at, b, transposeA: true).scalars, expected)
    }

    func testActivations() {
        let x = Tensor.pseudoRandom([1000], seed: 7)
        let s = x.scalars.map { $0 * 4 }
        let t = Tensor(shape: [1000], data: s)
        assertClose(gelu(t).scalars, s.map { Float(0.5 * Double($0) * (1 + erf(Double($0) / 2.0.squareRoot()))) }, tol: 1e-6)
        assertClose(quickGelu(t).scalars, s.map { Float(Double($0) / (1 + exp(-1.702 * Double($0)))) }, tol: 1e-6)
        assertClose(silu(t).scalars, s.map { Float(Double($0) / (1 + exp(-Double($0)))) }, tol: 1e-6)
        assertClose(geluTanh(t).scalars, s.map { v -> Float in
            let d = Double(v); return Float(0.5 * d * (1 + tanh((2 / Double.pi).squareRoot() * (d + 0.044715 * d * d * d))))
        }, tol: 1e-6)
    }

    /// Fused GEGLU: value · gelu(gate) with value and gate the two halves of each row (inner 37: SIMD and tail).
    func testGegluMatchesItsDefinition() {
        let rows = 2000, inner = 37
        let h = Tensor.pseudoRandom([2, rows / 2, 2 * inner], seed: 11)
        let y = geglu(h)
        XCTAssertEqual(y.shape, [2, rows / 2, inner])
        var expected = [Float]()
        for r in 0..<rows { for j in 0..<inner {
            let v = Double(h[flat: r * 2 * inner + j]), g = Double(h[flat: r * 2 * inner + inner + j])
            expected.append(Float(v * 0.5 * g * (1 + erf(g / 2.0.squareRoot()))))
        } }
        assertClose(y.scalars, expected, tol: 1e-6)
    }

    /// `sgemm` splits large products into bands of rows or of columns, one OpenBLAS call each; every
    /// transpose combination, strided operands (lda/ldb/ldc wider than the block) and β = 1 against the definition.
    func testSgemmBandsMatchTheDefinition() {
        for (m, n, k) in [(203, 70, 301), (40, 261, 250)] {  // row bands, then column bands (≥ 2^21 multiply-adds)
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let (ar, ac) = ta ? (k, m) : (m, k), (br, bc) = tb ? (n, k) : (k, n)
                let lda = ac + 3, ldb = bc + 5, ldc = n + 2
                let a = Tensor.pseudoRandom([ar, lda], seed: 21), b = Tensor.pseudoRandom([br, ldb], seed: 22), c0 = Tensor.pseudoRandom([m, ldc], seed: 23)
                let c = Tensor(shape: [m, ldc], data: c0.scalars)
                sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 0.5, a: a.pointer, lda: lda,
                      b: b.pointer, ldb: ldb, beta: 1, c: c.pointer, ldc: ldc)
                var worst: Double = 0
                for i in 0..<m { for j in 0..<ldc {
                    var e = Double(c0[flat: i * ldc + j])
                    if j < n {
                        var s: Double = 0
                        for p in 0..<k {
                            let x = ta ? a[flat: p * lda + i] : a[flat: i * lda + p]
                            let y = tb ? b[flat: j * ldb + p] : b[flat: p * ldb + j]
                            s += Double(x) * Double(y)
                        }
                        e += 0.5 * s
                    }
                    worst = max(worst, abs(e - Double(c[flat: i * ldc + j])))  // columns ≥ n must be untouched
                } }
                XCTAssertLessThan(worst, 1e-4, "m \(m) n \(n) k \(k) transposes \(ta) \(tb)")
            }
        }
    }

    func testLayerNormAndSoftmax() {
        let x = Tensor.pseudoRandom([3, 7], seed: 9), w = Tensor.pseudoRandom([7], seed: 10), b = Tensor.pseudoRandom([7], seed: 11)
        var expected = [Float]()
        for r in 0..<3 {
            let row = (0..<7).map { Double(x[flat: r * 7 + $0]) }
            let mean = row.reduce(0, +) / 7
            let varc = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 7
            for c in 0..<7 { expected.append(Float((row[c] - mean) / (varc + 1e-5).squareRoot()) * w[flat: c] + b[flat: c]) }
        }
        assertClose(layerNorm(x, weight: w, bias: b, eps: 1e-5).scalars, expected)

        let sm = softmax(x)
        for r in 0..<3 {
            let row = (0..<7).map { Double(x[flat: r * 7 + $0]) }
            let z = row.map { exp($0) }.reduce(0, +)
            assertClose((0..<7).map { sm[flat: r * 7 + $0] }, row.map { Float(exp($0) / z) }, tol: 1e-6)
        }
    }

    func testGroupNormWithSiLU() {
        let x = Tensor.pseudoRandom([2, 6, 3, 2], seed: 12), w = Tensor.pseudoRandom([6], seed: 13), b = Tensor.pseudoRandom([6], seed: 14)
        let y = groupNorm(x, groups: 3, weight: w, bias: b, eps: 1e-6)
        let ys = groupNorm(x, groups: 3, weight: w, bias: b, eps: 1e-6, fusedSiLU: true)
        for bi in 0..<2 { for g in 0..<3 {
            let idx = (0..<12).map { bi * 36 + g * 12 + $0 }
            let vals = idx.map { Double(x[flat: $0]) }
            let mean = vals.reduce(0, +) / 12
            let varc = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 12
            for (k, i) in idx.enumerated() {
                let ch = g * 2 + k / 6
                let e = Float((vals[k] - mean) / (varc + 1e-6).squareRoot()) * w[flat: ch] + b[flat: ch]
                XCTAssertEqual(y[flat: i], e, accuracy: 1e-5)
                XCTAssertEqual(ys[flat: i], e / (1 + exp(-e)), accuracy: 1e-5)
            }
        } }
    }

    func naiveConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int, pad: Int) -> [Float] {
        let (bn, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, k) = (w.shape[0], w.shape[2])
        let oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1
        var out = [Float]()
        for n in 0..<bn { for oc in 0..<o { for i in 0..<oh { for j in 0..<ow {
            var s = Double(b?[flat: oc] ?? 0)  // Double, so the reference carries no rounding of its own
            for ic in 0..<c { for ki in 0..<k { for kj in 0..<k {
                let y = i * stride - pad + ki, xx = j * stride - pad + kj
                if y >= 0 && y < h && xx >= 0 && xx < wd {
                    s += Double(x[flat: ((n * c + ic) * h + y) * wd + xx]) * Double(w[flat: ((oc * c + ic) * k + ki) * k + kj])
                }
            } } }
            out.append(Float(s))
        } } } }
        return out
    }

    func testConv2dVariants() {
        let x = Tensor.pseudoRandom([2, 3, 9, 7], seed: 20)
        for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (1, 1, 0), (4, 4, 0), (3, 2, 0)] {
            let w = Tensor.pseudoRandom([5, 3, k, k], seed: UInt64(30 + k)), b = Tensor.pseudoRandom([5], seed: 40)
            let y = conv2d(x, weight: w, bias: b, stride: (stride, stride), padding: (pad, pad))
            assertClose(y.scalars, naiveConv(x, w, b, stride: stride, pad: pad), tol: 1e-5)
        }
    }

    /// The implicit-im2col kernel on shapes that cross its blocks: 13 outputs (two 6-row strips and a partial
    /// one), 30×37 pixels (several 512-column blocks, 64-column panels that wrap output rows), k = 20·9 = 180
    /// (two 128-deep K blocks); stride 2, 1×1 and the im2col + sgemm fallback on the same inputs.
    func testConv2dAcrossKernelBlocks() {
        let x = Tensor.pseudoRandom([2, 20, 30, 37], seed: 24), b = Tensor.pseudoRandom([13], seed: 26)
        for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 1, 0)] {
            let w = Tensor.pseudoRandom([13, 20, k, k], seed: UInt64(25 + k))
            let expected = naiveConv(x, w, b, stride: stride, pad: pad)
            assertClose(conv2d(x, weight: w, bias: b, stride: (stride, stride), padding: (pad, pad)).scalars, expected, tol: 2e-5)
            assertClose(conv2d(x, weight: w, bias: b, stride: (stride, stride), padding: (pad, pad), bandFloats: 1 << 20).scalars,
                        expected, tol: 2e-5)
        }
        // Many outputs and few pixels: the work is split by output channels instead of pixels. Sums of 576 products:
        // on CPUs without AVX-512 (im2col + OpenBLAS sgemm, another summation order) the fp32 result is 3.1e-5 from
        // the Double reference (measured with fuzz/sanitize-kernels.sh --portable), 1.5× the tolerance above.
        let xs = Tensor.pseudoRandom([1, 64, 5, 5], seed: 27), ws = Tensor.pseudoRandom([200, 64, 3, 3], seed: 28), bs = Tensor.pseudoRandom([200], seed: 29)
        assertClose(conv2d(xs, weight: ws, bias: bs, stride: (1, 1), padding: (1, 1)).scalars,
                    naiveConv(xs, ws, bs, stride: 1, pad: 1), tol: 4e-5)
    }

    func testConv2dInBandsOfOutputRows() {
        let x = Tensor.pseudoRandom([2, 3, 11, 7], seed: 21), w = Tensor.pseudoRandom([4, 3, 3, 3], seed: 22), b = Tensor.pseudoRandom([4], seed: 23)
        let expected = naiveConv(x, w, b, stride: 1, pad: 1)
        for band in [27 * 7, 27 * 7 * 3, 27 * 7 * 4] {   // 1, 3 and 4 output rows per band (11 rows: uneven tail)
            assertClose(conv2d(x, weight: w, bias: b, stride: (1, 1), padding: (1, 1), bandFloats: band).scalars, expected, tol: 1e-5)
        }
        let e2 = naiveConv(x, w, nil, stride: 2, pad: 0)
        assertClose(conv2d(x, weight: w, bias: nil, stride: (2, 2), padding: (0, 0), bandFloats: 27 * 3).scalars, e2, tol: 1e-5)
    }

    func testUpsampleConcatSlicePermute() {
        let x = Tensor.pseudoRandom([1, 2, 2, 3], seed: 50)
        let u = upsampleNearest2x(x)
        XCTAssertEqual(u.shape, [1, 2, 4, 6])
        for c in 0..<2 { for i in 0..<4 { for j in 0..<6 {
            XCTAssertEqual(u[flat: (c * 4 + i) * 6 + j], x[flat: (c * 2 + i / 2) * 3 + j / 2])
        } } }
        let a = Tensor.pseudoRandom([2, 3, 4], seed: 51), b = Tensor.pseudoRandom([2, 1, 4], seed: 52)
        let c = concat([a, b], axis: 1)
        XCTAssertEqual(c.shape, [2, 4, 4])
        XCTAssertEqual(slice(c, axis: 1, 0..<3).scalars, a.scalars)
        XCTAssertEqual(slice(c, axis: 1, 3..<4).scalars, b.scalars)
        let p = permute(a, [2, 0, 1])
        XCTAssertEqual(p.shape, [4, 2, 3])
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { XCTAssertEqual(p[flat: (k * 2 + i) * 3 + j], a[flat: (i * 3 + j) * 4 + k]) } } }
        XCTAssertEqual(add(a, Tensor.pseudoRandom([4], seed: 53)).shape, [2, 3, 4])
    }

    func naiveAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, causal: Bool, mask: [Int]?) -> [Float] {
        let (b, tq, w) = (q.shape[0], q.shape[1], q.shape[2]), tk = k.shape[1], d = w / heads
        var out = [Float](repeating: 0, count: b * tq * w)
        for bi in 0..<b { for h in 0..<heads { for i in 0..<tq {
            var scores = [Double](repeating: -Double.infinity, count: tk)
            for j in 0..<tk where !(causal && j > i) && (mask?[bi * tk + j] ?? 1) != 0 {
                var s = 0.0
                for e in 0..<d { s += Double(q[flat: (bi * tq + i) * w + h * d + e]) * Double(k[flat: (bi * tk + j) * w + h * d + e]) }
                scores[j] = s / Double(d).squareRoot()
            }
            let m = scores.max()!
            let ex = scores.map { exp($0 - m) }, z = ex.reduce(0, +)
            for e in 0..<d {
                var s = 0.0
                for j in 0..<tk { s += ex[j] / z * Double(v[flat: (bi * tk + j) * w + h * d + e]) }
                out[(bi * tq + i) * w + h * d + e] = Float(s)
            }
        } } }
        return out
    }

    func testAttentionMasksAndBlocks() {
        let q = Tensor.pseudoRandom([2, 6, 8], seed: 60), k = Tensor.pseudoRandom([2, 6, 8], seed: 61), v = Tensor.pseudoRandom([2, 6, 8], seed: 62)
        let mask = [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0]
        assertClose(attention(query: q, key: k, value: v, heads: 2).scalars, naiveAttention(q, k, v, heads: 2, causal: false, mask: nil))
        assertClose(attention(query: q, key: k, value: v, heads: 4, causal: true).scalars, naiveAttention(q, k, v, heads: 4, causal: true, mask: nil))
        assertClose(attention(query: q, key: k, value: v, heads: 2, causal: true, keyMask: mask).scalars,
                    naiveAttention(q, k, v, heads: 2, causal: true, mask: mask))
        // Cross-attention with more queries than keys, large enough to take the blocked, serial path.
        let q2 = Tensor.pseudoRandom([1, 300, 16], seed: 63), k2 = Tensor.pseudoRandom([1, 240, 16], seed: 64), v2 = Tensor.pseudoRandom([1, 240, 16], seed: 65)
        assertClose(attention(query: q2, key: k2, value: v2, heads: 2).scalars, naiveAttention(q2, k2, v2, heads: 2, causal: false, mask: nil))
    }
}
