import Foundation
import UnCLIPTensor
import UnCLIPWeights

// The scheduler_config.json keys several scheduler classes share, each group read in one place. A
// class's Config holds the groups it reads as nested structs; for the training schedule (and the sigma
// options, SigmaSchedule.swift) a protocol's dynamic-member subscript lets callers keep writing
// `config.betaSchedule` rather than `config.training.betaSchedule`.

/// The training noise schedule and the placement of inference timesteps on it: the keys every discrete
/// scheduler (all but UnCLIPScheduler) reads under the same names and defaults. Where diffusers' classes
/// differ (default spacing, accepted values), `Rules` says so.
public struct TrainingSchedule: Sendable {
    public var numTrainTimesteps = 1000
    public var betaStart = 0.0001
    public var betaEnd = 0.02
    public var betaSchedule = BetaSchedule.linear
    public var trainedBetas: [Double]? = nil
    public var predictionType = PredictionType.epsilon
    public var timestepSpacing: TimestepSpacing
    public var stepsOffset = 0
    public var rescaleBetasZeroSnr = false

    /// What one scheduler class accepts of these keys.
    struct Rules {
        /// The class's default `timestep_spacing`.
        var timestepSpacing: TimestepSpacing
        /// `beta_schedule` values the class knows (only DDPM has sigmoid and laplace).
        var betaSchedules: [BetaSchedule] = [.linear, .scaledLinear, .squaredcosCapV2]
        var predictionTypes: [PredictionType] = PredictionType.allCases
        /// Other spellings diffusers maps onto a prediction type.
        var predictionAliases: [String: PredictionType] = [:]
        /// Whether the class reads `rescale_betas_zero_snr` (PNDM and LMS do not).
        var readsZeroSnr = true
    }

    /// diffusers' defaults under `rules`.
    init(_ rules: Rules) { timestepSpacing = rules.timestepSpacing }

    /// Reads the keys from a config, with diffusers' defaults under `rules` for the missing ones.
    init(reading r: ConfigReader, _ rules: Rules) throws {
        self.init(rules)
        numTrainTimesteps = try r("num_train_timesteps", numTrainTimesteps)
        betaStart = try r("beta_start", betaStart)
        betaEnd = try r("beta_end", betaEnd)
        betaSchedule = try r.choice("beta_schedule", betaSchedule, allowed: rules.betaSchedules)
        trainedBetas = try r.optional("trained_betas")
        predictionType = try r.choice("prediction_type", predictionType, allowed: rules.predictionTypes,
                                      aliases: rules.predictionAliases)
        timestepSpacing = try r.choice("timestep_spacing", timestepSpacing, allowed: TimestepSpacing.allCases)
        stepsOffset = try r("steps_offset", stepsOffset)
        if rules.readsZeroSnr { rescaleBetasZeroSnr = try r("rescale_betas_zero_snr", rescaleBetasZeroSnr) }
    }

    /// The betas and alphas this config describes.
    func noiseSchedule() throws -> NoiseSchedule {
        try NoiseSchedule(numTrainTimesteps: numTrainTimesteps, betaStart: betaStart, betaEnd: betaEnd,
                          betaSchedule: betaSchedule, trainedBetas: trainedBetas, rescaleBetasZeroSnr: rescaleBetasZeroSnr)
    }

    /// diffusers' check on the inference step count of the DDPM-family schedulers.
    func checkStepCount(_ count: Int, scheduler: String) throws {
        guard count >= 1, count <= numTrainTimesteps else {
            throw SchedulerError.invalidStepCount(scheduler: scheduler, count: count,
                                                  reason: "must be in 1...\(numTrainTimesteps) (num_train_timesteps)")
        }
    }
}

/// What DDPM-type schedulers do to their x0 prediction: clip it to ±clip_sample_range, or threshold it
/// dynamically (Imagen), which takes precedence.
public struct SampleClipping: Sendable {
    public var clipSample = true
    public var clipSampleRange = 1.0
    public var thresholding = false
    public var dynamicThresholdingRatio = 0.995
    public var sampleMaxValue = 1.0

    public init(clipSample: Bool = true) { self.clipSample = clipSample }

    /// Reads the keys; `readsClip` false for classes without clip_sample (DPM-Solver), which never clip.
    init(reading r: ConfigReader, readsClip: Bool = true) throws {
        self.init(clipSample: readsClip)
        if readsClip {
            clipSample = try r("clip_sample", clipSample)
            clipSampleRange = try r("clip_sample_range", clipSampleRange)
        }
        thresholding = try r("thresholding", thresholding)
        dynamicThresholdingRatio = try r("dynamic_thresholding_ratio", dynamicThresholdingRatio)
        sampleMaxValue = try r("sample_max_value", sampleMaxValue)
    }

    /// Dynamic thresholding of x0 (per batch item).
    func threshold(_ x0: Tensor) -> Tensor {
        dynamicThreshold(x0, ratio: dynamicThresholdingRatio, maxValue: sampleMaxValue)
    }

    /// x0 thresholded, or clipped, or as it is.
    func apply(_ x0: Tensor) -> Tensor {
        if thresholding { return threshold(x0) }
        if clipSample { return clamped(x0, Float(-clipSampleRange), Float(clipSampleRange)) }
        return x0
    }
}

/// A scheduler Config holding the shared training-schedule keys.
@dynamicMemberLookup
public protocol TrainingScheduleConfig {
    var training: TrainingSchedule { get set }
}

extension TrainingScheduleConfig {
    /// `config.betaSchedule` for `config.training.betaSchedule`.
    public subscript<T>(dynamicMember key: WritableKeyPath<TrainingSchedule, T>) -> T {
        get { training[keyPath: key] }
        set { training[keyPath: key] = newValue }
    }
}

/// The integer schedule of DDPM and DDIM, and the step count once set_timesteps ran.
struct DiscreteSteps: Sendable {
    /// Descending; all training timesteps until set_timesteps.
    private(set) var timesteps: [Int]
    private(set) var count: Int?

    init(_ training: TrainingSchedule) { timesteps = Array((0..<training.numTrainTimesteps).reversed()) }

    /// set_timesteps(count), with diffusers' check of the count.
    mutating func set(_ count: Int, _ training: TrainingSchedule, scheduler: String) throws {
        try training.checkStepCount(count, scheduler: scheduler)
        self.count = count
        timesteps = discreteTimesteps(training, count: count)
    }
}

/// x0 from the model output of the alpha-based schedulers (DDPM, DDIM, UnCLIP), for ᾱ_t and 1 - ᾱ_t.
func alphaPredictedOriginal(_ type: PredictionType, alphaProdT: Float, betaProdT: Float,
                            modelOutput: Tensor, sample: Tensor) -> Tensor {
    switch type {
    case .epsilon: return subtractScaledDivide(sample, betaProdT.squareRoot(), modelOutput, alphaProdT.squareRoot())
    case .sample: return modelOutput
    case .vPrediction:
        return linearCombination([(alphaProdT.squareRoot(), sample), (-betaProdT.squareRoot(), modelOutput)])
    }
}

/// Checks an inference step count that only has to be positive.
func requirePositiveStepCount(_ count: Int, scheduler: String) throws {
    guard count >= 1 else {
        throw SchedulerError.invalidStepCount(scheduler: scheduler, count: count, reason: "must be at least 1")
    }
}
