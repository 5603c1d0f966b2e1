import ArgumentParser
import Foundation
import UnCLIPService

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a generation out of the store: <id>.png, <id>.safetensors (image_embeds, prior candidates) and <id>.json (its record).",
        discussion: "The .safetensors file works with `unclip vary --embedding`.")

    @Argument(help: "The generation's id.") var id: String

    @Option(help: "The folder to write into (created if needed).") var to: String

    @OptionGroup var storeOptions: StoreOptions

    struct Exported: Encodable { var id: Int64; var files: [String] }

    func run() throws {
        let store = try storeOptions.open(.read)
        let files = try GenerationExport.export(generationID(id), from: store, to: URL(fileURLWithPath: to))
        if storeOptions.json { return try printJSON(Exported(id: try generationID(id), files: files.map(\.path))) }
        for f in files { print(f.path) }
    }
}
