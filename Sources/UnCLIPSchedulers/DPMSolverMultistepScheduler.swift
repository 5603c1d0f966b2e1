import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' DPMSolverMultistepScheduler (DPM-Solver / DPM-Solver++ of Lu et al., orders 1-3, optionally
/// the SDE variants that draw noise every step).
public struct DPMSolverMultistepScheduler: ConfigurableScheduler {
    public static let className = "DPMSolverMultistepScheduler"

    /// `algorithm_type`.
    public enum Algorithm: String, CaseIterable, Sendable {
        case dpmsolver
        case dpmsolverPlusPlus = "dpmsolver++"
        case sdeDpmsolver = "sde-dpmsolver"
        case sdeDpmsolverPlusPlus = "sde-dpmsolver++"
    }

    /// `solver_type` of the second-order update.
    public enum SolverType: String, CaseIterable, Sendable {
        case midpoint
        case heun
    }

    /// The scheduler_config.json keys DPMSolverMultistepScheduler reads, with diffusers' defaults.
    public struct Config: Decodable, Sendable, TrainingScheduleConfig, SigmaOptionsConfig {
        static let rules = TrainingSchedule.Rules(timestepSpacing: .linspace)
        public var training = TrainingSchedule(rules)
        /// Thresholding only: DPM-Solver has no clip_sample.
        public var clipping = SampleClipping(clipSample: false)
        public var sigmaOptions = SigmaOptions()
        public var solverOrder = 2
        public var algorithmType = Algorithm.dpmsolverPlusPlus
        public var solverType = SolverType.midpoint
        public var lowerOrderFinal = true
        public var eulerAtFinal = false
        public var useLuLambdas = false
        public var lambdaMinClipped = -Double.infinity
        /// `variance_type` learned / learned_range: the model's first 3 channels are the prediction.
        public var learnedVariance = false

        public init() {}

        public init(from decoder: Decoder) throws {
            let r = try ConfigReader(decoder)
            let name = DPMSolverMultistepScheduler.className
            training = try TrainingSchedule(reading: r, Self.rules)
            clipping = try SampleClipping(reading: r, readsClip: false)
            sigmaOptions = try SigmaOptions(reading: r, scheduler: name, readsFinalSigmasType: true)
            solverOrder = try r("solver_order", solverOrder)
            // diffusers maps "deis" to dpmsolver++ and the UniPC solver types to midpoint.
            algorithmType = try r.choice("algorithm_type", algorithmType, allowed: Algorithm.allCases,
                                         aliases: ["deis": .dpmsolverPlusPlus])
            solverType = try r.choice("solver_type", solverType, allowed: SolverType.allCases,
                                      aliases: ["logrho": .midpoint, "bh1": .midpoint, "bh2": .midpoint])
            lowerOrderFinal = try r("lower_order_final", lowerOrderFinal)
            eulerAtFinal = try r("euler_at_final", eulerAtFinal)
            useLuLambdas = try r("use_lu_lambdas", useLuLambdas)
            for key in ["use_flow_sigmas", "use_dynamic_shifting"] where try r(key, false) {
                throw SchedulerError.unsupported(scheduler: name, feature: key)
            }
            lambdaMinClipped = try r("lambda_min_clipped", lambdaMinClipped)
            let variance: String? = try r.optional("variance_type")
            if let variance, !["learned", "learned_range"].contains(variance) {
                throw ConfigValueError(key: "variance_type", value: variance, allowed: ["learned", "learned_range"])
            }
            learnedVariance = variance != nil
        }
    }

    public let config: Config
    /// The training schedule.
    public let schedule: NoiseSchedule
    /// alphas_cumprod as the sigmas use it (the last one is 2^-24 with rescale_betas_zero_snr).
    public let alphasCumprod: [Float]
    private let lambdas: [Float]
    private var steps: SigmaSteps
    private var numInferenceSteps: Int?
    /// The last `solverOrder` converted model outputs, oldest first.
    private var modelOutputs: [Tensor?]
    private var lowerOrderNums = 0

    public var name: String { Self.className }
    /// The current sigmas: one per timestep plus the final one.
    public var sigmas: [Float] { steps.sigmas }
    /// The current timesteps: whole numbers (torch int64 in diffusers).
    public var timesteps: [Float] { steps.timesteps }
    /// The current integer timesteps.
    public var integerTimesteps: [Int] { steps.timesteps.map { Int($0) } }
    public var initNoiseSigma: Float { 1 }

    /// A scheduler for `config`; throws for combinations diffusers rejects.
    public init(config: Config = Config()) throws {
        guard (1...3).contains(config.solverOrder) else {
            throw SchedulerError.invalidConfig("solver_order must be 1, 2 or 3, got \(config.solverOrder)")
        }
        try config.sigmaOptions.validate()
        let plusPlus = config.algorithmType == .dpmsolverPlusPlus || config.algorithmType == .sdeDpmsolverPlusPlus
        if !plusPlus && !config.finalSigmaIsMin {
            throw SchedulerError.invalidConfig(
                "final_sigmas_type 'zero' is not supported for algorithm_type \(config.algorithmType.rawValue); use 'sigma_min'")
        }
        self.config = config
        schedule = try config.training.noiseSchedule()
        alphasCumprod = sigmaAlphasCumprod(schedule, zeroSnr: config.rescaleBetasZeroSnr)
        lambdas = alphasCumprod.map { logf32($0.squareRoot()) - logf32((1 - $0).squareRoot()) }
        steps = SigmaSteps(sigmas: trainingSigmas(alphasCumprod),
                           timesteps: (0..<config.numTrainTimesteps).reversed().map { Float($0) },
                           scheduler: Self.className, absentMeansLast: true)
        modelOutputs = Array(repeating: nil, count: config.solverOrder)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try requirePositiveStepCount(count, scheduler: name)
        let trainSteps = config.numTrainTimesteps
        // Timesteps whose lambda falls below lambda_min_clipped are cut from the top of the range.
        let clipped = Float(config.lambdaMinClipped)
        let clippedCount = lambdas.reversed().filter { $0 < clipped }.count
        let lastTimestep = trainSteps - clippedCount
        var timesteps: [Double]
        switch config.timestepSpacing {
        case .linspace:
            timesteps = Array(npLinspace(0, Double(lastTimestep - 1), count + 1).map(npRound).reversed().dropLast())
        case .leading:
            let ratio = lastTimestep / (count + 1)
            timesteps = Array((0...count).reversed().dropLast().map { Double($0 * ratio + config.stepsOffset) })
        case .trailing:
            let ratio = Double(trainSteps) / Double(count)
            timesteps = npArange(Double(lastTimestep), 0, -ratio).map { npRound($0) - 1 }
        }

        let train = trainingSigmas(alphasCumprod)
        let logSigmas = train.map(logf32)
        // diffusers rounds Karras and Lu timesteps except on the cosine schedule; the int64 cast below
        // then truncates the fractional ones, so neighbouring sigmas can share a timestep there.
        let rounds = config.betaSchedule != .squaredcosCapV2
        var newSigmas: [Double]
        if let respaced = config.sigmaOptions.respaced(train.reversed().map { Double($0) }, count: count, logSigmas: logSigmas) {
            (newSigmas, timesteps) = respaced
            if config.useKarrasSigmas && rounds { timesteps = timesteps.map(npRound) }
        } else if config.useLuLambdas {
            // Uniform in log-sigma between the extremes (rho = 1).
            let lambdaMin = Double(logSigmas[0]), lambdaMax = Double(logSigmas[logSigmas.count - 1])
            newSigmas = npLinspace(0, 1, count).map { Foundation.exp(lambdaMax + $0 * (lambdaMin - lambdaMax)) }
            timesteps = newSigmas.map { sigmaToT($0, logSigmas: logSigmas) }
            if rounds { timesteps = timesteps.map(npRound) }
        } else {
            newSigmas = interpolatedSigmas(timesteps, trainingSigmas: train)
        }
        // torch's .to(int64) truncates toward zero (fractional only for cosine + Karras/Lu/exponential).
        steps.reset(sigmas: newSigmas.map { Float($0) } + [config.sigmaOptions.finalSigma(alphasCumprod)],
                    timesteps: timesteps.map { Float(Int($0.rounded(.towardZero))) })
        numInferenceSteps = timesteps.count
        modelOutputs = Array(repeating: nil, count: config.solverOrder)
        lowerOrderNums = 0
    }

    public mutating func setBeginIndex(_ index: Int) throws { try steps.setBeginIndex(index) }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor { sample }

    /// (alpha_t, sigma_t) of the VP process for a sigma: 1 / sqrt(sigma² + 1) and sigma * alpha_t.
    private func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    private var isPlusPlus: Bool {
        config.algorithmType == .dpmsolverPlusPlus || config.algorithmType == .sdeDpmsolverPlusPlus
    }

    /// The model output in the form the algorithm integrates: x0 for ++, epsilon otherwise.
    private func convert(_ modelOutput: Tensor, sample: Tensor, index i: Int) throws -> Tensor {
        var output = modelOutput
        if config.learnedVariance && config.predictionType == .epsilon {
            guard modelOutput.rank >= 2, modelOutput.shape[1] >= 3 else {
                throw SchedulerError.shapeMismatch(scheduler: name, what: "model output (learned variance)",
                                                   expected: sample.shape, got: modelOutput.shape)
            }
            output = splitChannels(modelOutput, first: 3).0
        }
        try checkSameShape(output, sample, scheduler: name)
        let (alphaT, sigmaT) = alphaSigma(sigmas[i])
        if isPlusPlus {
            let x0: Tensor
            switch config.predictionType {
            case .epsilon: x0 = subtractScaledDivide(sample, sigmaT, output, alphaT)
            case .sample: x0 = output
            case .vPrediction: x0 = linearCombination([(alphaT, sample), (-sigmaT, output)])
            }
            return config.clipping.thresholding ? config.clipping.threshold(x0) : x0
        }
        var epsilon: Tensor
        switch config.predictionType {
        case .epsilon: epsilon = output
        case .sample: epsilon = subtractScaledDivide(sample, alphaT, output, sigmaT)
        case .vPrediction: epsilon = linearCombination([(alphaT, output), (sigmaT, sample)])
        }
        if config.clipping.thresholding {
            let x0 = config.clipping.threshold(subtractScaledDivide(sample, sigmaT, epsilon, alphaT))
            epsilon = subtractScaledDivide(sample, alphaT, x0, sigmaT)
        }
        return epsilon
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor,
                              generator: RandomSource?) throws -> SchedulerOutput {
        guard numInferenceSteps != nil else {
            throw SchedulerError.invalidState(scheduler: name, reason: "call setTimesteps before step")
        }
        let i = try steps.stepIndex(for: timestep)
        let count = steps.timesteps.count
        let lowerOrderFinal = i == count - 1
            && (config.eulerAtFinal || (config.lowerOrderFinal && count < 15) || !config.finalSigmaIsMin)
        let lowerOrderSecond = i == count - 2 && config.lowerOrderFinal && count < 15

        let converted = try convert(modelOutput, sample: sample, index: i)
        modelOutputs.removeFirst()
        modelOutputs.append(converted)

        var noise: Tensor?
        if config.algorithmType == .sdeDpmsolver || config.algorithmType == .sdeDpmsolverPlusPlus {
            noise = try drawNoise(generator, shape: converted.shape, scheduler: name)
        }

        let prev: Tensor
        if config.solverOrder == 1 || lowerOrderNums < 1 || lowerOrderFinal {
            prev = try firstOrderUpdate(converted, sample: sample, noise: noise, index: i)
        } else if config.solverOrder == 2 || lowerOrderNums < 2 || lowerOrderSecond {
            prev = try secondOrderUpdate(sample: sample, noise: noise, index: i)
        } else {
            prev = try thirdOrderUpdate(sample: sample, noise: noise, index: i)
        }
        if lowerOrderNums < config.solverOrder { lowerOrderNums += 1 }
        steps.advance(past: i)
        return SchedulerOutput(prevSample: prev, predOriginalSample: isPlusPlus ? converted : nil)
    }

    /// The noise the SDE variants drew for this step.
    private func drawn(_ noise: Tensor?) throws -> Tensor {
        guard let noise else { throw SchedulerError.invalidState(scheduler: name, reason: "SDE update without noise") }
        return noise
    }

    /// log(alpha) - log(sigma) for a sigma, with alpha and sigma of `alphaSigma`.
    private func lambda(_ s: (alpha: Float, sigma: Float)) -> Float { logf32(s.alpha) - logf32(s.sigma) }

    /// DPM-Solver(++) first order (DDIM).
    private func firstOrderUpdate(_ m: Tensor, sample x: Tensor, noise: Tensor?, index i: Int) throws -> Tensor {
        let t = alphaSigma(sigmas[i + 1]), s = alphaSigma(sigmas[i])
        let h = lambda(t) - lambda(s)
        switch config.algorithmType {
        case .dpmsolverPlusPlus:
            return linearCombination([(t.sigma / s.sigma, x), (-(t.alpha * (expf32(-h) - 1)), m)])
        case .dpmsolver:
            return linearCombination([(t.alpha / s.alpha, x), (-(t.sigma * (expf32(h) - 1)), m)])
        case .sdeDpmsolverPlusPlus:
            let e2 = expf32(-2 * h)
            return linearCombination([(t.sigma / s.sigma * expf32(-h), x), (t.alpha * (1 - e2), m),
                                      (t.sigma * (1 - e2).squareRoot(), try drawn(noise))])
        case .sdeDpmsolver:
            return linearCombination([(t.alpha / s.alpha, x), (-(2 * (t.sigma * (expf32(h) - 1))), m),
                                      (t.sigma * (expf32(2 * h) - 1).squareRoot(), try drawn(noise))])
        }
    }

    /// Multistep second order over the last two converted outputs.
    private func secondOrderUpdate(sample x: Tensor, noise: Tensor?, index i: Int) throws -> Tensor {
        guard i >= 1, let m0 = modelOutputs[modelOutputs.count - 1], let m1 = modelOutputs[modelOutputs.count - 2] else {
            throw SchedulerError.invalidState(scheduler: name, reason: "second-order step without a previous model output")
        }
        let t = alphaSigma(sigmas[i + 1]), s0 = alphaSigma(sigmas[i]), s1 = alphaSigma(sigmas[i - 1])
        let lt = lambda(t), ls0 = lambda(s0), ls1 = lambda(s1)
        let h = lt - ls0, h0 = ls0 - ls1
        let r0 = h0 / h
        let d0 = m0
        let d1 = scaled(linearCombination([(1, m0), (-1, m1)]), 1 / r0)
        let midpoint = config.solverType == .midpoint
        switch config.algorithmType {
        case .dpmsolverPlusPlus:
            let c = t.alpha * (expf32(-h) - 1)
            let cD1 = midpoint ? -(0.5 * c) : t.alpha * ((expf32(-h) - 1) / h + 1)
            return linearCombination([(t.sigma / s0.sigma, x), (-c, d0), (cD1, d1)])
        case .dpmsolver:
            let c = t.sigma * (expf32(h) - 1)
            let cD1 = midpoint ? 0.5 * c : t.sigma * ((expf32(h) - 1) / h - 1)
            return linearCombination([(t.alpha / s0.alpha, x), (-c, d0), (-cD1, d1)])
        case .sdeDpmsolverPlusPlus:
            let e2 = expf32(-2 * h)
            let c = t.alpha * (1 - e2)
            let cD1 = midpoint ? 0.5 * c : t.alpha * ((1 - e2) / (-2 * h) + 1)
            return linearCombination([(t.sigma / s0.sigma * expf32(-h), x), (c, d0), (cD1, d1),
                                      (t.sigma * (1 - e2).squareRoot(), try drawn(noise))])
        case .sdeDpmsolver:
            let c = t.sigma * (expf32(h) - 1)
            let cD1 = midpoint ? c : 2 * (t.sigma * ((expf32(h) - 1) / h - 1))
            return linearCombination([(t.alpha / s0.alpha, x), (-(2 * c), d0), (-cD1, d1),
                                      (t.sigma * (expf32(2 * h) - 1).squareRoot(), try drawn(noise))])
        }
    }

    /// Multistep third order over the last three converted outputs.
    private func thirdOrderUpdate(sample x: Tensor, noise: Tensor?, index i: Int) throws -> Tensor {
        guard i >= 2, let m0 = modelOutputs[modelOutputs.count - 1], let m1 = modelOutputs[modelOutputs.count - 2],
              let m2 = modelOutputs[modelOutputs.count - 3] else {
            throw SchedulerError.invalidState(scheduler: name, reason: "third-order step without two previous model outputs")
        }
        let t = alphaSigma(sigmas[i + 1]), s0 = alphaSigma(sigmas[i])
        let s1 = alphaSigma(sigmas[i - 1]), s2 = alphaSigma(sigmas[i - 2])
        let lt = lambda(t), ls0 = lambda(s0), ls1 = lambda(s1), ls2 = lambda(s2)
        let h = lt - ls0, h0 = ls0 - ls1, h1 = ls1 - ls2
        let r0 = h0 / h, r1 = h1 / h
        let d0 = m0
        let d10 = scaled(linearCombination([(1, m0), (-1, m1)]), 1 / r0)
        let d11 = scaled(linearCombination([(1, m1), (-1, m2)]), 1 / r1)
        let diff = linearCombination([(1, d10), (-1, d11)])
        let d1 = linearCombination([(1, d10), (r0 / (r0 + r1), diff)])
        let d2 = scaled(diff, 1 / (r0 + r1))
        switch config.algorithmType {
        case .dpmsolverPlusPlus:
            let e = expf32(-h)
            return linearCombination([
                (t.sigma / s0.sigma, x),
                (-(t.alpha * (e - 1)), d0),
                (t.alpha * ((e - 1) / h + 1), d1),
                (-(t.alpha * ((e - 1 + h) / (h * h) - 0.5)), d2),
            ])
        case .dpmsolver:
            let e = expf32(h)
            return linearCombination([
                (t.alpha / s0.alpha, x),
                (-(t.sigma * (e - 1)), d0),
                (-(t.sigma * ((e - 1) / h - 1)), d1),
                (-(t.sigma * ((e - 1 - h) / (h * h) - 0.5)), d2),
            ])
        case .sdeDpmsolverPlusPlus:
            let e2 = expf32(-2 * h)
            let twoH = 2 * h
            return linearCombination([
                (t.sigma / s0.sigma * expf32(-h), x),
                (t.alpha * (1 - e2), d0),
                (t.alpha * ((1 - e2) / (-2 * h) + 1), d1),
                (t.alpha * ((1 - e2 - 2 * h) / (twoH * twoH) - 0.5), d2),
                (t.sigma * (1 - e2).squareRoot(), try drawn(noise)),
            ])
        case .sdeDpmsolver:
            // diffusers has no third-order SDE-DPMSolver update (it fails with UnboundLocalError).
            throw SchedulerError.unsupported(scheduler: name, feature: "solver_order 3 with algorithm_type sde-dpmsolver")
        }
    }

    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor {
        let items = try perItem(timesteps, batch: original, noise: noise, scheduler: name)
        let indices = try steps.noiseIndices(timesteps)
        var a: [Float] = [], b: [Float] = []
        for k in items {
            let (alpha, sigma) = alphaSigma(sigmas[indices[k]])
            a.append(alpha)
            b.append(sigma)
        }
        return mixPerItem(original, noise, a: a, b: b)
    }
}
