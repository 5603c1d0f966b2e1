import Foundation
import XCTest
import UnCLIPRandom
@testable import UnCLIPSchedulers
import UnCLIPTensor
import UnCLIPWeights

let schedulerFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/schedulers")

/// A TorchGenerator that counts its randn calls, to check a scheduler draws noise exactly as often as diffusers.
final class CountingGenerator: RandomSource {
    let base: TorchGenerator
    private(set) var calls = 0
    init(seed: UInt64) { base = TorchGenerator(seed: seed) }
    func randn(count: Int) throws -> [Float] {
        calls += 1
        return try base.randn(count: count)
    }
}

/// The diffusers fake model of notebooks-export/fixtures_schedulers.py:
/// x * 0.1 + float32(0.05 * cos(t / 100)), and for learned variance cat([that, v], dim=1) with
/// v = x * 0.3 (learned_range) or x * x * 0.3 (learned, `squared`).
func fakeModel(_ x: Tensor, _ t: Float, learned: Bool, squared: Bool = false) -> Tensor {
    let c = Float(0.05 * Foundation.cos(Double(t) / 100.0))
    let mean = Tensor(uninitialized: x.shape)
    for i in 0..<x.count { mean.pointer[i] = x.pointer[i] * Float(0.1) + c }
    guard learned else { return mean }
    let variance = Tensor(uninitialized: x.shape)
    for i in 0..<x.count {
        let v = x.pointer[i]
        variance.pointer[i] = squared ? v * v * Float(0.3) : v * Float(0.3)
    }
    var shape = x.shape
    shape[1] *= 2
    let out = Tensor(uninitialized: shape)
    let per = x.count / x.shape[0]
    for n in 0..<x.shape[0] {
        (out.pointer + 2 * n * per).update(from: mean.pointer + n * per, count: per)
        (out.pointer + (2 * n + 1) * per).update(from: variance.pointer + n * per, count: per)
    }
    return out
}

/// Largest |a - b|.
func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count)
    var worst: Float = 0
    for i in 0..<a.count where !(a.pointer[i].isNaN && b.pointer[i].isNaN) {
        worst = max(worst, abs(a.pointer[i] - b.pointer[i]))
    }
    return worst
}

/// Largest |a - b| / max(1, |b|): absolute below 1, relative above (Euler-type latents reach sigma_max,
/// e.g. 14.6, or 4096 with zero-SNR, where float32 spacing is far above 1e-5).
func scaledMaxDiff(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count)
    var worst: Float = 0
    for i in 0..<a.count {
        let x = a.pointer[i], y = b.pointer[i]
        if x.isNaN != y.isNaN { return .infinity }
        if x.isNaN { continue }
        worst = max(worst, abs(x - y) / max(1, abs(y)))
    }
    return worst
}

final class SchedulerFixtureTests: XCTestCase {
    struct Manifest: Decodable {
        let shape: [Int]
        let cases: [Case]
    }

    struct Case: Decodable {
        let name: String
        let `class`: String
        let config_dir: String
        let override: String?
        let step_counts: [Int]
        let step_count_errors: [String: String]
        let trajectory: Trajectory
        let add_noise_timesteps: [[Float]]
    }

    struct Trajectory: Decodable {
        let steps: Int
        let seed: UInt64
        let draws: Int
        let step_count: Int
        let has_pred: Bool
        let learned: Bool
        let learned_variance: Bool
        let eta: Float
        let error_step: Int?
    }

    static let tolerance: Float = 1e-5

    func loadManifest() throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: schedulerFixtures.appendingPathComponent("manifest.json")))
    }

    func makeFixtureScheduler(_ c: Case) throws -> any Scheduler {
        let url = schedulerFixtures.appendingPathComponent(c.config_dir).appendingPathComponent("scheduler_config.json")
        let scheduler = try makeScheduler(configURL: url, override: c.override)
        XCTAssertEqual(scheduler.name, c.class)
        return scheduler
    }

    func data(_ c: Case) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: schedulerFixtures.appendingPathComponent(c.name).appendingPathComponent("data.safetensors").path)
    }

    /// The training alphas_cumprod as the scheduler uses it.
    func alphasCumprod(_ s: any Scheduler) -> [Float]? {
        switch s {
        case let s as DDPMScheduler: return s.schedule.alphasCumprod
        case let s as UnCLIPScheduler: return s.schedule.alphasCumprod
        case let s as DDIMScheduler: return s.schedule.alphasCumprod
        case let s as PNDMScheduler: return s.schedule.alphasCumprod
        case let s as EulerDiscreteScheduler: return s.alphasCumprod
        case let s as EulerAncestralDiscreteScheduler: return s.alphasCumprod
        case let s as DPMSolverMultistepScheduler: return s.alphasCumprod
        case let s as LMSDiscreteScheduler: return s.schedule.alphasCumprod
        default: return nil
        }
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

    /// Whether the scheduler's timesteps come from sigma -> t interpolation (fractional float32 values).
    func convertsSigmasToTimesteps(_ s: any Scheduler) -> Bool {
        switch s {
        case let s as EulerDiscreteScheduler:
            return s.config.useKarrasSigmas || s.config.useExponentialSigmas || s.config.continuousTimesteps
        case let s as LMSDiscreteScheduler: return s.config.useKarrasSigmas || s.config.useExponentialSigmas
        default: return false
        }
    }

    func testManifestCoversEveryScheduler() throws {
        let manifest = try loadManifest()
        XCTAssertEqual(Set(manifest.cases.map(\.class)), Set(supportedSchedulers))
        XCTAssertGreaterThanOrEqual(manifest.cases.count, 50)
    }

    /// alphas_cumprod bit-identical to torch's (float32 linspace with FMA, double cumprod), except where
    /// torch goes through its vectorised sqrt/exp (zero-SNR rescaling, sigmoid betas): torch.sqrt on CPU
    /// (MKL VML) is not correctly rounded (1 ulp off for ~18% of inputs), so there within 1e-5 relative.
    func testTrainingSchedules() throws {
        var checked = 0, exact = 0, worstRelative: Float = 0
        for c in try loadManifest().cases {
            let s = try makeFixtureScheduler(c)
            let file = try data(c)
            guard file.tensors["alphas_cumprod"] != nil else { continue }
            let expected = try file.tensor("alphas_cumprod").scalars
            let actual = try XCTUnwrap(alphasCumprod(s), c.name)
            XCTAssertEqual(actual.count, expected.count, c.name)
            var maxRelative: Float = 0
            for (a, e) in zip(actual, expected) { maxRelative = max(maxRelative, abs(a - e) / max(abs(e), 1e-30)) }
            let differing = zip(actual, expected).filter { $0 != $1 }.count
            if c.name.contains("sigmoid") || c.name.contains("zero_snr") {
                XCTAssertLessThan(maxRelative, 1e-5, c.name)
                worstRelative = max(worstRelative, maxRelative)
            } else {
                XCTAssertEqual(differing, 0, "\(c.name): \(differing) alphas_cumprod values differ")
                exact += 1
            }
            checked += 1
        }
        print("alphas_cumprod: \(checked) schedules, \(exact) bit-identical, worst relative difference of the rest \(worstRelative)")
        XCTAssertGreaterThan(checked, 40)
    }

    /// Timesteps identical, sigmas within 1e-6 relative, init_noise_sigma within 1e-6 relative, for
    /// step counts 1-30, 50, 100, 1000, 1001, and the same counts refused.
    func testTimestepsAndSigmas() throws {
        var lists = 0, refused = 0, worstSigma: Float = 0, worstFractional: Float = 0
        for c in try loadManifest().cases {
            let file = try data(c)
            for n in c.step_counts {
                var s = try makeFixtureScheduler(c)
                try s.setTimesteps(n)
                let expected = try file.tensor("timesteps.\(n)").scalars
                XCTAssertEqual(s.timesteps.count, expected.count, "\(c.name) n=\(n): timestep count")
                let fractional = convertsSigmasToTimesteps(s)
                for (a, e) in zip(s.timesteps, expected) {
                    if !fractional {
                        XCTAssertEqual(a, e, "\(c.name) n=\(n): timesteps \(s.timesteps) vs \(expected)")
                    } else {
                        // sigma -> t interpolation of Karras/exponential sigmas: the float32 result can
                        // differ in its last bit (torch's sqrt, numpy's log are not correctly rounded).
                        worstFractional = max(worstFractional, abs(a - e))
                        XCTAssertEqual(a, e, accuracy: 1e-3, "\(c.name) n=\(n): fractional timestep")
                    }
                }
                if file.tensors["sigmas.\(n)"] != nil {
                    let expectedSigmas = try file.tensor("sigmas.\(n)").scalars
                    let actual = try XCTUnwrap(sigmas(s), c.name)
                    XCTAssertEqual(actual.count, expectedSigmas.count, "\(c.name) n=\(n): sigma count")
                    // Zero-SNR alphas_cumprod carry torch.sqrt's 1-ulp errors (see testTrainingSchedules),
                    // which sqrt((1 - a) / a) amplifies where a is close to 1: 2e-4 relative there.
                    let tolerance: Float = c.name.contains("zero_snr") ? 2e-4 : 1e-6
                    for (a, e) in zip(actual, expectedSigmas) {
                        let d = abs(a - e) / max(abs(e), 1e-6)
                        if tolerance < 1e-5 { worstSigma = max(worstSigma, d) }
                        XCTAssertLessThanOrEqual(d, tolerance, "\(c.name) n=\(n): sigma \(a) vs \(e)")
                    }
                }
                let sigma = try file.tensor("init_noise_sigma.\(n)").scalars[0]
                XCTAssertEqual(s.initNoiseSigma, sigma, accuracy: 1e-6 * max(1, sigma), "\(c.name) n=\(n): init_noise_sigma")
                lists += 1
            }
            for (n, kind) in c.step_count_errors {
                var s = try makeFixtureScheduler(c)
                XCTAssertThrowsError(try s.setTimesteps(Int(n)!), "\(c.name) n=\(n): diffusers raises \(kind)") { error in
                    XCTAssertTrue("\(error)".contains("\(n)") || "\(error)".contains("steps"), "\(error)")
                }
                refused += 1
            }
        }
        print("timesteps: \(lists) schedules checked, \(refused) refused step counts, worst sigma relative diff \(worstSigma) (zero-SNR excluded), worst fractional timestep diff \(worstFractional)")
        XCTAssertGreaterThan(lists, 1500)
    }

    /// The pipeline loop with the fake model and a seeded TorchGenerator: every step's model input,
    /// prev_sample and pred_original_sample within 1e-5 (absolute, relative above magnitude 1), the same
    /// number of noise draws, and an error where diffusers fails.
    func testTrajectories() throws {
        let manifest = try loadManifest()
        var worstOverall: Float = 0, worstAbsolute: Float = 0, steps = 0
        var report: [String] = []
        for c in manifest.cases {
            let file = try data(c)
            let traj = c.trajectory
            var s = try makeFixtureScheduler(c)
            if var ddim = s as? DDIMScheduler {
                ddim.eta = traj.eta
                s = ddim
            }
            try s.setTimesteps(traj.steps)
            XCTAssertEqual(s.timesteps.count, traj.step_count, c.name)
            let generator = CountingGenerator(seed: traj.seed)
            let initNoise = try file.tensor("traj.init")
            var x = scaled(initNoise.copy(), s.initNoiseSigma)
            var worst: Float = 0, absolute: Float = 0, magnitude: Float = 0
            for (i, t) in s.timesteps.enumerated() {
                let input = try s.scaleModelInput(x, timestep: t)
                let output = fakeModel(input, t, learned: traj.learned, squared: traj.learned_variance)
                if traj.error_step == i {
                    XCTAssertThrowsError(try s.step(modelOutput: output, timestep: t, sample: x, generator: generator),
                                         "\(c.name): diffusers fails at step \(i)")
                    break
                }
                worst = max(worst, scaledMaxDiff(input, try file.tensor("traj.input.\(i)")))
                let result = try s.step(modelOutput: output, timestep: t, sample: x, generator: generator)
                let expectedPrev = try file.tensor("traj.prev.\(i)")
                worst = max(worst, scaledMaxDiff(result.prevSample, expectedPrev))
                absolute = max(absolute, maxAbsDiff(result.prevSample, expectedPrev))
                magnitude = max(magnitude, expectedPrev.scalars.map(abs).max() ?? 0)
                if traj.has_pred {
                    let pred = try XCTUnwrap(result.predOriginalSample, "\(c.name) step \(i): pred_original_sample")
                    worst = max(worst, scaledMaxDiff(pred, try file.tensor("traj.pred.\(i)")))
                } else {
                    XCTAssertNil(result.predOriginalSample, c.name)
                }
                x = result.prevSample
                steps += 1
            }
            XCTAssertEqual(generator.calls, traj.draws, "\(c.name): noise draws")
            XCTAssertTrue(magnitude.isFinite, "\(c.name): the reference trajectory is not finite")
            XCTAssertLessThanOrEqual(worst, Self.tolerance, "\(c.name): trajectory differs by \(worst)")
            worstOverall = max(worstOverall, worst)
            worstAbsolute = max(worstAbsolute, absolute)
            report.append("\(c.name): scaled \(worst), prev_sample max abs \(absolute) (max |x| \(magnitude))")
        }
        print("trajectories: \(manifest.cases.count) cases, \(steps) steps, worst scaled diff \(worstOverall), worst absolute prev_sample diff \(worstAbsolute)\n  "
              + report.joined(separator: "\n  "))
    }

    /// add_noise for two per-item timesteps and one shared timestep, within 1e-5.
    func testAddNoise() throws {
        var worst: Float = 0, count = 0
        for c in try loadManifest().cases {
            let file = try data(c)
            var s = try makeFixtureScheduler(c)
            try s.setTimesteps(c.trajectory.steps)
            for (k, reference) in c.add_noise_timesteps.enumerated() {
                // Fractional (Karras) timesteps may differ from diffusers' in the last float32 bit:
                // take the schedule's own timestep at the same place.
                let timesteps = try reference.map { r in
                    r.rounded() == r ? r
                        : try XCTUnwrap(s.timesteps.first { abs($0 - r) <= 1e-3 }, "\(c.name): timestep \(r) not in schedule")
                }
                let out = try s.addNoise(original: try file.tensor("addnoise.\(k).original"),
                                         noise: try file.tensor("addnoise.\(k).noise"), timesteps: timesteps)
                let d = scaledMaxDiff(out, try file.tensor("addnoise.\(k).out"))
                XCTAssertLessThanOrEqual(d, Self.tolerance, "\(c.name) add_noise \(timesteps)")
                worst = max(worst, d)
                count += 1
            }
        }
        print("add_noise: \(count) calls, worst scaled diff \(worst)")
    }
}
