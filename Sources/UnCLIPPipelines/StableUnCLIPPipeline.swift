import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// One generated image and everything that made it.
public struct Generation: Sendable {
    public let image: RGBImage
    /// The CLIP image embedding the decoder drew [1, D] (the prior's choice, or the given one); empty ([1, 0]) for plain Stable Diffusion.
    public let imageEmbeds: Tensor
    /// The prior's candidates and scores (text-to-image only).
    public let prior: PriorResult?
    public let latents: Tensor
    public let seed: UInt64
}

/// Text-to-image and variations as diffusers' StableUnCLIPPipeline / StableUnCLIPImg2ImgPipeline run them,
/// with the prior's best-of-N added. Random draws happen in diffusers' order, so seed S with one prior
/// candidate gives diffusers' image for seed S.
public final class StableUnCLIPPipeline {
    public let decoder: UnCLIPDecoder
    public let prior: PriorPipeline?

    /// - model: a StableUnCLIPPipeline bundle (with prior_* components) or a decoder-only folder;
    /// - priorFolder: a Karlo-style prior folder, required when the model has no prior of its own.
    public convenience init(model: URL, prior priorFolder: URL? = nil, variant: String? = nil) throws {
        try self.init(model: model, prior: priorFolder, options: LoadOptions(variant: variant))
    }

    public init(model: URL, prior priorFolder: URL?, options: LoadOptions) throws {
        decoder = try UnCLIPDecoder(folder: model, options: options)
        let bundled = FileManager.default.fileExists(atPath: model.appendingPathComponent("prior").path)
        if let priorFolder {
            prior = try PriorPipeline(folder: priorFolder, options: options)
        } else if bundled {
            prior = try PriorPipeline(folder: model, options: options)
        } else {
            prior = nil
        }
        if let prior, prior.priorConfig.clipDim != decoder.embeddingDim {
            throw WeightError.badConfig(path: model.path, reason: "the prior makes \(prior.priorConfig.clipDim)-d image embeddings but the decoder expects \(decoder.embeddingDim)-d")
        }
    }

    /// Prompt → prior (best of N) → noise augmentation → decoder → image.
    /// With `initImage` (and `settings.strength`), the decoder starts from that picture noised to the strength
    /// (image-to-image) while the prior's embedding still conditions it.
    public func textToImage(prompt: String, priorSettings: PriorSettings, settings: DecoderSettings, seed: UInt64,
                            initImage: RGBImage? = nil, progress: ProgressHandler? = nil, preview: PreviewHandler? = nil,
                            onWarning: (String) -> Void = { _ in }) throws -> Generation {
        var stages = PipelineStages()
        return try textToImage(prompt: prompt, priorSettings: priorSettings, settings: settings, seed: seed, stages: &stages,
                               initImage: initImage, progress: progress, preview: preview, onWarning: onWarning)
    }

    /// Text-to-image reusing whatever `stages` already holds (a caller's cache) and filling in what it computes.
    /// The image is the same whether a stage was given or computed: a given prior replays the prior's random
    /// draws (`priorDraws`) so the decoder sees the generator exactly where a full run leaves it.
    public func textToImage(prompt: String, priorSettings: PriorSettings, settings: DecoderSettings, seed: UInt64,
                            stages: inout PipelineStages, initImage: RGBImage? = nil, progress: ProgressHandler? = nil,
                            preview: PreviewHandler? = nil, onWarning: (String) -> Void = { _ in }) throws -> Generation {
        guard let prior else {
            throw WeightError.missingFile(path: decoder.folder.appendingPathComponent("prior").path,
                                          what: "prior (this model folder has none; give a separate Karlo-style prior folder)")
        }
        try decoder.validate(settings)
        let generator = TorchGenerator(seed: seed)
        let result = try runPrior(prior, prompt: prompt, priorSettings: priorSettings, generator: generator, stages: &stages,
                                  progress: progress, onWarning: onWarning)
        return try decode(embeds: result.chosen, prompt: prompt, settings: settings, generator: generator, seed: seed,
                          prior: result, stages: &stages, initImage: initImage, progress: progress, preview: preview,
                          onWarning: onWarning)
    }

    /// Image-to-image with Stable unCLIP: the picture is noised to `settings.strength` and denoised toward the
    /// prompt. The decoder follows its image embedding even from a lightly noised start (in training the
    /// embedding always describes the target exactly), so the embedding moves with the strength too: the
    /// slerp from the picture's own CLIP embedding to the prior's embedding for the prompt, at t = strength.
    /// 0 keeps the picture, 1 is text-to-image. Without an image encoder in the folder, the prompt's
    /// embedding is used alone.
    /// With a `mask`, only its white part is repainted: the latents outside it are replaced after every step
    /// by the picture's, noised to the next timestep (diffusers' inpainting for UNets without mask channels).
    public func imageToImage(prompt: String, initImage: RGBImage, mask: InpaintMask? = nil, priorSettings: PriorSettings,
                             settings: DecoderSettings, seed: UInt64, stages: inout PipelineStages, progress: ProgressHandler? = nil,
                             preview: PreviewHandler? = nil, onWarning: (String) -> Void = { _ in }) throws -> Generation {
        guard let prior else {
            throw WeightError.missingFile(path: decoder.folder.appendingPathComponent("prior").path,
                                          what: "prior (this model folder has none; give a separate Karlo-style prior folder)")
        }
        guard let strength = settings.strength else { throw ModelError.invalidInput("image-to-image needs a strength (0–1)") }
        try decoder.validate(settings)
        let generator = TorchGenerator(seed: seed)
        let result = try runPrior(prior, prompt: prompt, priorSettings: priorSettings, generator: generator, stages: &stages,
                                  progress: progress, onWarning: onWarning)
        var embeds = result.chosen
        if let embedder = decoder.imageEmbedder {
            let own = try embedder.embed(initImage)
            switch SphericalInterpolation.slerp(own.scalars, result.chosen.scalars, t: Double(strength)) {
            case let .success(v): embeds = Tensor(shape: [1, v.count], data: v)
            case .failure:
                onWarning("the picture's CLIP embedding cannot be interpolated with the prompt's (zero or opposite); using the prompt's")
            }
        } else {
            onWarning("\(decoder.folder.path) has no image_encoder/: the decoder is conditioned on the prompt's embedding alone, so even a low strength changes the picture")
        }
        return try decode(embeds: embeds, prompt: prompt, settings: settings, generator: generator, seed: seed,
                          prior: result, stages: &stages, initImage: initImage, mask: mask, progress: progress,
                          preview: preview, onWarning: onWarning)
    }

    /// The prior's best-of-N embedding, from `stages` when cached (replaying its random draws so the decoder
    /// sees the generator where a full run leaves it), else sampled and stored there.
    private func runPrior(_ prior: PriorPipeline, prompt: String, priorSettings: PriorSettings, generator: TorchGenerator,
                          stages: inout PipelineStages, progress: ProgressHandler?, onWarning: (String) -> Void) throws -> PriorResult {
        let result: PriorResult
        if let cached = stages.prior, let draws = stages.priorDraws {
            guard cached.candidates.count == priorSettings.candidates * decoder.embeddingDim else {
                throw ModelError.invalidInput("the cached prior result has \(cached.candidates.shape) candidates; expected \(priorSettings.candidates) × \(decoder.embeddingDim)")
            }
            for n in draws { _ = try generator.randn(count: n) }
            result = cached
        } else {
            let text = try stages.priorText ?? prior.encode(prompt, onWarning: onWarning)
            let uncond = try stages.priorUnconditional ?? prior.encode("")
            stages.priorText = text
            stages.priorUnconditional = uncond
            let recorder = RecordingRandomSource(generator)
            result = try prior.sample(text: text, unconditional: uncond, settings: priorSettings, generator: recorder) {
                try progress?("prior", $0, $1)
            }
            stages.prior = result
            stages.priorDraws = recorder.draws
        }
        return result
    }

    /// A variation of a CLIP image embedding [1, D] (StableUnCLIPImg2ImgPipeline with `image_embeds`).
    public func variation(imageEmbeds: Tensor, prompt: String = "", settings: DecoderSettings, seed: UInt64,
                          initImage: RGBImage? = nil, progress: ProgressHandler? = nil, preview: PreviewHandler? = nil,
                          onWarning: (String) -> Void = { _ in }) throws -> Generation {
        var stages = PipelineStages()
        return try variation(imageEmbeds: imageEmbeds, prompt: prompt, settings: settings, seed: seed, stages: &stages,
                             initImage: initImage, progress: progress, preview: preview, onWarning: onWarning)
    }

    /// A variation reusing the decoder text encodings in `stages` (and filling them in when absent).
    public func variation(imageEmbeds: Tensor, prompt: String = "", settings: DecoderSettings, seed: UInt64,
                          stages: inout PipelineStages, initImage: RGBImage? = nil, progress: ProgressHandler? = nil,
                          preview: PreviewHandler? = nil, onWarning: (String) -> Void = { _ in }) throws -> Generation {
        guard imageEmbeds.count == decoder.embeddingDim else {
            throw ModelError.invalidInput("the image embedding has \(imageEmbeds.count) values; this decoder expects \(decoder.embeddingDim)")
        }
        try decoder.validate(settings)
        return try decode(embeds: imageEmbeds.reshaped([1, decoder.embeddingDim]), prompt: prompt, settings: settings,
                          generator: TorchGenerator(seed: seed), seed: seed, prior: nil, stages: &stages, initImage: initImage,
                          progress: progress, preview: preview, onWarning: onWarning)
    }

    /// The CLIP image embedding of a picture, through the model's feature extractor and image encoder.
    public func embed(image: RGBImage) throws -> Tensor {
        guard let embedder = decoder.imageEmbedder else {
            throw WeightError.missingFile(path: decoder.folder.appendingPathComponent("image_encoder").path,
                                          what: "image encoder and feature_extractor (needed to embed a PNG)")
        }
        return try embedder.embed(image)
    }

    private func decode(embeds: Tensor, prompt: String, settings: DecoderSettings, generator: TorchGenerator, seed: UInt64,
                        prior: PriorResult?, stages: inout PipelineStages, initImage: RGBImage?, mask: InpaintMask? = nil,
                        progress: ProgressHandler?,
                        preview: PreviewHandler?, onWarning: (String) -> Void) throws -> Generation {
        let promptEmbeds = try stages.decoderPrompt ?? decoder.base.encodePrompt(prompt, onWarning: onWarning)
        let negative = try stages.decoderNegative ?? decoder.base.encodePrompt(settings.negativePrompt ?? "")
        stages.decoderPrompt = promptEmbeds
        stages.decoderNegative = negative
        let (image, latents) = try decoder.decode(imageEmbeds: embeds, promptEmbeds: promptEmbeds, negativeEmbeds: negative,
                                                  settings: settings, initImage: initImage, mask: mask, generator: generator,
                                                  progress: progress, preview: preview)
        return Generation(image: try tensorToImage(image), imageEmbeds: embeds, prior: prior, latents: latents, seed: seed)
    }
}

/// Intermediate results that depend only on their inputs, so a caller can cache them between runs.
/// Members left nil are computed by `textToImage(…stages:)` / `variation(…stages:)` and filled in.
public struct PipelineStages: @unchecked Sendable {
    /// The prior text encoder's encoding of the prompt, and of "" (the unconditional branch).
    public var priorText: PriorTextEncoding?
    public var priorUnconditional: PriorTextEncoding?
    /// A prior result for this prompt, seed and prior settings, with the sizes of the randn calls it made.
    public var prior: PriorResult?
    public var priorDraws: [Int]?
    /// The decoder text encoder's hidden states [1, 77, D] for the prompt and the negative prompt.
    public var decoderPrompt: Tensor?
    public var decoderNegative: Tensor?
    public init() {}
}

/// Passes draws through to a generator and notes the size of each call, so they can be replayed later.
final class RecordingRandomSource: RandomSource {
    let base: RandomSource
    private(set) var draws: [Int] = []
    init(_ base: RandomSource) { self.base = base }
    func randn(count: Int) throws -> [Float] {
        draws.append(count)
        return try base.randn(count: count)
    }
}
