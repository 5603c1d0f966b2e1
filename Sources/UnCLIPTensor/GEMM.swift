import CBLAS
import Foundation

// Every fp32 matrix product goes through `sgemm` below: OpenBLAS runs single-threaded and we split the
// output over our own workers. Why: OpenBLAS's idle pool threads spin in sched_yield for ~2^28 cycles
// after each call, competing with our own parallel loops (attention, norms) that run between products;
// on a small machine that spinning costs a visible share of every UNet step (BENCHMARKS.md, session 4).

/// OpenBLAS is switched to one thread per call once, before the first product.
private let blasOnCallerThread: Void = { openblas_set_num_threads(1) }()

/// Products below this many multiply-adds run on the caller's thread (dispatch costs more than it saves).
private let parallelProductThreshold = 1 << 21

/// Chunks per worker: more than one, so a core slowed by another process hands its remaining chunks to the
/// other (dispatch hands chunks out dynamically), at the price of re-packing the shared operand per chunk.
private let chunksPerWorker = 2

/// Row-major C[m, n] = α · op(A) · op(B) + β · C, with op(A) [m, k] and op(B) [k, n]; lda, ldb and ldc are the
/// row strides of A, B and C as stored. Large products are split into bands of rows or columns of C
/// (whichever is longer), each one a single-threaded OpenBLAS call on a worker. `parallel: false` keeps it
/// on the caller's thread (for callers that already run one product per core).
public func sgemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool = true) {
    _ = blasOnCallerThread
    guard m > 0, n > 0 else { return }
    let call = { (rows: Range<Int>, cols: Range<Int>) in
        // Offsets of the sub-blocks: a row band of op(A) and a column band of op(B).
        let pa = transposeA ? a + rows.lowerBound : a + rows.lowerBound * lda
        let pb = transposeB ? b + cols.lowerBound * ldb : b + cols.lowerBound
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(rows.count), Int32(cols.count), Int32(k), alpha, pa, Int32(lda), pb, Int32(ldb),
                    beta, c + rows.lowerBound * ldc + cols.lowerBound, Int32(ldc))
    }
    let workers = ComputeThreads.workers
    if !parallel || workers == 1 || m * n * k < parallelProductThreshold {
        call(0..<m, 0..<n)
        return
    }
    // Split the longer side of C into bands that are multiples of 16 (whole SIMD panels).
    let splitRows = m >= n
    let length = splitRows ? m : n
    let chunks = max(1, min(workers * chunksPerWorker, length / 32))
    let per = ((length + chunks - 1) / chunks + 15) / 16 * 16
    let count = (length + per - 1) / per
    DispatchQueue.concurrentPerform(iterations: count) { i in
        let band = (i * per)..<min(length, (i + 1) * per)
        if splitRows { call(band, 0..<n) } else { call(0..<m, band) }
    }
}
