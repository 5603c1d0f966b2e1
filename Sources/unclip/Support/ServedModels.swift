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
