import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' PNDMScheduler (Liu et al. 2022): Runge-Kutta warm-up steps (unless `skip_prk_steps`) then
/// linear multistep (PLMS). Stable Diffusion configs use `skip_prk_steps: true`.
public struct PNDMScheduler: ConfigurableScheduler {
    public static let className = "PNDMScheduler"

    /// The scheduler_config.json keys PNDMScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable, TrainingScheduleConfig {
        static let rules = TrainingSchedule.Rules(timestepSpacing: .leading, predictionTypes: [.epsilon, .vPrediction],
                                                  readsZeroSnr: false)
        public var training = TrainingSchedule(rules)
        public var skipPrkSteps = false
        public var setAlphaToOne = false

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            training = try TrainingSchedule(reading: r, Self.rules)
            skipPrkSteps = try r("skip_prk_steps", skipPrkSteps)
            setAlphaToOne = try r("set_alpha_to_one", setAlphaToOne)
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    private let finalAlphaCumprod: Float
    private var numInferenceSteps: Int?
    private var prkTimesteps: [Int] = []
    private var plmsTimesteps: [Int] = []
    /// Model outputs kept for the multistep formula (diffusers' `ets`).
    private var ets: [Tensor] = []
    private var counter = 0
    /// Running Runge-Kutta sum (diffusers starts it as the integer 0, here nil).
    private var curModelOutput: Tensor?
    private var curSample: Tensor?

    public var name: String { Self.className }
    /// PRK timesteps then PLMS timesteps; with skip_prk_steps the second-to-last timestep appears twice.
    public var timesteps: [Float] { (prkTimesteps + plmsTimesteps).map { Float($0) } }
    public var initNoiseSigma: Float { 1 }

    /// A scheduler for `config`.
    public init(config: Config = Config()) throws {
        self.config = config
        schedule = try config.training.noiseSchedule()
        finalAlphaCumprod = config.setAlphaToOne ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let trainSteps = config.numTrainTimesteps
        try requirePositiveStepCount(count, scheduler: name)
        // Ascending base timesteps (diffusers' `_timesteps`).
        let base = Array(discreteTimesteps(config.training, count: count).reversed())
        if config.skipPrkSteps {
            // concat(base[:-1], base[-2:-1], base[-1:]) reversed: the second-to-last timestep repeats.
            var plms = Array(base.dropLast())
            if base.count >= 2 { plms.append(base[base.count - 2]) }
            plms.append(base[base.count - 1])
            prkTimesteps = []
            plmsTimesteps = plms.reversed()
        } else {
            // The last four base timesteps, each followed by its midpoint, then every entry but the
            // first and last doubled (the 4 evaluations of each Runge-Kutta step).
            guard base.count >= 4 else {
                throw SchedulerError.invalidStepCount(scheduler: name, count: count,
                                                      reason: "the Runge-Kutta warm-up (skip_prk_steps false) needs at least 4 steps")
            }
            let half = trainSteps / count / 2
            var pairs: [Int] = []
            for t in base.suffix(4) { pairs += [t, t + half] }
            var doubled: [Int] = []
            for t in pairs.dropLast() { doubled += [t, t] }
            prkTimesteps = Array(doubled.dropFirst().dropLast().reversed())
            plmsTimesteps = Array(base.dropLast(3).reversed())
        }
        numInferenceSteps = count
        ets = []
        counter = 0
        curModelOutput = nil
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        guard numInferenceSteps != nil else {
            throw SchedulerError.invalidState(scheduler: name, reason: "call setTimesteps before step")
        }
        try checkSameShape(modelOutput, sample, scheduler: name)
        guard timestep.isFinite, timestep.rounded() == timestep else {
            throw SchedulerError.invalidTimestep(scheduler: name, timestep: timestep, reason: "expected a whole number")
        }
        let t = Int(timestep)
        let prev: Tensor
        if counter < prkTimesteps.count && !config.skipPrkSteps {
            prev = try stepPRK(modelOutput: modelOutput, timestep: t, sample: sample)
        } else {
            prev = try stepPLMS(modelOutput: modelOutput, timestep: t, sample: sample)
        }
        return SchedulerOutput(prevSample: prev, predOriginalSample: nil)
    }

    /// One of the four evaluations of a Runge-Kutta step.
    private mutating func stepPRK(modelOutput: Tensor, timestep: Int, sample: Tensor) throws -> Tensor {
        let n = numInferenceSteps ?? 1
        let diffToPrev = counter % 2 != 0 ? 0 : config.numTrainTimesteps / n / 2
        let prevTimestep = timestep - diffToPrev
        let t = prkTimesteps[counter / 4 * 4]
        var output = modelOutput
        // Weights 1/6, 1/3, 1/3, 1/6 as Python floats rounded to float32 by torch.
        switch counter % 4 {
        case 0:
            curModelOutput = accumulate(curModelOutput, Float(1.0 / 6.0), modelOutput)
            ets.append(modelOutput)
            curSample = sample
        case 1, 2:
            curModelOutput = accumulate(curModelOutput, Float(1.0 / 3.0), modelOutput)
        default:
            output = accumulate(curModelOutput, Float(1.0 / 6.0), modelOutput)
            curModelOutput = nil
        }
        let prev = try previousSample(curSample ?? sample, t, prevTimestep, output)
        counter += 1
        return prev
    }

    /// A linear multistep step over the last up to four model outputs.
    private mutating func stepPLMS(modelOutput: Tensor, timestep: Int, sample: Tensor) throws -> Tensor {
        if !config.skipPrkSteps && ets.count < 3 {
            throw SchedulerError.invalidState(scheduler: name, reason: "PLMS steps need the 12 Runge-Kutta warm-up steps first")
        }
        let ratio = config.numTrainTimesteps / (numInferenceSteps ?? 1)
        var t = timestep
        var prevTimestep = t - ratio
        var sample = sample
        if counter != 1 {
            ets = Array(ets.suffix(3))
            ets.append(modelOutput)
        } else {
            prevTimestep = t
            t = t + ratio
        }

        let output: Tensor
        let e = ets
        if e.count == 1 && counter == 0 {
            output = modelOutput
            curSample = sample
        } else if e.count == 1 && counter == 1 {
            output = divide(linearCombination([(1, modelOutput), (1, e[0])]), 2)
            guard let saved = curSample else {
                throw SchedulerError.invalidState(scheduler: name, reason: "second PLMS step without a saved sample")
            }
            sample = saved
            curSample = nil
        } else if e.count == 2 {
            output = divide(linearCombination([(3, e[1]), (-1, e[0])]), 2)
        } else if e.count == 3 {
            output = divide(linearCombination([(23, e[2]), (-16, e[1]), (5, e[0])]), 12)
        } else {
            output = scaled(linearCombination([(55, e[3]), (-59, e[2]), (37, e[1]), (-9, e[0])]), Float(1.0 / 24.0))
        }
        let prev = try previousSample(sample, t, prevTimestep, output)
        counter += 1
        return prev
    }

    /// `running + w * x`, where a nil running sum is diffusers' integer 0.
    private func accumulate(_ running: Tensor?, _ w: Float, _ x: Tensor) -> Tensor {
        guard let running else { return scaled(x, w) }
        return linearCombination([(1, running), (w, x)])
    }

    /// Formula (9) of the PNDM paper: x_{t-δ} from x_t and the (combined) model output.
    private func previousSample(_ sample: Tensor, _ t: Int, _ prevT: Int, _ modelOutput: Tensor) throws -> Tensor {
        let ac = schedule.alphasCumprod
        guard t >= 0, t < ac.count, prevT < ac.count else {
            throw SchedulerError.invalidTimestep(scheduler: name, timestep: Float(t), reason: "outside 0..<\(ac.count)")
        }
        let alphaProdT = ac[t]
        let alphaProdPrev = prevT >= 0 ? ac[prevT] : finalAlphaCumprod
        let betaProdT = 1 - alphaProdT
        let betaProdPrev = 1 - alphaProdPrev
        var output = modelOutput
        if config.predictionType == .vPrediction {
            output = linearCombination([(alphaProdT.squareRoot(), modelOutput), (betaProdT.squareRoot(), sample)])
        }
        let sampleCoeff = (alphaProdPrev / alphaProdT).squareRoot()
        let denominator = alphaProdT * betaProdPrev.squareRoot() + (alphaProdT * betaProdT * alphaProdPrev).squareRoot()
        let difference = alphaProdPrev - alphaProdT
        // sample_coeff * sample - (alpha_prev - alpha_t) * model_output / denominator
        let out = Tensor(uninitialized: sample.shape)
        let o = out.pointer, x = sample.pointer, m = output.pointer
        for i in 0..<sample.count { o[i] = sampleCoeff * x[i] - (difference * m[i]) / denominator }
        return out
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try alphaAddNoise(original: original, noise: noise, timesteps: timesteps,
                          alphasCumprod: schedule.alphasCumprod, scheduler: name)
    }
}
