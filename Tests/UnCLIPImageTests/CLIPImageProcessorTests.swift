import Foundation
import XCTest
import UnCLIPImage

final class CLIPImageProcessorTests: XCTestCase {
    /// pixel_values of every fixture under every config against transformers' CLIPImageProcessor.
    /// Tolerance: |ours - expected| * std <= 1/255 + 1e-6 (one uint8 level before normalization) for
    /// every value, and bit-identical for the bicubic configs (no libm involved). Deviation is printed.
    func testPixelValuesMatchTransformers() throws {
        let manifest = try ImageFixtures.manifest()
        var processors: [String: (CLIPImageProcessor, [Float], [Double])] = [:]
        for config in manifest.configs {
            XCTAssertEqual(config.processor_class, "CLIPImageProcessorPil")
            let processor = try CLIPImageProcessor(contentsOf: ImageFixtures.url(config.dir))
            processors[config.name] = (processor, try ImageFixtures.floats(config.lut), config.std)
        }
        var images: [String: RGBImage] = [:]
        var levelCache: [String: [UInt8]] = [:]
        var maxLevels = 0.0, sumLevels = 0.0, count = 0, exact = 0
        for case_ in manifest.processed {
            let (processor, lut, std) = try XCTUnwrap(processors[case_.config])
            let entry = try XCTUnwrap(manifest.images.first { $0.name == case_.image })
            if images[entry.name] == nil { images[entry.name] = try PNG.read(ImageFixtures.url(entry.file)) }
            let ours = processor.preprocess(images[entry.name]!)
            XCTAssertEqual([ours.channels, ours.height, ours.width], case_.shape, "\(case_.image)/\(case_.config)")
            guard [ours.channels, ours.height, ours.width] == case_.shape else { continue }

            let levels = try expectedLevels(case_, cache: &levelCache)
            let plane = ours.height * ours.width
            var caseMax = 0.0
            for c in 0..<3 {
                for i in 0..<plane {
                    let expected = lut[c * 256 + Int(levels[c * plane + i])]
                    let got = ours.data[c * plane + i]
                    let deviation = Double(abs(got - expected)) * std[c]  // in units of the 0...1 rescaled image
                    if got == expected { exact += 1 }
                    caseMax = max(caseMax, deviation)
                    sumLevels += deviation * 255
                    count += 1
                }
            }
            maxLevels = max(maxLevels, caseMax * 255)
            XCTAssertLessThanOrEqual(caseMax, 1.0 / 255 + 1e-6, "\(case_.image)/\(case_.config): max deviation \(caseMax * 255) levels")
            if processor.resample == .bicubic {  // pure integer/IEEE arithmetic, no libm: must be bit-exact
                XCTAssertEqual(caseMax, 0, "\(case_.image)/\(case_.config) is not bit-identical")
            }
        }
        XCTAssertEqual(manifest.processed.count, 120)
        print(String(format: "[pixel_values] %d cases, %d values: %d bit-identical, max |diff| = %.4g levels, mean = %.4g levels",
                     manifest.processed.count, count, exact, maxLevels, sumLevels / Double(max(count, 1))))
    }

    /// PIL Image.resize outputs for many sizes and all five convolution filters, bit for bit.
    func testResizeSweepMatchesPIL() throws {
        let sweep = try ImageFixtures.manifest().sweep
        let source = try RGBImage(width: sweep.width, height: sweep.height, pixels: ImageFixtures.bytes(sweep.source))
        let outputs = try ImageFixtures.bytes(sweep.outputs)
        XCTAssertEqual(sweep.cases.count, 75)
        for c in sweep.cases {
            // Exact size, no crop, no rescale/normalize: pixel_values are the resized uint8 levels.
            let json = """
            {"size": {"height": \(c.height), "width": \(c.width)}, "resample": \(c.resample),
             "do_center_crop": false, "do_rescale": false, "do_normalize": false}
            """
            let processor = try JSONDecoder().decode(CLIPImageProcessor.self, from: Data(json.utf8))
            let values = processor.preprocess(source)
            let plane = c.width * c.height
            var differing = 0, maxDiff: Float = 0
            for y in 0..<c.height {
                for x in 0..<c.width {
                    for ch in 0..<3 {
                        let expected = Float(outputs[c.offset + (y * c.width + x) * 3 + ch])
                        let got = values.data[ch * plane + y * c.width + x]
                        if got != expected { differing += 1; maxDiff = max(maxDiff, abs(got - expected)) }
                    }
                }
            }
            XCTAssertEqual(differing, 0, "resample \(c.resample) to \(c.width)x\(c.height): \(differing) values differ, max \(maxDiff)")
        }
    }

    func testConfigDecoding() throws {
        let openai = try CLIPImageProcessor(contentsOf: ImageFixtures.url("configs/openai_clip"))
        XCTAssertEqual(openai.size, .shortestEdge(224))
        XCTAssertEqual(openai.resample, .bicubic)
        XCTAssertEqual([openai.cropHeight, openai.cropWidth], [224, 224])
        XCTAssertEqual(openai.imageMean, [0.48145466, 0.4578275, 0.40821073])
        XCTAssertEqual(openai.imageStd, [0.26862954, 0.26130258, 0.27577711])
        XCTAssertEqual(openai.rescaleFactor, 1.0 / 255.0)
        XCTAssertTrue(openai.doResize && openai.doCenterCrop && openai.doRescale && openai.doNormalize && openai.doConvertRGB)

        // Legacy forms: int size means shortest_edge; int crop_size means square; absent keys take defaults.
        let legacy = try decode(#"{"size": 256, "crop_size": 240, "do_normalize": null}"#)
        XCTAssertEqual(legacy.size, .shortestEdge(256))
        XCTAssertEqual([legacy.cropHeight, legacy.cropWidth], [240, 240])
        XCTAssertTrue(legacy.doNormalize)
        XCTAssertEqual(try decode(#"{"size": [100, 80], "image_mean": 0.5}"#).size, .exact(height: 100, width: 80))
        XCTAssertEqual(try decode(#"{"image_mean": 0.5}"#).imageMean, [0.5])
    }

    func testOutputSizeRules() throws {
        // Expected sizes printed by transformers' get_resize_output_image_size / get_size_with_aspect_ratio.
        let shortest = try decode(#"{"size": {"shortest_edge": 224}, "do_center_crop": false}"#)
        XCTAssertEqual(dims(shortest.preprocess(try blank(1000, 750))), [224, 298])  // int(224*1000/750) = 298
        XCTAssertEqual(dims(shortest.preprocess(try blank(33, 57))), [386, 224])     // int(224*57/33) = 386
        XCTAssertEqual(dims(shortest.preprocess(try blank(224, 300))), [300, 224])
        let capped = try decode(#"{"size": {"shortest_edge": 100, "longest_edge": 150}, "do_center_crop": false}"#)
        XCTAssertEqual(dims(capped.preprocess(try blank(400, 100))), [38, 150])   // round(37.5) = 38
        XCTAssertEqual(dims(capped.preprocess(try blank(300, 101))), [50, 150])   // round(50.5) = 50 (half to even)
        XCTAssertEqual(dims(capped.preprocess(try blank(100, 300))), [150, 50])
        XCTAssertEqual(dims(capped.preprocess(try blank(120, 100))), [100, 120])
    }

    func testCenterCropPadsWithZeros() throws {
        // A 4x2 white image cropped to 4 (h) x 6 (w) without resizing: transformers pads one zero
        // row above and below (ceil((4-2)/2) = 1) and one column each side.
        let processor = try decode(#"{"do_resize": false, "crop_size": {"height": 4, "width": 6}, "do_rescale": false, "do_normalize": false}"#)
        let white = try RGBImage(width: 4, height: 2, pixels: [UInt8](repeating: 255, count: 24))
        let out = processor.preprocess(white)
        XCTAssertEqual(dims(out), [4, 6])
        let expectedPlane: [Float] = [0, 0, 0, 0, 0, 0,
                                      0, 255, 255, 255, 255, 0,
                                      0, 255, 255, 255, 255, 0,
                                      0, 0, 0, 0, 0, 0]
        XCTAssertEqual(Array(out.data[0..<24]), expectedPlane)
        XCTAssertEqual(Array(out.data[48..<72]), expectedPlane)
        // Odd margins round down at the top/left: 7 -> 4 rows starts at floor(3/2) = 1.
        let rows = try RGBImage(width: 1, height: 7, pixels: (0..<7).flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
        let crop = try decode(#"{"do_resize": false, "crop_size": {"height": 4, "width": 1}, "do_rescale": false, "do_normalize": false}"#)
        XCTAssertEqual(Array(crop.preprocess(rows).data[0..<4]), [1, 2, 3, 4])
    }

    func testConfigErrorsAreClear() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, String)] = [
            (#"{"resample": 0}"#, "NEAREST"),
            (#"{"resample": 9}"#, "resample"),
            (#"{"size": {"max_height": 10, "max_width": 10}}"#, "size"),
            (#"{"crop_size": {"shortest_edge": 10}}"#, "crop_size"),
            (#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
            (#"{"image_std": [0.5, 0, 0.5]}"#, "image_std"),
            (#"{"do_resize": "yes"}"#, "do_resize"),
            (#"{"size": "#, "JSON"),
        ]
        for (i, (json, needle)) in cases.enumerated() {
            let url = dir.appendingPathComponent("cfg\(i).json")
            try Data(json.utf8).write(to: url)
            XCTAssertThrowsError(try CLIPImageProcessor(contentsOf: url), json) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(url.path) && text.contains(needle), "\(json) -> \(text)")
                print("[config error] \(text)")
            }
        }
        // A folder without preprocessor_config.json.
        XCTAssertThrowsError(try CLIPImageProcessor(contentsOf: dir)) { error in
            XCTAssertTrue("\(error)".contains("preprocessor_config.json"), "\(error)")
        }
    }

    /// A 1024x768 photo-sized image through the OpenAI CLIP config (timing printed; the bound is loose
    /// so debug builds pass — release is expected in the low milliseconds).
    func testPreprocessSpeed() throws {
        var pixels = [UInt8](repeating: 0, count: 1024 * 768 * 3)
        for i in pixels.indices { pixels[i] = UInt8(truncatingIfNeeded: (i &* 2_654_435_761) >> 13) }
        let image = try RGBImage(width: 1024, height: 768, pixels: pixels)
        let processor = try CLIPImageProcessor(contentsOf: ImageFixtures.url("configs/openai_clip"))
        _ = processor.preprocess(image)
        let start = Date()
        let runs = 5
        for _ in 0..<runs { _ = processor.preprocess(image) }
        let ms = Date().timeIntervalSince(start) * 1000 / Double(runs)
        print(String(format: "[speed] preprocess 1024x768 -> 3x224x224: %.2f ms", ms))
        XCTAssertLessThan(ms, 2000)
        let png = ImageFixtures.url("png/rgb_1000x750_mixed.png")
        let decodeStart = Date()
        _ = try PNG.read(png)
        print(String(format: "[speed] PNG.read 1000x750 RGB: %.2f ms", Date().timeIntervalSince(decodeStart) * 1000))
    }

    // MARK: - helpers

    private func decode(_ json: String) throws -> CLIPImageProcessor {
        try JSONDecoder().decode(CLIPImageProcessor.self, from: Data(json.utf8))
    }

    private func blank(_ width: Int, _ height: Int) throws -> RGBImage {
        try RGBImage(width: width, height: height, pixels: [UInt8](repeating: 128, count: width * height * 3))
    }

    private func dims(_ v: PixelValues) -> [Int] { [v.height, v.width] }

    /// The CHW uint8 levels transformers produced, from their lossless PNG container, verified by digest.
    private func expectedLevels(_ c: ImageFixtures.Manifest.Processed, cache: inout [String: [UInt8]]) throws -> [UInt8] {
        if let hit = cache[c.levels_png] { return hit }
        let container = try PNG.read(ImageFixtures.url(c.levels_png))  // gray PNG of shape (3*H, W)
        XCTAssertEqual([container.height, container.width], [c.shape[0] * c.shape[1], c.shape[2]])
        let levels = stride(from: 0, to: container.pixels.count, by: 3).map { container.pixels[$0] }
        XCTAssertEqual(ImageFixtures.fnv1a64(levels), c.levels_fnv1a64, "container of \(c.image)/\(c.config)")
        cache[c.levels_png] = levels
        return levels
    }
}
