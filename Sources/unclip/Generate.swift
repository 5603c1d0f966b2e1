import ArgumentParser
import Foundation
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make images from a prompt: CLIP text → prior (best of N image embeddings) → decoder → PNG.",
        discussion: """
        The prior samples --prior-candidates CLIP image embeddings and keeps the one closest to the prompt
        (DALL·E 2's rule); the decoder draws it. With --prior-candidates 1 and the same seed and settings,
        the image equals diffusers' StableUnCLIPPipeline output.
        Examples:
          unclip generate "a small red circle on the left"
          unclip generate "a lighthouse at dusk" --model sd21-unclip-small --prior karlo --seed 7 --count 4
        Each PNG stores its settings in a "parameters" text chunk, as AUTOMATIC1111 does.
        """)

    @Argument(help: "The prompt (CLIP reads 77 tokens; longer prompts are truncated with a warning).")
    var prompt: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var priorOptions: PriorOptions
    @OptionGroup var decoderOptions: DecoderOptions

    func run() throws {
        let pipe = try modelOptions.load()
        let progress = Progress()
        let settings = decoderOptions.settings
        let size = (settings.width ?? pipe.decoder.defaultSize, settings.height ?? pipe.decoder.defaultSize)
        let scheduler = settings.scheduler ?? (try? String(contentsOf: pipe.decoder.folder.appendingPathComponent("scheduler/scheduler_config.json"), encoding: .utf8))
            .flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }?["_class_name"] as? String ?? "?"
        for seed in decoderOptions.seeds() {
            let start = DispatchTime.now().uptimeNanoseconds
            let g = try pipe.textToImage(prompt: prompt, priorSettings: priorOptions.settings, settings: settings, seed: seed,
                                         progress: { progress.update(stage: $0, step: $1, total: $2) }, onWarning: { warn("warning: \($0)") })
            let url = decoderOptions.outputURL(seed: seed)
            let params = parametersText(
                prompt: prompt, negative: settings.negativePrompt, steps: settings.steps, scheduler: scheduler,
                guidance: settings.guidanceScale, seed: seed, width: size.0, height: size.1,
                model: (try? modelOptions.modelURL().lastPathComponent) ?? "?",
                extra: [("Prior steps", "\(priorOptions.priorSteps)"), ("Prior guidance", "\(priorOptions.priorGuidance)"),
                        ("Prior candidates", "\(priorOptions.priorCandidates)"), ("Noise level", "\(settings.noiseLevel)")])
            try PNG.write(g.image, to: url, textChunks: [(key: "parameters", value: params)])
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            try printJSON(["output": url.path, "seed": seed, "seconds": seconds,
                           "prior_scores": g.prior?.scores ?? [], "prior_choice": g.prior?.chosenIndex ?? 0])
        }
    }
}

struct Vary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Variations of an image or of a CLIP image embedding (Stable unCLIP image-to-image).",
        discussion: """
        The image is embedded with the model's CLIP vision encoder (or the embedding is read from a
        .safetensors file: the tensor 'image_embeds', or its only tensor), noise-augmented by --noise-level,
        and decoded with a new seed. An optional --prompt steers the decoder.
        Examples:
          unclip vary --image photo.png --count 4
          unclip vary --embedding picked.safetensors --noise-level 100 --prompt "as a watercolour"
        """)

    @Option(help: "A PNG to make variations of.")
    var image: String?

    @Option(help: "A .safetensors file holding a CLIP image embedding [D] or [1, D].")
    var embedding: String?

    @Option(help: "Text that steers the decoder (default: none).")
    var prompt = ""

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var decoderOptions: DecoderOptions

    func validate() throws {
        guard (image == nil) != (embedding == nil) else { throw ValidationError("give exactly one of --image or --embedding") }
    }

    func run() throws {
        let pipe = try modelOptions.load()
        let embeds: Tensor
        if let image {
            embeds = try pipe.embed(image: PNG.read(URL(fileURLWithPath: image)))
        } else {
            let file = try SafeTensorsFile(path: embedding!)
            let name = file.tensors["image_embeds"] != nil ? "image_embeds" : (file.tensors.count == 1 ? file.tensors.keys.first! : nil)
            guard let name else { throw CLIError("\(embedding!): no 'image_embeds' tensor (found \(file.tensors.keys.sorted().joined(separator: ", ")))") }
            embeds = try file.tensor(name)
            guard embeds.count == pipe.decoder.embeddingDim else {
                throw CLIError("\(embedding!): '\(name)' has shape \(embeds.shape), but this model's image embeddings have \(pipe.decoder.embeddingDim) values")
            }
        }
        let progress = Progress()
        let settings = decoderOptions.settings
        let size = (settings.width ?? pipe.decoder.defaultSize, settings.height ?? pipe.decoder.defaultSize)
        for seed in decoderOptions.seeds() {
            let g = try pipe.variation(imageEmbeds: embeds, prompt: prompt, settings: settings, seed: seed,
                                       progress: { progress.update(stage: $0, step: $1, total: $2) }, onWarning: { warn("warning: \($0)") })
            let url = decoderOptions.outputURL(seed: seed)
            let params = parametersText(prompt: prompt, negative: settings.negativePrompt, steps: settings.steps,
                                        scheduler: settings.scheduler ?? "model default", guidance: settings.guidanceScale, seed: seed,
                                        width: size.0, height: size.1, model: (try? modelOptions.modelURL().lastPathComponent) ?? "?",
                                        extra: [("Variation of", image ?? embedding!), ("Noise level", "\(settings.noiseLevel)")])
            try PNG.write(g.image, to: url, textChunks: [(key: "parameters", value: params)])
            try printJSON(["output": url.path, "seed": seed])
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
        let pipe = try PriorPipeline(folder: modelOptions.prior.map { URL(fileURLWithPath: $0) } ?? url)
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
