import Foundation
import UnCLIPTensor

/// A single-file Stable Diffusion checkpoint (`.safetensors` or `.ckpt` in the original layout) and its conversion
/// to a diffusers folder. The weights come from the file, mapped by `SingleFileLayout`; the configs, tokenizer and
/// scheduler (which such a file does not hold) come from `template`, a diffusers folder of the same architecture,
/// as diffusers' `from_single_file(..., config=FOLDER)` takes them.
public final class SingleFileCheckpoint: @unchecked Sendable {
    public let path: String
    public let source: any WeightSource
    public let family: SingleFileFamily
    /// `global_step` of a `.ckpt` (safetensors files have none).
    public let globalStep: Int?

    public init(path: String) throws {
        self.path = path
        source = try openWeightFile(path)
        let keys = Set(source.tensors.keys)
        let inputChannels = source.tensors[SingleFileLayout.unetPrefix + "input_blocks.0.0.weight"].flatMap { $0.shape.count == 4 ? $0.shape[1] : nil }
        guard let family = SingleFileFamily.detect(keys: keys, unetInputChannels: inputChannels) else {
            let sample = keys.sorted().prefix(3).joined(separator: ", ")
            throw WeightError.badCheckpoint(path: path, reason: "no Stable Diffusion model in it (no model.diffusion_model.* UNet with a known text encoder; first keys: \(sample)); a VAE, LoRA or embedding file is not a model")
        }
        self.family = family
        globalStep = (source as? TorchCheckpoint)?.number("global_step").map { Int($0) }
    }

    /// The family, with the image embedder of a Stable unCLIP file (ViT-H: OpenCLIP, 1280 wide; ViT-L: OpenAI CLIP, 1024).
    public var familyName: String {
        guard family == .stableUnCLIP else { return family.rawValue }
        switch source.tensors["embedder.model.visual.conv1.weight"]?.shape.first {
        case 1280?: return "\(family.rawValue) H (OpenCLIP ViT-H image embedder)"
        case 1024?: return "\(family.rawValue) L (CLIP ViT-L image embedder)"
        default: return family.rawValue
        }
    }

    /// Throws unless this build maps the family's layout, naming the family.
    public func requireConvertible() throws {
        guard SingleFileFamily.converted.contains(family) else {
            throw WeightError.badCheckpoint(path: path, reason: "it holds a \(familyName) model, which this build cannot convert yet (it converts: \(SingleFileFamily.converted.map(\.rawValue).joined(separator: ", ")))")
        }
    }

    /// The prediction type the file's family implies, as diffusers decides it for a file without configs: SD 2.x
    /// checkpoints are v-prediction (the 768-v model) except the 512 base model, which is the one saved at
    /// global step 875000; everything else predicts noise. Files without a step (safetensors) count as 768-v.
    public var impliedPredictionType: String {
        family == .sd2 && globalStep != 875_000 ? "v_prediction" : "epsilon"
    }

    /// Writes a diffusers folder at `folder` (which must not exist): `template`'s model_index.json, scheduler,
    /// tokenizer and component configs, and the file's UNet, VAE and text encoder as fp32 safetensors.
    /// `predictionType` (nil: the template's) is written into the scheduler config; `ema` takes the UNet's EMA copy.
    /// The folder is built beside `folder` under a temporary name and renamed into place when complete.
    public func convert(to folder: URL, template: URL, predictionType: String? = nil, ema: Bool = false) throws {
        try requireConvertible()
        let fm = FileManager.default
        guard !fm.fileExists(atPath: folder.path) else { throw WeightError.cannotOpen(path: folder.path, reason: "it already exists; give a new folder") }
        try SingleFileCheckpoint.checkPredictionType(predictionType, path: template.path)
        let unetConfig = try configObject(template, "unet/config.json")
        let vaeConfig = try configObject(template, "vae/config.json")
        let textConfig = try configObject(template, "text_encoder/config.json")
        let layout = SingleFileLayout(family: family, layersPerBlock: (unetConfig["layers_per_block"] as? Int) ?? 2,
                                      vaeLevels: (vaeConfig["block_out_channels"] as? [Any])?.count ?? 4,
                                      textLayers: (textConfig["num_hidden_layers"] as? Int) ?? 12)
        let mapped = try layout.map(keys: Array(source.tensors.keys), ema: ema, path: path)

        let partial = folder.deletingLastPathComponent().appendingPathComponent(".\(folder.lastPathComponent).partial-\(getpid())")
        try? fm.removeItem(at: partial)
        do {
            try fm.createDirectory(at: partial, withIntermediateDirectories: true)
            try copyTemplate(template, to: partial)
            if let predictionType {
                let url = partial.appendingPathComponent("scheduler/scheduler_config.json")
                var scheduler = try configObject(partial, "scheduler/scheduler_config.json")
                scheduler["prediction_type"] = predictionType
                try AtomicFile.write(try JSONSerialization.data(withJSONObject: scheduler, options: [.prettyPrinted, .sortedKeys]), to: url)
            }
            for (component, file) in [("unet", "diffusion_pytorch_model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors"),
                                      ("text_encoder", "model.safetensors")] {
                // One tensor in memory at a time: a full-size UNet is gigabytes.
                let weights = mapped[component]!
                try SafeTensorsWriter.writeStreaming(names: weights.map(\.target), shapes: try weights.map(shape),
                                                     metadata: ["format": "pt", "converted_from": (path as NSString).lastPathComponent],
                                                     to: partial.appendingPathComponent("\(component)/\(file)")) { try tensor(weights[$0]) }
            }
            guard rename(partial.path, folder.path) == 0 else {
                throw WeightError.cannotOpen(path: folder.path, reason: "rename failed: \(String(cString: strerror(errno)))")
            }
        } catch {
            try? fm.removeItem(at: partial)
            throw error
        }
    }

    /// As `convert(to:template:…)` with the standard configs of the family (`SingleFileConfigs`) as the template:
    /// for published SD 1.x / 2.x models and their fine-tunes, which carry no configs. `tokenizer` is the CLIP
    /// tokenizer folder to copy; `predictionType` nil takes the one the file implies (`impliedPredictionType`).
    public func convertStandard(to folder: URL, tokenizer: URL, predictionType: String? = nil, ema: Bool = false) throws {
        try requireConvertible()
        try SingleFileCheckpoint.checkPredictionType(predictionType, path: path)
        try SingleFileConfigs.check(source, family: family, path: path)
        let template = folder.deletingLastPathComponent().appendingPathComponent(".\(folder.lastPathComponent).template-\(getpid())")
        try? FileManager.default.removeItem(at: template)
        defer { try? FileManager.default.removeItem(at: template) }
        try SingleFileConfigs.writeTemplate(family: family, predictionType: predictionType ?? impliedPredictionType, tokenizer: tokenizer, to: template)
        try convert(to: folder, template: template, ema: ema)
    }

    static func checkPredictionType(_ value: String?, path: String) throws {
        if let value, !["epsilon", "v_prediction", "sample"].contains(value) {
            throw WeightError.badConfig(path: path, reason: "unknown prediction_type '\(value)' (supported: epsilon, v_prediction, sample)")
        }
    }

    /// The shape `tensor(w)` will have, from the file's header alone.
    public func shape(_ w: MappedWeight) throws -> [Int] {
        guard let from = source.tensors[w.source]?.shape else { throw WeightError.missingTensor(name: w.source, files: [path], expectedShape: []) }
        switch w.transform {
        case .identity: return from
        case .squeezeConv: return from.count > 2 ? Array(from.prefix(2)) : from
        case let .chunk(_, parts): return from.isEmpty ? from : [from[0] / parts] + from.dropFirst()
        }
    }

    /// One mapped weight, read and reshaped as its transform says.
    public func tensor(_ w: MappedWeight) throws -> Tensor {
        guard let info = source.tensors[w.source] else { throw WeightError.missingTensor(name: w.source, files: [path], expectedShape: []) }
        let t = try source.load(info)
        switch w.transform {
        case .identity:
            return t
        case .squeezeConv:
            guard t.shape.count > 2 else { return t }
            guard t.shape.dropFirst(2).allSatisfy({ $0 == 1 }) else {
                throw WeightError.shapeMismatch(name: w.source, file: path, expected: [t.shape[0], t.shape[1], 1, 1], found: t.shape)
            }
            return t.reshaped([t.shape[0], t.shape[1]])
        case let .chunk(index, parts):
            guard let rows = t.shape.first, rows % parts == 0 else {
                throw WeightError.badCheckpoint(path: path, reason: "'\(w.source)' has shape \(t.shape), whose first axis does not split into \(parts)")
            }
            return slice(t, axis: 0, (rows / parts * index)..<(rows / parts * (index + 1)))
        }
    }

    private func configObject(_ folder: URL, _ file: String) throws -> [String: Any] {
        let url = folder.appendingPathComponent(file)
        guard let data = FileManager.default.contents(atPath: url.path) else { throw WeightError.missingFile(path: url.path, what: "template config") }
        try requireUTF8Text(data, path: url.path)
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw WeightError.badConfig(path: url.path, reason: "not a JSON object")
        }
        return object
    }

    /// Everything of the template except the weights of the three converted components.
    private func copyTemplate(_ template: URL, to dest: URL) throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: template.appendingPathComponent("model_index.json").path) else {
            throw WeightError.missingFile(path: template.appendingPathComponent("model_index.json").path, what: "template model_index.json")
        }
        for item in try fm.contentsOfDirectory(atPath: template.path) where !item.hasPrefix(".") {
            let src = template.appendingPathComponent(item), dst = dest.appendingPathComponent(item)
            guard ["unet", "vae", "text_encoder"].contains(item) else { try fm.copyItem(at: src, to: dst); continue }
            try fm.createDirectory(at: dst, withIntermediateDirectories: true)
            try fm.copyItem(at: src.appendingPathComponent("config.json"), to: dst.appendingPathComponent("config.json"))
        }
    }
}
