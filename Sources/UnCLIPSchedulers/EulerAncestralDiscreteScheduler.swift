import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' EulerAncestralDiscreteScheduler: an Euler step to sigma_down, then fresh noise of sigma_up
/// (one randn draw every step, the last included).
public struct EulerAncestralDiscreteScheduler: Scheduler {
    public static let className = "EulerAncestralDiscreteScheduler"

    /// The scheduler_config.json keys EulerAncestralDiscreteScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable {
        public var numTrainTimesteps = 1000
        public var betaStart = 0.0001
        public var betaEnd = 0.02
        public var betaSchedule = BetaSchedule.linear
        public var trainedBetas: [Double]? = nil
        public var predictionType = PredictionType.epsilon
        public var timestepSpacing = TimestepSpacing.linspace
        public var stepsOffset = 0
        public var rescaleBetasZeroSnr = false

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            numTrainTimesteps = try r("num_train_timesteps", numTrainTimesteps)
            betaStart = try r("beta_start", betaStart)
            betaEnd = try r("beta_end", betaEnd)
            betaSchedule = try r.choice("beta_schedule", betaSchedule, allowed: [.linear, .scaledLinear, .squaredcosCapV2])
            trainedBetas = try r.optional("trained_betas")
            // diffusers raises NotImplementedError for "sample" at the first step.
            predictionType = try r.choice("prediction_type", predictionType, allowed: [.epsilon, .vPrediction])
            timestepSpacing = try r.choice("timestep_spacing", timestepSpacing, allowed: TimestepSpacing.allCases)
            stepsOffset = try r("steps_offset", stepsOffset)
            rescaleBetasZeroSnr = try r("rescale_betas_zero_snr", rescaleBetasZeroSnr)
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// alphas_cumprod as the sigmas use it (the last one is 2^-24 with rescale_betas_zero_snr).
    public let alphasCumprod: [Float]
    /// The current sigmas: one per timestep plus the final 0.
    public private(set) var sigmas: [Float]
    public private(set) var timesteps: [Float]
    private var stepIndex: Int?

    public var name: String { Self.className }
    public var initNoiseSigma: Float { sigmaInitNoise(sigmas, spacing: config.timestepSpacing) }

    /// A scheduler for `config`.
    public init(config: Config = Config()) throws {
        self.config = config
        schedule = try NoiseSchedule(numTrainTimesteps: config.numTrainTimesteps, betaStart: config.betaStart,
                                     betaEnd: config.betaEnd, betaSchedule: config.betaSchedule,
                                     trainedBetas: config.trainedBetas, rescaleBetasZeroSnr: config.rescaleBetasZeroSnr)
        var ac = schedule.alphasCumprod
        if config.rescaleBetasZeroSnr { ac[ac.count - 1] = Float(1.0 / 16_777_216.0) }
        alphasCumprod = ac
        sigmas = Array(trainingSigmas(ac).reversed()) + [0]
        timesteps = (0..<config.numTrainTimesteps).reversed().map { Float($0) }
    }

    public mutating func setTimesteps(_ count: Int) throws {
        guard count >= 1 else {
            throw SchedulerError.invalidStepCount(scheduler: name, count: count, reason: "must be at least 1")
        }
        timesteps = floatTimesteps(spacing: config.timestepSpacing, numTrainTimesteps: config.numTrainTimesteps,
                                   count: count, stepsOffset: config.stepsOffset)
        let fp = trainingSigmas(alphasCumprod).map { Double($0) }
        sigmas = timesteps.map { Float(npInterpOnIndexGrid(Double($0), fp)) } + [0]
        stepIndex = nil
    }

    private func index(for timestep: Float) throws -> Int {
        try stepIndex ?? sigmaIndex(of: timestep, in: timesteps, scheduler: name)
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor {
        let sigma = sigmas[try index(for: timestep)]
        return divide(sample, (sigma * sigma + 1).squareRoot())
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        try checkSameShape(modelOutput, sample, scheduler: name)
        let i = try index(for: timestep)
        guard i + 1 < sigmas.count else {
            throw SchedulerError.invalidState(scheduler: name, reason: "step called after the last timestep")
        }
        let sigma = sigmas[i], sigmaTo = sigmas[i + 1]
        let predOriginal = sigmaPredictedOriginal(config.predictionType, sigma: sigma, modelOutput: modelOutput, sample: sample)
        let sigmaUp = (sigmaTo * sigmaTo * (sigma * sigma - sigmaTo * sigmaTo) / (sigma * sigma)).squareRoot()
        let sigmaDown = (sigmaTo * sigmaTo - sigmaUp * sigmaUp).squareRoot()
        var prev = eulerUpdate(sample: sample, denoised: predOriginal, sigma: sigma, dt: sigmaDown - sigma)
        let noise = try drawNoise(generator, shape: modelOutput.shape, scheduler: name)
        prev = linearCombination([(1, prev), (sigmaUp, noise)])
        stepIndex = i + 1
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try sigmaAddNoise(original: original, noise: noise, timesteps: timesteps, schedule: self.timesteps,
                          sigmas: sigmas, scheduler: name)
    }
}
