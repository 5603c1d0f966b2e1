import Foundation
import UnCLIPStore
import UnCLIPTensor
import UnCLIPWeights

/// A generation as front ends show it (the CLI's `--json`, the server's API): its record without the raw
/// embeddings, plus what a reader needs to act on it.
public struct GenerationSummary: Codable, Sendable, Equatable {
    public var id: Int64
    public var createdAt: String
    public var kind: GenerationKind
    public var prompt: String?
    public var seed: UInt64?
    /// Where the store keeps the image (a local backend's file path).
    public var image: String
    public var sha256: String
    public var width: Int
    public var height: Int
    /// The width of the decoder's image embedding and of the picture's CLIP embedding (nil: none).
    public var dim: Int?
    public var pictureDim: Int?
    public var parents: [ParentLink]

    enum CodingKeys: String, CodingKey {
        case id, createdAt = "created_at", kind, prompt, seed, image, sha256, width, height, dim, pictureDim = "picture_dim", parents
    }

    // Absent values are written as null, so every summary has the same keys.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(createdAt, forKey: .createdAt); try c.encode(kind, forKey: .kind)
        try c.encode(prompt, forKey: .prompt); try c.encode(seed, forKey: .seed); try c.encode(image, forKey: .image)
        try c.encode(sha256, forKey: .sha256); try c.encode(width, forKey: .width); try c.encode(height, forKey: .height)
        try c.encode(dim, forKey: .dim); try c.encode(pictureDim, forKey: .pictureDim); try c.encode(parents, forKey: .parents)
    }

    public init(_ g: StoredGeneration) {
        id = g.id; createdAt = g.createdAt; kind = g.kind; prompt = g.prompt; seed = g.seed; image = g.imageLocation
        sha256 = g.sha256; width = g.width; height = g.height; dim = g.dim; pictureDim = g.pictureEmbedding?.count; parents = g.parents
    }
}

/// Everything about one generation: the summary, its settings, model, children and prior candidates. Encoded as
/// one flat JSON object: the summary's keys beside the details' keys.
public struct GenerationDetail: Codable, Sendable {
    public struct PriorCandidates: Codable, Sendable, Equatable {
        public var run: Int64
        public var scores: [Float]
        public var chosen: Int
        public var candidates: Int
    }

    /// What the summary does not say.
    public struct Details: Codable, Sendable {
        public var settings: RecordedSettings
        public var fileBytes: Int
        public var imagePresent: Bool
        public var embeddingNorm: Double?
        public var seconds: Double?
        public var children: [Int64]
        public var model: ModelRecord?
        public var prior: PriorCandidates?

        enum CodingKeys: String, CodingKey {
            case settings, fileBytes = "file_bytes", imagePresent = "image_present", embeddingNorm = "embedding_norm", seconds,
                 children, model, prior
        }
    }

    public var summary: GenerationSummary
    public var details: Details

    public init(_ g: StoredGeneration, store: any GenerationStore) throws {
        summary = GenerationSummary(g)
        details = Details(settings: g.settings, fileBytes: g.fileBytes, imagePresent: try store.hasImage(g.id),
                          embeddingNorm: g.embedding.map { EmbeddingMath.norm($0) }, seconds: g.seconds,
                          children: try store.children(of: g.id), model: try g.modelID.flatMap { try store.model(id: $0) },
                          prior: try g.priorRunID.flatMap { try store.priorRun(id: $0) }.map {
                              PriorCandidates(run: $0.id, scores: $0.scores, chosen: $0.chosenIndex, candidates: $0.count)
                          })
    }

    public init(from decoder: Decoder) throws {
        summary = try GenerationSummary(from: decoder)
        details = try Details(from: decoder)
    }

    public func encode(to encoder: Encoder) throws {
        try summary.encode(to: encoder)
        try details.encode(to: encoder)
    }
}

/// The export of one generation; needs no model.
public enum GenerationExport {
    /// Writes `<id>.png` (the store's copy, checked against its sha256), `<id>.safetensors` (image_embeds [1, D],
    /// plus the prior's candidates and scores when known; no file when there is neither) and `<id>.json`
    /// (the full record) into `folder`.
    public static func export(_ id: Int64, from store: any GenerationStore, to folder: URL) throws -> [URL] {
        let g = try store.generation(id)
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw StoreError.imageFile(path: folder.path, reason: "cannot create the export folder (\(error.localizedDescription))")
        }
        let png = try store.imageData(id)
        guard SHA256.hex(png) == g.sha256 else {
            throw StoreError.imageFile(path: g.imageLocation, reason: "its sha256 is no longer the recorded \(g.sha256); the file was changed")
        }
        let pngURL = folder.appendingPathComponent("\(id).png")
        let tensorsURL = folder.appendingPathComponent("\(id).safetensors")
        let jsonURL = folder.appendingPathComponent("\(id).json")
        try AtomicFile.write(png, to: pngURL)
        var entries: [(String, SafeTensorsWriter.Payload)] = []
        if let e = g.embedding { entries.append(("image_embeds", .float32(Tensor(shape: [1, e.count], data: e)))) }
        if let e = g.pictureEmbedding { entries.append(("picture_embeds", .float32(Tensor(shape: [1, e.count], data: e)))) }
        if let runID = g.priorRunID, let run = try store.priorRun(id: runID) {
            entries.append(("prior_candidates", .float32(Tensor(shape: [run.count, run.dim], data: run.candidates))))
            entries.append(("prior_scores", .float32(Tensor(shape: [run.count], data: run.scores))))
        }
        var metadata = ["generation": "\(id)", "kind": g.kind.rawValue]
        if let prompt = g.prompt { metadata["prompt"] = prompt }
        if !entries.isEmpty { try SafeTensorsWriter.write(entries, metadata: metadata, to: tensorsURL) }
        var record = try GenerationDetail(g, store: store)
        record.summary.image = pngURL.lastPathComponent
        try AtomicFile.write(try JSONCoding.encode(record, pretty: true), to: jsonURL)
        return entries.isEmpty ? [pngURL, jsonURL] : [pngURL, tensorsURL, jsonURL]
    }
}

/// JSON as front ends print it: sorted keys, no escaped slashes.
public enum JSONCoding {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = false) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(value)
    }

    public static func string<T: Encodable>(_ value: T) throws -> String { String(decoding: try encode(value), as: UTF8.self) }
}
