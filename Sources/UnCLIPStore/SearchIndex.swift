import CBLAS
import Foundation

/// Brute-force cosine search: every stored embedding of one width, unit-normalised, in one contiguous
/// row-major float32 matrix; a query is one sgemv (N × D by D) and a top-k pass over the N scores.
/// Exact, and fast enough for millions of rows (see unclip-store-bench).
public final class SearchIndex {
    /// Generation ids, one per matrix row.
    public let ids: [Int64]
    public let dim: Int
    /// [count, dim], each row of unit length (zero rows stay zero).
    let matrix: UnsafeMutablePointer<Float>

    public var count: Int { ids.count }

    init(ids: [Int64], dim: Int, matrix: UnsafeMutablePointer<Float>) {
        self.ids = ids; self.dim = dim; self.matrix = matrix
    }

    deinit { matrix.deallocate() }

    /// Loads the embeddings of the generations that match `filter` (its `dim` is required).
    public static func load(from store: Store, filter: GenerationFilter) throws -> SearchIndex {
        guard let dim = filter.dim, dim > 0 else { throw StoreError.invalid("a search index needs the embedding width") }
        var conditions = ["dim = ?"], values: [SQLValue] = [.int(Int64(dim))]
        if let kinds = filter.kinds, !kinds.isEmpty {
            conditions.append("kind IN (\(kinds.map { _ in "?" }.joined(separator: ", ")))")
            values += kinds.map { .text($0.rawValue) }
        }
        if let since = filter.since { conditions.append("created_at >= ?"); values.append(.text(since)) }
        let clause = conditions.joined(separator: " AND ")
        return try store.db.readTransaction {
            // Count first (same snapshot), so the matrix is allocated once.
            let n = Int(try store.db.scalarInt("SELECT count(*) FROM generations WHERE \(clause)", values) ?? 0)
            let matrix = UnsafeMutablePointer<Float>.allocate(capacity: max(n * dim, 1))
            var ids = [Int64]()
            ids.reserveCapacity(n)
            do {
                let s = try store.db.prepare("SELECT id, embedding FROM generations WHERE \(clause) ORDER BY id")
                try s.bind(values)
                while try s.step() {
                    guard ids.count < n else { break }
                    let bytes = s.blob(1)
                    let row = matrix + ids.count * dim
                    guard bytes.count == dim * 4 else {
                        throw StoreError.badEmbedding(path: store.url.path, what: "the image embedding of generation \(s.int(0))",
                                                      reason: "the blob has \(bytes.count) bytes; \(dim) float32 values need \(dim * 4)")
                    }
                    copyLittleEndianFloats(bytes, into: row, count: dim)
                    let norm = cblas_snrm2(Int32(dim), row, 1)
                    if norm > 0 { cblas_sscal(Int32(dim), 1 / norm, row, 1) }
                    ids.append(s.int(0))
                }
            } catch {
                matrix.deallocate()
                throw error
            }
            return SearchIndex(ids: ids, dim: dim, matrix: matrix)
        }
    }

    /// A hit: a generation id and its cosine similarity to the query.
    public struct Hit: Equatable, Sendable {
        public let id: Int64
        public let score: Float
    }

    /// The `limit` rows most similar to `query` (cosine), best first; ties go to the lower id.
    public func search(_ query: [Float], limit: Int, excluding: Set<Int64> = []) throws -> [Hit] {
        guard query.count == dim else {
            throw StoreError.invalid("the query embedding has \(query.count) values; the stored embeddings have \(dim)")
        }
        guard count > 0, limit > 0 else { return [] }
        let q = try EmbeddingMath.normalized(query)
        var scores = [Float](repeating: 0, count: count)
        q.withUnsafeBufferPointer { qp in
            scores.withUnsafeMutableBufferPointer { sp in
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(count), Int32(dim), 1, matrix, Int32(dim),
                            qp.baseAddress, 1, 0, sp.baseAddress, 1)
            }
        }
        return topK(scores, k: limit, excluding: excluding)
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
