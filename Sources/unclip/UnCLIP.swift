import ArgumentParser
import Foundation

@main
struct UnCLIPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unclip",
        abstract: "Text-to-image the way DALL·E 2 does it (CLIP → diffusion prior → latent decoder), on the CPU.",
        discussion: """
        Without --model, the small shipped model (weights/shapes) is used; weights/README.md says how to get the \
        published Stable unCLIP 2.1 + Karlo weights. Models are diffusers/transformers folders (config.json + \
        safetensors, fp32 or fp16); plain Stable Diffusion folders work with generate and edit.

        Every image a Stable unCLIP model makes is recorded in a store (--store or $UNCLIP_STORE; default \
        ~/.local/share/unclip): list, show, search, vary, interpolate, nudge, regenerate, rm and export work on \
        stored generations by id.

        Examples:
          unclip generate "a small red circle on the left" --seed 1 --count 4
          unclip search "red circle"
          unclip vary 3 --count 2
          unclip interpolate 3 5 --frames 6
          unclip nudge 3 --toward "a blue circle" --amount 0.5
          unclip edit --image sketch.png "a green triangle" --strength 0.8

        """,
        subcommands: [Generate.self, Vary.self, Edit.self, Interpolate.self, Nudge.self, Search.self, List.self, Show.self,
                      Regenerate.self, Remove.self, Export.self, Check.self, Prior.self, Eval.self, Tokenize.self, EncodeText.self, EmbedImage.self, RunModel.self]
    )
}

/// Where the repository's own files are, for defaults that work under `swift run` from a checkout.
enum PackageLocation {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var weights: URL { root.appendingPathComponent("weights") }
}

/// Prints a JSON object on stdout with stable key order.
func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

/// A message on stderr (warnings, progress), keeping stdout for results.
func warn(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Errors the CLI reports itself (bad arguments that ArgumentParser cannot see).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
