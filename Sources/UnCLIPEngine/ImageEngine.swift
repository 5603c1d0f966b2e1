import Foundation
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPTensor

/// What an engine can do; front ends offer only what the loaded model declares.
public struct EngineCapabilities: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Prompt → image.
    public static let textToImage = EngineCapabilities(rawValue: 1 << 0)
    /// A diffusion prior: prompt → CLIP image embedding (best of N), and CLIP text embeddings (text diffs, search).
    public static let prior = EngineCapabilities(rawValue: 1 << 1)
    /// CLIP image embedding → image: variations, interpolations, text diffs.
    public static let decodeEmbedding = EngineCapabilities(rawValue: 1 << 2)
    /// Init picture + prompt → image.
    public static let imageToImage = EngineCapabilities(rawValue: 1 << 3)
    /// Picture → CLIP image embedding (image search, variations of outside pictures, search over its images).
    public static let embedImage = EngineCapabilities(rawValue: 1 << 4)
    /// Init picture + mask + prompt → the picture with the mask's white part repainted.
    public static let inpaint = EngineCapabilities(rawValue: 1 << 5)

    /// Names, for messages and the server's model list.
    public var names: [String] {
        [(Self.textToImage, "text-to-image"), (.prior, "prior"), (.decodeEmbedding, "decode-embedding"),
         (.imageToImage, "image-to-image"), (.embedImage, "embed-image"), (.inpaint, "inpaint")].filter { contains($0.0) }.map(\.1)
    }
}

/// One image for an engine to make.
public enum RenderJob {
    /// Prompt → (prior →) decoder.
    case textToImage(prompt: String, prior: PriorSettings, settings: DecoderSettings, seed: UInt64)
    /// An init picture noised to `settings.strength` and denoised toward the prompt; with a mask, only the
    /// mask's white part is repainted (inpainting).
    case imageToImage(prompt: String, picture: RGBImage, mask: InpaintMask?, prior: PriorSettings, settings: DecoderSettings,
                      seed: UInt64)
    /// A CLIP image embedding decoded (variations, interpolation frames, text diffs).
    case decode(embedding: [Float], prompt: String, settings: DecoderSettings, seed: UInt64)
}

/// A loaded model family. Conformers wrap one pipeline family each; the registry picks one by
/// `model_index.json`'s `_class_name`. Adding a family is one new conformer added to `EngineRegistry.standard`.
///
/// The models and their scratch memory are not reentrant, so an engine runs one job at a time: callers hold
/// `runLock` around `render` (the generation service does). Everything else may be called from any thread.
public protocol ImageEngine: AnyObject, Sendable {
    /// The pipeline classes this engine runs.
    static var classNames: [String] { get }
    /// What people call the family, for messages ("Stable unCLIP", "plain Stable Diffusion").
    static var familyName: String { get }
    init(model: ResolvedModel, options: LoadOptions) throws

    var model: ResolvedModel { get }
    var options: LoadOptions { get }
    var capabilities: EngineCapabilities { get }
    /// Text encoder, UNet, scheduler and VAE (sizes, tokenizer, settings checks).
    var denoiser: LatentDenoiser { get }
    /// The width of the CLIP image embeddings the decoder takes (nil: it takes none).
    var embeddingDim: Int? { get }
    /// The diffusion prior, when the model has one.
    var prior: PriorPipeline? { get }
    /// The largest noise level the image embedding can be augmented with (nil: the model takes no embedding).
    var maxNoiseLevel: Int? { get }
    /// Serialises `render` calls on this engine.
    var runLock: NSLock { get }

    /// Makes one image. `stages` brings cached encodings in and takes computed ones out; engines without a
    /// cacheable stage leave it alone. Progress, previews and warnings go through `context`.
    func render(_ job: RenderJob, stages: inout PipelineStages, context: RunContext) throws -> Generation
    /// The CLIP embedding of a finished picture (what search ranks), nil when the engine has no image encoder.
    func pictureEmbedding(_ picture: RGBImage) throws -> [Float]?
}

extension ImageEngine {
    /// Native output size in pixels (the UNet's sample size × the VAE's scale factor).
    public var nativeSize: Int { denoiser.defaultSize }

    /// Warnings about how the engine was loaded, for the front end to show once.
    public var loadWarnings: [String] {
        var out = model.warnings
        if options.precision != options.precision.runnable {
            out.append("\(options.precision.rawValue) precision needs a CPU with AVX512_BF16; this one has none, so \(options.precision.runnable.rawValue) is used")
        }
        return out
    }

    /// Fails with a message naming the model when it lacks a capability.
    public func require(_ capability: EngineCapabilities, for what: String) throws {
        guard capabilities.contains(capability) else {
            throw EngineError.unsupported("\(model.folder.path) is a \(Self.familyName) model (\(model.className)), which cannot \(what): it has no \(capability.names.joined(separator: ", ")) path (it can: \(capabilities.names.joined(separator: ", ")))")
        }
    }

    /// The prior, or an error naming what is missing.
    public func requirePrior(for what: String) throws -> PriorPipeline {
        guard let prior else {
            throw EngineError.unsupported("\(model.folder.path) has no diffusion prior, which \(what) needs; give a separate Karlo-style prior folder")
        }
        return prior
    }

    /// The CLIP image embedding of a picture through the engine's image encoder.
    public func imageEmbedding(_ picture: RGBImage) throws -> [Float] {
        guard let e = try pictureEmbedding(picture) else {
            throw EngineError.unsupported("\(model.folder.path) has no CLIP image encoder (image_encoder/ and feature_extractor/), which embedding a picture needs")
        }
        return e
    }
}
