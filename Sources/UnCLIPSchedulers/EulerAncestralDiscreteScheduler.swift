import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' EulerAncestralDiscreteScheduler: an Euler step to sigma_down, then fresh noise of sigma_up
/// (one randn draw every step, the last included).
public struct EulerAncestralDiscreteScheduler: ConfigurableScheduler {
    public static let className = "EulerAncestralDiscreteScheduler"

    /// The scheduler_config.json keys EulerAncestralDiscreteScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable, TrainingScheduleConfig {
        // diffusers raises NotImplementedError for "sample" at the first step.
        static let rules = TrainingSchedule.Rules(timestepSpacing: .linspace, predictionTypes: [.epsilon, .vPrediction])
        public var training = TrainingSchedule(rules)

        public init() {}

        public init(from decoder: Decoder) throws {
            training = try TrainingSchedule(reading: try ConfigReader(decoder), Self.rules)
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// alphas_cumprod as the sigmas use it (the last one is 2^-24 with rescale_betas_zero_snr).
    public let alphasCumprod: [Float]
    private var steps: SigmaSteps

    public var name: String { Self.className }
    /// The current sigmas: one per timestep plus the final 0.
    public var sigmas: [Float] { steps.sigmas }
    public var timesteps: [Float] { steps.timesteps }
    public var initNoiseSigma: Float { steps.initNoiseSigma(spacing: config.timestepSpacing) }

    /// A scheduler for `config`.
    public init(config: Config = Config()) throws {
        self.config = config
        schedule = try config.training.noiseSchedule()
        alphasCumprod = sigmaAlphasCumprod(schedule, zeroSnr: config.rescaleBetasZeroSnr)
        steps = SigmaSteps(sigmas: Array(trainingSigmas(alphasCumprod).reversed()) + [0],
                           timesteps: (0..<config.numTrainTimesteps).reversed().map { Float($0) }, scheduler: Self.className)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try requirePositiveStepCount(count, scheduler: name)
        let timesteps = floatTimesteps(config.training, count: count)
        let sigmas = interpolatedSigmas(timesteps.map { Double($0) }, trainingSigmas: trainingSigmas(alphasCumprod))
        steps.reset(sigmas: sigmas.map { Float($0) } + [0], timesteps: timesteps)
    }

    public mutating func setBeginIndex(_ index: Int) throws { try steps.setBeginIndex(index) }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor {
        try steps.scaleModelInput(sample, timestep: timestep)
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        try checkSameShape(modelOutput, sample, scheduler: name)
        let i = try steps.stepIndex(for: timestep)
        let sigma = sigmas[i], sigmaTo = sigmas[i + 1]
        let predOriginal = sigmaPredictedOriginal(config.predictionType, sigma: sigma, modelOutput: modelOutput, sample: sample)
        // k-diffusion's get_ancestral_step (AUTOMATIC1111's "Euler a") caps sigma_up at sigma_to; diffusers does not,
        // and when sigma_from dwarfs sigma_to (squaredcos_cap_v2 puts 20,291 at t = 999; 3 trailing steps then go to
        // 1.75) float32 rounds sigma_up one ulp above sigma_to, so sigma_down = sqrt(-2.4e-7) is NaN and so is the
        // image. The cap changes nothing where diffusers' value is finite.
        let sigmaUp = min(sigmaTo, (sigmaTo * sigmaTo * (sigma * sigma - sigmaTo * sigmaTo) / (sigma * sigma)).squareRoot())
        let sigmaDown = (sigmaTo * sigmaTo - sigmaUp * sigmaUp).squareRoot()
        var prev = eulerUpdate(sample: sample, denoised: predOriginal, sigma: sigma, dt: sigmaDown - sigma)
        let noise = try drawNoise(generator, shape: modelOutput.shape, scheduler: name)
        prev = linearCombination([(1, prev), (sigmaUp, noise)])
        steps.advance(past: i)
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try steps.addNoise(original: original, noise: noise, timesteps: timesteps)
    }
}
