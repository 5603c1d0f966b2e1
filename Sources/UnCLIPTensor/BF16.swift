import CKernels
import Foundation

/// Precision of the weight matrix products in Linear and Conv2d layers.
public enum GemmPrecision: String, CaseIterable, Codable, Sendable {
    /// fp32 weights and activations through OpenBLAS sgemm (the default, parity with diffusers in fp32).
    case fp32
    /// Weights rounded to bf16 once, activations rounded while packed, fp32 accumulation (AVX512_BF16).
    case bf16
}

extension GemmPrecision {
    /// Whether this CPU can run the bf16 kernels (AVX512_BF16 with AVX-512 F/BW/VL/DQ), read once by CPUID.
    public static let bf16Supported: Bool = uc_has_bf16() != 0

    /// This precision as this CPU can run it: bf16 on a CPU without AVX512_BF16 runs fp32. Whoever chose the
    /// precision (an engine's load options) tells the user; the layers only follow it.
    public var runnable: GemmPrecision { self == .bf16 && !Self.bf16Supported ? .fp32 : self }
}

/// A weight matrix rounded to bf16 (round-to-nearest-even) once and laid out for the bf16 kernels.
public final class BF16Weight: @unchecked Sendable {
    /// Which side of the product the weight sits on (see gemm_bf16.h).
    public enum Layout: Sendable {
        /// W[n, k] as the right operand of x · Wᵀ (Linear).
        case lanes
        /// W[m, k] as the left operand of W · columns (Conv2d over im2col).
        case rows
        /// A 3×3 convolution weight [m, c, 3, 3] as its 16 Winograd F(2×2, 3×3) transforms, each [m, c] in the
        /// `rows` layout (for stride 1, padding 1: 16 products per 2×2 outputs and channel instead of 36).
        case winograd3x3
    }

    public let layout: Layout
    /// Output features (Linear) or output channels (Conv2d).
    public let outputs: Int
    /// Reduction length: input features, or in-channels × kernel height × kernel width.
    public let k: Int
    let pointer: UnsafeMutablePointer<UInt16>

    /// Packs `weight` ([outputs, ...], flattened to [outputs, k]); needs `GemmPrecision.bf16Supported`.
    public init(_ weight: Tensor, layout: Layout) {
        precondition(GemmPrecision.bf16Supported, "BF16Weight: this CPU has no AVX512_BF16")
        self.layout = layout
        outputs = weight.shape[0]
        k = weight.count / max(outputs, 1)
        precondition(layout != .winograd3x3 || (weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3),
                     "BF16Weight: the Winograd layout is for 3×3 convolution weights, not \(weight.shape)")
        let size: Int
        switch layout {
        case .lanes: size = uc_bf16_lanes_size(outputs, k)
        case .rows: size = uc_bf16_rows_size(outputs, k)
        case .winograd3x3: size = uc_bf16_winograd_size(outputs, k / 9)
        }
        var raw: UnsafeMutableRawPointer?
        posix_memalign(&raw, 64, max(size, 1) * MemoryLayout<UInt16>.stride)
        pointer = raw!.bindMemory(to: UInt16.self, capacity: max(size, 1))
        switch layout {
        case .lanes: uc_bf16_pack_lanes(weight.pointer, outputs, k, pointer)
        case .rows: uc_bf16_pack_rows(weight.pointer, outputs, k, pointer)
        case .winograd3x3: uc_bf16_pack_winograd(weight.pointer, outputs, k / 9, pointer)
        }
    }

    deinit { free(pointer) }
}

/// Products below this many multiply-adds run on the caller's thread (dispatch costs more than it saves).
private let parallelThreshold = 1 << 20
/// Rows per micro-tile and columns per panel of the C kernel (splits are kept on these boundaries).
private let tileRows = 6, panelColumns = Int(UC_BF16_PANEL)

/// Splits 0..<count into at most `workers` ranges whose bounds are multiples of `quantum`.
private func splits(_ count: Int, quantum: Int, workers: Int) -> [Range<Int>] {
    let per = ((count + workers - 1) / workers + quantum - 1) / quantum * quantum
    return stride(from: 0, to: count, by: max(per, 1)).map { $0..<min(count, $0 + per) }
}

/// y = x · Wᵀ + b over the last axis with a bf16-packed weight (`.lanes`): x [..., k] → [..., outputs].
public func linear(_ x: Tensor, packed w: BF16Weight, bias: Tensor? = nil) -> Tensor {
    precondition(w.layout == .lanes && x.shape.last == w.k, "linear: bf16 weight [\(w.outputs), \(w.k)] for input \(x.shape)")
    if let bias { precondition(bias.count == w.outputs, "linear: bias \(bias.shape) for \(w.outputs) outputs") }
    let rows = x.count / max(w.k, 1), n = w.outputs, k = w.k
    let y = Tensor(uninitialized: Array(x.shape.dropLast()) + [n])
    let px = x.pointer, py = y.pointer, pw = w.pointer, pb = bias?.pointer
    let workers = rows * n * k < parallelThreshold ? 1 : ComputeThreads.workers
    // Many rows: each core takes a band of rows (and packs only its own activations); few rows: column panels.
    if rows >= workers * 4 * tileRows || n < 2 * panelColumns {
        let parts = splits(rows, quantum: tileRows, workers: workers)
        DispatchQueue.concurrentPerform(iterations: parts.count) { i in
            let r = parts[i]
            uc_bf16_gemm_lanes(r.count, n, k, px + r.lowerBound * k, k, pw, 0, n, py + r.lowerBound * n, n, pb, 0)
        }
    } else {
        let parts = splits(n, quantum: panelColumns, workers: workers)
        DispatchQueue.concurrentPerform(iterations: parts.count) { i in
            let c = parts[i]
            uc_bf16_gemm_lanes(rows, n, k, px, k, pw, c.lowerBound, c.upperBound, py, n, pb, 0)
        }
    }
    return y
}

/// C[outputs, n] (+)= W · B[k, n] (+ bias per output row) with a bf16-packed weight (`.rows`), on all cores.
/// B and C are row-major with row strides ldb and ldc (a band of an image's output columns).
func bf16RowsProduct(_ w: BF16Weight, b: UnsafePointer<Float>, ldb: Int, n: Int,
                     c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?, accumulate: Bool) {
    precondition(w.layout == .rows, "conv2d: bf16 weight packed for Linear")
    let m = w.outputs, k = w.k, pw = w.pointer, acc: Int32 = accumulate ? 1 : 0
    let rowStride = (k + 1) / 2 * 2
    let workers = m * n * k < parallelThreshold ? 1 : ComputeThreads.workers
    // Wide bands: split the columns (each core packs its own); narrow ones (deep UNet levels): split the channels.
    if n >= workers * 2 * panelColumns || m < 2 * tileRows {
        let parts = splits(n, quantum: panelColumns, workers: workers)
        DispatchQueue.concurrentPerform(iterations: parts.count) { i in
            let r = parts[i]
            uc_bf16_gemm_rows(m, r.count, k, pw, b + r.lowerBound, ldb, c + r.lowerBound, ldc, bias, acc)
        }
    } else {
        let parts = splits(m, quantum: tileRows, workers: workers)
        DispatchQueue.concurrentPerform(iterations: parts.count) { i in
            let r = parts[i]
            uc_bf16_gemm_rows(r.count, n, k, pw + r.lowerBound * rowStride, b, ldb, c + r.lowerBound * ldc, ldc,
                              bias.map { $0 + r.lowerBound }, acc)
        }
    }
}
