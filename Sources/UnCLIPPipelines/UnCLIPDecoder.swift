import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPRandom
import UnCLIPSchedulers
import UnCLIPTensor
import UnCLIPTokenizer
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
    /// Overrides the folder's scheduler (diffusers class name), as `from_config` does.
    public var scheduler: String?
    public var eta: Float = 0
    public init() {}
}

/// Reports progress: (stage, step, total steps).
public typealias ProgressHandler = (String, Int, Int) -> Void

/// The Stable unCLIP decoder: text encoder, UNet conditioned on a noise-augmented CLIP image embedding, VAE.
/// Loads a folder laid out as diffusers' StableUnCLIPPipeline / StableUnCLIPImg2ImgPipeline saves it.
public final class UnCLIPDecoder {
    public let folder: URL
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let imageNormalizer: StableUnCLIPImageNormalizer
    let noisingScheduler: any Scheduler
    let schedulerConfig: URL
    /// Present when the folder has feature_extractor/ and image_encoder/ (variations from PNGs).
    public let imageProcessor: CLIPImageProcessor?
    public let imageEncoder: CLIPVisionModel?

    public init(folder: URL, variant: String? = nil) throws {
        self.folder = folder
        func component(_ name: String) throws -> URL {
            let url = folder.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw WeightError.missingFile(path: url.path, what: "'\(name)' component of the model folder \(folder.path)")
            }
            return url
        }
        tokenizer = try CLIPTokenizer(directory: component("tokenizer"))
        textEncoder = try CLIPTextModel(folder: ModelFolder(component("text_encoder")), variant: variant)
        unet = try UNet2DConditionModel(folder: ModelFolder(component("unet")), variant: variant)
        vae = try AutoencoderKL(folder: ModelFolder(component("vae")), variant: variant)
        imageNormalizer = try StableUnCLIPImageNormalizer(folder: ModelFolder(component("image_normalizer")), variant: variant)
        noisingScheduler = try makeScheduler(configURL: component("image_noising_scheduler").appendingPathComponent("scheduler_config.json"))
        schedulerConfig = try component("scheduler").appendingPathComponent("scheduler_config.json")
        let fx = folder.appendingPathComponent("feature_extractor"), ie = folder.appendingPathComponent("image_encoder")
        if FileManager.default.fileExists(atPath: fx.path) && FileManager.default.fileExists(atPath: ie.path) {
            imageProcessor = try CLIPImageProcessor(contentsOf: fx)
            imageEncoder = try CLIPVisionModel(folder: ModelFolder(ie), variant: variant)
        } else {
            imageProcessor = nil
            imageEncoder = nil
        }
        guard unet.config.classEmbedType == "projection", let classDim = unet.config.projectionClassEmbeddingsInputDim,
              classDim == 2 * imageNormalizer.config.embeddingDim else {
            throw WeightError.badConfig(path: folder.appendingPathComponent("unet/config.json").path,
                                        reason: "not a Stable unCLIP decoder: needs class_embed_type 'projection' with projection_class_embeddings_input_dim = 2 × the image embedding size (\(2 * imageNormalizer.config.embeddingDim))")
        }
    }

    /// Width of the CLIP image embeddings this decoder is conditioned on.
    public var embeddingDim: Int { imageNormalizer.config.embeddingDim }
    /// Pixels per latent cell: 2^(VAE blocks − 1).
    public var vaeScaleFactor: Int { 1 << (vae.config.blockOutChannels.count - 1) }
    public var defaultSize: Int { (unet.config.sampleSize ?? 96) * vaeScaleFactor }
    /// The number of training timesteps of the image-noising scheduler (noise levels are below it).
    public var maxNoiseLevel: Int { noisingSchedulerTrainSteps }
    private var noisingSchedulerTrainSteps: Int {
        (try? loadJSONConfig(TrainSteps.self, from: folder.appendingPathComponent("image_noising_scheduler/scheduler_config.json")).numTrainTimesteps) ?? 1000
    }
    private struct TrainSteps: Decodable {
        var numTrainTimesteps = 1000
        enum CodingKeys: String, CodingKey { case numTrainTimesteps = "num_train_timesteps" }
    }

    /// The decoder text encoder's last hidden state for a prompt [1, 77, D] (no attention mask, as diffusers).
    public func encodePrompt(_ prompt: String, onWarning: (String) -> Void = { _ in }) throws -> Tensor {
        let t = tokenizer(prompt, maxLength: textEncoder.config.maxPositionEmbeddings)
        if t.droppedTokens > 0 {
            onWarning("the prompt is \(t.tokenCount) tokens; CLIP reads \(t.ids.count), so the last \(t.droppedTokens) were dropped")
        }
        return try textEncoder(inputIds: [t.ids]).lastHiddenState
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
        guard s.steps >= 1 else { throw ModelError.invalidInput("--steps must be at least 1 (got \(s.steps))") }
        guard (0..<maxNoiseLevel).contains(s.noiseLevel) else {
            throw ModelError.invalidInput("--noise-level must be in 0...\(maxNoiseLevel - 1) (got \(s.noiseLevel))")
        }
        let f = vaeScaleFactor
        for (name, v) in [("width", s.width), ("height", s.height)] {
            if let v, v <= 0 || v % (8) != 0 || v % f != 0 {
                throw ModelError.invalidInput("--\(name) \(v) must be a positive multiple of \(max(8, f))")
            }
        }
        if let name = s.scheduler { _ = try SchedulerChoice.make(configURL: schedulerConfig, name: name) }
    }

    /// Denoises latents conditioned on the (already noise-augmented) image embedding and the prompt, then decodes.
    /// Draws the initial latents from `generator` (after whatever the caller drew), as diffusers does.
    /// - Returns: the image tensor [1, 3, H, W] in [-1, 1] and the final latents.
    public func denoise(noisedEmbeds: Tensor, promptEmbeds: Tensor, negativeEmbeds: Tensor, settings s: DecoderSettings,
                        generator: RandomSource, progress: ProgressHandler? = nil) throws -> (image: Tensor, latents: Tensor) {
        let guided = s.guidanceScale > 1
        var scheduler = try SchedulerChoice.make(configURL: schedulerConfig, name: s.scheduler)
        try scheduler.setTimesteps(s.steps)
        let f = vaeScaleFactor
        let h = (s.height ?? defaultSize) / f, w = (s.width ?? defaultSize) / f
        let c = unet.config.inChannels
        var latents = Tensor(shape: [1, c, h, w], data: try generator.randn(count: c * h * w))
        if scheduler.initNoiseSigma != 1 { latents = scale(latents, scheduler.initNoiseSigma) }

        let context = guided ? concat([negativeEmbeds, promptEmbeds], axis: 0) : promptEmbeds
        // The unconditional branch sees a zero image embedding, as diffusers does.
        let labels = guided ? concat([Tensor(zeros: noisedEmbeds.shape), noisedEmbeds], axis: 0) : noisedEmbeds
        let steps = scheduler.timesteps
        for (i, t) in steps.enumerated() {
            let input = try scheduler.scaleModelInput(guided ? concat([latents, latents], axis: 0) : latents, timestep: t)
            var noise = try unet(sample: input, timestep: t, encoderHiddenStates: context, classLabels: labels)
            if guided {
                noise = guide(uncond: slice(noise, axis: 0, 0..<1), cond: slice(noise, axis: 0, 1..<2), scale: s.guidanceScale)
            }
            latents = try scheduler.step(modelOutput: noise, timestep: t, sample: latents, generator: generator).prevSample
            progress?("decoder", i + 1, steps.count)
        }
        let image = try vae.decode(scale(latents, 1 / vae.config.scalingFactor))
        return (image, latents)
    }
}

/// diffusers' image postprocessing: (x / 2 + 0.5) clamped to [0, 1], × 255, rounded half to even → RGB bytes.
public func tensorToImage(_ x: Tensor) throws -> RGBImage {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3])
    precondition(c == 3, "expected 3 channels, got \(c)")
    var pixels = [UInt8](repeating: 0, count: h * w * 3)
    for ch in 0..<3 { for i in 0..<(h * w) {
        let v = min(max(x.pointer[ch * h * w + i] / 2 + 0.5, 0), 1)
        pixels[i * 3 + ch] = UInt8((v * 255).rounded(.toNearestOrEven))
    } }
    return try RGBImage(width: w, height: h, pixels: pixels)
}
