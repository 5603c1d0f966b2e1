import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPService

struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Images along the great circle between two stored generations' CLIP image embeddings.",
        discussion: """
        Spherical interpolation (slerp) over the whole embedding: --frames images with t = 0, 1/(N−1), …, 1, \
        so the first and last frames use the two generations' own embeddings. Every frame is decoded with \
        the same seed, so only the embedding changes from frame to frame. Each frame is recorded.
        Example:
          unclip interpolate 12 31 --frames 8 --seed 5 --output walk.png     # walk-0.png … walk-7.png
        """)

    @Argument(help: "The generation to start from.") var from: String

    @Argument(help: "The generation to end at.") var to: String

    @Option(parsing: .unconditional, help: "Number of frames, both ends included (2–1000).") var frames = 5

    @Option(help: "Text that steers the decoder (default: none).") var prompt = ""

    @Option(name: [.customShort("s"), .long], help: "Seed of every frame (torch-compatible). Default: a random seed, printed.") var seed: UInt64?

    @Option(name: [.customShort("o"), .long], help: "Where to write copies of the frames: NAME-0.png … Default: unclip-interpolation-N.png in the current folder.") var output: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var decoderOptions: DecoderOptions
    @OptionGroup var sizeOptions: SizeOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        _ = try generationID(from); _ = try generationID(to)
    }

    func frameURL(_ frame: Int) -> URL {
        let url = URL(fileURLWithPath: output ?? "unclip-interpolation.png")
        let ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
        let digits = String(frames - 1).count
        let number = String(repeating: "0", count: max(0, digits - String(frame).count)) + String(frame)
        return url.deletingLastPathComponent().appendingPathComponent("\(url.deletingPathExtension().lastPathComponent)-\(number).\(ext)")
    }

    func run() throws {
        var request = InterpolationRequest(from: try generationID(from), to: try generationID(to))
        request.frames = frames
        request.prompt = prompt
        request.decoder = decoderOptions.parameters(size: sizeOptions)
        try RequestCheck.range("frames", frames, 2...RequestCheck.maxFrames)
        request.seed = try RequestCheck.seeds(SeedPlan(first: seed, count: 1))[0]
        try checkWritable((0..<frames).map(frameURL))
        let store = try storeOptions.open()
        let a = try store.generation(request.from)
        _ = try store.generation(request.to)
        let model = try modelOptions.resolve(for: a, in: store)
        try Preflight.check(request.decoder, model: model, options: modelOptions.loadOptions)
        let service = GenerationService(store: store, engine: try modelOptions.engine(model), useCache: !cacheOptions.noCache)
        let deliver = Deliverer(saveLatents: false, renderer: storeOptions.json ? .json : .human, store: store) { i, _ in frameURL(i) }
        Interrupts.install()
        try service.interpolate(request, observer: TerminalObserver(), delivered: deliver.deliver)
    }
}
