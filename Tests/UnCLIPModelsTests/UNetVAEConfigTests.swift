import Foundation
import XCTest
@testable import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights
import UnCLIPTestSupport

/// UNet and VAE configurations against diffusers (fixtures: notebooks-export/fixtures_unet_vae.py), every
/// parameter random. Tolerance 1e-4 absolute per component.
final class UNetVAEConfigTests: XCTestCase {
    func checkUNet(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let unet = try UNet2DConditionModel(folder: ModelFolder(Fixture.url("unet/\(name)")))
        let ref = try Fixture.file("unet/\(name).expected.safetensors")
        for p in ["t999.", "t1p5.", "t0."] {
            let tInfo = ref.tensors[p + "timestep"]!
            let t: Float = tInfo.dtype == .I64 ? Float(try ref.integers(p + "timestep")[0]) : try ref.tensor(p + "timestep").scalars[0]
            let labels = ref.tensors[p + "class_labels"] == nil ? nil : try ref.tensor(p + "class_labels")
            let out = try unet(sample: try ref.tensor(p + "sample"), timestep: t,
                               encoderHiddenStates: try ref.tensor(p + "encoder_hidden_states"), classLabels: labels)
            assertClose(out, try ref.tensor(p + "out"), tol: 1e-4, "\(name) \(p)", file: file, line: line)
        }
    }

    func testLinearProjectionPerBlockHeadsClassProjectionUpcast() throws { try checkUNet("linear-perblock") }
    func testConvProjectionIntHeadsNoClassEmbedding() throws { try checkUNet("conv-int") }
    func testTimestepClassEmbeddingTwoTransformerLayersOddLatent() throws { try checkUNet("numheads-timestep") }
    func testOnlyCrossAttentionCenterInputFreqShift() throws { try checkUNet("only-cross") }
    func testOnlyCrossAttentionPerBlock() throws { try checkUNet("only-cross-list") }

    func checkVAE(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let vae = try AutoencoderKL(folder: ModelFolder(Fixture.url("vae/\(name)")))
        let ref = try Fixture.file("vae/\(name).expected.safetensors")
        for p in ["", "wide."] {
            assertClose(try vae.decode(try ref.tensor(p + "latents")), try ref.tensor(p + "decoded"), tol: 1e-4, "\(name) \(p)decode", file: file, line: line)
            assertClose(try vae.encodeMean(try ref.tensor(p + "image")), try ref.tensor(p + "latent_mean"), tol: 1e-4, "\(name) \(p)encode", file: file, line: line)
        }
    }

    func testVAEEncodeDecode() throws { try checkVAE("sd-like") }
    func testVAELegacyAttentionNames() throws { try checkVAE("legacy-names") }

    func testUnsupportedUNetConfigIsRefused() throws {
        for (key, value) in [("resnet_time_scale_shift", "scale_shift"), ("class_embed_type", "simple_projection"),
                             ("down_block_types", "SimpleCrossAttnDownBlock2D")] {
            let dir = try temporaryCopy(of: Fixture.url("unet/conv-int"), for: self)  // one unsupported key at a time
            try editJSONObject(at: dir.appendingPathComponent("config.json")) {
                $0[key] = key == "down_block_types" ? [value, "CrossAttnDownBlock2D", "DownBlock2D"] : value
            }
            XCTAssertThrowsError(try UNet2DConditionModel(folder: ModelFolder(dir))) { e in
                XCTAssertTrue("\(e)".contains(key) && "\(e)".contains(value) && "\(e)".contains("config.json"), "\(e)")
            }
        }
    }
}
