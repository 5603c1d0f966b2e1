import ArgumentParser
import Foundation
import UnCLIPService
import UnCLIPWeights

struct Regenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a stored generation again from its settings and seed, and check the PNG is byte-identical.",
        discussion: "Compares the sha256 of the new PNG with the recorded one (exit status 1 if they differ). Puts back the store's file if it was missing.")

    @Argument(help: "The generation's id.") var id: String

    @Option(name: [.customShort("o"), .long], help: "Also write the regenerated PNG here.") var output: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    struct Report: Encodable {
        var id: Int64, identical: Bool, expected_sha256: String, sha256: String, restored: Bool, output: String?
    }

    func run() throws {
        if let output { try checkWritable([URL(fileURLWithPath: output)]) }
        let store = try storeOptions.open(.read)
        let g = try store.generation(generationID(id))
        let model = try modelOptions.resolve(for: g, in: store, clip: g.settings.clipModel)
        let service = GenerationService(store: store, engine: try modelOptions.engine(model), useCache: !cacheOptions.noCache)
        Interrupts.install()
        let r = try service.regenerate(g.id, observer: TerminalObserver())
        if let output { try AtomicFile.write(r.png, to: URL(fileURLWithPath: output)) }
        if storeOptions.json {
            try printJSON(Report(id: r.id, identical: r.matches, expected_sha256: r.expectedSHA256, sha256: r.actualSHA256,
                                 restored: r.restored, output: output))
        } else {
            print(r.matches ? "generation \(r.id): identical (sha256 \(r.actualSHA256))\(r.restored ? "; the store's missing file was put back" : "")"
                            : "generation \(r.id): DIFFERENT (recorded sha256 \(r.expectedSHA256), now \(r.actualSHA256))")
        }
        if !r.matches { throw ExitCode(1) }
    }
}
