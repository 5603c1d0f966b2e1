import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// How DDPM-type schedulers set the variance of the noise they add (`variance_type`).
public enum VarianceType: String, CaseIterable, Sendable {
    case fixedSmall = "fixed_small"
    case fixedSmallLog = "fixed_small_log"
    case fixedLarge = "fixed_large"
    case fixedLargeLog = "fixed_large_log"
    case learned
    case learnedRange = "learned_range"
}

/// diffusers' DDPMScheduler (Ho et al. 2020), as Stable unCLIP uses it for its prior and image noising.
public struct DDPMScheduler: ConfigurableScheduler {
    public static let className = "DDPMScheduler"

    /// The scheduler_config.json keys DDPMScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable, TrainingScheduleConfig {
        static let rules = TrainingSchedule.Rules(timestepSpacing: .leading, betaSchedules: BetaSchedule.allCases)
        public var training = TrainingSchedule(rules)
        public var clipping = SampleClipping()
        public var varianceType = VarianceType.fixedSmall

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            training = try TrainingSchedule(reading: r, Self.rules)
            clipping = try SampleClipping(reading: r)
            // fixed_large_log takes the square root of a log (NaN noise in diffusers), so it is refused.
            if try r.optional("variance_type") == VarianceType.fixedLargeLog.rawValue {
                throw SchedulerError.unsupported(scheduler: DDPMScheduler.className,
                                                 feature: "variance_type fixed_large_log (diffusers' step gives NaN noise with it)")
            }
            varianceType = try r.choice("variance_type", varianceType,
                                        allowed: [.fixedSmall, .fixedSmallLog, .fixedLarge, .learned, .learnedRange])
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// The current integer timesteps, descending.
    public var integerTimesteps: [Int] { steps.timesteps }
    private var steps: DiscreteSteps

    public var name: String { Self.className }
    public var timesteps: [Float] { integerTimesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }

    /// A scheduler for `config`; throws for values diffusers would reject.
    public init(config: Config = Config()) throws {
        if config.varianceType == .fixedLargeLog {
            throw SchedulerError.unsupported(scheduler: Self.className, feature: "variance_type fixed_large_log")
        }
        self.config = config
        schedule = try config.training.noiseSchedule()
        steps = DiscreteSteps(config.training)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try steps.set(count, config.training, scheduler: name)
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor { sample }

    /// The timestep after `t` in the schedule (-1 after the last), or t - 1 before setTimesteps.
    func previousTimestep(_ t: Int) throws -> Int {
        guard steps.count != nil else { return t - 1 }
        guard let index = integerTimesteps.firstIndex(of: t) else {
            throw SchedulerError.invalidTimestep(scheduler: name, timestep: Float(t), reason: "not in the schedule")
        }
        return index == integerTimesteps.count - 1 ? -1 : integerTimesteps[index + 1]
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        let ac = schedule.alphasCumprod
        let t = try integerTimestep(timestep, limit: ac.count, scheduler: name)
        let prevT = try previousTimestep(t)

        var output = modelOutput
        var predictedVariance: Tensor?
        let learned = config.varianceType == .learned || config.varianceType == .learnedRange
        if learned, modelOutput.rank >= 2, sample.rank >= 2, modelOutput.shape[1] == sample.shape[1] * 2 {
            (output, predictedVariance) = splitChannels(modelOutput, first: sample.shape[1])
        } else if learned {
            throw SchedulerError.shapeMismatch(scheduler: name, what: "model output (variance_type \(config.varianceType.rawValue) needs mean and variance channels)",
                                               expected: [sample.shape[0], sample.shape[1] * 2] + sample.shape.dropFirst(2), got: modelOutput.shape)
        }
        try checkSameShape(output, sample, scheduler: name)

        // 1. alphas, betas (float32 scalars, like diffusers' 0-dim tensors)
        let alphaProdT = ac[t]
        let alphaProdPrev: Float = prevT >= 0 ? ac[prevT] : 1
        let betaProdT = 1 - alphaProdT
        let betaProdPrev = 1 - alphaProdPrev
        let currentAlphaT = alphaProdT / alphaProdPrev
        let currentBetaT = 1 - currentAlphaT

        // 2. predicted x0
        var predOriginal = alphaPredictedOriginal(config.predictionType, alphaProdT: alphaProdT, betaProdT: betaProdT,
                                                  modelOutput: output, sample: sample)

        // 3. clip or threshold x0
        predOriginal = config.clipping.apply(predOriginal)

        // 4.-5. posterior mean
        let originalCoeff = (alphaProdPrev.squareRoot() * currentBetaT) / betaProdT
        let sampleCoeff = currentAlphaT.squareRoot() * betaProdPrev / betaProdT
        var prev = linearCombination([(originalCoeff, predOriginal), (sampleCoeff, sample)])

        // 6. noise, only for t > 0 (one randn call of the model output's shape)
        if t > 0 {
            let noise = try drawNoise(generator, shape: output.shape, scheduler: name)
            var variance = (1 - alphaProdPrev) / (1 - alphaProdT) * currentBetaT
            variance = max(variance, 1e-20)
            switch config.varianceType {
            case .fixedSmall:
                prev = linearCombination([(1, prev), (variance.squareRoot(), noise)])
            case .fixedSmallLog:
                let std = expf32(0.5 * logf32(variance))
                prev = linearCombination([(1, prev), (std, noise)])
            case .fixedLarge:
                prev = linearCombination([(1, prev), (currentBetaT.squareRoot(), noise)])
            case .learned, .learnedRange:
                guard let predictedVariance else { throw SchedulerError.invalidState(scheduler: name, reason: "no variance channels") }
                let logRange = config.varianceType == .learned ? nil : (min: logf32(variance), max: logf32(currentBetaT))
                prev = addLearnedNoise(prev, noise, predictedVariance: predictedVariance, logRange: logRange)
            case .fixedLargeLog:
                throw SchedulerError.unsupported(scheduler: name, feature: "variance_type fixed_large_log")
            }
        }
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try alphaAddNoise(original: original, noise: noise, timesteps: timesteps,
                          alphasCumprod: schedule.alphasCumprod, scheduler: name)
    }
}

/// `prev + std * noise` with the standard deviation from the model's variance channels v:
/// sqrt(v) ("learned"), or exp(0.5 * (frac * maxLog + (1 - frac) * minLog)) with frac = (v + 1) / 2
/// ("learned_range", interpolating between the log variances in `logRange`).
func addLearnedNoise(_ prev: Tensor, _ noise: Tensor, predictedVariance: Tensor, logRange: (min: Float, max: Float)?) -> Tensor {
    let out = Tensor(uninitialized: prev.shape)
    let o = out.pointer, p = prev.pointer, e = noise.pointer, v = predictedVariance.pointer
    if let (minLog, maxLog) = logRange {
        for i in 0..<prev.count {
            let frac = (v[i] + 1) / 2
            let logVariance = frac * maxLog + (1 - frac) * minLog
            o[i] = p[i] + expf32(0.5 * logVariance) * e[i]
        }
    } else {
        for i in 0..<prev.count { o[i] = p[i] + v[i].squareRoot() * e[i] }
    }
    return out
}
