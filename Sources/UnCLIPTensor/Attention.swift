import CKernels
import Foundation

/// Multi-head scaled dot-product attention on packed heads.
///
/// query [B, Tq, H·D], key/value [B, Tk, H·D] → [B, Tq, H·D]. Heads are read in place (no permute
/// copies). Uses the fused C kernel (online softmax, no Tq×Tk scores) when the head size suits it
/// (a multiple of 8), else the sgemm path `attentionUnfused`.
/// - keyMask: optional [B·Tk] with 0 for keys to ignore (padding); causal hides keys after the query.
/// - precision: .bf16 takes the bf16-product kernel (head sizes that are multiples of 16, AVX512_BF16 CPUs).
public func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool = false,
                      keyMask: [Int]? = nil, scale: Float? = nil, precision: GemmPrecision = .fp32) -> Tensor {
    checkAttentionShapes(query: query, key: key, value: value, heads: heads, keyMask: keyMask)
    if precision == .bf16, uc_attention_bf16_supported(query.shape[2] / heads) != 0 {
        return fusedAttentionBF16(query: query, key: key, value: value, heads: heads, causal: causal, keyMask: keyMask, scale: scale)
    }
    let isa = uc_attention_best_isa(query.shape[2] / heads)
    if isa == 0 {
        return attentionUnfused(query: query, key: key, value: value, heads: heads, causal: causal, keyMask: keyMask, scale: scale)
    }
    return fusedAttention(query: query, key: key, value: value, heads: heads, causal: causal, keyMask: keyMask,
                          scale: scale, isa: isa)
}

private func checkAttentionShapes(query: Tensor, key: Tensor, value: Tensor, heads: Int, keyMask: [Int]?) {
    let (b, width) = (query.shape[0], query.shape[2])
    let tk = key.shape[1]
    precondition(key.shape == [b, tk, width] && value.shape == key.shape,
                 "attention: query \(query.shape), key \(key.shape), value \(value.shape)")
    precondition(width % heads == 0, "attention: width \(width) not divisible by \(heads) heads")
    if let keyMask { precondition(keyMask.count == b * tk, "attention: mask of \(keyMask.count) for \(b)×\(tk) keys") }
}

/// Query rows per task of the fused kernel: a multiple of its 6-row tile, large enough that each key
/// block loaded into cache serves many rows, small enough to give both cores plenty of tasks.
let fusedAttentionRows = 96

/// One head of one batch item as the fused kernels see it: pointers at its first row, row stride `width`.
struct AttentionHead {
    let index: Int          // batch item · heads + head
    let query, key, value, out: UnsafeMutablePointer<Float>
    let width, tq, tk, d: Int
}

/// The driver both fused kernels share: `pack` runs once per (batch item, head), then `rows(head, bias, row0,
/// count)` over (head, block of query rows) tasks spread over all cores.
private func fusedAttentionDriver(query: Tensor, key: Tensor, value: Tensor, heads: Int, keyMask: [Int]?,
                                  pack: (AttentionHead) -> Void,
                                  rows: (AttentionHead, UnsafePointer<Float>?, Int, Int) -> Void) -> Tensor {
    let (b, tq, width) = (query.shape[0], query.shape[1], query.shape[2])
    let tk = key.shape[1], d = width / heads
    let out = Tensor(uninitialized: [b, tq, width])
    if tq == 0 || b == 0 { return out }
    func head(_ bh: Int) -> AttentionHead {
        let bi = bh / heads, h = bh % heads
        return AttentionHead(index: bh, query: query.pointer + bi * tq * width + h * d, key: key.pointer + bi * tk * width + h * d,
                             value: value.pointer + bi * tk * width + h * d, out: out.pointer + bi * tq * width + h * d,
                             width: width, tq: tq, tk: tk, d: d)
    }
    // Additive key bias: 0 keeps a key, -inf hides it (the kernel adds it to the scores).
    let bias = keyMask.map { $0.map { $0 == 0 ? -Float.infinity : 0 } } ?? []
    DispatchQueue.concurrentPerform(iterations: b * heads) { pack(head($0)) }
    let blocks = (tq + fusedAttentionRows - 1) / fusedAttentionRows
    bias.withUnsafeBufferPointer { biasBuffer in
        DispatchQueue.concurrentPerform(iterations: b * heads * blocks) { task in
            let bh = task / blocks, row0 = (task % blocks) * fusedAttentionRows
            // An empty array may still have a base address: only a real mask yields a bias pointer.
            let keyBias = keyMask == nil ? nil : biasBuffer.baseAddress.map { UnsafePointer($0 + (bh / heads) * tk) }
            rows(head(bh), keyBias, row0, min(fusedAttentionRows, tq - row0))
        }
    }
    return out
}

/// The fused kernel with a chosen instruction set (`isa` from uc_attention_best_isa; tests force 1 = AVX2).
/// Keys are packed once per head, then (head, query block) tasks are spread over all cores.
func fusedAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool, keyMask: [Int]?,
                    scale: Float?, isa: Int32) -> Tensor {
    let d = query.shape[2] / heads, tk = key.shape[1]
    let alpha = scale ?? 1 / Float(d).squareRoot()
    let packedCount = uc_attention_packed_keys_count(tk, d)
    let packed = UnsafeMutablePointer<Float>.allocate(capacity: max(1, query.shape[0] * heads * packedCount))
    defer { packed.deallocate() }
    return fusedAttentionDriver(query: query, key: key, value: value, heads: heads, keyMask: keyMask, pack: { h in
        uc_attention_pack_keys(h.key, h.width, h.tk, h.d, alpha, packed + h.index * packedCount)
    }, rows: { h, keyBias, row0, count in
        uc_attention_rows(isa, h.query, h.width, packed + h.index * packedCount, h.value, h.width, keyBias, h.tk, h.d,
                          row0, count, causal ? 1 : 0, h.out, h.width)
    })
}

/// The fused kernel with bf16 products (`--precision bf16`): keys and values are rounded and packed once per
/// head, queries and each block's probabilities in the kernel; softmax and accumulation stay fp32.
func fusedAttentionBF16(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool, keyMask: [Int]?,
                        scale: Float?) -> Tensor {
    let d = query.shape[2] / heads, tk = key.shape[1], pairs = query.shape[0] * heads
    let alpha = scale ?? 1 / Float(d).squareRoot()
    let keysCount = uc_attention_bf16_keys_count(tk, d), valuesCount = uc_attention_bf16_values_count(tk, d)
    let packedKeys = UnsafeMutablePointer<UInt16>.allocate(capacity: max(1, pairs * keysCount))
    let packedValues = UnsafeMutablePointer<UInt16>.allocate(capacity: max(1, pairs * valuesCount))
    defer { packedKeys.deallocate(); packedValues.deallocate() }
    return fusedAttentionDriver(query: query, key: key, value: value, heads: heads, keyMask: keyMask, pack: { h in
        uc_attention_bf16_pack_keys(h.key, h.width, h.tk, h.d, alpha, packedKeys + h.index * keysCount)
        uc_attention_bf16_pack_values(h.value, h.width, h.tk, h.d, packedValues + h.index * valuesCount)
    }, rows: { h, keyBias, row0, count in
        uc_attention_bf16_rows(h.query, h.width, packedKeys + h.index * keysCount, packedValues + h.index * valuesCount,
                               keyBias, h.tk, h.d, row0, count, causal ? 1 : 0, h.out, h.width)
    })
}

/// The sgemm path: per head, blocks of queries get their scores from sgemm, a softmax, and sgemm
/// again with the values. Kept for head sizes the fused kernel does not take, and as the benchmark's
/// baseline. Queries are processed in blocks so the score buffer stays bounded (≈16 MB).
public func attentionUnfused(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool = false,
                             keyMask: [Int]? = nil, scale: Float? = nil) -> Tensor {
    checkAttentionShapes(query: query, key: key, value: value, heads: heads, keyMask: keyMask)
    let (b, tq, width) = (query.shape[0], query.shape[1], query.shape[2])
    let tk = key.shape[1]
    let d = width / heads
    let alpha = scale ?? 1 / Float(d).squareRoot()
    let out = Tensor(uninitialized: [b, tq, width])
    let blockRows = max(1, min(tq, (1 << 22) / max(tk, 1)))
    let q = query.pointer, k = key.pointer, v = value.pointer, o = out.pointer

    let work = { (bh: Int, scores: UnsafeMutablePointer<Float>, parallel: Bool) in
        let bi = bh / heads, h = bh % heads
        let qBase = q + bi * tq * width + h * d
        let kBase = k + bi * tk * width + h * d
        let vBase = v + bi * tk * width + h * d
        let oBase = o + bi * tq * width + h * d
        var row0 = 0
        while row0 < tq {
            let rows = min(blockRows, tq - row0)
            sgemm(transposeB: true, m: rows, n: tk, k: d, alpha: alpha, a: qBase + row0 * width, lda: width,
                  b: kBase, ldb: width, c: scores, ldc: tk, parallel: parallel)
            if causal || keyMask != nil {
                for r in 0..<rows {
                    let row = scores + r * tk
                    if causal { for j in (row0 + r + 1)..<max(tk, row0 + r + 1) { row[j] = -.infinity } }
                    if let keyMask { for j in 0..<tk where keyMask[bi * tk + j] == 0 { row[j] = -.infinity } }
                }
            }
            uc_softmax_rows(scores, rows, tk)
            sgemm(m: rows, n: d, k: tk, a: scores, lda: tk, b: vBase, ldb: width, c: oBase + row0 * width, ldc: width,
                  parallel: parallel)
            row0 += rows
        }
    }

    let pairs = b * heads
    if tq * tk <= 256 * 256 && pairs > 1 {
        // Small products: one head per core, each product on its own thread.
        let workers = min(pairs, ComputeThreads.workers)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * tk)
            defer { scores.deallocate() }
            var bh = w
            while bh < pairs { work(bh, scores, false); bh += workers }
        }
    } else {
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * tk)
        defer { scores.deallocate() }
        for bh in 0..<pairs { work(bh, scores, true) }
    }
    return out
}
