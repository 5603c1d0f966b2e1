import ArgumentParser
import Foundation
import UnCLIPStore

struct StoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Whole-store operations.",
        subcommands: [Copy.self])

    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a whole store into an empty one, between backends (SQLite file ⇄ PostgreSQL).",
            discussion: """
            Everything moves: generation ids, lineage (links to removed parents too), stars, the text-encoding and \
            prior caches, embeddings bit for bit, and images. At the end both stores are read back and their digests \
            compared; a copy that differs is reported as an error. The destination must hold no generations.
            Examples:
              unclip store copy --from ~/.local/share/unclip/store.sqlite --to postgres://unclip@db:5432/unclip
              unclip store copy --from postgres://unclip@db/unclip --to backup.sqlite
            """)

        @Option(help: "The store to read: a database file or a postgres:// URL.") var from: String
        @Option(help: "The empty store to fill: a database file (created) or a postgres:// URL.") var to: String
        @Flag(help: "Print the summary as JSON.") var json = false

        func validate() throws {
            if from == to { throw ValidationError("--from and --to name the same store") }
        }

        func run() throws {
            let source = try openStore(from, access: .read)
            let destination = try openStore(to)
            let start = Date()
            var lastReport = Date.distantPast
            let summary = try StoreCopier.copy(from: source, to: destination) { done, total in
                if Date().timeIntervalSince(lastReport) > 1 || done == total {
                    lastReport = Date()
                    FileHandle.standardError.write(Data("\rcopied \(done)/\(total) generations".utf8))
                    if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
                }
            }
            let seconds = Date().timeIntervalSince(start)
            if json {
                let o: [String: Any] = ["models": summary.models, "text_encodings": summary.textEncodings, "prior_runs": summary.priorRuns,
                                        "generations": summary.generations, "image_bytes": summary.imageBytes, "digest": summary.digest,
                                        "seconds": seconds]
                print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print("copied \(summary.generations) generations (\(summary.imageBytes) image bytes), \(summary.models) models, "
                      + "\(summary.textEncodings) text encodings, \(summary.priorRuns) prior runs from \(source.location) to "
                      + "\(destination.location) in \(String(format: "%.1f", seconds)) s; digests match (\(summary.digest.prefix(16)))")
            }
        }
    }
}
