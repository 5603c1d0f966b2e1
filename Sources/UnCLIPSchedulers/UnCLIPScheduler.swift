import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' UnCLIPScheduler: the DDPM variant of Karlo's unCLIP prior and decoder. It spaces timesteps
/// with `(T - 1) / (n - 1)` and recomputes beta from the timestep it jumps to.
public struct UnCLIPScheduler: ConfigurableScheduler {
    public static let className = "UnCLIPScheduler"

    /// The scheduler_config.json keys UnCLIPScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable {
        public var numTrainTimesteps = 1000
        public var varianceType = VarianceType.fixedSmallLog
        public var clipSample = true
        public var clipSampleRange = 1.0
        public var predictionType = PredictionType.epsilon

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            numTrainTimesteps = try r("num_train_timesteps", numTrainTimesteps)
            varianceType = try r.choice("variance_type", varianceType, allowed: [.fixedSmallLog, .learnedRange])
            clipSample = try r("clip_sample", clipSample)
            clipSampleRange = try r("clip_sample_range", clipSampleRange)
            predictionType = try r.choice("prediction_type", predictionType, allowed: [.epsilon, .sample])
            _ = try r.choice("beta_schedule", BetaSchedule.squaredcosCapV2, allowed: [.squaredcosCapV2])
        }
    }

    public let config: Config
    /// The training schedule (always squaredcos_cap_v2).
    public let schedule: NoiseSchedule
    /// The current integer timesteps, descending.
    public private(set) var integerTimesteps: [Int]

    public var name: String { Self.className }
    public var timesteps: [Float] { integerTimesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }

    /// A scheduler for `config`.
    public init(config: Config = Config()) throws {
        self.config = config
        schedule = try NoiseSchedule(numTrainTimesteps: config.numTrainTimesteps, betaStart: 0.0001, betaEnd: 0.02,
                                     betaSchedule: .squaredcosCapV2, trainedBetas: nil, rescaleBetasZeroSnr: false)
        integerTimesteps = Array((0..<config.numTrainTimesteps).reversed())
    }

    public mutating func setTimesteps(_ count: Int) throws {
        // diffusers divides by (count - 1): one step is a ZeroDivisionError there.
        guard count >= 2 else {
            throw SchedulerError.invalidStepCount(scheduler: name, count: count, reason: "needs at least 2 (the step ratio divides by count - 1)")
        }
        let ratio = Double(config.numTrainTimesteps - 1) / Double(count - 1)
        integerTimesteps = (0..<count).reversed().map { Int(npRound(Double($0) * ratio)) }
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor { sample }

    /// Protocol step: the previous timestep is the next one in the schedule, as Karlo's pipeline passes it
    /// (nil after the last, which diffusers treats as t - 1).
    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        let t = try integerTimestep(timestep, limit: schedule.alphasCumprod.count, scheduler: name)
        var prev: Int?
        if let i = integerTimesteps.firstIndex(of: t), i + 1 < integerTimesteps.count { prev = integerTimesteps[i + 1] }
        return try step(modelOutput: modelOutput, timestep: t, sample: sample, prevTimestep: prev, generator: generator)
    }

    /// diffusers' `step(model_output, t, sample, prev_timestep=..., generator=...)`.
    public func step(modelOutput: Tensor, timestep t: Int, sample: Tensor, prevTimestep: Int?,
                     generator: RandomSource?) throws -> SchedulerOutput {
        let ac = schedule.alphasCumprod
        guard t >= 0, t < ac.count else {
            throw SchedulerError.invalidTimestep(scheduler: name, timestep: Float(t), reason: "expected 0..<\(ac.count)")
        }
        var output = modelOutput
        var predictedVariance: Tensor?
        if config.varianceType == .learnedRange, modelOutput.rank >= 2, sample.rank >= 2,
           modelOutput.shape[1] == sample.shape[1] * 2 {
            (output, predictedVariance) = splitChannels(modelOutput, first: sample.shape[1])
        }
        try checkSameShape(output, sample, scheduler: name)

        // 1. alphas, betas; beta is recomputed when the step skips timesteps
        let prevT = prevTimestep ?? t - 1
        guard prevT < ac.count else {
            throw SchedulerError.invalidTimestep(scheduler: name, timestep: Float(prevT), reason: "previous timestep out of range")
        }
        let alphaProdT = ac[t]
        let alphaProdPrev: Float = prevT >= 0 ? ac[prevT] : 1
        let betaProdT = 1 - alphaProdT
        let betaProdPrev = 1 - alphaProdPrev
        let beta: Float, alpha: Float
        if prevT == t - 1 {
            beta = schedule.betas[t]
            alpha = schedule.alphas[t]
        } else {
            beta = 1 - alphaProdT / alphaProdPrev
            alpha = 1 - beta
        }

        // 2. predicted x0
        var predOriginal: Tensor
        switch config.predictionType {
        case .epsilon: predOriginal = subtractScaledDivide(sample, betaProdT.squareRoot(), output, alphaProdT.squareRoot())
        case .sample: predOriginal = output
        case .vPrediction: throw SchedulerError.unsupported(scheduler: name, feature: "prediction_type v_prediction")
        }

        // 3. clip x0
        if config.clipSample {
            predOriginal = clamped(predOriginal, Float(-config.clipSampleRange), Float(config.clipSampleRange))
        }

        // 4.-5. posterior mean
        let originalCoeff = (alphaProdPrev.squareRoot() * beta) / betaProdT
        let sampleCoeff = alpha.squareRoot() * betaProdPrev / betaProdT
        var prev = linearCombination([(originalCoeff, predOriginal), (sampleCoeff, sample)])

        // 6. noise for t > 0
        if t > 0 {
            let noise = try drawNoise(generator, shape: output.shape, scheduler: name)
            let variance = betaProdPrev / betaProdT * beta
            switch config.varianceType {
            case .learnedRange:
                guard let predictedVariance else {
                    throw SchedulerError.shapeMismatch(scheduler: name, what: "model output (learned_range needs mean and variance channels)",
                                                       expected: [sample.shape[0], sample.shape[1] * 2] + sample.shape.dropFirst(2),
                                                       got: modelOutput.shape)
                }
                // Unlike DDPM, no clamp before the log here.
                prev = addLearnedNoise(prev, noise, predictedVariance: predictedVariance,
                                       logRange: (min: logf32(variance), max: logf32(beta)))
            default:
                let std = expf32(0.5 * logf32(max(variance, 1e-20)))
                prev = linearCombination([(1, prev), (std, noise)])
            }
        }
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try alphaAddNoise(original: original, noise: noise, timesteps: timesteps,
                          alphasCumprod: schedule.alphasCumprod, scheduler: name)
    }
}
