import Foundation
import UnCLIPTensor
import UnCLIPWeights

// What the sigma-based schedulers (Euler, Euler ancestral, LMS, DPM-Solver) share: the Karras and
// exponential sigma spacings, the final sigma, and their position in the schedule (diffusers'
// `_step_index` / `_begin_index` with `index_for_timestep`).

/// The sigma-spacing keys of Euler, LMS and DPM-Solver.
public struct SigmaOptions: Sendable {
    /// Karras et al. (2022) sigmas (rho = 7) between the schedule's extremes.
    public var useKarrasSigmas = false
    /// Log-uniform sigmas between the schedule's extremes.
    public var useExponentialSigmas = false
    /// `final_sigmas_type`: true for "sigma_min" (the smallest training sigma), false for "zero".
    public var finalSigmaIsMin = false

    public init() {}

    /// Reads the keys; `readsFinalSigmasType` is false for LMS, whose last sigma is always 0.
    init(reading r: ConfigReader, scheduler: String, readsFinalSigmasType: Bool) throws {
        useKarrasSigmas = try r("use_karras_sigmas", useKarrasSigmas)
        useExponentialSigmas = try r("use_exponential_sigmas", useExponentialSigmas)
        if try r("use_beta_sigmas", false) {
            throw SchedulerError.unsupported(scheduler: scheduler, feature: "use_beta_sigmas")
        }
        if readsFinalSigmasType {
            let final: String = try r("final_sigmas_type", "zero")
            guard ["zero", "sigma_min"].contains(final) else {
                throw ConfigValueError(key: "final_sigmas_type", value: final, allowed: ["zero", "sigma_min"])
            }
            finalSigmaIsMin = final == "sigma_min"
        }
    }

    /// diffusers' constructors refuse both spacings at once.
    func validate() throws {
        if useKarrasSigmas && useExponentialSigmas {
            throw SchedulerError.invalidConfig("only one of use_karras_sigmas and use_exponential_sigmas can be set")
        }
    }

    /// diffusers' `_convert_to_karras` / `_convert_to_exponential` of descending sigmas `from` (the
    /// extremes are its ends unless given), with the fractional timesteps `_sigma_to_t` maps them to;
    /// nil when neither spacing is set.
    func respaced(_ from: [Double], sigmaMin: Double? = nil, sigmaMax: Double? = nil, count: Int,
                  logSigmas: [Float]) -> (sigmas: [Double], timesteps: [Double])? {
        guard useKarrasSigmas || useExponentialSigmas, let first = from.first, let last = from.last else { return nil }
        let low = sigmaMin ?? last, high = sigmaMax ?? first
        let sigmas = useKarrasSigmas
            ? karrasSigmas(sigmaMin: low, sigmaMax: high, count: count)
            : exponentialSigmas(sigmaMin: low, sigmaMax: high, count: count)
        return (sigmas, sigmas.map { sigmaToT($0, logSigmas: logSigmas) })
    }

    /// The sigma after the last step.
    func finalSigma(_ alphasCumprod: [Float]) -> Float {
        finalSigmaIsMin ? ((1 - alphasCumprod[0]) / alphasCumprod[0]).squareRoot() : 0
    }
}

/// A scheduler Config holding the sigma-spacing keys.
@dynamicMemberLookup
public protocol SigmaOptionsConfig {
    var sigmaOptions: SigmaOptions { get set }
}

extension SigmaOptionsConfig {
    /// `config.useKarrasSigmas` for `config.sigmaOptions.useKarrasSigmas`.
    public subscript<T>(dynamicMember key: WritableKeyPath<SigmaOptions, T>) -> T {
        get { sigmaOptions[keyPath: key] }
        set { sigmaOptions[keyPath: key] = newValue }
    }
}

/// A sigma scheduler's schedule and its place in it: diffusers' `sigmas`, `timesteps`, `_step_index`
/// and `_begin_index`.
struct SigmaSteps: Sendable {
    /// One sigma per timestep plus the final one.
    private(set) var sigmas: [Float]
    private(set) var timesteps: [Float]
    /// The index of the next step, once stepping started.
    private(set) var stepIndex: Int?
    /// Where the caller starts in the schedule (diffusers' `set_begin_index`); nil: found from the
    /// first timestep.
    private(set) var beginIndex: Int?
    let scheduler: String
    /// DPM-Solver takes the last index for a timestep it cannot find; the others fail.
    let absentMeansLast: Bool

    init(sigmas: [Float], timesteps: [Float], scheduler: String, absentMeansLast: Bool = false) {
        self.sigmas = sigmas
        self.timesteps = timesteps
        self.scheduler = scheduler
        self.absentMeansLast = absentMeansLast
    }

    /// A new schedule (set_timesteps): stepping and the begin index start over.
    mutating func reset(sigmas: [Float], timesteps: [Float]) {
        self.sigmas = sigmas
        self.timesteps = timesteps
        stepIndex = nil
        beginIndex = nil
    }

    /// diffusers' `set_begin_index`; `index` may be the schedule's length (nothing left to step).
    mutating func setBeginIndex(_ index: Int) throws {
        guard (0...timesteps.count).contains(index) else {
            throw SchedulerError.invalidState(scheduler: scheduler,
                                              reason: "begin index \(index) is outside the schedule's 0...\(timesteps.count)")
        }
        beginIndex = index
    }

    /// diffusers' index_for_timestep: the second match if the timestep repeats (so that a pipeline that
    /// starts part-way through a schedule of repeated timesteps does not skip a sigma).
    func lookup(_ timestep: Float) throws -> Int {
        var matches: [Int] = []
        for (i, t) in timesteps.enumerated() where t == timestep {
            matches.append(i)
            if matches.count == 2 { break }
        }
        guard let first = matches.first else {
            if absentMeansLast { return timesteps.count - 1 }
            throw SchedulerError.invalidTimestep(scheduler: scheduler, timestep: timestep,
                                                 reason: "not in the schedule \(timesteps.prefix(8))…")
        }
        return matches.count > 1 ? matches[1] : first
    }

    /// The index of the step at `timestep`: the running index once stepping started, else the begin
    /// index, else looked up (diffusers' `_init_step_index`).
    func index(for timestep: Float) throws -> Int {
        if let stepIndex { return stepIndex }
        if let beginIndex { return beginIndex }
        return try lookup(timestep)
    }

    /// The index of the step about to run, which must have a sigma to step to.
    func stepIndex(for timestep: Float) throws -> Int {
        let i = try index(for: timestep)
        guard i + 1 < sigmas.count else {
            throw SchedulerError.invalidState(scheduler: scheduler,
                                              reason: "step called after the last timestep (step \(i) is past the last sigma of \(sigmas.count - 1) steps)")
        }
        return i
    }

    /// Records that step `i` ran.
    mutating func advance(past i: Int) { stepIndex = i + 1 }

    /// The sigma index add_noise uses for each timestep: looked up without a begin index, else the
    /// current step (diffusers: img2img pipelines add noise at the begin index before stepping).
    func noiseIndices(_ timesteps: [Float]) throws -> [Int] {
        guard let beginIndex else { return try timesteps.map(lookup) }
        return Array(repeating: stepIndex ?? beginIndex, count: timesteps.count)
    }

    /// scale_model_input of the k-diffusion schedulers: x / sqrt(sigma² + 1).
    func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor {
        let sigma = sigmas[try index(for: timestep)]
        return divide(sample, (sigma * sigma + 1).squareRoot())
    }

    /// add_noise of the k-diffusion schedulers: original + noise * sigma(t).
    func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        let items = try perItem(timesteps, batch: original, noise: noise, scheduler: scheduler)
        let indices = try noiseIndices(timesteps)
        return addSigmaNoisePerItem(original, noise, sigmas: items.map { sigmas[indices[$0]] })
    }

    /// init_noise_sigma: max sigma, or sqrt(max² + 1) for "leading" spacing.
    func initNoiseSigma(spacing: TimestepSpacing) -> Float {
        let maxSigma = sigmas.max() ?? 1
        return spacing == .leading ? (maxSigma * maxSigma + 1).squareRoot() : maxSigma
    }
}

/// alphas_cumprod as the sigma schedulers use it: with rescale_betas_zero_snr diffusers sets the last
/// one to 2^-24 so that the zero-SNR sigma stays finite.
func sigmaAlphasCumprod(_ schedule: NoiseSchedule, zeroSnr: Bool) -> [Float] {
    var ac = schedule.alphasCumprod
    if zeroSnr { ac[ac.count - 1] = Float(1.0 / 16_777_216.0) }
    return ac
}

/// np.interp of the training sigmas at (fractional) timesteps.
func interpolatedSigmas(_ timesteps: [Double], trainingSigmas train: [Float]) -> [Double] {
    let fp = train.map { Double($0) }
    return timesteps.map { npInterpOnIndexGrid($0, fp) }
}

/// x0 predicted by the k-diffusion schedulers (Euler, Euler ancestral, LMS).
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
