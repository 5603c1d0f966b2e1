import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPPipelines
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

struct Prior: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run only the prior: print the chosen CLIP image embedding's summary and every candidate's CLIP score.",
        discussion: "A debugging and scripting aid. --output writes candidates, chosen embedding, scores and the text embedding as safetensors.")

    @Argument(help: "The prompt.") var prompt: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var priorOptions: PriorOptions

    @Option(name: [.customShort("s"), .long], help: "Seed (torch-compatible). Default: random, printed.") var seed: UInt64?

    @Option(name: [.customShort("o"), .long], help: "Write the embeddings to this .safetensors file.") var output: String?

    struct Summary: Encodable {
        var seed: UInt64
        var scores: [Float]
        var chosen: Int
        var dim: Int
        var norm: Float
        var head: [Float]
    }

    func run() throws {
        try RequestCheck.check(priorOptions.parameters)
        if let output { try checkWritable([URL(fileURLWithPath: output)]) }
        let (model, prior) = try modelOptions.location()
        let folder = prior ?? model
        try ModelResolver.checkFolder(folder)
        let pipe = try PriorPipeline(folder: folder, options: modelOptions.loadOptions)
        let seed = self.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        let observer = TerminalObserver()
        let context = RunContext(observer: observer, image: 0, images: 1)
        let text = try pipe.encode(prompt, onWarning: { context.warning($0) })
        Interrupts.install()
        let r = try ComputeThreads.$limit.withValue(modelOptions.threads) {
            try pipe.sample(text: text, unconditional: try pipe.encode(""), settings: priorOptions.parameters.settings,
                            generator: TorchGenerator(seed: seed)) { try context.progress("prior", $0, $1) }
        }
        let chosen = r.chosen.scalars
        if let output {
            try SafeTensorsWriter.write([("image_embeds", .float32(r.chosen)), ("candidates", .float32(r.candidates)),
                                         ("scores", .float32(Tensor(shape: [r.scores.count], data: r.scores))),
                                         ("text_embeds", .float32(text.textEmbeds))],
                                        metadata: ["prompt": prompt, "seed": "\(seed)"], to: URL(fileURLWithPath: output))
        }
        try printJSON(Summary(seed: seed, scores: r.scores, chosen: r.chosenIndex, dim: chosen.count,
                              norm: chosen.map { $0 * $0 }.reduce(0, +).squareRoot(), head: Array(chosen.prefix(4))))
    }
}
