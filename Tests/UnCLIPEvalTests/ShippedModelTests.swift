import Foundation
import XCTest
@testable import UnCLIPEval
import UnCLIPPipelines

/// A slice of the shapes evaluation on the shipped model (weights/shapes), with default settings: a regression
/// in any stage (tokenizer, CLIP, prior, decoder, VAE, schedulers) shows up as lost accuracy. The thresholds
/// sit a little below the model card's targets; the prompts and seeds are fixed, so the run is deterministic.
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
        let report = try ShapesEvaluation(pipeline: pipe).run(prompts: prompts, variations: 10, searchQueries: true)
        let floors = ["colour": 85.0, "shape": 70.0, "position": 80.0, "size": 80.0, "background": 85.0]
        for (attribute, floor) in floors {
            let acc = report.accuracy[attribute] ?? (0, 0)
            XCTAssertGreaterThan(acc.1, 0, attribute)
            XCTAssertGreaterThanOrEqual(report.percent(acc), floor, "\(attribute): \(acc.0)/\(acc.1)")
        }
        XCTAssertGreaterThanOrEqual(report.percent(report.variationsKept), 80, "variations keep colour and shape")
        XCTAssertEqual(report.variationsDiffer, report.variationsKept.1, "variations must differ in pixels")
        XCTAssertGreaterThanOrEqual(report.percent(report.searchTopMatches), 80, "search top-1")
    }
}
