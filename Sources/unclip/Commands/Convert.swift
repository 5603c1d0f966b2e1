import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPWeights

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a single-file checkpoint (A1111 / ComfyUI .safetensors or .ckpt, SD 1.x or 2.x) to a diffusers folder.",
        discussion: """
        .ckpt files are read without running anything in them (only tensor state dicts are accepted). Configs come \
        from --config (a diffusers folder of the same architecture) or, without it, the standard SD 1.x / 2.x \
        configs with the tokenizers shipped in weights/ (an SD 2.x file that does not say whether it predicts v or noise \
        is tested as AUTOMATIC1111 does). `--model FILE` converts on first use by itself (into \
        $XDG_CACHE_HOME/unclip/converted); this command writes the folder where you want it.

        Example:
          unclip convert v1-5-pruned-emaonly.safetensors --to models/sd15
        """)

    @Argument(help: "The single-file checkpoint (.safetensors, .ckpt, .pt).") var file: String

    @Option(help: "The diffusers folder to write (must not exist).") var to: String

    @Option(help: "A diffusers folder of the same architecture whose configs, tokenizer and scheduler to use (as diffusers' from_single_file(config=)). Default: the standard configs of the detected family.") var config: String?

    @Option(help: "The prediction type to write into the scheduler config: epsilon, v_prediction or sample. Default: the one the file implies (SD 2.x 768-v: v_prediction; others: epsilon), or --config's.") var predictionType: String?

    @Flag(help: "Use the UNet's EMA copy (model_ema.*) instead of its trained weights.") var ema = false

    func run() throws {
        let checkpoint = try SingleFileCheckpoint(path: file)
        let out = URL(fileURLWithPath: to)
        let options = ModelOptions.singleFileOptions(predictionType: predictionType, ema: ema, template: config.map { URL(fileURLWithPath: $0) })
        try ModelResolver.convert(checkpoint, to: out, options: options)
        print("\(checkpoint.family.rawValue) → \(out.path)")
    }
}
