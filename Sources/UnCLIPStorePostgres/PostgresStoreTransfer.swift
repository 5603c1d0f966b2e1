import Foundation
import PostgresNIO
import UnCLIPStore

/// Whole-store reads and id-keeping writes for `unclip store copy`.
extension PostgresStore: StoreTransfer {
    public func allModels() throws -> [ModelRecord] {
        try session.query("SELECT id, fingerprint, path, prior_path FROM models ORDER BY id").map {
            ModelRecord(id: try $0.int(0), fingerprint: try $0.text(1) ?? "", path: try $0.text(2) ?? "", priorPath: try $0.text(3))
        }
    }

    public func forEachTextEncoding(_ body: (TextEncodingEntry) throws -> Void) throws {
        let rows = try session.query("""
            SELECT t.model_id, p.text, t.encoder, t.clip_skip, t.tokens, t.width, t.hidden_states, t.proj_dim, t.text_embeds, t.mask
            FROM text_encodings t JOIN prompts p ON p.id = t.prompt_id ORDER BY t.id
            """)
        for r in rows {
            let tokens = Int(try r[4].decode(Int32.self)), width = Int(try r[5].decode(Int32.self))
            let what = "a cached text encoding"
            var e = CachedTextEncoding(tokens: tokens, width: width, hiddenStates: try r.floats(6, count: tokens * width, path: location, what: what) ?? [])
            e.textEmbeds = try r.floats(8, count: try r[7].decode(Int32?.self).map(Int.init), path: location, what: what)
            e.mask = try r.bytes(9).map { $0.readableBytesView.map(Int.init) }
            try body(TextEncodingEntry(modelID: try r.int(0), prompt: try r.text(1) ?? "", encoder: TextEncoderRole(rawValue: try r.text(2) ?? "") ?? .prior,
                                       clipSkip: Int(try r[3].decode(Int32.self)), encoding: e))
        }
    }

    public func forEachPriorRun(_ body: (PriorRunEntry) throws -> Void) throws {
        let rows = try session.query("""
            SELECT r.id, r.model_id, p.text, r.seed, r.steps, r.guidance, r.candidates, r.scheduler, r.dim, r.embeddings, r.scores,
                   r.chosen, r.draws, r.seconds
            FROM prior_runs r JOIN prompts p ON p.id = r.prompt_id ORDER BY r.id
            """)
        for r in rows {
            let id = try r.int(0), n = Int(try r[6].decode(Int32.self)), dim = Int(try r[8].decode(Int32.self))
            let key = PriorRunKey(modelID: try r.int(1), prompt: try r.text(2) ?? "", seed: UInt64(bitPattern: try r.int(3)),
                                  steps: Int(try r[4].decode(Int32.self)), guidance: Float(try r.double(5) ?? 0), candidates: n,
                                  scheduler: try r.text(7) ?? "")
            let draws = (try? JSONDecoder().decode([Int].self, from: Data((try r.text(12) ?? "").utf8))) ?? []
            let run = CachedPriorRun(id: id, dim: dim, candidates: try r.floats(9, count: n * dim, path: location, what: "prior run \(id)") ?? [],
                                     scores: try r.floats(10, count: n, path: location, what: "prior run \(id)") ?? [],
                                     chosenIndex: Int(try r[11].decode(Int32.self)), draws: draws)
            try body(PriorRunEntry(key: key, run: run, seconds: try r.double(13)))
        }
    }

    public func allGenerationIDs() throws -> [Int64] {
        try session.query("SELECT id FROM generations ORDER BY id").map { try $0.int(0) }
    }

    public func importGeneration(_ g: StoredGeneration, png: Data) throws {
        guard SHA256.hex(png) == g.sha256 else {
            throw StoreError.imageFile(path: g.imageLocation, reason: "the image bytes of generation \(g.id) do not hash to its recorded sha256")
        }
        let new = g.asNew
        _ = try record(new, png: png, id: g.id, createdAt: g.createdAt, starred: g.starred, seconds: g.seconds)
    }

    /// New generations get ids above the imported ones.
    public func finishImport() throws {
        try session.query("SELECT setval(pg_get_serial_sequence('generations', 'id'), greatest((SELECT max(id) FROM generations), 1))")
    }
}
