import Foundation
import XCTest
@testable import UnCLIPPipelines
import UnCLIPTensor
import UnCLIPTestSupport
import UnCLIPWeights

/// Single files in the original layout (notebooks-export/fixtures_single_file.py: written from the tiny SD folders
/// and proved by diffusers' from_single_file), converted and run: the prompt embeddings (1e-4) and the images
/// (mean ≤ 1/255, max ≤ 4/255) of diffusers' runs on the original folders (sd.expected, fixtures_sd.py).
final class SingleFilePipelineTests: XCTestCase {
    /// Converts `file` with the tiny folder as the template and runs case `name` of sd.expected on it.
    func assertMatchesDiffusers(file: String, folder: String, caseName: String, scheduler: String?) throws {
        let out = try makeTemporaryDirectory(for: self).appendingPathComponent("converted")
        try SingleFileCheckpoint(path: Fixture.url("single_file/\(file)").path).convert(to: out, template: Fixture.url("sd/\(folder)"))
        let ref = try Fixture.file("sd/sd.expected.safetensors")
        let c = try XCTUnwrap(try Fixture.cases("sd/sd.expected.json").first { $0["name"] as? String == caseName })
        XCTAssertEqual(c["folder"] as? String, folder)
        let s = c["settings"] as! [String: Any]
        let pipe = try StableDiffusionPipeline(model: out)
        assertClose(try pipe.base.encodePrompt(s["prompt"] as! String), try ref.tensor("\(caseName).text.prompt_embeds"), tol: 1e-4,
                    "\(file) prompt embeddings")
        var d = DecoderSettings(fixture: s)
        d.scheduler = scheduler
        let g = try pipe.generate(prompt: s["prompt"] as! String, settings: d, seed: UInt64(c["seed"] as! Int))
        assertPixelsClose(g.image.pixels, try ref.integers("\(caseName).image_uint8"), "\(file) \(caseName)")
    }

    func testSD1SafetensorsMakesDiffusersImage() throws {
        try assertMatchesDiffusers(file: "tiny-sd1.safetensors", folder: "tiny-sd-eps", caseName: "eps_pndm_s0_g75", scheduler: nil)
    }

    func testSD2SafetensorsMakesDiffusersImage() throws {
        try assertMatchesDiffusers(file: "tiny-sd2-v.safetensors", folder: "tiny-sd-v", caseName: "v_ddim_s0_g75", scheduler: "DDIMScheduler")
    }
}
