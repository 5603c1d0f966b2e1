import Foundation

/// A cached text encoding with its key, as a whole-store copy reads it.
public struct TextEncodingEntry: Sendable {
    public var modelID: Int64
    public var prompt: String
    public var encoder: TextEncoderRole
    public var clipSkip: Int
    public var encoding: CachedTextEncoding
    public init(modelID: Int64, prompt: String, encoder: TextEncoderRole, clipSkip: Int, encoding: CachedTextEncoding) {
        self.modelID = modelID; self.prompt = prompt; self.encoder = encoder; self.clipSkip = clipSkip; self.encoding = encoding
    }
}

/// A cached prior run with its key.
public struct PriorRunEntry: Sendable {
    public var key: PriorRunKey
    public var run: CachedPriorRun
    public var seconds: Double?
    public init(key: PriorRunKey, run: CachedPriorRun, seconds: Double?) { self.key = key; self.run = run; self.seconds = seconds }
}

/// What moving a whole store to another backend needs beyond the store protocol: every row of the caches, and
/// writing a generation exactly as it was (its id, time, star, job link, and links to parents since removed).
public protocol StoreTransfer: GenerationStore {
    /// Every model, in id order.
    func allModels() throws -> [ModelRecord]
    func forEachTextEncoding(_ body: (TextEncodingEntry) throws -> Void) throws
    func forEachPriorRun(_ body: (PriorRunEntry) throws -> Void) throws
    /// Ids of every generation, ascending.
    func allGenerationIDs() throws -> [Int64]
    /// Writes `g` under its own id with its image bytes, in one transaction (`modelID` and `priorRunID` already
    /// mapped to this store's). Fails if the id is taken.
    func importGeneration(_ g: StoredGeneration, png: Data) throws
    /// Called once after the imports: new generations get ids above every imported one.
    func finishImport() throws
}

/// `unclip store copy`: every model, cache entry, generation (ids kept), lineage link, embedding and image from one
/// store into an empty one, then a digest of both stores compared.
public enum StoreCopier {
    public struct Summary: Sendable, Equatable {
        public var models = 0, textEncodings = 0, priorRuns = 0, generations = 0, imageBytes = 0
        public var digest = ""
    }

    /// Copies `source` into `destination`, which must hold no generations. `progress(done, total)` after each
    /// generation. Throws if the digests of the two stores differ at the end.
    public static func copy(from source: any StoreTransfer, to destination: any StoreTransfer,
                            progress: (Int, Int) -> Void = { _, _ in }) throws -> Summary {
        guard try destination.count() == 0 else {
            throw StoreError.invalid("the destination \(destination.location) already has \(try destination.count()) generations; copy into an empty store")
        }
        var summary = Summary()
        var models: [Int64: Int64] = [:]
        for m in try source.allModels() {
            models[m.id] = try destination.registerModel(fingerprint: m.fingerprint, path: m.path, priorPath: m.priorPath).id
            summary.models += 1
        }
        func mapped(_ id: Int64, _ what: String) throws -> Int64 {
            guard let new = models[id] else { throw StoreError.invalid("\(source.location): \(what) names model \(id), which the store does not have") }
            return new
        }
        try source.forEachTextEncoding { e in
            try destination.saveTextEncoding(e.encoding, modelID: try mapped(e.modelID, "a text encoding"), prompt: e.prompt,
                                             encoder: e.encoder, clipSkip: e.clipSkip)
            summary.textEncodings += 1
        }
        var priorRuns: [Int64: Int64] = [:]
        try source.forEachPriorRun { p in
            var key = p.key
            key.modelID = try mapped(key.modelID, "prior run \(p.run.id)")
            priorRuns[p.run.id] = try destination.savePriorRun(key, dim: p.run.dim, candidates: p.run.candidates, scores: p.run.scores,
                                                               chosenIndex: p.run.chosenIndex, draws: p.run.draws, seconds: p.seconds)
            summary.priorRuns += 1
        }
        let ids = try source.allGenerationIDs()
        for (i, id) in ids.enumerated() {
            let g = try source.generation(id)
            let png = try source.imageData(id)
            let moved = StoredGeneration(
                id: g.id, createdAt: g.createdAt, kind: g.kind, modelID: try g.modelID.map { try mapped($0, "generation \(id)") },
                prompt: g.prompt, settings: g.settings, seed: g.seed, priorRunID: g.priorRunID.flatMap { priorRuns[$0] },
                noiseLevel: g.noiseLevel, embedding: g.embedding, imageURL: g.imageURL, sha256: g.sha256, width: g.width,
                height: g.height, fileBytes: g.fileBytes, seconds: g.seconds, parents: g.parents, pictureEmbedding: g.pictureEmbedding)
            var withFlags = moved
            withFlags.starred = g.starred
            withFlags.job = g.job
            try destination.importGeneration(withFlags, png: png)
            summary.generations += 1
            summary.imageBytes += png.count
            progress(i + 1, ids.count)
        }
        try destination.finishImport()
        let before = try StoreDigest.compute(source), after = try StoreDigest.compute(destination)
        guard before == after else {
            throw StoreError.invalid("the copy in \(destination.location) does not match \(source.location) (digest \(after) ≠ \(before)); do not use it")
        }
        summary.digest = before
        return summary
    }
}

/// A digest of everything a store holds that a copy must keep, independent of the backend: every generation's
/// record (id, time, kind, model fingerprint, prompt, settings, seed, embeddings' exact bits, star, job link,
/// lineage), the sha256 of its image bytes as read back, every model and every cache entry by its key.
public enum StoreDigest {
    public static func compute(_ store: any StoreTransfer) throws -> String {
        var lines: [String] = []
        var fingerprints: [Int64: String] = [:]
        for m in try store.allModels() {
            fingerprints[m.id] = m.fingerprint
            lines.append("model \(m.fingerprint) \(m.path) \(m.priorPath ?? "-")")
        }
        func bits(_ v: [Float]?) -> String { v.map { SHA256.hex($0.withUnsafeBytes { Data($0) }) } ?? "-" }
        var caches: [String] = []
        try store.forEachTextEncoding { e in
            caches.append("text \(fingerprints[e.modelID] ?? "?") \(SHA256.hex(Data(e.prompt.utf8))) \(e.encoder.rawValue) \(e.clipSkip) "
                          + "\(e.encoding.tokens)x\(e.encoding.width) \(bits(e.encoding.hiddenStates)) \(bits(e.encoding.textEmbeds)) \(e.encoding.mask ?? [])")
        }
        var priorKeys: [Int64: String] = [:]
        try store.forEachPriorRun { p in
            let key = "\(fingerprints[p.key.modelID] ?? "?") \(SHA256.hex(Data(p.key.prompt.utf8))) \(p.key.seed) \(p.key.steps) \(p.key.guidance) \(p.key.candidates) \(p.key.scheduler)"
            priorKeys[p.run.id] = key
            caches.append("prior \(key) \(p.run.dim) \(bits(p.run.candidates)) \(bits(p.run.scores)) \(p.run.chosenIndex) \(p.run.draws)")
        }
        lines += caches.sorted()
        for id in try store.allGenerationIDs() {
            let g = try store.generation(id)
            let image = SHA256.hex(try store.imageData(id))
            lines.append("""
                gen \(g.id) \(g.createdAt) \(g.kind.rawValue) \(g.modelID.flatMap { fingerprints[$0] } ?? "-") \
                \(g.prompt.map { SHA256.hex(Data($0.utf8)) } ?? "-") \(try g.settings.json()) \(g.seed.map(String.init) ?? "-") \
                \(g.priorRunID.flatMap { priorKeys[$0] } ?? "-") \(g.noiseLevel.map(String.init) ?? "-") \(bits(g.embedding)) \
                \(bits(g.pictureEmbedding)) \(g.sha256) \(image) \(g.width)x\(g.height) \(g.fileBytes) \(g.seconds.map { "\($0)" } ?? "-") \
                \(g.starred) \(g.job.map { "\($0.job):\($0.index)" } ?? "-") \(g.parents.map { "\($0.role):\($0.id):\($0.exists)" })
                """)
        }
        return SHA256.hex(Data(lines.joined(separator: "\n").utf8))
    }
}

extension StoredGeneration {
    /// What recording this generation again takes (a copy into another store): everything but the id, time and star.
    public var asNew: NewGeneration {
        var new = NewGeneration(kind: kind, modelID: modelID, prompt: prompt, settings: settings, seed: seed, priorRunID: priorRunID,
                                embedding: embedding, pictureEmbedding: pictureEmbedding, parents: parents, width: width, height: height,
                                seconds: seconds ?? 0)
        new.job = job
        return new
    }
}
