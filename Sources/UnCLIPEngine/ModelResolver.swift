import Foundation
import UnCLIPPipelines
import UnCLIPWeights

/// Where and how single-file checkpoints (A1111 / ComfyUI `.safetensors`, `.ckpt`) become diffusers folders when
/// one is given as a model: converted once into `cache` (one folder per file, named by the file's name, size and
/// modification time, reused after), with the standard configs of the family and these tokenizers.
public struct SingleFileOptions: Sendable {
    /// The folder converted models are kept in.
    public var cache: URL
    /// The CLIP tokenizer folder for each family (SD 1.x: openai's; SD 2.x: the same vocabulary padding with "!").
    public var tokenizers: [SingleFileFamily: URL]
    /// Overrides the prediction type the file implies (SD 2.x 768-v: v_prediction; everything else: epsilon).
    public var predictionType: String?
    /// Take the UNet from the file's EMA copy.
    public var ema: Bool
    /// A diffusers folder of the same architecture whose configs, tokenizer and scheduler to use instead of the
    /// family's standard ones (for models of another size, as diffusers' `from_single_file(config=)`).
    public var template: URL?

    public init(cache: URL, tokenizers: [SingleFileFamily: URL], predictionType: String? = nil, ema: Bool = false, template: URL? = nil) {
        self.cache = cache; self.tokenizers = tokenizers; self.predictionType = predictionType; self.ema = ema; self.template = template
    }
}

/// Settings a model folder recommends in an optional `unclip.json` (e.g. {"guidance_scale": 2}). Requests
/// that leave a setting out get these; published diffusers folders have none, so diffusers' defaults apply.
public struct ModelDefaults: Codable, Sendable, Equatable {
    public var guidanceScale: Float?
    enum CodingKeys: String, CodingKey { case guidanceScale = "guidance_scale" }
    public init(guidanceScale: Float? = nil) { self.guidanceScale = guidanceScale }
}

/// A model located and identified: its folders, its pipeline class and its recommended defaults.
public struct ResolvedModel: Sendable, Equatable {
    /// The diffusers pipeline folder.
    public let folder: URL
    /// A separate Karlo-style prior folder, for decoder-only Stable unCLIP folders.
    public let prior: URL?
    /// A CLIP vision encoder that embeds the finished images of a model without one (plain Stable Diffusion).
    public let clip: URL?
    /// `model_index.json`'s `_class_name` (or, for folders without one, the class its layout implies).
    public let className: String
    /// Whether `className` came from `model_index.json` (false: inferred from the folders present).
    public let declared: Bool
    public let defaults: ModelDefaults
    /// Warnings found while resolving (e.g. an unreadable unclip.json), for the caller's observer.
    public let warnings: [String]

    /// The folder's name, as recorded with each generation.
    public var name: String { folder.lastPathComponent }
    /// The folders whose files make the model's identity (model, then the separate prior).
    public var folders: [URL] { [folder] + (prior.map { [$0] } ?? []) }
}

/// Finds and identifies models: paths, `model_index.json`, `unclip.json` defaults and weight variants.
/// The one place that decides what a path holds; engines are then chosen by `className` (`EngineRegistry`).
public enum ModelResolver {
    /// Files that are single-file checkpoints rather than diffusers folders.
    static let checkpointExtensions: Set<String> = ["safetensors", "ckpt", "pt", "pth", "bin"]

    public static func resolve(model: URL, prior: URL? = nil, clip: URL? = nil, variant: String? = nil,
                               singleFile: SingleFileOptions? = nil) throws -> ResolvedModel {
        var model = model
        if let singleFile, isSingleFile(model) { model = try convertedFolder(model, singleFile) }
        try checkFolder(model)
        if let prior { try checkFolder(prior) }
        if let clip { try checkFolder(clip) }
        var warnings: [String] = []
        let (className, declared) = try pipelineClass(model)
        let defaults = readDefaults(model, warnings: &warnings)
        if let variant { try checkVariant(variant, in: [model] + (prior.map { [$0] } ?? []) + (clip.map { [$0] } ?? [])) }
        return ResolvedModel(folder: model, prior: prior, clip: clip, className: className, declared: declared,
                             defaults: defaults, warnings: warnings)
    }

    /// A folder must exist and be a folder; single files get the error that says what they are.
    public static func checkFolder(_ url: URL) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else { throw EngineError.noSuchModel(path: url.path) }
        guard isDir.boolValue else {
            if checkpointExtensions.contains(url.pathExtension.lowercased()) {
                throw EngineError.singleFileCheckpoint(path: url.path, reason: "a diffusers model folder is needed here (single files are converted only where a folder to convert them into is given)")
            }
            throw EngineError.notAModelFolder(path: url.path, reason: "it is a file, not a folder")
        }
    }

    /// FNV-1a: a stable name for a path (Swift's `Hasher` is seeded per process).
    struct StableHash {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        mutating func add(_ s: String) { for b in s.utf8 { value = (value ^ UInt64(b)) &* 0x100_0000_01b3 } }
        var hex: String { String(value, radix: 16) }
    }

    static func isSingleFile(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && !isDir.boolValue
            && checkpointExtensions.contains(url.pathExtension.lowercased())
    }

    /// The diffusers folder of a single-file checkpoint: converted into `options.cache` on first use. A family this
    /// build does not convert is refused by name before anything is written.
    public static func convertedFolder(_ file: URL, _ options: SingleFileOptions) throws -> URL {
        let checkpoint: SingleFileCheckpoint
        do {
            checkpoint = try SingleFileCheckpoint(path: file.path)
            try checkpoint.requireConvertible()
        } catch let e as WeightError {
            throw EngineError.singleFileCheckpoint(path: file.path, reason: e.description)
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let modified = Int64((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)
        let prediction = options.predictionType
            ?? (options.template != nil ? "template" : needsProbe(checkpoint, options) ? "probed" : checkpoint.impliedPredictionType)
        // Name, size and time identify the file without hashing gigabytes; the settings that change the result too.
        var name = "\(file.deletingPathExtension().lastPathComponent)-\(String(size, radix: 16))-\(String(modified, radix: 16))-\(prediction)\(options.ema ? "-ema" : "")"
        if let template = options.template {
            var hasher = StableHash()
            hasher.add(template.standardizedFileURL.path)
            name += "-config-\(hasher.hex)"
        }
        let folder = options.cache.appendingPathComponent(name)
        let done = { FileManager.default.fileExists(atPath: folder.appendingPathComponent("model_index.json").path) }
        if done() { return folder }
        do {
            try FileManager.default.createDirectory(at: options.cache, withIntermediateDirectories: true)
            try convert(checkpoint, to: folder, options: options)
        } catch let e as WeightError {
            // Another process may have finished the same conversion first (its rename won): use its folder.
            if done() { return folder }
            throw EngineError.singleFileCheckpoint(path: file.path, reason: e.description)
        }
        return folder
    }

    /// Writes the diffusers folder of `checkpoint` at `folder` (which must not exist): with `options.template`'s
    /// configs, else the family's standard ones, probing an SD 2.x file that does not say what it predicts (no
    /// `global_step`, no `options.predictionType`) as A1111 does (`PredictionTypeProbe`). Built under a temporary
    /// name and renamed when complete, so no reader ever sees an unfinished folder.
    public static func convert(_ checkpoint: SingleFileCheckpoint, to folder: URL, options: SingleFileOptions) throws {
        guard !FileManager.default.fileExists(atPath: folder.path) else {
            throw WeightError.cannotOpen(path: folder.path, reason: "it already exists; give a new folder")
        }
        let staging = folder.deletingLastPathComponent().appendingPathComponent(".\(folder.lastPathComponent).staging-\(getpid())")
        try? FileManager.default.removeItem(at: staging)
        defer { try? FileManager.default.removeItem(at: staging) }
        if let template = options.template {
            try checkpoint.convert(to: staging, template: template, predictionType: options.predictionType, ema: options.ema)
        } else {
            guard let tokenizer = options.tokenizers[checkpoint.family] else {
                try checkpoint.requireConvertible()
                throw WeightError.missingFile(path: folder.path, what: "CLIP tokenizer folder for \(checkpoint.family.rawValue); converting into")
            }
            let probe = needsProbe(checkpoint, options)
            try checkpoint.convertStandard(to: staging, tokenizer: tokenizer, predictionType: probe ? "v_prediction" : options.predictionType, ema: options.ema)
            if probe, try PredictionTypeProbe.predictionType(unetFolder: staging.appendingPathComponent("unet")) == "epsilon" {
                try SingleFileConfigs.writeConfigs(family: checkpoint.family, predictionType: "epsilon", into: staging)
            }
        }
        guard rename(staging.path, folder.path) == 0 else {
            throw WeightError.cannotOpen(path: folder.path, reason: "rename failed: \(String(cString: strerror(errno)))")
        }
    }

    /// SD 2.x files without a step count or an explicit prediction type: the 768-v and 512 base models look alike.
    static func needsProbe(_ checkpoint: SingleFileCheckpoint, _ options: SingleFileOptions) -> Bool {
        checkpoint.family == .sd2 && options.predictionType == nil && options.template == nil && checkpoint.globalStep == nil
    }

    /// `model_index.json`'s `_class_name`, else the class the folder's layout implies.
    static func pipelineClass(_ folder: URL) throws -> (String, Bool) {
        let index = folder.appendingPathComponent("model_index.json")
        if let data = FileManager.default.contents(atPath: index.path) {
            struct Index: Decodable { let _class_name: String? }
            let decoded: Index
            do { decoded = try JSONDecoder().decode(Index.self, from: data) } catch {
                throw EngineError.notAModelFolder(path: folder.path, reason: "model_index.json is not valid JSON (\(error))")
            }
            guard let name = decoded._class_name, !name.isEmpty else {
                throw EngineError.notAModelFolder(path: folder.path, reason: "model_index.json has no _class_name")
            }
            return (name, true)
        }
        let has = { (name: String) in FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path) }
        if has("unet") && has("vae") && has("text_encoder") {
            if has("image_normalizer") { return (has("prior") ? "StableUnCLIPPipeline" : "StableUnCLIPImg2ImgPipeline", false) }
            return ("StableDiffusionPipeline", false)
        }
        let missing = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"].filter { !has($0) }
        throw EngineError.notAModelFolder(path: folder.path, reason: "no model_index.json, and no \(missing.joined(separator: ", ")) component folder")
    }

    static func readDefaults(_ folder: URL, warnings: inout [String]) -> ModelDefaults {
        let url = folder.appendingPathComponent("unclip.json")
        guard let data = FileManager.default.contents(atPath: url.path) else { return ModelDefaults() }
        do { return try JSONDecoder().decode(ModelDefaults.self, from: data) } catch {
            warnings.append("ignoring \(url.path): not valid JSON (\(error))")
            return ModelDefaults()
        }
    }

    /// Variants are the middle part of `NAME.VARIANT.safetensors` files in the component folders.
    static func variants(in folders: [URL]) -> Set<String> {
        var found = Set<String>()
        let fm = FileManager.default
        for folder in folders {
            for component in (try? fm.contentsOfDirectory(atPath: folder.path)) ?? [] {
                for file in (try? fm.contentsOfDirectory(atPath: folder.appendingPathComponent(component).path)) ?? [] {
                    let parts = file.split(separator: ".")
                    if parts.count >= 3, ["safetensors", "bin"].contains(parts.last!), !parts[parts.count - 2].contains("-of-") {
                        found.insert(String(parts[parts.count - 2]))
                    }
                }
            }
        }
        return found
    }

    static func checkVariant(_ variant: String, in folders: [URL]) throws {
        let found = variants(in: folders)
        guard found.contains(variant) else {
            throw EngineError.variantNotFound(variant: variant, path: folders[0].path, available: found.sorted())
        }
    }
}
