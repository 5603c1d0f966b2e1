import ArgumentParser
import Foundation
import UnCLIPService
import UnCLIPStore

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List stored generations, newest first.")

    @Option(parsing: .unconditional, help: "How many (0 = all).") var limit = 20

    @OptionGroup var filterOptions: FilterOptions
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must be 0 (all) or more (got \(limit))") }
    }

    func run() throws {
        let store = try storeOptions.open(.read)
        let rows = try store.generations(filterOptions.filter(), limit: limit > 0 ? limit : nil)
        if storeOptions.json { return try printJSON(rows.map(GenerationSummary.init)) }
        if rows.isEmpty {
            let total = try store.count()
            return print(total == 0 ? "the store \(store.location) has no generations yet (unclip generate \"…\" makes one)"
                                    : "no generation matches (\(total) in the store)")
        }
        for g in rows {
            let parents = g.parents.map { "\($0.role) \($0.id)\($0.exists ? "" : " (removed)")" }.joined(separator: ", ")
            print(String(format: "%6ld  %@  %@  seed %@  %@%@", g.id, g.kind.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0), String(g.createdAt.prefix(19)),
                         (g.seed.map { "\($0)" } ?? "-").padding(toLength: 10, withPad: " ", startingAt: 0), quoted(g.prompt), parents.isEmpty ? "" : "  [\(parents)]"))
        }
        let total = try store.count(filterOptions.filter())
        if total > rows.count { warn("(\(rows.count) of \(total); --limit 0 lists all)") }
    }
}
