import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPPipelines
import UnCLIPServer
import UnCLIPService
import UnCLIPStore
import UnCLIPTensor

/// Loads the model folders `serve` and `worker` keep warm (default: $UNCLIP_MODEL, else the shipped weights), each
/// under its folder's name: the name jobs carry, so a worker claims the jobs of the models it has.
func loadServedModels(folders given: [String], prior: String?, variant: String?, precision: GemmPrecision, threads: Int?,
                      store: any GenerationStore, useCache: Bool) throws -> [ServedModel] {
    var folders = given
    if folders.isEmpty { folders = [try ModelOptions.defaultLocation().path] }
    let options = LoadOptions(precision: precision, lowMemory: false, variant: variant, threads: threads)
    var served: [ServedModel] = []
    for folder in folders {
        let url = URL(fileURLWithPath: folder)
        // Single-file checkpoints are converted once (cached) like every other command's --model FILE.
        let singleFile = ModelOptions.singleFileOptions()
        var resolved = try ModelResolver.resolve(model: url, variant: variant, singleFile: singleFile)
        if prior != nil, !FileManager.default.fileExists(atPath: url.appendingPathComponent("prior").path) {
            resolved = try ModelResolver.resolve(model: url, prior: prior.map { URL(fileURLWithPath: $0) }, variant: variant, singleFile: singleFile)
        }
        warn("loading \(resolved.name) …")
        let engine = try EngineRegistry.standard.load(resolved, options: options)
        for w in engine.loadWarnings { warn("warning: \(w)") }
        served.append(ServedModel(name: resolved.name, service: GenerationService(store: store, engine: engine, useCache: useCache)))
    }
    return served
}

/// The models `serve` and `worker` keep loaded.
struct ServedModelOptions: ParsableArguments {
    @Option(name: .customLong("model"), help: "A model folder or single-file checkpoint to keep loaded (repeatable; the first is the default). Default: $UNCLIP_MODEL, else the shipped weights/shapes.")
    var models: [String] = []
    @Option(help: "Karlo-style prior folder for decoder-only Stable unCLIP models among --model.") var prior: String?
    @Option(help: "Weight variant to prefer (e.g. fp16).") var variant: String?
    @Option(help: "fp32 (exact, default) or bf16 (faster on CPUs with AVX512_BF16).") var precision: GemmPrecision = .fp32
    @Option(parsing: .unconditional, help: "Cores to compute on (default: all).") var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads))") }
    }

    func load(store: any GenerationStore, useCache: Bool) throws -> [ServedModel] {
        try loadServedModels(folders: models, prior: prior, variant: variant, precision: precision, threads: threads,
                             store: store, useCache: useCache)
    }
}
