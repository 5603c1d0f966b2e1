import Foundation
import UnCLIPModels
import UnCLIPPipelines
import UnCLIPTensor
import UnCLIPWeights

/// Checks every numeric parameter of a request before anything is loaded or computed: range and finiteness,
/// with the parameter's name (as the request types and the HTTP API spell it) in the error.
public enum RequestCheck {
    public static let maxSteps = 1000
    /// Guidance scales past this only amplify noise (A1111's slider stops at 30); 1e30 made flat grey images.
    public static let maxGuidance: Float = 100
    public static let maxCandidates = 64
    public static let maxCount = 100_000
    public static let maxFrames = 1000
    /// Characters; CLIP reads 77 tokens, so a longer prompt is almost surely a mistake (or an attack).
    public static let maxPromptLength = 100_000

    public static func range<T: Comparable>(_ name: String, _ value: T, _ bounds: ClosedRange<T>) throws {
        guard bounds.contains(value) else {
            throw EngineError.invalidParameter(name: name, reason: "must be in \(bounds.lowerBound)…\(bounds.upperBound) (got \(value))")
        }
    }

    public static func finite(_ name: String, _ value: Float, _ bounds: ClosedRange<Float>) throws {
        guard value.isFinite else { throw EngineError.invalidParameter(name: name, reason: "must be a finite number (got \(value))") }
        try range(name, value, bounds)
    }

    public static func prompt(_ name: String, _ text: String) throws {
        guard text.count <= maxPromptLength else {
            throw EngineError.invalidParameter(name: name, reason: "is \(text.count) characters; at most \(maxPromptLength) are accepted (CLIP reads 77 tokens)")
        }
    }

    public static func check(_ d: DecoderParameters, sizeMultiple: Int) throws {
        try range("steps", d.steps, 1...maxSteps)
        if let g = d.guidanceScale { try finite("guidance_scale", g, 0...maxGuidance) }
        try range("noise_level", d.noiseLevel, 0...100_000)
        if let n = d.negativePrompt { try prompt("negative_prompt", n) }
        for (name, v) in [("width", d.width), ("height", d.height)] {
            guard let v else { continue }
            guard v > 0, v % sizeMultiple == 0 else {
                throw EngineError.invalidParameter(name: name, reason: "must be a positive multiple of \(sizeMultiple) (got \(v))")
            }
        }
        if let p = d.previewEvery { try range("preview_every", p, 1...maxSteps) }
    }

    public static func check(_ p: PriorParameters) throws {
        try range("prior_steps", p.steps, 1...maxSteps)
        try finite("prior_guidance_scale", p.guidanceScale, 0...maxGuidance)
        try range("prior_candidates", p.candidates, 1...maxCandidates)
    }

    /// The seeds of a plan, refusing a plan that would run past 2⁶⁴ − 1 (seeds must not wrap to 0).
    public static func seeds(_ plan: SeedPlan) throws -> [UInt64] {
        try range("count", plan.count, 1...maxCount)
        let first = plan.first ?? UInt64.random(in: 0...UInt64(UInt32.max))
        guard UInt64.max - first >= UInt64(plan.count - 1) else {
            throw EngineError.invalidParameter(name: "seed", reason: "\(first) + \(plan.count - 1) images would pass the largest seed, 2^64 − 1; use a smaller seed")
        }
        return (0..<UInt64(plan.count)).map { first + $0 }
    }
}

/// How much memory a run needs, so that a request too large for the machine is refused with a number instead
/// of being killed by the kernel half-way. An estimate from the architecture, not a measurement: the largest
/// live activations of the UNet (skip connections of the top level, GEGLU) and of the VAE decoder's
/// full-resolution blocks (plus the im2col buffer of the convolution path CPUs without AVX-512 take).
public struct MemoryEstimate: Sendable, Equatable {
    public var unetBytes: Int64
    public var vaeBytes: Int64
    /// Weights that are loaded for the run only (low-memory residency); 0 when they are already resident.
    public var weightBytes: Int64
    public var peakBytes: Int64 { max(unetBytes, vaeBytes) + weightBytes }

    public var detail: String {
        String(format: "UNet activations %.2f GiB, VAE decoder %.2f GiB, weights loaded per stage %.2f GiB",
               Double(unetBytes) / 1_073_741_824, Double(vaeBytes) / 1_073_741_824, Double(weightBytes) / 1_073_741_824)
    }

    /// The estimate for an image of `width` × `height` on `engine`.
    public static func of(_ engine: any ImageEngine, width: Int, height: Int, guided: Bool) -> MemoryEstimate {
        let d = engine.denoiser
        return of(unet: d.unetConfig, vae: d.vaeConfig, width: width, height: height, guided: guided,
                  perStageWeights: engine.options.lowMemory ? folderBytes(d.folder.appendingPathComponent("unet")) : 0)
    }

    /// The estimate from the model's configs alone (before any weight is loaded).
    public static func of(unet: UNet2DConditionConfig, vae v: AutoencoderKLConfig, width: Int, height: Int, guided: Bool,
                          perStageWeights: Int64) -> MemoryEstimate {
        let f = Double(1 << max(0, v.blockOutChannels.count - 1))
        let pixels = Double(width) * Double(height)
        let cells = pixels / (f * f)
        let batch = guided ? 2.0 : 1.0
        let c0 = Double(unet.blockOutChannels.first ?? 320)
        // Top-level activations kept for the skip connections and the transformer's GEGLU (8·c0 wide).
        let unetBytes = batch * cells * c0 * 4 * 24
        let top = Double(v.blockOutChannels.first ?? 128)
        let next = v.blockOutChannels.count > 1 ? Double(v.blockOutChannels[1]) : top
        var vaeBytes = pixels * 4 * (2 * next + 3 * top)
        // CPUs with neither AVX-512 nor AVX2 + FMA take the im2col + sgemm convolution (ConvPath.best, by CPUID):
        // add the im2col buffer of the widest full-resolution convolution.
        if ConvPath.best == .im2colSgemm { vaeBytes += pixels * 4 * 9 * next }
        return MemoryEstimate(unetBytes: Int64(min(unetBytes, 9e18)), vaeBytes: Int64(min(vaeBytes, 9e18)), weightBytes: perStageWeights)
    }

    /// Throws when the estimate exceeds the memory available now.
    public func check(width: Int, height: Int) throws {
        if let available = Self.availableBytes(), peakBytes > available {
            throw EngineError.insufficientMemory(estimateBytes: peakBytes, availableBytes: available, detail: "\(width)×\(height): \(detail)")
        }
    }

    static func folderBytes(_ url: URL) -> Int64 {
        let fm = FileManager.default
        var total: Int64 = 0
        for name in (try? fm.contentsOfDirectory(atPath: url.path)) ?? [] where name.hasSuffix(".safetensors") {
            total += (try? fm.attributesOfItem(atPath: url.appendingPathComponent(name).path)[.size] as? Int64) ?? 0
        }
        return total
    }

    /// Memory the process can still take: the smaller of the kernel's MemAvailable and the cgroup's limit
    /// minus its usage. Nil when neither can be read.
    public static func availableBytes() -> Int64? {
        var best: Int64?
        if let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in info.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                if let kb = Int64(line.split(separator: " ").dropFirst().first ?? "") { best = kb * 1024 }
            }
        }
        func read(_ path: String) -> Int64? {
            (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        if let limit = read("/sys/fs/cgroup/memory.max"), let used = read("/sys/fs/cgroup/memory.current") {
            best = min(best ?? .max, max(0, limit - used))
        }
        return best
    }
}

/// Checks a request against a model before its weights are loaded: parameters, and the memory the images need
/// (a 100000×100000 request is refused in milliseconds, not killed by the kernel after the model has loaded).
public enum Preflight {
    /// Returns warnings (a size far from the model's native one).
    @discardableResult
    public static func check(_ d: DecoderParameters, model: ResolvedModel, options: LoadOptions, size: (Int, Int)? = nil) throws -> [String] {
        let unet = try ModelFolder(model.folder.appendingPathComponent("unet")).config(UNet2DConditionConfig.self)
        let vae = try ModelFolder(model.folder.appendingPathComponent("vae")).config(AutoencoderKLConfig.self)
        let factor = 1 << max(0, vae.blockOutChannels.count - 1)
        try RequestCheck.check(d, sizeMultiple: max(8, factor))
        let native = (unet.sampleSize ?? 64) * factor
        let (w, h) = size ?? (d.width ?? native, d.height ?? native)
        let guided = (d.guidanceScale ?? model.defaults.guidanceScale ?? DecoderParameters.fallbackGuidance) > 1
        let weights = options.lowMemory ? MemoryEstimate.folderBytes(model.folder.appendingPathComponent("unet")) : 0
        try MemoryEstimate.of(unet: unet, vae: vae, width: w, height: h, guided: guided, perStageWeights: weights).check(width: w, height: h)
        return sizeWarning(width: w, height: h, native: native).map { [$0] } ?? []
    }

    /// A warning when the size is far from what the model was trained on (it still runs).
    public static func sizeWarning(width w: Int, height h: Int, native: Int) -> String? {
        guard max(w, h) > 2 * native || min(w, h) * 2 < native else { return nil }
        return "\(w)×\(h) is far from this model's native \(native)×\(native); expect repeated or broken compositions"
    }
}
