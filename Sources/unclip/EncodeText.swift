import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPTensor
import UnCLIPTokenizer
import UnCLIPWeights

struct EncodeText: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode-text",
        abstract: "Run a CLIP text encoder on prompts; write its outputs as safetensors.",
        discussion: """
        Writes last_hidden_state [B,77,D], pooler_output [B,D], text_embeds [B,P] (with a projection),
        hidden_state_<k> when --hidden-layer is given, and the input_ids. Prints timing as JSON.
        """)

    @Argument(help: "One or more prompts (encoded as one batch).") var prompts: [String]

    @Option(help: "Text encoder folder (config.json + safetensors).") var textEncoder: String

    @Option(help: "Tokenizer folder. Default: the shipped CLIP vocabulary.") var tokenizer: String?

    @Option(help: "Output .safetensors file.") var output: String?

    @Option(parsing: .unconditional, help: "Also save hidden_states[k] (0 = embeddings; -2 = penultimate layer, \"clip skip\").") var hiddenLayer: Int?

    @Flag(help: "Pass the attention mask to the encoder (the diffusers pipelines do not).") var useAttentionMask = false

    @Option(help: "Run the encoder this many times and report the median time (benchmarking).") var `repeat` = 1

    func run() throws {
        let tok = try CLIPTokenizer(directory: tokenizerFolder(tokenizer))
        let model = try CLIPTextModel(folder: ModelFolder(URL(fileURLWithPath: textEncoder)))
        let batch = prompts.map { tokenize(tok, $0, maxLength: model.config.maxPositionEmbeddings) }
        let ids = batch.map(\.ids), mask = useAttentionMask ? batch.map(\.attentionMask) : nil
        var times: [Double] = []
        var result: CLIPTextOutput?
        for _ in 0..<max(1, self.repeat) {
            let start = DispatchTime.now().uptimeNanoseconds
            result = try model(inputIds: ids, attentionMask: mask)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let out = result!
        if let output {
            var entries: [(String, SafeTensorsWriter.Payload)] = [
                ("input_ids", .int64(ids.flatMap { $0 }, shape: [ids.count, ids[0].count])),
                ("last_hidden_state", .float32(out.lastHiddenState)),
                ("pooler_output", .float32(out.poolerOutput)),
            ]
            if let e = out.textEmbeds { entries.append(("text_embeds", .float32(e))) }
            if let k = hiddenLayer {
                let index = k < 0 ? out.hiddenStates.count + k : k
                guard out.hiddenStates.indices.contains(index) else {
                    throw CLIError("--hidden-layer \(k) is outside 0..<\(out.hiddenStates.count)")
                }
                entries.append(("hidden_state_\(k)", .float32(out.hiddenStates[index])))
            }
            try SafeTensorsWriter.write(entries, to: URL(fileURLWithPath: output))
        }
        let sorted = times.sorted()
        struct Summary: Encodable { var batch: Int, seconds_per_run: Double, runs: Int, token_counts: [Int], hidden_size: Int, layers: Int }
        try printJSON(Summary(batch: prompts.count, seconds_per_run: sorted[sorted.count / 2], runs: times.count,
                              token_counts: batch.map(\.tokenCount), hidden_size: model.config.hiddenSize, layers: model.config.numHiddenLayers))
    }
}
