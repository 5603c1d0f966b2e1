import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPRandom
import UnCLIPTensor

/// Plain Stable Diffusion (1.x / 2.x folders, as diffusers' StableDiffusionPipeline saves them): prompt →
/// text encoder → UNet with cross-attention → VAE, from noise or, with an init image, image-to-image.
public final class StableDiffusionPipeline {
    public let base: LatentDenoiser

    public convenience init(model: URL, variant: String? = nil) throws {
        try self.init(model: model, options: LoadOptions(variant: variant))
    }

    public init(model: URL, options: LoadOptions) throws {
        base = try LatentDenoiser(folder: model, options: options)
        guard base.unetConfig.classEmbedType == nil else {
            throw ModelError.invalidInput("\(model.path) has a class-conditioned UNet but no image_normalizer; it is neither plain Stable Diffusion nor a complete Stable unCLIP folder")
        }
    }

    /// Random draws as diffusers' StableDiffusionPipeline (latents, then scheduler draws), with an init
    /// image StableDiffusionImg2ImgPipeline (the VAE sample, the added noise, then scheduler draws), and with
    /// a mask too StableDiffusionInpaintPipeline (see `LatentDenoiser.denoise`). diffusers' inpainting
    /// strength defaults to 1 (`settings.strength` nil here means img2img's 0.8, so callers set it).
    public func generate(prompt: String, settings: DecoderSettings, seed: UInt64, initImage: RGBImage? = nil,
                         mask: InpaintMask? = nil, progress: ProgressHandler? = nil, preview: PreviewHandler? = nil,
                         onWarning: (String) -> Void = { _ in }) throws -> Generation {
        try base.validate(settings)
        let generator = TorchGenerator(seed: seed)
        let context = try base.encodePrompt(prompt, onWarning: onWarning)
        let negative = try base.encodePrompt(settings.negativePrompt ?? "")
        let (image, latents) = try base.denoise(context: context, negativeContext: negative, classLabels: nil, settings: settings,
                                                initImage: initImage, mask: mask, generator: generator, progress: progress, preview: preview)
        return Generation(image: try tensorToImage(image), imageEmbeds: Tensor(zeros: [1, 0]), prior: nil, latents: latents, seed: seed)
    }
}
