import Foundation
import UnCLIPPipelines

/// Decoder settings as a request gives them: what is left nil comes from the model (its `unclip.json`
/// defaults, its native size, its own scheduler), the same for every kind of request.
public struct DecoderParameters: Codable, Sendable, Equatable {
    public var steps: Int = 20
    /// Classifier-free guidance scale (1 = none). Nil: the model's recommendation, else diffusers' 10.
    public var guidanceScale: Float?
    /// Noise added to the image embedding before decoding (Stable unCLIP's noise_level).
    public var noiseLevel: Int = 0
    public var negativePrompt: String?
    /// Output size in pixels; nil = the model's native size.
    public var width: Int?
    public var height: Int?
    /// A scheduler overriding the model's: alias, diffusers class name or AUTOMATIC1111 name.
    public var scheduler: String?
    /// Decode the x0 prediction every N steps for previews.
    public var previewEvery: Int?

    public init() {}

    /// diffusers' StableUnCLIPPipeline default guidance, used when neither the request nor the model says.
    public static let fallbackGuidance: Float = 10

    /// The pipeline settings for `model`, with its defaults filled in.
    public func settings(for model: ResolvedModel, strength: Float? = nil) -> DecoderSettings {
        var s = DecoderSettings()
        s.steps = steps
        s.guidanceScale = guidanceScale ?? model.defaults.guidanceScale ?? Self.fallbackGuidance
        s.noiseLevel = noiseLevel
        s.negativePrompt = negativePrompt
        s.width = width
        s.height = height
        s.scheduler = scheduler
        s.previewEvery = previewEvery
        s.strength = strength
        return s
    }
}

/// The prior's settings (text-to-image and edits with Stable unCLIP); diffusers' defaults, plus DALL·E 2's
/// two candidates.
public struct PriorParameters: Codable, Sendable, Equatable {
    public var steps: Int = 25
    public var guidanceScale: Float = 4
    public var candidates: Int = 2
    public init() {}
    public var settings: PriorSettings { PriorSettings(steps: steps, guidanceScale: guidanceScale, candidates: candidates) }
}

/// Seeds of a request that makes `count` images: `first`, first + 1, …, so each image can be made again alone.
public struct SeedPlan: Codable, Sendable, Equatable {
    /// Nil: a random seed, chosen when the plan is expanded.
    public var first: UInt64?
    public var count: Int = 1
    public init(first: UInt64? = nil, count: Int = 1) { self.first = first; self.count = count }
}

/// Where a picture comes from.
public enum PictureSource: Sendable, Equatable {
    case file(URL)
    /// Bytes (an upload); `name` says where they came from in messages and records.
    case data(Data, name: String)

    public var name: String {
        switch self {
        case let .file(url): return url.path
        case let .data(_, name): return name
        }
    }
}

/// Prompt → image.
public struct TextToImageRequest: Sendable, Equatable {
    public var prompt: String
    public var prior = PriorParameters()
    public var decoder = DecoderParameters()
    public var seeds = SeedPlan()
    public init(prompt: String) { self.prompt = prompt }
}

/// Image-to-image: a picture noised to `strength` and denoised toward the prompt. The rest is a text-to-image
/// request (prompt, prior, decoder, seeds), reachable as `edit.prompt`, `edit.decoder`, ….
@dynamicMemberLookup
public struct EditRequest: Sendable, Equatable {
    public var text: TextToImageRequest
    public var picture: PictureSource
    /// 0 keeps the picture, 1 replaces it; diffusers' img2img default is 0.8 (its inpainting default is 1).
    public var strength: Float = 0.8
    /// Inpainting: a picture of the picture's size whose white part (grey ≥ 128, after PIL's luma) is repainted
    /// and whose black part is kept, as diffusers' and AUTOMATIC1111's masks; nil edits the whole picture.
    public var mask: PictureSource?

    public init(prompt: String, picture: PictureSource) { text = TextToImageRequest(prompt: prompt); self.picture = picture }

    public subscript<T>(dynamicMember path: WritableKeyPath<TextToImageRequest, T>) -> T {
        get { text[keyPath: path] }
        set { text[keyPath: path] = newValue }
    }
}

/// What a variation decodes.
public enum VariationSource: Sendable, Equatable {
    /// A stored generation's own image embedding.
    case generation(Int64)
    /// An outside picture, embedded by the model's CLIP image encoder and recorded as a `source` generation.
    case picture(PictureSource)
    /// A CLIP image embedding from elsewhere; `origin` names it in the record.
    case embedding([Float], origin: String)
}

/// New images from an image embedding (DALL·E 2's variations).
public struct VariationRequest: Sendable, Equatable {
    public var source: VariationSource
    /// Text that steers the decoder ("" = none).
    public var prompt = ""
    public var decoder = DecoderParameters()
    public var seeds = SeedPlan()
    public init(source: VariationSource) { self.source = source }
}

/// Frames along the great circle between two stored generations' embeddings, all with one seed.
public struct InterpolationRequest: Sendable, Equatable {
    public var from: Int64
    public var to: Int64
    /// Frames, both ends included.
    public var frames = 5
    public var prompt = ""
    public var decoder = DecoderParameters()
    public var seed: UInt64?
    public init(from: Int64, to: Int64) { self.from = from; self.to = to }
}

/// DALL·E 2's text diff: a stored generation's embedding turned toward `toward` (away from `from`).
public struct NudgeRequest: Sendable, Equatable {
    public var id: Int64
    public var toward: String
    /// Nil: the generation's own prompt.
    public var from: String?
    /// θ in 0…1; DALL·E 2 shows 0.25–0.5.
    public var amount: Float = 0.3
    public var prompt = ""
    public var decoder = DecoderParameters()
    public var seeds = SeedPlan()
    public init(id: Int64, toward: String) { self.id = id; self.toward = toward }
}
