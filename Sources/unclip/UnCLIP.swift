import ArgumentParser
import Foundation

@main
struct UnCLIPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unclip",
        abstract: "Text-to-image the way DALL·E 2 does it (CLIP → diffusion prior → latent decoder), on the CPU.",
        discussion: """
        Models are diffusers/transformers folders (config.json + safetensors, fp32 or fp16).
        Examples:
          unclip tokenize "a red circle on a white background"
          unclip encode-text --text-encoder MODEL/text_encoder --tokenizer MODEL/tokenizer "a photo of a cat"
          unclip embed-image --image-encoder MODEL/image_encoder --feature-extractor MODEL/feature_extractor photo.png
        Every image a Stable unCLIP model makes is recorded in a store (--store, $UNCLIP_STORE): list, show,
        search, vary, interpolate, nudge, regenerate, rm and export work on the stored generations by id.
          unclip generate "a red lighthouse" --seed 1 && unclip search "lighthouse" && unclip vary 1
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
