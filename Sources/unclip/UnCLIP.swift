import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPStore

@main
struct UnCLIPCommand: ParsableCommand {
    static let version = "0.7.0"

    static let configuration = CommandConfiguration(
        commandName: "unclip",
        abstract: "Text-to-image the way DALL·E 2 does it (CLIP → diffusion prior → latent decoder), on the CPU.",
        discussion: """
        Without --model, the small shipped model (weights/shapes) is used; weights/README.md says how to get the \
        published Stable unCLIP 2.1 + Karlo weights. Models are diffusers/transformers folders (config.json + \
        safetensors, fp32 or fp16); plain Stable Diffusion folders work with generate and edit.

        Every image is recorded in a store (--store or $UNCLIP_STORE; default ~/.local/share/unclip): list, \
        show, search, vary, interpolate, nudge, regenerate, rm and export work on stored generations by id. \
        AUTOMATIC1111's option names work too (--cfg-scale, --sampler, --negative-prompt, --batch-count).

        Examples:
          unclip generate "a small red circle on the left" --seed 1 --count 4
          unclip search "red circle"
          unclip vary 3 --count 2
          unclip interpolate 3 5 --frames 6
          unclip nudge 3 --toward "a blue circle" --amount 0.5
          unclip edit --image sketch.png "a green triangle" --strength 0.8

        """,
        version: version,
        subcommands: [Generate.self, Vary.self, Edit.self, Interpolate.self, Nudge.self, Search.self, List.self, Show.self,
                      Regenerate.self, Remove.self, Export.self, Check.self, Convert.self, Serve.self, Worker.self, StoreCommand.self,
                      Prior.self, Eval.self, Tokenize.self, EncodeText.self,
                      EmbedImage.self, RunModel.self]
    )

    /// Parses and runs like ArgumentParser's own `main`, but words library errors with this CLI's flags and
    /// refuses help on an unknown command (ArgumentParser prints the root help and exits 0 for it).
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "help", args.count > 1 {
            let names = configuration.subcommands.map { $0._commandName }
            if !names.contains(args[1]) {
                warn("error: no command '\(args[1])'; commands: \(names.joined(separator: ", "))")
                Foundation.exit(64)
            }
        }
        do {
            var command = try parseAsRoot(args)
            try command.run()
        } catch let e as EngineError {
            warn("error: \(CLIWording.describe(e))")
            Foundation.exit(e == .cancelled ? 130 : 1)
        } catch let e as StoreError {
            warn("error: \(CLIWording.describe(e))")
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}

/// The CLI's wording of library errors: a parameter is named by the flag that sets it.
enum CLIWording {
    static let flags: [String: String] = [
        "steps": "--steps", "guidance_scale": "--guidance", "noise_level": "--noise-level", "negative_prompt": "--negative",
        "width": "--width", "height": "--height", "scheduler": "--scheduler", "preview_every": "--preview-every",
        "prior_steps": "--prior-steps", "prior_guidance_scale": "--prior-guidance", "prior_candidates": "--prior-candidates",
        "seed": "--seed", "count": "--count", "strength": "--strength", "amount": "--amount", "frames": "--frames",
        "from": "--from", "toward": "--toward", "limit": "--limit", "prompt": "the prompt", "embedding": "the embedding",
        "mask": "--mask",
    ]

    static func describe(_ e: StoreError) -> String {
        if case .noEmbedding = e { return "\(e); make variations of its picture with `unclip vary --image PNG`" }
        return e.description
    }

    static func describe(_ e: EngineError) -> String {
        if case let .invalidParameter(name, reason) = e, let flag = flags[name] { return "\(flag): \(reason)" }
        return e.description
    }
}

/// Where the repository's own files are, for defaults that work under `swift run` from a checkout.
enum PackageLocation {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var weights: URL { root.appendingPathComponent("weights") }
}

/// Errors the CLI reports itself (bad arguments that ArgumentParser cannot see).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
