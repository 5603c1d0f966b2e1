import Foundation
import XCTest
@testable import UnCLIPPipelines
import UnCLIPImage
import UnCLIPModels
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights
import UnCLIPTestSupport

/// Whole images against diffusers' StableUnCLIPPipeline / StableUnCLIPImg2ImgPipeline on the tiny bundle
/// (same seed, one prior candidate): mean abs pixel difference ≤ 1/255 and max ≤ 4/255.
final class StableUnCLIPPipelineTests: XCTestCase {
    static let bundle = Fixture.url("bundles/tiny-unclip")

    func testTextToImageMatchesDiffusers() throws {
        try checkTextToImage(try StableUnCLIPPipeline(model: Self.bundle))
    }

    /// --low-memory: nothing is loaded until a stage needs it, every model is gone after each image, and the
    /// images are diffusers' all the same.
    func testLowMemoryLoadsPerStageAndMatchesDiffusers() throws {
        let pipe = try StableUnCLIPPipeline(model: Self.bundle, prior: nil, options: LoadOptions(lowMemory: true))
        let prior = try XCTUnwrap(pipe.prior)
        func loaded() -> [Bool] {
            [prior.textEncoder.isLoaded, prior.prior.isLoaded, pipe.decoder.base.textEncoder.isLoaded,
             pipe.decoder.base.unet.isLoaded, pipe.decoder.base.vae.isLoaded]
        }
        XCTAssertEqual(loaded(), [false, false, false, false, false])
        try checkTextToImage(pipe) { XCTAssertEqual(loaded(), [false, false, false, false, false], "after an image") }
        // Resident (the default) loads everything up front.
        let resident = try StableUnCLIPPipeline(model: Self.bundle, prior: nil, options: LoadOptions())
        XCTAssertTrue(resident.decoder.base.unet.isLoaded && resident.prior!.prior.isLoaded)
    }

    func checkTextToImage(_ pipe: StableUnCLIPPipeline, after: () -> Void = {}) throws {
        let ref = try Fixture.file("bundles/tiny-unclip.expected.safetensors")
        var checked = 0
        for c in try Fixture.cases("bundles/tiny-unclip.expected.json") where c["pipeline"] as? String == "StableUnCLIPPipeline" {
            let name = c["name"] as! String, s = c["settings"] as! [String: Any]
            guard s["num_images_per_prompt"] as! Int == 1 else { continue }
            let prior = PriorSettings(steps: s["prior_num_inference_steps"] as! Int,
                                      guidanceScale: Float(s["prior_guidance_scale"] as! Double), candidates: 1)
            let g = try pipe.textToImage(prompt: s["prompt"] as! String, priorSettings: prior, settings: DecoderSettings(fixture: s),
                                         seed: UInt64(c["seed"] as! Int))
            assertClose(g.latents, try ref.tensor("\(name).latents_final"), tol: 1e-4, "\(name) final latents")
            assertPixelsClose(g.image.pixels, try ref.integers("\(name).image_uint8"), name)
            after()
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 8)
    }

    func testNoiseAugmentationMatchesDiffusers() throws {
        let pipe = try StableUnCLIPPipeline(model: Self.bundle)
        let ref = try Fixture.file("bundles/tiny-unclip.expected.safetensors")
        for name in ["t2i_s0_g10", "t2i_s0_g10_nl100", "i2i_embeds_s1_nl100"] {
            let level = try ref.integers("\(name).noise_image_embeddings.noise_level")[0]
            let out = try pipe.decoder.noiseImageEmbeddings(try ref.tensor("\(name).noise_image_embeddings.image_embeds"),
                                                            noiseLevel: level, noise: try ref.tensor("\(name).noise_image_embeddings.noise"))
            assertClose(out, try ref.tensor("\(name).noise_image_embeddings.out"), tol: 1e-5, "\(name) noised embeddings (level \(level))")
        }
    }

    func testVariationsMatchDiffusers() throws {
        let pipe = try StableUnCLIPPipeline(model: Self.bundle)
        let ref = try Fixture.file("bundles/tiny-unclip.expected.safetensors")
        var checked = 0
        for c in try Fixture.cases("bundles/tiny-unclip.expected.json") where c["pipeline"] as? String == "StableUnCLIPImg2ImgPipeline" {
            let name = c["name"] as! String, s = c["settings"] as! [String: Any]
            guard s["num_images_per_prompt"] as! Int == 1 else { continue }
            let embeds: Tensor
            var meanTol = 1.0
            if let source = s["image_embeds"] as? String {
                embeds = try ref.tensor(source)
            } else {
                let image = try PNG.read(Fixture.url("bundles/\(s["image"] as! String)"))
                embeds = try pipe.embed(image: image)
                assertClose(embeds, try ref.tensor("\(name).image_encoder.image_embeds"), tol: 1e-4, "\(name) image embedding")
                meanTol = 2
            }
            let g = try pipe.variation(imageEmbeds: embeds, prompt: (s["prompt"] as? String) ?? "", settings: DecoderSettings(fixture: s),
                                       seed: UInt64(c["seed"] as! Int))
            assertPixelsClose(g.image.pixels, try ref.integers("\(name).image_uint8"), name, meanTol: meanTol)
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 4)
    }

    func testBadSettingsAreRejected() throws {
        let pipe = try StableUnCLIPPipeline(model: Self.bundle)
        var s = DecoderSettings()
        s.width = 30
        XCTAssertThrowsError(try pipe.textToImage(prompt: "x", priorSettings: PriorSettings(), settings: s, seed: 0)) {
            XCTAssertTrue("\($0)".contains("width"), "\($0)")
        }
        s = DecoderSettings(); s.noiseLevel = 1000
        XCTAssertThrowsError(try pipe.textToImage(prompt: "x", priorSettings: PriorSettings(), settings: s, seed: 0)) {
            XCTAssertTrue("\($0)".contains("noise_level"), "\($0)")
        }
        s = DecoderSettings(); s.scheduler = "NoSuchScheduler"
        XCTAssertThrowsError(try pipe.textToImage(prompt: "x", priorSettings: PriorSettings(), settings: s, seed: 0)) {
            XCTAssertTrue("\($0)".contains("NoSuchScheduler"), "\($0)")
        }
        XCTAssertThrowsError(try pipe.variation(imageEmbeds: Tensor(zeros: [1, 7]), settings: DecoderSettings(), seed: 0)) {
            XCTAssertTrue("\($0)".contains("7"), "\($0)")
        }
    }
}

/// Layout (b): a decoder-only folder (as stable-diffusion-2-1-unclip-small is published) plus a separate prior folder.
final class FolderLayoutTests: XCTestCase {
    func testDecoderFolderWithSeparatePrior() throws {
        let fm = FileManager.default
        let dir = try makeTemporaryDirectory(for: self, prefix: "unclip-decoder")
        let src = Fixture.url("bundles/tiny-unclip")
        for c in ["text_encoder", "tokenizer", "unet", "scheduler", "vae", "image_normalizer", "image_noising_scheduler",
                  "feature_extractor", "image_encoder"] {
            try fm.copyItem(at: src.appendingPathComponent(c), to: dir.appendingPathComponent(c))
        }
        XCTAssertThrowsError(try StableUnCLIPPipeline(model: dir).textToImage(prompt: "x", priorSettings: PriorSettings(), settings: DecoderSettings(), seed: 0)) {
            XCTAssertTrue("\($0)".contains("separate Karlo-style prior folder"), "\($0)")
        }
        let pipe = try StableUnCLIPPipeline(model: dir, prior: src)
        var s = DecoderSettings()
        s.steps = 4; s.width = 32; s.height = 32
        let g = try pipe.textToImage(prompt: "a tiny robot watering a plant", priorSettings: PriorSettings(steps: 5, guidanceScale: 4, candidates: 1),
                                     settings: s, seed: 1)
        let want = try Fixture.file("bundles/tiny-unclip.expected.safetensors").integers("t2i_s1_g10.image_uint8")
        assertPixelsClose(g.image.pixels, want, "decoder folder + separate prior", meanTol: 4)
        // A prior whose embeddings do not fit the decoder is refused up front.
        XCTAssertThrowsError(try StableUnCLIPPipeline(model: dir, prior: Fixture.url("prior/karlo-tiny"))) {
            XCTAssertTrue("\($0)".contains("32") && "\($0)".contains("16"), "\($0)")
        }
    }
}
