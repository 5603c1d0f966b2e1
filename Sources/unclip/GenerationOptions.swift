import ArgumentParser
import Foundation
import UnCLIPPipelines
import UnCLIPImage
import UnCLIPTensor
import UnCLIPWeights

/// Model location: --model, then $UNCLIP_MODEL, then the shipped model in the package's weights/.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model folder: a StableUnCLIPPipeline bundle, or a Stable unCLIP decoder folder (with --prior). Default: $UNCLIP_MODEL, else weights/shapes.")
    var model: String?

    @Option(help: "Karlo-style prior folder (prior, prior_scheduler, text_encoder, tokenizer) for decoder-only models.")
    var prior: String?

    @Option(help: "Prefer this weight variant when a folder has several (e.g. fp16).")
    var variant: String?

    @Option(help: "Precision of the UNet, prior and VAE weight products: fp32 (exact, default) or bf16 (faster, on CPUs with AVX512_BF16; others fall back to fp32 with a warning). CLIP encoders stay fp32.")
    var precision: GemmPrecision = .fp32

    @Flag(help: "Load each model when its stage starts and free it when the stage ends (text encoders, prior, UNet, VAE), so peak memory is the largest model rather than all of them. Costs the load time of each stage on every image.")
    var lowMemory = false

    /// The model folder; also reads its optional `unclip.json` defaults (see `ModelDefaults`) and sets the
    /// process-wide GEMM precision, as every command resolves its model here before loading it.
    func modelURL() throws -> URL {
        ComputePrecision.requested = precision
        ModelResidency.lowMemory = lowMemory
        let url = try resolvedModelURL()
        ModelDefaults.current = ModelDefaults.read(url)
        return url
    }

    private func resolvedModelURL() throws -> URL {
        if let model { return URL(fileURLWithPath: model) }
        if let env = ProcessInfo.processInfo.environment["UNCLIP_MODEL"], !env.isEmpty { return URL(fileURLWithPath: env) }
        let shipped = PackageLocation.weights.appendingPathComponent("shapes")
        guard FileManager.default.fileExists(atPath: shipped.path) else {
            throw CLIError("no model given: pass --model DIR or set UNCLIP_MODEL (weights/README.md says where to get the published weights)")
        }
        return shipped
    }

    func load() throws -> StableUnCLIPPipeline {
        let url = try modelURL()
        guard UnCLIPDecoder.isUnCLIP(url) else {
            throw CLIError("\(url.path) is a plain Stable Diffusion folder (no image_normalizer): it has no image-embedding path, so it cannot make variations; use generate or edit")
        }
        return try StableUnCLIPPipeline(model: url, prior: prior.map { URL(fileURLWithPath: $0) }, variant: variant)
    }
}

extension GemmPrecision: ExpressibleByArgument {}

/// Decoder options shared by generate and vary; names are part of the CLI contract.
struct DecoderOptions: ParsableArguments {
    @Option(help: "Negative prompt for the decoder's classifier-free guidance.")
    var negative: String?

    @Option(help: "Seed (torch-compatible). Default: a random seed, printed.")
    var seed: UInt64?

    @Option(help: "Decoder denoising steps.")
    var steps = 20

    @Option(help: "Decoder guidance scale (1 = no guidance). Default: the model folder's unclip.json recommendation, else 10 (diffusers').")
    var guidance: Float?

    @Option(help: "Noise added to the image embedding before decoding (0 = none; higher = looser variations).")
    var noiseLevel = 0

    @Option(help: "Decoder scheduler, overriding the model's: ddim, pndm, ddpm, euler, euler-karras, euler-a, dpm++2m, dpm++2m-karras, lms, lms-karras, or a diffusers class name (e.g. DPMSolverMultistepScheduler).")
    var scheduler: String?

    @Option(help: "Image width in pixels (a multiple of 8). Default: the model's native size.")
    var width: Int?

    @Option(help: "Image height in pixels (a multiple of 8). Default: the model's native size.")
    var height: Int?

    @Option(help: "Number of images; image i uses seed + i, so each can be reproduced alone.")
    var count = 1

    @Option(help: "Output PNG path (with --count > 1, '-SEED' is added before the extension). Default: unclip-SEED.png.")
    var output: String?

    @Option(help: "Also write the decoded x0 prediction every N steps beside the output (NAME.step-005.png).")
    var previewEvery: Int?

    @Flag(help: "Also write the final latents beside the output (NAME.latents.safetensors).")
    var saveLatents = false

    @Option(help: "Image-to-image (edit): how much of the init picture is replaced, 0–1 (default 0.8).")
    var strength: Float?

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        for (name, v) in [("--width", width), ("--height", height)] {
            if let v, v <= 0 || v % 8 != 0 { throw ValidationError("\(name) \(v) is not a positive multiple of 8") }
        }
        guard noiseLevel >= 0 else { throw ValidationError("--noise-level must be 0 or more") }
        if let previewEvery, previewEvery < 1 { throw ValidationError("--preview-every must be at least 1") }
        if let strength, !(0...1).contains(strength) { throw ValidationError("--strength must be between 0 and 1 (got \(strength))") }
    }

    var settings: DecoderSettings {
        var s = DecoderSettings()
        s.steps = steps; s.guidanceScale = guidance ?? ModelDefaults.current.guidanceScale ?? 10; s.noiseLevel = noiseLevel; s.negativePrompt = negative
        s.width = width; s.height = height; s.scheduler = scheduler; s.previewEvery = previewEvery
        return s
    }

    /// Seeds for the images: the given one or a random one, then +1 for each further image.
    func seeds() -> [UInt64] {
        let first = seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        return (0..<UInt64(count)).map { first &+ $0 }
    }

    func outputURL(seed: UInt64) -> URL {
        guard let output else { return URL(fileURLWithPath: "unclip-\(seed).png") }
        guard count > 1 else { return URL(fileURLWithPath: output) }
        let url = URL(fileURLWithPath: output)
        let ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
        return url.deletingLastPathComponent().appendingPathComponent("\(url.deletingPathExtension().lastPathComponent)-\(seed).\(ext)")
    }
}

/// Prior options (text-to-image only).
struct PriorOptions: ParsableArguments {
    @Option(help: "Prior denoising steps.")
    var priorSteps = 25

    @Option(help: "Prior guidance scale (1 = no guidance).")
    var priorGuidance: Float = 4

    @Option(help: "Image embeddings the prior samples; the one with the best CLIP score with the prompt is kept (DALL·E 2 uses 2).")
    var priorCandidates = 2

    func validate() throws {
        guard priorCandidates >= 1 else { throw ValidationError("--prior-candidates must be at least 1") }
        guard priorSteps >= 1 else { throw ValidationError("--prior-steps must be at least 1") }
    }

    var settings: PriorSettings { PriorSettings(steps: priorSteps, guidanceScale: priorGuidance, candidates: priorCandidates) }
}

/// Progress on stderr: a live bar on a terminal, a summary line otherwise.
final class Progress {
    let interactive = isatty(2) == 1
    var stageStart: [String: UInt64] = [:]

    func update(stage: String, step: Int, total: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        if step == 1 || stageStart[stage] == nil { stageStart[stage] = now }
        let elapsed = Double(now - stageStart[stage]!) / 1e9
        let perStep = elapsed / Double(max(step, 1))
        if interactive {
            let width = 24, filled = width * step / max(total, 1)
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let eta = perStep * Double(total - step)
            FileHandle.standardError.write(Data(String(format: "\r%@ %@ %d/%d  %.2f s/step  ETA %.0f s ", stage, bar, step, total, perStep, eta).utf8))
            if step == total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if step == total {
            warn(String(format: "%@: %d steps in %.1f s (%.2f s/step)", stage, total, elapsed, perStep))
        }
    }
}

extension DecoderOptions {
    /// NAME.step-005.png beside the output, for step index i (0-based).
    func previewURL(for output: URL, step: Int) -> URL {
        output.deletingPathExtension().appendingPathExtension(String(format: "step-%03d.png", step + 1))
    }

    /// A preview handler writing NAME.step-NNN.png files, or nil without --preview-every.
    func previewWriter(for url: URL) -> PreviewHandler? {
        guard previewEvery != nil else { return nil }
        return { step, image in
            do { try PNG.write(image, to: self.previewURL(for: url, step: step)) } catch { warn("warning: preview not written: \(error)") }
        }
    }
}

/// Settings a model folder recommends in an optional `unclip.json` (e.g. {"guidance_scale": 3}); flags override them.
/// Published diffusers folders have none, so diffusers' defaults apply to them.
struct ModelDefaults: Decodable {
    var guidanceScale: Float?
    enum CodingKeys: String, CodingKey { case guidanceScale = "guidance_scale" }

    nonisolated(unsafe) static var current = ModelDefaults()

    init() {}

    static func read(_ folder: URL) -> ModelDefaults {
        guard let data = FileManager.default.contents(atPath: folder.appendingPathComponent("unclip.json").path) else { return ModelDefaults() }
        guard let d = try? JSONDecoder().decode(ModelDefaults.self, from: data) else {
            warn("warning: ignoring \(folder.appendingPathComponent("unclip.json").path): not valid JSON")
            return ModelDefaults()
        }
        return d
    }
}
