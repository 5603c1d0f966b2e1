import Foundation
import XCTest
import UnCLIPRandom
@testable import UnCLIPSchedulers
import UnCLIPTensor
import UnCLIPWeights

/// SchedulerRegistry: every alias against diffusers on the shipped model's decoder config and on Stable
/// Diffusion 2.1's at 4-50 steps (fixtures: notebooks-export/fixtures_scheduler_aliases.py), name lookup
/// by alias / A1111 name / class name, A1111 names, and the errors for unknown names.
///
/// Tolerances: timesteps, sigmas and init_noise_sigma per value, |swift - diffusers| <= 1e-6 + 1e-5 |diffusers|
/// (integer timesteps exact); every step's model input, prev_sample and x0 prediction per tensor,
/// |swift - diffusers| <= 1e-6 + 1e-5 max|diffusers| (a value near 0 in a latent of magnitude 10 carries
/// that latent's rounding). Two runs get a wider relative tolerance, see `illConditioned`.
final class SchedulerAliasTests: XCTestCase {
    static let relativeTolerance: Float = 1e-5
    static let absoluteTolerance: Float = 1e-6

    /// Runs on the shipped model's cosine schedule, whose sigma_max is 20291 (alphas_cumprod[999] =
    /// 2.4e-9), where a float32 subtraction of nearly equal values amplifies a 1-ulp difference in one
    /// coefficient: torch's CPU sqrt (MKL VML) is not correctly rounded, ours is.
    /// - euler-a, 10 steps: sigma_down = sqrt(sigma_to² - sigma_up²) at step 0 cancels completely
    ///   (torch: 0.00276, here 0, exact 0.00200), a difference of sigma_down · derivative ≈ 4e-3.
    /// - pndm, 20 steps: the first step's denominator sqrt differs by 1 ulp, times sample_coeff 1580.
    /// Relative tolerance (to the tensor's largest value) for these runs.
    static let illConditioned: [String: Float] = ["shapes euler-a.10": 1e-3, "shapes pndm.20": 5e-4]

    let aliasFixtures = schedulerFixtures.appendingPathComponent("aliases")

    struct Manifest: Decodable {
        struct Alias: Decodable {
            let alias: String
            let `class`: String
            let overrides: [String: JSONValue]
        }
        struct Config: Decodable {
            let name: String
            let runs: [Run]
        }
        struct Run: Decodable {
            let alias: String
            let steps: Int
            let step_count: Int
            let seed: UInt64
            let draws: Int
            let init_noise_sigma: Float
            let has_pred: Bool
            let bare_error_step: Int?
        }
        let shape: [Int]
        let aliases: [Alias]
        let configs: [Config]
    }

    func manifest() throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: aliasFixtures.appendingPathComponent("manifest.json")))
    }

    func configURL(_ name: String) -> URL {
        aliasFixtures.appendingPathComponent(name).appendingPathComponent("scheduler_config.json")
    }

    /// max |a - b| / (atol + rtol · |b|) per value (`perValue`) or with max|b| for the whole tensor; <= 1 passes.
    func closeness(_ a: [Float], _ b: [Float], perValue: Bool, rtol: Float = SchedulerAliasTests.relativeTolerance) -> Float {
        precondition(a.count == b.count)
        let scale = b.map(abs).max() ?? 0
        var worst: Float = 0
        for (x, y) in zip(a, b) {
            if x.isNaN || y.isNaN { if x.isNaN && y.isNaN { continue } else { return .infinity } }
            worst = max(worst, abs(x - y) / (Self.absoluteTolerance + rtol * (perValue ? abs(y) : scale)))
        }
        return worst
    }

    // MARK: against diffusers

    /// The fixture's alias table is the registry's.
    func testRegistryMatchesFixtureTable() throws {
        let m = try manifest()
        XCTAssertEqual(m.aliases.map(\.alias), SchedulerRegistry.presets.map(\.alias))
        for a in m.aliases {
            let selection = try SchedulerRegistry.lookup(a.alias)
            XCTAssertEqual(selection.className, a.class, a.alias)
            XCTAssertEqual(selection.overrides, a.overrides, a.alias)
            XCTAssertEqual(selection.preset?.alias, a.alias)
        }
    }

    /// The fixture's copy of the shipped decoder config is still what weights/shapes holds (if this fails,
    /// rerun notebooks-export/fixtures_scheduler_aliases.py).
    func testShapesConfigIsTheShippedOne() throws {
        let shipped = schedulerFixtures.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("weights/shapes/scheduler/scheduler_config.json")
        guard let data = FileManager.default.contents(atPath: shipped.path) else {
            throw XCTSkip("\(shipped.path) is not in this checkout")
        }
        let decoder = JSONDecoder()
        let copy = try decoder.decode(JSONValue.self, from: Data(contentsOf: configURL("shapes")))
        XCTAssertEqual(try decoder.decode(JSONValue.self, from: data), copy)
    }

    /// Each alias on both configs at 4, 10, 20, 25 and 50 steps: the pipeline loop from index 0 (as
    /// LatentDenoiser runs it) matches diffusers' loop with set_begin_index(0) within the tolerances; the
    /// loop without a begin index fails exactly where diffusers' does (dpm++2m-karras on the cosine
    /// schedule) and otherwise ends on the same latents.
    func testAliasesMatchDiffusers() throws {
        let m = try manifest()
        var runs = 0, steps = 0, bareFailures = 0
        var worst: (Float, String) = (0, "")
        for config in m.configs {
            let url = configURL(config.name)
            let file = try SafeTensorsFile(path: aliasFixtures.appendingPathComponent(config.name)
                .appendingPathComponent("data.safetensors").path)
            for run in config.runs {
                let key = "\(run.alias).\(run.steps)"
                let label = "\(config.name) \(key)"
                let rtol = Self.illConditioned[label] ?? Self.relativeTolerance
                var strictest: Float = 0   // against the default tolerance, for the ill-conditioned runs
                func check(_ what: String, _ a: [Float], _ b: [Float], perValue: Bool = false) {
                    XCTAssertEqual(a.count, b.count, "\(label) \(what): count")
                    guard a.count == b.count else { return }
                    let c = closeness(a, b, perValue: perValue, rtol: perValue ? Self.relativeTolerance : rtol)
                    XCTAssertLessThanOrEqual(c, 1, "\(label) \(what): \(a.prefix(6)) vs \(b.prefix(6))")
                    if c > worst.0, Self.illConditioned[label] == nil { worst = (c, "\(label) \(what)") }
                    strictest = max(strictest, closeness(a, b, perValue: perValue))
                }

                var s = try SchedulerRegistry.make(configURL: url, name: run.alias)
                try s.setTimesteps(run.steps)
                try s.setBeginIndex(0)
                let expectedTimesteps = try file.tensor("\(key).timesteps").scalars
                if s.timesteps.allSatisfy({ $0.rounded() == $0 }) && expectedTimesteps.allSatisfy({ $0.rounded() == $0 }) {
                    XCTAssertEqual(s.timesteps, expectedTimesteps, "\(label) timesteps")
                } else {
                    check("timesteps", s.timesteps, expectedTimesteps, perValue: true)   // Karras: fractional
                }
                XCTAssertEqual(s.timesteps.count, run.step_count, label)
                if file.tensors["\(key).sigmas"] != nil {
                    check("sigmas", try XCTUnwrap(sigmas(s), label), try file.tensor("\(key).sigmas").scalars, perValue: true)
                }
                check("init_noise_sigma", [s.initNoiseSigma], [run.init_noise_sigma], perValue: true)

                let initNoise = try file.tensor("\(key).init")
                let inputs = try file.tensor("\(key).input").scalars, prevs = try file.tensor("\(key).prev").scalars
                let preds = run.has_pred ? try file.tensor("\(key).pred").scalars : []
                let per = initNoise.count
                let generator = CountingGenerator(seed: run.seed)
                var x = scaled(initNoise.copy(), s.initNoiseSigma)
                for (i, t) in s.timesteps.enumerated() {
                    let slot = i * per..<(i + 1) * per
                    let input = try s.scaleModelInput(x, timestep: t)
                    check("step \(i) input", input.scalars, Array(inputs[slot]))
                    let out = try s.step(modelOutput: fakeModel(input, t, learned: false), timestep: t, sample: x, generator: generator)
                    check("step \(i) prev_sample", out.prevSample.scalars, Array(prevs[slot]))
                    if run.has_pred {
                        check("step \(i) x0", try XCTUnwrap(out.predOriginalSample, label).scalars, Array(preds[slot]))
                    }
                    x = out.prevSample
                    steps += 1
                }
                XCTAssertEqual(generator.calls, run.draws, "\(label): noise draws")
                if Self.illConditioned[label] != nil {
                    XCTAssertGreaterThan(strictest, 1, "\(label) now matches at the default tolerance: drop its allowance")
                    print("\(label): \(strictest) times the default tolerance (allowed: relative \(rtol))")
                }

                // The same loop without a begin index, as diffusers' text-to-image pipelines run it.
                var bare = try SchedulerRegistry.make(configURL: url, name: run.alias)
                try bare.setTimesteps(run.steps)
                let bareGenerator = CountingGenerator(seed: run.seed)
                var y = scaled(initNoise.copy(), bare.initNoiseSigma)
                var failedAt: Int?
                for (i, t) in bare.timesteps.enumerated() {
                    let input = try bare.scaleModelInput(y, timestep: t)
                    do {
                        y = try bare.step(modelOutput: fakeModel(input, t, learned: false), timestep: t, sample: y,
                                          generator: bareGenerator).prevSample
                    } catch {
                        XCTAssertTrue("\(error)".contains("past the last sigma"), "\(label): \(error)")
                        failedAt = i
                        break
                    }
                }
                XCTAssertEqual(failedAt, run.bare_error_step, "\(label): the loop without a begin index")
                if failedAt == nil { XCTAssertEqual(y.scalars, x.scalars, "\(label): the loop without a begin index") }
                if failedAt != nil { bareFailures += 1 }
                runs += 1
            }
        }
        XCTAssertEqual(runs, 100)
        XCTAssertGreaterThan(bareFailures, 0, "the fixtures should include diffusers' failing dpm++2m-karras runs")
        print("aliases: \(runs) runs, \(steps) steps, \(bareFailures) runs where diffusers fails without set_begin_index; "
              + "worst diff / tolerance outside the ill-conditioned runs = \(worst.0) (\(worst.1))")
    }

    func sigmas(_ s: any Scheduler) -> [Float]? {
        switch s {
        case let s as EulerDiscreteScheduler: return s.sigmas
        case let s as EulerAncestralDiscreteScheduler: return s.sigmas
        case let s as DPMSolverMultistepScheduler: return s.sigmas
        case let s as LMSDiscreteScheduler: return s.sigmas
        default: return nil
        }
    }

    // MARK: names

    static let a1111: [String: String] = [
        "ddim": "DDIM", "pndm": "PLMS", "ddpm": "DDPM", "euler": "Euler", "euler-karras": "Euler Karras",
        "euler-a": "Euler a", "dpm++2m": "DPM++ 2M", "dpm++2m-karras": "DPM++ 2M Karras", "lms": "LMS",
        "lms-karras": "LMS Karras",
    ]

    func testEveryNameResolves() throws {
        let url = configURL("shapes")
        XCTAssertEqual(Set(SchedulerRegistry.presets.map(\.alias)), Set(Self.a1111.keys))
        for p in SchedulerRegistry.presets {
            let expected = try XCTUnwrap(Self.a1111[p.alias])
            XCTAssertEqual(p.a1111Name, expected)
            for name in [p.alias, p.alias.uppercased(), p.a1111Name, p.a1111Name.lowercased(), " \(p.a1111Name) "] {
                XCTAssertEqual(try SchedulerRegistry.lookup(name).preset, p, name)
            }
            // A1111 1.9's split form names the same preset.
            XCTAssertEqual(try SchedulerRegistry.lookup(p.a1111Sampler, scheduleType: p.a1111ScheduleType).preset, p,
                           "\(p.a1111Sampler) + \(p.a1111ScheduleType)")
            let s = try SchedulerRegistry.make(configURL: url, name: p.a1111Name)
            XCTAssertEqual(s.name, p.className, p.alias)
        }
        for cls in supportedSchedulers {
            let selection = try SchedulerRegistry.lookup(cls)
            XCTAssertEqual(selection.className, cls)
            XCTAssertNil(selection.preset)
            XCTAssertEqual(try SchedulerRegistry.lookup(cls.lowercased()).className, cls)
        }
        let split: [(String, String, String)] = [
            ("DPM++ 2M", "Karras", "dpm++2m-karras"), ("DPM++ 2M", "Automatic", "dpm++2m-karras"),
            ("DPM++ 2M", "Uniform", "dpm++2m"), ("dpm++ 2m", "karras", "dpm++2m-karras"),
            ("DPM++ 2M Karras", "Automatic", "dpm++2m-karras"), ("Euler", "Automatic", "euler"),
            ("Euler", "Karras", "euler-karras"), ("Euler a", "Automatic", "euler-a"), ("LMS", "Karras", "lms-karras"),
            ("LMS", "Automatic", "lms"), ("DDIM", "Automatic", "ddim"), ("PLMS", "Uniform", "pndm"),
        ]
        for (sampler, type, alias) in split {
            XCTAssertEqual(try SchedulerRegistry.lookup(sampler, scheduleType: type).preset?.alias, alias, "\(sampler) + \(type)")
        }
        XCTAssertEqual(SchedulerRegistry.presets.first { $0.alias == "dpm++2m" }?.a1111ScheduleType, "Uniform")
        XCTAssertEqual(SchedulerRegistry.presets.first { $0.alias == "euler" }?.a1111ScheduleType, "Automatic")
    }

    func testA1111Names() throws {
        let shapes = configURL("shapes")
        for (alias, name) in Self.a1111 {
            XCTAssertEqual(try SchedulerRegistry.a1111Name(configURL: shapes, name: alias), name, alias)
        }
        XCTAssertEqual(try SchedulerRegistry.a1111Name(configURL: shapes, name: nil), "DDIM")
        XCTAssertEqual(try SchedulerRegistry.a1111Name(configURL: shapes, name: "DPM++ 2M", scheduleType: "Automatic"), "DPM++ 2M Karras")
        // The model's own scheduler (name nil) or a bare class name: class + Karras flag (+ solver settings).
        let cases: [(String, String?, String?)] = [
            (#"{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true}"#, nil, "DPM++ 2M Karras"),
            (#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++", "solver_order": 2}"#, nil, "DPM++ 2M"),
            (#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++"}"#, nil, nil),
            (#"{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}"#, nil, nil),
            (#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true}"#, nil, "Euler Karras"),
            (#"{"_class_name": "EulerAncestralDiscreteScheduler"}"#, nil, "Euler a"),
            (#"{"_class_name": "PNDMScheduler", "skip_prk_steps": true}"#, nil, "PLMS"),
            (#"{"_class_name": "PNDMScheduler"}"#, nil, nil),   // with the Runge-Kutta warm-up: not A1111's PLMS
            (#"{"_class_name": "LMSDiscreteScheduler", "use_karras_sigmas": true}"#, nil, "LMS Karras"),
            (#"{"_class_name": "DDPMScheduler"}"#, nil, "DDPM"),
            (#"{"_class_name": "UnCLIPScheduler"}"#, nil, nil),
            (#"{"_class_name": "DDIMScheduler", "use_karras_sigmas": true}"#, "LMSDiscreteScheduler", "LMS Karras"),
            (#"{"_class_name": "DDIMScheduler", "use_karras_sigmas": true}"#, "lms", "LMS"),
        ]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-a1111-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (i, (json, name, expected)) in cases.enumerated() {
            let url = dir.appendingPathComponent("\(i).json")
            try Data(json.utf8).write(to: url)
            XCTAssertEqual(try SchedulerRegistry.a1111Name(configURL: url, name: name), expected, "\(json) as \(name ?? "its own")")
        }
    }

    func testUnknownNamesListAcceptedNames() throws {
        let url = configURL("shapes")
        for attempt in [{ _ = try SchedulerRegistry.lookup("FancyScheduler") },
                        { _ = try SchedulerRegistry.make(configURL: url, name: "FancyScheduler") },
                        { _ = try SchedulerRegistry.a1111Name(configURL: url, name: "FancyScheduler") }] {
            XCTAssertThrowsError(try attempt()) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("unknown scheduler 'FancyScheduler'"), message)
                for name in SchedulerRegistry.presets.map(\.alias) + ["DPM++ 2M Karras", "Euler a", "PLMS"] + supportedSchedulers {
                    XCTAssertTrue(message.contains(name), "'\(message)' lacks '\(name)'")
                }
            }
        }
        XCTAssertThrowsError(try SchedulerRegistry.lookup("Heun", scheduleType: "Karras")) { error in
            XCTAssertTrue("\(error)".contains("unknown scheduler 'Heun'") && "\(error)".contains("DPM++ 2M"), "\(error)")
        }
        XCTAssertThrowsError(try SchedulerRegistry.lookup("DPM++ 2M", scheduleType: "Exponential")) { error in
            for needle in ["unknown schedule type 'Exponential'", "DPM++ 2M", "Automatic", "Karras", "Uniform"] {
                XCTAssertTrue("\(error)".contains(needle), "'\(error)' lacks '\(needle)'")
            }
        }
        XCTAssertThrowsError(try SchedulerRegistry.lookup("Euler a", scheduleType: "Karras")) { error in
            XCTAssertTrue("\(error)".contains("'Karras'") && "\(error)".contains("Automatic"), "\(error)")
        }
    }

    /// A model folder whose _class_name this package lacks is an error naming the class and the file,
    /// never a silent fallback to another scheduler.
    func testUnknownClassNameInFolderConfig() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-class-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("scheduler_config.json")
        try Data(#"{"_class_name": "HeunDiscreteScheduler", "beta_schedule": "scaled_linear"}"#.utf8).write(to: url)
        XCTAssertThrowsError(try SchedulerRegistry.make(configURL: url, name: nil)) { error in
            for needle in ["HeunDiscreteScheduler", url.path, "_class_name", "LMSDiscreteScheduler"] {
                XCTAssertTrue("\(error)".contains(needle), "'\(error)' lacks '\(needle)'")
            }
        }
        XCTAssertNil(try SchedulerRegistry.a1111Name(configURL: url, name: nil))
        // Choosing a scheduler by name replaces the class, so it still works.
        XCTAssertEqual(try SchedulerRegistry.make(configURL: url, name: "euler").name, "EulerDiscreteScheduler")
    }

    /// Library errors name parameters and config keys, never a command-line flag.
    func testErrorsNameNoCommandLineFlags() throws {
        let url = configURL("shapes")
        var messages: [String] = []
        func collect(_ body: () throws -> Void) {
            do { try body(); XCTFail("expected an error") } catch { messages.append("\(error)") }
        }
        collect { _ = try SchedulerRegistry.lookup("nope") }
        collect { _ = try SchedulerRegistry.lookup("DPM++ 2M", scheduleType: "Beta") }
        collect { _ = try SchedulerRegistry.lookup("Heun", scheduleType: "Automatic") }
        collect { _ = try SchedulerRegistry.make(configURL: url.deletingLastPathComponent().appendingPathComponent("absent.json"), name: "euler") }
        collect { var s = try SchedulerRegistry.make(configURL: url, name: "ddim"); try s.setTimesteps(0) }
        collect { var s = try SchedulerRegistry.make(configURL: url, name: "ddim"); try s.setTimesteps(5000) }
        collect { var s = try SchedulerRegistry.make(configURL: url, name: "euler"); try s.setTimesteps(4); try s.setBeginIndex(9) }
        collect {
            var s = try SchedulerRegistry.make(configURL: url, name: "dpm++2m")
            try s.setTimesteps(1)
            let x = Tensor(repeating: 0.5, shape: [1, 1, 2, 2])
            for _ in 0..<2 { _ = try s.step(modelOutput: x, timestep: s.timesteps[0], sample: x, generator: nil) }
        }
        XCTAssertEqual(messages.count, 8)
        for message in messages {
            XCTAssertNil(message.range(of: #"--[a-z]"#, options: .regularExpression), message)
            XCTAssertFalse(message.isEmpty)
        }
        XCTAssertTrue(messages[0].contains("scheduler"), messages[0])
    }
}
