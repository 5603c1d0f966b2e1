// Kernel micro-benchmarks (`unclip-bench --kernels`): GFLOP/s of the main operations on Stable
// Diffusion–sized shapes, as a share of the sgemm peak measured in the same run. Runs in-process.
import CBLAS
import Foundation
import UnCLIPTensor

/// Median wall time of `body` over `runs` runs, after one warm-up.
private func time(runs: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var t: [Double] = []
    for _ in 0..<runs {
        let s = DispatchTime.now().uptimeNanoseconds
        try body()
        t.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
    }
    return median(t)
}

func runKernelBenchmarks(quick: Bool) {
    let runs = quick ? 3 : 5
    print("unclip-bench --kernels: OpenBLAS threads \(openblas_get_num_threads()), cores \(ProcessInfo.processInfo.activeProcessorCount)")
    let n = 2048
    let pa = randomTensor([n, n]), pb = randomTensor([n, n])
    let peakT = time(runs: runs) { _ = matmul(pa, pb) }
    let peak = 2 * Double(n * n * n) / peakT / 1e9
    print(padded("sgemm 2048³", 44) + String(format: " %8.2f ms %8.1f GFLOP/s (reference peak)", peakT * 1e3, peak))

    func report(_ name: String, flops: Double, seconds: Double) {
        let g = flops / seconds / 1e9
        print(padded(name, 44) + String(format: " %8.2f ms %8.1f GFLOP/s %5.0f%% of peak", seconds * 1e3, g, 100 * g / peak))
    }
    /// The bf16 kernel on the same product, as GFLOP/s and as a multiple of the fp32 time just measured.
    func reportBF16(_ name: String, flops: Double, seconds: Double, fp32Seconds: Double) {
        let g = flops / seconds / 1e9
        print(padded(name, 44) + String(format: " %8.2f ms %8.1f GFLOP/s %5.2f× the fp32 line above", seconds * 1e3, g, fp32Seconds / seconds))
    }
    let bf16 = GemmPrecision.bf16Supported
    if !bf16 { print("(no AVX512_BF16 on this CPU: bf16 lines skipped)") }

    for (m, nn, k) in [(4096, 320, 320), (4096, 1280, 320), (4096, 320, 1280), (4096, 640, 640), (4096, 1280, 1280), (1024, 1024, 1024)] {
        let x = randomTensor([m, k]), w = randomTensor([nn, k])
        let flops = 2 * Double(m * nn * k)
        let t32 = time(runs: runs) { _ = linear(x, weight: w) }
        report("linear M=\(m) N=\(nn) K=\(k)", flops: flops, seconds: t32)
        if bf16 {
            let packed = BF16Weight(w, layout: .lanes)
            reportBF16("  bf16", flops: flops, seconds: time(runs: runs) { _ = linear(x, packed: packed) }, fp32Seconds: t32)
        }
    }
    for (c, o, size) in [(320, 320, 64), (640, 640, 32), (1280, 1280, 16)] {
        let x = randomTensor([1, c, size, size]), w = randomTensor([o, c, 3, 3]), b = randomTensor([o])
        let flops = 2 * Double(o * c * 9 * size * size)
        let t32 = time(runs: runs) { _ = conv2d(x, weight: w, bias: b, padding: (1, 1)) }
        report("conv2d 3x3 \(c)→\(o) @ \(size)x\(size)", flops: flops, seconds: t32)
        if bf16 {
            let packed = BF16Weight(w, layout: .rows)
            reportBF16("  bf16", flops: flops, seconds: time(runs: runs) { _ = conv2d(x, weight: w, bias: b, padding: (1, 1), packed: packed) },
                       fp32Seconds: t32)
            let winograd = BF16Weight(w, layout: .winograd3x3)
            reportBF16("  bf16 Winograd F(2×2, 3×3)", flops: flops, seconds: time(runs: runs) {
                _ = conv2d(x, packed: winograd, outputs: o, kernel: (3, 3), bias: b, stride: (1, 1), padding: (1, 1))
            }, fp32Seconds: t32)
        }
    }
    // The UNet's attention at 512² (SD 2.x, batch 2 for guidance): self-attention at the three resolutions and
    // cross-attention to the 77 text tokens; fused kernel against the sgemm + softmax path it replaced.
    // The machine may be shared, so each round times the sgemm peak right next to both paths and the
    // share of peak is the median over rounds of those adjacent ratios (slow load drift cancels).
    for (tq, tk, heads) in [(4096, 4096, 5), (1024, 1024, 10), (256, 256, 20), (4096, 77, 5)] {
        let b = 2, d = 64
        let q = randomTensor([b, tq, heads * d]), k = randomTensor([b, tk, heads * d]), v = randomTensor([b, tk, heads * d])
        let flops = 4 * Double(b * heads * tq * tk * d)
        let name = "attn \(b)×\(tq)×\(tk), \(heads)×\(d)"
        let reps = max(1, Int(2e9 / flops)) // ≥ 2 GFLOP per timing
        func once(_ f: () -> Void) -> Double {
            let s = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<reps { f() }
            return Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9 / Double(reps)
        }
        _ = attention(query: q, key: k, value: v, heads: heads); _ = attentionUnfused(query: q, key: k, value: v, heads: heads)
        var rows: [(peak: Double, sgemm: Double, fused: Double)] = []
        for _ in 0..<runs {
            let p = 2 * Double(n * n * n) / once { _ = matmul(pa, pb) } / 1e9
            let u = flops / once { _ = attentionUnfused(query: q, key: k, value: v, heads: heads) } / 1e9
            let f = flops / once { _ = attention(query: q, key: k, value: v, heads: heads) } / 1e9
            rows.append((p, u, f))
        }
        for (label, g, share) in [("sgemm", median(rows.map(\.sgemm)), median(rows.map { $0.sgemm / $0.peak })),
                                  ("fused", median(rows.map(\.fused)), median(rows.map { $0.fused / $0.peak }))] {
            print(padded("\(name) \(label)", 44) + String(format: " %8.1f GFLOP/s %5.0f%% of adjacent peak (median peak %.1f)",
                                                          g, 100 * share, median(rows.map(\.peak))))
        }
    }
    do {
        let x = randomTensor([2, 320, 64, 64])
        let w = randomTensor([320]), b = randomTensor([320])
        let s = time(runs: runs) { _ = groupNorm(x, groups: 32, weight: w, bias: b, eps: 1e-5, fusedSiLU: true) }
        print(padded("groupnorm+silu [2,320,64,64]", 44) + String(format: " %8.2f ms %8.1f GB/s", s * 1e3, Double(x.count * 8) / s / 1e9))
    }
}

/// Uniform random values in [-scale, scale] from a fixed xorshift stream (timing does not depend on values).
private var xorState: UInt64 = 0x9E3779B97F4A7C15
func randomTensor(_ shape: [Int], scale: Float = 1) -> Tensor {
    let t = Tensor(uninitialized: shape)
    let p = t.pointer
    for i in 0..<t.count {
        xorState ^= xorState << 13; xorState ^= xorState >> 7; xorState ^= xorState << 17
        p[i] = (Float(xorState >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
    return t
}
