import Foundation
import XCTest
@testable import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights
import UnCLIPTestSupport

/// CLIP text and vision encoders against transformers 5.23 (fixtures: notebooks-export/fixtures_clip.py).
final class CLIPTests: XCTestCase {
    let tol: Float = 1e-4

    func checkText(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try CLIPTextModel(folder: ModelFolder(Fixture.url("clip/\(name)")))
        let ref = try Fixture.file("clip/\(name).expected.safetensors")
        let ids = rows(try ref.integers("input_ids"), width: 77), mask = rows(try ref.integers("attention_mask"), width: 77)

        let out = try model(inputIds: ids)
        assertClose(out.lastHiddenState, try ref.tensor("last_hidden_state"), tol: tol, "\(name) last_hidden_state", file: file, line: line)
        assertClose(out.poolerOutput, try ref.tensor("pooler_output"), tol: tol, "\(name) pooler_output", file: file, line: line)
        let hs = try ref.tensor("hidden_states")
        XCTAssertEqual(out.hiddenStates.count, hs.shape[0], file: file, line: line)
        for (i, h) in out.hiddenStates.enumerated() {
            assertClose(h, hs.item(i), tol: tol, "\(name) hidden_states[\(i)]", file: file, line: line)
        }
        if ref.tensors["text_embeds"] != nil {
            XCTAssertNotNil(out.textEmbeds, "\(name) should have a projection", file: file, line: line)
            if let e = out.textEmbeds { assertClose(e, try ref.tensor("text_embeds"), tol: tol, "\(name) text_embeds", file: file, line: line) }
        } else {
            XCTAssertNil(out.textEmbeds, file: file, line: line)
        }

        let masked = try model(inputIds: ids, attentionMask: mask)
        assertClose(masked.lastHiddenState, try ref.tensor("masked.last_hidden_state"), tol: tol, "\(name) masked last_hidden_state", file: file, line: line)
        assertClose(masked.poolerOutput, try ref.tensor("masked.pooler_output"), tol: tol, "\(name) masked pooler", file: file, line: line)
        if ref.tensors["masked.text_embeds"] != nil, let e = masked.textEmbeds {
            assertClose(e, try ref.tensor("masked.text_embeds"), tol: tol, "\(name) masked text_embeds", file: file, line: line)
        }
    }

    func testTextQuickGeluArgmaxPooling() throws { try checkText("text-quickgelu-l2") }
    func testTextGeluFirstEosPooling() throws { try checkText("text-gelu-l3") }
    func testTextPlainWithoutPrefix() throws { try checkText("text-plain-l1") }
    func testTextSD2Style() throws { try checkText("text-sd2-l4") }
    func testTextFP16Variant() throws { try checkText("text-fp16-variant") }
    func testTextSharded() throws { try checkText("text-sharded") }
    func testTextIgnoresPositionIdsBuffer() throws { try checkText("text-position-ids") }

    func checkVision(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try CLIPVisionModel(folder: ModelFolder(Fixture.url("clip/\(name)")))
        let ref = try Fixture.file("clip/\(name).expected.safetensors")
        let out = try model(pixelValues: try ref.tensor("pixel_values").copy())
        assertClose(out.imageEmbeds!, try ref.tensor("image_embeds"), tol: tol, "\(name) image_embeds", file: file, line: line)
        assertClose(out.poolerOutput, try ref.tensor("pooler_output"), tol: tol, "\(name) pooler_output", file: file, line: line)
        assertClose(out.lastHiddenState, try ref.tensor("last_hidden_state"), tol: tol, "\(name) last_hidden_state", file: file, line: line)
        let hs = try ref.tensor("hidden_states")
        for (i, h) in out.hiddenStates.enumerated() {
            assertClose(h, hs.item(i), tol: tol, "\(name) hidden_states[\(i)]", file: file, line: line)
        }
    }

    func testVisionQuickGelu() throws { try checkVision("vision-a") }
    func testVisionGeluOddPatches() throws { try checkVision("vision-b") }

    // MARK: errors

    func testUnknownActivationIsAClearError() throws {
        let dir = try temporaryCopy(of: Fixture.url("clip/text-plain-l1"), for: self)
        try editJSONObject(at: dir.appendingPathComponent("config.json")) { $0["hidden_act"] = "swiglu_9000" }
        XCTAssertThrowsError(try CLIPTextModel(folder: ModelFolder(dir))) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("swiglu_9000") && m.contains("config.json") && m.contains("quick_gelu"), m)
        }
    }

    func testWrongShapeNamesBothShapes() throws {
        let dir = try temporaryCopy(of: Fixture.url("clip/text-plain-l1"), for: self)
        try editJSONObject(at: dir.appendingPathComponent("config.json")) { $0["intermediate_size"] = 48 }
        XCTAssertThrowsError(try CLIPTextModel(folder: ModelFolder(dir))) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("fc1.weight") && m.contains("[40, 16]") && m.contains("[48, 16]"), m)
        }
    }

    func testMissingWeightNamesTensorAndFile() throws {
        let dir = try temporaryCopy(of: Fixture.url("clip/vision-a"), for: self)
        // Rewrite the weights without one tensor.
        let src = try SafeTensorsFile(path: dir.appendingPathComponent("model.safetensors").path)
        let keep = src.tensors.keys.filter { $0 != "vision_model.post_layernorm.bias" }.sorted()
        let entries = try keep.map { ($0, SafeTensorsWriter.Payload.float32(try src.tensor($0).copy())) }
        try SafeTensorsWriter.write(entries, to: dir.appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try CLIPVisionModel(folder: ModelFolder(dir))) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("vision_model.post_layernorm.bias") && m.contains("model.safetensors") && m.contains("[32]"), m)
        }
    }

    func testOutOfVocabularyIdIsRejected() throws {
        let model = try CLIPTextModel(folder: ModelFolder(Fixture.url("clip/text-plain-l1")))
        XCTAssertThrowsError(try model(inputIds: [[49406, 60000, 49407]]))
        XCTAssertThrowsError(try model(inputIds: [Array(repeating: 1, count: 78)]))
    }
}
