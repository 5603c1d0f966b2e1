import Foundation
import XCTest
@testable import UnCLIPEval
import UnCLIPPipelines
import UnCLIPTestSupport

/// A slice of the shapes evaluation on the shipped model (weights/shapes), with its recommended settings
/// (decoder guidance 2, from weights/shapes/unclip.json): a regression in any stage (tokenizer, CLIP, prior,
/// decoder, VAE, schedulers, store-style search) shows up as lost accuracy. Prompts and seeds are fixed, so the
/// run is deterministic on one machine; other CPUs (AVX2 vs AVX-512 kernels) round differently, hence margins.
/// This slice (every 12th prompt) measured shape 28/30, colour 21/22, position 24/25, size 20/21, background
/// 22/22, variations 15/20 and search 12/13 (text ranking with the decoder embeddings, template-fitting checker).
/// The attribute and search floors sit a little below issue 6's targets; variations (85% on all 360 prompts)
/// a little below what this slice measures.
final class ShippedModelTests: XCTestCase {
    func testShapesEvalOnThirtyPrompts() throws {
        let model = Repository.url("weights/shapes")
        let pipe = try StableUnCLIPPipeline(model: model)
        let text = try String(contentsOf: Repository.url("prompts/shapes-eval.txt"), encoding: .utf8)
        let all = text.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        // Every 12th prompt: 30 prompts spread over the fully and partially specified halves.
        let prompts = stride(from: 0, to: all.count, by: 12).map { all[$0] }
        XCTAssertEqual(prompts.count, 30)
        var eval = ShapesEvaluation(pipeline: pipe)
        eval.decoder.guidanceScale = 2
        let report = try eval.run(prompts: prompts, variations: 20, searchQueries: true)
        print("shipped model, 30 prompts:", report.accuracy, "variations", report.variationsKept, "search", report.searchTopMatches)
        let floors = ["colour": 85.0, "shape": 70.0, "position": 85.0, "size": 85.0, "background": 90.0]
        for (attribute, floor) in floors {
            let acc = report.accuracy[attribute] ?? (0, 0)
            XCTAssertGreaterThan(acc.1, 0, attribute)
            XCTAssertGreaterThanOrEqual(report.percent(acc), floor, "\(attribute): \(acc.0)/\(acc.1)")
        }
        XCTAssertGreaterThanOrEqual(report.percent(report.variationsKept), 70, "variations keep colour and shape")
        XCTAssertEqual(report.variationsDiffer, report.variationsKept.1, "variations must differ in pixels")
        XCTAssertGreaterThan(report.searchTopMatches.1, 0)
        XCTAssertGreaterThanOrEqual(report.percent(report.searchTopMatches), 80, "search top-1: \(report.searchTopMatches)")

        // Image-to-image: a light edit keeps the picture, a strong one turns it toward the prompt.
        let edits = try eval.runEdit(strengths: [0.2, 0.8], count: 6)
        print("edits:", edits.map { ($0.strength, $0.kept, $0.turned, $0.total) })
        XCTAssertGreaterThanOrEqual(edits[0].kept, 3, "strength 0.2 keeps the source")
        XCTAssertLessThanOrEqual(edits[0].turned, 1, "strength 0.2 does not turn it into the prompt")
        XCTAssertGreaterThanOrEqual(edits[1].turned, 2, "strength 0.8 turns it toward the prompt")
        XCTAssertLessThanOrEqual(edits[1].kept, 1, "strength 0.8 does not keep the source")
    }
}
