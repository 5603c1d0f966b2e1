import Foundation
import XCTest
import UnCLIPRandom
@testable import UnCLIPSchedulers
import UnCLIPTensor
import UnCLIPWeights

/// Bad configs and misuse give errors that say what is wrong and where.
final class SchedulerErrorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-sched-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func writeConfig(_ json: String, name: String = "scheduler_config.json") throws -> URL {
        let url = dir.appendingPathComponent(name)
        try Data(json.utf8).write(to: url)
        return url
    }

    func assertError(_ body: @autoclosure () throws -> Any, contains needles: [String],
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let message = "\(error)"
            for needle in needles {
                XCTAssertTrue(message.contains(needle), "'\(message)' lacks '\(needle)'", file: file, line: line)
            }
        }
    }

    let sample = Tensor(repeating: 0.5, shape: [1, 4, 2, 2])

    func testUnknownOverrideListsSupportedSchedulers() throws {
        let url = try writeConfig(#"{"_class_name": "DDPMScheduler"}"#)
        assertError(try makeScheduler(configURL: url, override: "HeunDiscreteScheduler"),
                    contains: ["unknown scheduler 'HeunDiscreteScheduler'", "DDPMScheduler", "EulerDiscreteScheduler",
                               "DPMSolverMultistepScheduler", "LMSDiscreteScheduler", "UnCLIPScheduler"])
    }

    func testUnknownClassName() throws {
        let url = try writeConfig(#"{"_class_name": "FlowMatchEulerDiscreteScheduler"}"#)
        assertError(try makeScheduler(configURL: url),
                    contains: [url.path, "_class_name", "unknown scheduler 'FlowMatchEulerDiscreteScheduler'", "PNDMScheduler"])
    }

    func testMissingClassNameWithoutOverride() throws {
        let url = try writeConfig(#"{"beta_schedule": "linear"}"#)
        assertError(try makeScheduler(configURL: url), contains: [url.path, "_class_name"])
    }

    func testUnknownBetaScheduleNamesFileKeyAndChoices() throws {
        let url = try writeConfig(#"{"_class_name": "DDIMScheduler", "beta_schedule": "cosine"}"#)
        assertError(try makeScheduler(configURL: url),
                    contains: [url.path, "beta_schedule", "'cosine'", "linear", "scaled_linear", "squaredcos_cap_v2"])
        // sigmoid exists for DDPM only, as in diffusers.
        let ddim = try writeConfig(#"{"_class_name": "DDIMScheduler", "beta_schedule": "sigmoid"}"#, name: "ddim.json")
        assertError(try makeScheduler(configURL: ddim), contains: [ddim.path, "beta_schedule", "'sigmoid'"])
        let ddpm = try writeConfig(#"{"_class_name": "DDPMScheduler", "beta_schedule": "sigmoid"}"#, name: "ddpm.json")
        XCTAssertNoThrow(try makeScheduler(configURL: ddpm))
    }

    func testOtherBadValues() throws {
        let cases: [(String, [String])] = [
            (#"{"_class_name": "DDPMScheduler", "prediction_type": "flow"}"#, ["prediction_type", "'flow'", "v_prediction"]),
            (#"{"_class_name": "DDPMScheduler", "timestep_spacing": "uniform"}"#, ["timestep_spacing", "leading", "trailing"]),
            (#"{"_class_name": "DDPMScheduler", "variance_type": "fixed_large_log"}"#, ["variance_type fixed_large_log", "not supported"]),
            (#"{"_class_name": "DDPMScheduler", "variance_type": "huge"}"#, ["variance_type", "'huge'", "fixed_small_log"]),
            (#"{"_class_name": "UnCLIPScheduler", "beta_schedule": "linear"}"#, ["beta_schedule", "squaredcos_cap_v2"]),
            (#"{"_class_name": "DDPMScheduler", "num_train_timesteps": "many"}"#, ["num_train_timesteps"]),
            // Sizes every array of the schedule: refused before allocating (fuzz/corpus/config/num-train-timesteps-1e12).
            (#"{"_class_name": "DDPMScheduler", "num_train_timesteps": 1000000000000}"#, ["num_train_timesteps must be at most 100000"]),
            (#"{"_class_name": "DDPMScheduler", "num_train_timesteps": 10, "trained_betas": [0.1, 0.2]}"#,
             ["trained_betas has 2 values", "num_train_timesteps is 10"]),
            (#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}"#,
             ["final_sigmas_type 'zero'", "dpmsolver", "sigma_min"]),
            (#"{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 4}"#, ["solver_order"]),
            (#"{"_class_name": "DPMSolverMultistepScheduler", "use_flow_sigmas": true}"#, ["use_flow_sigmas", "not supported"]),
            (#"{"_class_name": "EulerDiscreteScheduler", "use_beta_sigmas": true}"#, ["use_beta_sigmas", "not supported"]),
            (#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true, "use_exponential_sigmas": true}"#,
             ["only one of use_karras_sigmas"]),
            (#"{"_class_name": "EulerAncestralDiscreteScheduler", "prediction_type": "sample"}"#, ["prediction_type", "'sample'"]),
            (#"{"_class_name": "DDPMScheduler", "#, ["not valid JSON"]),
        ]
        for (index, (json, needles)) in cases.enumerated() {
            let url = try writeConfig(json, name: "case\(index).json")
            assertError(try makeScheduler(configURL: url), contains: [url.path] + needles)
        }
    }

    func testMissingFile() {
        let url = dir.appendingPathComponent("absent/scheduler_config.json")
        assertError(try makeScheduler(configURL: url), contains: ["missing scheduler config", url.path])
    }

    /// diffusers writes lambda_min_clipped as a bare -Infinity; the config still loads.
    func testPythonInfinityInConfig() throws {
        let url = try writeConfig(#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "variance_type": null}"#)
        let s = try XCTUnwrap(try makeScheduler(configURL: url) as? DPMSolverMultistepScheduler)
        XCTAssertEqual(s.config.lambdaMinClipped, -.infinity)
        XCTAssertFalse(s.config.learnedVariance)
    }

    /// Overriding keeps the config values the other class knows and defaults the rest.
    func testOverrideUsesSharedKeys() throws {
        let url = try writeConfig(#"{"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction", "set_alpha_to_one": false}"#)
        let euler = try XCTUnwrap(try makeScheduler(configURL: url, override: "EulerDiscreteScheduler") as? EulerDiscreteScheduler)
        XCTAssertEqual(euler.config.betaSchedule, .scaledLinear)
        XCTAssertEqual(euler.config.predictionType, .vPrediction)
        XCTAssertEqual(euler.config.timestepSpacing, .linspace)  // Euler's own default, not DDIM's "leading"
    }

    func testStepCountErrors() throws {
        var unclip = try UnCLIPScheduler()
        assertError(try unclip.setTimesteps(1), contains: ["UnCLIPScheduler", "1 inference steps", "at least 2"])
        var ddpm = try DDPMScheduler()
        assertError(try ddpm.setTimesteps(1001), contains: ["DDPMScheduler", "1001", "num_train_timesteps"])
        assertError(try ddpm.setTimesteps(0), contains: ["DDPMScheduler", "0"])
        var pndm = try PNDMScheduler()
        assertError(try pndm.setTimesteps(3), contains: ["PNDMScheduler", "Runge-Kutta", "at least 4"])
    }

    func testStepMisuse() throws {
        let generator = TorchGenerator(seed: 0)

        var ddim = try DDIMScheduler()
        assertError(try ddim.step(modelOutput: sample, timestep: 999, sample: sample, generator: nil),
                    contains: ["DDIMScheduler", "setTimesteps"])

        var ddpm = try DDPMScheduler()
        try ddpm.setTimesteps(10)
        assertError(try ddpm.step(modelOutput: sample, timestep: 900, sample: sample, generator: nil),
                    contains: ["DDPMScheduler", "generator"])
        assertError(try ddpm.step(modelOutput: sample, timestep: 900.5, sample: sample, generator: generator),
                    contains: ["DDPMScheduler", "900.5", "whole number"])
        assertError(try ddpm.step(modelOutput: sample, timestep: 901, sample: sample, generator: generator),
                    contains: ["DDPMScheduler", "901", "not in the schedule"])
        let wrong = Tensor(zeros: [1, 3, 2, 2])
        assertError(try ddpm.step(modelOutput: wrong, timestep: 900, sample: sample, generator: generator),
                    contains: ["DDPMScheduler", "model output", "[1, 3, 2, 2]", "[1, 4, 2, 2]"])
        // The last step (t = 0) draws no noise, so it needs no generator.
        XCTAssertNoThrow(try ddpm.step(modelOutput: sample, timestep: 0, sample: sample, generator: nil))

        var euler = try EulerDiscreteScheduler()
        try euler.setTimesteps(2)
        assertError(try euler.scaleModelInput(sample, timestep: 500), contains: ["EulerDiscreteScheduler", "500", "not in the schedule"])
        for t in euler.timesteps { _ = try euler.step(modelOutput: sample, timestep: t, sample: sample, generator: nil) }
        assertError(try euler.step(modelOutput: sample, timestep: 0, sample: sample, generator: nil),
                    contains: ["EulerDiscreteScheduler", "after the last timestep"])

        var ancestral = try EulerAncestralDiscreteScheduler()
        try ancestral.setTimesteps(3)
        assertError(try ancestral.step(modelOutput: sample, timestep: ancestral.timesteps[0], sample: sample, generator: nil),
                    contains: ["EulerAncestralDiscreteScheduler", "generator"])

        var learned = DDPMScheduler.Config()
        learned.varianceType = .learnedRange
        var ddpmLearned = try DDPMScheduler(config: learned)
        try ddpmLearned.setTimesteps(10)
        assertError(try ddpmLearned.step(modelOutput: sample, timestep: 900, sample: sample, generator: generator),
                    contains: ["learned_range", "[1, 8, 2, 2]"])

        var dpm = try DPMSolverMultistepScheduler()
        try dpm.setTimesteps(2)
        for t in dpm.timesteps { _ = try dpm.step(modelOutput: sample, timestep: t, sample: sample, generator: nil) }
        assertError(try dpm.step(modelOutput: sample, timestep: 0, sample: sample, generator: nil),
                    contains: ["DPMSolverMultistepScheduler", "past the last sigma"])
    }

    /// add_noise checks its arguments.
    func testAddNoiseArguments() throws {
        let ddpm = try DDPMScheduler()
        let original = Tensor(repeating: 1, shape: [2, 4, 2, 2])
        assertError(try ddpm.addNoise(original: original, noise: original, timesteps: [1, 2, 3]),
                    contains: ["timesteps", "[3]", "[2]"])
        assertError(try ddpm.addNoise(original: original, noise: sample, timesteps: [1]), contains: ["noise", "[1, 4, 2, 2]"])
        assertError(try ddpm.addNoise(original: original, noise: original, timesteps: [1000]), contains: ["1000", "0..<1000"])
        // One timestep for the whole batch, as diffusers broadcasts it.
        let out = try ddpm.addNoise(original: original, noise: original, timesteps: [10])
        let ac = ddpm.schedule.alphasCumprod[10]
        XCTAssertEqual(out.scalars[0], ac.squareRoot() + (1 - ac).squareRoot(), accuracy: 1e-7)
        XCTAssertEqual(out.scalars[31], out.scalars[0])
    }

    /// Found by the server soak: "Euler a" with 3 steps on the shipped model's schedule (squaredcos_cap_v2, trailing)
    /// made NaN images. The first step goes from sigma 20,291.3 to 1.7507 (diffusers' values); float32 puts sigma_up one
    /// ulp above sigma_to, and diffusers' sigma_down = sqrt(sigma_to² - sigma_up²) is sqrt(-2.4e-7). Capped as
    /// k-diffusion caps it, sigma_down is 0, so from a zero sample and a zero v-prediction (x0 = 0) the step is exactly
    /// sigma_to times the generator's noise.
    func testEulerAncestralStaysFiniteWhenSigmaFromDwarfsSigmaTo() throws {
        let url = try writeConfig(#"""
            {"_class_name": "DDIMScheduler", "beta_schedule": "squaredcos_cap_v2", "beta_start": 0.0001, "beta_end": 0.02,
             "num_train_timesteps": 1000, "prediction_type": "v_prediction", "timestep_spacing": "trailing", "steps_offset": 0}
            """#)
        guard var s = try makeScheduler(configURL: url, override: "EulerAncestralDiscreteScheduler") as? EulerAncestralDiscreteScheduler else {
            return XCTFail("not an EulerAncestralDiscreteScheduler")
        }
        try s.setTimesteps(3)
        XCTAssertEqual(s.timesteps, [999, 666, 332])
        XCTAssertEqual(s.sigmas[0], 20291.302734375, accuracy: 0.01)
        XCTAssertEqual(s.sigmas[1], 1.750723123550415, accuracy: 1e-6)
        let zero = Tensor(repeating: 0, shape: [1, 4, 2, 2])
        let out = try s.step(modelOutput: zero, timestep: 999, sample: zero, generator: TorchGenerator(seed: 7))
        let noise = try TorchGenerator(seed: 7).randn(count: 16)
        for (got, n) in zip(out.prevSample.scalars, noise) {
            XCTAssertTrue(got.isFinite)
            XCTAssertEqual(got, s.sigmas[1] * n, accuracy: 1e-6 * max(1, abs(got)))
        }
    }
}
