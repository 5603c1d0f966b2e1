import Foundation
import UnCLIPEngine
import UnCLIPStore
import UnCLIPTensor

/// What to search for.
public enum SearchQuery: Sendable, Equatable {
    /// A text, through the prior's CLIP text encoder.
    case text(String)
    /// A picture, through the CLIP image encoder.
    case picture(PictureSource)
    /// A stored generation's own embedding (listed first, as it matches itself).
    case like(Int64)
}

/// A search result.
public struct SearchHit: Codable, Sendable, Equatable {
    public var id: Int64
    /// Cosine similarity with the query (see `SearchRanking` for text queries).
    public var score: Float
    public var kind: GenerationKind
    public var prompt: String?
    public var image: String
}

/// Search by meaning over a store. Embeddings of different CLIP models live in different spaces, so a text or
/// picture query is embedded by each model that made stored generations, and each embedding searches the
/// generations of its width; the hits are merged by score.
public enum GenerationSearch {
    /// - services: generation services whose engines can embed the query, newest model first; for a
    ///   `.like` query none are needed.
    /// - cache: indexes kept between searches (a server's); nil reads the store for this search only.
    public static func search(_ query: SearchQuery, in store: any GenerationStore, services: [GenerationService],
                              filter: GenerationFilter = GenerationFilter(), limit: Int, cache: SearchIndexCache? = nil) throws -> [SearchHit] {
        try RequestCheck.range("limit", limit, 1...100_000)
        var queries: [[Float]] = []
        let ranking: SearchRanking
        switch query {
        case let .like(id):
            let g = try store.generation(id)
            queries = [try g.searchEmbedding ?? g.requireEmbedding()]
            ranking = .picture
        case let .text(text):
            try RequestCheck.prompt("text", text)
            queries = try embeddings(services, needs: .prior) { try $0.textEmbedding(text) }
            ranking = .pictureAndDecoder
        case let .picture(source):
            queries = try embeddings(services, needs: .embedImage) { try $0.imageEmbedding(source) }
            ranking = .picture
        }
        var best: [Int64: Float] = [:]
        for q in queries {
            var f = filter
            f.dim = q.count
            if let hits = try store.indexedSearch(q, filter: f, ranking: ranking, limit: limit) {
                for hit in hits { best[hit.id] = max(best[hit.id] ?? -.infinity, hit.score) }
                continue
            }
            let indexes = try cache?.indexes(for: f, ranking: ranking, in: store) ?? [try SearchIndex.load(from: store, filter: f, ranking: ranking)]
            for index in indexes {
                for hit in try index.search(q, limit: limit) { best[hit.id] = max(best[hit.id] ?? -.infinity, hit.score) }
            }
        }
        let hits = best.map { SearchIndex.Hit(id: $0.key, score: $0.value) }
            .sorted { $0.score > $1.score || ($0.score == $1.score && $0.id < $1.id) }
        return try hits.prefix(limit).compactMap { hit in
            // Removed since its index was read: skipped.
            guard let g = try? store.generation(hit.id) else { return nil }
            return SearchHit(id: hit.id, score: hit.score, kind: g.kind, prompt: g.prompt, image: g.imageLocation)
        }
    }

    /// One query embedding per embedding width, from the first service of each width that can make it.
    static func embeddings(_ services: [GenerationService], needs: EngineCapabilities,
                           _ embed: (GenerationService) throws -> [Float]) throws -> [[Float]] {
        var out: [[Float]] = []
        var widths = Set<Int>()
        for s in services where s.engine.capabilities.contains(needs) {
            let e = try embed(s)
            if widths.insert(e.count).inserted { out.append(e) }
        }
        guard !out.isEmpty else {
            let names = services.map { $0.engine.model.folder.path }
            throw EngineError.unsupported(names.isEmpty
                ? "no model is at hand to embed the query (the models that made the stored generations are gone); give one"
                : "none of the models \(names.joined(separator: ", ")) can embed this query (they lack a \(needs.names.joined(separator: ", ")) path)")
        }
        return out
    }
}
