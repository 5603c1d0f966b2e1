import Foundation

// The training noise schedule (betas, alphas, cumulative alphas) and the numpy/torch helpers the
// schedulers use to place their timesteps and sigmas. Each helper repeats the float32/float64 steps of
// the diffusers code it replaces, because the schedules feed every denoising step.

/// How the betas of the training schedule are laid out (`beta_schedule`).
public enum BetaSchedule: String, CaseIterable, Sendable {
    case linear
    case scaledLinear = "scaled_linear"
    case squaredcosCapV2 = "squaredcos_cap_v2"
    case sigmoid
    case laplace
}

/// What the model predicts (`prediction_type`).
public enum PredictionType: String, CaseIterable, Sendable {
    case epsilon
    case sample
    case vPrediction = "v_prediction"
}

/// How inference timesteps are spread over the training range (`timestep_spacing`).
public enum TimestepSpacing: String, CaseIterable, Sendable {
    case linspace
    case leading
    case trailing
}

/// The training schedule shared by all discrete schedulers.
public struct NoiseSchedule: Sendable {
    /// beta_t for t in 0..<numTrainTimesteps (float32, as diffusers stores them).
    public let betas: [Float]
    /// 1 - beta_t.
    public let alphas: [Float]
    /// Cumulative product of `alphas` (torch accumulates it in double, then rounds to float32).
    public let alphasCumprod: [Float]

    /// The most training timesteps a config may declare (see `init`).
    public static let maxTrainTimesteps = 100_000

    /// Builds the schedule like the diffusers scheduler constructors do.
    public init(numTrainTimesteps: Int, betaStart: Double, betaEnd: Double, betaSchedule: BetaSchedule,
                trainedBetas: [Double]?, rescaleBetasZeroSnr: Bool) throws {
        guard numTrainTimesteps >= 1 else {
            throw SchedulerError.invalidConfig("num_train_timesteps must be >= 1, got \(numTrainTimesteps)")
        }
        // Every array of the schedule is this long: a config asking for 10^12 steps would allocate terabytes.
        // Trained models use 1,000 (a few 2,000 or 4,000).
        guard numTrainTimesteps <= Self.maxTrainTimesteps else {
            throw SchedulerError.invalidConfig("num_train_timesteps must be at most \(Self.maxTrainTimesteps), got \(numTrainTimesteps)")
        }
        var betas: [Float]
        if let trained = trainedBetas {
            guard trained.count == numTrainTimesteps else {
                throw SchedulerError.invalidConfig(
                    "trained_betas has \(trained.count) values but num_train_timesteps is \(numTrainTimesteps)")
            }
            betas = trained.map { Float($0) }
        } else {
            switch betaSchedule {
            case .linear:
                betas = torchLinspace(betaStart, betaEnd, numTrainTimesteps)
            case .scaledLinear:
                // torch.linspace(start**0.5, end**0.5, n) ** 2, the square taken in float32.
                betas = torchLinspace(betaStart.squareRoot(), betaEnd.squareRoot(), numTrainTimesteps).map { $0 * $0 }
            case .squaredcosCapV2:
                betas = betasForAlphaBar(numTrainTimesteps) { t in
                    let c = Foundation.cos((t + 0.008) / 1.008 * Double.pi / 2)
                    return c * c
                }
            case .laplace:
                betas = betasForAlphaBar(numTrainTimesteps) { t in
                    let sign: Double = 0.5 - t < 0 ? -1 : 1  // math.copysign(1, 0.5 - t)
                    let lmb = -0.5 * sign * Foundation.log(1 - 2 * abs(0.5 - t) + 1e-6)
                    let snr = Foundation.exp(lmb)
                    return (snr / (1 + snr)).squareRoot()
                }
            case .sigmoid:
                // torch.sigmoid(torch.linspace(-6, 6, n)) * (end - start) + start, all float32.
                let range = Float(betaEnd - betaStart), start = Float(betaStart)
                betas = torchLinspace(-6, 6, numTrainTimesteps).map { x in
                    (1 / (1 + Foundation.exp(-x))) * range + start
                }
            }
        }
        if rescaleBetasZeroSnr { betas = rescaleZeroTerminalSnr(betas) }
        self.betas = betas
        alphas = betas.map { 1 - $0 }
        alphasCumprod = cumulativeProduct(alphas)
    }
}

/// torch.linspace(start, end, steps, dtype=float32): step and values in float32 with one rounding
/// (FMA) per value, counting from `start` in the first half and back from `end` in the second.
func torchLinspace(_ start: Double, _ end: Double, _ steps: Int) -> [Float] {
    let s = Float(start), e = Float(end)
    if steps == 1 { return [s] }
    let step = (e - s) / Float(steps - 1)
    let halfway = steps / 2
    return (0..<steps).map { i in
        i < halfway ? s.addingProduct(step, Float(i)) : e.addingProduct(-step, Float(steps - i - 1))
    }
}

/// diffusers' betas_for_alpha_bar: betas from a continuous alpha-bar function, in double, capped at 0.999.
private func betasForAlphaBar(_ n: Int, _ alphaBar: (Double) -> Double) -> [Float] {
    (0..<n).map { i in
        let t1 = Double(i) / Double(n), t2 = Double(i + 1) / Double(n)
        return Float(min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
    }
}

/// torch.cumprod on CPU accumulates float32 input in double and rounds each partial product.
func cumulativeProduct(_ values: [Float]) -> [Float] {
    var acc = 1.0
    return values.map { v in
        acc *= Double(v)
        return Float(acc)
    }
}

/// diffusers' rescale_zero_terminal_snr (float32 tensor arithmetic).
private func rescaleZeroTerminalSnr(_ betas: [Float]) -> [Float] {
    let cumprod = cumulativeProduct(betas.map { 1 - $0 })
    var sqrtBar = cumprod.map { $0.squareRoot() }
    let first = sqrtBar[0], last = sqrtBar[sqrtBar.count - 1]
    let factor = first / (first - last)
    for i in sqrtBar.indices { sqrtBar[i] = (sqrtBar[i] - last) * factor }
    let bar = sqrtBar.map { $0 * $0 }
    var out = [Float](repeating: 0, count: bar.count)
    out[0] = 1 - bar[0]
    for i in 1..<bar.count { out[i] = 1 - bar[i] / bar[i - 1] }
    return out
}

// MARK: numpy helpers (float64)

/// np.linspace(start, stop, num): `i * step + start`, the last value set to `stop`.
func npLinspace(_ start: Double, _ stop: Double, _ num: Int) -> [Double] {
    guard num > 0 else { return [] }
    if num == 1 { return [start] }
    let step = (stop - start) / Double(num - 1)
    var y: [Double]
    if step == 0 {
        y = (0..<num).map { Double($0) / Double(num - 1) * (stop - start) + start }
    } else {
        y = (0..<num).map { Double($0) * step + start }
    }
    y[num - 1] = stop
    return y
}

/// np.arange(start, stop, step) for float steps: numpy fills `start + i * delta` with
/// `delta = (start + step) - start`, after `ceil((stop - start) / step)` elements.
func npArange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
    let length = Int(((stop - start) / step).rounded(.up))
    guard length > 0 else { return [] }
    if length == 1 { return [start] }
    let second = start + step
    let delta = second - start
    var out = [start, second]
    for i in 2..<length { out.append(start + Double(i) * delta) }
    return out
}

/// np.round: half to even.
@inline(__always) func npRound(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }

/// np.interp(x, arange(len(fp)), fp) with numpy's formula `slope * (x - xp[j]) + fp[j]`.
func npInterpOnIndexGrid(_ x: Double, _ fp: [Double]) -> Double {
    let n = fp.count
    if x.isNaN { return x }
    if x <= 0 { return fp[0] }
    if x >= Double(n - 1) { return fp[n - 1] }
    let j = Int(x.rounded(.down))
    if x == Double(j) { return fp[j] }
    let slope = fp[j + 1] - fp[j]  // divided by xp[j+1] - xp[j] == 1
    return slope * (x - Double(j)) + fp[j]
}

/// sigma_t = sqrt((1 - alphas_cumprod) / alphas_cumprod) in float32, ascending in t. (torch's
/// vectorised sqrt is not correctly rounded, so about 1 in 6 values differs from diffusers' by an ulp.)
func trainingSigmas(_ alphasCumprod: [Float]) -> [Float] {
    alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
}

/// diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma matches `sigma`.
func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
    let logSigma = Foundation.log(max(sigma, 1e-10))
    // np.cumsum(dists >= 0).argmax() is the last index whose log-sigma is <= logSigma (0 if none).
    var low = 0
    for (i, l) in logSigmas.enumerated() where logSigma - Double(l) >= 0 { low = i }
    low = min(low, logSigmas.count - 2)
    let high = low + 1
    let lowValue = Double(logSigmas[low]), highValue = Double(logSigmas[high])
    var w = (lowValue - logSigma) / (lowValue - highValue)
    w = min(max(w, 0), 1)
    return (1 - w) * Double(low) + w * Double(high)
}

/// Karras et al. (2022) sigmas: rho = 7 interpolation between sigmaMax and sigmaMin (float64).
func karrasSigmas(sigmaMin: Double, sigmaMax: Double, count: Int) -> [Double] {
    let rho = 7.0
    let minInvRho = Foundation.pow(sigmaMin, 1 / rho), maxInvRho = Foundation.pow(sigmaMax, 1 / rho)
    return npLinspace(0, 1, count).map { Foundation.pow(maxInvRho + $0 * (minInvRho - maxInvRho), rho) }
}

/// Exponentially spaced sigmas from sigmaMax down to sigmaMin (float64).
func exponentialSigmas(sigmaMin: Double, sigmaMax: Double, count: Int) -> [Double] {
    npLinspace(Foundation.log(sigmaMax), Foundation.log(sigmaMin), count).map { Foundation.exp($0) }
}

/// float32 log, correctly rounded via double (torch's and numpy's vectorised logs are within an ulp of it).
@inline(__always) func logf32(_ x: Float) -> Float { Float(Foundation.log(Double(x))) }
/// float32 exp, correctly rounded via double (torch's vectorised exp is within an ulp of it).
@inline(__always) func expf32(_ x: Float) -> Float { Float(Foundation.exp(Double(x))) }

/// The inference timesteps of `set_timesteps` for the config's spacing, descending, as the float64
/// values numpy computes before the DDPM family rounds them to integers (leading and trailing ones are
/// whole numbers already).
private func spacedTimesteps(_ t: TrainingSchedule, count: Int) -> [Double] {
    let trainSteps = t.numTrainTimesteps
    switch t.timestepSpacing {
    case .linspace:
        return npLinspace(0, Double(trainSteps - 1), count).reversed()
    case .leading:
        let ratio = trainSteps / count
        return (0..<count).reversed().map { Double($0 * ratio + t.stepsOffset) }
    case .trailing:
        let ratio = Double(trainSteps) / Double(count)
        return npArange(Double(trainSteps), 0, -ratio).map { npRound($0) - 1 }
    }
}

/// Timesteps of the DDPM-family `set_timesteps` (DDPM, DDIM, PNDM): integers, descending.
func discreteTimesteps(_ t: TrainingSchedule, count: Int) -> [Int] {
    spacedTimesteps(t, count: count).map { Int(npRound($0)) }
}

/// Timesteps of the sigma-based `set_timesteps` (Euler, Euler ancestral, LMS) as float32, descending.
func floatTimesteps(_ t: TrainingSchedule, count: Int) -> [Float] {
    spacedTimesteps(t, count: count).map { Float($0) }
}
