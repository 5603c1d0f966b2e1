import Foundation
import XCTest
@testable import UnCLIPPipelines
import UnCLIPImage
import UnCLIPTensor
import UnCLIPTestSupport

/// Plain Stable Diffusion text-to-image, image-to-image with strength, LMS / Karras schedulers and x0 previews
/// against diffusers' StableDiffusionPipeline and StableDiffusionImg2ImgPipeline (fixtures: notebooks-export/fixtures_sd.py).
/// Images: mean abs pixel difference ≤ 1/255, max ≤ 4/255. Latents are compared per UNet call (1e-4): these tiny
/// random models amplify float rounding over a trajectory (each step matches to ~2e-5, the final latents of a
/// 5-step DDIM run differ by up to 3e-3), so whole trajectories are judged by their images.
final class StableDiffusionTests: XCTestCase {
    func schedulerName(_ c: [String: Any]) -> String? {
        let s = c["scheduler"] as! [String: Any]
        guard s["swapped_in"] as! Bool else { return nil }
        let cls = s["cls"] as! String
        let karras = ((s["from_config_overrides"] as! [String: Any])["use_karras_sigmas"] as? Bool) == true
        switch (cls, karras) {
        case ("EulerDiscreteScheduler", true): return "euler-karras"
        case ("LMSDiscreteScheduler", true): return "lms-karras"
        default: return cls
        }
    }

    func testTextToImageImageToImageAndPreviews() throws {
        let ref = try Fixture.file("sd/sd.expected.safetensors")
        let initImage = try PNG.read(Fixture.url("sd/sd-init.png"))
        var pipes: [String: StableDiffusionPipeline] = [:]
        var counts = (t2i: 0, i2i: 0, previews: 0)
        for c in try Fixture.cases("sd/sd.expected.json") {
            let name = c["name"] as! String, folder = c["folder"] as! String, s = c["settings"] as! [String: Any]
            if pipes[folder] == nil { pipes[folder] = try StableDiffusionPipeline(model: Fixture.url("sd/\(folder)")) }
            var d = DecoderSettings(fixture: s)
            d.scheduler = schedulerName(c)
            let img2img = c["pipeline"] as! String == "StableDiffusionImg2ImgPipeline"
            if img2img { d.strength = Float(s["strength"] as! Double) }
            let hasPreviews = ref.tensors["\(name).preview_uint8"] != nil
            if hasPreviews { d.previewEvery = 1 }
            var previews: [Int: RGBImage] = [:]
            let g = try pipes[folder]!.generate(prompt: s["prompt"] as! String, settings: d, seed: UInt64(c["seed"] as! Int),
                                                initImage: img2img ? initImage : nil, preview: { previews[$0] = $1 })
            // Each guided UNet call on diffusers' own step input (DDIM/PNDM feed the sample unscaled).
            let cls = (c["scheduler"] as! [String: Any])["cls"] as! String
            if cls == "DDIMScheduler" || cls == "PNDMScheduler", d.guidanceScale > 1 {
                let base = pipes[folder]!.base
                let ctx = concat([try ref.tensor("\(name).text.uncond_prompt_embeds"), try ref.tensor("\(name).text.prompt_embeds")], axis: 0)
                let samples = try ref.tensor("\(name).step.sample"), outs = try ref.tensor("\(name).step.model_output")
                for (i, t) in (try ref.tensor("\(name).timesteps").scalars).enumerated() {
                    let x = samples.item(i)
                    let o = try base.unet.get()(sample: concat([x, x], axis: 0), timestep: t, encoderHiddenStates: ctx)
                    assertClose(guide(uncond: slice(o, axis: 0, 0..<1), cond: slice(o, axis: 0, 1..<2), scale: d.guidanceScale),
                                outs.item(i), tol: 1e-4, "\(name) step \(i) guided UNet output")
                }
            }
            assertPixelsClose(g.image.pixels, try ref.integers("\(name).image_uint8"), name)
            if img2img { counts.i2i += 1 } else { counts.t2i += 1 }
            if hasPreviews {
                let all = try ref.integers("\(name).preview_uint8"), per = 32 * 32 * 3
                XCTAssertEqual(previews.count, all.count / per, "\(name) preview count")
                for (i, p) in previews { assertPixelsClose(p.pixels, Array(all[(i * per)..<((i + 1) * per)]), "\(name) preview \(i)") }
                counts.previews += 1
            }
        }
        XCTAssertEqual(counts.t2i, 14)
        XCTAssertEqual(counts.i2i, 11)
        XCTAssertEqual(counts.previews, 4)
    }

    func testBadImageToImageInputs() throws {
        let pipe = try StableDiffusionPipeline(model: Fixture.url("sd/tiny-sd-eps"))
        var d = DecoderSettings()
        d.strength = 1.5
        let image = try PNG.read(Fixture.url("sd/sd-init.png"))
        XCTAssertThrowsError(try pipe.generate(prompt: "x", settings: d, seed: 0, initImage: image)) {
            XCTAssertTrue("\($0)".contains("strength"), "\($0)")
        }
        d.strength = 0.5
        let odd = try RGBImage(width: 30, height: 20, pixels: [UInt8](repeating: 9, count: 30 * 20 * 3))
        XCTAssertThrowsError(try pipe.generate(prompt: "x", settings: d, seed: 0, initImage: odd)) {
            XCTAssertTrue("\($0)".contains("30×20") && "\($0)".contains("multiples of 8"), "\($0)")
        }
    }
}
