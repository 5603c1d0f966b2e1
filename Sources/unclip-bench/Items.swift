// The benchmark items, each run in its own child process (`unclip-bench --child ITEM`): load the model
// from the folder notebooks-export/bench_peer.py prepared, time the forward pass, print one JSON line.
import CBLAS
import Foundation
import UnCLIPModels
import UnCLIPPipelines
import UnCLIPRandom
import UnCLIPSchedulers
import UnCLIPTensor
import UnCLIPWeights

/// Every item, in run order (`sgemm` first: the other items' share of peak refers to it).
let allItems = ["sgemm", "clip-vitl", "clip-h", "prior-step", "prior-25", "unet-512", "unet-768",
                "vae-512", "vae-768", "pipeline-512", "pipeline-768"]

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// One item's entry of DIR/<mode>/manifest.json (written by bench_peer.py prepare).
struct ManifestItem {
    let flops: Double
    let inputs: String?
    let folders: [String: String]
    let size: Int?
    let steps: Int?
    let priorSteps: Int?
    let decoderSteps: Int?
}

/// Reads the manifest; a clear error tells how to create a missing one or item.
func loadManifest(base: URL, quick: Bool) throws -> [String: ManifestItem] {
    let path = base.appendingPathComponent("manifest.json").path
    guard let data = FileManager.default.contents(atPath: path) else {
        throw BenchError("\(path) not found: run `venv/bin/python notebooks-export/bench_peer.py prepare\(quick ? " --quick" : "")` first")
    }
    guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
          let items = root["items"] as? [String: [String: Any]] else {
        throw BenchError("\(path): expected an object with an 'items' object")
    }
    var out: [String: ManifestItem] = [:]
    for (name, e) in items {
        guard let flops = (e["flops"] as? NSNumber)?.doubleValue else { throw BenchError("\(path): item \(name) has no 'flops'") }
        out[name] = ManifestItem(flops: flops, inputs: e["inputs"] as? String, folders: e["folders"] as? [String: String] ?? [:],
                                 size: e["size"] as? Int, steps: e["steps"] as? Int,
                                 priorSteps: e["prior_steps"] as? Int, decoderSteps: e["decoder_steps"] as? Int)
    }
    return out
}

/// Median as Python's statistics.median: the middle value, or the mean of the two middle values.
func median(_ xs: [Double]) -> Double {
    let s = xs.sorted(), n = s.count
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}

/// Peak resident set of this process (VmHWM). Not ru_maxrss: after exec that keeps the parent's peak.
func peakRSSBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        // "VmHWM:\t  123456 kB": a tab, then padding that vanishes for 8-digit values.
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * 1024
    }
    return 0
}

/// Builds the item's model from its folder and returns the closure to time.
func makeForward(_ name: String, _ item: ManifestItem, options: LoadOptions) throws -> () throws -> Void {
    func folder(_ key: String) throws -> URL {
        guard let path = item.folders[key] else { throw BenchError("manifest item \(name) has no '\(key)' folder") }
        return URL(fileURLWithPath: path)
    }
    func inputs() throws -> SafeTensorsFile {
        guard let path = item.inputs else { throw BenchError("manifest item \(name) has no inputs file") }
        return try SafeTensorsFile(path: path)
    }
    switch name {
    case "sgemm":
        let n = 2048
        let a = randomTensor([n, n]), b = randomTensor([n, n])
        return { _ = matmul(a, b) }
    case "clip-vitl", "clip-h":
        let model = try CLIPTextModel(folder: ModelFolder(try folder(name).appendingPathComponent("text_encoder")))
        let flat = try inputs().integers("input_ids"), len = flat.count / 2
        let ids = [Array(flat[0..<len]), Array(flat[len...])]
        return { _ = try model(inputIds: ids) }
    case "prior-step", "prior-25":
        let prior = try PriorTransformer(folder: ModelFolder(try folder("prior")), precision: options.precision)
        let x = try inputs()
        let hidden = try x.tensor("hidden_states"), proj = try x.tensor("proj_embedding")
        let ehs = try x.tensor("encoder_hidden_states")
        let flat = try x.integers("attention_mask"), len = flat.count / 2
        let mask = [Array(flat[0..<len]), Array(flat[len...])]
        let t = try x.integers("timestep").map(Float.init)
        if name == "prior-step" {
            return { _ = try prior(hiddenStates: hidden, timesteps: t, projEmbedding: proj, encoderHiddenStates: ehs, attentionMask: mask) }
        }
        let config = try folder("prior_scheduler").appendingPathComponent("scheduler_config.json")
        let steps = item.steps ?? 25
        // StableUnCLIPPipeline's prior loop (PriorPipeline.sample) with one candidate and guidance 4,
        // on the given text encodings: prior call on [uncond, cond], guidance, scheduler step.
        return {
            var scheduler = try makeScheduler(configURL: config)
            try scheduler.setTimesteps(steps)
            let generator = TorchGenerator(seed: 0)
            let d = hidden.shape[1]
            var latents = Tensor(shape: [1, d], data: try generator.randn(count: d))
            if scheduler.initNoiseSigma != 1 { latents = scale(latents, scheduler.initNoiseSigma) }
            for step in scheduler.timesteps {
                let input = try scheduler.scaleModelInput(concat([latents, latents], axis: 0), timestep: step)
                let out = try prior(hiddenStates: input, timesteps: [step], projEmbedding: proj, encoderHiddenStates: ehs, attentionMask: mask)
                let guided = guide(uncond: slice(out, axis: 0, 0..<1), cond: slice(out, axis: 0, 1..<2), scale: 4)
                latents = try scheduler.step(modelOutput: guided, timestep: step, sample: latents, generator: generator).prevSample
            }
            _ = prior.postProcessLatents(latents)
        }
    case "unet-512", "unet-768":
        let unet = try UNet2DConditionModel(folder: ModelFolder(try folder("unet")), precision: options.precision)
        let x = try inputs()
        let sample = try x.tensor("sample"), ehs = try x.tensor("encoder_hidden_states"), labels = try x.tensor("class_labels")
        let t = Float(try x.integers("timestep")[0])
        return { _ = try unet(sample: sample, timestep: t, encoderHiddenStates: ehs, classLabels: labels) }
    case "vae-512", "vae-768":
        let vae = try AutoencoderKL(folder: ModelFolder(try folder("vae")), precision: options.precision)
        let z = try inputs().tensor("latents")
        return { _ = try vae.decode(z) }
    case "pipeline-512", "pipeline-768":
        let pipe = try StableUnCLIPPipeline(model: try folder("pipeline"), prior: nil, options: options)
        guard let size = item.size else { throw BenchError("manifest item \(name) has no 'size'") }
        let priorSettings = PriorSettings(steps: item.priorSteps ?? 2, guidanceScale: 4, candidates: 1)
        var settings = DecoderSettings()
        settings.steps = item.decoderSteps ?? 2
        settings.width = size
        settings.height = size
        return { _ = try pipe.textToImage(prompt: "a photo of an astronaut riding a horse on mars", priorSettings: priorSettings,
                                          settings: settings, seed: 0) }
    default:
        throw BenchError("unknown item \(name); known: \(allItems.joined(separator: ", "))")
    }
}

/// Child process: time one item and print its JSON line.
func runChild(_ name: String, base: URL, quick: Bool, threads: Int, runs: Int, warmup: Int, precision: String,
              lowMemory: Bool, variant: String?) throws {
    openblas_set_num_threads(Int32(threads))
    let options = LoadOptions(precision: GemmPrecision(rawValue: precision) ?? .fp32, lowMemory: lowMemory, variant: variant)
    let manifest = try loadManifest(base: base, quick: quick)
    guard let item = manifest[name] else {
        throw BenchError("item \(name) is not prepared in \(base.path): run bench_peer.py prepare\(quick ? " --quick" : "") --items \(name)")
    }
    let loadStart = DispatchTime.now().uptimeNanoseconds
    let forward = try makeForward(name, item, options: options)
    let load = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
    for _ in 0..<warmup { try forward() }
    var times: [Double] = []
    for _ in 0..<max(1, runs) {
        let s = DispatchTime.now().uptimeNanoseconds
        try forward()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
    }
    let result: [String: Any] = [
        "item": name, "side": "ours", "precision": options.precision.runnable.rawValue, "threads": threads, "mode": quick ? "quick" : "full",
        "openblas_threads": Int(openblas_get_num_threads()), "swift_workers": ComputeThreads.workers,
        "low_memory": lowMemory, "variant": variant ?? "", "load_seconds": load, "times": times,
        // sgemm reports the best run (the machine's peak); everything else the median.
        "seconds": name == "sgemm" ? times.min()! : median(times),
        "peak_rss_bytes": peakRSSBytes(),
    ]
    let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
