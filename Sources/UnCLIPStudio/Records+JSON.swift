import Foundation
import UnCLIPStore
import UnCLIPTensor
import UnCLIPWeights

/// JSON views of stored generations and the export of one generation; none of these needs a model.
public enum GenerationRecords {
    /// A generation as a JSON-ready dictionary. `detailed` adds children, the model and the prior's candidates.
    public static func describe(_ g: StoredGeneration, store: Store, detailed: Bool) throws -> [String: Any] {
        var out: [String: Any] = [
            "id": g.id, "created_at": g.createdAt, "kind": g.kind.rawValue, "prompt": g.prompt ?? NSNull(),
            "image": g.imageURL.path, "sha256": g.sha256, "width": g.width, "height": g.height, "dim": g.dim ?? NSNull(), "picture_dim": g.pictureEmbedding.map { $0.count as Any } ?? NSNull(),
            "parents": g.parents.map { ["role": $0.role, "id": $0.id, "exists": $0.exists] as [String: Any] },
        ]
        if let seed = g.seed { out["seed"] = seed }
        if !detailed { return out }
        let settingsJSON = try JSONSerialization.jsonObject(with: Data(try g.settings.json().utf8))
        out["settings"] = settingsJSON
        out["file_bytes"] = g.fileBytes
        out["image_present"] = FileManager.default.fileExists(atPath: g.imageURL.path)
        out["embedding_norm"] = g.embedding.map { EmbeddingMath.norm($0) } ?? NSNull()
        if let seconds = g.seconds { out["seconds"] = seconds }
        out["children"] = try store.children(of: g.id)
        if let modelID = g.modelID, let m = try store.model(id: modelID) {
            out["model"] = ["path": m.path, "prior_path": m.priorPath ?? NSNull(), "fingerprint": m.fingerprint] as [String: Any]
        }
        if let runID = g.priorRunID, let run = try store.priorRun(id: runID) {
            out["prior"] = ["run": run.id, "scores": run.scores.map(Double.init), "chosen": run.chosenIndex, "candidates": run.count]
        }
        return out
    }

    /// Writes `<id>.png` (the store's copy, checked against its sha256), `<id>.safetensors` (image_embeds [1, D],
    /// plus the prior's candidates and scores when known; no file when there is neither) and `<id>.json`
    /// (the full record) into `folder`.
    public static func export(_ id: Int64, from store: Store, to folder: URL) throws -> [URL] {
        let g = try store.generation(id)
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw StoreError.imageFile(path: folder.path, reason: "cannot create the export folder (\(error.localizedDescription))")
        }
        guard let png = FileManager.default.contents(atPath: g.imageURL.path) else {
            throw StoreError.imageFile(path: g.imageURL.path, reason: "generation \(id)'s image is missing; `unclip regenerate \(id)` puts it back")
        }
        guard SHA256.hex(png) == g.sha256 else {
            throw StoreError.imageFile(path: g.imageURL.path, reason: "its sha256 is no longer the recorded \(g.sha256); the file was changed")
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
        var record = try describe(g, store: store, detailed: true)
        record["image"] = pngURL.lastPathComponent
        let json = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        try AtomicFile.write(json, to: jsonURL)
        return entries.isEmpty ? [pngURL, jsonURL] : [pngURL, tensorsURL, jsonURL]
    }
}
