import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPPipelines
import UnCLIPSchedulers
import UnCLIPService
import UnCLIPStore
import UnCLIPStoreSQLite
import UnCLIPStorePostgres
import UnCLIPTensor
import UnCLIPWeights

extension GemmPrecision: ExpressibleByArgument {}

/// Which model, and how to load it. Commands on stored generations default to the model that made them.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model folder (diffusers layout): a StableUnCLIPPipeline bundle, a Stable unCLIP decoder folder (with --prior), or a plain Stable Diffusion folder. Default: $UNCLIP_MODEL, else the shipped weights/shapes (for stored generations: the model that made them).") var model: String?

    @Option(help: "For single-file checkpoints (--model FILE.safetensors / .ckpt): the prediction type, overriding the one the file implies (SD 2.x 768-v: v_prediction; others: epsilon).") var predictionType: String?

    @Flag(help: "For single-file checkpoints: use the UNet's EMA copy (model_ema.*) instead of its trained weights.") var ema = false

    @Option(help: "For single-file checkpoints of a non-standard size: a diffusers folder of the same architecture whose configs, tokenizer and scheduler to use (default: the standard SD 1.x / 2.x ones).") var modelConfig: String?

    @Option(help: "Karlo-style prior folder (prior, prior_scheduler, text_encoder, tokenizer) for decoder-only models.") var prior: String?

    @Option(help: "Prefer this weight variant where a component has it (e.g. fp16); an error if no component has it.") var variant: String?

    @Option(help: "Precision of the UNet, prior and VAE weight products: fp32 (exact, default) or bf16 (faster, on CPUs with AVX512_BF16; others fall back to fp32 with a warning). CLIP encoders stay fp32.") var precision: GemmPrecision = .fp32

    @Flag(help: "Load each model when its stage starts and free it when the stage ends, so peak memory is the largest model rather than all of them. Costs the load time of each stage on every image.") var lowMemory = false

    @Option(parsing: .unconditional, help: "Cores to compute on (default: all this process may use).") var threads: Int?

    var loadOptions: LoadOptions { LoadOptions(precision: precision, lowMemory: lowMemory, variant: variant, threads: threads) }

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads))") }
    }

    /// --model, else the folder `generation` was made with (if it is still there), else $UNCLIP_MODEL, else the
    /// shipped model, else the store's newest model.
    func location(for generation: StoredGeneration? = nil, in store: (any GenerationStore)? = nil) throws -> (URL, URL?) {
        let givenPrior = prior.map { URL(fileURLWithPath: $0) }
        if let model { return (URL(fileURLWithPath: model), givenPrior) }
        if let modelID = generation?.modelID, let m = try store?.model(id: modelID), FileManager.default.fileExists(atPath: m.path) {
            return (URL(fileURLWithPath: m.path), givenPrior ?? m.priorPath.map { URL(fileURLWithPath: $0) })
        }
        if let env = ProcessInfo.processInfo.environment["UNCLIP_MODEL"], !env.isEmpty { return (URL(fileURLWithPath: env), givenPrior) }
        let shipped = PackageLocation.weights.appendingPathComponent("shapes")
        if FileManager.default.fileExists(atPath: shipped.path) { return (shipped, givenPrior) }
        if let m = try store?.latestModel(), FileManager.default.fileExists(atPath: m.path) {
            return (URL(fileURLWithPath: m.path), givenPrior ?? m.priorPath.map { URL(fileURLWithPath: $0) })
        }
        throw CLIError("no model given: pass --model DIR or set UNCLIP_MODEL (weights/README.md says where to get the published weights)")
    }

    /// $UNCLIP_MODEL, else the shipped model (commands with no store context, like serve).
    static func defaultLocation() throws -> URL {
        if let env = ProcessInfo.processInfo.environment["UNCLIP_MODEL"], !env.isEmpty { return URL(fileURLWithPath: env) }
        let shipped = PackageLocation.weights.appendingPathComponent("shapes")
        if FileManager.default.fileExists(atPath: shipped.path) { return shipped }
        throw CLIError("no model given: pass --model DIR or set UNCLIP_MODEL (weights/README.md says where to get the published weights)")
    }

    func resolve(for generation: StoredGeneration? = nil, in store: (any GenerationStore)? = nil, clip: String? = nil) throws -> ResolvedModel {
        let (model, prior) = try location(for: generation, in: store)
        return try ModelResolver.resolve(model: model, prior: prior, clip: clip.map { URL(fileURLWithPath: $0) }, variant: variant,
                                         singleFile: ModelOptions.singleFileOptions(predictionType: predictionType, ema: ema,
                                                                                    template: modelConfig.map { URL(fileURLWithPath: $0) }))
    }

    /// Single files given as --model are converted once into $XDG_CACHE_HOME/unclip/converted (default
    /// ~/.cache/unclip/converted), with the tokenizers shipped in weights/.
    static func singleFileOptions(predictionType: String? = nil, ema: Bool = false, template: URL? = nil) -> SingleFileOptions {
        let env = ProcessInfo.processInfo.environment
        let cacheRoot = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return SingleFileOptions(cache: cacheRoot.appendingPathComponent("unclip/converted"),
                                 tokenizers: [.sd1: PackageLocation.weights.appendingPathComponent("clip-tokenizer"),
                                              .sd2: PackageLocation.weights.appendingPathComponent("clip-tokenizer-sd2")],
                                 predictionType: predictionType, ema: ema, template: template)
    }

    /// Loads the engine of `model`'s family, saying its load warnings once.
    func engine(_ model: ResolvedModel) throws -> any ImageEngine {
        let engine = try EngineRegistry.standard.load(model, options: loadOptions)
        for w in engine.loadWarnings { warn("warning: \(w)") }
        return engine
    }
}

/// --clip, for commands that can run plain Stable Diffusion folders.
struct ClipOptions: ParsableArguments {
    @Option(help: "For plain Stable Diffusion models: a CLIP vision encoder (a folder with image_encoder/ and feature_extractor/, e.g. a Stable unCLIP model, or a CLIPVisionModelWithProjection folder) that embeds each finished image, so that search covers it. Without it such images are stored without an embedding.") var clip: String?
}

/// Decoder settings every image-making command takes; A1111's names are accepted as aliases.
struct DecoderOptions: ParsableArguments {
    @Option(name: [.customLong("negative"), .customLong("negative-prompt")], help: "Negative prompt for the decoder's classifier-free guidance.") var negative: String?

    @Option(parsing: .unconditional, help: "Decoder denoising steps (1–1000).") var steps = 20

    @Option(name: [.customLong("guidance"), .customLong("cfg-scale")], parsing: .unconditional,
            help: "Decoder guidance scale, 0–100 (1 = no guidance). Default: the model folder's unclip.json recommendation, else 10 (diffusers').")
    var guidance: Float?

    @Option(parsing: .unconditional, help: "Noise added to the image embedding before decoding (0 = none; higher = looser variations).") var noiseLevel = 0

    @Option(name: [.customLong("scheduler"), .customLong("sampler")],
            help: ArgumentHelp("Decoder scheduler, overriding the model's: \(SchedulerRegistry.presets.map(\.alias).joined(separator: ", ")), an AUTOMATIC1111 name (\(SchedulerRegistry.presets.map { "\"\($0.a1111Name)\"" }.joined(separator: ", "))) or a diffusers class name."))
    var scheduler: String?

    func parameters(size: SizeOptions? = nil, previewEvery: Int? = nil) -> DecoderParameters {
        var d = DecoderParameters()
        d.steps = steps
        d.guidanceScale = guidance
        d.noiseLevel = noiseLevel
        d.negativePrompt = negative
        d.scheduler = scheduler
        d.width = size?.width
        d.height = size?.height
        d.previewEvery = previewEvery
        return d
    }
}

/// Output size (not for edits, which keep the picture's size).
struct SizeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Image width in pixels (a multiple of 8). Default: the model's native size.") var width: Int?

    @Option(parsing: .unconditional, help: "Image height in pixels (a multiple of 8). Default: the model's native size.") var height: Int?
}

/// Seeds and how many images.
struct SeedOptions: ParsableArguments {
    @Option(name: [.customShort("s"), .long], help: "Seed (torch-compatible). Default: a random seed, printed.") var seed: UInt64?

    @Option(name: [.customShort("n"), .customLong("count"), .customLong("batch-count")], parsing: .unconditional,
            help: "Number of images; image i uses seed + i, so each can be made again alone.")
    var count = 1

    var plan: SeedPlan { SeedPlan(first: seed, count: count) }
}

/// Prior settings (text-to-image and edits with Stable unCLIP).
struct PriorOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Prior denoising steps (1–1000).") var priorSteps = 25

    @Option(parsing: .unconditional, help: "Prior guidance scale, 0–100 (1 = no guidance).") var priorGuidance: Float = 4

    @Option(parsing: .unconditional, help: "Image embeddings the prior samples; the one with the best CLIP score with the prompt is kept (DALL·E 2 uses 2).") var priorCandidates = 2

    var parameters: PriorParameters {
        var p = PriorParameters()
        p.steps = priorSteps
        p.guidanceScale = priorGuidance
        p.candidates = priorCandidates
        return p
    }
}

/// Where image-making commands put their copies.
struct OutputOptions: ParsableArguments {
    @Option(name: [.customShort("o"), .long],
            help: "Where to write a copy of each image (the store keeps its own). With several images, '-SEED' is added before the extension. Default: unclip-SEED.png in the current folder.")
    var output: String?

    @Option(parsing: .unconditional, help: "Also write the decoded x0 prediction every N steps beside the output (NAME.step-005.png).") var previewEvery: Int?

    @Flag(help: "Also write the final latents beside the output (NAME.latents.safetensors).") var saveLatents = false

    func validate() throws {
        if let previewEvery, previewEvery < 1 { throw ValidationError("--preview-every must be at least 1 (got \(previewEvery))") }
    }

    /// The copy's path for an image of a request that makes `count` images.
    func url(seed: UInt64, count: Int, defaultStem: String = "unclip") -> URL {
        guard let output else { return URL(fileURLWithPath: "\(defaultStem)-\(seed).png") }
        let url = URL(fileURLWithPath: output)
        guard count > 1 else { return url }
        let ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
        return url.deletingLastPathComponent().appendingPathComponent("\(url.deletingPathExtension().lastPathComponent)-\(seed).\(ext)")
    }

    /// NAME.step-005.png beside the output, for step index i (0-based).
    func previewURL(for output: URL, step: Int) -> URL {
        output.deletingPathExtension().appendingPathExtension(String(format: "step-%03d.png", step + 1))
    }
}

/// --store and --json, taken by every command that touches the store.
struct StoreOptions: ParsableArguments {
    @Option(help: """
        The store: a database file, or a PostgreSQL URL postgres://user@host:port/database shared by several machines \
        (password in the URL or in PGPASSWORD). Default: $UNCLIP_STORE, else $XDG_DATA_HOME/unclip/store.sqlite, else \
        ~/.local/share/unclip/store.sqlite. A file store keeps its images in <name>-images/ beside it; PostgreSQL keeps them in the database.
        """) var store: String?

    @Flag(help: "Print machine-readable JSON: one object per line as each image is made (NDJSON), or one document for queries.") var json = false

    /// The store as given (--store, else $UNCLIP_STORE), nil for the default file.
    var given: String? {
        if let store { return store }
        if let env = ProcessInfo.processInfo.environment["UNCLIP_STORE"], !env.isEmpty { return env }
        return nil
    }

    var url: URL { given.map { URL(fileURLWithPath: $0) } ?? SQLiteStore.defaultURL() }

    /// Whether the store is a PostgreSQL database.
    var isPostgres: Bool { given.map(PostgresLocation.isPostgresURL) ?? false }

    /// Opens the store (a file, or a PostgreSQL database), reporting on stderr what the startup check cleaned up.
    func open(_ access: SQLiteStore.Access = .readWrite, role: String = "unclip", leaseSeconds: Double = 30) throws -> any StoreTransfer {
        try openStore(given, access: access, role: role, leaseSeconds: leaseSeconds)
    }
}

/// Opens a store named by a file path or a PostgreSQL URL (nil: the default file). A PostgreSQL URL without a
/// password takes $PGPASSWORD, and without a user $PGUSER, else $USER, as libpq does.
func openStore(_ given: String?, access: SQLiteStore.Access = .readWrite, role: String = "unclip", leaseSeconds: Double = 30) throws -> any StoreTransfer {
    if let given, PostgresLocation.isPostgresURL(given) {
        let env = ProcessInfo.processInfo.environment
        return try PostgresStore(try PostgresLocation(url: given, defaultUser: env["PGUSER"] ?? env["USER"], password: env["PGPASSWORD"]),
                                 leaseSeconds: leaseSeconds, role: role)
    }
    let s = try SQLiteStore(url: given.map { URL(fileURLWithPath: $0) } ?? SQLiteStore.defaultURL(), access: access)
    let r = s.startupReport
    if !r.staleTemporaryFiles.isEmpty || !r.orphanFiles.isEmpty {
        warn("store: removed \(r.staleTemporaryFiles.count) half-written file(s) and \(r.orphanFiles.count) image file(s) without a generation, left by an interrupted run")
    }
    return s
}

/// --no-cache, for commands that run the text encoders or the prior.
struct CacheOptions: ParsableArguments {
    @Flag(help: "Compute the text encodings and the prior even when the store has them (results are still stored).") var noCache = false
}

/// Filters for list and search.
struct FilterOptions: ParsableArguments {
    @Option(help: "Only this kind (repeatable): text-to-image, variation, interpolation, text-diff, source, edit.") var kind: [String] = []

    @Option(help: "Only generations made since this date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, local time; or ISO 8601).") var since: String?

    func filter(dim: Int? = nil) throws -> GenerationFilter {
        let kinds = try kind.map { name -> GenerationKind in
            guard let k = GenerationKind(rawValue: name) else {
                throw ValidationError("unknown --kind '\(name)' (one of \(GenerationKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return k
        }
        return GenerationFilter(kinds: kinds.isEmpty ? nil : kinds, since: try since.map { try StoreTime.timestamp(parsing: $0) }, dim: dim)
    }
}

/// Parses a generation id argument.
func generationID(_ text: String) throws -> Int64 {
    guard let id = Int64(text.hasPrefix("#") ? String(text.dropFirst()) : text), id > 0 else {
        throw ValidationError("'\(text)' is not a generation id (a positive number, as `unclip list` shows)")
    }
    return id
}

/// What the commands that decode stored or given image embeddings (vary, nudge) take besides their source.
struct DecodeCommandOptions: ParsableArguments {
    @OptionGroup var model: ModelOptions
    @OptionGroup var decoder: DecoderOptions
    @OptionGroup var size: SizeOptions
    @OptionGroup var seeds: SeedOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var store: StoreOptions
    @OptionGroup var cache: CacheOptions
}
