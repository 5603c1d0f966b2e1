import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' DDIMScheduler (Song et al. 2020); Stable unCLIP 2.1 ships with it. `eta` > 0 adds noise.
public struct DDIMScheduler: Scheduler {
    public static let className = "DDIMScheduler"

    /// The scheduler_config.json keys DDIMScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable {
        public var numTrainTimesteps = 1000
        public var betaStart = 0.0001
        public var betaEnd = 0.02
        public var betaSchedule = BetaSchedule.linear
        public var trainedBetas: [Double]? = nil
        public var clipSample = true
        public var setAlphaToOne = true
        public var stepsOffset = 0
        public var predictionType = PredictionType.epsilon
        public var thresholding = false
        public var dynamicThresholdingRatio = 0.995
        public var clipSampleRange = 1.0
        public var sampleMaxValue = 1.0
        public var timestepSpacing = TimestepSpacing.leading
        public var rescaleBetasZeroSnr = false

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            numTrainTimesteps = try r("num_train_timesteps", numTrainTimesteps)
            betaStart = try r("beta_start", betaStart)
            betaEnd = try r("beta_end", betaEnd)
            betaSchedule = try r.choice("beta_schedule", betaSchedule, allowed: [.linear, .scaledLinear, .squaredcosCapV2])
            trainedBetas = try r.optional("trained_betas")
            clipSample = try r("clip_sample", clipSample)
            setAlphaToOne = try r("set_alpha_to_one", setAlphaToOne)
            stepsOffset = try r("steps_offset", stepsOffset)
            predictionType = try r.choice("prediction_type", predictionType, allowed: PredictionType.allCases)
            thresholding = try r("thresholding", thresholding)
            dynamicThresholdingRatio = try r("dynamic_thresholding_ratio", dynamicThresholdingRatio)
            clipSampleRange = try r("clip_sample_range", clipSampleRange)
            sampleMaxValue = try r("sample_max_value", sampleMaxValue)
            timestepSpacing = try r.choice("timestep_spacing", timestepSpacing, allowed: TimestepSpacing.allCases)
            rescaleBetasZeroSnr = try r("rescale_betas_zero_snr", rescaleBetasZeroSnr)
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// The current integer timesteps, descending.
    public private(set) var integerTimesteps: [Int]
    /// The step's `eta` (0 = deterministic DDIM, 1 = DDPM-like noise); pipelines pass it per call in diffusers.
    public var eta: Float = 0
    private var numInferenceSteps: Int?
    private let finalAlphaCumprod: Float

    public var name: String { Self.className }
    public var timesteps: [Float] { integerTimesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }

    /// A scheduler for `config`.
    public init(config: Config = Config()) throws {
        self.config = config
        schedule = try NoiseSchedule(numTrainTimesteps: config.numTrainTimesteps, betaStart: config.betaStart,
                                     betaEnd: config.betaEnd, betaSchedule: config.betaSchedule,
                                     trainedBetas: config.trainedBetas, rescaleBetasZeroSnr: config.rescaleBetasZeroSnr)
        finalAlphaCumprod = config.setAlphaToOne ? 1 : schedule.alphasCumprod[0]
        integerTimesteps = Array((0..<config.numTrainTimesteps).reversed())
    }

    public mutating func setTimesteps(_ count: Int) throws {
        guard count >= 1, count <= config.numTrainTimesteps else {
            throw SchedulerError.invalidStepCount(scheduler: name, count: count,
                                                  reason: "must be in 1...\(config.numTrainTimesteps) (num_train_timesteps)")
        }
        numInferenceSteps = count
        integerTimesteps = discreteTimesteps(spacing: config.timestepSpacing, numTrainTimesteps: config.numTrainTimesteps,
                                             count: count, stepsOffset: config.stepsOffset)
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        guard let n = numInferenceSteps else {
            throw SchedulerError.invalidState(scheduler: name, reason: "call setTimesteps before step")
        }
        let ac = schedule.alphasCumprod
        let t = try integerTimestep(timestep, limit: ac.count, scheduler: name)
        try checkSameShape(modelOutput, sample, scheduler: name)
        // diffusers always steps back by T // n, whatever the spacing.
        let prevT = t - config.numTrainTimesteps / n

        let alphaProdT = ac[t]
        let alphaProdPrev = prevT >= 0 ? ac[prevT] : finalAlphaCumprod
        let betaProdT = 1 - alphaProdT

        var predOriginal: Tensor, predEpsilon: Tensor
        switch config.predictionType {
        case .epsilon:
            predOriginal = subtractScaledDivide(sample, betaProdT.squareRoot(), modelOutput, alphaProdT.squareRoot())
            predEpsilon = modelOutput
        case .sample:
            predOriginal = modelOutput
            predEpsilon = subtractScaledDivide(sample, alphaProdT.squareRoot(), predOriginal, betaProdT.squareRoot())
        case .vPrediction:
            predOriginal = linearCombination([(alphaProdT.squareRoot(), sample), (-betaProdT.squareRoot(), modelOutput)])
            predEpsilon = linearCombination([(alphaProdT.squareRoot(), modelOutput), (betaProdT.squareRoot(), sample)])
        }

        if config.thresholding {
            predOriginal = dynamicThreshold(predOriginal, ratio: config.dynamicThresholdingRatio, maxValue: config.sampleMaxValue)
        } else if config.clipSample {
            predOriginal = clamped(predOriginal, Float(-config.clipSampleRange), Float(config.clipSampleRange))
        }

        // sigma_t of the DDIM paper, formula (16)
        let betaProdPrev = 1 - alphaProdPrev
        let variance = (betaProdPrev / betaProdT) * (1 - alphaProdT / alphaProdPrev)
        let stdDev = eta * variance.squareRoot()
        let directionCoeff = (1 - alphaProdPrev - stdDev * stdDev).squareRoot()
        var prev = linearCombination([(alphaProdPrev.squareRoot(), predOriginal), (directionCoeff, predEpsilon)])

        if eta > 0 {
            let noise = try drawNoise(generator, shape: modelOutput.shape, scheduler: name)
            prev = linearCombination([(1, prev), (stdDev, noise)])
        }
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try alphaAddNoise(original: original, noise: noise, timesteps: timesteps,
                          alphasCumprod: schedule.alphasCumprod, scheduler: name)
    }
}
