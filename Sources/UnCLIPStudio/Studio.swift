import Foundation
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPStore
import UnCLIPTensor
import UnCLIPTokenizer
import UnCLIPWeights

/// Whether a cached stage was used.
public enum CacheUse: String, Sendable {
    /// Every value this stage needed came from the store.
    case hit
    /// At least one value was computed (and is now stored).
    case miss
    /// The cache was bypassed (--no-cache).
    case off
}

/// What the caches did for one generation.
public struct CacheReport: Sendable {
    public var text: CacheUse
    public var prior: CacheUse
}

/// A generation just made and recorded.
public struct MadeImage: Sendable {
    public let generation: StoredGeneration
    /// Text-to-image only: which stages came from the cache.
    public let cache: CacheReport?
    /// Text-to-image only: the prior candidates' CLIP scores and the chosen one.
    public let priorScores: [Float]
    public let priorChoice: Int
    /// The decoder's final latents (for --save-latents).
    public let latents: Tensor?
}

/// The result of `regenerate`.
public struct Regeneration: Sendable {
    public let id: Int64
    public let expectedSHA256: String
    public let actualSHA256: String
    /// The store's image file was missing and has been put back.
    public let restored: Bool
    public var matches: Bool { expectedSHA256 == actualSHA256 }
}

/// Generation with memory: every image made through a Studio is recorded in its store, and the text
/// encodings and prior runs it computes are cached there and reused.
public final class Studio {
    /// What the model folder holds.
    public enum Engine {
        /// Stable unCLIP: prior → image embedding → decoder.
        case unclip(StableUnCLIPPipeline)
        /// Plain Stable Diffusion: no image embedding path (text-to-image and edits only).
        case stableDiffusion(StableDiffusionPipeline)
    }

    public let store: Store
    public let engine: Engine
    /// Embeds finished images of a plain Stable Diffusion model (its own image_encoder/, or --clip), so that
    /// search covers them; nil = they are recorded without an embedding.
    public let clip: CLIPImageEmbedder?
    /// The folders the pipeline was loaded from (model, then the separate prior if any).
    public let folders: [URL]
    /// Read the caches (false = --no-cache: compute everything; results are still stored).
    public var useCache: Bool
    public var progress: ProgressHandler?
    /// Receives decoded x0 previews every `settings.previewEvery` steps.
    public var preview: PreviewHandler?
    public var onWarning: (String) -> Void = { _ in }

    /// Loads either kind of model folder. `clip` (a folder with image_encoder/ and feature_extractor/, or a
    /// CLIP vision model folder) embeds the images of a plain Stable Diffusion model.
    public init(store: Store, model: URL, prior: URL? = nil, variant: String? = nil, clip: URL? = nil, useCache: Bool = true) throws {
        self.store = store
        if UnCLIPDecoder.isUnCLIP(model) {
            engine = .unclip(try StableUnCLIPPipeline(model: model, prior: prior, variant: variant))
            self.clip = nil
        } else {
            engine = .stableDiffusion(try StableDiffusionPipeline(model: model, variant: variant))
            if let clip {
                self.clip = try CLIPImageEmbedder(folder: clip, variant: variant)
            } else {
                self.clip = CLIPImageEmbedder.isPresent(in: model) ? try CLIPImageEmbedder(folder: model, variant: variant) : nil
            }
        }
        folders = [model] + (prior.map { [$0] } ?? [])
        self.useCache = useCache
    }

    /// The Stable unCLIP pipeline; plain Stable Diffusion folders have no image-embedding path.
    public var pipeline: StableUnCLIPPipeline {
        get throws {
            guard case let .unclip(p) = engine else {
                throw StoreError.invalid("\(folders[0].path) is a plain Stable Diffusion folder (no image_normalizer): it has no image-embedding path, so it cannot make variations, interpolations or text diffs; use generate or edit")
            }
            return p
        }
    }

    /// The latent denoiser of either kind of model.
    var base: LatentDenoiser {
        switch engine {
        case let .unclip(p): return p.decoder.base
        case let .stableDiffusion(p): return p.base
        }
    }

    // MARK: - Model identity

    private var fingerprintValue: String?
    private var modelValue: ModelRecord?

    /// The fingerprint of the loaded model's folders (computed once).
    public func fingerprint() throws -> String {
        if let fingerprintValue { return fingerprintValue }
        let f = try ModelFingerprint.of(folders)
        fingerprintValue = f
        return f
    }

    /// The loaded model's row, registering it on first use (needs a writable store).
    public func modelRecord() throws -> ModelRecord {
        if let modelValue { return modelValue }
        let m = try store.registerModel(fingerprint: fingerprint(), path: folders[0].path, priorPath: folders.count > 1 ? folders[1].path : nil)
        modelValue = m
        return m
    }

    /// The row if the model is already known (read-only stores can still use their caches).
    private func knownModel() throws -> ModelRecord? {
        if let modelValue { return modelValue }
        return store.isWritable ? try modelRecord() : try store.model(fingerprint: fingerprint())
    }

    var embeddingDim: Int { get throws { try pipeline.decoder.embeddingDim } }
    var modelName: String { folders[0].lastPathComponent }

    // MARK: - Cached encoders

    private func requirePrior() throws -> PriorPipeline {
        guard let prior = try pipeline.prior else {
            throw WeightError.missingFile(path: folders[0].appendingPathComponent("prior").path,
                                          what: "prior (this model folder has none; pass --prior with a Karlo-style prior folder)")
        }
        return prior
    }

    private func cachedPriorText(_ prompt: String, model: ModelRecord?) throws -> PriorTextEncoding? {
        guard useCache, let model, let e = try store.textEncoding(modelID: model.id, prompt: prompt, encoder: .prior),
              let embeds = e.textEmbeds, let mask = e.mask else { return nil }
        return PriorTextEncoding(textEmbeds: Tensor(shape: [1, embeds.count], data: embeds),
                                 hiddenStates: Tensor(shape: [1, e.tokens, e.width], data: e.hiddenStates), mask: mask)
    }

    private func savePriorText(_ t: PriorTextEncoding, prompt: String, model: ModelRecord?) throws {
        guard let model, store.isWritable else { return }
        let h = t.hiddenStates
        try store.saveTextEncoding(CachedTextEncoding(tokens: h.dim(-2), width: h.dim(-1), hiddenStates: h.scalars,
                                                      textEmbeds: t.textEmbeds.scalars, mask: t.mask),
                                   modelID: model.id, prompt: prompt, encoder: .prior)
    }

    private func cachedDecoderText(_ prompt: String, model: ModelRecord?) throws -> Tensor? {
        guard useCache, let model, let e = try store.textEncoding(modelID: model.id, prompt: prompt, encoder: .decoder) else { return nil }
        return Tensor(shape: [1, e.tokens, e.width], data: e.hiddenStates)
    }

    private func saveDecoderText(_ t: Tensor, prompt: String, model: ModelRecord?) throws {
        guard let model, store.isWritable else { return }
        try store.saveTextEncoding(CachedTextEncoding(tokens: t.dim(-2), width: t.dim(-1), hiddenStates: t.scalars),
                                   modelID: model.id, prompt: prompt, encoder: .decoder)
    }

    /// The CLIP text embedding (`text_embeds` of the prior's text encoder) of a text, through the cache.
    public func textEmbedding(_ text: String) throws -> [Float] {
        let prior = try requirePrior()
        let model = try knownModel()
        if let cached = try cachedPriorText(text, model: model) { return cached.textEmbeds.scalars }
        let e = try prior.encode(text, onWarning: onWarning)
        try savePriorText(e, prompt: text, model: model)
        return e.textEmbeds.scalars
    }

    /// The CLIP image embedding of a PNG (the model's feature extractor and vision encoder).
    public func imageEmbedding(png: URL) throws -> [Float] {
        try pipeline.embed(image: PNG.read(png)).scalars
    }

    /// The CLIP embedding of a finished picture, which search ranks: through the model's own image encoder, or
    /// --clip for plain Stable Diffusion; nil without either.
    private func pictureEmbedding(_ image: RGBImage) throws -> [Float]? {
        switch engine {
        case let .unclip(p): return try p.decoder.imageEmbedder?.embed(image).scalars
        case .stableDiffusion: return try clip?.embed(image).scalars
        }
    }

    // MARK: - Stages through the cache

    /// Fills `stages` from the cache; returns the prior cache key.
    private func loadStages(_ stages: inout PipelineStages, prompt: String, negative: String, priorSettings: PriorSettings?,
                            seed: UInt64, model: ModelRecord?) throws -> PriorRunKey? {
        var key: PriorRunKey?
        if let p = priorSettings, let model {
            key = PriorRunKey(modelID: model.id, prompt: prompt, seed: seed, steps: p.steps, guidance: p.guidanceScale,
                              candidates: p.candidates, scheduler: try schedulerName(try requirePrior().schedulerConfig))
        }
        guard useCache else { return key }
        if let key, let run = try store.priorRun(key), run.dim == (try embeddingDim), run.count == key.candidates {
            stages.prior = PriorResult(candidates: Tensor(shape: [run.count, run.dim], data: run.candidates),
                                       scores: run.scores, chosenIndex: run.chosenIndex)
            stages.priorDraws = run.draws
        } else if priorSettings != nil {
            stages.priorText = try cachedPriorText(prompt, model: model)
            stages.priorUnconditional = try cachedPriorText("", model: model)
        }
        stages.decoderPrompt = try cachedDecoderText(prompt, model: model)
        stages.decoderNegative = try cachedDecoderText(negative, model: model)
        if stages.decoderPrompt != nil { warnIfTruncated(prompt) }
        return key
    }

    /// The text encoders warn when CLIP's window cuts a prompt; a cached encoding must warn the same way.
    private func warnIfTruncated(_ prompt: String) {
        let t = base.tokenizer(prompt, maxLength: base.textEncoderConfig.maxPositionEmbeddings)
        if t.droppedTokens > 0 {
            onWarning("the prompt is \(t.tokenCount) tokens; CLIP reads \(t.ids.count), so the last \(t.droppedTokens) were dropped")
        }
    }

    /// Stores what the pipeline computed; returns the text cache use and the prior run id.
    private func saveStages(before: PipelineStages, after: PipelineStages, prompt: String, negative: String,
                            key: PriorRunKey?, model: ModelRecord?) throws -> (text: CacheUse, priorRunID: Int64?) {
        var computedText = false
        if before.priorText == nil, let t = after.priorText { computedText = true; try savePriorText(t, prompt: prompt, model: model) }
        if before.priorUnconditional == nil, let t = after.priorUnconditional { computedText = true; try savePriorText(t, prompt: "", model: model) }
        if before.decoderPrompt == nil, let t = after.decoderPrompt { computedText = true; try saveDecoderText(t, prompt: prompt, model: model) }
        if before.decoderNegative == nil, let t = after.decoderNegative { computedText = true; try saveDecoderText(t, prompt: negative, model: model) }
        var runID: Int64?
        if let key, let r = after.prior {
            if before.prior != nil {
                runID = try store.priorRun(key)?.id
            } else if store.isWritable {
                runID = try store.savePriorRun(key, dim: try embeddingDim, candidates: r.candidates.scalars, scores: r.scores,
                                               chosenIndex: r.chosenIndex, draws: after.priorDraws ?? [], seconds: nil)
            }
        }
        return (useCache ? (computedText ? .miss : .hit) : .off, runID)
    }

    // MARK: - Making images

    /// Prompt → (cached) text encodings → (cached) prior → decoder → PNG recorded in the store.
    /// A plain Stable Diffusion model goes prompt → decoder, and the image is recorded with its --clip embedding.
    public func generate(prompt: String, priorSettings: PriorSettings, settings: DecoderSettings, seed: UInt64) throws -> MadeImage {
        let start = DispatchTime.now().uptimeNanoseconds
        let model = try modelRecord()
        if case .stableDiffusion = engine {
            let g = try renderPlain(prompt: prompt, settings: settings, seed: seed, initImage: nil)
            let new = NewGeneration(kind: .textToImage, modelID: model.id, prompt: prompt, settings: try plainSettings(settings), seed: seed,
                                    embedding: nil, pictureEmbedding: try pictureEmbedding(g.image), width: g.image.width, height: g.image.height,
                                    seconds: seconds(since: start))
            return MadeImage(generation: try record(new, image: g.image), cache: nil, priorScores: [], priorChoice: 0, latents: g.latents)
        }
        let (g, report, runID) = try renderTextToImage(prompt: prompt, priorSettings: priorSettings, settings: settings,
                                                      seed: seed, model: model)
        var recorded = try recordedSettings(settings)
        recorded.priorSteps = priorSettings.steps
        recorded.priorGuidance = priorSettings.guidanceScale
        recorded.priorCandidates = priorSettings.candidates
        let new = NewGeneration(kind: .textToImage, modelID: model.id, prompt: prompt, settings: recorded, seed: seed,
                                priorRunID: runID, embedding: g.imageEmbeds.scalars, pictureEmbedding: try pictureEmbedding(g.image),
                                width: g.image.width, height: g.image.height,
                                seconds: seconds(since: start))
        let stored = try record(new, image: g.image)
        return MadeImage(generation: stored, cache: report, priorScores: g.prior?.scores ?? [], priorChoice: g.prior?.chosenIndex ?? 0,
                         latents: g.latents)
    }

    private func renderTextToImage(prompt: String, priorSettings: PriorSettings, settings: DecoderSettings, seed: UInt64,
                                   model: ModelRecord?, initImage: RGBImage? = nil) throws -> (Generation, CacheReport, Int64?) {
        _ = try requirePrior()
        let negative = settings.negativePrompt ?? ""
        var stages = PipelineStages()
        let key = try loadStages(&stages, prompt: prompt, negative: negative, priorSettings: priorSettings, seed: seed, model: model)
        let before = stages
        let g = try initImage.map {
            try pipeline.imageToImage(prompt: prompt, initImage: $0, priorSettings: priorSettings, settings: settings, seed: seed,
                                      stages: &stages, progress: progress, preview: preview, onWarning: onWarning)
        } ?? pipeline.textToImage(prompt: prompt, priorSettings: priorSettings, settings: settings, seed: seed,
                                  stages: &stages, progress: progress, preview: preview, onWarning: onWarning)
        let (text, runID) = try saveStages(before: before, after: stages, prompt: prompt, negative: negative, key: key, model: model)
        let prior: CacheUse = useCache ? (before.prior != nil ? .hit : .miss) : .off
        return (g, CacheReport(text: text, prior: prior), runID)
    }

    private func renderVariation(embedding: [Float], prompt: String, settings: DecoderSettings, seed: UInt64,
                                 model: ModelRecord?) throws -> Generation {
        guard embedding.count == (try embeddingDim) else {
            throw StoreError.invalid("the embedding has \(embedding.count) values; this model's decoder takes \(try embeddingDim) (it was made with another CLIP model)")
        }
        let negative = settings.negativePrompt ?? ""
        var stages = PipelineStages()
        _ = try loadStages(&stages, prompt: prompt, negative: negative, priorSettings: nil, seed: seed, model: model)
        let before = stages
        let g = try pipeline.variation(imageEmbeds: Tensor(shape: [1, embedding.count], data: embedding), prompt: prompt,
                                       settings: settings, seed: seed, stages: &stages, progress: progress, preview: preview,
                                       onWarning: onWarning)
        _ = try saveStages(before: before, after: stages, prompt: prompt, negative: negative, key: nil, model: model)
        return g
    }

    /// Decodes an embedding and records it with the given kind, parents and extra settings.
    private func decodeAndRecord(kind: GenerationKind, embedding: [Float], prompt: String, settings: DecoderSettings,
                                 seed: UInt64, parents: [ParentLink], extra: (inout RecordedSettings) -> Void) throws -> MadeImage {
        let start = DispatchTime.now().uptimeNanoseconds
        let model = try modelRecord()
        let g = try renderVariation(embedding: embedding, prompt: prompt, settings: settings, seed: seed, model: model)
        var recorded = try recordedSettings(settings)
        extra(&recorded)
        let new = NewGeneration(kind: kind, modelID: model.id, prompt: prompt, settings: recorded, seed: seed,
                                embedding: embedding, pictureEmbedding: try pictureEmbedding(g.image), parents: parents,
                                width: g.image.width, height: g.image.height,
                                seconds: seconds(since: start))
        return MadeImage(generation: try record(new, image: g.image), cache: nil, priorScores: [], priorChoice: 0, latents: g.latents)
    }

    /// Plain Stable Diffusion text-to-image or image-to-image (no store caches: its text encoding is cheap).
    private func renderPlain(prompt: String, settings: DecoderSettings, seed: UInt64, initImage: RGBImage?) throws -> Generation {
        guard case let .stableDiffusion(p) = engine else { throw StoreError.invalid("not a plain Stable Diffusion model") }
        return try p.generate(prompt: prompt, settings: settings, seed: seed, initImage: initImage, progress: progress,
                              preview: preview, onWarning: onWarning)
    }

    /// The init picture of an edit, read and hashed (its sha256 ties the edit to it, and to a stored generation
    /// with the same bytes).
    private func readInit(_ url: URL) throws -> (RGBImage, String) {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw StoreError.imageFile(path: url.path, reason: "cannot read the init image")
        }
        return (try PNG.read(url), SHA256.hex(data))
    }

    /// Image-to-image: `initImage` noised to `settings.strength` and denoised toward the prompt, recorded as an
    /// `edit` (linked to the stored generation whose image it is, if any). With Stable unCLIP the decoder's
    /// embedding (the picture's own slerped toward the prompt's by the strength) is recorded; plain Stable
    /// Diffusion has none. The finished picture's CLIP embedding is recorded when an image encoder is at hand.
    public func edit(prompt: String, initImage: URL, priorSettings: PriorSettings, settings: DecoderSettings, seed: UInt64) throws -> MadeImage {
        guard let strength = settings.strength else { throw StoreError.invalid("an edit needs a strength (0–1)") }
        let start = DispatchTime.now().uptimeNanoseconds
        let model = try modelRecord()
        let (picture, digest) = try readInit(initImage)
        let (g, report, runID, embedding) = try renderEdit(prompt: prompt, picture: picture, priorSettings: priorSettings,
                                                           settings: settings, seed: seed, model: model)
        var recorded = try engineSettings(settings)
        if case .unclip = engine {
            recorded.priorSteps = priorSettings.steps
            recorded.priorGuidance = priorSettings.guidanceScale
            recorded.priorCandidates = priorSettings.candidates
        }
        recorded.initImage = initImage.path
        recorded.initSHA256 = digest
        recorded.strength = strength
        // Image-to-image keeps the init picture's size.
        recorded.width = picture.width
        recorded.height = picture.height
        let parents = try store.generationID(sha256: digest).map { [ParentLink(role: "init", id: $0)] } ?? []
        let new = NewGeneration(kind: .edit, modelID: model.id, prompt: prompt, settings: recorded, seed: seed, priorRunID: runID,
                                embedding: embedding, pictureEmbedding: try pictureEmbedding(g.image), parents: parents,
                                width: g.image.width, height: g.image.height,
                                seconds: seconds(since: start))
        return MadeImage(generation: try record(new, image: g.image), cache: report, priorScores: g.prior?.scores ?? [],
                         priorChoice: g.prior?.chosenIndex ?? 0, latents: g.latents)
    }

    private func renderEdit(prompt: String, picture: RGBImage, priorSettings: PriorSettings, settings: DecoderSettings, seed: UInt64,
                            model: ModelRecord?) throws -> (Generation, CacheReport?, Int64?, [Float]?) {
        switch engine {
        case .unclip:
            let (g, report, runID) = try renderTextToImage(prompt: prompt, priorSettings: priorSettings, settings: settings,
                                                          seed: seed, model: model, initImage: picture)
            return (g, report, runID, g.imageEmbeds.scalars)
        case .stableDiffusion:
            let g = try renderPlain(prompt: prompt, settings: settings, seed: seed, initImage: picture)
            return (g, nil, nil, nil)
        }
    }

    /// A variation of a stored generation, from its stored image embedding.
    public func vary(_ id: Int64, prompt: String, settings: DecoderSettings, seed: UInt64) throws -> MadeImage {
        let source = try store.generation(id)
        return try decodeAndRecord(kind: .variation, embedding: try source.requireEmbedding(), prompt: prompt, settings: settings, seed: seed,
                                   parents: [ParentLink(role: "source", id: id)]) { _ in }
    }

    /// A variation of an embedding from outside the store (e.g. a .safetensors file); `origin` names it.
    public func vary(embedding: [Float], origin: String, prompt: String, settings: DecoderSettings, seed: UInt64) throws -> MadeImage {
        try decodeAndRecord(kind: .variation, embedding: embedding, prompt: prompt, settings: settings, seed: seed,
                            parents: []) { $0.sourceFile = origin }
    }

    /// Records an outside PNG as a `source` generation with its CLIP image embedding (the same file
    /// imported twice with the same model gives the same generation).
    public func importImage(png: URL) throws -> StoredGeneration {
        let start = DispatchTime.now().uptimeNanoseconds
        let model = try modelRecord()
        guard let data = FileManager.default.contents(atPath: png.path) else {
            throw StoreError.imageFile(path: png.path, reason: "cannot read it")
        }
        let digest = SHA256.hex(data)
        if let existing = try store.generationID(kind: .source, sha256: digest, modelID: model.id) {
            return try store.generation(existing)
        }
        let image = try PNG.read(png)
        let embedding = try pipeline.embed(image: image).scalars
        let temp = try store.temporaryImageURL()
        do { try data.write(to: temp) } catch {
            unlink(temp.path)
            throw StoreError.imageFile(path: temp.path, reason: "cannot copy the image into the store (\(error.localizedDescription))")
        }
        var settings = RecordedSettings()
        settings.sourceFile = png.path
        settings.modelName = modelName
        settings.width = image.width
        settings.height = image.height
        let new = NewGeneration(kind: .source, modelID: model.id, prompt: nil, settings: settings, seed: nil, embedding: embedding,
                                width: image.width, height: image.height, seconds: seconds(since: start))
        return try store.record(new, temporaryImage: temp)
    }

    /// Frames of a spherical interpolation between two stored generations' embeddings: `frames` images
    /// (both ends included, t = i / (frames − 1)), all decoded with the same seed so only the embedding moves.
    public func interpolate(from a: Int64, to b: Int64, frames: Int, prompt: String, settings: DecoderSettings,
                            seed: UInt64) throws -> [MadeImage] {
        guard frames >= 2 else { throw StoreError.invalid("--frames must be at least 2 (the two ends)") }
        let ga = try store.generation(a), gb = try store.generation(b)
        let ea = try ga.requireEmbedding(), eb = try gb.requireEmbedding()
        guard ea.count == eb.count else {
            throw StoreError.invalid("generation \(a) has a \(ea.count)-value embedding and \(b) a \(eb.count)-value one: they come from different CLIP models")
        }
        var out: [MadeImage] = []
        for i in 0..<frames {
            let t = Double(i) / Double(frames - 1)
            let e = try EmbeddingMath.slerp(ea, eb, t: t)
            out.append(try decodeAndRecord(kind: .interpolation, embedding: e, prompt: prompt, settings: settings, seed: seed,
                                           parents: [ParentLink(role: "from", id: a), ParentLink(role: "to", id: b)]) {
                $0.frame = i; $0.frames = frames; $0.t = t
            })
        }
        return out
    }

    /// DALL·E 2's text diff: turns a stored generation's embedding by `amount` toward the direction
    /// text_embeds(toward) − text_embeds(from) (`from` defaults to the generation's own prompt), then decodes it.
    public func nudge(_ id: Int64, toward: String, from: String?, amount: Float, prompt: String, settings: DecoderSettings,
                      seed: UInt64) throws -> MadeImage {
        guard (0...1).contains(amount) else { throw StoreError.invalid("--amount must be in 0...1 (got \(amount)); DALL·E 2 uses 0.25-0.5") }
        let source = try store.generation(id)
        guard let baseline = from ?? source.prompt.flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw StoreError.invalid("generation \(id) has no prompt to start from; pass --from TEXT")
        }
        let e = try EmbeddingMath.textDiff(image: try source.requireEmbedding(), toward: textEmbedding(toward), from: textEmbedding(baseline),
                                           amount: Double(amount))
        return try decodeAndRecord(kind: .textDiff, embedding: e, prompt: prompt, settings: settings, seed: seed,
                                   parents: [ParentLink(role: "source", id: id)]) {
            $0.toward = toward; $0.from = baseline; $0.amount = amount
        }
    }

    /// Makes a stored generation again from its recorded settings and seed, and compares the PNG's sha256
    /// with the recorded one. A missing store file is put back when the bytes match. `output` gets a copy.
    public func regenerate(_ id: Int64, output: URL? = nil) throws -> Regeneration {
        let g = try store.generation(id)
        let s = g.settings
        guard g.kind != .source else { throw StoreError.invalid("generation \(id) is an imported image, not a generated one; there is nothing to regenerate") }
        guard let seed = g.seed else { throw StoreError.invalid("generation \(id) has no seed recorded") }
        if let modelID = g.modelID, let recordedModel = try store.model(id: modelID), recordedModel.fingerprint != (try fingerprint()) {
            onWarning("generation \(id) was made with the model at \(recordedModel.path) (fingerprint \(recordedModel.fingerprint.prefix(12))); the loaded model differs (\(try fingerprint().prefix(12))), so the image may differ")
        }
        let model = try knownModel()
        let settings = decoderSettings(s)
        func priorSettings() throws -> PriorSettings {
            guard let steps = s.priorSteps, let guidance = s.priorGuidance, let candidates = s.priorCandidates else {
                throw StoreError.invalid("generation \(id) lacks its prior settings")
            }
            return PriorSettings(steps: steps, guidanceScale: guidance, candidates: candidates)
        }
        let image: RGBImage
        switch (g.kind, engine) {
        case (.edit, _):
            guard let path = s.initImage, let expected = s.initSHA256 else { throw StoreError.invalid("generation \(id) lacks its init image") }
            let (picture, digest) = try readInit(URL(fileURLWithPath: path))
            guard digest == expected else {
                throw StoreError.imageFile(path: path, reason: "generation \(id)'s init image has changed since the edit (sha256 \(digest.prefix(12)), recorded \(expected.prefix(12)))")
            }
            image = try renderEdit(prompt: g.prompt ?? "", picture: picture, priorSettings: engineIsUnCLIP ? try priorSettings() : PriorSettings(),
                                   settings: settings, seed: seed, model: model).0.image
        case (.textToImage, .stableDiffusion):
            image = try renderPlain(prompt: g.prompt ?? "", settings: settings, seed: seed, initImage: nil).image
        case (.textToImage, .unclip):
            image = try renderTextToImage(prompt: g.prompt ?? "", priorSettings: try priorSettings(), settings: settings, seed: seed,
                                          model: model).0.image
        default:
            image = try renderVariation(embedding: try g.requireEmbedding(), prompt: g.prompt ?? "", settings: settings, seed: seed,
                                        model: model).image
        }
        // A read-only store cannot take temporary files; compare in the system's temporary folder then.
        let temp = store.isWritable ? try store.temporaryImageURL()
            : FileManager.default.temporaryDirectory.appendingPathComponent("unclip-regenerate-\(getpid())-\(id).png")
        defer { unlink(temp.path) }
        try PNG.write(image, to: temp, textChunks: [("parameters", parametersText(kind: g.kind, prompt: g.prompt ?? "", settings: s, seed: seed, parents: g.parents))])
        guard let data = FileManager.default.contents(atPath: temp.path) else {
            throw StoreError.imageFile(path: temp.path, reason: "cannot read the regenerated image back")
        }
        let digest = SHA256.hex(data)
        if let output { try copyOut(temp, to: output) }
        var restored = false
        if digest == g.sha256, !FileManager.default.fileExists(atPath: g.imageURL.path), store.isWritable {
            try store.restoreImage(id, from: temp)
            restored = true
        }
        return Regeneration(id: id, expectedSHA256: g.sha256, actualSHA256: digest, restored: restored)
    }

    // MARK: - Recording

    private func record(_ new: NewGeneration, image: RGBImage) throws -> StoredGeneration {
        let temp = try store.temporaryImageURL()
        do {
            try PNG.write(image, to: temp, textChunks: [("parameters", parametersText(kind: new.kind, prompt: new.prompt ?? "", settings: new.settings,
                                                                                      seed: new.seed ?? 0, parents: new.parents))])
        } catch {
            unlink(temp.path)
            throw error
        }
        return try store.record(new, temporaryImage: temp)
    }

    private var engineIsUnCLIP: Bool { if case .unclip = engine { return true } else { return false } }

    /// The decoder settings as recorded for a Stable unCLIP generation.
    private func recordedSettings(_ d: DecoderSettings) throws -> RecordedSettings {
        _ = try pipeline
        return try engineSettings(d)
    }

    /// The settings of a plain Stable Diffusion generation (with the --clip model that embedded it).
    private func plainSettings(_ d: DecoderSettings) throws -> RecordedSettings {
        var s = try engineSettings(d)
        s.clipModel = clip?.folder.path
        return s
    }

    /// Decoder settings either engine records; the noise level only where there is an image embedding.
    private func engineSettings(_ d: DecoderSettings) throws -> RecordedSettings {
        var s = RecordedSettings()
        s.steps = d.steps
        s.guidance = d.guidanceScale
        s.noiseLevel = engineIsUnCLIP ? d.noiseLevel : nil
        s.negativePrompt = d.negativePrompt
        s.width = d.width ?? base.defaultSize
        s.height = d.height ?? base.defaultSize
        s.scheduler = d.scheduler
        s.schedulerName = d.scheduler ?? base.schedulerName
        s.modelName = modelName
        if !engineIsUnCLIP { s.clipModel = clip?.folder.path }
        return s
    }

    private func decoderSettings(_ s: RecordedSettings) -> DecoderSettings {
        var d = DecoderSettings()
        if let v = s.steps { d.steps = v }
        if let v = s.guidance { d.guidanceScale = v }
        if let v = s.noiseLevel { d.noiseLevel = v }
        d.strength = s.strength
        d.negativePrompt = s.negativePrompt
        d.width = s.width
        d.height = s.height
        d.scheduler = s.scheduler
        return d
    }

    private func seconds(since start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
}

/// Copies a file to `destination` through a temporary name, so a reader never sees half of it.
public func copyOut(_ source: URL, to destination: URL) throws {
    guard let data = FileManager.default.contents(atPath: source.path) else {
        throw StoreError.imageFile(path: source.path, reason: "cannot read it")
    }
    do { try AtomicFile.write(data, to: destination) } catch {
        throw StoreError.imageFile(path: destination.path, reason: "cannot write the copy (\(error))")
    }
}

/// The `_class_name` of a scheduler_config.json.
func schedulerName(_ config: URL) throws -> String {
    struct Named: Decodable { let _class_name: String? }
    return (try loadJSONConfig(Named.self, from: config))._class_name ?? "unknown scheduler"
}

/// The AUTOMATIC1111-style "parameters" text stored in each PNG, built only from recorded data so that
/// `regenerate` writes the same bytes (no timestamps, no paths that may change).
public func parametersText(kind: GenerationKind, prompt: String, settings s: RecordedSettings, seed: UInt64, parents: [ParentLink]) -> String {
    var lines = [prompt]
    if let negative = s.negativePrompt, !negative.isEmpty { lines.append("Negative prompt: \(negative)") }
    var fields: [(String, String)] = [
        ("Steps", "\(s.steps ?? 0)"), ("Sampler", s.schedulerName ?? "?"), ("CFG scale", "\(s.guidance ?? 0)"), ("Seed", "\(seed)"),
        ("Size", "\(s.width ?? 0)x\(s.height ?? 0)"), ("Model", s.modelName ?? "?"),
    ]
    func parent(_ role: String) -> String { parents.first { $0.role == role }.map { "\($0.id)" } ?? "?" }
    if let steps = s.priorSteps, kind == .textToImage || kind == .edit {
        fields += [("Prior steps", "\(steps)"), ("Prior guidance", "\(s.priorGuidance ?? 0)"),
                   ("Prior candidates", "\(s.priorCandidates ?? 0)")]
    }
    switch kind {
    case .textToImage:
        break
    case .edit:
        fields += [("Init image", s.initImage ?? "?"), ("Denoising strength", "\(s.strength ?? 0)")]
    case .variation:
        fields.append(("Variation of", parents.isEmpty ? (s.sourceFile ?? "?") : "generation \(parent("source"))"))
    case .interpolation:
        fields += [("Interpolation", "generation \(parent("from")) to \(parent("to"))"),
                   ("Frame", "\(s.frame ?? 0) of \(s.frames ?? 0)"), ("t", String(format: "%.4f", s.t ?? 0))]
    case .textDiff:
        fields += [("Text diff of", "generation \(parent("source"))"), ("Toward", s.toward ?? ""), ("From", s.from ?? ""),
                   ("Amount", "\(s.amount ?? 0)")]
    case .source:
        break
    }
    if let level = s.noiseLevel { fields.append(("Noise level", "\(level)")) }
    lines.append(fields.map { "\($0.0): \($0.1)" }.joined(separator: ", "))
    return lines.joined(separator: "\n")
}
