import Foundation
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPTensor

/// Plain Stable Diffusion (StableDiffusionPipeline folders): prompt → UNet → VAE, image-to-image and inpainting
/// (any UNet by latent blending; an inpainting UNet, 9 input channels, does inpainting only). It has no
/// image-embedding path; a CLIP vision encoder (its own image_encoder/, or `model.clip`) embeds the finished
/// pictures so that search covers them.
public final class StableDiffusionEngine: ImageEngine, @unchecked Sendable {
    public static let classNames = ["StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"]
    public static let familyName = "plain Stable Diffusion"

    public let model: ResolvedModel, options: LoadOptions
    public let pipeline: StableDiffusionPipeline
    /// Embeds finished pictures; nil = they are recorded without an embedding.
    public let clip: CLIPImageEmbedder?
    public let runLock = NSLock()

    public init(model: ResolvedModel, options: LoadOptions) throws {
        self.model = model
        self.options = options
        pipeline = try StableDiffusionPipeline(model: model.folder, options: options)
        if let folder = model.clip {
            clip = try CLIPImageEmbedder(folder: folder, options: options)
        } else {
            clip = CLIPImageEmbedder.isPresent(in: model.folder) ? try CLIPImageEmbedder(folder: model.folder, options: options) : nil
        }
    }

    public var capabilities: EngineCapabilities {
        // An inpainting UNet needs a mask on every call, so it offers nothing else.
        var c: EngineCapabilities = pipeline.base.takesMaskChannels ? [.inpaint] : [.textToImage, .imageToImage, .inpaint]
        if clip != nil { c.insert(.embedImage) }
        return c
    }

    public var denoiser: LatentDenoiser { pipeline.base }
    public var embeddingDim: Int? { nil }
    public var prior: PriorPipeline? { nil }
    public var maxNoiseLevel: Int? { nil }

    public func render(_ job: RenderJob, stages: inout PipelineStages, context: RunContext) throws -> Generation {
        let progress: ProgressHandler = { try context.progress($0, $1, $2) }
        let preview: PreviewHandler = { context.preview($0, $1) }
        switch job {
        case let .textToImage(prompt, _, settings, seed):
            return try pipeline.generate(prompt: prompt, settings: settings, seed: seed, initImage: nil, progress: progress,
                                         preview: preview, onWarning: { context.warning($0) })
        case let .imageToImage(prompt, picture, mask, _, settings, seed):
            return try pipeline.generate(prompt: prompt, settings: settings, seed: seed, initImage: picture, mask: mask, progress: progress,
                                         preview: preview, onWarning: { context.warning($0) })
        case .decode:
            try require(.decodeEmbedding, for: "decode an image embedding (variations, interpolation, text diffs)")
            throw EngineError.unsupported("unreachable")
        }
    }

    public func pictureEmbedding(_ picture: RGBImage) throws -> [Float]? { try clip?.embed(picture).scalars }
}
