import ArgumentParser
import Foundation
import UnCLIPStore

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the store: image files without rows, rows without image files, leftovers of interrupted runs.",
        discussion: "Exit status 1 when something is wrong. --clean removes leftovers (never rows); --verify also re-hashes every image.")

    @Flag(help: "Remove leftover files (orphan images, stale temporary files).") var clean = false

    @Flag(help: "Re-hash every image and compare with the recorded sha256.") var verify = false

    @OptionGroup var storeOptions: StoreOptions

    struct Report: Encodable {
        var generations: Int
        var schema_version: Int
        var clean: Bool
        var stale_temporary_files: [String]
        var orphan_files: [String]
        var missing_images: [Int64]
        var changed_images: [Int64]
    }

    func run() throws {
        let store = try storeOptions.open(clean ? .readWrite : .read)
        let r = try store.check(verify: verify, clean: clean)
        let count = try store.count()
        if storeOptions.json {
            try printJSON(Report(generations: count, schema_version: try store.storedSchemaVersion(), clean: r.isClean,
                                 stale_temporary_files: r.staleTemporaryFiles, orphan_files: r.orphanFiles,
                                 missing_images: r.missingImages, changed_images: r.changedImages))
        } else {
            print("\(store.location): \(count) generations, schema version \(try store.storedSchemaVersion())")
            if r.isClean { print("consistent") }
            if !r.orphanFiles.isEmpty { print("image files without a generation\(clean ? " (removed)" : ""): \(r.orphanFiles.joined(separator: ", "))") }
            if !r.staleTemporaryFiles.isEmpty { print("stale temporary files\(clean ? " (removed)" : ""): \(r.staleTemporaryFiles.joined(separator: ", "))") }
            if !r.missingImages.isEmpty { print("generations whose image is missing (unclip regenerate ID puts it back): \(r.missingImages.map(String.init).joined(separator: ", "))") }
            if !r.changedImages.isEmpty { print("generations whose image changed: \(r.changedImages.map(String.init).joined(separator: ", "))") }
        }
        let leftovers = clean ? false : !(r.orphanFiles.isEmpty && r.staleTemporaryFiles.isEmpty)
        if leftovers || !r.missingImages.isEmpty || !r.changedImages.isEmpty { throw ExitCode(1) }
    }
}
