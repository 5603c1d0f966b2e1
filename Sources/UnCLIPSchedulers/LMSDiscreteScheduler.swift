import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' LMSDiscreteScheduler: linear multistep over up to four derivatives in sigma space.
public struct LMSDiscreteScheduler: ConfigurableScheduler {
    public static let className = "LMSDiscreteScheduler"
    /// diffusers' default `order` argument of step().
    static let order = 4

    /// The scheduler_config.json keys LMSDiscreteScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable, TrainingScheduleConfig, SigmaOptionsConfig {
        static let rules = TrainingSchedule.Rules(timestepSpacing: .linspace, readsZeroSnr: false)
        public var training = TrainingSchedule(rules)
        public var sigmaOptions = SigmaOptions()

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            training = try TrainingSchedule(reading: r, Self.rules)
            sigmaOptions = try SigmaOptions(reading: r, scheduler: LMSDiscreteScheduler.className, readsFinalSigmasType: false)
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    private var steps: SigmaSteps
    /// The last up to four derivatives (x - x0) / sigma, oldest first.
    private var derivatives: [Tensor] = []

    public var name: String { Self.className }
    /// The current sigmas: one per timestep plus the final 0.
    public var sigmas: [Float] { steps.sigmas }
    public var timesteps: [Float] { steps.timesteps }
    public var initNoiseSigma: Float { steps.initNoiseSigma(spacing: config.timestepSpacing) }

    /// A scheduler for `config` (set to num_train_timesteps steps, as diffusers' constructor does).
    public init(config: Config = Config()) throws {
        try config.sigmaOptions.validate()
        self.config = config
        schedule = try config.training.noiseSchedule()
        steps = SigmaSteps(sigmas: [], timesteps: [], scheduler: Self.className)
        try setTimesteps(config.numTrainTimesteps)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try requirePositiveStepCount(count, scheduler: name)
        let spaced = floatTimesteps(config.training, count: count)
        let train = trainingSigmas(schedule.alphasCumprod)
        var newTimesteps = spaced.map { Double($0) }
        var newSigmas = interpolatedSigmas(newTimesteps, trainingSigmas: train)
        if let respaced = config.sigmaOptions.respaced(newSigmas, count: count, logSigmas: train.map(logf32)) {
            (newSigmas, newTimesteps) = respaced
        }
        steps.reset(sigmas: newSigmas.map { Float($0) } + [0], timesteps: newTimesteps.map { Float($0) })
        derivatives = []
    }

    public mutating func setBeginIndex(_ index: Int) throws { try steps.setBeginIndex(index) }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor {
        try steps.scaleModelInput(sample, timestep: timestep)
    }

    /// ∫ over [sigma_t, sigma_{t+1}] of the Lagrange basis polynomial of node `current` among the nodes
    /// sigma_t, sigma_{t-1}, ... (diffusers integrates it numerically with scipy's quad; the polynomial
    /// has degree < 4, so 3-point Gauss-Legendre is exact).
    private func lmsCoefficient(order: Int, t: Int, current: Int) -> Double {
        func basis(_ tau: Double) -> Double {
            var product = 1.0
            for k in 0..<order where k != current {
                product *= (tau - Double(sigmas[t - k])) / (Double(sigmas[t - current]) - Double(sigmas[t - k]))
            }
            return product
        }
        let a = Double(sigmas[t]), b = Double(sigmas[t + 1])
        let mid = (a + b) / 2, half = (b - a) / 2
        let node = (3.0 / 5.0).squareRoot()
        return half * (5.0 / 9.0 * basis(mid - half * node) + 8.0 / 9.0 * basis(mid) + 5.0 / 9.0 * basis(mid + half * node))
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        try checkSameShape(modelOutput, sample, scheduler: name)
        let i = try steps.stepIndex(for: timestep)
        let sigma = sigmas[i]
        let predOriginal = sigmaPredictedOriginal(config.predictionType, sigma: sigma, modelOutput: modelOutput, sample: sample)
        derivatives.append(derivative(sample: sample, denoised: predOriginal, sigma: sigma))
        if derivatives.count > Self.order { derivatives.removeFirst() }

        // sample + Σ_k coeff_k · derivative_{-1-k}, summed left to right (Python's sum starts from 0);
        // zip() stops at the shorter list when fewer derivatives exist than the order asks for.
        let order = min(i + 1, Self.order)
        var terms: [(Float, Tensor)] = [(1, sample)]
        var sum: [(Float, Tensor)] = []
        for k in 0..<min(order, derivatives.count) {
            sum.append((Float(lmsCoefficient(order: order, t: i, current: k)), derivatives[derivatives.count - 1 - k]))
        }
        terms.append((1, linearCombination(sum)))
        let prev = linearCombination(terms)
        steps.advance(past: i)
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try steps.addNoise(original: original, noise: noise, timesteps: timesteps)
    }
}
