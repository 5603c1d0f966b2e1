import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights

/// Peak resident memory of this process in bytes (VmHWM), for benchmark reports.
func peakRSSBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
    return 0
}

struct RunModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-model",
        abstract: "Run one model component on tensors from a safetensors file (for parity checks and benchmarks).",
        discussion: """
        Inputs by kind (names in --inputs):
          prior       hidden_states, timestep, proj_embedding, encoder_hidden_states, [attention_mask] → predicted_image_embedding
          unet        sample, timestep, encoder_hidden_states, [class_labels] → sample
          vae-decode  latents (already divided by scaling_factor) → sample
          vae-encode  sample → latent_mean
        Prints load time, median seconds per run and peak RSS as JSON.
        """,
        shouldDisplay: false)

    enum Kind: String, ExpressibleByArgument, CaseIterable { case prior, unet, vaeDecode = "vae-decode", vaeEncode = "vae-encode" }

    @Option(help: "prior | unet | vae-decode | vae-encode") var kind: Kind

    @Option(help: "The component folder (config.json + safetensors).") var model: String

    @Option(help: "Inputs (.safetensors).") var inputs: String

    @Option(help: "Outputs (.safetensors).") var output: String?

    @Option(help: "Weight variant to prefer, e.g. fp16.") var variant: String?

    @Option(help: "Runs to time (median reported).") var `repeat` = 1

    func run() throws {
        let folder = try ModelFolder(URL(fileURLWithPath: model))
        let input = try SafeTensorsFile(path: inputs)
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let forward: () throws -> [(String, Tensor)]
        func timesteps() throws -> [Float] {
            guard let info = input.tensors["timestep"] else { throw CLIError("\(inputs) has no 'timestep'") }
            return info.dtype == .I64 || info.dtype == .I32 ? try input.integers("timestep").map(Float.init) : try input.tensor("timestep").scalars
        }
        switch kind {
        case .prior:
            let m = try PriorTransformer(folder: folder, variant: variant)
            let hidden = try input.tensor("hidden_states")
            var mask: [[Int]]?
            if input.tensors["attention_mask"] != nil {
                let flat = try input.integers("attention_mask")
                mask = stride(from: 0, to: flat.count, by: flat.count / hidden.shape[0]).map { Array(flat[$0..<($0 + flat.count / hidden.shape[0])]) }
            }
            let t = try timesteps(), proj = try input.tensor("proj_embedding"), ehs = try input.tensor("encoder_hidden_states")
            forward = { [("predicted_image_embedding", try m(hiddenStates: hidden, timesteps: t, projEmbedding: proj, encoderHiddenStates: ehs, attentionMask: mask))] }
        case .unet:
            let m = try UNet2DConditionModel(folder: folder, variant: variant)
            let sample = try input.tensor("sample"), t = try timesteps(), ehs = try input.tensor("encoder_hidden_states")
            let labels = input.tensors["class_labels"] == nil ? nil : try input.tensor("class_labels")
            forward = { [("sample", try m(sample: sample, timestep: t[0], encoderHiddenStates: ehs, classLabels: labels))] }
        case .vaeDecode:
            let m = try AutoencoderKL(folder: folder, variant: variant)
            let z = try input.tensor("latents")
            forward = { [("sample", try m.decode(z))] }
        case .vaeEncode:
            let m = try AutoencoderKL(folder: folder, variant: variant)
            let x = try input.tensor("sample")
            forward = { [("latent_mean", try m.encodeMean(x))] }
        }
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
        var times: [Double] = []
        var result: [(String, Tensor)] = []
        for _ in 0..<max(1, self.repeat) {
            let s = DispatchTime.now().uptimeNanoseconds
            result = try forward()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
        }
        if let output {
            try SafeTensorsWriter.write(result.map { ($0.0, .float32($0.1)) }, to: URL(fileURLWithPath: output))
        }
        struct Summary: Encodable { var kind: String, load_seconds: Double, seconds_per_run: Double, runs: Int, peak_rss_bytes: Int }
        try printJSON(Summary(kind: kind.rawValue, load_seconds: loadSeconds, seconds_per_run: times.sorted()[times.count / 2],
                              runs: times.count, peak_rss_bytes: peakRSSBytes()))
    }
}
