import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPService

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make images from a prompt: CLIP text → prior (best of N image embeddings) → decoder → PNG.",
        discussion: """
        The prior samples --prior-candidates CLIP image embeddings and keeps the one closest to the prompt \
        (DALL·E 2's rule); the decoder draws it. With --prior-candidates 1 and the same seed and settings, \
        the image equals diffusers' StableUnCLIPPipeline output. \
        Every image is recorded in the store (see --store) with its embedding and settings; text encodings \
        and prior runs are cached there, so repeating a prompt skips those stages (--no-cache recomputes them). \
        Each image prints a line (id, file, seed, seconds) as soon as it is stored; --json prints one JSON object \
        per image instead. Ctrl-C stops after the current step; finished images are kept. \
        A plain Stable Diffusion folder (StableDiffusionPipeline layout) runs prompt → UNet → VAE without a prior; \
        its images are stored without an embedding unless --clip names a CLIP vision encoder to embed them.
        Examples:
          unclip generate "a small red circle on the left"
          unclip generate "a lighthouse at dusk" --model sd21-unclip-small --prior karlo --seed 7 --count 4
          unclip generate "a lighthouse at dusk" --model stable-diffusion-2-1 --clip sd21-unclip-h
        Each PNG stores its settings in a "parameters" text chunk that AUTOMATIC1111's PNG Info reads.
        """)

    @Argument(help: "The prompt (CLIP reads 77 tokens; longer prompts are truncated with a warning).") var prompt: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var priorOptions: PriorOptions
    @OptionGroup var decoderOptions: DecoderOptions
    @OptionGroup var sizeOptions: SizeOptions
    @OptionGroup var seedOptions: SeedOptions
    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var clipOptions: ClipOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    @Option(help: .hidden) var strength: Float?

    func validate() throws {
        if strength != nil { throw ValidationError("--strength belongs to image-to-image: use `unclip edit --image PICTURE PROMPT --strength S`") }
    }

    func run() throws {
        var request = TextToImageRequest(prompt: prompt)
        request.prior = priorOptions.parameters
        request.decoder = decoderOptions.parameters(size: sizeOptions, previewEvery: outputOptions.previewEvery)
        try RequestCheck.check(request.prior)
        let plan = try ImagePlan(seedOptions, outputOptions)
        request.seeds = plan.seedPlan
        let model = try modelOptions.resolve(clip: clipOptions.clip)
        try Preflight.check(request.decoder, model: model, options: modelOptions.loadOptions)
        let store = try storeOptions.open()
        try plan.run(store: store, engine: try modelOptions.engine(model), useCache: !cacheOptions.noCache, json: storeOptions.json) {
            try $0.generate(request, observer: $1, delivered: $2)
        }
    }
}
