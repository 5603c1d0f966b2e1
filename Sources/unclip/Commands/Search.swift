import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPService
import UnCLIPStore

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find stored generations by meaning: rank them by similarity in CLIP image-embedding space.",
        discussion: """
        The query is a text (its CLIP text embedding from the prior's text encoder), a picture (--image, through \
        the CLIP vision encoder) or a stored generation (--like ID, its own embedding). Image queries compare the \
        CLIP embeddings of the finished pictures. Text queries score each generation by its picture's embedding \
        (what was drawn) plus, at half weight, the embedding the decoder was given (what was meant). Each CLIP \
        model has its own space, so the query is embedded by the models that made the stored generations (or by \
        --model alone when given).
        Examples:
          unclip search "a red lighthouse"
          unclip search --image photo.png --limit 5
          unclip search --like 12 --kind variation --since 2025-01-01
        """)

    @Argument(help: "The text to search for.") var text: String?

    @Option(help: "A picture (PNG, JPEG or WebP) to search for pictures like.") var image: String?

    @Option(help: "A stored generation to search for images like (it is listed first).") var like: String?

    @Option(parsing: .unconditional, help: "How many results.") var limit = 10

    @OptionGroup var filterOptions: FilterOptions
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard [text != nil, image != nil, like != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of TEXT, --image or --like ID")
        }
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1 (got \(limit))") }
        if let like { _ = try generationID(like) }
    }

    func run() throws {
        let store = try storeOptions.open(.read)
        let query: SearchQuery
        var services: [GenerationService] = []
        if let like {
            query = .like(try generationID(like))
        } else {
            query = text.map { .text($0) } ?? .picture(.file(URL(fileURLWithPath: image!)))
            services = try self.services(store)
        }
        let hits = try GenerationSearch.search(query, in: store, services: services, filter: filterOptions.filter(), limit: limit)
        if storeOptions.json { return try printJSON(hits) }
        if hits.isEmpty { return print(try store.count() == 0 ? "the store \(store.location) has no generations yet" : "no stored generation matches") }
        for h in hits { print(String(format: "%6ld  %.4f  %@  %@", h.id, h.score, quoted(h.prompt), h.image)) }
    }

    /// --model alone, else the models that made the stored generations (newest first; those still on disk).
    func services(_ store: any GenerationStore) throws -> [GenerationService] {
        if modelOptions.model != nil || store.isEmptyOfModels {
            return [GenerationService(store: store, engine: try modelOptions.engine(try modelOptions.resolve()))]
        }
        var out: [GenerationService] = []
        var missing: [String] = []
        for m in try store.modelsInUse() {
            guard FileManager.default.fileExists(atPath: m.path) else { missing.append(m.path); continue }
            let resolved = try ModelResolver.resolve(model: URL(fileURLWithPath: m.path), prior: m.priorPath.map { URL(fileURLWithPath: $0) },
                                                     variant: modelOptions.variant)
            out.append(GenerationService(store: store, engine: try modelOptions.engine(resolved)))
        }
        if !missing.isEmpty { warn("warning: generations of models no longer at \(missing.joined(separator: ", ")) are searched only if another model shares their CLIP space") }
        return out
    }
}

extension GenerationStore {
    /// True when no generation names a model (an empty store).
    var isEmptyOfModels: Bool { ((try? modelsInUse()) ?? []).isEmpty }
}
