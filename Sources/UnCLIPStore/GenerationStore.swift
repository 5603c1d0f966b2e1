import Foundation
import UnCLIPTensor

/// Everything the engines' callers need from a store of generations, whatever keeps the data.
///
/// Front ends (the CLI, the server, workers) and the generation service talk to a store only through this
/// protocol, so a second backend (PostgreSQL) is a new conformer, not a change to any caller. A backend owns
/// its whole storage: rows, embeddings and the image bytes. Writes that belong together (a generation's row,
/// its parents and its image) happen in one transaction of the backend; a failed call leaves nothing behind.
///
/// Conformers must be safe to call from concurrent tasks (the SQLite backend serialises calls on its
/// connection; a pooled backend may run them in parallel).
public protocol GenerationStore: AnyObject, Sendable, EmbeddingSource, JobQueue {
    /// Where the store lives, for messages (a file path, or a database URL without its password).
    var location: String { get }
    /// False when the store could only be opened for reading.
    var isWritable: Bool { get }
    /// What opening the store cleaned up after an interrupted writer (empty for read-only opens).
    var startupReport: ConsistencyReport { get }
    /// The schema version stored in the store.
    func storedSchemaVersion() throws -> Int

    // MARK: Models

    /// Records a model (or finds it by fingerprint), remembering the folders it was last used from.
    func registerModel(fingerprint: String, path: String, priorPath: String?) throws -> ModelRecord
    func model(fingerprint: String) throws -> ModelRecord?
    func model(id: Int64) throws -> ModelRecord?
    /// The model of the newest generation (a default for work that needs some model of this store).
    func latestModel() throws -> ModelRecord?
    /// Every model that made at least one generation, newest generation first.
    func modelsInUse() throws -> [ModelRecord]

    // MARK: Caches

    /// The cached encoding of exactly this prompt by this model's encoder, if any.
    func textEncoding(modelID: Int64, prompt: String, encoder: TextEncoderRole, clipSkip: Int) throws -> CachedTextEncoding?
    /// Caches an encoding; an existing entry for the same key is kept (the encoders are deterministic).
    func saveTextEncoding(_ e: CachedTextEncoding, modelID: Int64, prompt: String, encoder: TextEncoderRole, clipSkip: Int) throws
    func priorRun(_ key: PriorRunKey) throws -> CachedPriorRun?
    func priorRun(id: Int64) throws -> CachedPriorRun?
    /// Stores a prior run (keeping an existing one with the same key) and returns its id.
    @discardableResult
    func savePriorRun(_ key: PriorRunKey, dim: Int, candidates: [Float], scores: [Float], chosenIndex: Int,
                      draws: [Int], seconds: Double?) throws -> Int64

    // MARK: Generations

    /// Records a generation and its PNG bytes atomically: either both are stored or neither.
    func record(_ g: NewGeneration, png: Data) throws -> StoredGeneration
    /// One generation, with its parents; `StoreError.noSuchGeneration` when there is none.
    func generation(_ id: Int64) throws -> StoredGeneration
    /// The first generation of this kind whose image has this sha256 and model, if any.
    func generationID(kind: GenerationKind, sha256: String, modelID: Int64) throws -> Int64?
    /// The first generation (of any kind) whose image has this sha256, if any.
    func generationID(sha256: String) throws -> Int64?
    func contains(_ id: Int64) throws -> Bool
    /// Ids of the generations made from this one, each once, in id order.
    func children(of id: Int64) throws -> [Int64]
    /// Generations matching the filter, newest first.
    func generations(_ filter: GenerationFilter, limit: Int?) throws -> [StoredGeneration]
    func count(_ filter: GenerationFilter) throws -> Int
    /// The generation a job recorded as its image `index`, if it did.
    func generationID(job: JobLink) throws -> Int64?
    /// Stars or unstars a generation.
    func setStarred(_ id: Int64, _ starred: Bool) throws
    /// Removes a generation and its image. Children keep their own embeddings; their parent link keeps the
    /// old id and is marked as removed. Returns where the image was.
    @discardableResult
    func remove(_ id: Int64) throws -> String

    // MARK: Images

    /// The PNG bytes of a generation; `StoreError.imageFile` when they are missing.
    func imageData(_ id: Int64) throws -> Data
    /// Whether the store still has the generation's image.
    func hasImage(_ id: Int64) throws -> Bool
    /// Puts back a generation's image from bytes that hash to its recorded sha256 (what `regenerate` made).
    func restoreImage(_ id: Int64, png: Data) throws

    /// Everything the startup check looks at, plus every image without a row and every row without its
    /// image; `verify` re-hashes every image. With `clean`, removes the leftovers (never rows).
    func check(verify: Bool, clean: Bool) throws -> ConsistencyReport
}

extension GenerationStore {
    public func generations(_ filter: GenerationFilter = GenerationFilter()) throws -> [StoredGeneration] {
        try generations(filter, limit: nil)
    }

    public func count() throws -> Int { try count(GenerationFilter()) }

    public func check(verify: Bool) throws -> ConsistencyReport { try check(verify: verify, clean: false) }

    public func registerModel(fingerprint: String, path: String) throws -> ModelRecord {
        try registerModel(fingerprint: fingerprint, path: path, priorPath: nil)
    }

    public func textEncoding(modelID: Int64, prompt: String, encoder: TextEncoderRole) throws -> CachedTextEncoding? {
        try textEncoding(modelID: modelID, prompt: prompt, encoder: encoder, clipSkip: 0)
    }

    public func saveTextEncoding(_ e: CachedTextEncoding, modelID: Int64, prompt: String, encoder: TextEncoderRole) throws {
        try saveTextEncoding(e, modelID: modelID, prompt: prompt, encoder: encoder, clipSkip: 0)
    }
}

/// Where search reads embeddings from: each backend streams the vectors of the generations that match a
/// filter, and gives one generation's exact vector back for re-scoring. `SearchIndex` does the rest.
public protocol EmbeddingSource: AnyObject {
    /// Calls `reserve` once with the number of rows that will follow, then `row` for every generation that
    /// matches `filter` and has an embedding of `filter.dim` values, in id order, with its `ranking` vector
    /// (nil when the generation has none of the kinds `ranking` combines). One consistent snapshot.
    func forEachSearchVector(filter: GenerationFilter, ranking: SearchRanking, reserve: (Int) -> Void,
                             row: (Int64, [Float]?) throws -> Void) throws
    /// One generation's `ranking` vector from its float32 embeddings: nil if it is no longer stored, `dim`
    /// zeros if it is stored without an embedding `ranking` uses.
    func searchVector(id: Int64, ranking: SearchRanking, dim: Int) throws -> [Float]?
    /// The `limit` best matches of `query` by an index the backend keeps itself (PostgreSQL with pgvector), scored
    /// exactly like `SearchIndex`'s hits; nil where the backend keeps none, and the caller scans a `SearchIndex`.
    func indexedSearch(_ query: [Float], filter: GenerationFilter, ranking: SearchRanking, limit: Int) throws -> [SearchIndex.Hit]?
}

extension EmbeddingSource {
    public func indexedSearch(_ query: [Float], filter: GenerationFilter, ranking: SearchRanking, limit: Int) throws -> [SearchIndex.Hit]? { nil }
}
