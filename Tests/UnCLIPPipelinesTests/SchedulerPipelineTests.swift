import Foundation
import XCTest
@testable import UnCLIPPipelines
import UnCLIPTensor
import UnCLIPTestSupport

/// Every decoder scheduler end to end against StableUnCLIPPipeline with `Scheduler.from_config(..., **overrides)`
/// (fixtures: notebooks-export/fixtures_unclip_schedulers.py), plus noise augmentation at levels 0, 100, 999.
final class SchedulerPipelineTests: XCTestCase {
    /// Our name for diffusers' class + overrides.
    func alias(_ c: [String: Any]) -> String {
        let cls = c["scheduler"] as! String, o = c["overrides"] as! [String: Any]
        let karras = (o["use_karras_sigmas"] as? Bool) == true
        switch cls {
        case "DPMSolverMultistepScheduler": return karras ? "dpm++2m-karras" : "dpm++2m"
        case "EulerDiscreteScheduler": return karras ? "euler-karras" : "euler"
        case "PNDMScheduler": return "pndm"
        default: return cls   // the class name itself works too
        }
    }

    func testEverySchedulerMatchesDiffusers() throws {
        let pipe = try StableUnCLIPPipeline(model: Fixture.url("bundles/tiny-unclip"))
        let ref = try Fixture.file("bundles/tiny-unclip-schedulers.safetensors")
        var names: [String] = []
        for c in try Fixture.cases("bundles/tiny-unclip-schedulers.json") {
            let name = c["name"] as! String
            var s = DecoderSettings()
            s.steps = c["num_inference_steps"] as! Int
            s.guidanceScale = Float(c["guidance_scale"] as! Double)
            s.width = 32; s.height = 32
            s.scheduler = alias(c)
            let g = try pipe.textToImage(prompt: c["prompt"] as! String, priorSettings: PriorSettings(steps: 5, guidanceScale: 4, candidates: 1),
                                         settings: s, seed: UInt64(c["seed"] as! Int))
            assertClose(g.latents, try ref.tensor("\(name).latents"), tol: 1e-4, "\(name) latents")
            assertPixelsClose(g.image.pixels, try ref.integers("\(name).image_uint8"), name)
            names.append(name)
        }
        XCTAssertEqual(Set(names), ["ddim_eta0", "pndm", "ddpm", "euler", "euler_karras", "euler_ancestral", "dpmpp_2m",
                                    "dpmpp_2m_karras", "lms", "euler_noguidance"])
    }

    func testNoiseAugmentationLevels() throws {
        let pipe = try StableUnCLIPPipeline(model: Fixture.url("bundles/tiny-unclip"))
        let ref = try Fixture.file("bundles/tiny-unclip-schedulers.safetensors")
        for level in [0, 100, 999] {
            let out = try pipe.decoder.noiseImageEmbeddings(try ref.tensor("noise.\(level).image_embeds"), noiseLevel: level,
                                                            noise: try ref.tensor("noise.\(level).noise"))
            assertClose(out, try ref.tensor("noise.\(level).out"), tol: 1e-5, "noise level \(level)")
        }
    }
}
