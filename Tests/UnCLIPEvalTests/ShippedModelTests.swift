import Foundation
import XCTest
@testable import UnCLIPEval
import UnCLIPPipelines

/// A slice of the shapes evaluation on the shipped model (weights/shapes), with its recommended settings
/// (decoder guidance 3, from weights/shapes/unclip.json): a regression in any stage (tokenizer, CLIP, prior,
/// decoder, VAE, schedulers) shows up as lost accuracy. The model does not reach issue 6's targets yet
/// (position is near chance), so these floors are regression guards set well below what it measures
/// (360 prompts: background 97%, size 95%, colour 84%) and far above chance (25%, 50%, 17%).
/// Prompts and seeds are fixed, so the run is deterministic.
final class ShippedModelTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testShapesEvalOnThirtyPrompts() throws {
        let model = Self.root.appendingPathComponent("weights/shapes")
        let pipe = try StableUnCLIPPipeline(model: model)
        let text = try String(contentsOf: Self.root.appendingPathComponent("prompts/shapes-eval.txt"), encoding: .utf8)
        let all = text.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        // Every 12th prompt: 30 prompts spread over the fully and partially specified halves.
        let prompts = stride(from: 0, to: all.count, by: 12).map { all[$0] }
        XCTAssertEqual(prompts.count, 30)
        var eval = ShapesEvaluation(pipeline: pipe)
        eval.decoder.guidanceScale = 3
        let report = try eval.run(prompts: prompts, variations: 10, searchQueries: true)
        print("shipped model, 30 prompts:", report.accuracy, "variations", report.variationsKept, "search", report.searchTopMatches)
        // This slice measured colour 20/22, size 19/21, background 22/22, shape 11/30 (shape and position are
        // near chance on it, so they get no floor).
        let floors = ["colour": 65.0, "size": 70.0, "background": 85.0]
        for (attribute, floor) in floors {
            let acc = report.accuracy[attribute] ?? (0, 0)
            XCTAssertGreaterThan(acc.1, 0, attribute)
            XCTAssertGreaterThanOrEqual(report.percent(acc), floor, "\(attribute): \(acc.0)/\(acc.1)")
        }
        XCTAssertGreaterThanOrEqual(report.percent(report.variationsKept), 50, "variations keep colour and shape")
        XCTAssertEqual(report.variationsDiffer, report.variationsKept.1, "variations must differ in pixels")
        XCTAssertGreaterThan(report.searchTopMatches.1, 0)
    }
}
