import CStoreKernels
import Foundation
import UnCLIPTensor

/// Brute-force search over every stored generation of one embedding width, ranked by the dot product of the
/// unit query with each generation's `SearchRanking` vector (its picture's CLIP embedding, for text queries with
/// the decoder's embedding at half weight).
///
/// A query streams the whole matrix, so its speed is set by memory bandwidth: the matrix is kept as
/// unit-length rows in IEEE half precision (half the bytes of float32), scored in one pass, and the few rows
/// that can still be in the top k are then re-scored exactly from their float32 blobs in the store. The
/// result is the same ranking and the same scores as a float32 scan, at about half the time and memory.
public final class SearchIndex {
    /// Generation ids, one per matrix row.
    public let ids: [Int64]
    public let dim: Int
    /// [count, dim] half floats; each row a `SearchRanking` vector (length at most 1; zero rows stay zero).
    let matrix: UnsafeMutablePointer<UInt16>
    /// Where the exact float32 embeddings are re-read from.
    let source: any EmbeddingSource
    /// How each row is made from a generation's embeddings.
    public let ranking: SearchRanking

    public var count: Int { ids.count }

    /// A bound on |half-precision score − exact cosine| for unit vectors: rounding each row element to half
    /// changes it by at most 2⁻¹¹ of itself (2⁻²⁵ absolute when subnormal), and the float32 sum of `dim`
    /// products adds at most dim·2⁻²⁴; both are weighted by Σ|qᵢxᵢ| ≤ 1. Doubled for margin.
    var halfErrorBound: Float { 2 * (1.0 / 2048 + Float(dim) / 16_777_216 + Float(dim) / 33_554_432) }

    init(ids: [Int64], dim: Int, matrix: UnsafeMutablePointer<UInt16>, source: any EmbeddingSource, ranking: SearchRanking) {
        self.ids = ids; self.dim = dim; self.matrix = matrix; self.source = source; self.ranking = ranking
    }

    deinit { matrix.deallocate() }

    /// Loads the embeddings of the generations that match `filter` (its `dim` is required), combined as
    /// `ranking` says: `.picture` for image queries, `.pictureAndDecoder` for text queries.
    public static func load(from source: any EmbeddingSource, filter: GenerationFilter, ranking: SearchRanking = .picture) throws -> SearchIndex {
        guard let dim = filter.dim, dim > 0 else { throw StoreError.invalid("a search index needs the embedding width (filter.dim)") }
        var matrix: UnsafeMutablePointer<UInt16>?
        var capacity = 0
        var ids = [Int64]()
        let row = UnsafeMutablePointer<Float>.allocate(capacity: dim)
        defer { row.deallocate() }
        do {
            try source.forEachSearchVector(filter: filter, ranking: ranking, reserve: { n in
                // The count comes first (same snapshot), so the matrix is allocated once.
                capacity = n
                matrix = UnsafeMutablePointer<UInt16>.allocate(capacity: max(n * dim, 1))
                ids.reserveCapacity(n)
            }, row: { id, vector in
                guard let matrix, ids.count < capacity else { return }
                if let vector {
                    guard vector.count == dim else {
                        throw StoreError.invalid("generation \(id): search vector of \(vector.count) values, expected \(dim)")
                    }
                    vector.withUnsafeBufferPointer { row.update(from: $0.baseAddress!, count: dim) }
                } else {
                    row.update(repeating: 0, count: dim)
                }
                us_f32_to_f16(row, matrix + ids.count * dim, dim)
                ids.append(id)
            })
        } catch {
            matrix?.deallocate()
            throw error
        }
        return SearchIndex(ids: ids, dim: dim, matrix: matrix ?? UnsafeMutablePointer<UInt16>.allocate(capacity: 1),
                           source: source, ranking: ranking)
    }

    /// A hit: a generation id and its cosine similarity to the query.
    public struct Hit: Equatable, Sendable {
        public let id: Int64
        public let score: Float
        public init(id: Int64, score: Float) { self.id = id; self.score = score }
    }

    /// The `limit` rows most similar to `query` (exact cosine), best first; ties go to the lower id.
    public func search(_ query: [Float], limit: Int, excluding: Set<Int64> = []) throws -> [Hit] {
        guard query.count == dim else {
            throw StoreError.invalid("the query embedding has \(query.count) values; the stored embeddings have \(dim)")
        }
        guard count > 0, limit > 0 else { return [] }
        let q = try EmbeddingMath.normalized(query)
        let approx = scoresInHalfPrecision(q)
        // Every row of the exact top k scores within 2ε of the k-th best approximate score (ε = error bound):
        // k rows have exact scores ≥ t − ε, so the k-th exact score is ≥ t − ε, and a row at or above it
        // has an approximate score ≥ t − 2ε.
        let provisional = topK(approx, k: limit, excluding: excluding)
        guard let t = provisional.last?.score else { return [] }
        let floor = provisional.count < limit ? -Float.infinity : t - 2 * halfErrorBound
        var candidates: [Int] = []
        approx.withUnsafeBufferPointer { s in
            for r in 0..<s.count where s[r] >= floor && (excluding.isEmpty || !excluding.contains(ids[r])) { candidates.append(r) }
        }
        var exact = try candidates.compactMap { r -> Hit? in
            guard let e = try storedEmbedding(ids[r]) else { return nil }  // removed since the index was loaded
            var dot = 0.0
            for i in 0..<dim { dot += Double(e[i]) * Double(q[i]) }
            return Hit(id: ids[r], score: Float(dot))
        }
        exact.sort { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
        return Array(exact.prefix(limit))
    }

    /// Half-precision scores of all rows against a unit query, split over the cores.
    func scoresInHalfPrecision(_ q: [Float]) -> [Float] {
        var scores = [Float](repeating: 0, count: count)
        let n = count, d = dim, m = matrix
        let chunks = max(1, min(ProcessInfo.processInfo.activeProcessorCount, n / 8192))
        q.withUnsafeBufferPointer { qp in
            scores.withUnsafeMutableBufferPointer { sp in
                let query = qp.baseAddress!, out = sp.baseAddress!
                DispatchQueue.concurrentPerform(iterations: chunks) { c in
                    let start = n * c / chunks, end = n * (c + 1) / chunks
                    us_dot_f16_rows(m + start * d, end - start, d, query, out + start)
                }
            }
        }
        return scores
    }

    /// A generation's search vector from its float32 embeddings, nil if it is no longer stored.
    private func storedEmbedding(_ id: Int64) throws -> [Float]? {
        try source.searchVector(id: id, ranking: ranking, dim: dim)
    }

    /// Partial selection: keeps the best k in a small sorted buffer, so a pass costs O(N) comparisons
    /// plus O(k) work only for rows that beat the current k-th score.
    func topK(_ scores: [Float], k: Int, excluding: Set<Int64>) -> [Hit] {
        var best: [(score: Float, row: Int)] = []
        best.reserveCapacity(k + 1)
        scores.withUnsafeBufferPointer { s in
            ids.withUnsafeBufferPointer { idp in
                for row in 0..<s.count {
                    let v = s[row]
                    if best.count == k, !(v > best[k - 1].score) { continue }
                    if !excluding.isEmpty, excluding.contains(idp[row]) { continue }
                    // Insertion keeps equal scores in row (= id) order, so ties go to the lower id.
                    var i = best.count
                    while i > 0 && best[i - 1].score < v { i -= 1 }
                    best.insert((v, row), at: i)
                    if best.count > k { best.removeLast() }
                }
            }
        }
        return best.map { Hit(id: ids[$0.row], score: $0.score) }
    }
}
