import Foundation
import XCTest
@testable import UnCLIPEngine
import UnCLIPTestSupport
import UnCLIPWeights

/// Single files as models at the engine layer: converted once into a cache, refused without one, and SD 2.x files
/// that do not say what they predict tested as AUTOMATIC1111 does (fixtures: notebooks-export/fixtures_single_file.py).
final class SingleFileResolverTests: XCTestCase {
    /// A1111's statistic computed by our UNet equals the one diffusers' UNet gives on the same tiny models.
    func testProbeStatisticMatchesDiffusers() throws {
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixture.url("single_file/single_file.json"))) as! [String: Any]
        let want = doc["a1111_probe"] as! [String: Double]
        XCTAssertEqual(want.count, 2)
        for (folder, value) in want {
            let got = try PredictionTypeProbe.statistic(unetFolder: Fixture.url("sd/\(folder)/unet"))
            XCTAssertEqual(Double(got), value, accuracy: 1e-4, folder)
            // Both tiny random models sit above A1111's threshold of −1.
            XCTAssertEqual(try PredictionTypeProbe.predictionType(unetFolder: Fixture.url("sd/\(folder)/unet")), "epsilon")
        }
    }

    func testSingleFileModelIsConvertedOnceIntoTheCache() throws {
        let cache = try makeTemporaryDirectory(for: self)
        let file = Fixture.url("single_file/tiny-sd2-v.safetensors")
        let options = SingleFileOptions(cache: cache, tokenizers: [:], template: Fixture.url("sd/tiny-sd-v"))
        let first = try ModelResolver.resolve(model: file, singleFile: options)
        XCTAssertEqual(first.className, "StableDiffusionPipeline")
        XCTAssertTrue(first.folder.path.hasPrefix(cache.path), first.folder.path)
        let stamp = try FileManager.default.attributesOfItem(atPath: first.folder.appendingPathComponent("unet").path)[.modificationDate] as? Date
        let second = try ModelResolver.resolve(model: file, singleFile: options)
        XCTAssertEqual(second.folder.path, first.folder.path)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: second.folder.appendingPathComponent("unet").path)[.modificationDate] as? Date, stamp)
        // Only the finished folder is in the cache.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache.path), [first.folder.lastPathComponent])
        // Another prediction type is another folder.
        var eps = options
        eps.predictionType = "epsilon"
        XCTAssertNotEqual(try ModelResolver.resolve(model: file, singleFile: eps).folder.path, first.folder.path)
    }

    func testSingleFilesAreRefusedWithoutACacheOrByFamily() throws {
        let file = Fixture.url("single_file/tiny-sd1.safetensors")
        assertThrows(try ModelResolver.resolve(model: file), mentioning: ["single-file checkpoint", "diffusers model folder is needed", file.path])
        let cache = try makeTemporaryDirectory(for: self)
        let options = SingleFileOptions(cache: cache, tokenizers: [:])
        // Standard configs need a tokenizer; the tiny model's shapes are not the standard ones either way.
        assertThrows(try ModelResolver.resolve(model: file, singleFile: options), mentioning: ["tiny-sd1.safetensors"])
        assertThrows(try ModelResolver.resolve(model: Fixture.url("ckpt/evil_system.ckpt"), singleFile: options), mentioning: ["posix.system"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache.path), [])
    }

    /// What the probe rewrites when a file turns out to predict noise: SD 2.1-base's settings.
    func testEpsilonConfigsAreThe512BaseModels() throws {
        let dir = try makeTemporaryDirectory(for: self)
        try SingleFileConfigs.writeConfigs(family: .sd2, predictionType: "epsilon", into: dir)
        func object(_ name: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name))) as! [String: Any]
        }
        XCTAssertEqual(try object("scheduler/scheduler_config.json")["prediction_type"] as? String, "epsilon")
        XCTAssertEqual(try object("unet/config.json")["upcast_attention"] as? Bool, false)
        XCTAssertEqual(try object("unet/config.json")["sample_size"] as? Int, 64)
        XCTAssertEqual(try object("vae/config.json")["sample_size"] as? Int, 512)
    }
}
