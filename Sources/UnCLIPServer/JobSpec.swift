import Foundation
import UnCLIPEngine
import UnCLIPService

/// A stored generation's id, or a text: `from` is an id for interpolations and a text for text diffs.
public enum IDOrText: Codable, Sendable, Equatable {
    case id(Int64)
    case text(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int64.self) { self = .id(i) } else { self = .text(try c.decode(String.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case let .id(i): try c.encode(i)
        case let .text(t): try c.encode(t)
        }
    }
}

/// What a job computes: the native API's request body, and what every API's requests become before they are
/// queued. Stored as the job's payload, with its seed already drawn, so a job re-run after a restart makes the
/// same images. Field names are the CLI's options in snake_case.
public struct JobSpec: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case textToImage = "text-to-image", variation, interpolate, nudge, edit, regenerate
    }

    public var kind: Kind
    public var model: String?
    public var prompt: String?
    public var negativePrompt: String?
    public var steps: Int?
    public var guidance: Float?
    public var noiseLevel: Int?
    public var width: Int?
    public var height: Int?
    public var scheduler: String?
    /// The first seed (nil or -1 in a request: drawn when the job is accepted).
    public var seed: Int64?
    public var count: Int?
    public var priorSteps: Int?
    public var priorGuidance: Float?
    public var priorCandidates: Int?
    public var previewEvery: Int?
    /// variation / nudge / regenerate: the stored generation.
    public var id: Int64?
    /// variation of an upload / edit: the picture, base64 (PNG, JPEG or WebP).
    public var image: String?
    public var strength: Float?
    /// edit: an inpainting mask of the picture's size, base64; white = repaint, black = keep (each API's own
    /// convention is converted to this one before the job is queued).
    public var mask: String?
    /// interpolate: generation ids; nudge: `from` is the baseline text.
    public var from: IDOrText?
    public var to: Int64?
    public var frames: Int?
    public var toward: String?
    public var amount: Float?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, model, prompt, negativePrompt = "negative_prompt", steps, guidance, noiseLevel = "noise_level", width, height,
             scheduler, seed, count, priorSteps = "prior_steps", priorGuidance = "prior_guidance",
             priorCandidates = "prior_candidates", previewEvery = "preview_every", id, image, strength, mask, from, to, frames, toward, amount
    }

    public init(kind: Kind) { self.kind = kind }

    static let fields = Set(CodingKeys.allCases.map(\.rawValue))

    /// The fields this spec sets, as a request body naming them would (for `check(limits:present:)` when the
    /// spec was built from another API's request).
    var presentFields: Set<String> {
        guard let data = try? JSONCoding.encode(self),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        return Set(object.keys)
    }

    /// Fields each kind takes besides the decoder's; anything else is refused, naming the field.
    private var allowed: Set<CodingKeys> {
        let decoder: Set<CodingKeys> = [.kind, .model, .prompt, .negativePrompt, .steps, .guidance, .noiseLevel, .width, .height,
                                        .scheduler, .seed, .previewEvery]
        switch kind {
        case .textToImage: return decoder.union([.count, .priorSteps, .priorGuidance, .priorCandidates])
        // An edit keeps its picture's size.
        case .edit: return decoder.union([.count, .priorSteps, .priorGuidance, .priorCandidates, .image, .strength, .mask]).subtracting([.width, .height])
        case .variation: return decoder.union([.count, .id, .image])
        case .interpolate: return decoder.union([.from, .to, .frames])
        case .nudge: return decoder.union([.count, .id, .toward, .from, .amount])
        case .regenerate: return [.kind, .id, .model]
        }
    }

    /// Checks what can be checked without a model: which fields the kind takes, required ones, limits.
    public func check(limits: ServerLimits, present: Set<String>) throws {
        let allowedNames = Set(allowed.map(\.rawValue))
        for name in present.sorted() where !allowedNames.contains(name) {
            throw APIError.badRequest("\(name): not a parameter of \(kind == .edit ? "an" : "a") \(kind.rawValue) job (it takes: \(allowedNames.sorted().joined(separator: ", ")))", field: name)
        }
        func require(_ present: Bool, _ field: String, _ what: String) throws {
            if !present { throw APIError.badRequest("\(field): required for a \(kind.rawValue) job (\(what))", field: field) }
        }
        switch kind {
        case .textToImage: try require(prompt != nil, "prompt", "the text to draw")
        case .edit:
            try require(prompt != nil, "prompt", "the text to steer toward")
            try require(image != nil, "image", "the picture to start from, base64")
        case .variation:
            try require(id != nil || image != nil, "id", "a stored generation's id, or an image (base64)")
            if id != nil && image != nil { throw APIError.badRequest("image: give either id or image, not both", field: "image") }
        case .interpolate:
            guard case .id = from else { throw APIError.badRequest("from: required for an interpolate job (a generation id)", field: "from") }
            try require(to != nil, "to", "a generation id")
        case .nudge:
            try require(id != nil, "id", "the generation to nudge")
            try require(toward != nil, "toward", "the text to turn toward")
            if case .id = from { throw APIError.badRequest("from: for a nudge, the baseline text (a string)", field: "from") }
        case .regenerate: try require(id != nil, "id", "the generation to make again")
        }
        if let steps { try Self.limit("steps", steps, 1...limits.maxSteps) }
        if let priorSteps { try Self.limit("prior_steps", priorSteps, 1...limits.maxSteps) }
        if let count { try Self.limit("count", count, 1...limits.maxImages) }
        if let frames { try Self.limit("frames", frames, 2...limits.maxFrames) }
        // width × height can overflow Int for hostile values: such a product is over any limit.
        if let width, let height, case let (pixels, overflow) = width.multipliedReportingOverflow(by: height),
           overflow || pixels > limits.maxPixels {
            throw APIError.badRequest("width: \(width)×\(height) is \(overflow ? "over \(Int.max)" : "\(pixels)") pixels; this server makes at most \(limits.maxPixels) per image", field: "width")
        }
        for (name, v) in [("width", width), ("height", height)] {
            if let v, v > limits.maxUploadSide || v < 8 {
                throw APIError.badRequest("\(name): must be 8…\(limits.maxUploadSide) (got \(v))", field: name)
            }
        }
        if let seed, seed < -1 { throw APIError.badRequest("seed: must be -1 (random) or a seed ≥ 0 (got \(seed))", field: "seed") }
    }

    static func limit(_ name: String, _ v: Int, _ r: ClosedRange<Int>) throws {
        guard r.contains(v) else { throw APIError.badRequest("\(name): must be \(r.lowerBound)…\(r.upperBound) on this server (got \(v))", field: name) }
    }

    /// How many images the job makes.
    public var imageCount: Int {
        switch kind {
        case .interpolate: return frames ?? 5
        case .regenerate: return 1
        default: return count ?? 1
        }
    }

    /// The seed drawn now if the request left it random (A1111's -1), so the stored job is deterministic.
    public mutating func drawSeed() {
        if seed == nil || seed == -1 { seed = Int64(UInt32.random(in: 0...UInt32.max)) }
    }

    /// The decoder's parameters; what the job leaves out keeps `DecoderParameters`' defaults (or the model's).
    var decoder: DecoderParameters {
        var d = DecoderParameters()
        d.steps = steps ?? d.steps
        d.noiseLevel = noiseLevel ?? d.noiseLevel
        (d.guidanceScale, d.negativePrompt, d.scheduler, d.previewEvery) = (guidance, negativePrompt, scheduler, previewEvery)
        (d.width, d.height) = (width, height)
        return d
    }

    var prior: PriorParameters {
        var p = PriorParameters()
        if let priorSteps { p.steps = priorSteps }
        if let priorGuidance { p.guidanceScale = priorGuidance }
        if let priorCandidates { p.candidates = priorCandidates }
        return p
    }

    var seeds: SeedPlan { SeedPlan(first: seed.map { UInt64($0) }, count: count ?? 1) }

    /// The uploaded picture's bytes.
    func picture() throws -> PictureSource? {
        guard let image else { return nil }
        return .data(try Base64Image.decode(image, field: "image"), name: "image")
    }

    /// Runs the job on a model's service; returns the generations it made, in order.
    func run(on service: GenerationService, observer: GenerationObserver, job: Int64,
             delivered: @escaping (MadeImage) throws -> Void) throws -> [Int64] {
        let made: [MadeImage]
        switch kind {
        case .textToImage:
            var r = TextToImageRequest(prompt: prompt ?? "")
            r.prior = prior; r.decoder = decoder; r.seeds = seeds
            made = try service.generate(r, observer: observer, delivered: delivered, job: job)
        case .edit:
            guard let picture = try picture() else { throw APIError.badRequest("image: required", field: "image") }
            var r = EditRequest(prompt: prompt ?? "", picture: picture)
            r.prior = prior; r.decoder = decoder; r.seeds = seeds
            if let strength { r.strength = strength }
            if let mask { r.mask = .data(try Base64Image.decode(mask, field: "mask"), name: "mask") }
            made = try service.edit(r, observer: observer, delivered: delivered, job: job)
        case .variation:
            var r = VariationRequest(source: try picture().map { .picture($0) } ?? .generation(id ?? 0))
            r.prompt = prompt ?? ""; r.decoder = decoder; r.seeds = seeds
            made = try service.vary(r, observer: observer, delivered: delivered, job: job)
        case .interpolate:
            guard case let .id(a) = from else { throw APIError.badRequest("from: required", field: "from") }
            var r = InterpolationRequest(from: a, to: to ?? 0)
            if let frames { r.frames = frames }
            r.prompt = prompt ?? ""; r.decoder = decoder; r.seed = seed.map { UInt64($0) }
            made = try service.interpolate(r, observer: observer, delivered: delivered, job: job)
        case .nudge:
            var r = NudgeRequest(id: id ?? 0, toward: toward ?? "")
            if case let .text(t) = from { r.from = t }
            if let amount { r.amount = amount }
            r.prompt = prompt ?? ""; r.decoder = decoder; r.seeds = seeds
            made = try service.nudge(r, observer: observer, delivered: delivered, job: job)
        case .regenerate:
            let result = try service.regenerate(id ?? 0, observer: observer)
            guard result.matches else {
                throw APIError(.conflict, "generation \(result.id) came out different (sha256 \(result.actualSHA256), recorded \(result.expectedSHA256)): the model's files changed", field: "id", type: "server_error")
            }
            return [result.id]
        }
        return made.map(\.generation.id)
    }
}

/// Base64 pictures as clients send them: bare, or as a data URL ("data:image/png;base64,…").
enum Base64Image {
    static func decode(_ text: String, field: String) throws -> Data {
        var body = Substring(text)
        if body.hasPrefix("data:"), let comma = body.firstIndex(of: ",") { body = body[body.index(after: comma)...] }
        guard let data = Data(base64Encoded: String(body), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw APIError.badRequest("\(field): not base64 image data", field: field)
        }
        return data
    }
}
