import CBLAS
import CKernels
import Foundation

/// Multi-head scaled dot-product attention on packed heads.
///
/// query [B, Tq, H·D], key/value [B, Tk, H·D] → [B, Tq, H·D]. Heads are read in place with
/// strided sgemm (no permute copies). Queries are processed in blocks so the score buffer
/// stays bounded (≈16 MB) however many tokens there are.
/// - keyMask: optional [B·Tk] with 0 for keys to ignore (padding); causal hides keys after the query.
public func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool = false,
                      keyMask: [Int]? = nil, scale: Float? = nil) -> Tensor {
    let (b, tq, width) = (query.shape[0], query.shape[1], query.shape[2])
    let tk = key.shape[1]
    precondition(key.shape == [b, tk, width] && value.shape == key.shape,
                 "attention: query \(query.shape), key \(key.shape), value \(value.shape)")
    precondition(width % heads == 0, "attention: width \(width) not divisible by \(heads) heads")
    if let keyMask { precondition(keyMask.count == b * tk, "attention: mask of \(keyMask.count) for \(b)×\(tk) keys") }
    let d = width / heads
    let alpha = scale ?? 1 / Float(d).squareRoot()
    let out = Tensor(uninitialized: [b, tq, width])
    let blockRows = max(1, min(tq, (1 << 22) / max(tk, 1)))
    let q = query.pointer, k = key.pointer, v = value.pointer, o = out.pointer
    let lda = Int32(width)

    let work = { (bh: Int, scores: UnsafeMutablePointer<Float>) in
        let bi = bh / heads, h = bh % heads
        let qBase = q + bi * tq * width + h * d
        let kBase = k + bi * tk * width + h * d
        let vBase = v + bi * tk * width + h * d
        let oBase = o + bi * tq * width + h * d
        var row0 = 0
        while row0 < tq {
            let rows = min(blockRows, tq - row0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(tk), Int32(d),
                        alpha, qBase + row0 * width, lda, kBase, lda, 0, scores, Int32(tk))
            if causal || keyMask != nil {
                for r in 0..<rows {
                    let row = scores + r * tk
                    if causal { for j in (row0 + r + 1)..<max(tk, row0 + r + 1) { row[j] = -.infinity } }
                    if let keyMask { for j in 0..<tk where keyMask[bi * tk + j] == 0 { row[j] = -.infinity } }
                }
            }
            uc_softmax_rows(scores, rows, tk)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(d), Int32(tk),
                        1, scores, Int32(tk), vBase, lda, 0, oBase + row0 * width, lda)
            row0 += rows
        }
    }

    let pairs = b * heads
    if tq * tk <= 256 * 256 && pairs > 1 {
        // Small products: BLAS runs them on one thread, so spread the heads over cores instead.
        let workers = min(pairs, ProcessInfo.processInfo.activeProcessorCount)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * tk)
            defer { scores.deallocate() }
            var bh = w
            while bh < pairs { work(bh, scores); bh += workers }
        }
    } else {
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * tk)
        defer { scores.deallocate() }
        for bh in 0..<pairs { work(bh, scores) }
    }
    return out
}
