import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPRandom
import UnCLIPSchedulers
import UnCLIPTensor
import UnCLIPTokenizer
import UnCLIPWeights

/// Called with (step index, decoded x0 prediction) every `previewEvery` steps.
public typealias PreviewHandler = (Int, RGBImage) throws -> Void

/// The part Stable Diffusion and Stable unCLIP share: text encoder, UNet, scheduler and VAE, the guided
/// denoising loop (text-to-image from noise, or image-to-image from a noised encoding), previews and decoding.
public final class LatentDenoiser {
    public let folder: URL
    public let tokenizer: CLIPTokenizer
    public let textEncoder: ModelSlot<CLIPTextModel>
    public let unet: ModelSlot<UNet2DConditionModel>
    public let vae: ModelSlot<AutoencoderKL>
    /// The models' configs, read up front (sizes and checks need them while the models themselves may be unloaded).
    public let textEncoderConfig: CLIPTextConfig
    public let unetConfig: UNet2DConditionConfig
    public let vaeConfig: AutoencoderKLConfig
    /// The scheduler's scheduler_config.json.
    public let schedulerConfig: URL

    public init(folder: URL, options: LoadOptions) throws {
        self.folder = folder
        let variant = options.variant, precision = options.precision, onDemand = options.lowMemory
        tokenizer = try CLIPTokenizer(directory: try Self.component(folder, "tokenizer"))
        let te = try ModelFolder(try Self.component(folder, "text_encoder"))
        let un = try ModelFolder(try Self.component(folder, "unet"))
        let va = try ModelFolder(try Self.component(folder, "vae"))
        textEncoderConfig = try te.config(CLIPTextConfig.self)
        unetConfig = try un.config(UNet2DConditionConfig.self)
        vaeConfig = try va.config(AutoencoderKLConfig.self)
        textEncoder = try ModelSlot(onDemand: onDemand) { try CLIPTextModel(folder: te, variant: variant) }
        unet = try ModelSlot(onDemand: onDemand) { try UNet2DConditionModel(folder: un, variant: variant, precision: precision) }
        vae = try ModelSlot(onDemand: onDemand) { try AutoencoderKL(folder: va, variant: variant, precision: precision) }
        schedulerConfig = try Self.component(folder, "scheduler").appendingPathComponent("scheduler_config.json")
    }

    /// A component folder of a model, or an error that names it.
    static func component(_ folder: URL, _ name: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw WeightError.missingFile(path: url.path, what: "'\(name)' component of the model folder \(folder.path)")
        }
        return url
    }

    /// Pixels per latent cell: 2^(VAE blocks − 1).
    public var vaeScaleFactor: Int { 1 << (vaeConfig.blockOutChannels.count - 1) }
    public var defaultSize: Int { (unetConfig.sampleSize ?? 64) * vaeScaleFactor }
    /// The scheduler's class name as the folder configures it.
    public var schedulerName: String {
        ((try? JSONSerialization.jsonObject(with: Data(contentsOf: schedulerConfig))) as? [String: Any])?["_class_name"] as? String ?? "?"
    }

    /// The text encoder's last hidden state for a prompt [1, 77, D] (no attention mask, as diffusers).
    public func encodePrompt(_ prompt: String, onWarning: (String) -> Void = { _ in }) throws -> Tensor {
        let t = tokenizer(prompt, maxLength: textEncoderConfig.maxPositionEmbeddings)
        if t.droppedTokens > 0 {
            onWarning("the prompt is \(t.tokenCount) tokens; CLIP reads \(t.ids.count), so the last \(t.droppedTokens) were dropped")
        }
        return try textEncoder.get()(inputIds: [t.ids]).lastHiddenState
    }

    /// Drops what on-demand (low-memory) loading brought in; a no-op when the models stay resident.
    public func releaseModels() {
        textEncoder.release(); unet.release(); vae.release()
    }

    /// Checks settings that do not depend on the pipeline kind.
    public func validate(_ s: DecoderSettings) throws {
        guard s.steps >= 1 else { throw ModelError.invalidInput("steps must be at least 1 (got \(s.steps))") }
        let f = max(8, vaeScaleFactor)
        for (name, v) in [("width", s.width), ("height", s.height)] {
            if let v, v <= 0 || v % f != 0 { throw ModelError.invalidInput("\(name) \(v) must be a positive multiple of \(f)") }
        }
        if let strength = s.strength, !(0...1).contains(strength) {
            throw ModelError.invalidInput("strength must be between 0 and 1 (got \(strength))")
        }
        if let name = s.scheduler { _ = try SchedulerChoice.make(configURL: schedulerConfig, name: name) }
    }

    /// Image [-1, 1] tensor for the VAE from an init picture, which must already have the output's size.
    public func initTensor(_ image: RGBImage) throws -> Tensor {
        let f = max(8, vaeScaleFactor)
        guard image.width % f == 0, image.height % f == 0 else {
            let w = max(f, image.width / f * f), h = max(f, image.height / f * f)
            throw ModelError.invalidInput("the init image is \(image.width)×\(image.height); its sides must be multiples of \(f) — crop or resize it, e.g. to \(w)×\(h)")
        }
        let n = image.width * image.height
        let t = Tensor(uninitialized: [1, 3, image.height, image.width])
        for i in 0..<n { for c in 0..<3 { t.pointer[c * n + i] = Float(image.pixels[i * 3 + c]) / 255 * 2 - 1 } }
        return t
    }

    /// A VAE encoding sampled as diffusers' `retrieve_latents(sample_mode="sample")` does (one draw), scaled.
    func encodeSample(_ x: Tensor, generator: RandomSource) throws -> Tensor {
        let (mean, logvar) = try vae.get().encodeDistribution(x)
        let eps = try generator.randn(count: mean.count)
        let sample = Tensor(uninitialized: mean.shape)
        for i in 0..<mean.count { sample.pointer[i] = mean.pointer[i] + Float(exp(0.5 * Double(logvar.pointer[i]))) * eps[i] }
        return scale(sample, vaeConfig.scalingFactor)
    }

    /// Whether the UNet is an inpainting one: it takes the latents, the mask and the masked picture's latents
    /// stacked on channels (stable-diffusion-inpainting's 4 + 1 + 4 = 9).
    public var takesMaskChannels: Bool { unetConfig.inChannels == vaeConfig.latentChannels * 2 + 1 }

    /// The guided denoising loop, from noise (text-to-image) or, with `initImage` and `strength`, from the
    /// noised VAE encoding of that image (image-to-image, as diffusers' img2img pipelines).
    /// With a `mask` as well it inpaints as diffusers' StableDiffusionInpaintPipeline: an inpainting UNet sees
    /// the mask and the masked picture's latents beside the latents; any other UNet has the kept part of the
    /// latents replaced after every step by the picture's latents noised to the next timestep.
    /// Random draws: [inpainting: (the picture's VAE sample unless an inpainting UNet at strength 1), the
    /// noise, the masked picture's VAE sample | img2img: the VAE sample, then the added noise | txt2img: the
    /// initial latents], then the scheduler's own draws.
    /// - context / classLabels: conditional batch; with guidance, `negativeContext` (and zero labels) go first.
    public func denoise(context: Tensor, negativeContext: Tensor, classLabels: Tensor?, settings s: DecoderSettings,
                        initImage: RGBImage? = nil, mask: InpaintMask? = nil, generator: RandomSource,
                        progress: ProgressHandler? = nil, preview: PreviewHandler? = nil) throws -> (image: Tensor, latents: Tensor) {
        let guided = s.guidanceScale > 1
        var scheduler = try SchedulerChoice.make(configURL: schedulerConfig, name: s.scheduler)
        try scheduler.setTimesteps(s.steps)
        var timesteps = scheduler.timesteps
        let c = vaeConfig.latentChannels
        var latents: Tensor
        // Inpainting state: the mask at latent size, the masked picture's latents (inpainting UNet), and the
        // picture's latents with the starting noise (blending, for every other UNet).
        var maskLatent: Tensor?, maskedLatents: Tensor?, blend: (image: Tensor, noise: Tensor)?
        if mask != nil, initImage == nil { throw ModelError.invalidInput("a mask needs the picture it applies to (the init image)") }
        if takesMaskChannels, mask == nil {
            throw ModelError.invalidInput("\(folder.path) has an inpainting UNet (\(unetConfig.inChannels) input channels): it needs an init image and a mask")
        }
        if !takesMaskChannels, unetConfig.inChannels != c {
            throw ModelError.invalidInput("the UNet takes \(unetConfig.inChannels) input channels; expected \(c) (latents) or \(2 * c + 1) (inpainting)")
        }
        // Low memory: the text encoder's work is done by now (the caller encoded the prompts).
        textEncoder.release()

        if let initImage {
            // diffusers' get_timesteps: keep the last int(steps · strength) steps of the schedule.
            let strength = s.strength ?? 0.8
            let keep = min(Int(Float(s.steps) * strength), s.steps)
            let order = timesteps.count / max(s.steps, 1)   // PNDM's schedule has extra entries
            let start = max(s.steps - keep, 0) * max(order, 1)
            timesteps = Array(timesteps.dropFirst(start))
            // As diffusers' img2img pipelines: the sigma schedulers start at this position, not at
            // whatever index the first kept timestep looks up to.
            try scheduler.setBeginIndex(start)
            let x = try initTensor(initImage)
            if let mask {
                guard mask.width == initImage.width, mask.height == initImage.height else {
                    throw ModelError.invalidInput("the mask is \(mask.width)×\(mask.height) but the picture is \(initImage.width)×\(initImage.height); they must be the same size")
                }
                // diffusers' inpainting refuses fewer than one step after strength (counted in steps, so PNDM's
                // extra timestep does not rescue it as it does in img2img).
                guard keep >= 1, let first = timesteps.first else {
                    throw ModelError.invalidInput("strength \(strength) leaves no denoising step of \(s.steps); inpainting needs at least one")
                }
                // diffusers' prepare_latents: at strength 1 the latents start from pure noise, and an
                // inpainting UNet then never needs the picture's own latents (no draw for them).
                let fromNoise = strength == 1
                let imageLatents: Tensor? = try (fromNoise && takesMaskChannels ? nil : encodeSample(x, generator: generator))
                let shape = [1, c, x.shape[2] / vaeScaleFactor, x.shape[3] / vaeScaleFactor]
                let noise = Tensor(shape: shape, data: try generator.randn(count: shape.reduce(1, *)))
                if fromNoise {
                    latents = scheduler.initNoiseSigma != 1 ? scale(noise, scheduler.initNoiseSigma) : noise
                } else {
                    latents = try scheduler.addNoise(original: imageLatents!, noise: noise, timesteps: [first])
                }
                // prepare_mask_latents: the picture with the repainted part set to 0 (mid grey), encoded (a draw
                // even when the UNet does not take it, so the scheduler's draws stay where diffusers has them).
                let repaint = mask.repaint
                let masked = Tensor(uninitialized: x.shape)
                let n = x.shape[2] * x.shape[3]
                for ch in 0..<3 { for i in 0..<n { masked.pointer[ch * n + i] = repaint[i] ? 0 : x.pointer[ch * n + i] } }
                let encodedMasked = try encodeSample(masked, generator: generator)
                let m = mask.latentTensor(height: shape[2], width: shape[3])
                maskLatent = m
                if takesMaskChannels { maskedLatents = encodedMasked } else { blend = (imageLatents!, noise) }
                if s.previewEvery == nil { vae.release() }
            } else {
                let initLatents = try encodeSample(x, generator: generator)
                guard let first = timesteps.first else {
                    // Strength 0: nothing to denoise; decode the encoding as it is.
                    defer { vae.release() }
                    return (try vae.get().decode(scale(initLatents, 1 / vaeConfig.scalingFactor)), initLatents)
                }
                // Previews need the VAE during the loop; otherwise it can go until the final decode.
                if s.previewEvery == nil { vae.release() }
                let noise = Tensor(shape: initLatents.shape, data: try generator.randn(count: initLatents.count))
                latents = try scheduler.addNoise(original: initLatents, noise: noise, timesteps: [first])
            }
        } else {
            let f = vaeScaleFactor
            let h = (s.height ?? defaultSize) / f, w = (s.width ?? defaultSize) / f
            // A full run starts at index 0. Looking the first timestep up instead (diffusers' text-to-image
            // pipelines do) takes the second of repeated timesteps, which cosine schedules with Karras
            // sigmas have, and then runs out of sigmas before the last step.
            try scheduler.setBeginIndex(0)
            latents = Tensor(shape: [1, c, h, w], data: try generator.randn(count: c * h * w))
            if scheduler.initNoiseSigma != 1 { latents = scale(latents, scheduler.initNoiseSigma) }
        }

        let ctx = guided ? concat([negativeContext, context], axis: 0) : context
        // The unconditional branch sees zero class labels (Stable unCLIP's image embedding), as diffusers does.
        let labels = classLabels.map { guided ? concat([Tensor(zeros: $0.shape), $0], axis: 0) : $0 }
        // An inpainting UNet's extra channels, the same for both halves of a guided batch.
        let extra = try maskedLatents.map { masked -> Tensor in
            guard let maskLatent else { throw ModelError.invalidInput("internal: masked latents without a mask") }
            let one = concat([maskLatent, masked], axis: 1)
            return guided ? concat([one, one], axis: 0) : one
        }
        do {  // the UNet stays referenced only inside this block, so release() below frees it
            let unet = try self.unet.get()
            for (i, t) in timesteps.enumerated() {
                var input = try scheduler.scaleModelInput(guided ? concat([latents, latents], axis: 0) : latents, timestep: t)
                if let extra { input = concat([input, extra], axis: 1) }
                var noise = try unet(sample: input, timestep: t, encoderHiddenStates: ctx, classLabels: labels)
                if guided {
                    noise = guide(uncond: slice(noise, axis: 0, 0..<1), cond: slice(noise, axis: 0, 1..<2), scale: s.guidanceScale)
                }
                let out = try scheduler.step(modelOutput: noise, timestep: t, sample: latents, generator: generator)
                latents = out.prevSample
                if let blend, let maskLatent {
                    // Keep the picture outside the mask: its latents noised to where the next step starts
                    // (un-noised after the last step), as diffusers does for UNets without mask channels.
                    let proper = try (i < timesteps.count - 1
                        ? scheduler.addNoise(original: blend.image, noise: blend.noise, timesteps: [timesteps[i + 1]])
                        : blend.image)
                    latents = blendLatents(kept: proper, repainted: latents, mask: maskLatent)
                }
                if let every = s.previewEvery, every > 0, let preview, (i + 1) % every == 0,
                   let x0 = out.predOriginalSample {
                    try preview(i, try tensorToImage(try vae.get().decode(scale(x0, 1 / vaeConfig.scalingFactor))))
                }
                try progress?("denoise", i + 1, timesteps.count)
            }
        }
        self.unet.release()
        defer { vae.release() }
        return (try vae.get().decode(scale(latents, 1 / vaeConfig.scalingFactor)), latents)
    }
}

/// (1 − mask) · kept + mask · repainted, the mask [1, 1, h, w] broadcast over the latents' channels.
func blendLatents(kept: Tensor, repainted: Tensor, mask: Tensor) -> Tensor {
    let out = Tensor(uninitialized: repainted.shape)
    let hw = mask.count, channels = repainted.count / hw
    for ch in 0..<channels {
        for i in 0..<hw {
            let m = mask.pointer[i], j = ch * hw + i
            out.pointer[j] = (1 - m) * kept.pointer[j] + m * repainted.pointer[j]
        }
    }
    return out
}

/// diffusers' image postprocessing: (x / 2 + 0.5) clamped to [0, 1], × 255, rounded half to even → RGB bytes.
public func tensorToImage(_ x: Tensor) throws -> RGBImage {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3])
    guard c == 3 else { throw ModelError.invalidInput("expected a 3-channel image, got \(c) channels") }
    var pixels = [UInt8](repeating: 0, count: h * w * 3)
    for ch in 0..<3 { for i in 0..<(h * w) {
        let v = min(max(x.pointer[ch * h * w + i] / 2 + 0.5, 0), 1)
        pixels[i * 3 + ch] = UInt8((v * 255).rounded(.toNearestOrEven))
    } }
    return try RGBImage(width: w, height: h, pixels: pixels)
}
