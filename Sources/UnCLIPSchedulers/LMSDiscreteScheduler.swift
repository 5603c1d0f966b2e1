import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' LMSDiscreteScheduler: linear multistep over up to four derivatives in sigma space.
public struct LMSDiscreteScheduler: Scheduler {
    public static let className = "LMSDiscreteScheduler"
    /// diffusers' default `order` argument of step().
    static let order = 4

    /// The scheduler_config.json keys LMSDiscreteScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable {
        public var numTrainTimesteps = 1000
        public var betaStart = 0.0001
        public var betaEnd = 0.02
        public var betaSchedule = BetaSchedule.linear
        public var trainedBetas: [Double]? = nil
        public var useKarrasSigmas = false
        public var useExponentialSigmas = false
        public var predictionType = PredictionType.epsilon
        public var timestepSpacing = TimestepSpacing.linspace
        public var stepsOffset = 0

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            numTrainTimesteps = try r("num_train_timesteps", numTrainTimesteps)
            betaStart = try r("beta_start", betaStart)
            betaEnd = try r("beta_end", betaEnd)
            betaSchedule = try r.choice("beta_schedule", betaSchedule, allowed: [.linear, .scaledLinear, .squaredcosCapV2])
            trainedBetas = try r.optional("trained_betas")
            useKarrasSigmas = try r("use_karras_sigmas", useKarrasSigmas)
            useExponentialSigmas = try r("use_exponential_sigmas", useExponentialSigmas)
            if try r("use_beta_sigmas", false) {
                throw SchedulerError.unsupported(scheduler: LMSDiscreteScheduler.className, feature: "use_beta_sigmas")
            }
            predictionType = try r.choice("prediction_type", predictionType, allowed: PredictionType.allCases)
            timestepSpacing = try r.choice("timestep_spacing", timestepSpacing, allowed: TimestepSpacing.allCases)
            stepsOffset = try r("steps_offset", stepsOffset)
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// The current sigmas: one per timestep plus the final 0.
    public private(set) var sigmas: [Float] = []
    public private(set) var timesteps: [Float] = []
    private var stepIndex: Int?
    /// The last up to four derivatives (x - x0) / sigma, oldest first.
    private var derivatives: [Tensor] = []

    public var name: String { Self.className }
    public var initNoiseSigma: Float { sigmaInitNoise(sigmas, spacing: config.timestepSpacing) }

    /// A scheduler for `config` (set to num_train_timesteps steps, as diffusers' constructor does).
    public init(config: Config = Config()) throws {
        if config.useKarrasSigmas && config.useExponentialSigmas {
            throw SchedulerError.invalidConfig("only one of use_karras_sigmas and use_exponential_sigmas can be set")
        }
        self.config = config
        schedule = try NoiseSchedule(numTrainTimesteps: config.numTrainTimesteps, betaStart: config.betaStart,
                                     betaEnd: config.betaEnd, betaSchedule: config.betaSchedule,
                                     trainedBetas: config.trainedBetas, rescaleBetasZeroSnr: false)
        try setTimesteps(config.numTrainTimesteps)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        guard count >= 1 else {
            throw SchedulerError.invalidStepCount(scheduler: name, count: count, reason: "must be at least 1")
        }
        let steps = floatTimesteps(spacing: config.timestepSpacing, numTrainTimesteps: config.numTrainTimesteps,
                                   count: count, stepsOffset: config.stepsOffset)
        let train = trainingSigmas(schedule.alphasCumprod)
        let fp = train.map { Double($0) }
        var newSigmas = steps.map { npInterpOnIndexGrid(Double($0), fp) }
        var newTimesteps = steps.map { Double($0) }
        if config.useKarrasSigmas || config.useExponentialSigmas {
            let sigmaMin = newSigmas[newSigmas.count - 1], sigmaMax = newSigmas[0]
            newSigmas = config.useKarrasSigmas
                ? karrasSigmas(sigmaMin: sigmaMin, sigmaMax: sigmaMax, count: count)
                : exponentialSigmas(sigmaMin: sigmaMin, sigmaMax: sigmaMax, count: count)
            let logSigmas = train.map(logf32)
            newTimesteps = newSigmas.map { sigmaToT($0, logSigmas: logSigmas) }
        }
        sigmas = newSigmas.map { Float($0) } + [0]
        timesteps = newTimesteps.map { Float($0) }
        stepIndex = nil
        derivatives = []
    }

    private func index(for timestep: Float) throws -> Int {
        try stepIndex ?? sigmaIndex(of: timestep, in: timesteps, scheduler: name)
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor {
        let sigma = sigmas[try index(for: timestep)]
        return divide(sample, (sigma * sigma + 1).squareRoot())
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
        let i = try index(for: timestep)
        guard i + 1 < sigmas.count else {
            throw SchedulerError.invalidState(scheduler: name, reason: "step called after the last timestep")
        }
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
        stepIndex = i + 1
        return SchedulerOutput(prevSample: prev, predOriginalSample: predOriginal)
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        try sigmaAddNoise(original: original, noise: noise, timesteps: timesteps, schedule: self.timesteps,
                          sigmas: sigmas, scheduler: name)
    }
}
