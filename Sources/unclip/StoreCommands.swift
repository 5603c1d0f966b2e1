import ArgumentParser
import Foundation
import UnCLIPStore
import UnCLIPStudio

struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Images along the great circle between two stored generations' CLIP image embeddings.",
        discussion: """
        Spherical interpolation (slerp) over the whole embedding: --frames images with t = 0, 1/(N−1), …, 1,
        so the first and last frames use the two generations' own embeddings. Every frame is decoded with
        the same seed, so only the embedding changes from frame to frame. Each frame is recorded.
        Example:
          unclip interpolate 12 31 --frames 8 --seed 5
        """)

    @Argument(help: "The generation to start from.")
    var from: String

    @Argument(help: "The generation to end at.")
    var to: String

    @Option(help: "Number of frames, both ends included (at least 2).")
    var frames = 5

    @Option(help: "Text that steers the decoder (default: none).")
    var prompt = ""

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var decoderOptions: DecoderOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        guard frames >= 2 else { throw ValidationError("--frames must be at least 2 (the two ends)") }
        guard decoderOptions.count == 1 else { throw ValidationError("--count does not apply to interpolate; use --frames") }
        _ = try generationID(from); _ = try generationID(to)
    }

    func run() throws {
        let store = try storeOptions.open()
        let a = try store.generation(generationID(from))
        _ = try store.generation(generationID(to))
        let studio = try modelOptions.studio(for: a, store: store, useCache: !cacheOptions.noCache)
        let seed = decoderOptions.seeds()[0]
        let made = try studio.interpolate(from: a.id, to: generationID(to), frames: frames, prompt: prompt,
                                          settings: decoderOptions.settings, seed: seed)
        for (i, m) in made.enumerated() {
            try decoderOptions.deliver(m, to: frameURL(URL(fileURLWithPath: decoderOptions.output ?? "unclip-interpolation.png"), frame: i))
        }
    }

    /// PATH.png → PATH-03.png for frame 3.
    func frameURL(_ url: URL, frame: Int) -> URL {
        let ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
        let digits = String(frames - 1).count
        let number = String(repeating: "0", count: max(0, digits - String(frame).count)) + String(frame)
        return url.deletingLastPathComponent().appendingPathComponent("\(url.deletingPathExtension().lastPathComponent)-\(number).\(ext)")
    }
}

struct Nudge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "DALL·E 2's text diff: turn a stored generation's embedding toward a phrase and decode it.",
        discussion: """
        direction = normalize(text_embeds(--toward) − text_embeds(--from)), with the CLIP text embeddings of
        the prior's text encoder; --from defaults to the generation's own prompt. The image embedding is
        rotated toward the direction by --amount θ with slerp (its length kept): 0 keeps the image, DALL·E 2
        shows 0.25–0.5. The result is recorded with the generation as its parent.
        Example:
          unclip nudge 12 --toward "a photo of a cat in winter" --from "a photo of a cat" --amount 0.35
        """)

    @Argument(help: "The generation to nudge.")
    var id: String

    @Option(help: "The phrase to move toward.")
    var toward: String

    @Option(help: "The phrase to move away from (default: the generation's prompt).")
    var from: String?

    @Option(help: "How far to turn, θ in 0…1.")
    var amount: Float = 0.3

    @Option(help: "Text that steers the decoder (default: none).")
    var prompt = ""

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var decoderOptions: DecoderOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        guard (0...1).contains(amount) else { throw ValidationError("--amount must be in 0…1 (got \(amount))") }
        _ = try generationID(id)
    }

    func run() throws {
        let store = try storeOptions.open()
        let source = try store.generation(generationID(id))
        let studio = try modelOptions.studio(for: source, store: store, useCache: !cacheOptions.noCache)
        for seed in decoderOptions.seeds() {
            let url = decoderOptions.outputURL(seed: seed)
            studio.preview = decoderOptions.previewWriter(for: url)
            let made = try studio.nudge(source.id, toward: toward, from: from, amount: amount, prompt: prompt,
                                        settings: decoderOptions.settings, seed: seed)
            try decoderOptions.deliver(made, to: url)
        }
    }
}

/// Filters shared by list and search.
struct FilterOptions: ParsableArguments {
    @Option(help: "Only this kind (repeatable): text-to-image, variation, interpolation, text-diff, source.")
    var kind: [String] = []

    @Option(help: "Only generations made since this date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, local time; or ISO 8601).")
    var since: String?

    func filter(dim: Int? = nil) throws -> GenerationFilter {
        let kinds = try kind.map { name -> GenerationKind in
            guard let k = GenerationKind(rawValue: name) else {
                throw ValidationError("unknown --kind '\(name)' (one of \(GenerationKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return k
        }
        return GenerationFilter(kinds: kinds.isEmpty ? nil : kinds, since: try since.map { try Store.timestamp(parsing: $0) }, dim: dim)
    }
}

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find stored generations by meaning: rank them by similarity in CLIP image-embedding space.",
        discussion: """
        The query is a text (its CLIP text embedding from the prior's text encoder), an image (--image, through
        the CLIP vision encoder) or a stored generation (--like ID, its own embedding). Image queries compare the
        CLIP embeddings of the finished pictures. Text queries score each generation by its picture's embedding
        (what was drawn) plus, at half weight, the embedding the decoder was given (what was meant); a score is
        the cosine when only one of them is stored. Only embeddings of the query's width are compared (other
        CLIP models live in other spaces).
        Examples:
          unclip search "a red lighthouse"
          unclip search --image photo.png --limit 5
          unclip search --like 12 --kind variation --since 2025-01-01
        """)

    @Argument(help: "The text to search for.")
    var text: String?

    @Option(help: "A PNG to search for images like.")
    var image: String?

    @Option(help: "A stored generation to search for images like (it is listed first).")
    var like: String?

    @Option(help: "How many results.")
    var limit = 10

    @OptionGroup var filterOptions: FilterOptions
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard [text != nil, image != nil, like != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of TEXT, --image or --like ID")
        }
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
        if let like { _ = try generationID(like) }
    }

    func run() throws {
        let store = try storeOptions.open(.read)
        let query: [Float]
        if let like {
            let g = try store.generation(generationID(like))
            query = try g.searchEmbedding ?? g.requireEmbedding()
        } else {
            let studio = try modelOptions.studio(store: store)
            query = try text.map { try studio.textEmbedding($0) } ?? studio.imageEmbedding(png: URL(fileURLWithPath: image!))
        }
        // Text queries also weigh what each generation was meant to be (see SearchRanking).
        let index = try SearchIndex.load(from: store, filter: filterOptions.filter(dim: query.count),
                                         ranking: text != nil ? .pictureAndDecoder : .picture)
        let hits = try index.search(query, limit: limit)
        var rows: [[String: Any]] = []
        for hit in hits {
            let g = try store.generation(hit.id)
            rows.append(["id": hit.id, "score": Double(hit.score), "kind": g.kind.rawValue, "prompt": g.prompt ?? NSNull(), "image": g.imageURL.path])
        }
        if storeOptions.json { return try printJSONArray(rows) }
        if rows.isEmpty { return print("no stored generations with \(query.count)-value embeddings match") }
        for r in rows {
            print(String(format: "%6ld  %.4f  %@  %@", r["id"] as! Int64, r["score"] as! Double, quoted(r["prompt"] as? String), r["image"] as! String))
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List stored generations, newest first.")

    @Option(help: "How many (0 = all).")
    var limit = 20

    @OptionGroup var filterOptions: FilterOptions
    @OptionGroup var storeOptions: StoreOptions

    func run() throws {
        let store = try storeOptions.open(.read)
        let rows = try store.generations(filterOptions.filter(), limit: limit > 0 ? limit : nil)
        if storeOptions.json { return try printJSONArray(rows.map { try GenerationRecords.describe($0, store: store, detailed: false) }) }
        for g in rows {
            let parents = g.parents.map { "\($0.role) \($0.id)\($0.exists ? "" : " (removed)")" }.joined(separator: ", ")
            print(String(format: "%6ld  %@  %@  seed %@  %@%@", g.id, g.kind.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0), String(g.createdAt.prefix(19)),
                         (g.seed.map { "\($0)" } ?? "-").padding(toLength: 10, withPad: " ", startingAt: 0), quoted(g.prompt), parents.isEmpty ? "" : "  [\(parents)]"))
        }
        let total = try store.count(filterOptions.filter())
        if total > rows.count { warn("(\(rows.count) of \(total); --limit 0 lists all)") }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Everything recorded about one generation: settings, parents, children, the prior's candidates and scores.")

    @Argument(help: "The generation's id.")
    var id: String

    @OptionGroup var storeOptions: StoreOptions

    func run() throws {
        let store = try storeOptions.open(.read)
        let g = try store.generation(generationID(id))
        let record = try GenerationRecords.describe(g, store: store, detailed: true)
        if storeOptions.json { return try printJSON(record) }
        print("generation \(g.id) (\(g.kind.rawValue)), made \(g.createdAt)\(g.seconds.map { String(format: " in %.1f s", $0) } ?? "")")
        if let prompt = g.prompt { print("prompt: \(quoted(prompt))") }
        if let seed = g.seed { print("seed: \(seed)") }
        print("image: \(g.imageURL.path) (\(g.width)x\(g.height), \(g.fileBytes) bytes, sha256 \(g.sha256))\((record["image_present"] as? Bool) == false ? " — MISSING" : "")")
        if let dim = g.dim {
            print(String(format: "embedding: %d values, norm %.4f (what the decoder drew)", dim, record["embedding_norm"] as? Double ?? 0))
        } else {
            print("embedding: none (plain Stable Diffusion has no image-embedding path)")
        }
        if let p = g.pictureEmbedding {
            print("picture embedding: \(p.count) values, the finished picture through \(g.settings.clipModel ?? "the model's image encoder") (search ranks it)")
        } else if g.dim == nil {
            print("picture embedding: none (no CLIP image encoder; pass --clip DIR when generating), so search does not see it")
        }
        if let strength = g.settings.strength {
            print("edit: init image \(g.settings.initImage ?? "?") (sha256 \(g.settings.initSHA256?.prefix(16) ?? "?")), strength \(strength)")
        }
        if let model = record["model"] as? [String: Any] { print("model: \(model["path"] ?? "?") (fingerprint \(String(describing: model["fingerprint"] ?? "").prefix(16)))") }
        for p in g.parents { print("parent (\(p.role)): \(p.id)\(p.exists ? "" : " (removed)")") }
        if let children = record["children"] as? [Int64], !children.isEmpty { print("children: \(children.map(String.init).joined(separator: ", "))") }
        if let prior = record["prior"] as? [String: Any], let scores = prior["scores"] as? [Double], let chosen = prior["chosen"] as? Int {
            print("prior candidates (CLIP score with the prompt): " + scores.enumerated().map {
                String(format: "%d: %.4f%@", $0.offset, $0.element, $0.offset == chosen ? " (chosen)" : "")
            }.joined(separator: ", "))
        }
        let settings = try JSONSerialization.data(withJSONObject: record["settings"] ?? [:], options: [.sortedKeys, .withoutEscapingSlashes])
        print("settings: \(String(decoding: settings, as: UTF8.self))")
    }
}

struct Regenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a stored generation again from its settings and seed, and check the PNG is byte-identical.",
        discussion: "Compares the sha256 of the new PNG with the recorded one (exit status 1 if they differ). Puts back the store's file if it was missing.")

    @Argument(help: "The generation's id.")
    var id: String

    @Option(help: "Also write the regenerated PNG here.")
    var output: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func run() throws {
        let store = try storeOptions.open(.read)
        let g = try store.generation(generationID(id))
        let studio = try modelOptions.studio(for: g, store: store, useCache: !cacheOptions.noCache, plain: true)
        let r = try studio.regenerate(g.id, output: output.map { URL(fileURLWithPath: $0) })
        if storeOptions.json {
            try printJSON(["id": r.id, "identical": r.matches, "expected_sha256": r.expectedSHA256, "sha256": r.actualSHA256,
                           "restored": r.restored, "output": output ?? NSNull()])
        } else {
            print(r.matches ? "generation \(r.id): identical (sha256 \(r.actualSHA256))\(r.restored ? "; the store's missing file was put back" : "")"
                            : "generation \(r.id): DIFFERENT (recorded sha256 \(r.expectedSHA256), now \(r.actualSHA256))")
        }
        if !r.matches { throw ExitCode(1) }
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove generations: their rows and their image files.",
        discussion: "Generations made from a removed one keep working: each has its own stored embedding.")

    @Argument(help: "Generation ids.")
    var ids: [String]

    @OptionGroup var storeOptions: StoreOptions

    func run() throws {
        let store = try storeOptions.open()
        var removed: [[String: Any]] = []
        for text in ids {
            let id = try generationID(text)
            let file = try store.remove(id)
            removed.append(["id": id, "image": file.path])
            if !storeOptions.json { print("removed \(id) (\(file.path))") }
        }
        if storeOptions.json { try printJSONArray(removed) }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a generation out of the store: <id>.png, <id>.safetensors (image_embeds, prior candidates) and <id>.json (its record).",
        discussion: "The .safetensors file works with `unclip vary --embedding`.")

    @Argument(help: "The generation's id.")
    var id: String

    @Option(help: "The folder to write into (created if needed).")
    var to: String

    @OptionGroup var storeOptions: StoreOptions

    func run() throws {
        let store = try storeOptions.open(.read)
        let files = try GenerationRecords.export(generationID(id), from: store, to: URL(fileURLWithPath: to))
        if storeOptions.json { return try printJSON(["id": try generationID(id), "files": files.map(\.path)]) }
        for f in files { print(f.path) }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the store: image files without rows, rows without image files, leftovers of interrupted runs.",
        discussion: "Exit status 1 when something is wrong. --clean removes leftovers (never rows); --verify also re-hashes every image.")

    @Flag(help: "Remove leftover files (orphan images, stale temporary files).")
    var clean = false

    @Flag(help: "Re-hash every image and compare with the recorded sha256.")
    var verify = false

    @OptionGroup var storeOptions: StoreOptions

    func run() throws {
        let store = try storeOptions.open(clean ? .readWrite : .read)
        let r = try store.check(verify: verify, clean: clean)
        let count = try store.count()
        if storeOptions.json {
            try printJSON(["generations": count, "schema_version": try store.storedSchemaVersion(), "clean": r.isClean,
                           "stale_temporary_files": r.staleTemporaryFiles, "orphan_files": r.orphanFiles,
                           "missing_images": r.missingImages, "changed_images": r.changedImages])
        } else {
            print("\(store.url.path): \(count) generations, schema version \(try store.storedSchemaVersion())")
            if r.isClean { print("consistent") }
            if !r.orphanFiles.isEmpty { print("image files without a generation\(clean ? " (removed)" : ""): \(r.orphanFiles.joined(separator: ", "))") }
            if !r.staleTemporaryFiles.isEmpty { print("stale temporary files\(clean ? " (removed)" : ""): \(r.staleTemporaryFiles.joined(separator: ", "))") }
            if !r.missingImages.isEmpty { print("generations whose image is missing (unclip regenerate ID puts it back): \(r.missingImages.map(String.init).joined(separator: ", "))") }
            if !r.changedImages.isEmpty { print("generations whose image changed: \(r.changedImages.map(String.init).joined(separator: ", "))") }
        }
        let leftovers = clean ? false : !(r.orphanFiles.isEmpty && r.staleTemporaryFiles.isEmpty)
        if leftovers || !r.missingImages.isEmpty || !r.changedImages.isEmpty { throw ExitCode(1) }
    }
}

/// A prompt for one-line listings.
func quoted(_ text: String?) -> String {
    guard let text else { return "-" }
    return "\"" + (text.count > 60 ? text.prefix(57) + "…" : text) + "\""
}

/// Prints a JSON array on stdout with stable key order.
func printJSONArray(_ rows: [[String: Any]]) throws {
    let data = try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}
