import Foundation
import UnCLIPTensor

/// How a generation came about.
public enum GenerationKind: String, CaseIterable, Codable, Sendable {
    case textToImage = "text-to-image"
    /// Decoded from another generation's (or an outside image's) embedding.
    case variation
    /// One frame of a slerp between two generations.
    case interpolation
    /// DALL·E 2's text diff: an embedding rotated toward a text direction.
    case textDiff = "text-diff"
    /// An outside image, embedded with the CLIP vision encoder (not generated; cannot be regenerated).
    case source
    /// Image-to-image: an init picture noised to a strength and denoised toward a prompt.
    case edit
}

/// Every setting that determined a generation, stored as JSON so a later build can read it back and
/// `regenerate` can repeat it exactly. Fields that do not apply to a kind are nil.
public struct RecordedSettings: Codable, Equatable, Sendable {
    // Decoder.
    public var steps: Int?
    public var guidance: Float?
    public var noiseLevel: Int?
    public var negativePrompt: String?
    public var width: Int?
    public var height: Int?
    /// The scheduler override the user asked for (nil = the model's own).
    public var scheduler: String?
    /// The scheduler that ran (for the PNG's parameters text).
    public var schedulerName: String?
    public var variant: String?
    /// The model folder's name when the image was made (kept for the PNG text, which must not change).
    public var modelName: String?
    // Prior (text-to-image).
    public var priorSteps: Int?
    public var priorGuidance: Float?
    public var priorCandidates: Int?
    // Interpolation: frame index, frame count and slerp position.
    public var frame: Int?
    public var frames: Int?
    public var t: Double?
    // Text diff.
    public var toward: String?
    public var from: String?
    public var amount: Float?
    /// For sources and embedding-file variations: the outside file it came from.
    public var sourceFile: String?
    // Image-to-image: the init picture (path when made, and its sha256) and the strength.
    public var initImage: String?
    public var initSHA256: String?
    public var strength: Float?
    // Inpainting: the mask picture (path when made, and its sha256); white = repainted.
    public var maskImage: String?
    public var maskSHA256: String?
    /// The CLIP vision encoder that embedded the finished image, when the model has no image embedding of its
    /// own (plain Stable Diffusion with --clip).
    public var clipModel: String?
    /// AUTOMATIC1111's name of the sampler that ran ("Euler a", "DPM++ 2M Karras"), where it has one.
    public var samplerName: String?
    /// A1111's "Model hash" of the model that made it (the first 10 hex digits of its fingerprint).
    public var modelHash: String?
    /// Which `parameters` text format the PNG was written with (nil: the first one).
    public var parametersFormat: Int?

    public init() {}

    /// Canonical JSON (sorted keys, so the same settings give the same text).
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    public static func decode(_ text: String, path: String, id: Int64) throws -> RecordedSettings {
        do {
            return try JSONDecoder().decode(RecordedSettings.self, from: Data(text.utf8))
        } catch {
            throw StoreError.badEmbedding(path: path, what: "the settings of generation \(id)", reason: "not readable JSON (\(error))")
        }
    }
}

/// A parent link: which generation this one was made from, and in what role.
public struct ParentLink: Equatable, Codable, Sendable {
    /// "source" (variation, text diff), "from" / "to" (interpolation).
    public var role: String
    /// The parent's id when it was made; `exists` tells whether it is still in the store.
    public var id: Int64
    public var exists: Bool
    public init(role: String, id: Int64, exists: Bool = true) { self.role = role; self.id = id; self.exists = exists }
}

/// A generation about to be recorded (its image file already written to a temporary path).
public struct NewGeneration: Codable, Sendable {
    public var kind: GenerationKind
    public var modelID: Int64?
    public var prompt: String?
    public var settings: RecordedSettings
    public var seed: UInt64?
    public var priorRunID: Int64?
    /// The image embedding the decoder drew (the prior's choice, the slerp, the imported image's embedding),
    /// or the CLIP embedding of the finished image; nil when there is none (plain Stable Diffusion without --clip).
    public var embedding: [Float]?
    /// The CLIP embedding of the finished picture, when an image encoder was at hand (what search ranks).
    public var pictureEmbedding: [Float]?
    public var parents: [ParentLink]
    public var width: Int
    public var height: Int
    /// Wall time spent making it.
    public var seconds: Double
    /// The job and image index that made it, when a job queue did (at most one generation per link).
    public var job: JobLink?

    public init(kind: GenerationKind, modelID: Int64?, prompt: String?, settings: RecordedSettings, seed: UInt64?,
                priorRunID: Int64? = nil, embedding: [Float]?, pictureEmbedding: [Float]? = nil, parents: [ParentLink] = [],
                width: Int, height: Int, seconds: Double) {
        self.kind = kind; self.modelID = modelID; self.prompt = prompt; self.settings = settings; self.seed = seed
        self.priorRunID = priorRunID; self.embedding = embedding; self.pictureEmbedding = pictureEmbedding; self.parents = parents
        self.width = width; self.height = height; self.seconds = seconds
    }
}

/// A recorded generation.
public struct StoredGeneration: Codable, Sendable {
    public let id: Int64
    /// UTC, ISO 8601 with milliseconds.
    public let createdAt: String
    public let kind: GenerationKind
    public let modelID: Int64?
    public let prompt: String?
    public let settings: RecordedSettings
    public let seed: UInt64?
    public let priorRunID: Int64?
    public let noiseLevel: Int?
    /// The image embedding the decoder drew; nil for plain Stable Diffusion.
    public let embedding: [Float]?
    /// The store's own copy of the image.
    public let imageURL: URL
    public let sha256: String
    public let width: Int
    public let height: Int
    public let fileBytes: Int
    public let seconds: Double?
    public var parents: [ParentLink]
    /// The CLIP embedding of the finished picture, nil when no image encoder was at hand.
    public var pictureEmbedding: [Float]?
    /// Starred by a user (protected from bulk removal in front ends; a filter).
    public var starred = false
    /// The job that made it, if a job queue did.
    public var job: JobLink?

    public init(id: Int64, createdAt: String, kind: GenerationKind, modelID: Int64?, prompt: String?, settings: RecordedSettings,
                seed: UInt64?, priorRunID: Int64?, noiseLevel: Int?, embedding: [Float]?, imageURL: URL, sha256: String,
                width: Int, height: Int, fileBytes: Int, seconds: Double?, parents: [ParentLink], pictureEmbedding: [Float]? = nil) {
        self.id = id; self.createdAt = createdAt; self.kind = kind; self.modelID = modelID; self.prompt = prompt
        self.settings = settings; self.seed = seed; self.priorRunID = priorRunID; self.noiseLevel = noiseLevel
        self.embedding = embedding; self.imageURL = imageURL; self.sha256 = sha256; self.width = width; self.height = height
        self.fileBytes = fileBytes; self.seconds = seconds; self.parents = parents; self.pictureEmbedding = pictureEmbedding
    }
    /// The embedding's width, nil without one.
    public var dim: Int? { embedding?.count }
    /// Where the image is, for people: a file path, or the database and the image's hash.
    public var imageLocation: String { imageURL.isFileURL ? imageURL.path : imageURL.absoluteString }
    /// What an image query from this generation compares (`search --like`): its picture's CLIP embedding, else the decoder's.
    public var searchEmbedding: [Float]? { pictureEmbedding ?? embedding }

    /// The embedding variations, interpolations and text diffs start from: the decoder's, else the picture's
    /// (plain Stable Diffusion with --clip); an error saying why there is none and what to do instead.
    public func requireEmbedding() throws -> [Float] {
        guard let embedding = embedding ?? pictureEmbedding else {
            throw StoreError.noEmbedding(id: id)
        }
        return embedding
    }
}

/// A known model: where it was last seen and the fingerprint of its configs and weights.
public struct ModelRecord: Codable, Sendable, Equatable {
    public let id: Int64
    public let fingerprint: String
    /// The model folder.
    public let path: String
    /// The separate (Karlo-style) prior folder, if any.
    public let priorPath: String?
    public init(id: Int64, fingerprint: String, path: String, priorPath: String?) {
        self.id = id; self.fingerprint = fingerprint; self.path = path; self.priorPath = priorPath
    }
}

/// Which encoder made a cached text encoding.
public enum TextEncoderRole: String, Codable, Sendable {
    /// The prior's CLIPTextModelWithProjection: text_embeds, hidden states and mask.
    case prior
    /// The decoder's CLIPTextModel: hidden states only.
    case decoder
}

/// A cached text encoding.
public struct CachedTextEncoding: Codable, Sendable {
    /// Hidden states [tokens, width] of the last layer (or the clip-skip layer).
    public var tokens: Int
    public var width: Int
    public var hiddenStates: [Float]
    /// The projected `text_embeds` (prior encoder only).
    public var textEmbeds: [Float]?
    /// Attention mask, one entry per token (prior encoder only).
    public var mask: [Int]?
    public init(tokens: Int, width: Int, hiddenStates: [Float], textEmbeds: [Float]? = nil, mask: [Int]? = nil) {
        self.tokens = tokens; self.width = width; self.hiddenStates = hiddenStates; self.textEmbeds = textEmbeds; self.mask = mask
    }
}

/// Everything that determines a prior run (and so its cache key).
public struct PriorRunKey: Codable, Sendable, Hashable {
    public var modelID: Int64
    public var prompt: String
    public var seed: UInt64
    public var steps: Int
    public var guidance: Float
    public var candidates: Int
    public var scheduler: String
    public init(modelID: Int64, prompt: String, seed: UInt64, steps: Int, guidance: Float, candidates: Int, scheduler: String) {
        self.modelID = modelID; self.prompt = prompt; self.seed = seed; self.steps = steps
        self.guidance = guidance; self.candidates = candidates; self.scheduler = scheduler
    }
}

/// A stored prior run: every candidate embedding and its CLIP score.
extension PriorRunKey {
    /// Refuses a prior run whose candidates, scores and choice do not fit this key and `dim` (before any backend writes).
    public func check(dim: Int, candidates: [Float], scores: [Float], chosenIndex: Int) throws {
        guard candidates.count == scores.count * dim, scores.indices.contains(chosenIndex), self.candidates == scores.count else {
            throw StoreError.invalid("prior run of \(candidates.count) values, \(scores.count) scores, choice \(chosenIndex) does not fit \(self.candidates) × \(dim)")
        }
    }
}

public struct CachedPriorRun: Codable, Sendable {
    public var id: Int64
    public var dim: Int
    /// Candidates, row-major [count, dim].
    public var candidates: [Float]
    public var scores: [Float]
    public var chosenIndex: Int
    /// Sizes of the generator calls the prior made (replayed on a cache hit so later draws match).
    public var draws: [Int]
    public var count: Int { scores.count }
    public init(id: Int64, dim: Int, candidates: [Float], scores: [Float], chosenIndex: Int, draws: [Int]) {
        self.id = id; self.dim = dim; self.candidates = candidates; self.scores = scores; self.chosenIndex = chosenIndex; self.draws = draws
    }
}

/// What a store check found (the startup check also removes the leftovers; `check(clean:)` does on request).
public struct ConsistencyReport: Codable, Sendable, Equatable {
    /// Half-written temporary files of processes that are gone.
    public var staleTemporaryFiles: [String] = []
    /// Image files without a row: a run stopped between moving its file into place and committing,
    /// or `rm` stopped between committing and unlinking.
    public var orphanFiles: [String] = []
    /// Generations whose image file is missing (never removed: the embedding is still there and
    /// `regenerate` restores the file).
    public var missingImages: [Int64] = []
    /// Generations whose image file no longer has the recorded sha256 (with `verify` only).
    public var changedImages: [Int64] = []
    public var isClean: Bool { staleTemporaryFiles.isEmpty && orphanFiles.isEmpty && missingImages.isEmpty && changedImages.isEmpty }
    public init() {}
}

/// Which generations a list or a search looks at.
public struct GenerationFilter: Codable, Sendable, Equatable {
    public var kinds: [GenerationKind]?
    /// Only generations made at or after this UTC timestamp (as `StoreTime.timestamp(parsing:)` gives).
    public var since: String?
    /// Only embeddings of this width (embeddings of different CLIP models cannot be compared).
    public var dim: Int?
    /// Only generations of this model.
    public var modelID: Int64?
    /// Only starred (true) or unstarred (false) generations.
    public var starred: Bool?
    /// Only generations made from this one (any role).
    public var parent: Int64?
    /// Only ids below this one (cursor pagination, newest first).
    public var beforeID: Int64?
    /// Only generations with a larger id (what an index kept in memory reads to catch up).
    public var afterID: Int64?
    public init(kinds: [GenerationKind]? = nil, since: String? = nil, dim: Int? = nil, modelID: Int64? = nil,
                starred: Bool? = nil, parent: Int64? = nil, beforeID: Int64? = nil) {
        self.kinds = kinds; self.since = since; self.dim = dim; self.modelID = modelID; self.starred = starred
        self.parent = parent; self.beforeID = beforeID
    }
}
