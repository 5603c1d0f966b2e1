import Foundation
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPTensor

/// Stable unCLIP (diffusers' StableUnCLIPPipeline / StableUnCLIPImg2ImgPipeline folders): prior → CLIP image
/// embedding → noise-augmented → decoder. A decoder-only folder takes its prior from `model.prior`.
public final class StableUnCLIPEngine: ImageEngine, @unchecked Sendable {
    public static let classNames = ["StableUnCLIPPipeline", "StableUnCLIPImg2ImgPipeline"]
    public static let familyName = "Stable unCLIP"

    public let model: ResolvedModel, options: LoadOptions
    public let pipeline: StableUnCLIPPipeline
    public let runLock = NSLock()

    public init(model: ResolvedModel, options: LoadOptions) throws {
        self.model = model
        self.options = options
        pipeline = try StableUnCLIPPipeline(model: model.folder, prior: model.prior, options: options)
    }

    public var capabilities: EngineCapabilities {
        var c: EngineCapabilities = [.decodeEmbedding, .imageToImage, .inpaint]
        if pipeline.prior != nil { c.formUnion([.textToImage, .prior]) }
        if pipeline.decoder.imageEmbedder != nil { c.insert(.embedImage) }
        return c
    }

    public var denoiser: LatentDenoiser { pipeline.decoder.base }
    public var embeddingDim: Int? { pipeline.decoder.embeddingDim }
    public var prior: PriorPipeline? { pipeline.prior }
    public var maxNoiseLevel: Int? { pipeline.decoder.maxNoiseLevel }

    public func render(_ job: RenderJob, stages: inout PipelineStages, context: RunContext) throws -> Generation {
        let progress: ProgressHandler = { try context.progress($0, $1, $2) }
        let preview: PreviewHandler = { context.preview($0, $1) }
        let warn: (String) -> Void = { context.warning($0) }
        switch job {
        case let .textToImage(prompt, priorSettings, settings, seed):
            _ = try requirePrior(for: "text-to-image")
            return try pipeline.textToImage(prompt: prompt, priorSettings: priorSettings, settings: settings, seed: seed,
                                            stages: &stages, progress: progress, preview: preview, onWarning: warn)
        case let .imageToImage(prompt, picture, mask, priorSettings, settings, seed):
            _ = try requirePrior(for: mask == nil ? "image-to-image" : "inpainting")
            return try pipeline.imageToImage(prompt: prompt, initImage: picture, mask: mask, priorSettings: priorSettings, settings: settings,
                                             seed: seed, stages: &stages, progress: progress, preview: preview, onWarning: warn)
        case let .decode(embedding, prompt, settings, seed):
            return try pipeline.variation(imageEmbeds: Tensor(shape: [1, embedding.count], data: embedding), prompt: prompt,
                                          settings: settings, seed: seed, stages: &stages, progress: progress, preview: preview,
                                          onWarning: warn)
        }
    }

    public func pictureEmbedding(_ picture: RGBImage) throws -> [Float]? {
        try pipeline.decoder.imageEmbedder?.embed(picture).scalars
    }
}
