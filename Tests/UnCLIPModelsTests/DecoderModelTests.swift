import Foundation
import XCTest
@testable import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights
import UnCLIPTestSupport

/// The tiny Stable unCLIP bundle's UNet and VAE against diffusers' own pipeline run
/// (fixtures: notebooks-export/fixtures_unclip_bundle.py, captured inside StableUnCLIPPipeline).
final class DecoderModelTests: XCTestCase {
    static let bundle = Fixture.url("bundles/tiny-unclip")

    func testUNetFirstGuidedStepMatchesDiffusers() throws {
        let unet = try UNet2DConditionModel(folder: ModelFolder(Self.bundle.appendingPathComponent("unet")))
        let ref = try Fixture.file("bundles/tiny-unclip.expected.safetensors")
        for c in ["t2i_s0_g10", "t2i_s42_g10_nl100", "t2i_s42_g10_h32w48", "i2i_image_s0"] {
            let t = Float(try ref.integers("\(c).timesteps")[0])
            let out = try unet(sample: try ref.tensor("\(c).unet_in.first_sample"), timestep: t,
                               encoderHiddenStates: try ref.tensor("\(c).unet_in.encoder_hidden_states"),
                               classLabels: try ref.tensor("\(c).unet_in.class_labels"))
            assertClose(out, try ref.tensor("\(c).unet_in.first_raw_output"), tol: 1e-4, "\(c) UNet output")
        }
    }

    func testVAEDecodeMatchesDiffusers() throws {
        let vae = try AutoencoderKL(folder: ModelFolder(Self.bundle.appendingPathComponent("vae")))
        let ref = try Fixture.file("bundles/tiny-unclip.expected.safetensors")
        for c in ["t2i_s0_g10", "t2i_s42_g10_h32w48"] {
            let out = try vae.decode(try ref.tensor("\(c).vae.input"))
            assertClose(out, try ref.tensor("\(c).vae.output"), tol: 1e-4, "\(c) VAE decode")
        }
    }
}
