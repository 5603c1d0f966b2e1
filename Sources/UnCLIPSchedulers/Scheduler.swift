import Foundation
import UnCLIPRandom
import UnCLIPTensor
import UnCLIPWeights

/// A diffusers noise scheduler. A pipeline drives every scheduler the same way:
///
///     try scheduler.setTimesteps(steps)
///     var x = scaled(noise, scheduler.initNoiseSigma)
///     for t in scheduler.timesteps {
///         let input = try scheduler.scaleModelInput(x, timestep: t)
///         let output = model(input, t)               // t is the float the model's time embedding gets
///         x = try scheduler.step(modelOutput: output, timestep: t, sample: x, generator: g).prevSample
///     }
public protocol Scheduler {
    /// The diffusers class name (`_class_name`), e.g. "DDPMScheduler".
    var name: String { get }
    /// The timesteps of the current schedule in visiting order, as the float32 value diffusers passes to
    /// the model (integer schedulers' timesteps are whole numbers).
    var timesteps: [Float] { get }
    /// Standard deviation of the initial noise; pipelines multiply their N(0, 1) latents by it.
    var initNoiseSigma: Float { get }
    /// diffusers' `set_timesteps(count)`: the schedule for `count` inference steps; resets step state.
    mutating func setTimesteps(_ count: Int) throws
    /// diffusers' `set_begin_index(index)`: the caller starts stepping at schedule position `index` (0 for a
    /// full run; image-to-image skips the first ones). Without it, the sigma schedulers find their position
    /// from the first timestep, which is ambiguous where the schedule repeats a timestep. Call it after
    /// `setTimesteps`, which clears it. Schedulers that index by timestep value ignore it.
    mutating func setBeginIndex(_ index: Int) throws
    /// diffusers' `scale_model_input(sample, t)`: the model input for timestep `timestep`.
    func scaleModelInput(_ sample: Tensor, timestep: Float) throws -> Tensor
    /// diffusers' `step(model_output, t, sample, generator=...)`; `generator` is needed only by steps that draw noise.
    mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, generator: RandomSource?) throws -> SchedulerOutput
    /// diffusers' `add_noise(original, noise, timesteps)`: one timestep per batch item, or one for all.
    func addNoise(original: Tensor, noise: Tensor, timesteps: [Float]) throws -> Tensor
}

extension Scheduler {
    /// DDPM, DDIM, PNDM and UnCLIP look their coefficients up by timestep value (or count their calls),
    /// so where the caller starts does not change what a step does.
    public mutating func setBeginIndex(_ index: Int) throws {}
}

/// A scheduler built from its diffusers config, the way `makeScheduler` builds every class.
public protocol ConfigurableScheduler: Scheduler {
    associatedtype Config: Decodable
    /// The diffusers class name (`_class_name`).
    static var className: String { get }
    init(config: Config) throws
}

/// The result of one scheduler step.
public struct SchedulerOutput {
    /// x_{t-1}, the next sample.
    public let prevSample: Tensor
    /// The predicted clean sample x_0, where the scheduler computes one (nil for PNDM and DPM-Solver's
    /// epsilon algorithms).
    public let predOriginalSample: Tensor?
}

/// What can go wrong when building or stepping a scheduler.
public enum SchedulerError: Error, CustomStringConvertible, Equatable {
    /// `_class_name` (or an override) names no scheduler this package has.
    case unknownScheduler(name: String, supported: [String])
    /// An A1111 schedule type the sampler does not have here.
    case unknownScheduleType(String, sampler: String, supported: [String])
    /// A config value combination the scheduler cannot run.
    case invalidConfig(String)
    /// A config feature this port does not implement.
    case unsupported(scheduler: String, feature: String)
    /// An inference step count the scheduler rejects.
    case invalidStepCount(scheduler: String, count: Int, reason: String)
    /// A timestep outside the schedule (or not a whole number where one is needed).
    case invalidTimestep(scheduler: String, timestep: Float, reason: String)
    /// Tensors whose shapes do not fit together.
    case shapeMismatch(scheduler: String, what: String, expected: [Int], got: [Int])
    /// The step has to draw noise but no generator was given.
    case generatorRequired(scheduler: String)
    /// Called out of order (before setTimesteps, after the last step, ...).
    case invalidState(scheduler: String, reason: String)

    public var description: String {
        switch self {
        case let .unknownScheduler(name, supported):
            return "unknown scheduler '\(name)' (supported: \(supported.joined(separator: ", ")))"
        case let .unknownScheduleType(type, sampler, supported):
            return "unknown schedule type '\(type)' for sampler '\(sampler)' (supported: \(supported.joined(separator: ", ")))"
        case let .invalidConfig(reason): return "invalid scheduler config: \(reason)"
        case let .unsupported(scheduler, feature): return "\(scheduler): \(feature) is not supported"
        case let .invalidStepCount(scheduler, count, reason):
            return "\(scheduler): cannot use \(count) inference steps: \(reason)"
        case let .invalidTimestep(scheduler, timestep, reason): return "\(scheduler): timestep \(timestep): \(reason)"
        case let .shapeMismatch(scheduler, what, expected, got):
            return "\(scheduler): \(what) has shape \(got), expected \(expected)"
        case let .generatorRequired(scheduler):
            return "\(scheduler): this step draws noise, pass a generator"
        case let .invalidState(scheduler, reason): return "\(scheduler): \(reason)"
        }
    }
}

// MARK: factory

/// The scheduler classes `makeScheduler` can build, in the order they are listed to users.
let schedulerTypes: [any ConfigurableScheduler.Type] = [
    DDPMScheduler.self, UnCLIPScheduler.self, DDIMScheduler.self, PNDMScheduler.self,
    EulerDiscreteScheduler.self, EulerAncestralDiscreteScheduler.self,
    DPMSolverMultistepScheduler.self, LMSDiscreteScheduler.self,
]

/// The scheduler classes `makeScheduler` can build, by diffusers class name.
public let supportedSchedulers: [String] = schedulerTypes.map { $0.className }

/// Builds the scheduler a `scheduler_config.json` describes. `override` picks another class fed with the
/// same config, like diffusers' `OtherScheduler.from_config(config)`: keys it does not know are ignored and
/// missing ones take that class's defaults. A `_class_name` this package does not have is an error naming
/// the class and the file (there is no fallback class).
public func makeScheduler(configURL: URL, override name: String? = nil) throws -> any Scheduler {
    try makeScheduler(configData: readSchedulerConfig(configURL), path: configURL.path, override: name)
}

/// `makeScheduler(configURL:override:)` for config JSON already in memory; `path` names it in errors.
public func makeScheduler(configData data: Data, path: String, override name: String? = nil) throws -> any Scheduler {
    let className: String
    if let name {
        className = name
    } else {
        struct ClassName: Decodable {
            let name: String
            enum CodingKeys: String, CodingKey { case name = "_class_name" }
        }
        className = try decodeSchedulerConfig(ClassName.self, from: data, path: path).name
    }
    guard let type = schedulerTypes.first(where: { $0.className == className }) else {
        let error = SchedulerError.unknownScheduler(name: className, supported: supportedSchedulers)
        // An override is the caller's choice; a bad _class_name is the file's fault, so name the file.
        if name != nil { throw error }
        throw WeightError.badConfig(path: path, reason: "_class_name: \(error)")
    }
    do {
        return try build(type, data: data, path: path)
    } catch let error as SchedulerError {
        // Value combinations the constructor rejects are config errors too: say which file.
        throw WeightError.badConfig(path: path, reason: "\(className): \(error)")
    }
}

private func build<S: ConfigurableScheduler>(_ type: S.Type, data: Data, path: String) throws -> any Scheduler {
    try S(config: decodeSchedulerConfig(S.Config.self, from: data, path: path))
}

/// The bytes of a scheduler_config.json, or an error naming the missing (or oversized) file.
func readSchedulerConfig(_ url: URL) throws -> Data {
    try readConfigBytes(url, what: "scheduler config")
}

/// Decodes a scheduler config as `loadJSONConfig` does (JSON5: diffusers writes Python's `-Infinity`, e.g.
/// `lambda_min_clipped`); a `SchedulerError` thrown while decoding becomes a config error naming the file.
func decodeSchedulerConfig<C: Decodable>(_ type: C.Type, from data: Data, path: String) throws -> C {
    try decodeJSONConfig(type, from: data, path: path)
}

// MARK: config reading

struct ConfigKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Reads diffusers config keys with per-class defaults; `null` counts as absent, as in diffusers.
struct ConfigReader {
    let container: KeyedDecodingContainer<ConfigKey>

    init(_ decoder: Decoder) throws { container = try decoder.container(keyedBy: ConfigKey.self) }

    /// The value of `key`, or `fallback` when it is missing or null.
    func callAsFunction<T: Decodable>(_ key: String, _ fallback: T) throws -> T {
        try optional(key) ?? fallback
    }

    /// The value of `key`, or nil when it is missing or null.
    func optional<T: Decodable>(_ key: String) throws -> T? {
        let k = ConfigKey(key)
        guard container.contains(k), try !container.decodeNil(forKey: k) else { return nil }
        return try container.decode(T.self, forKey: k)
    }

    /// A string option mapped to `E`, restricted to `allowed`; anything else is a ConfigValueError.
    func choice<E: RawRepresentable>(_ key: String, _ fallback: E, allowed: [E],
                                     aliases: [String: E] = [:]) throws -> E where E.RawValue == String {
        guard let raw: String = try optional(key) else { return fallback }
        if let alias = aliases[raw] { return alias }
        guard let value = E(rawValue: raw), allowed.contains(where: { $0.rawValue == raw }) else {
            throw ConfigValueError(key: key, value: raw, allowed: allowed.map(\.rawValue))
        }
        return value
    }
}

// MARK: shared step helpers

/// A timestep that must be a whole number in 0..<limit (DDPM-family schedulers index arrays with it).
func integerTimestep(_ t: Float, limit: Int, scheduler: String) throws -> Int {
    guard t.isFinite, t.rounded() == t, t >= 0, t < Float(limit) else {
        throw SchedulerError.invalidTimestep(scheduler: scheduler, timestep: t,
                                             reason: "expected a whole number in 0..<\(limit)")
    }
    return Int(t)
}

/// Checks that the model output has the sample's shape.
func checkSameShape(_ output: Tensor, _ sample: Tensor, scheduler: String) throws {
    guard output.shape == sample.shape else {
        throw SchedulerError.shapeMismatch(scheduler: scheduler, what: "model output", expected: sample.shape, got: output.shape)
    }
}

/// Per-batch-item coefficients for add_noise: one timestep for all items, or one per item.
func perItem(_ timesteps: [Float], batch original: Tensor, noise: Tensor, scheduler: String) throws -> [Int] {
    guard noise.shape == original.shape else {
        throw SchedulerError.shapeMismatch(scheduler: scheduler, what: "noise", expected: original.shape, got: noise.shape)
    }
    let batch = original.rank == 0 ? 1 : original.shape[0]
    guard timesteps.count == batch || timesteps.count == 1 else {
        throw SchedulerError.shapeMismatch(scheduler: scheduler, what: "timesteps", expected: [batch], got: [timesteps.count])
    }
    return (0..<batch).map { timesteps.count == 1 ? 0 : $0 }
}

/// `a[i] * original + b[i] * noise` per batch item i (add_noise of the alpha-based schedulers).
func mixPerItem(_ original: Tensor, _ noise: Tensor, a: [Float], b: [Float]) -> Tensor {
    let out = Tensor(uninitialized: original.shape)
    let batch = a.count
    let per = original.count / max(batch, 1)
    for n in 0..<batch {
        let o = out.pointer + n * per, x = original.pointer + n * per, e = noise.pointer + n * per
        let ca = a[n], cb = b[n]
        for i in 0..<per { o[i] = ca * x[i] + cb * e[i] }
    }
    return out
}

/// `original + noise * sigma[i]` per batch item i (add_noise of the sigma-based schedulers).
func addSigmaNoisePerItem(_ original: Tensor, _ noise: Tensor, sigmas: [Float]) -> Tensor {
    let out = Tensor(uninitialized: original.shape)
    let batch = sigmas.count
    let per = original.count / max(batch, 1)
    for n in 0..<batch {
        let o = out.pointer + n * per, x = original.pointer + n * per, e = noise.pointer + n * per
        let s = sigmas[n]
        for i in 0..<per { o[i] = x[i] + e[i] * s }
    }
    return out
}

/// add_noise of the alpha-based schedulers: sqrt(ᾱ_t)·x0 + sqrt(1 - ᾱ_t)·noise.
func alphaAddNoise(original: Tensor, noise: Tensor, timesteps: [Float], alphasCumprod: [Float],
                   scheduler: String) throws -> Tensor {
    let items = try perItem(timesteps, batch: original, noise: noise, scheduler: scheduler)
    var a: [Float] = [], b: [Float] = []
    for k in items {
        let t = try integerTimestep(timesteps[k], limit: alphasCumprod.count, scheduler: scheduler)
        a.append(alphasCumprod[t].squareRoot())
        b.append((1 - alphasCumprod[t]).squareRoot())
    }
    return mixPerItem(original, noise, a: a, b: b)
}
