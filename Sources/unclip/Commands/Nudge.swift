import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPService

struct Nudge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "DALL·E 2's text diff: turn a stored generation's embedding toward a phrase and decode it.",
        discussion: """
        direction = normalize(text_embeds(--toward) − text_embeds(--from)), with the CLIP text embeddings of \
        the prior's text encoder; --from defaults to the generation's own prompt. The image embedding is \
        rotated toward the direction by --amount θ with slerp (its length kept): 0 keeps the image, DALL·E 2 \
        shows 0.25–0.5. The result is recorded with the generation as its parent.
        Example:
          unclip nudge 12 --toward "a photo of a cat in winter" --from "a photo of a cat" --amount 0.35
        """)

    @Argument(help: "The generation to nudge.") var id: String

    @Option(help: "The phrase to move toward.") var toward: String

    @Option(help: "The phrase to move away from (default: the generation's prompt).") var from: String?

    @Option(parsing: .unconditional, help: "How far to turn, θ in 0…1.") var amount: Float = 0.3

    @Option(help: "Text that steers the decoder (default: none).") var prompt = ""

    @OptionGroup var o: DecodeCommandOptions

    func validate() throws { _ = try generationID(id) }

    func run() throws {
        var request = NudgeRequest(id: try generationID(id), toward: toward)
        request.from = from
        request.amount = amount
        request.prompt = prompt
        request.decoder = o.decoder.parameters(size: o.size, previewEvery: o.output.previewEvery)
        try RequestCheck.finite("amount", amount, 0...1)
        let plan = try ImagePlan(o.seeds, o.output)
        request.seeds = plan.seedPlan
        let store = try o.store.open()
        let model = try o.model.resolve(for: try store.generation(request.id), in: store)
        try Preflight.check(request.decoder, model: model, options: o.model.loadOptions)
        try plan.run(store: store, engine: try o.model.engine(model), useCache: !o.cache.noCache, json: o.store.json) {
            try $0.nudge(request, observer: $1, delivered: $2)
        }
    }
}
