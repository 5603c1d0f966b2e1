import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' EulerDiscreteScheduler (Karras et al. 2022, algorithm 2 without churn). Its timesteps are
/// fractional with Karras or exponential sigmas; the model input is scaled by 1 / sqrt(sigma² + 1).
public struct EulerDiscreteScheduler: ConfigurableScheduler {
    public static let className = "EulerDiscreteScheduler"

    /// How sigmas between the training timesteps are found (`interpolation_type`).
    public enum Interpolation: String, CaseIterable, Sendable {
        case linear
        case logLinear = "log_linear"
    }

    /// The scheduler_config.json keys EulerDiscreteScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable, TrainingScheduleConfig, SigmaOptionsConfig {
        static let rules = TrainingSchedule.Rules(timestepSpacing: .linspace, predictionAliases: ["original_sample": .sample])
        public var training = TrainingSchedule(rules)
        public var sigmaOptions = SigmaOptions()
        public var interpolationType = Interpolation.linear
        /// Overrides of the Karras / exponential extremes.
        public var sigmaMin: Double? = nil
        public var sigmaMax: Double? = nil
        /// `timestep_type` "continuous" (with v-prediction: timesteps are 0.25 * log(sigma)).
        public var continuousTimesteps = false

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            training = try TrainingSchedule(reading: r, Self.rules)
            sigmaOptions = try SigmaOptions(reading: r, scheduler: EulerDiscreteScheduler.className, readsFinalSigmasType: true)
            interpolationType = try r.choice("interpolation_type", interpolationType, allowed: Interpolation.allCases)
            sigmaMin = try r.optional("sigma_min")
            sigmaMax = try r.optional("sigma_max")
            let type: String = try r("timestep_type", "discrete")
            guard ["discrete", "continuous"].contains(type) else {
                throw ConfigValueError(key: "timestep_type", value: type, allowed: ["discrete", "continuous"])
            }
            continuousTimesteps = type == "continuous"
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// alphas_cumprod as the sigmas use it (the last one is 2^-24 with rescale_betas_zero_snr).
    public let alphasCumprod: [Float]
    private var steps: SigmaSteps

    public var name: String { Self.className }
    /// The current sigmas: one per timestep plus the final one.
    public var sigmas: [Float] { steps.sigmas }
    public var timesteps: [Float] { steps.timesteps }
    /// max sigma, or sqrt(max² + 1) with "leading" spacing.
    public var initNoiseSigma: Float { steps.initNoiseSigma(spacing: config.timestepSpacing) }

    /// A scheduler for `config`.
    public init(config: Config = Config()) throws {
        try config.sigmaOptions.validate()
        self.config = config
        schedule = try config.training.noiseSchedule()
        alphasCumprod = sigmaAlphasCumprod(schedule, zeroSnr: config.rescaleBetasZeroSnr)
        let descending = Array(trainingSigmas(alphasCumprod).reversed())
        let timesteps: [Float]
        if config.continuousTimesteps && config.predictionType == .vPrediction {
            timesteps = descending.map { 0.25 * logf32($0) }
        } else {
            timesteps = (0..<config.numTrainTimesteps).reversed().map { Float($0) }
        }
        steps = SigmaSteps(sigmas: descending + [0], timesteps: timesteps, scheduler: Self.className)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try requirePositiveStepCount(count, scheduler: name)
        let spaced = floatTimesteps(config.training, count: count)
        let train = trainingSigmas(alphasCumprod)
        var newTimesteps = spaced.map { Double($0) }
        var newSigmas: [Double]
        switch config.interpolationType {
        case .linear:
            newSigmas = interpolatedSigmas(newTimesteps, trainingSigmas: train)
        case .logLinear:
            // torch.linspace(log(sigma[-1]), log(sigma[0]), n + 1).exp() in float32 (n + 1 values).
            newSigmas = torchLinspace(Double(logf32(train[train.count - 1])), Double(logf32(train[0])), count + 1)
                .map { Double(expf32($0)) }
        }
        if let respaced = config.sigmaOptions.respaced(newSigmas, sigmaMin: config.sigmaMin, sigmaMax: config.sigmaMax,
                                                       count: count, logSigmas: train.map(logf32)) {
            (newSigmas, newTimesteps) = respaced
        }
        let sigmas = newSigmas.map { Float($0) } + [config.sigmaOptions.finalSigma(alphasCumprod)]
        if config.continuousTimesteps && config.predictionType == .vPrediction {
            steps.reset(sigmas: sigmas, timesteps: sigmas.dropLast().map { 0.25 * logf32($0) })
        } else {
            steps.reset(sigmas: sigmas, timesteps: newTimesteps.map { Float($0) })
        }
    }

    public mutating func setBeginIndex(_ index: Int) throws { try steps.setBeginIndex(index) }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor {
        try steps.scaleModelInput(sample, timestep: timestep)
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        try checkSameShape(modelOutput, sample, scheduler: name)
        let i = try steps.stepIndex(for: timestep)
        // s_churn = 0 (diffusers' default): gamma = 0 and sigma_hat = sigma * 1.
        let sigma = sigmas[i]
        let predOriginal = sigmaPredictedOriginal(config.predictionType, sigma: sigma, modelOutput: modelOutput, sample: sample)
        let prev = eulerUpdate(sample: sample, denoised: predOriginal, sigma: sigma, dt: sigmas[i + 1] - sigma)
        steps.advance(past: i)
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try steps.addNoise(original: original, noise: noise, timesteps: timesteps)
    }
}
