import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' DDIMScheduler (Song et al. 2020); Stable unCLIP 2.1 ships with it. `eta` > 0 adds noise.
public struct DDIMScheduler: ConfigurableScheduler {
    public static let className = "DDIMScheduler"

    /// The scheduler_config.json keys DDIMScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable, TrainingScheduleConfig {
        static let rules = TrainingSchedule.Rules(timestepSpacing: .leading)
        public var training = TrainingSchedule(rules)
        public var clipping = SampleClipping()
        public var setAlphaToOne = true

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            training = try TrainingSchedule(reading: r, Self.rules)
            clipping = try SampleClipping(reading: r)
            setAlphaToOne = try r("set_alpha_to_one", setAlphaToOne)
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// The current integer timesteps, descending.
    public var integerTimesteps: [Int] { steps.timesteps }
    private var steps: DiscreteSteps
    /// The step's `eta` (0 = deterministic DDIM, 1 = DDPM-like noise); pipelines pass it per call in diffusers.
    public var eta: Float = 0
    private let finalAlphaCumprod: Float

    public var name: String { Self.className }
    public var timesteps: [Float] { integerTimesteps.map { Float($0) } }
    public var initNoiseSigma: Float { 1 }

    /// A scheduler for `config`.
    public init(config: Config = Config()) throws {
        self.config = config
        schedule = try config.training.noiseSchedule()
        finalAlphaCumprod = config.setAlphaToOne ? 1 : schedule.alphasCumprod[0]
        steps = DiscreteSteps(config.training)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try steps.set(count, config.training, scheduler: name)
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        guard let n = steps.count else {
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

        var predOriginal = alphaPredictedOriginal(config.predictionType, alphaProdT: alphaProdT, betaProdT: betaProdT,
                                                  modelOutput: modelOutput, sample: sample)
        let predEpsilon: Tensor
        switch config.predictionType {
        case .epsilon: predEpsilon = modelOutput
        case .sample: predEpsilon = subtractScaledDivide(sample, alphaProdT.squareRoot(), predOriginal, betaProdT.squareRoot())
        case .vPrediction:
            predEpsilon = linearCombination([(alphaProdT.squareRoot(), modelOutput), (betaProdT.squareRoot(), sample)])
        }
        predOriginal = config.clipping.apply(predOriginal)

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
