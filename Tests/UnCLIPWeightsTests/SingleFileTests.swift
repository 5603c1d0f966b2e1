import Foundation
import XCTest
@testable import UnCLIPTensor
@testable import UnCLIPWeights
import UnCLIPTestSupport

/// Single files in the original layout (notebooks-export/fixtures_single_file.py, each proved by diffusers'
/// from_single_file to hold exactly the tiny folder's model) converted back to diffusers folders: every weight
/// must equal the folder's own (diffusers' values).
final class SingleFileTests: XCTestCase {
    func file(_ name: String) -> String { Fixture.url("single_file/\(name)").path }

    /// Converts `name` with the tiny folder `folder` as the template and compares every weight of the three
    /// converted components with the folder's; `tol` is relative to each tensor's largest magnitude.
    @discardableResult
    func convertAndCompare(_ name: String, folder: String, tol: Float = 0, ema: Bool = false,
                           file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let ckpt = try SingleFileCheckpoint(path: self.file(name))
        let out = try makeTemporaryDirectory(for: self).appendingPathComponent("converted")
        try ckpt.convert(to: out, template: Fixture.url("sd/\(folder)"), ema: ema)
        for component in ["unet", "vae", "text_encoder"] {
            let want = try ModelFolder(Fixture.url("sd/\(folder)/\(component)")).weights()
            let got = try ModelFolder(out.appendingPathComponent(component)).weights()
            XCTAssertEqual(Set(got.keys), Set(want.keys), "\(name) \(component): keys", file: file, line: line)
            for key in want.keys {
                guard got.contains(key), let info = want.files.first?.tensors[key] else { continue }
                let w = try want.tensor(key, shape: info.shape), g = try got.tensor(key, shape: info.shape)
                let scale = max(1, w.scalars.map(abs).max() ?? 0)
                XCTAssertLessThanOrEqual(maxAbsDiff(g, w), tol * scale, "\(name) \(component) \(key)", file: file, line: line)
            }
        }
        return out
    }

    func testFamiliesAreDetectedByKeys() throws {
        let sd1 = try SingleFileCheckpoint(path: file("tiny-sd1.safetensors"))
        XCTAssertEqual(sd1.family, .sd1)
        XCTAssertEqual(sd1.impliedPredictionType, "epsilon")
        let ckpt = try SingleFileCheckpoint(path: file("tiny-sd1-ema.ckpt"))
        XCTAssertEqual(ckpt.family, .sd1)
        XCTAssertEqual(ckpt.globalStep, 470000)
        let sd2 = try SingleFileCheckpoint(path: file("tiny-sd2-v.safetensors"))
        XCTAssertEqual(sd2.family, .sd2)
        XCTAssertEqual(sd2.impliedPredictionType, "v_prediction")
    }

    func testSD1SafetensorsConvertsToTheDiffusersWeights() throws {
        let out = try convertAndCompare("tiny-sd1.safetensors", folder: "tiny-sd-eps")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("tokenizer/vocab.json").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("model_index.json").path))
        // No partial folder is left beside the result.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.deletingLastPathComponent().path), ["converted"])
    }

    /// fp16 `.ckpt` with an EMA copy: the non-EMA weights (diffusers' default), to fp16 rounding.
    func testSD1CheckpointWithEMAConvertsItsNonEMAWeights() throws {
        try convertAndCompare("tiny-sd1-ema.ckpt", folder: "tiny-sd-eps", tol: 1e-3)
        // The EMA copy is different weights (the fixture offsets them), taken from model_ema.* when asked.
        let ckpt = try SingleFileCheckpoint(path: file("tiny-sd1-ema.ckpt"))
        let out = try makeTemporaryDirectory(for: self).appendingPathComponent("ema")
        try ckpt.convert(to: out, template: Fixture.url("sd/tiny-sd-eps"), ema: true)
        let emaUNet = try ModelFolder(out.appendingPathComponent("unet")).weights()
        let plain = try ModelFolder(Fixture.url("sd/tiny-sd-eps/unet")).weights()
        let w = try plain.tensor("conv_in.weight", shape: [8, 4, 3, 3]), e = try emaUNet.tensor("conv_in.weight", shape: [8, 4, 3, 3])
        XCTAssertGreaterThan(maxAbsDiff(w, e), 0.1)
        let src = try TorchCheckpoint(path: file("tiny-sd1-ema.ckpt"))
        let info = try XCTUnwrap(src.tensors["model_ema.diffusion_modelinput_blocks00weight"])
        XCTAssertEqual(e.scalars, try src.load(info).scalars)
    }

    /// SD 2.x: OpenCLIP's fused in_proj split into q/k/v, positional_embedding and ln_final renamed.
    func testSD2OpenCLIPConvertsToTheDiffusersWeights() throws {
        try convertAndCompare("tiny-sd2-v.safetensors", folder: "tiny-sd-v")
    }

    func testPredictionTypeOverrideIsWritten() throws {
        let out = try makeTemporaryDirectory(for: self).appendingPathComponent("eps")
        try SingleFileCheckpoint(path: file("tiny-sd2-v.safetensors")).convert(to: out, template: Fixture.url("sd/tiny-sd-v"), predictionType: "epsilon")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("scheduler/scheduler_config.json"))) as! [String: Any]
        XCTAssertEqual(json["prediction_type"] as? String, "epsilon")
        let bad = out.deletingLastPathComponent().appendingPathComponent("bad")
        assertThrows(try SingleFileCheckpoint(path: file("tiny-sd2-v.safetensors")).convert(to: bad, template: Fixture.url("sd/tiny-sd-v"), predictionType: "x0"),
                     mentioning: ["prediction_type 'x0'"])
        assertThrows(try SingleFileCheckpoint(path: file("tiny-sd2-v.safetensors")).convert(to: out, template: Fixture.url("sd/tiny-sd-v")),
                     mentioning: ["already exists", out.path])
    }

    /// Synthetic files: other families are refused by name, unknown keys named, non-models said to be so.
    func testOtherFamiliesAndUnknownKeysAreRefusedByName() throws {
        let dir = try makeTemporaryDirectory(for: self)
        func write(_ keys: [String: [Int]], _ name: String) throws -> String {
            let url = dir.appendingPathComponent(name)
            try SafeTensorsWriter.write(keys.sorted { $0.key < $1.key }.map { ($0.key, .float32(Tensor(zeros: $0.value))) }, to: url)
            return url.path
        }
        let unet = "model.diffusion_model.input_blocks.0.0.weight"
        let cases: [([String: [Int]], String)] = [
            ([unet: [8, 4, 3, 3], "conditioner.embedders.0.transformer.text_model.embeddings.position_ids": [1]], "Stable Diffusion XL"),
            ([unet: [8, 4, 3, 3], "embedder.model.visual.conv1.weight": [1280, 3, 1, 1], "cond_stage_model.model.transformer.resblocks.0.ln_1.weight": [2]],
             "Stable unCLIP 2.1 H (OpenCLIP ViT-H"),
            ([unet: [8, 4, 3, 3], "embedder.model.visual.conv1.weight": [1024, 3, 1, 1], "noise_augmentor.betas": [2]], "Stable unCLIP 2.1 L (CLIP ViT-L"),
            ([unet: [8, 8, 3, 3], "cond_stage_model.transformer.text_model.final_layer_norm.weight": [2]], "InstructPix2Pix"),
            ([unet: [8, 4, 3, 3], "control_model.input_hint_block.0.weight": [2]], "ControlNet"),
            ([unet: [8, 9, 3, 3], "cond_stage_model.transformer.text_model.final_layer_norm.weight": [2]], "inpainting"),
            ([unet: [8, 7, 3, 3], "cond_stage_model.transformer.text_model.final_layer_norm.weight": [2]], "x4 upscaler"),
        ]
        for (i, (keys, family)) in cases.enumerated() {
            let path = try write(keys, "f\(i).safetensors")
            let ckpt = try SingleFileCheckpoint(path: path)
            assertThrows(try ckpt.convert(to: dir.appendingPathComponent("o\(i)"), template: Fixture.url("sd/tiny-sd-eps")),
                         mentioning: [family, "cannot convert yet", path])
        }
        assertThrows(try SingleFileCheckpoint(path: try write(["encoder.conv_in.weight": [2, 3, 3, 3]], "vae.safetensors")),
                     mentioning: ["no Stable Diffusion model"])
        let odd = try write([unet: [8, 4, 3, 3], "model.diffusion_model.extra_head.weight": [2],
                             "cond_stage_model.transformer.text_model.final_layer_norm.weight": [2],
                             "first_stage_model.encoder.conv_in.weight": [2, 3, 3, 3]], "odd.safetensors")
        assertThrows(try SingleFileCheckpoint(path: odd).convert(to: dir.appendingPathComponent("odd"), template: Fixture.url("sd/tiny-sd-eps")),
                     mentioning: ["model.diffusion_model.extra_head.weight", "not part of the Stable Diffusion 1.x layout"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("odd").path))
    }

    /// The rule tables against diffusers' numbering for SD 1.5's real shape (layers_per_block 2, 4 VAE levels).
    func testRuleTablesNumberBlocksAsDiffusers() {
        let l = SingleFileLayout(family: .sd1, layersPerBlock: 2, vaeLevels: 4, textLayers: 12)
        let unet: [(String, String)] = [
            ("input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"),
            ("input_blocks.5.1.proj_in.weight", "down_blocks.1.attentions.1.proj_in.weight"),
            ("input_blocks.9.0.op.bias", "down_blocks.2.downsamplers.0.conv.bias"),
            ("input_blocks.11.0.skip_connection.weight", "down_blocks.3.resnets.1.conv_shortcut.weight"),
            ("middle_block.2.emb_layers.1.weight", "mid_block.resnets.1.time_emb_proj.weight"),
            ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
            ("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
            ("output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight", "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight"),
            ("out.2.weight", "conv_out.weight"),
        ]
        for (from, to) in unet { XCTAssertEqual(SingleFileLayout.apply(l.unetRules, to: from), to, from) }
        let vae: [(String, String)] = [
            ("decoder.up.3.block.0.conv1.weight", "decoder.up_blocks.0.resnets.0.conv1.weight"),
            ("decoder.up.1.upsample.conv.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight"),
            ("encoder.down.1.block.0.nin_shortcut.bias", "encoder.down_blocks.1.resnets.0.conv_shortcut.bias"),
            ("encoder.mid.attn_1.proj_out.weight", "encoder.mid_block.attentions.0.to_out.0.weight"),
            ("decoder.mid.block_2.norm1.bias", "decoder.mid_block.resnets.1.norm1.bias"),
        ]
        for (from, to) in vae { XCTAssertEqual(SingleFileLayout.apply(l.vaeRules, to: from), to, from) }
        XCTAssertNil(SingleFileLayout.apply(l.unetRules, to: "input_blocks.x.0.weight"))
    }
}

/// The full-size SD 1.5 / SD 2.1 layouts (keys and shapes only, fixtures_single_file.py: diffusers' own configs
/// derived from the original yaml parameters, models built from them on the meta device): the standard configs
/// real single files are converted with, and the rule tables at full size.
final class StandardLayoutTests: XCTestCase {
    struct Layout: Decodable {
        let original: [String: [Int]]
        let diffusers: [String: [String: [Int]]]
    }

    /// Shapes without data, standing in for a real file.
    final class ShapesOnly: WeightSource, @unchecked Sendable {
        let path = "shapes-only"
        let tensors: [String: TensorInfo]
        init(_ shapes: [String: [Int]]) {
            tensors = Dictionary(uniqueKeysWithValues: shapes.map { ($0.key, TensorInfo(name: $0.key, dtype: .F16, shape: $0.value, dataRange: 0..<0)) })
        }
        func load(_ info: TensorInfo) throws -> Tensor { throw WeightError.missingTensor(name: info.name, files: [path], expectedShape: info.shape) }
    }

    func json(_ value: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]), as: UTF8.self)
    }

    func check(_ family: SingleFileFamily, file: String, textLayers: Int) throws {
        let layout = try Fixture.decode(Layout.self, "single_file/\(file)")
        let source = ShapesOnly(layout.original)
        XCTAssertEqual(SingleFileFamily.detect(keys: Set(layout.original.keys), unetInputChannels: 4), family)
        XCTAssertNoThrow(try SingleFileConfigs.check(source, family: family, path: file))
        let rules = SingleFileLayout(family: family, layersPerBlock: 2, vaeLevels: 4, textLayers: textLayers)
        let mapped = try rules.map(keys: Array(layout.original.keys), path: file)
        for (component, want) in layout.diffusers {
            let weights = mapped[component] ?? []
            XCTAssertEqual(Set(weights.map(\.target)), Set(want.keys), "\(file) \(component): keys")
            XCTAssertEqual(weights.count, want.count, "\(file) \(component): each key once")
            for w in weights {
                guard let from = layout.original[w.source], let to = want[w.target] else { continue }
                let shape: [Int]
                switch w.transform {
                case .identity: shape = from
                case .squeezeConv: shape = Array(from.prefix(2))
                case let .chunk(_, parts): shape = [from[0] / parts] + from.dropFirst()
                }
                XCTAssertEqual(shape, to, "\(file) \(w.source) → \(w.target)")
            }
        }
    }

    func testSD15LayoutMapsToDiffusersKeysAndShapes() throws {
        try check(.sd1, file: "standard-sd1.json", textLayers: 12)
    }

    /// OpenCLIP's 24th layer is in the file and dropped (the text encoder has 23).
    func testSD21LayoutMapsToDiffusersKeysAndShapes() throws {
        try check(.sd2, file: "standard-sd2.json", textLayers: 23)
    }

    /// The configs written for files without a template equal those diffusers derives from the original yaml.
    func testStandardConfigsEqualDiffusersDerivedOnes() throws {
        for (family, file) in [(SingleFileFamily.sd1, "standard-sd1.json"), (.sd2, "standard-sd2.json")] {
            let root = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixture.url("single_file/\(file)"))) as! [String: Any]
            let configs = root["configs"] as! [String: [String: Any]]
            let ours: [String: [String: Any]] = ["unet": SingleFileConfigs.unet(family, vPrediction: family == .sd2),
                                                 "vae": SingleFileConfigs.vae(vPrediction: family == .sd2), "text_encoder": SingleFileConfigs.textEncoder(family)]
            for (component, theirs) in configs {
                for (key, value) in theirs where !(value is NSNull) && key != "scaling_factor" {
                    let mine = ours[component]?[key]
                    // Ours leave out keys at diffusers' defaults.
                    let defaults: [String: Any] = ["transformer_layers_per_block": 1, "use_linear_projection": false]
                    if mine == nil, let d = defaults[key], try json(d) == json(value) { continue }
                    XCTAssertEqual(try json(mine ?? NSNull()), try json(value), "\(file) \(component).\(key)")
                }
            }
        }
    }
}
