import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPService
import UnCLIPWeights

struct Vary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Variations of a stored generation, a picture or a CLIP image embedding (Stable unCLIP).",
        discussion: """
        `vary ID` decodes the stored generation's own image embedding with new seeds. --image embeds an \
        outside picture (PNG, JPEG or WebP) with the model's CLIP vision encoder and records it in the store as a \
        source; --embedding reads a .safetensors file (the tensor 'image_embeds', or its only tensor). The \
        embedding is noise-augmented by --noise-level and decoded; an optional --prompt steers the decoder. Every \
        variation is recorded in the store.
        Examples:
          unclip vary 12 --count 4
          unclip vary --image photo.png --count 4
          unclip vary --embedding picked.safetensors --noise-level 100 --prompt "as a watercolour"
        """)

    @Argument(help: "A stored generation's id.") var id: String?

    @Option(help: "A picture (PNG, JPEG or WebP) to make variations of.") var image: String?

    @Option(help: "A .safetensors file holding a CLIP image embedding [D] or [1, D].") var embedding: String?

    @Option(help: "Text that steers the decoder (default: none).") var prompt = ""

    @OptionGroup var o: DecodeCommandOptions

    func validate() throws {
        guard [id != nil, image != nil, embedding != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of a generation ID, --image or --embedding")
        }
        if let id { _ = try generationID(id) }
    }

    func run() throws {
        let source: VariationSource
        if let id {
            source = .generation(try generationID(id))
        } else if image != nil {
            source = .generation(0)  // replaced below, once the picture is recorded as a source
        } else {
            let path = embedding!
            let file = try SafeTensorsFile(path: path)
            guard let name = file.tensors["image_embeds"] != nil ? "image_embeds" : (file.tensors.count == 1 ? file.tensors.keys.first : nil) else {
                throw CLIError("\(path): no 'image_embeds' tensor (found \(file.tensors.keys.sorted().joined(separator: ", ")))")
            }
            source = .embedding(try file.tensor(name).scalars, origin: path)
        }
        var request = VariationRequest(source: source)
        request.prompt = prompt
        request.decoder = o.decoder.parameters(size: o.size, previewEvery: o.output.previewEvery)
        let plan = try ImagePlan(o.seeds, o.output)
        request.seeds = plan.seedPlan
        let store = try o.store.open()
        let parent = try id.map { try store.generation(generationID($0)) }
        let model = try o.model.resolve(for: parent, in: store)
        try Preflight.check(request.decoder, model: model, options: o.model.loadOptions)
        try plan.run(store: store, engine: try o.model.engine(model), useCache: !o.cache.noCache, json: o.store.json) {
            (service: GenerationService, observer: GenerationObserver, deliver: @escaping (MadeImage) throws -> Void) in
            try service.engine.require(.decodeEmbedding, for: "make variations")
            if let image {
                let imported = try service.importPicture(.file(URL(fileURLWithPath: image)))
                warn("source: \(image) recorded as generation \(imported.id)")
                request.source = .generation(imported.id)
            }
            try service.vary(request, observer: observer, delivered: deliver)
        }
    }
}
