import ArgumentParser
import Foundation
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPRandom
import UnCLIPStore
import UnCLIPStudio
import UnCLIPTensor
import UnCLIPWeights

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make images from a prompt: CLIP text → prior (best of N image embeddings) → decoder → PNG.",
        discussion: """
        The prior samples --prior-candidates CLIP image embeddings and keeps the one closest to the prompt
        (DALL·E 2's rule); the decoder draws it. With --prior-candidates 1 and the same seed and settings,
        the image equals diffusers' StableUnCLIPPipeline output.
        Every image is recorded in the store (see --store) with its embedding and settings; text encodings
        and prior runs are cached there, so repeating a prompt skips those stages (--no-cache recomputes them).
        A plain Stable Diffusion folder (StableDiffusionPipeline layout) runs prompt → UNet → VAE without a prior;
        its images are stored without an embedding unless --clip names a CLIP vision encoder to embed them.
        Examples:
          unclip generate "a small red circle on the left"
          unclip generate "a lighthouse at dusk" --model sd21-unclip-small --prior karlo --seed 7 --count 4
          unclip generate "a lighthouse at dusk" --model stable-diffusion-2-1 --clip sd21-unclip-h
        Each PNG stores its settings in a "parameters" text chunk, as AUTOMATIC1111 does.
        """)

    @Argument(help: "The prompt (CLIP reads 77 tokens; longer prompts are truncated with a warning).")
    var prompt: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var priorOptions: PriorOptions
    @OptionGroup var decoderOptions: DecoderOptions
    @OptionGroup var clipOptions: ClipOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        if decoderOptions.strength != nil { throw ValidationError("--strength belongs to image-to-image: use `unclip edit --image PNG PROMPT --strength S`") }
    }

    func run() throws {
        let store = try storeOptions.open()
        let studio = try modelOptions.studio(store: store, useCache: !cacheOptions.noCache, plain: true, clip: clipOptions.clip)
        for seed in decoderOptions.seeds() {
            let url = decoderOptions.outputURL(seed: seed)
            studio.preview = decoderOptions.previewWriter(for: url)
            let made = try studio.generate(prompt: prompt, priorSettings: priorOptions.settings, settings: decoderOptions.settings, seed: seed)
            if let cache = made.cache { warn("cache: text encodings \(cache.text.rawValue), prior \(cache.prior.rawValue)") }
            try decoderOptions.deliver(made, to: url)
        }
    }
}

struct Edit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Image-to-image: turn a picture toward a prompt (works with Stable unCLIP and plain Stable Diffusion folders).",
        discussion: """
        The picture is encoded by the VAE, noised to --strength (0 keeps it, 1 ignores it), and denoised with the
        prompt for the remaining steps, as diffusers' img2img pipelines do. With a Stable unCLIP model the decoder is
        conditioned on an image embedding that moves with the strength too: the slerp from the picture's own CLIP
        embedding to the prior's embedding for the prompt (the decoder follows its embedding even from a lightly
        noised start, so the prompt's alone would repaint the picture at any strength). The picture's sides must
        be multiples of 8.
        Each edit is recorded in the store with its init image (path and sha256) and strength, linked to the
        stored generation whose picture it started from, if any; `unclip regenerate ID` repeats it while the
        init image is unchanged.
        Examples:
          unclip edit --image sketch.png "a green triangle" --strength 0.8
          unclip edit --image ~/.local/share/unclip/store-images/12.png "a blue circle" --strength 0.5
        """)

    @Option(help: "The init picture (PNG).")
    var image: String

    @Argument(help: "The prompt.")
    var prompt: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var priorOptions: PriorOptions
    @OptionGroup var decoderOptions: DecoderOptions
    @OptionGroup var clipOptions: ClipOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        guard decoderOptions.strength != nil else { throw ValidationError("--strength is required for edit (0–1; 0.8 is a strong edit)") }
    }

    func run() throws {
        let store = try storeOptions.open()
        let studio = try modelOptions.studio(store: store, useCache: !cacheOptions.noCache, plain: true, clip: clipOptions.clip)
        var settings = decoderOptions.settings
        settings.strength = decoderOptions.strength
        for seed in decoderOptions.seeds() {
            let url = decoderOptions.outputURL(seed: seed)
            studio.preview = decoderOptions.previewWriter(for: url)
            let made = try studio.edit(prompt: prompt, initImage: URL(fileURLWithPath: image), priorSettings: priorOptions.settings,
                                       settings: settings, seed: seed)
            try decoderOptions.deliver(made, to: url)
        }
    }
}

struct Vary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Variations of a stored generation, an image or a CLIP image embedding (Stable unCLIP image-to-image).",
        discussion: """
        `vary ID` decodes the stored generation's own image embedding with new seeds. --image embeds an
        outside PNG with the model's CLIP vision encoder and records it in the store as a source; --embedding
        reads a .safetensors file (the tensor 'image_embeds', or its only tensor). The embedding is
        noise-augmented by --noise-level and decoded; an optional --prompt steers the decoder. Every
        variation is recorded in the store.
        Examples:
          unclip vary 12 --count 4
          unclip vary --image photo.png --count 4
          unclip vary --embedding picked.safetensors --noise-level 100 --prompt "as a watercolour"
        """)

    @Argument(help: "A stored generation's id.")
    var id: String?

    @Option(help: "A PNG to make variations of.")
    var image: String?

    @Option(help: "A .safetensors file holding a CLIP image embedding [D] or [1, D].")
    var embedding: String?

    @Option(help: "Text that steers the decoder (default: none).")
    var prompt = ""

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var decoderOptions: DecoderOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        guard [id != nil, image != nil, embedding != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of a generation ID, --image or --embedding")
        }
        if let id { _ = try generationID(id) }
    }

    func run() throws {
        let store = try storeOptions.open()
        let parent = try id.map { try store.generation(generationID($0)) }
        let studio = try modelOptions.studio(for: parent, store: store, useCache: !cacheOptions.noCache)
        var sourceID = parent?.id
        var outside: [Float]?
        if let image {
            let source = try studio.importImage(png: URL(fileURLWithPath: image))
            warn("source: \(image) recorded as generation \(source.id)")
            sourceID = source.id
        } else if let embedding {
            let file = try SafeTensorsFile(path: embedding)
            let name = file.tensors["image_embeds"] != nil ? "image_embeds" : (file.tensors.count == 1 ? file.tensors.keys.first! : nil)
            guard let name else { throw CLIError("\(embedding): no 'image_embeds' tensor (found \(file.tensors.keys.sorted().joined(separator: ", ")))") }
            let embeds = try file.tensor(name)
            guard embeds.count == (try studio.pipeline).decoder.embeddingDim else {
                throw CLIError("\(embedding): '\(name)' has shape \(embeds.shape), but this model's image embeddings have \((try studio.pipeline).decoder.embeddingDim) values")
            }
            outside = embeds.scalars
        }
        for seed in decoderOptions.seeds() {
            let url = decoderOptions.outputURL(seed: seed)
            studio.preview = decoderOptions.previewWriter(for: url)
            let made: MadeImage
            if let outside, let embedding {
                made = try studio.vary(embedding: outside, origin: embedding, prompt: prompt, settings: decoderOptions.settings, seed: seed)
            } else if let sourceID {
                made = try studio.vary(sourceID, prompt: prompt, settings: decoderOptions.settings, seed: seed)
            } else {
                throw CLIError("nothing to vary")
            }
            try decoderOptions.deliver(made, to: url)
        }
    }
}

struct Prior: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run only the prior: print the chosen CLIP image embedding's summary and every candidate's CLIP score.",
        discussion: "A debugging and scripting aid. --output writes candidates, chosen embedding, scores and the text embedding as safetensors.")

    @Argument(help: "The prompt.")
    var prompt: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var priorOptions: PriorOptions

    @Option(help: "Seed (torch-compatible). Default: random, printed.")
    var seed: UInt64?

    @Option(help: "Write the embeddings to this .safetensors file.")
    var output: String?

    func run() throws {
        let url = try modelOptions.modelURL()
        let pipe = try PriorPipeline(folder: modelOptions.prior.map { URL(fileURLWithPath: $0) } ?? url, variant: modelOptions.variant)
        let seed = self.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        let text = try pipe.encode(prompt, onWarning: { warn("warning: \($0)") })
        let progress = Progress()
        let r = try pipe.sample(text: text, unconditional: try pipe.encode(""), settings: priorOptions.settings,
                                generator: TorchGenerator(seed: seed)) { progress.update(stage: "prior", step: $0, total: $1) }
        let chosen = r.chosen.scalars
        if let output {
            try SafeTensorsWriter.write([("image_embeds", .float32(r.chosen)), ("candidates", .float32(r.candidates)),
                                         ("scores", .float32(Tensor(shape: [r.scores.count], data: r.scores))),
                                         ("text_embeds", .float32(text.textEmbeds))],
                                        metadata: ["prompt": prompt, "seed": "\(seed)"], to: URL(fileURLWithPath: output))
        }
        try printJSON(["seed": seed, "scores": r.scores, "chosen": r.chosenIndex, "dim": chosen.count,
                       "norm": chosen.map { $0 * $0 }.reduce(0, +).squareRoot(), "head": Array(chosen.prefix(4))])
    }
}
