import ArgumentParser
import Foundation
import UnCLIPPipelines
import UnCLIPStore
import UnCLIPStudio
import UnCLIPWeights

/// --store and --json, taken by every command that touches the store.
struct StoreOptions: ParsableArguments {
    @Option(help: "The store's database file. Default: $UNCLIP_STORE, else $XDG_DATA_HOME/unclip/store.sqlite, else ~/.local/share/unclip/store.sqlite. Images are kept in <name>-images/ beside it.")
    var store: String?

    @Flag(help: "Print machine-readable JSON (commands that make images always print one JSON object per image).")
    var json = false

    var url: URL { store.map { URL(fileURLWithPath: $0) } ?? Store.defaultURL() }

    /// Opens the store, reporting on stderr what the startup check cleaned up.
    func open(_ access: Store.Access = .readWrite) throws -> Store {
        let s = try Store(url: url, access: access)
        let r = s.startupReport
        if !r.staleTemporaryFiles.isEmpty || !r.orphanFiles.isEmpty {
            warn("store: removed \(r.staleTemporaryFiles.count) half-written file(s) and \(r.orphanFiles.count) image file(s) without a generation, left by an interrupted run")
        }
        return s
    }
}

/// --clip, for commands that can run plain Stable Diffusion folders.
struct ClipOptions: ParsableArguments {
    @Option(help: "For plain Stable Diffusion models: a CLIP vision encoder (a folder with image_encoder/ and feature_extractor/, e.g. a Stable unCLIP model, or a CLIPVisionModelWithProjection folder) that embeds each finished image, so that search covers it. Without it such images are stored without an embedding.")
    var clip: String?
}

/// --no-cache, for commands that run the text encoders or the prior.
struct CacheOptions: ParsableArguments {
    @Flag(help: "Compute the text encodings and the prior even when the store has them (results are still stored).")
    var noCache = false
}

extension ModelOptions {
    /// The model for work on stored generations: --model, else the folder the generation was made with
    /// (if it is still there), else the usual default.
    func folders(for generation: StoredGeneration?, in store: Store) throws -> (model: URL, prior: URL?) {
        if model == nil, let modelID = generation?.modelID, let m = try store.model(id: modelID),
           FileManager.default.fileExists(atPath: m.path) {
            return (URL(fileURLWithPath: m.path), prior.map { URL(fileURLWithPath: $0) } ?? m.priorPath.map { URL(fileURLWithPath: $0) })
        }
        if model == nil, ProcessInfo.processInfo.environment["UNCLIP_MODEL"]?.isEmpty ?? true,
           !FileManager.default.fileExists(atPath: PackageLocation.weights.appendingPathComponent("shapes").path),
           let m = try store.latestModel(), FileManager.default.fileExists(atPath: m.path) {
            return (URL(fileURLWithPath: m.path), prior.map { URL(fileURLWithPath: $0) } ?? m.priorPath.map { URL(fileURLWithPath: $0) })
        }
        return (try modelURL(), prior.map { URL(fileURLWithPath: $0) })
    }

    /// A Studio on `store` with the model chosen as above.
    /// `plain`: plain Stable Diffusion folders are welcome (generate, edit, regenerate), with `clip` embedding their images.
    func studio(for generation: StoredGeneration? = nil, store: Store, useCache: Bool = true, plain: Bool = false,
                clip: String? = nil) throws -> Studio {
        let (model, prior) = try folders(for: generation, in: store)
        guard plain || UnCLIPDecoder.isUnCLIP(model) else {
            throw CLIError("\(model.path) is a plain Stable Diffusion folder (no image_normalizer): it has no image-embedding path, so it cannot make variations or work with the store's embeddings; use generate or edit")
        }
        let studio = try Studio(store: store, model: model, prior: prior, variant: variant, clip: clip.map { URL(fileURLWithPath: $0) },
                                useCache: useCache)
        let progress = Progress()
        studio.progress = { progress.update(stage: $0, step: $1, total: $2) }
        studio.onWarning = { warn("warning: \($0)") }
        return studio
    }
}

/// Parses a generation id argument.
func generationID(_ text: String) throws -> Int64 {
    guard let id = Int64(text.hasPrefix("#") ? String(text.dropFirst()) : text), id > 0 else {
        throw ValidationError("'\(text)' is not a generation id (a positive number, as `unclip list` shows)")
    }
    return id
}

/// The JSON line printed for each image a command makes.
func imageJSON(_ made: MadeImage, output: URL?) -> [String: Any] {
    let g = made.generation
    var out: [String: Any] = ["id": g.id, "kind": g.kind.rawValue, "image": g.imageURL.path, "sha256": g.sha256,
                              "output": (output ?? g.imageURL).path, "seconds": g.seconds ?? 0]
    if let seed = g.seed { out["seed"] = seed }
    if !g.parents.isEmpty { out["parents"] = g.parents.map { ["role": $0.role, "id": $0.id] as [String: Any] } }
    if let cache = made.cache {
        out["cache"] = ["text": cache.text.rawValue, "prior": cache.prior.rawValue]
        out["prior_scores"] = made.priorScores
        out["prior_choice"] = made.priorChoice
    }
    if let t = g.settings.t { out["t"] = t }
    return out
}

extension DecoderOptions {
    /// After a stored image is made: the user's extra copy (--output; the store keeps its own), the latents
    /// (--save-latents, beside `url`), and the JSON line.
    func deliver(_ made: MadeImage, to url: URL) throws {
        let copy = output == nil ? nil : url
        if let copy { try copyOut(made.generation.imageURL, to: copy) }
        if saveLatents, let latents = made.latents {
            try SafeTensorsWriter.write([("latents", .float32(latents))], metadata: ["seed": "\(made.generation.seed ?? 0)"],
                                        to: url.deletingPathExtension().appendingPathExtension("latents.safetensors"))
        }
        try printJSON(imageJSON(made, output: copy))
    }
}
