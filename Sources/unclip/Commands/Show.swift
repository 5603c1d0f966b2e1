import ArgumentParser
import Foundation
import UnCLIPService
import UnCLIPStore

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Everything recorded about one generation: settings, parents, children, the prior's candidates and scores.")

    @Argument(help: "The generation's id.") var id: String

    @OptionGroup var storeOptions: StoreOptions

    func run() throws {
        let store = try storeOptions.open(.read)
        let g = try store.generation(generationID(id))
        let detail = try GenerationDetail(g, store: store)
        if storeOptions.json { return try printJSON(detail) }
        let d = detail.details
        print("generation \(g.id) (\(g.kind.rawValue)), made \(g.createdAt)\(g.seconds.map { String(format: " in %.1f s", $0) } ?? "")")
        if let prompt = g.prompt { print("prompt: \(quoted(prompt))") }
        if let seed = g.seed { print("seed: \(seed)") }
        print("image: \(g.imageLocation) (\(g.width)x\(g.height), \(g.fileBytes) bytes, sha256 \(g.sha256))\(d.imagePresent ? "" : " — MISSING")")
        if let dim = g.dim {
            print(String(format: "embedding: %d values, norm %.4f (what the decoder drew)", dim, d.embeddingNorm ?? 0))
        } else {
            print("embedding: none (plain Stable Diffusion has no image-embedding path)")
        }
        if let p = g.pictureEmbedding {
            print("picture embedding: \(p.count) values, the finished picture through \(g.settings.clipModel ?? "the model's image encoder") (search ranks it)")
        } else if g.dim == nil {
            print("picture embedding: none (no CLIP image encoder; pass --clip DIR when generating), so search does not see it")
        }
        if let strength = g.settings.strength {
            print("edit: init image \(g.settings.initImage ?? "?") (sha256 \(g.settings.initSHA256?.prefix(16) ?? "?")), strength \(strength)")
        }
        if let model = d.model { print("model: \(model.path) (fingerprint \(model.fingerprint.prefix(16)))") }
        for p in g.parents { print("parent (\(p.role)): \(p.id)\(p.exists ? "" : " (removed)")") }
        if !d.children.isEmpty { print("children: \(d.children.map(String.init).joined(separator: ", "))") }
        if let prior = d.prior {
            print("prior candidates (CLIP score with the prompt): " + prior.scores.enumerated().map {
                String(format: "%d: %.4f%@", $0.offset, $0.element, $0.offset == prior.chosen ? " (chosen)" : "")
            }.joined(separator: ", "))
        }
        print("settings: \(try JSONCoding.string(g.settings))")
    }
}
