import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPRandom
import UnCLIPSchedulers
import UnCLIPTensor
import UnCLIPWeights

/// Settings of the decoder stage; defaults are diffusers' StableUnCLIPPipeline defaults.
public struct DecoderSettings: Sendable {
    public var steps = 20
    public var guidanceScale: Float = 10
    public var noiseLevel = 0
    public var negativePrompt: String?
    /// Output size in pixels; nil = the UNet's sample_size × the VAE's scale factor.
    public var width: Int?
    public var height: Int?
    /// Overrides the folder's scheduler: a diffusers class name or an alias (see `SchedulerChoice`).
    public var scheduler: String?
    /// Image-to-image: how far the init image is noised (0 = kept, 1 = replaced); needs an init image.
    public var strength: Float?
    /// Decode the scheduler's x0 prediction every N steps (previews).
    public var previewEvery: Int?
    public init() {}
}

/// Reports progress: (stage, step, total steps).
/// Throwing stops the run where it is (a cancelled request); nothing after that step is computed.
public typealias ProgressHandler = (String, Int, Int) throws -> Void

/// The Stable unCLIP decoder: the shared latent denoiser conditioned, through the UNet's class-embedding
/// projection, on a noise-augmented CLIP image embedding. Loads a folder laid out as diffusers'
/// StableUnCLIPPipeline / StableUnCLIPImg2ImgPipeline saves it.
public final class UnCLIPDecoder {
    public let base: LatentDenoiser
    public let imageNormalizer: StableUnCLIPImageNormalizer
    let noisingScheduler: any Scheduler
    let noisingTrainSteps: Int
    /// The largest noise level the image embedding can be augmented with (the noising schedule's last step).
    public var maxNoiseLevel: Int { noisingTrainSteps - 1 }
    /// Present when the folder has feature_extractor/ and image_encoder/ (variations from PNGs).
    public let imageEmbedder: CLIPImageEmbedder?

    public var folder: URL { base.folder }
    public var embeddingDim: Int { imageNormalizer.config.embeddingDim }
    public var defaultSize: Int { base.defaultSize }

    public convenience init(folder: URL, variant: String? = nil) throws {
        try self.init(folder: folder, options: LoadOptions(variant: variant))
    }

    public init(folder: URL, options: LoadOptions) throws {
        let variant = options.variant
        base = try LatentDenoiser(folder: folder, options: options)
        imageNormalizer = try StableUnCLIPImageNormalizer(folder: ModelFolder(LatentDenoiser.component(folder, "image_normalizer")), variant: variant)
        let noising = try LatentDenoiser.component(folder, "image_noising_scheduler").appendingPathComponent("scheduler_config.json")
        noisingScheduler = try makeScheduler(configURL: noising)
        struct TrainSteps: Decodable {
            var numTrainTimesteps = 1000
            enum CodingKeys: String, CodingKey { case numTrainTimesteps = "num_train_timesteps" }
        }
        noisingTrainSteps = try loadJSONConfig(TrainSteps.self, from: noising).numTrainTimesteps
        imageEmbedder = CLIPImageEmbedder.isPresent(in: folder) ? try CLIPImageEmbedder(folder: folder, options: options) : nil
        let unet = base.unetConfig
        guard unet.classEmbedType == "projection", let classDim = unet.projectionClassEmbeddingsInputDim,
              classDim == 2 * imageNormalizer.config.embeddingDim else {
            throw WeightError.badConfig(path: folder.appendingPathComponent("unet/config.json").path,
                                        reason: "not a Stable unCLIP decoder: needs class_embed_type 'projection' with projection_class_embeddings_input_dim = 2 × the image embedding size (\(2 * imageNormalizer.config.embeddingDim))")
        }
    }

    /// diffusers' `noise_image_embeddings`: normalise, noise to `noiseLevel` with the image-noising scheduler,
    /// un-normalise, and append the sinusoidal embedding of the level → [B, 2·D].
    public func noiseImageEmbeddings(_ embeds: Tensor, noiseLevel: Int, noise: Tensor) throws -> Tensor {
        let b = embeds.shape[0], d = embeddingDim
        var x = imageNormalizer.scale(embeds)
        x = try noisingScheduler.addNoise(original: x, noise: noise, timesteps: Array(repeating: Float(noiseLevel), count: b))
        x = imageNormalizer.unscale(x)
        let levels = timestepEmbedding(Array(repeating: Float(noiseLevel), count: b), dim: d, flipSinToCos: true, downscaleFreqShift: 0)
        return concat([x, levels], axis: 1)
    }

    /// Checks user settings before any work is done.
    public func validate(_ s: DecoderSettings) throws {
        try base.validate(s)
        guard (0..<noisingTrainSteps).contains(s.noiseLevel) else {
            throw ModelError.invalidInput("noise_level must be in 0...\(noisingTrainSteps - 1) (got \(s.noiseLevel))")
        }
    }

    /// Prompt + image embedding → image: encodes the prompts, noise-augments the embedding (one draw),
    /// then denoises (see `LatentDenoiser.denoise` for the draws that follow).
    public func decode(imageEmbeds: Tensor, prompt: String, settings s: DecoderSettings, initImage: RGBImage? = nil,
                       generator: RandomSource, progress: ProgressHandler?, preview: PreviewHandler?,
                       onWarning: (String) -> Void) throws -> (image: Tensor, latents: Tensor) {
        let promptEmbeds = try base.encodePrompt(prompt, onWarning: onWarning)
        let negative = try base.encodePrompt(s.negativePrompt ?? "")
        return try decode(imageEmbeds: imageEmbeds, promptEmbeds: promptEmbeds, negativeEmbeds: negative, settings: s,
                          initImage: initImage, generator: generator, progress: progress, preview: preview)
    }

    /// The same with the prompts already encoded (e.g. cached hidden states [1, 77, D]).
    public func decode(imageEmbeds: Tensor, promptEmbeds: Tensor, negativeEmbeds: Tensor, settings s: DecoderSettings,
                       initImage: RGBImage? = nil, mask: InpaintMask? = nil, generator: RandomSource, progress: ProgressHandler?,
                       preview: PreviewHandler?) throws -> (image: Tensor, latents: Tensor) {
        let noise = Tensor(shape: imageEmbeds.shape, data: try generator.randn(count: imageEmbeds.count))
        let noised = try noiseImageEmbeddings(imageEmbeds, noiseLevel: s.noiseLevel, noise: noise)
        return try base.denoise(context: promptEmbeds, negativeContext: negativeEmbeds, classLabels: noised, settings: s,
                                initImage: initImage, mask: mask, generator: generator, progress: progress, preview: preview)
    }
}
