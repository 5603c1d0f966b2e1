import Foundation
import Logging
import UnCLIPStore
import UnCLIPTensor

/// Search through pgvector where the database has it: the ranking vectors in half precision (`halfvec`) with an
/// HNSW index per embedding width, so a query reads a few hundred rows instead of every embedding, and a server
/// needs neither the minutes nor the gigabytes of loading a million embeddings into memory.
///
/// Detected, never required: used when the `vector` extension is installed in the database, or can be (an
/// attempt to create it that the server refuses — it is not a trusted extension, so only a superuser may — falls
/// back to the in-memory index, with a log line saying so).
///
/// The vectors live in a table of their own (`search_vectors`, rows removed with their generation), kept current
/// without triggers the same way `SearchIndexCache` is: each search first adds the generations recorded since
/// the highest id it holds (less a margin for transactions that committed out of id order), so every write path
/// — recording, `store copy`, bulk loads, other machines — is covered. The first search of a large store fills it
/// and builds the index (reported by the search benchmark).
///
/// The HNSW order is approximate; the hits it returns are re-scored exactly from the float32 embeddings, as the
/// in-memory index's are, so scores are the same and only recall can differ (the benchmark measures recall@10).
final class PostgresVectorIndex {
    let session: PostgresSession
    let location: String
    /// pgvector's version, e.g. "0.8.6".
    let version: String
    private var indexedWidths = Set<Int>()
    let reorderMargin: Int64 = 256
    let syncPage = 1_000

    private init(session: PostgresSession, location: String, version: String) {
        self.session = session; self.location = location; self.version = version
    }

    /// The index when pgvector is installed or installable here; nil (the in-memory index is used) otherwise.
    static func open(_ session: PostgresSession, location: String, logger: Logger) throws -> PostgresVectorIndex? {
        var version = try session.scalarText("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        if version == nil {
            guard try session.scalarInt("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") ?? 0 > 0 else { return nil }
            do {
                try session.query("CREATE EXTENSION IF NOT EXISTS vector")
                version = try session.scalarText("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            } catch {
                logger.notice("pgvector is available but cannot be installed by this role (\(error)); search uses the in-memory index. A superuser can run CREATE EXTENSION vector in \(location).")
                return nil
            }
        }
        guard let version else { return nil }
        // Iterative index scans (filters that remove most neighbours still fill the limit) came in 0.8.
        guard let minor = Self.minorVersion(version), minor >= 8 else {
            logger.notice("pgvector \(version) is older than 0.8 (no iterative index scans); search uses the in-memory index")
            return nil
        }
        try session.query("""
            CREATE TABLE IF NOT EXISTS search_vectors(
                generation_id bigint PRIMARY KEY REFERENCES generations(id) ON DELETE CASCADE,
                dim integer NOT NULL,
                picture halfvec NOT NULL,          -- SearchRanking.picture
                picture_decoder halfvec NOT NULL   -- SearchRanking.pictureAndDecoder
            )
            """)
        return PostgresVectorIndex(session: session, location: location, version: version)
    }

    /// 0.x → x (pgvector has no 1.0 yet; a 1.x counts as new enough).
    static func minorVersion(_ v: String) -> Int? {
        let parts = v.split(separator: ".").compactMap { Int($0) }
        guard parts.count >= 2 else { return nil }
        return parts[0] >= 1 ? Int.max : parts[1]
    }

    static func column(_ ranking: SearchRanking) -> String { ranking == .picture ? "picture" : "picture_decoder" }

    /// Adds the ranking vectors of generations recorded since the last sync (see the type's comment).
    func sync() throws {
        // Inserts into an indexed table update the HNSW graph row by row: slow pages must not look like a dead link.
        try session.allowingLongStatements(3600) { try syncPages() }
    }

    private func syncPages() throws {
        var after = max(0, (try session.scalarInt("SELECT coalesce(max(generation_id), 0) FROM search_vectors") ?? 0) - reorderMargin)
        while true {
            let rows = try session.query("""
                SELECT g.id, g.picture_dim, g.picture_embedding, g.dim, g.embedding FROM generations g
                WHERE g.id > $1 AND (g.picture_dim IS NOT NULL OR g.dim IS NOT NULL)
                  AND NOT EXISTS (SELECT 1 FROM search_vectors s WHERE s.generation_id = g.id)
                ORDER BY g.id LIMIT \(syncPage)
                """, [.int(after)])
            guard let last = rows.last else { return }
            // Rows of one width go in one statement (a flat float4[] sliced by width server-side).
            var batch: (dim: Int, ids: [Int64], picture: [Float], both: [Float]) = (0, [], [], [])
            func flush() throws {
                guard !batch.ids.isEmpty else { return }
                try session.query("""
                    INSERT INTO search_vectors(generation_id, dim, picture, picture_decoder)
                    SELECT ($1::bigint[])[i], \(batch.dim),
                           (($2::real[])[(i - 1) * \(batch.dim) + 1 : i * \(batch.dim)])::halfvec,
                           (($3::real[])[(i - 1) * \(batch.dim) + 1 : i * \(batch.dim)])::halfvec
                    FROM generate_series(1, cardinality($1::bigint[])) AS i
                    ON CONFLICT (generation_id) DO NOTHING
                    """, [.ints(batch.ids), .reals(batch.picture), .reals(batch.both)])
                batch = (0, [], [], [])
            }
            for r in rows {
                let id = try r.int(0)
                let (picture, decoder) = try r.embeddingPair(id: id, path: location)
                guard let p = SearchRanking.picture.vector(picture: picture, decoder: decoder),
                      let b = SearchRanking.pictureAndDecoder.vector(picture: picture, decoder: decoder), p.count == b.count,
                      p.allSatisfy(\.isFinite), b.allSatisfy(\.isFinite) else { continue }
                if batch.dim != p.count { try flush(); batch.dim = p.count }
                batch.ids.append(id); batch.picture += p; batch.both += b
            }
            try flush()
            after = try last.int(0)
        }
    }

    /// Builds the HNSW index of one width and ranking if it is not there (once per process after the first look).
    func ensureIndex(dim: Int, ranking: SearchRanking) throws {
        let key = dim * 2 + (ranking == .picture ? 0 : 1)
        guard !indexedWidths.contains(key) else { return }
        let column = Self.column(ranking)
        // An index over a million rows takes many minutes on two cores.
        try session.allowingLongStatements(6 * 3600) { try session.transaction {
            // Two servers starting on one database must not both build it.
            try session.query("SELECT pg_advisory_xact_lock($1)", [.int(PostgresSchema.migrationLock + 1)])
            // Inner product, not cosine: a text query's vector (picture + half the decoder's) is shorter than 1 by
            // design, and its score is the dot product with the unit query (`SearchRanking`).
            try session.query("SET LOCAL maintenance_work_mem = '512MB'")
            try session.query("""
                CREATE INDEX IF NOT EXISTS search_vectors_\(column)_\(dim) ON search_vectors
                USING hnsw ((\(column)::halfvec(\(dim))) halfvec_ip_ops) WHERE dim = \(dim)
                """)
        } }
        indexedWidths.insert(key)
    }

    /// The `limit` nearest generations that match `filter` (its `dim` set), scored exactly from their float32
    /// embeddings by `exact`.
    func search(_ query: [Float], filter: GenerationFilter, ranking: SearchRanking, limit: Int,
                conditions: (GenerationFilter) -> (String, [PGValue]),
                exact: ([Int64]) throws -> [Int64: [Float]]) throws -> [SearchIndex.Hit] {
        let dim = query.count
        guard dim > 0, filter.dim == dim, limit > 0 else { return [] }
        try sync()
        try ensureIndex(dim: dim, ranking: ranking)
        let q = try EmbeddingMath.normalized(query)
        var rest = filter
        rest.dim = nil
        let (clause, values) = conditions(rest)
        let column = Self.column(ranking)
        let join = clause.isEmpty ? "" : "JOIN generations g ON g.id = s.generation_id"
        let whereClause = clause.isEmpty ? "WHERE s.dim = \(dim)" : "\(clause) AND s.dim = \(dim)"
        let qParam = "$\(values.count + 1)"
        let ids: [Int64] = try session.transaction {
            // ef_search is the candidate list HNSW keeps (at most 1000); iterative scans go on past it when a filter
            // removes candidates. pgvector's default 40 found 0.897 of the true top 10 on 100,000 clustered 1024-d
            // embeddings (BENCHMARKS.md, session 9), 100 found 0.997 for 13 ms a query instead of 5.
            try session.query("SET LOCAL hnsw.ef_search = \(min(1000, max(100, 4 * limit)))")
            try session.query("SET LOCAL hnsw.iterative_scan = relaxed_order")
            return try session.query("""
                SELECT s.generation_id FROM search_vectors s \(join) \(whereClause)
                ORDER BY s.\(column)::halfvec(\(dim)) <#> (\(qParam)::real[])::halfvec(\(dim)) LIMIT \(limit)
                """, values + [.reals(q)]).map { try $0.int(0) }
        }
        let vectors = try exact(ids)
        var hits: [SearchIndex.Hit] = ids.compactMap { id in
            guard let v = vectors[id], v.count == dim else { return nil }  // removed since: skipped
            var dot = 0.0
            for i in 0..<dim { dot += Double(v[i]) * Double(q[i]) }
            return SearchIndex.Hit(id: id, score: Float(dot))
        }
        hits.sort { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
        return hits
    }
}
