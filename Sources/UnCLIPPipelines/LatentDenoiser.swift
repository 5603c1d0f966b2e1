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

    /// The guided denoising loop, from noise (text-to-image) or, with `initImage` and `strength`, from the
    /// noised VAE encoding of that image (image-to-image, as diffusers' img2img pipelines).
    /// Random draws: [img2img: the VAE sample, then the added noise | txt2img: the initial latents], then
    /// the scheduler's own draws.
    /// - context / classLabels: conditional batch; with guidance, `negativeContext` (and zero labels) go first.
    public func denoise(context: Tensor, negativeContext: Tensor, classLabels: Tensor?, settings s: DecoderSettings,
                        initImage: RGBImage? = nil, generator: RandomSource, progress: ProgressHandler? = nil,
                        preview: PreviewHandler? = nil) throws -> (image: Tensor, latents: Tensor) {
        let guided = s.guidanceScale > 1
        var scheduler = try SchedulerChoice.make(configURL: schedulerConfig, name: s.scheduler)
        try scheduler.setTimesteps(s.steps)
        var timesteps = scheduler.timesteps
        let c = unetConfig.inChannels
        var latents: Tensor
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
            let (mean, logvar) = try vae.get().encodeDistribution(x)
            let eps = try generator.randn(count: mean.count)
            let sample = Tensor(uninitialized: mean.shape)
            for i in 0..<mean.count { sample.pointer[i] = mean.pointer[i] + Float(exp(0.5 * Double(logvar.pointer[i]))) * eps[i] }
            let initLatents = scale(sample, vaeConfig.scalingFactor)
            guard let first = timesteps.first else {
                // Strength 0: nothing to denoise; decode the encoding as it is.
                defer { vae.release() }
                return (try vae.get().decode(scale(initLatents, 1 / vaeConfig.scalingFactor)), initLatents)
            }
            // Previews need the VAE during the loop; otherwise it can go until the final decode.
            if s.previewEvery == nil { vae.release() }
            let noise = Tensor(shape: initLatents.shape, data: try generator.randn(count: initLatents.count))
            latents = try scheduler.addNoise(original: initLatents, noise: noise, timesteps: [first])
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
        do {  // the UNet stays referenced only inside this block, so release() below frees it
            let unet = try self.unet.get()
            for (i, t) in timesteps.enumerated() {
                let input = try scheduler.scaleModelInput(guided ? concat([latents, latents], axis: 0) : latents, timestep: t)
                var noise = try unet(sample: input, timestep: t, encoderHiddenStates: ctx, classLabels: labels)
                if guided {
                    noise = guide(uncond: slice(noise, axis: 0, 0..<1), cond: slice(noise, axis: 0, 1..<2), scale: s.guidanceScale)
                }
                let out = try scheduler.step(modelOutput: noise, timestep: t, sample: latents, generator: generator)
                latents = out.prevSample
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
