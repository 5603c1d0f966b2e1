import CBLAS
import CKernels
import Foundation

// MARK: - Matrix products (all through `sgemm`, GEMM.swift)

/// y = x · Wᵀ + b over the last axis: x [..., in], weight [out, in] (torch's Linear layout).
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    let inF = x.shape.last!, outF = weight.shape[0]
    precondition(weight.shape == [outF, inF], "linear: weight \(weight.shape) for input \(x.shape)")
    let rows = x.count / max(inF, 1)
    let y = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
    var beta: Float = 0
    if let bias {
        precondition(bias.count == outF, "linear: bias \(bias.shape) for \(outF) outputs")
        for r in 0..<rows { (y.pointer + r * outF).update(from: bias.pointer, count: outF) }
        beta = 1
    }
    sgemm(transposeB: true, m: rows, n: outF, k: inF, a: x.pointer, lda: inF, b: weight.pointer, ldb: inF,
          beta: beta, c: y.pointer, ldc: outF)
    return y
}

/// C = A · B (optionally transposed) for 2-D tensors.
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    precondition(a.rank == 2 && b.rank == 2, "matmul: needs 2-D tensors, got \(a.shape) and \(b.shape)")
    let m = transposeA ? a.shape[1] : a.shape[0]
    let k = transposeA ? a.shape[0] : a.shape[1]
    let n = transposeB ? b.shape[0] : b.shape[1]
    precondition((transposeB ? b.shape[1] : b.shape[0]) == k, "matmul: \(a.shape) × \(b.shape)")
    let c = Tensor(uninitialized: [m, n])
    sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a.pointer, lda: a.shape[1],
          b: b.pointer, ldb: b.shape[1], c: c.pointer, ldc: n)
    return c
}

// MARK: - Element-wise

@inline(__always)
private func map(_ x: Tensor, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
    let y = Tensor(uninitialized: x.shape)
    let src = x.pointer, dst = y.pointer
    parallelChunks(x.count) { r in kernel(src + r.lowerBound, dst + r.lowerBound, r.count) }
    return y
}

public func gelu(_ x: Tensor) -> Tensor { map(x) { uc_gelu_erf($0, $1, $2) } }
public func geluTanh(_ x: Tensor) -> Tensor { map(x) { uc_gelu_tanh($0, $1, $2) } }
public func quickGelu(_ x: Tensor) -> Tensor { map(x) { uc_quick_gelu($0, $1, $2) } }
public func silu(_ x: Tensor) -> Tensor { map(x) { uc_silu($0, $1, $2) } }

/// diffusers' GEGLU on the projection's output: h [..., 2·inner] → h[..., :inner] · gelu(h[..., inner:]),
/// in one pass (no sliced copies: at 512² each would be a fresh 42 MB buffer).
public func geglu(_ h: Tensor) -> Tensor {
    let inner = h.shape.last! / 2
    precondition(h.shape.last! == 2 * inner, "geglu: last axis \(h.shape) is odd")
    let rows = h.count / max(2 * inner, 1)
    let y = Tensor(uninitialized: Array(h.shape.dropLast()) + [inner])
    let src = h.pointer, dst = y.pointer
    parallelChunks(rows, minimumPerChunk: max(1, (1 << 15) / max(inner, 1))) { r in
        uc_geglu(src + r.lowerBound * 2 * inner, dst + r.lowerBound * inner, r.count, inner)
    }
    return y
}

public func scale(_ x: Tensor, _ s: Float) -> Tensor {
    map(x) { src, dst, n in for i in 0..<n { dst[i] = src[i] * s } }
}

/// a + b where b has a's shape, or b's shape is a suffix of a's (broadcast over leading axes).
public func add(_ a: Tensor, _ b: Tensor) -> Tensor { broadcast(a, b, "add") { uc_add($0, $1, $2, $3) } }
/// a * b with the same broadcasting as `add`.
public func mul(_ a: Tensor, _ b: Tensor) -> Tensor { broadcast(a, b, "mul") { uc_mul($0, $1, $2, $3) } }

private func broadcast(_ a: Tensor, _ b: Tensor, _ name: String,
                       _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
    precondition(Array(a.shape.suffix(b.rank)) == b.shape, "\(name): cannot broadcast \(b.shape) to \(a.shape)")
    let y = Tensor(uninitialized: a.shape)
    let inner = b.count, pa = a.pointer, pb = b.pointer, py = y.pointer
    if inner == a.count {
        parallelChunks(a.count) { r in kernel(pa + r.lowerBound, pb + r.lowerBound, py + r.lowerBound, r.count) }
    } else {
        let outer = a.count / max(inner, 1)
        parallelChunks(outer, minimumPerChunk: max(1, (1 << 15) / max(inner, 1))) { r in
            for o in r { kernel(pa + o * inner, pb, py + o * inner, inner) }
        }
    }
    return y
}

// MARK: - Normalisation and softmax

/// LayerNorm over the last axis.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
    let cols = x.shape.last!, rows = x.count / max(cols, 1)
    let y = Tensor(uninitialized: x.shape)
    let px = x.pointer, py = y.pointer, pw = weight?.pointer, pb = bias?.pointer
    parallelChunks(rows, minimumPerChunk: max(1, 8192 / max(cols, 1))) { r in
        uc_layer_norm(px + r.lowerBound * cols, py + r.lowerBound * cols, r.count, cols, pw, pb, eps)
    }
    return y
}

/// GroupNorm on [B, C, ...], optionally followed by SiLU in the same pass.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, fusedSiLU: Bool = false) -> Tensor {
    let b = x.shape[0], c = x.shape[1], spatial = x.count / max(b * c, 1)
    precondition(c % groups == 0, "groupNorm: \(c) channels not divisible into \(groups) groups")
    let y = Tensor(uninitialized: x.shape)
    let px = x.pointer, py = y.pointer, pw = weight?.pointer, pb = bias?.pointer
    let per = c / groups
    // Parallel over (batch, group) pairs; each is independent.
    parallelChunks(b * groups, minimumPerChunk: 1) { r in
        for bg in r {
            let bi = bg / groups, g = bg % groups
            let base = (bi * c + g * per) * spatial
            uc_group_norm(px + base, py + base, per, spatial, 1,
                          pw.map { $0 + g * per }, pb.map { $0 + g * per }, eps, fusedSiLU ? 1 : 0)
        }
    }
    return y
}

/// Softmax over the last axis.
public func softmax(_ x: Tensor) -> Tensor {
    let y = x.copy()
    let cols = x.shape.last!, rows = x.count / max(cols, 1), p = y.pointer
    parallelChunks(rows, minimumPerChunk: max(1, 8192 / max(cols, 1))) { r in
        uc_softmax_rows(p + r.lowerBound * cols, r.count, cols)
    }
    return y
}

// MARK: - Convolution and resampling

/// 2-D convolution: x [B, C, H, W], weight [O, C, kh, kw] → [B, O, oh, ow]. fp32 takes `ConvPath.best`: the
/// implicit-im2col kernel for AVX-512 or AVX2 + FMA, else im2col + sgemm, whose im2col buffer covers a band of
/// output rows at a time (≈32 MB at most), so large images neither allocate gigabytes nor fall out of cache.
/// With `packed` (the same weight as a `.rows` BF16Weight) the products run in bf16 with fp32 accumulation.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                   packed: BF16Weight? = nil) -> Tensor {
    precondition(weight.shape[1] == x.shape[1], "conv2d: weight \(weight.shape) for input \(x.shape)")
    return conv2d(x, weight: weight.pointer, packed: packed, outputs: weight.shape[0], kernel: (weight.shape[2], weight.shape[3]),
                  bias: bias, stride: stride, padding: padding, bandFloats: 8 << 20, implicitIm2col: implicitConvAvailable,
                  path: .best)
}

/// The routes an fp32 convolution can take. `conv2d` uses `best`; tests and benchmarks name one per call
/// (a per-call choice, so no process-wide setting decides which kernel runs).
public enum ConvPath: String, CaseIterable, Sendable {
    /// im2col into bands of output rows, then OpenBLAS sgemm: any CPU.
    case im2colSgemm = "im2col + sgemm"
    /// The implicit-im2col kernel in AVX2 + FMA (conv_f32.c, 4×24 YMM tile).
    case implicitAVX2 = "implicit im2col AVX2+FMA"
    /// The implicit-im2col kernel in AVX-512 F (conv_f32.c, 6×64 ZMM tile).
    case implicitAVX512 = "implicit im2col AVX-512"

    /// The C kernel's instruction set, nil for im2col + sgemm.
    var isa: uc_conv_isa? {
        switch self {
        case .im2colSgemm: nil
        case .implicitAVX2: UC_CONV_ISA_AVX2
        case .implicitAVX512: UC_CONV_ISA_AVX512
        }
    }

    /// Whether this CPU runs the path (and its kernel is built in: UC_PORTABLE_ONLY leaves both kernels out).
    public var isSupported: Bool { isa.map { uc_conv_f32_supported($0) != 0 } ?? true }

    /// The kernel's micro-tile (output rows, pixels), so work splits keep whole tiles.
    var tile: (rows: Int, pixels: Int) { self == .implicitAVX2 ? (4, 24) : (6, 64) }

    /// The fastest supported path: AVX-512, then AVX2 + FMA, then im2col + sgemm (CPUID, read once).
    public static let best: ConvPath = [.implicitAVX512, .implicitAVX2].first { $0.isSupported } ?? .im2colSgemm
}

/// fp32 `conv2d` through the given path (which must be supported on this CPU).
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                   path: ConvPath) -> Tensor {
    precondition(path.isSupported, "conv2d: the \(path.rawValue) path does not run on this CPU")
    precondition(weight.shape[1] == x.shape[1], "conv2d: weight \(weight.shape) for input \(x.shape)")
    return conv2d(x, weight: weight.pointer, packed: nil, outputs: weight.shape[0], kernel: (weight.shape[2], weight.shape[3]),
                  bias: bias, stride: stride, padding: padding, bandFloats: 8 << 20, implicitIm2col: false, path: path)
}

/// `conv2d` through explicit im2col bands of the given size and sgemm (or the bf16 kernel): the path CPUs
/// without AVX-512 take for fp32, and the bf16 path; tests use small bands.
func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int), padding: (Int, Int), bandFloats: Int,
            packed: BF16Weight? = nil) -> Tensor {
    precondition(weight.shape[1] == x.shape[1], "conv2d: weight \(weight.shape) for input \(x.shape)")
    return conv2d(x, weight: weight.pointer, packed: packed, outputs: weight.shape[0], kernel: (weight.shape[2], weight.shape[3]),
                  bias: bias, stride: stride, padding: padding, bandFloats: bandFloats, implicitIm2col: false, path: .im2colSgemm)
}

/// Whether bf16 convolutions gather their im2col pairs in place (uc_bf16_conv_rows, an AVX-512 kernel).
let implicitConvAvailable: Bool = uc_has_avx512f() != 0

/// conv2d with only the bf16-packed weight (no fp32 copy kept): [O, C, kh, kw] given by `outputs` and `kernel`.
public func conv2d(_ x: Tensor, packed: BF16Weight, outputs: Int, kernel: (Int, Int), bias: Tensor? = nil,
                   stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)) -> Tensor {
    conv2d(x, weight: nil, packed: packed, outputs: outputs, kernel: kernel, bias: bias, stride: stride, padding: padding,
           bandFloats: 8 << 20, implicitIm2col: true, path: .im2colSgemm)
}

/// The convolution itself: fp32 `weight` through `path`, or `packed` through the bf16 kernel (one of them is given;
/// `implicitIm2col` says whether bf16 gathers in place, `path` is for fp32 only).
private func conv2d(_ x: Tensor, weight: UnsafeMutablePointer<Float>?, packed: BF16Weight?, outputs o: Int, kernel: (Int, Int),
                    bias: Tensor?, stride: (Int, Int), padding: (Int, Int), bandFloats: Int, implicitIm2col: Bool,
                    path: ConvPath) -> Tensor {
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (kh, kw) = kernel
    if let packed {
        precondition(packed.outputs == o && packed.k == c * kh * kw, "conv2d: bf16 weight does not match [\(o), \(c), \(kh), \(kw)]")
    }
    precondition(packed != nil || weight != nil, "conv2d: no weight")
    let oh = (h + 2 * padding.0 - kh) / stride.0 + 1
    let ow = (w + 2 * padding.1 - kw) / stride.1 + 1
    if let packed, packed.layout == .winograd3x3 {
        precondition(kh == 3 && kw == 3 && stride == (1, 1) && padding == (1, 1),
                     "conv2d: a Winograd-packed weight needs a 3×3 kernel, stride 1 and padding 1")
        return winogradConv3x3(x, packed: packed, bias: bias)
    }
    let y = Tensor(uninitialized: [b, o, oh, ow])
    let k = c * kh * kw, n = oh * ow
    let fp32ISA = packed == nil ? path.isa : nil
    if packed != nil ? implicitIm2col : fp32ISA != nil {
        let pb = bias?.pointer
        let source = UnsafeMutablePointer<uc_conv_source>.allocate(capacity: 1)
        defer { source.deallocate() }
        for bi in 0..<b {
            source.pointee = uc_conv_source(x: x.pointer + bi * c * h * w, c: c, h: h, w: w, kh: kh, kw: kw, sh: stride.0,
                                            sw: stride.1, ph: padding.0, pw: padding.1, oh: oh, ow: ow)
            let dst = y.pointer + bi * o * n
            if let packed {
                let pw = packed.pointer, rowStride = (k + 1) / 2 * 2
                splitConvProduct(m: o, n: n, k: k) { rows, px in
                    uc_bf16_conv_rows(rows.count, pw + rows.lowerBound * rowStride, source, px.lowerBound, px.upperBound,
                                      dst + rows.lowerBound * n, n, pb.map { $0 + rows.lowerBound })
                }
            } else if let weight, let isa = fp32ISA {
                splitConvProduct(m: o, n: n, k: k, tile: path.tile) { rows, px in
                    uc_conv_f32_isa(isa, rows.count, weight + rows.lowerBound * k, k, source, px.lowerBound, px.upperBound,
                                    dst + rows.lowerBound * n, n, pb.map { $0 + rows.lowerBound })
                }
            }
        }
        return y
    }
    let direct = kh == 1 && kw == 1 && stride == (1, 1) && padding == (0, 0)
    let bandRows = direct ? oh : max(1, min(oh, bandFloats / max(k * ow, 1)))
    let col = direct ? nil : Tensor(uninitialized: [k, bandRows * ow])
    let workers = ComputeThreads.workers
    for bi in 0..<b {
        let src = x.pointer + bi * c * h * w
        let dst = y.pointer + bi * o * n
        var beta: Float = 0
        if let bias, packed == nil {
            for oc in 0..<o { (dst + oc * n).initialize(repeating: bias.pointer[oc], count: n) }
            beta = 1
        }
        var r0 = 0
        while r0 < oh {
            let r1 = min(oh, r0 + bandRows), cols = (r1 - r0) * ow
            var colPointer = UnsafePointer(src)
            if let col {
                let cp = col.pointer
                // im2col rows are independent per input channel: split them across cores.
                parallelChunks(c, minimumPerChunk: max(1, c / workers)) { r in
                    uc_im2col(src + r.lowerBound * h * w, cp + r.lowerBound * kh * kw * cols, r.count, h, w, kh, kw,
                              stride.0, stride.1, padding.0, padding.1, r0, r1, ow)
                }
                colPointer = UnsafePointer(cp)
            }
            if let packed {
                // The bf16 kernel adds the bias itself when it first writes each output.
                bf16RowsProduct(packed, b: colPointer, ldb: cols, n: cols, c: dst + r0 * ow, ldc: n,
                                bias: bias.map { UnsafePointer($0.pointer) }, accumulate: false)
            } else {
                sgemm(m: o, n: cols, k: k, a: weight!, lda: k, b: colPointer, ldb: cols, beta: beta, c: dst + r0 * ow, ldc: n)
            }
            r0 = r1
        }
    }
    return y
}

/// 3×3 convolution (stride 1, padding 1) by Winograd F(2×2, 3×3) with bf16 products (uc_bf16_winograd_conv):
/// the 2×2 output tiles of the whole batch are split across cores in 64-tile panels, or the output
/// channels in 6-row micro-tiles when there are few tiles (deep UNet levels).
private func winogradConv3x3(_ x: Tensor, packed: BF16Weight, bias: Tensor?) -> Tensor {
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let o = packed.outputs
    precondition(b * max(c, o) * h * w < Int(Int32.max), "conv2d: \(x.shape) is too large for the Winograd kernel's 32-bit offsets")
    let y = Tensor(uninitialized: [b, o, h, w])
    let tiles = b * ((h + 1) / 2) * ((w + 1) / 2)
    let u = packed.pointer, px = x.pointer, py = y.pointer, pb = bias?.pointer
    let workers = o * c * tiles * 16 < (1 << 21) ? 1 : ComputeThreads.workers
    let chunks = 2 * workers
    if workers == 1 {
        uc_bf16_winograd_conv(o, c, u, px, b, h, w, 0, o, 0, tiles, py, pb)
    } else if tiles >= chunks * 64 || o < chunks * 12 {
        let per = ((tiles + chunks - 1) / chunks + 63) / 64 * 64
        DispatchQueue.concurrentPerform(iterations: (tiles + per - 1) / per) { i in
            uc_bf16_winograd_conv(o, c, u, px, b, h, w, 0, o, i * per, min(tiles, (i + 1) * per), py, pb)
        }
    } else {
        let per = ((o + chunks - 1) / chunks + 5) / 6 * 6
        DispatchQueue.concurrentPerform(iterations: (o + per - 1) / per) { i in
            uc_bf16_winograd_conv(o, c, u, px, b, h, w, i * per, min(o, (i + 1) * per), 0, tiles, py, pb)
        }
    }
    return y
}

/// Splits an implicit-im2col product C[m, n] (k deep) over all cores: pixel ranges when the image is wide,
/// output channels when it is small (deep UNet levels); two chunks per core, handed out dynamically. Parts hold
/// whole micro-tiles of `tile` (rows × pixels; 6 × 64 for the AVX-512 fp32 and the bf16 kernels).
private func splitConvProduct(m: Int, n: Int, k: Int, tile: (rows: Int, pixels: Int) = (6, 64),
                              _ body: @escaping (_ rows: Range<Int>, _ pixels: Range<Int>) -> Void) {
    let workers = m * n * k < (1 << 21) ? 1 : ComputeThreads.workers
    let chunks = 2 * workers
    if workers == 1 {
        body(0..<m, 0..<n)
    } else if n >= chunks * 2 * tile.pixels || m < chunks * 2 * tile.rows {
        let per = ((n + chunks - 1) / chunks + tile.pixels - 1) / tile.pixels * tile.pixels
        DispatchQueue.concurrentPerform(iterations: (n + per - 1) / per) { i in body(0..<m, (i * per)..<min(n, (i + 1) * per)) }
    } else {
        let per = ((m + chunks - 1) / chunks + tile.rows - 1) / tile.rows * tile.rows
        DispatchQueue.concurrentPerform(iterations: (m + per - 1) / per) { i in body((i * per)..<min(m, (i + 1) * per), 0..<n) }
    }
}

/// Nearest-neighbour 2× upsampling of [B, C, H, W].
public func upsampleNearest2x(_ x: Tensor) -> Tensor {
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let y = Tensor(uninitialized: [b, c, 2 * h, 2 * w])
    let px = x.pointer, py = y.pointer
    parallelChunks(b * c, minimumPerChunk: 4) { r in
        for plane in r {
            let src = px + plane * h * w, dst = py + plane * 4 * h * w
            for i in 0..<h {
                let row = dst + 2 * i * 2 * w
                for j in 0..<w { let v = src[i * w + j]; row[2 * j] = v; row[2 * j + 1] = v }
                (row + 2 * w).update(from: row, count: 2 * w)
            }
        }
    }
    return y
}

// MARK: - Shape operations

/// Token `positions[i]` of batch item i of x [B, T, D], as [B, D]: the pooled token of each item.
public func gatherRows(_ x: Tensor, positions: [Int]) -> Tensor {
    precondition(x.rank == 3 && positions.count == x.shape[0] && positions.allSatisfy { (0..<x.shape[1]).contains($0) },
                 "gatherRows: positions \(positions) for \(x.shape)")
    let t = x.shape[1], d = x.shape[2]
    let y = Tensor(uninitialized: [positions.count, d])
    for (i, p) in positions.enumerated() { (y.pointer + i * d).update(from: x.pointer + (i * t + p) * d, count: d) }
    return y
}

/// Concatenates along `axis`; all other dimensions must agree.
public func concat(_ parts: [Tensor], axis: Int) -> Tensor {
    let rank = parts[0].rank
    let ax = axis < 0 ? rank + axis : axis
    var shape = parts[0].shape
    shape[ax] = parts.map { $0.shape[ax] }.reduce(0, +)
    for p in parts {
        precondition(p.rank == rank && zip(p.shape, shape).enumerated().allSatisfy { $0.offset == ax || $0.element.0 == $0.element.1 },
                     "concat: \(p.shape) does not fit \(shape) on axis \(ax)")
    }
    let outer = shape[..<ax].reduce(1, *)
    let inner = shape[(ax + 1)...].reduce(1, *)
    let y = Tensor(uninitialized: shape)
    var offset = 0
    let rowOut = shape[ax] * inner
    for p in parts {
        let chunk = p.shape[ax] * inner
        for o in 0..<outer { (y.pointer + o * rowOut + offset).update(from: p.pointer + o * chunk, count: chunk) }
        offset += chunk
    }
    return y
}

/// Slice `range` of axis `axis` (a copy).
public func slice(_ x: Tensor, axis: Int, _ range: Range<Int>) -> Tensor {
    let ax = axis < 0 ? x.rank + axis : axis
    var shape = x.shape
    shape[ax] = range.count
    let outer = x.shape[..<ax].reduce(1, *)
    let inner = x.shape[(ax + 1)...].reduce(1, *)
    let y = Tensor(uninitialized: shape)
    for o in 0..<outer {
        (y.pointer + o * range.count * inner).update(from: x.pointer + (o * x.shape[ax] + range.lowerBound) * inner,
                                                    count: range.count * inner)
    }
    return y
}

/// General axis permutation (a copy), e.g. permute(x, [0, 2, 1, 3]).
public func permute(_ x: Tensor, _ order: [Int]) -> Tensor {
    precondition(order.sorted() == Array(0..<x.rank), "permute: bad order \(order) for rank \(x.rank)")
    let shape = order.map { x.shape[$0] }
    var strides = [Int](repeating: 1, count: x.rank)
    for i in stride(from: x.rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * x.shape[i + 1] }
    let srcStrides = order.map { strides[$0] }
    let y = Tensor(uninitialized: shape)
    let px = x.pointer, py = y.pointer
    let last = shape.last ?? 1, lastStride = srcStrides.last ?? 1
    let rows = y.count / max(last, 1)
    var index = [Int](repeating: 0, count: max(x.rank - 1, 0))
    for r in 0..<rows {
        var src = 0
        for (d, i) in index.enumerated() { src += i * srcStrides[d] }
        let dst = py + r * last
        for j in 0..<last { dst[j] = px[src + j * lastStride] }
        // Odometer increment over all but the last axis.
        var d = index.count - 1
        while d >= 0 { index[d] += 1; if index[d] < shape[d] { break }; index[d] = 0; d -= 1 }
    }
    return y
}

/// Nearest-neighbour resize of [B, C, H, W] to (height, width), with torch's `nearest` index rule.
public func upsampleNearest(_ x: Tensor, height: Int, width: Int) -> Tensor {
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    if height == 2 * h && width == 2 * w { return upsampleNearest2x(x) }
    let y = Tensor(uninitialized: [b, c, height, width])
    let rows = (0..<height).map { min(h - 1, Int(Float(Double($0) * Double(h) / Double(height)))) }
    let cols = (0..<width).map { min(w - 1, Int(Float(Double($0) * Double(w) / Double(width)))) }
    let px = x.pointer, py = y.pointer
    parallelChunks(b * c, minimumPerChunk: 4) { r in
        for plane in r {
            let src = px + plane * h * w, dst = py + plane * height * width
            for i in 0..<height { for j in 0..<width { dst[i * width + j] = src[rows[i] * w + cols[j]] } }
        }
    }
    return y
}

/// Zero-pads the last two axes of [B, C, H, W] by (top, bottom, left, right).
public func pad2d(_ x: Tensor, top: Int, bottom: Int, left: Int, right: Int) -> Tensor {
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let oh = h + top + bottom, ow = w + left + right
    let y = Tensor(zeros: [b, c, oh, ow])
    for plane in 0..<(b * c) {
        for i in 0..<h { (y.pointer + plane * oh * ow + (i + top) * ow + left).update(from: x.pointer + plane * h * w + i * w, count: w) }
    }
    return y
}
