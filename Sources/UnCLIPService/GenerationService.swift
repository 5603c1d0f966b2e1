import Foundation
import UnCLIPEngine
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPSchedulers
import UnCLIPStore
import UnCLIPTensor
import UnCLIPWeights

/// Whether a cached stage was used.
public enum CacheUse: String, Codable, Sendable {
    /// Every value this stage needed came from the store.
    case hit
    /// At least one value was computed (and is now stored).
    case miss
    /// The cache was bypassed.
    case off
}

/// What the caches did for one generation.
public struct CacheReport: Codable, Sendable, Equatable {
    public var text: CacheUse
    public var prior: CacheUse
}

/// A generation just made and recorded.
public struct MadeImage: Sendable {
    public let generation: StoredGeneration
    /// Which of the request's images this is (0-based).
    public let index: Int
    /// Text-to-image and edits with a prior: which stages came from the cache.
    public let cache: CacheReport?
    /// The prior candidates' CLIP scores and the chosen one (text-to-image and edits with a prior).
    public let priorScores: [Float]
    public let priorChoice: Int
    /// The decoder's final latents.
    public let latents: Tensor?
}

/// The result of `regenerate`.
public struct Regeneration: Sendable, Codable {
    public let id: Int64
    public let expectedSHA256: String
    public let actualSHA256: String
    /// The store's image was missing and has been put back.
    public let restored: Bool
    /// The regenerated PNG.
    public let png: Data
    public var matches: Bool { expectedSHA256 == actualSHA256 }
}

/// Generation with memory: one engine and one store. Every request is checked before any work, runs on the
/// engine (one at a time per engine, under `ImageEngine.runLock`), and each finished image is recorded in the
/// store; the text encodings and prior runs it computes are cached there and reused. The CLI, the server and
/// workers all make images through this type.
///
/// Safe to call from concurrent tasks: requests on one engine queue for it; the store serialises its writes.
public final class GenerationService: @unchecked Sendable {
    public let store: any GenerationStore
    public let engine: any ImageEngine
    /// Read the caches (false: compute everything; results are still stored).
    public let useCache: Bool

    public init(store: any GenerationStore, engine: any ImageEngine, useCache: Bool = true) {
        self.store = store
        self.engine = engine
        self.useCache = useCache
    }

    var model: ResolvedModel { engine.model }

    // MARK: - Model identity

    private let identityLock = NSLock()
    private var fingerprintValue: String?
    private var modelValue: ModelRecord?

    /// The fingerprint of the loaded model's folders (computed once).
    public func fingerprint() throws -> String {
        try identityLock.withLock {
            if let fingerprintValue { return fingerprintValue }
            let f = try ModelFingerprint.of(model.folders)
            fingerprintValue = f
            return f
        }
    }

    /// The loaded model's row, registering it on first use (needs a writable store).
    public func modelRecord() throws -> ModelRecord {
        let f = try fingerprint()
        return try identityLock.withLock {
            if let modelValue { return modelValue }
            let m = try store.registerModel(fingerprint: f, path: model.folder.path, priorPath: model.prior?.path)
            modelValue = m
            return m
        }
    }

    /// The row if the model is already known (read-only stores can still use their caches).
    private func knownModel() throws -> ModelRecord? {
        store.isWritable ? try modelRecord() : try store.model(fingerprint: fingerprint())
    }

    /// A1111's "Model hash": the first 10 hex digits of the model's fingerprint.
    public func modelHash() throws -> String { String(try fingerprint().prefix(10)) }

    // MARK: - Running on the engine

    /// Runs `body` with the engine to itself, on at most `options.threads` cores.
    private func exclusive<T>(_ body: () throws -> T) throws -> T {
        engine.runLock.lock()
        defer { engine.runLock.unlock() }
        return try ComputeThreads.$limit.withValue(engine.options.threads) { try body() }
    }

    /// Checks a request's decoder parameters (ranges, scheduler name, memory for the size) without running it:
    /// what a queue calls before it accepts work.
    public func check(_ d: DecoderParameters, strength: Float? = nil) throws {
        _ = try prepare(d, strength: strength)
    }

    /// Checks decoder parameters, the scheduler name and the memory the images will need, before any work.
    func prepare(_ d: DecoderParameters, strength: Float? = nil, size: (Int, Int)? = nil) throws -> DecoderSettings {
        let denoiser = engine.denoiser
        try RequestCheck.check(d, sizeMultiple: max(8, denoiser.vaeScaleFactor))
        if let m = engine.maxNoiseLevel { try RequestCheck.range("noise_level", d.noiseLevel, 0...m) }
        if let strength { try RequestCheck.finite("strength", strength, 0...1) }
        let settings = d.settings(for: model, strength: strength)
        do { try denoiser.validate(settings) } catch let e as SchedulerError {
            throw EngineError.invalidParameter(name: "scheduler", reason: e.description)
        } catch let e as EngineError { throw e } catch {
            throw EngineError.invalidParameter(name: "decoder settings", reason: "\(error)")
        }
        let (w, h) = size ?? (settings.width ?? denoiser.defaultSize, settings.height ?? denoiser.defaultSize)
        try MemoryEstimate.of(engine, width: w, height: h, guided: settings.guidanceScale > 1).check(width: w, height: h)
        return settings
    }

    func sizeWarning(_ settings: DecoderSettings) -> String? {
        Preflight.sizeWarning(width: settings.width ?? engine.nativeSize, height: settings.height ?? engine.nativeSize,
                              native: engine.nativeSize)
    }

    /// Runs each seed on the engine and records its image, calling `delivered` as soon as one is stored.
    /// `firstWarnings` (about the request as a whole) go to the observer once, before the first image. The engine's
    /// `loadWarnings` are the front end's to show when it loads the engine.
    ///
    /// With a `job`, image i is recorded with the link (job, i), and an image the job already recorded (it ran
    /// before a crash) is delivered from the store instead of being made again.
    private func runEach(_ seeds: [UInt64], observer: GenerationObserver?, firstWarnings: [String], job: Int64?,
                         delivered: ((MadeImage) throws -> Void)?,
                         _ make: (Int, UInt64, RunContext, Recorder) throws -> MadeImage) throws -> [MadeImage] {
        var out: [MadeImage] = []
        var said = Set<String>()
        for (i, seed) in seeds.enumerated() {
            let link = job.map { JobLink(job: $0, index: i) }
            if let link, let existing = try store.generationID(job: link) {
                let made = MadeImage(generation: try store.generation(existing), index: i, cache: nil, priorScores: [], priorChoice: 0, latents: nil)
                out.append(made)
                try delivered?(made)
                continue
            }
            let context = RunContext(observer: observer, image: i, images: seeds.count, warned: said)
            if i == 0 { firstWarnings.forEach { context.warning($0) } }
            try context.checkpoint("start", total: seeds.count)
            let made = try make(i, seed, context, Recorder(service: self, job: link))
            said = context.warningsSaid
            out.append(made)
            try delivered?(made)
        }
        return out
    }

    // MARK: - Cached encoders

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
    public func textEmbedding(_ text: String, observer: GenerationObserver? = nil) throws -> [Float] {
        let prior = try engine.requirePrior(for: "a CLIP text embedding")
        let model = try knownModel()
        if let cached = try cachedPriorText(text, model: model) { return cached.textEmbeds.scalars }
        let context = RunContext(observer: observer, image: 0, images: 1)
        let e = try exclusive { try prior.encode(text, onWarning: { context.warning($0) }) }
        try savePriorText(e, prompt: text, model: model)
        return e.textEmbeds.scalars
    }

    /// The CLIP image embedding of a picture (the model's feature extractor and vision encoder).
    public func imageEmbedding(_ picture: PictureSource) throws -> [Float] {
        let image = try readPicture(picture).image
        return try exclusive { try engine.imageEmbedding(image) }
    }

    // MARK: - Stages through the cache

    /// Fills `stages` from the cache; returns the prior cache key.
    private func loadStages(_ stages: inout PipelineStages, prompt: String, negative: String, priorSettings: PriorSettings?,
                            seed: UInt64, model: ModelRecord?, context: RunContext) throws -> PriorRunKey? {
        var key: PriorRunKey?
        if let p = priorSettings, let model, let prior = engine.prior {
            key = PriorRunKey(modelID: model.id, prompt: prompt, seed: seed, steps: p.steps, guidance: p.guidanceScale,
                              candidates: p.candidates, scheduler: try schedulerName(prior.schedulerConfig))
        }
        guard useCache else { return key }
        if let key, let dim = engine.embeddingDim, let run = try store.priorRun(key), run.dim == dim, run.count == key.candidates {
            stages.prior = PriorResult(candidates: Tensor(shape: [run.count, run.dim], data: run.candidates),
                                       scores: run.scores, chosenIndex: run.chosenIndex)
            stages.priorDraws = run.draws
        } else if priorSettings != nil, engine.prior != nil {
            stages.priorText = try cachedPriorText(prompt, model: model)
            stages.priorUnconditional = try cachedPriorText("", model: model)
        }
        stages.decoderPrompt = try cachedDecoderText(prompt, model: model)
        stages.decoderNegative = try cachedDecoderText(negative, model: model)
        if stages.decoderPrompt != nil { warnIfTruncated(prompt, context: context) }
        return key
    }

    /// The text encoders warn when CLIP's window cuts a prompt; a cached encoding must warn the same way.
    private func warnIfTruncated(_ prompt: String, context: RunContext) {
        let d = engine.denoiser
        let t = d.tokenizer(prompt, maxLength: d.textEncoderConfig.maxPositionEmbeddings)
        if t.droppedTokens > 0 {
            context.warning("the prompt is \(t.tokenCount) tokens; CLIP reads \(t.ids.count), so the last \(t.droppedTokens) were dropped")
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
        if let key, let r = after.prior, let dim = engine.embeddingDim {
            if before.prior != nil {
                runID = try store.priorRun(key)?.id
            } else if store.isWritable {
                runID = try store.savePriorRun(key, dim: dim, candidates: r.candidates.scalars, scores: r.scores,
                                               chosenIndex: r.chosenIndex, draws: after.priorDraws ?? [], seconds: nil)
            }
        }
        return (useCache ? (computedText ? .miss : .hit) : .off, runID)
    }

    /// Renders one job through the caches. `priorSettings` nil: no prior stage (decoding a given embedding).
    private func render(_ job: RenderJob, prompt: String, negative: String, priorSettings: PriorSettings?, seed: UInt64,
                        model: ModelRecord?, context: RunContext) throws -> (Generation, CacheReport?, Int64?) {
        var stages = PipelineStages()
        let key = try loadStages(&stages, prompt: prompt, negative: negative, priorSettings: priorSettings, seed: seed,
                                 model: model, context: context)
        let before = stages
        let g = try exclusive { try engine.render(job, stages: &stages, context: context) }
        // NaN or infinite latents (far-out settings) would be recorded as a flat picture; refuse them instead.
        guard g.latents.scalars.allSatisfy(\.isFinite) else { throw EngineError.nonFinite("the decoder's final latents") }
        let (text, runID) = try saveStages(before: before, after: stages, prompt: prompt, negative: negative, key: key, model: model)
        guard priorSettings != nil, engine.prior != nil else { return (g, nil, runID) }
        let prior: CacheUse = useCache ? (before.prior != nil ? .hit : .miss) : .off
        return (g, CacheReport(text: text, prior: prior), runID)
    }

    // MARK: - Requests

    /// Prompt → (cached) text encodings → (cached) prior → decoder → PNG recorded in the store, for each seed.
    public func generate(_ r: TextToImageRequest, observer: GenerationObserver? = nil,
                         delivered: ((MadeImage) throws -> Void)? = nil, job: Int64? = nil) throws -> [MadeImage] {
        try engine.require(.textToImage, for: "make images from text")
        try RequestCheck.prompt("prompt", r.prompt)
        if engine.prior != nil { try RequestCheck.check(r.prior) }
        let settings = try prepare(r.decoder)
        let seeds = try RequestCheck.seeds(r.seeds)
        let model = try modelRecord()
        return try runEach(seeds, observer: observer, firstWarnings: [sizeWarning(settings)].compactMap { $0 },
                           job: job, delivered: delivered) { i, seed, context, record in
            let start = DispatchTime.now().uptimeNanoseconds
            let priorSettings = engine.prior == nil ? nil : r.prior.settings
            let (g, report, runID) = try render(.textToImage(prompt: r.prompt, prior: r.prior.settings, settings: settings, seed: seed),
                                               prompt: r.prompt, negative: settings.negativePrompt ?? "", priorSettings: priorSettings,
                                               seed: seed, model: model, context: context)
            var recorded = try recordedSettings(settings, prior: r.prior)
            let new = NewGeneration(kind: .textToImage, modelID: model.id, prompt: r.prompt, settings: recorded, seed: seed,
                                    priorRunID: runID, embedding: engine.embeddingDim == nil ? nil : g.imageEmbeds.scalars,
                                    pictureEmbedding: try exclusive { try engine.pictureEmbedding(g.image) },
                                    width: g.image.width, height: g.image.height, seconds: seconds(since: start))
            return MadeImage(generation: try record(new, image: g.image), index: i, cache: report,
                             priorScores: g.prior?.scores ?? [], priorChoice: g.prior?.chosenIndex ?? 0, latents: g.latents)
        }
    }

    /// Image-to-image: the picture noised to `strength` and denoised toward the prompt, recorded as an `edit`
    /// (linked to the stored generation whose image it is, if any). With Stable unCLIP the decoder's embedding
    /// (the picture's own slerped toward the prompt's by the strength) is recorded too.
    public func edit(_ r: EditRequest, observer: GenerationObserver? = nil,
                     delivered: ((MadeImage) throws -> Void)? = nil, job: Int64? = nil) throws -> [MadeImage] {
        if r.mask == nil { try engine.require(.imageToImage, for: "edit pictures") } else { try engine.require(.inpaint, for: "inpaint pictures") }
        try RequestCheck.prompt("prompt", r.prompt)
        if engine.prior != nil { try RequestCheck.check(r.prior) }
        if r.decoder.width != nil || r.decoder.height != nil {
            throw EngineError.invalidParameter(name: r.decoder.width != nil ? "width" : "height",
                                               reason: "does not apply to image-to-image, which keeps the picture's size")
        }
        let (picture, digest) = try readPicture(r.picture)
        let mask = try r.mask.map { try readMask($0, for: picture) }
        let settings = try prepare(r.decoder, strength: r.strength, size: (picture.width, picture.height))
        let seeds = try RequestCheck.seeds(r.seeds)
        let model = try modelRecord()
        let parents = try store.generationID(sha256: digest).map { [ParentLink(role: "init", id: $0)] } ?? []
        return try runEach(seeds, observer: observer, firstWarnings: [], job: job, delivered: delivered) { i, seed, context, record in
            let start = DispatchTime.now().uptimeNanoseconds
            let priorSettings = engine.prior == nil ? nil : r.prior.settings
            let (g, report, runID) = try render(.imageToImage(prompt: r.prompt, picture: picture, mask: mask?.mask, prior: r.prior.settings,
                                                              settings: settings, seed: seed),
                                               prompt: r.prompt, negative: settings.negativePrompt ?? "", priorSettings: priorSettings,
                                               seed: seed, model: model, context: context)
            var recorded = try recordedSettings(settings, prior: r.prior)
            recorded.initImage = r.picture.name
            recorded.initSHA256 = digest
            recorded.strength = r.strength
            recorded.maskImage = r.mask?.name
            recorded.maskSHA256 = mask?.sha256
            // Image-to-image keeps the init picture's size.
            recorded.width = picture.width
            recorded.height = picture.height
            let new = NewGeneration(kind: .edit, modelID: model.id, prompt: r.prompt, settings: recorded, seed: seed, priorRunID: runID,
                                    embedding: engine.embeddingDim == nil ? nil : g.imageEmbeds.scalars,
                                    pictureEmbedding: try exclusive { try engine.pictureEmbedding(g.image) }, parents: parents,
                                    width: g.image.width, height: g.image.height, seconds: seconds(since: start))
            return MadeImage(generation: try record(new, image: g.image), index: i, cache: report, priorScores: g.prior?.scores ?? [],
                             priorChoice: g.prior?.chosenIndex ?? 0, latents: g.latents)
        }
    }

    /// Variations: a stored generation's embedding, an outside picture's (recorded first as a `source`), or a
    /// given embedding, decoded with each seed.
    public func vary(_ r: VariationRequest, observer: GenerationObserver? = nil,
                     delivered: ((MadeImage) throws -> Void)? = nil, job: Int64? = nil) throws -> [MadeImage] {
        try engine.require(.decodeEmbedding, for: "make variations")
        try RequestCheck.prompt("prompt", r.prompt)
        let settings = try prepare(r.decoder)
        let seeds = try RequestCheck.seeds(r.seeds)
        let embedding: [Float], parents: [ParentLink], origin: String?
        switch r.source {
        case let .generation(id):
            embedding = try store.generation(id).requireEmbedding()
            parents = [ParentLink(role: "source", id: id)]
            origin = nil
        case let .picture(source):
            let imported = try importPicture(source)
            embedding = try imported.requireEmbedding()
            parents = [ParentLink(role: "source", id: imported.id)]
            origin = nil
        case let .embedding(values, name):
            embedding = values
            parents = []
            origin = name
        }
        try checkEmbedding(embedding, what: "the embedding to vary")
        return try runEach(seeds, observer: observer, firstWarnings: [sizeWarning(settings)].compactMap { $0 }, job: job, delivered: delivered) { i, seed, context, record in
            try decodeAndRecord(kind: .variation, embedding: embedding, prompt: r.prompt, settings: settings, seed: seed,
                                parents: parents, index: i, context: context, record: record) { s in if let origin { s.sourceFile = origin } }
        }
    }

    /// Frames of a spherical interpolation between two stored generations' embeddings: `frames` images (both
    /// ends included, t = i / (frames − 1)), all decoded with one seed so only the embedding moves.
    public func interpolate(_ r: InterpolationRequest, observer: GenerationObserver? = nil,
                            delivered: ((MadeImage) throws -> Void)? = nil, job: Int64? = nil) throws -> [MadeImage] {
        try engine.require(.decodeEmbedding, for: "interpolate")
        try RequestCheck.range("frames", r.frames, 2...RequestCheck.maxFrames)
        try RequestCheck.prompt("prompt", r.prompt)
        let settings = try prepare(r.decoder)
        let seed = try RequestCheck.seeds(SeedPlan(first: r.seed, count: 1))[0]
        let ea = try store.generation(r.from).requireEmbedding(), eb = try store.generation(r.to).requireEmbedding()
        guard ea.count == eb.count else {
            throw EngineError.invalidParameter(name: "to", reason: "generation \(r.from) has a \(ea.count)-value embedding and \(r.to) a \(eb.count)-value one: they come from different CLIP models")
        }
        try checkEmbedding(ea, what: "generation \(r.from)'s embedding")
        let frames = Array(repeating: seed, count: r.frames)
        return try runEach(frames, observer: observer, firstWarnings: [sizeWarning(settings)].compactMap { $0 }, job: job, delivered: delivered) { i, seed, context, record in
            let t = Double(i) / Double(r.frames - 1)
            let e = try EmbeddingMath.slerp(ea, eb, t: t)
            return try decodeAndRecord(kind: .interpolation, embedding: e, prompt: r.prompt, settings: settings, seed: seed,
                                       parents: [ParentLink(role: "from", id: r.from), ParentLink(role: "to", id: r.to)],
                                       index: i, context: context, record: record) {
                $0.frame = i; $0.frames = r.frames; $0.t = t
            }
        }
    }

    /// DALL·E 2's text diff: turns a stored generation's embedding by `amount` toward the direction
    /// text_embeds(toward) − text_embeds(from) (`from` defaults to the generation's own prompt), then decodes it.
    public func nudge(_ r: NudgeRequest, observer: GenerationObserver? = nil,
                      delivered: ((MadeImage) throws -> Void)? = nil, job: Int64? = nil) throws -> [MadeImage] {
        try engine.require(.decodeEmbedding, for: "make text diffs")
        _ = try engine.requirePrior(for: "a text diff (CLIP text embeddings)")
        try RequestCheck.finite("amount", r.amount, 0...1)
        try RequestCheck.prompt("toward", r.toward)
        try RequestCheck.prompt("prompt", r.prompt)
        let settings = try prepare(r.decoder)
        let seeds = try RequestCheck.seeds(r.seeds)
        let source = try store.generation(r.id)
        guard let baseline = r.from ?? source.prompt.flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw EngineError.invalidParameter(name: "from", reason: "generation \(r.id) has no prompt to start from; give the text to move away from")
        }
        let image = try source.requireEmbedding()
        try checkEmbedding(image, what: "generation \(r.id)'s embedding")
        let e = try EmbeddingMath.textDiff(image: image, toward: textEmbedding(r.toward, observer: observer),
                                           from: textEmbedding(baseline, observer: observer), amount: Double(r.amount))
        return try runEach(seeds, observer: observer, firstWarnings: [sizeWarning(settings)].compactMap { $0 }, job: job, delivered: delivered) { i, seed, context, record in
            try decodeAndRecord(kind: .textDiff, embedding: e, prompt: r.prompt, settings: settings, seed: seed,
                                parents: [ParentLink(role: "source", id: r.id)], index: i, context: context, record: record) {
                $0.toward = r.toward; $0.from = baseline; $0.amount = r.amount
            }
        }
    }

    /// Records an outside picture as a `source` generation with its CLIP image embedding (the same bytes
    /// imported twice with the same model give the same generation).
    public func importPicture(_ source: PictureSource) throws -> StoredGeneration {
        try engine.require(.embedImage, for: "embed an outside picture")
        let start = DispatchTime.now().uptimeNanoseconds
        let model = try modelRecord()
        let data = try pictureBytes(source)
        let digest = SHA256.hex(data)
        if let existing = try store.generationID(kind: .source, sha256: digest, modelID: model.id) {
            return try store.generation(existing)
        }
        let image = try decodePicture(data, name: source.name)
        let embedding = try exclusive { try engine.imageEmbedding(image) }
        var settings = RecordedSettings()
        settings.sourceFile = source.name
        settings.modelName = self.model.name
        settings.width = image.width
        settings.height = image.height
        let new = NewGeneration(kind: .source, modelID: model.id, prompt: nil, settings: settings, seed: nil, embedding: embedding,
                                width: image.width, height: image.height, seconds: seconds(since: start))
        // The store keeps the picture as it was given when it is a PNG; other formats are stored as PNG.
        let png = ImageFile.format(of: data) == .png ? data : try pngData(image, parameters: nil)
        return try store.record(new, png: png)
    }

    /// Makes a stored generation again from its recorded settings and seed, and compares the PNG's sha256 with
    /// the recorded one. A missing store image is put back when the bytes match.
    public func regenerate(_ id: Int64, observer: GenerationObserver? = nil) throws -> Regeneration {
        let g = try store.generation(id)
        let s = g.settings
        guard g.kind != .source else {
            throw EngineError.unsupported("generation \(id) is an imported picture, not a generated one; there is nothing to regenerate")
        }
        guard let seed = g.seed else { throw EngineError.unsupported("generation \(id) has no seed recorded") }
        let context = RunContext(observer: observer, image: 0, images: 1)
        if let modelID = g.modelID, let recordedModel = try store.model(id: modelID), recordedModel.fingerprint != (try fingerprint()) {
            context.warning("generation \(id) was made with the model at \(recordedModel.path) (fingerprint \(recordedModel.fingerprint.prefix(12))); the loaded model differs (\(try fingerprint().prefix(12))), so the image may differ")
        }
        let model = try knownModel()
        let settings = decoderSettings(s)
        func priorSettings() throws -> PriorSettings {
            guard let steps = s.priorSteps, let guidance = s.priorGuidance, let candidates = s.priorCandidates else {
                throw EngineError.unsupported("generation \(id) lacks its prior settings")
            }
            return PriorSettings(steps: steps, guidanceScale: guidance, candidates: candidates)
        }
        let withPrior = engine.prior != nil
        let job: RenderJob, usesPrior: Bool
        switch g.kind {
        case .edit:
            guard let path = s.initImage, let expected = s.initSHA256 else { throw EngineError.unsupported("generation \(id) lacks its init image") }
            let (picture, digest) = try readPicture(.file(URL(fileURLWithPath: path)))
            guard digest == expected else {
                throw StoreError.imageFile(path: path, reason: "generation \(id)'s init image has changed since the edit (sha256 \(digest.prefix(12)), recorded \(expected.prefix(12)))")
            }
            var mask: InpaintMask?
            if let maskPath = s.maskImage, let maskExpected = s.maskSHA256 {
                let read = try readMask(.file(URL(fileURLWithPath: maskPath)), for: picture)
                guard read.sha256 == maskExpected else {
                    throw StoreError.imageFile(path: maskPath, reason: "generation \(id)'s mask has changed since the edit (sha256 \(read.sha256.prefix(12)), recorded \(maskExpected.prefix(12)))")
                }
                mask = read.mask
            }
            job = .imageToImage(prompt: g.prompt ?? "", picture: picture, mask: mask, prior: withPrior ? try priorSettings() : PriorSettings(),
                                settings: settings, seed: seed)
            usesPrior = withPrior
        case .textToImage:
            job = .textToImage(prompt: g.prompt ?? "", prior: withPrior ? try priorSettings() : PriorSettings(), settings: settings, seed: seed)
            usesPrior = withPrior
        default:
            job = .decode(embedding: try g.requireEmbedding(), prompt: g.prompt ?? "", settings: settings, seed: seed)
            usesPrior = false
        }
        let image = try render(job, prompt: g.prompt ?? "", negative: settings.negativePrompt ?? "",
                               priorSettings: usesPrior ? try priorSettings() : nil, seed: seed, model: model, context: context).0.image
        let png = try pngData(image, parameters: parametersText(kind: g.kind, prompt: g.prompt ?? "", settings: s, seed: seed, parents: g.parents))
        let digest = SHA256.hex(png)
        var restored = false
        if digest == g.sha256, !(try store.hasImage(id)), store.isWritable {
            try store.restoreImage(id, png: png)
            restored = true
        }
        return Regeneration(id: id, expectedSHA256: g.sha256, actualSHA256: digest, restored: restored, png: png)
    }

    // MARK: - Recording

    /// Decodes an embedding and records it with the given kind, parents and extra settings.
    private func decodeAndRecord(kind: GenerationKind, embedding: [Float], prompt: String, settings: DecoderSettings,
                                 seed: UInt64, parents: [ParentLink], index: Int, context: RunContext, record: Recorder,
                                 extra: (inout RecordedSettings) -> Void) throws -> MadeImage {
        let start = DispatchTime.now().uptimeNanoseconds
        let model = try modelRecord()
        let (g, _, _) = try render(.decode(embedding: embedding, prompt: prompt, settings: settings, seed: seed), prompt: prompt,
                                   negative: settings.negativePrompt ?? "", priorSettings: nil, seed: seed, model: model, context: context)
        var recorded = try recordedSettings(settings)
        extra(&recorded)
        let new = NewGeneration(kind: kind, modelID: model.id, prompt: prompt, settings: recorded, seed: seed,
                                embedding: embedding, pictureEmbedding: try exclusive { try engine.pictureEmbedding(g.image) },
                                parents: parents, width: g.image.width, height: g.image.height, seconds: seconds(since: start))
        return MadeImage(generation: try record(new, image: g.image), index: index, cache: nil, priorScores: [], priorChoice: 0,
                         latents: g.latents)
    }

    private func checkEmbedding(_ e: [Float], what: String) throws {
        guard let dim = engine.embeddingDim else { throw EngineError.unsupported("\(model.folder.path) takes no image embeddings") }
        guard e.count == dim else {
            throw EngineError.invalidParameter(name: "embedding", reason: "\(what) has \(e.count) values; this model's decoder takes \(dim) (it was made with another CLIP model)")
        }
        guard e.allSatisfy(\.isFinite) else { throw EngineError.invalidParameter(name: "embedding", reason: "\(what) has non-finite values") }
    }

    /// Records one image of a request, with its job link if a job made it.
    struct Recorder {
        let service: GenerationService
        let job: JobLink?
        func callAsFunction(_ new: NewGeneration, image: RGBImage) throws -> StoredGeneration {
            var new = new
            new.job = job
            let text = UnCLIPService.parametersText(kind: new.kind, prompt: new.prompt ?? "", settings: new.settings, seed: new.seed ?? 0,
                                              parents: new.parents)
            return try service.store.record(new, png: try pngData(image, parameters: text))
        }
    }

    /// The decoder settings as recorded; the noise level only where there is an image embedding, the prior's
    /// settings only where a prior ran.
    private func recordedSettings(_ d: DecoderSettings, prior: PriorParameters? = nil) throws -> RecordedSettings {
        var s = RecordedSettings()
        if let prior, engine.prior != nil {
            s.priorSteps = prior.steps
            s.priorGuidance = prior.guidanceScale
            s.priorCandidates = prior.candidates
        }
        s.steps = d.steps
        s.guidance = d.guidanceScale
        s.noiseLevel = engine.embeddingDim != nil ? d.noiseLevel : nil
        s.negativePrompt = d.negativePrompt
        s.width = d.width ?? engine.nativeSize
        s.height = d.height ?? engine.nativeSize
        s.scheduler = d.scheduler
        s.schedulerName = d.scheduler ?? engine.denoiser.schedulerName
        s.samplerName = try SchedulerRegistry.a1111Name(configURL: engine.denoiser.schedulerConfig, name: d.scheduler)
        s.modelName = model.name
        s.modelHash = try modelHash()
        s.parametersFormat = RecordedSettings.currentParametersFormat
        if let stable = engine as? StableDiffusionEngine { s.clipModel = stable.clip?.folder.path }
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

/// The `_class_name` of a scheduler_config.json.
func schedulerName(_ config: URL) throws -> String {
    struct Named: Decodable { let _class_name: String? }
    return (try loadJSONConfig(Named.self, from: config))._class_name ?? "unknown scheduler"
}
