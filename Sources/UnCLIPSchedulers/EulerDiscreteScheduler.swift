import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' EulerDiscreteScheduler (Karras et al. 2022, algorithm 2 without churn). Its timesteps are
/// fractional with Karras or exponential sigmas; the model input is scaled by 1 / sqrt(sigma² + 1).
public struct EulerDiscreteScheduler: Scheduler {
    public static let className = "EulerDiscreteScheduler"

    /// How sigmas between the training timesteps are found (`interpolation_type`).
    public enum Interpolation: String, CaseIterable, Sendable {
        case linear
        case logLinear = "log_linear"
    }

    /// The scheduler_config.json keys EulerDiscreteScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable {
        public var numTrainTimesteps = 1000
        public var betaStart = 0.0001
        public var betaEnd = 0.02
        public var betaSchedule = BetaSchedule.linear
        public var trainedBetas: [Double]? = nil
        public var predictionType = PredictionType.epsilon
        public var interpolationType = Interpolation.linear
        public var useKarrasSigmas = false
        public var useExponentialSigmas = false
        public var sigmaMin: Double? = nil
        public var sigmaMax: Double? = nil
        public var timestepSpacing = TimestepSpacing.linspace
        /// `timestep_type` "continuous" (with v-prediction: timesteps are 0.25 * log(sigma)).
        public var continuousTimesteps = false
        public var stepsOffset = 0
        public var rescaleBetasZeroSnr = false
        /// `final_sigmas_type`: true for "sigma_min", false for "zero".
        public var finalSigmaIsMin = false

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            numTrainTimesteps = try r("num_train_timesteps", numTrainTimesteps)
            betaStart = try r("beta_start", betaStart)
            betaEnd = try r("beta_end", betaEnd)
            betaSchedule = try r.choice("beta_schedule", betaSchedule, allowed: [.linear, .scaledLinear, .squaredcosCapV2])
            trainedBetas = try r.optional("trained_betas")
            predictionType = try r.choice("prediction_type", predictionType, allowed: PredictionType.allCases,
                                          aliases: ["original_sample": .sample])
            interpolationType = try r.choice("interpolation_type", interpolationType, allowed: Interpolation.allCases)
            useKarrasSigmas = try r("use_karras_sigmas", useKarrasSigmas)
            useExponentialSigmas = try r("use_exponential_sigmas", useExponentialSigmas)
            if try r("use_beta_sigmas", false) {
                throw SchedulerError.unsupported(scheduler: EulerDiscreteScheduler.className, feature: "use_beta_sigmas")
            }
            sigmaMin = try r.optional("sigma_min")
            sigmaMax = try r.optional("sigma_max")
            timestepSpacing = try r.choice("timestep_spacing", timestepSpacing, allowed: TimestepSpacing.allCases)
            let type: String = try r("timestep_type", "discrete")
            guard ["discrete", "continuous"].contains(type) else {
                throw ConfigValueError(key: "timestep_type", value: type, allowed: ["discrete", "continuous"])
            }
            continuousTimesteps = type == "continuous"
            stepsOffset = try r("steps_offset", stepsOffset)
            rescaleBetasZeroSnr = try r("rescale_betas_zero_snr", rescaleBetasZeroSnr)
            let final: String = try r("final_sigmas_type", "zero")
            guard ["zero", "sigma_min"].contains(final) else {
                throw ConfigValueError(key: "final_sigmas_type", value: final, allowed: ["zero", "sigma_min"])
            }
            finalSigmaIsMin = final == "sigma_min"
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// alphas_cumprod as the sigmas use it (the last one is 2^-24 with rescale_betas_zero_snr).
    public let alphasCumprod: [Float]
    /// The current sigmas: one per timestep plus the final one.
    public private(set) var sigmas: [Float]
    public private(set) var timesteps: [Float]
    private var stepIndex: Int?

    public var name: String { Self.className }
    /// max sigma, or sqrt(max² + 1) with "leading" spacing.
    public var initNoiseSigma: Float { sigmaInitNoise(sigmas, spacing: config.timestepSpacing) }

    /// A scheduler for `config`.
    public init(config: Config = Config()) throws {
        if config.useKarrasSigmas && config.useExponentialSigmas {
            throw SchedulerError.invalidConfig("only one of use_karras_sigmas and use_exponential_sigmas can be set")
        }
        self.config = config
        schedule = try NoiseSchedule(numTrainTimesteps: config.numTrainTimesteps, betaStart: config.betaStart,
                                     betaEnd: config.betaEnd, betaSchedule: config.betaSchedule,
                                     trainedBetas: config.trainedBetas, rescaleBetasZeroSnr: config.rescaleBetasZeroSnr)
        var ac = schedule.alphasCumprod
        // diffusers sets the last alpha-bar to 2^-24 so the zero-SNR sigma stays finite.
        if config.rescaleBetasZeroSnr { ac[ac.count - 1] = Float(1.0 / 16_777_216.0) }
        alphasCumprod = ac
        let descending = Array(trainingSigmas(ac).reversed())
        sigmas = descending + [0]
        if config.continuousTimesteps && config.predictionType == .vPrediction {
            timesteps = descending.map { 0.25 * logf32($0) }
        } else {
            timesteps = (0..<config.numTrainTimesteps).reversed().map { Float($0) }
        }
    }

    public mutating func setTimesteps(_ count: Int) throws {
        guard count >= 1 else {
            throw SchedulerError.invalidStepCount(scheduler: name, count: count, reason: "must be at least 1")
        }
        let steps = floatTimesteps(spacing: config.timestepSpacing, numTrainTimesteps: config.numTrainTimesteps,
                                   count: count, stepsOffset: config.stepsOffset)
        let train = trainingSigmas(alphasCumprod)
        let logSigmas = train.map(logf32)
        var newSigmas: [Double]
        var newTimesteps = steps.map { Double($0) }
        switch config.interpolationType {
        case .linear:
            let fp = train.map { Double($0) }
            newSigmas = steps.map { npInterpOnIndexGrid(Double($0), fp) }
        case .logLinear:
            // torch.linspace(log(sigma[-1]), log(sigma[0]), n + 1).exp() in float32 (n + 1 values).
            newSigmas = torchLinspace(Double(logf32(train[train.count - 1])), Double(logf32(train[0])), count + 1)
                .map { Double(expf32($0)) }
        }
        if config.useKarrasSigmas || config.useExponentialSigmas {
            let sigmaMin = config.sigmaMin ?? newSigmas[newSigmas.count - 1]
            let sigmaMax = config.sigmaMax ?? newSigmas[0]
            newSigmas = config.useKarrasSigmas
                ? karrasSigmas(sigmaMin: sigmaMin, sigmaMax: sigmaMax, count: count)
                : exponentialSigmas(sigmaMin: sigmaMin, sigmaMax: sigmaMax, count: count)
            newTimesteps = newSigmas.map { sigmaToT($0, logSigmas: logSigmas) }
        }
        let last: Float = config.finalSigmaIsMin ? ((1 - alphasCumprod[0]) / alphasCumprod[0]).squareRoot() : 0
        sigmas = newSigmas.map { Float($0) } + [last]
        if config.continuousTimesteps && config.predictionType == .vPrediction {
            timesteps = sigmas.dropLast().map { 0.25 * logf32($0) }
        } else {
            timesteps = newTimesteps.map { Float($0) }
        }
        stepIndex = nil
    }

    /// The sigma index of `timestep`: the running step index once stepping started.
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
        // s_churn = 0 (diffusers' default): gamma = 0 and sigma_hat = sigma * 1.
        let sigma = sigmas[i]
        let predOriginal = sigmaPredictedOriginal(config.predictionType, sigma: sigma, modelOutput: modelOutput, sample: sample)
        let prev = eulerUpdate(sample: sample, denoised: predOriginal, sigma: sigma, dt: sigmas[i + 1] - sigma)
        stepIndex = i + 1
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try sigmaAddNoise(original: original, noise: noise, timesteps: timesteps, schedule: self.timesteps,
                          sigmas: sigmas, scheduler: name)
    }
}

/// init_noise_sigma of the sigma schedulers: max sigma, or sqrt(max² + 1) for "leading" spacing.
func sigmaInitNoise(_ sigmas: [Float], spacing: TimestepSpacing) -> Float {
    let maxSigma = sigmas.max() ?? 1
    return spacing == .leading ? (maxSigma * maxSigma + 1).squareRoot() : maxSigma
}

/// x0 predicted by the sigma schedulers (Euler, Euler ancestral, LMS).
func sigmaPredictedOriginal(_ type: PredictionType, sigma: Float, modelOutput: Tensor, sample: Tensor) -> Tensor {
    switch type {
    case .epsilon:
        return linearCombination([(1, sample), (-sigma, modelOutput)])
    case .vPrediction:
        // model_output * (-sigma / sqrt(sigma² + 1)) + sample / (sigma² + 1)
        let s2 = sigma * sigma + 1
        return scaledPlusDivided(modelOutput, -sigma / s2.squareRoot(), sample, s2)
    case .sample:
        return modelOutput
    }
}

/// add_noise of the sigma schedulers: original + noise * sigma(t), t looked up in the schedule.
func sigmaAddNoise(original: Tensor, noise: Tensor, timesteps: [Float], schedule: [Float], sigmas: [Float],
                   scheduler: String) throws -> Tensor {
    let items = try perItem(timesteps, batch: original, noise: noise, scheduler: scheduler)
    let perItemSigmas = try items.map { sigmas[try sigmaIndex(of: timesteps[$0], in: schedule, scheduler: scheduler)] }
    return addSigmaNoisePerItem(original, noise, sigmas: perItemSigmas)
}
