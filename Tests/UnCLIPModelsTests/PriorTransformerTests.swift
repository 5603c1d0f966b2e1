import Foundation
import XCTest
@testable import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights
import UnCLIPTestSupport

/// PriorTransformer forward against diffusers 0.42.1 (fixtures: notebooks-export/fixtures_prior.py). Every
/// parameter diffusers initialises to a constant (clip_std, positional_embedding, prd_embedding, norms) is random.
final class PriorTransformerTests: XCTestCase {
    let tol: Float = 1e-4

    func check(_ name: String, cases: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try PriorTransformer(folder: ModelFolder(Fixture.url("prior/\(name)")))
        let ref = try Fixture.file("prior/\(name).expected.safetensors")
        for p in cases {
            let hidden = try ref.tensor(p + "hidden_states")
            let b = hidden.shape[0]
            let tInfo = ref.tensors[p + "timestep"]!
            let timesteps: [Float] = tInfo.dtype == .I64 ? try ref.integers(p + "timestep").map(Float.init) : try ref.tensor(p + "timestep").scalars
            var mask: [[Int]]?
            if ref.tensors[p + "attention_mask"] != nil {
                let flat = try ref.integers(p + "attention_mask")
                mask = rows(flat, width: flat.count / b)
            }
            let out = try model(hiddenStates: hidden, timesteps: timesteps, projEmbedding: try ref.tensor(p + "proj_embedding"),
                                encoderHiddenStates: try ref.tensor(p + "encoder_hidden_states"), attentionMask: mask)
            assertClose(out, try ref.tensor(p + "predicted_image_embedding"), tol: tol, "\(name) case '\(p)'", file: file, line: line)
            let post = model.postProcessLatents(try ref.tensor(p + "post_process_input"))
            assertClose(post, try ref.tensor(p + "post_process_output"), tol: 1e-5, "\(name) post_process '\(p)'", file: file, line: line)
        }
    }

    func testKarloLike() throws { try check("karlo-like", cases: ["", "float_t.", "b4.", "nomask."]) }
    func testProjectionDims() throws { try check("proj-dims", cases: ["", "float_t."]) }
    func testLayerNorms() throws { try check("layernorm", cases: ["", "float_t."]) }

    func testUnknownNormTypeIsRejected() throws {
        let dir = try temporaryCopy(of: Fixture.url("prior/layernorm"), for: self)
        try editJSONObject(at: dir.appendingPathComponent("config.json")) { $0["norm_in_type"] = "rms" }
        XCTAssertThrowsError(try PriorTransformer(folder: ModelFolder(dir))) { e in
            XCTAssertTrue("\(e)".contains("norm_in_type") && "\(e)".contains("rms"), "\(e)")
        }
    }
}
