import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPEval
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPRandom
import UnCLIPTensor

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure what a model draws.",
        subcommands: [EvalShapes.self])
}

struct EvalShapes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shapes",
        abstract: "Generate for the shapes-world prompts and score each image by pixel analysis (no model involved in scoring).",
        discussion: """
        For every prompt, the checker reads background colour, object colour, shape, size and position off the
        pixels and compares the attributes the prompt states. It also decodes some stored embeddings again with
        new seeds (variations should keep colour and shape) and ranks the gallery for "a COLOUR SHAPE" queries
        by CLIP embedding (the top image should match). Example:
          unclip eval shapes --limit 30 --sheet sheet.png
        """)

    @Option(help: "Prompt file, one shapes-world caption per line. Default: prompts/shapes-eval.txt.") var prompts: String?

    @Option(help: "Use only the first N prompts.") var limit: Int?

    @Option(help: "Seed of the first prompt; prompt i uses seed + i.") var seed: UInt64 = 1000

    @Option(help: "Variations to check (taken from the first generations).") var variations = 20

    @Flag(help: "Skip the search check.") var noSearch = false

    @Option(help: "Write a contact sheet of the first 24 images with their prompts to this PNG.") var sheet: String?

    @Flag(help: "Print the report as JSON.") var json = false

    @Option(help: "Write every sample (prompt, seed, what the checker read, decoder and picture embeddings) and the CLIP text embeddings of the search queries to this JSON file, for analysis outside the tool.") var samplesJson: String?

    @Option(help: "Also edit N rendered pictures toward \"a green triangle\" at strengths 0.2 and 0.8 (image-to-image check).") var edits = 0

    @Flag(help: "Also score the VAE alone (exact renders of the prompts, encoded and decoded): the ceiling for any decoder.") var vaeCeiling = false

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var priorOptions: PriorOptions

    @Option(help: "Decoder steps (default: 20, as generate).") var steps = 20

    @Option(help: "Decoder guidance scale. Default: the model's unclip.json recommendation, else 10.") var guidance: Float?

    func run() throws {
        let file = prompts.map { URL(fileURLWithPath: $0) } ?? PackageLocation.root.appendingPathComponent("prompts/shapes-eval.txt")
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { throw CLIError("cannot read prompt file \(file.path)") }
        var list = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        if let limit { list = Array(list.prefix(limit)) }
        let model = try modelOptions.resolve()
        guard let engine = try modelOptions.engine(model) as? StableUnCLIPEngine else {
            throw CLIError("\(model.folder.path) is a \(model.className) folder; the shapes evaluation needs a Stable unCLIP model")
        }
        var eval = ShapesEvaluation(pipeline: engine.pipeline)
        eval.prior = priorOptions.parameters.settings
        eval.decoder.steps = steps
        eval.decoder.guidanceScale = guidance ?? model.defaults.guidanceScale ?? DecoderParameters.fallbackGuidance
        eval.seed = seed
        let context = RunContext(observer: TerminalObserver(), image: 0, images: 1)
        let start = DispatchTime.now().uptimeNanoseconds
        let report = try ComputeThreads.$limit.withValue(modelOptions.threads) {
            try eval.run(prompts: list, variations: variations, searchQueries: !noSearch) { try context.progress($0, $1, $2) }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let editReports = edits > 0 ? try eval.runEdit(strengths: [0.2, 0.8], count: edits) : []
        let ceiling = vaeCeiling ? try eval.vaeCeiling(prompts: list) : [:]
        if let samplesJson { try writeSamples(report, pipeline: eval.pipeline, to: URL(fileURLWithPath: samplesJson)) }
        if let sheet {
            let items = report.samples.prefix(24).map { ($0.image, $0.prompt) }
            try PNG.write(try contactSheet(Array(items)), to: URL(fileURLWithPath: sheet))
        }
        var acc: [String: Any] = [:]
        for a in ShapesWorld.attributeNames { if let v = report.accuracy[a] { acc[a] = ["correct": v.0, "stated": v.1, "percent": report.percent(v)] } }
        var vae: [String: Any] = [:]
        for a in ShapesWorld.attributeNames { if let v = ceiling[a] { vae[a] = ["correct": v.0, "stated": v.1, "percent": report.percent(v)] } }
        if json {
            try printJSONObject(["prompts": list.count, "seconds": seconds, "accuracy": acc,
                           "variations": ["kept": report.variationsKept.0, "tried": report.variationsKept.1, "pixels_differ": report.variationsDiffer,
                                          "from_picture_embedding_kept": report.variationsFromPictureKept.0],
                           "search": ["top_matches": report.searchTopMatches.0, "queries": report.searchTopMatches.1,
                                      "by_picture_embedding_top_matches": report.searchByPictureTopMatches.0,
                                      "by_picture_embedding_queries": report.searchByPictureTopMatches.1,
                                      "by_prior_embedding_top_matches": report.searchByPriorTopMatches.0,
                                      "by_prior_embedding_queries": report.searchByPriorTopMatches.1],
                           "vae_ceiling": vae,
                           "edits": editReports.map { ["strength": $0.strength, "turned": $0.turned, "kept": $0.kept, "total": $0.total] }])
        } else {
            print("shapes eval: \(list.count) prompts in \(String(format: "%.1f", seconds)) s (\(String(format: "%.2f", seconds / Double(max(list.count, 1)))) s/image)")
            for a in ShapesWorld.attributeNames {
                if let v = report.accuracy[a] { print("  " + a.padding(toLength: 11, withPad: " ", startingAt: 0) + String(format: "%6.1f%%  (%d/%d)", report.percent(v), v.0, v.1)) }
            }
            if !ceiling.isEmpty {
                print("  VAE alone (exact renders encoded and decoded): " + ShapesWorld.attributeNames.compactMap { a in
                    ceiling[a].map { String(format: "%@ %.1f%%", a, report.percent($0)) } }.joined(separator: ", "))
            }
            if report.variationsKept.1 > 0 {
                print(String(format: "  variations keep colour+shape %.1f%% (%d/%d), pixels differ in %d  [from the picture's own CLIP embedding instead: %.1f%%]",
                             report.percent(report.variationsKept), report.variationsKept.0, report.variationsKept.1, report.variationsDiffer,
                             report.percent(report.variationsFromPictureKept)))
            }
            for e in editReports {
                print(String(format: "  edit → \"a green triangle\" at strength %.1f: turned %d/%d, kept the source %d/%d",
                             e.strength, e.turned, e.total, e.kept, e.total))
            }
            if !noSearch {
                print(String(format: "  search top-1 matches %.1f%% (%d/%d queries)  [picture embeddings alone: %.1f%%, the prior's alone: %.1f%%]",
                             report.percent(report.searchTopMatches), report.searchTopMatches.0, report.searchTopMatches.1,
                             report.percent(report.searchByPictureTopMatches), report.percent(report.searchByPriorTopMatches)))
            }
        }
    }

    /// The per-sample dump behind `--samples-json`.
    func writeSamples(_ report: ShapesReport, pipeline: StableUnCLIPPipeline, to url: URL) throws {
        let samples: [[String: Any]] = report.samples.map { s in
            var e: [String: Any] = ["prompt": s.prompt, "seed": s.seed, "stated": s.stated,
                                    "read": Dictionary(uniqueKeysWithValues: ShapesWorld.attributeNames.map { ($0, s.analysis[$0]) }),
                                    "decoder_embedding": s.imageEmbeds.scalars.map(Double.init)]
            if let p = s.pictureEmbeds { e["picture_embedding"] = p.scalars.map(Double.init) }
            return e
        }
        var queries: [String: Any] = [:], queryPriors: [String: Any] = [:]
        if let prior = pipeline.prior {
            let empty = try prior.encode("")
            for (c, _) in ShapesWorld.colours { for shape in ShapesWorld.shapes {
                let q = "a \(c) \(shape)"
                let text = try prior.encode(q)
                queries[q] = text.textEmbeds.scalars.map(Double.init)
                let r = try prior.sample(text: text, unconditional: empty, settings: priorOptions.parameters.settings, generator: TorchGenerator(seed: 0))
                queryPriors[q] = r.chosen.scalars.map(Double.init)
            } }
        }
        let data = try JSONSerialization.data(withJSONObject: ["samples": samples, "queries": queries, "query_prior_embeddings": queryPriors],
                                              options: [.sortedKeys])
        try data.write(to: url, options: .atomic)
    }
}
