import Foundation
import UnCLIPStore

/// Whole-store reads and id-keeping writes for `unclip store copy`.
extension SQLiteStore: StoreTransfer {
    public func allModels() throws -> [ModelRecord] {
        try read { db in
            let s = try db.prepare("SELECT id, fingerprint, path, prior_path FROM models ORDER BY id")
            var out: [ModelRecord] = []
            while try s.step() { out.append(ModelRecord(id: s.int(0), fingerprint: s.text(1) ?? "", path: s.text(2) ?? "", priorPath: s.text(3))) }
            return out
        }
    }

    public func forEachTextEncoding(_ body: (TextEncodingEntry) throws -> Void) throws {
        try read { db in
            let s = try db.prepare("""
                SELECT t.model_id, p.text, t.encoder, t.clip_skip, t.tokens, t.width, t.hidden_states, t.proj_dim, t.text_embeds, t.mask
                FROM text_encodings t JOIN prompts p ON p.id = t.prompt_id ORDER BY t.id
                """)
            while try s.step() {
                let tokens = Int(s.int(4)), width = Int(s.int(5))
                let what = "a cached text encoding"
                var e = CachedTextEncoding(tokens: tokens, width: width, hiddenStates: try s.floats(6, count: tokens * width, what: what))
                if !s.isNull(7) { e.textEmbeds = try s.floats(8, count: Int(s.int(7)), what: what) }
                if !s.isNull(9) { e.mask = s.blob(9).map(Int.init) }
                try body(TextEncodingEntry(modelID: s.int(0), prompt: s.text(1) ?? "", encoder: TextEncoderRole(rawValue: s.text(2) ?? "") ?? .prior,
                                           clipSkip: Int(s.int(3)), encoding: e))
            }
        }
    }

    public func forEachPriorRun(_ body: (PriorRunEntry) throws -> Void) throws {
        try read { db in
            let s = try db.prepare("""
                SELECT r.id, r.model_id, p.text, r.seed, r.steps, r.guidance, r.candidates, r.scheduler, r.dim, r.embeddings, r.scores,
                       r.chosen, r.draws, r.seconds
                FROM prior_runs r JOIN prompts p ON p.id = r.prompt_id ORDER BY r.id
                """)
            while try s.step() {
                let id = s.int(0), n = Int(s.int(6)), dim = Int(s.int(8))
                let key = PriorRunKey(modelID: s.int(1), prompt: s.text(2) ?? "", seed: UInt64(bitPattern: s.int(3)), steps: Int(s.int(4)),
                                      guidance: Float(s.double(5)), candidates: n, scheduler: s.text(7) ?? "")
                let draws = (try? JSONDecoder().decode([Int].self, from: Data((s.text(12) ?? "").utf8))) ?? []
                let run = CachedPriorRun(id: id, dim: dim, candidates: try s.floats(9, count: n * dim, what: "prior run \(id)"),
                                         scores: try s.floats(10, count: n, what: "prior run \(id)"), chosenIndex: Int(s.int(11)), draws: draws)
                try body(PriorRunEntry(key: key, run: run, seconds: s.isNull(13) ? nil : s.double(13)))
            }
        }
    }

    public func allGenerationIDs() throws -> [Int64] {
        try read { db in
            let s = try db.prepare("SELECT id FROM generations ORDER BY id")
            var out: [Int64] = []
            while try s.step() { out.append(s.int(0)) }
            return out
        }
    }

    public func importGeneration(_ g: StoredGeneration, png: Data) throws {
        guard SHA256.hex(png) == g.sha256 else {
            throw StoreError.imageFile(path: g.imageLocation, reason: "the image bytes of generation \(g.id) do not hash to its recorded sha256")
        }
        let new = g.asNew
        let temp = try temporaryImageURL()
        do { try png.write(to: temp) } catch {
            unlink(temp.path)
            throw StoreError.imageFile(path: temp.path, reason: "cannot write the image into the store (\(error))")
        }
        _ = try record(new, temporaryImage: temp, imported: ImportedRow(id: g.id, createdAt: g.createdAt, starred: g.starred, seconds: g.seconds))
    }

    /// AUTOINCREMENT's sequence already follows the largest id inserted.
    public func finishImport() throws {}
}
