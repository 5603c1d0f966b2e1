import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPService

struct Edit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Image-to-image and inpainting: turn a picture, or the part a mask marks, toward a prompt (Stable unCLIP and plain Stable Diffusion folders).",
        discussion: """
        The picture (PNG, JPEG or WebP) is encoded by the VAE, noised to --strength (0 keeps it, 1 ignores it), and \
        denoised with the prompt for the remaining steps, as diffusers' img2img pipelines do. With a Stable unCLIP \
        model the decoder is conditioned on an image embedding that moves with the strength too: the slerp from the \
        picture's own CLIP embedding to the prior's embedding for the prompt. The picture keeps its size, whose \
        sides must be multiples of 8. \
        Each edit is recorded in the store with its init picture (path and sha256) and strength, linked to the \
        stored generation whose picture it started from, if any; `unclip regenerate ID` repeats it while the \
        init picture is unchanged.
        Inpainting (--mask): the mask is a picture of the same shape (resized to the picture's size if need be, \
        as diffusers does) whose WHITE part is repainted and whose BLACK part is kept, as in diffusers and AUTOMATIC1111 (colours count by their grey, PIL's luma: 128 or more is \
        white; transparency is ignored). It runs as diffusers' StableDiffusionInpaintPipeline: an inpainting \
        model (a UNet with 9 input channels, e.g. stable-diffusion-inpainting) sees the mask and the masked \
        picture; any other model (Stable unCLIP, the shipped one) repaints everywhere but has the kept part put \
        back, noised to match, after every step. --strength defaults to 1 with a mask (diffusers' inpainting \
        default): the masked part starts from pure noise. The mask's path and sha256 are recorded with the edit.
        Examples:
          unclip edit --image sketch.png "a green triangle"
          unclip edit --image photo.jpg "a blue circle" --strength 0.5
          unclip edit --image photo.png --mask hole.png "a red square"
        """)

    @Option(help: "The init picture (PNG, JPEG or WebP).") var image: String

    @Option(help: "Inpainting mask (PNG, JPEG or WebP, the picture's shape): white = repaint, black = keep.")
    var mask: String?

    @Argument(help: "The prompt.") var prompt: String

    @Option(name: [.customLong("strength"), .customLong("denoising-strength")], parsing: .unconditional,
            help: "How much of the picture is replaced, 0–1 (default 0.8; 1 with --mask).")
    var strength: Float?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var priorOptions: PriorOptions
    @OptionGroup var decoderOptions: DecoderOptions
    @OptionGroup var seedOptions: SeedOptions
    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var clipOptions: ClipOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func run() throws {
        var request = EditRequest(prompt: prompt, picture: .file(URL(fileURLWithPath: image)))
        let strength = self.strength ?? (mask == nil ? 0.8 : 1)
        request.strength = strength
        request.mask = mask.map { .file(URL(fileURLWithPath: $0)) }
        request.prior = priorOptions.parameters
        request.decoder = decoderOptions.parameters(previewEvery: outputOptions.previewEvery)
        try RequestCheck.finite("strength", strength, 0...1)
        try RequestCheck.check(request.prior)
        let plan = try ImagePlan(seedOptions, outputOptions)
        request.seeds = plan.seedPlan
        let model = try modelOptions.resolve(clip: clipOptions.clip)
        let store = try storeOptions.open()
        try plan.run(store: store, engine: try modelOptions.engine(model), useCache: !cacheOptions.noCache, json: storeOptions.json) {
            try $0.edit(request, observer: $1, delivered: $2)
        }
    }
}
