import Foundation
import UnCLIPModels
import UnCLIPRandom
import UnCLIPSchedulers
import UnCLIPTensor
import UnCLIPTokenizer
import UnCLIPWeights

/// What the prior's text encoder makes of one prompt (cacheable: it depends only on the text).
public struct PriorTextEncoding: Sendable {
    public init(textEmbeds: Tensor, hiddenStates: Tensor, mask: [Int]) {
        self.textEmbeds = textEmbeds; self.hiddenStates = hiddenStates; self.mask = mask
    }
    /// CLIP text embedding (`text_embeds`) [1, D].
    public let textEmbeds: Tensor
    /// Last hidden state [1, 77, D].
    public let hiddenStates: Tensor
    /// Attention mask over the 77 tokens (1 = real token).
    public let mask: [Int]
}

/// Settings of the prior stage; defaults are diffusers' (25 steps, guidance 4) and DALL·E 2's best of two.
public struct PriorSettings: Sendable {
    public var steps = 25
    public var guidanceScale: Float = 4
    public var candidates = 2
    public init(steps: Int = 25, guidanceScale: Float = 4, candidates: Int = 2) {
        self.steps = steps; self.guidanceScale = guidanceScale; self.candidates = candidates
    }
}

/// The candidate image embeddings and their CLIP scores; `chosen` is the best.
public struct PriorResult: Sendable {
    /// All candidates [N, D], after post-processing to CLIP's scale.
    public let candidates: Tensor
    /// Cosine similarity of each candidate with the prompt's text embedding.
    public let scores: [Float]
    public let chosenIndex: Int
    public init(candidates: Tensor, scores: [Float], chosenIndex: Int) {
        self.candidates = candidates; self.scores = scores; self.chosenIndex = chosenIndex
    }
    /// The kept embedding [1, D].
    public var chosen: Tensor { slice(candidates, axis: 0, chosenIndex..<(chosenIndex + 1)) }
}

/// The diffusion prior stage, as diffusers' StableUnCLIPPipeline and Karlo's UnCLIPPipeline run it:
/// text → CLIP text embedding and hidden states → guided denoising of an image embedding.
public final class PriorPipeline {
    public let tokenizer: CLIPTokenizer
    public let textEncoder: ModelSlot<CLIPTextModel>
    public let prior: ModelSlot<PriorTransformer>
    /// The models' configs, read up front (the models may be unloaded between uses).
    public let textEncoderConfig: CLIPTextConfig
    public let priorConfig: PriorTransformerConfig
    /// The prior scheduler's scheduler_config.json.
    public let schedulerConfig: URL

    /// Loads from a folder: a Stable unCLIP bundle (prior_tokenizer, prior_text_encoder, prior, prior_scheduler)
    /// or a Karlo-style prior folder (tokenizer, text_encoder, prior, prior_scheduler).
    public convenience init(folder: URL, variant: String? = nil) throws {
        try self.init(folder: folder, options: LoadOptions(variant: variant))
    }

    public init(folder: URL, options: LoadOptions) throws {
        let variant = options.variant, precision = options.precision, onDemand = options.lowMemory
        let fm = FileManager.default
        let bundle = fm.fileExists(atPath: folder.appendingPathComponent("prior_text_encoder").path)
        let tok = folder.appendingPathComponent(bundle ? "prior_tokenizer" : "tokenizer")
        let enc = folder.appendingPathComponent(bundle ? "prior_text_encoder" : "text_encoder")
        for (url, what) in [(folder.appendingPathComponent("prior"), "prior"), (enc, "prior text encoder"), (tok, "prior tokenizer"),
                            (folder.appendingPathComponent("prior_scheduler"), "prior scheduler")] where !fm.fileExists(atPath: url.path) {
            throw WeightError.missingFile(path: url.path, what: "\(what) component of \(folder.path)")
        }
        tokenizer = try CLIPTokenizer(directory: tok)
        let encFolder = try ModelFolder(enc), priorFolder = try ModelFolder(folder.appendingPathComponent("prior"))
        let textConfig = try encFolder.config(CLIPTextConfig.self)
        let priorConfig = try priorFolder.config(PriorTransformerConfig.self)
        textEncoderConfig = textConfig
        self.priorConfig = priorConfig
        schedulerConfig = folder.appendingPathComponent("prior_scheduler/scheduler_config.json")
        guard textConfig.projectionDim == priorConfig.projDim, textConfig.hiddenSize == priorConfig.embeddingDim else {
            throw WeightError.badConfig(path: folder.path, reason: "prior expects text embeddings of \(priorConfig.projDim) and hidden states of \(priorConfig.embeddingDim); the text encoder gives \(textConfig.projectionDim) and \(textConfig.hiddenSize)")
        }
        textEncoder = try ModelSlot(onDemand: onDemand) {
            let model = try CLIPTextModel(folder: encFolder, variant: variant)
            guard model.hasProjection else {
                throw WeightError.badConfig(path: enc.path, reason: "the prior needs a CLIPTextModelWithProjection (text_embeds)")
            }
            return model
        }
        prior = try ModelSlot(onDemand: onDemand) { try PriorTransformer(folder: priorFolder, variant: variant, precision: precision) }
    }

    /// Drops what on-demand (low-memory) loading brought in; a no-op when the models stay resident.
    public func releaseModels() { textEncoder.release(); prior.release() }

    /// Tokenizes (warning via `onWarning` when truncated) and encodes one prompt, without the mask as diffusers does.
    public func encode(_ prompt: String, onWarning: (String) -> Void = { _ in }) throws -> PriorTextEncoding {
        let t = tokenizer(prompt, maxLength: textEncoderConfig.maxPositionEmbeddings)
        if t.droppedTokens > 0 {
            onWarning("the prompt is \(t.tokenCount) tokens; CLIP reads \(t.ids.count), so the last \(t.droppedTokens) were dropped")
        }
        let out = try textEncoder.get()(inputIds: [t.ids])
        return PriorTextEncoding(textEmbeds: out.textEmbeds!, hiddenStates: out.lastHiddenState, mask: t.attentionMask)
    }

    /// Samples `settings.candidates` image embeddings for the prompt and ranks them by CLIP score.
    /// Random draws follow diffusers with num_images_per_prompt = candidates: the start noise [N, D],
    /// then the scheduler's draws at each step.
    public func sample(text: PriorTextEncoding, unconditional: PriorTextEncoding, settings: PriorSettings,
                       generator: RandomSource, progress: (Int, Int) throws -> Void = { _, _ in }) throws -> PriorResult {
        guard settings.candidates >= 1 else { throw ModelError.invalidInput("prior candidates must be at least 1 (got \(settings.candidates))") }
        guard settings.steps >= 1 else { throw ModelError.invalidInput("prior steps must be at least 1 (got \(settings.steps))") }
        let n = settings.candidates, d = priorConfig.embeddingDim
        // Low memory: the prompts are encoded by now, so the text encoder can go before the prior loads.
        textEncoder.release()
        defer { prior.release() }
        let prior = try self.prior.get()
        let guided = settings.guidanceScale > 1
        var scheduler = try makeScheduler(configURL: schedulerConfig)
        try scheduler.setTimesteps(settings.steps)

        // Conditioning batch: [uncond × N, text × N] under guidance, as diffusers concatenates it.
        func repeated(_ t: Tensor, _ k: Int) -> Tensor { concat(Array(repeating: t, count: k), axis: 0) }
        var proj = repeated(text.textEmbeds, n), hidden = repeated(text.hiddenStates, n)
        var mask = Array(repeating: text.mask, count: n)
        if guided {
            proj = concat([repeated(unconditional.textEmbeds, n), proj], axis: 0)
            hidden = concat([repeated(unconditional.hiddenStates, n), hidden], axis: 0)
            mask = Array(repeating: unconditional.mask, count: n) + mask
        }

        var latents = Tensor(shape: [n, d], data: try generator.randn(count: n * d))
        if scheduler.initNoiseSigma != 1 { latents = scale(latents, scheduler.initNoiseSigma) }
        let timesteps = scheduler.timesteps
        for (i, t) in timesteps.enumerated() {
            let input = try scheduler.scaleModelInput(guided ? concat([latents, latents], axis: 0) : latents, timestep: t)
            var predicted = try prior(hiddenStates: input, timesteps: [t], projEmbedding: proj,
                                      encoderHiddenStates: hidden, attentionMask: mask)
            if guided {
                let uncond = slice(predicted, axis: 0, 0..<n), cond = slice(predicted, axis: 0, n..<(2 * n))
                predicted = guide(uncond: uncond, cond: cond, scale: settings.guidanceScale)
            }
            latents = try scheduler.step(modelOutput: predicted, timestep: t, sample: latents, generator: generator).prevSample
            try progress(i + 1, timesteps.count)
        }
        let candidates = prior.postProcessLatents(latents)
        let scores = (0..<n).map { cosine(candidates.item($0), text.textEmbeds.item(0)) }
        let best = scores.indices.max { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 > $1) }!
        return PriorResult(candidates: candidates, scores: scores, chosenIndex: best)
    }
}

/// Classifier-free guidance: uncond + s · (cond − uncond), in diffusers' operation order.
public func guide(uncond: Tensor, cond: Tensor, scale s: Float) -> Tensor {
    let out = Tensor(uninitialized: cond.shape)
    let u = uncond.pointer, c = cond.pointer, o = out.pointer
    for i in 0..<cond.count { o[i] = u[i] + s * (c[i] - u[i]) }
    return out
}

/// Cosine similarity of two vectors (the CLIP score on the unit sphere).
public func cosine(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count, "cosine of \(a.shape) and \(b.shape)")
    var dot = 0.0, na = 0.0, nb = 0.0
    for i in 0..<a.count {
        let x = Double(a.pointer[i]), y = Double(b.pointer[i])
        dot += x * y; na += x * x; nb += y * y
    }
    return Float(dot / max((na * nb).squareRoot(), 1e-12))
}
