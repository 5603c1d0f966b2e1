import ArgumentParser
import Foundation
import UnCLIPStore

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove generations: their rows and their image files.",
                                                    discussion: "Generations made from a removed one keep working: each has its own stored embedding.")

    @Argument(help: "Generation ids.") var ids: [String]

    @OptionGroup var storeOptions: StoreOptions

    struct Removed: Encodable { var id: Int64; var image: String }

    func validate() throws { for id in ids { _ = try generationID(id) } }

    func run() throws {
        let store = try storeOptions.open()
        var removed: [Removed] = []
        for text in ids {
            let id = try generationID(text)
            let file = try store.remove(id)
            removed.append(Removed(id: id, image: file))
            if !storeOptions.json { print("removed \(id) (\(file))") }
        }
        if storeOptions.json { try printJSON(removed) }
    }
}
