import Foundation
import UnCLIPWeights

/// A named sampler: a diffusers scheduler class with config overrides, applied to a model's
/// scheduler_config.json as diffusers' `OtherScheduler.from_config(config, **overrides)` does, and the
/// name AUTOMATIC1111's web UI gives the same sampler.
public struct SchedulerPreset: Sendable, Equatable {
    /// Our short name ("dpm++2m-karras").
    public let alias: String
    /// The diffusers class it builds.
    public let className: String
    /// Config keys set on top of the model's config.
    public let overrides: [String: JSONValue]
    /// A1111's sampler without the schedule type ("DPM++ 2M"), as its UI lists it from version 1.9 on.
    public let a1111Sampler: String

    /// Whether the preset uses Karras sigmas.
    public var usesKarrasSigmas: Bool { overrides["use_karras_sigmas"] == .bool(true) }

    /// A1111's name with the schedule folded in ("DPM++ 2M Karras"), as versions before 1.9 list it and
    /// as PNG `parameters` chunks write it ("Sampler: DPM++ 2M Karras").
    public var a1111Name: String { usesKarrasSigmas ? a1111Sampler + " Karras" : a1111Sampler }

    /// A1111's "Schedule type" for `a1111Sampler` (version 1.9 on): "Karras", or for uniform sigmas
    /// "Automatic" where that is the sampler's own default and "Uniform" where it is not (A1111's
    /// automatic schedule for DPM++ 2M is Karras).
    public var a1111ScheduleType: String {
        if usesKarrasSigmas { return "Karras" }
        return SchedulerRegistry.automaticIsKarras.contains(a1111Sampler) ? "Uniform" : "Automatic"
    }
}

/// What a scheduler name resolved to: a class with overrides, and the preset when the name was one.
public struct SchedulerSelection: Sendable, Equatable {
    public let className: String
    public let overrides: [String: JSONValue]
    /// nil for a bare diffusers class name (the model's config as it is, only the class changed).
    public let preset: SchedulerPreset?
}

/// The decoder schedulers by name: our aliases, diffusers class names and A1111's sampler names, one
/// table for the CLI, the HTTP server and PNG metadata.
public enum SchedulerRegistry {
    /// Every preset. The non-Karras ones set use_karras_sigmas false explicitly, so that "euler" on a
    /// model whose own config has Karras sigmas is still A1111's Euler.
    public static let presets: [SchedulerPreset] = [
        preset("ddim", DDIMScheduler.self, "DDIM"),
        // A1111's PLMS is PNDM without the Runge-Kutta warm-up.
        preset("pndm", PNDMScheduler.self, "PLMS", ["skip_prk_steps": .bool(true)]),
        // A1111 has no DDPM sampler; the plain name is the closest honest label.
        preset("ddpm", DDPMScheduler.self, "DDPM"),
        preset("euler", EulerDiscreteScheduler.self, "Euler", karras: false),
        preset("euler-karras", EulerDiscreteScheduler.self, "Euler", karras: true),
        preset("euler-a", EulerAncestralDiscreteScheduler.self, "Euler a"),
        preset("dpm++2m", DPMSolverMultistepScheduler.self, "DPM++ 2M", dpmPlusPlus2M, karras: false),
        preset("dpm++2m-karras", DPMSolverMultistepScheduler.self, "DPM++ 2M", dpmPlusPlus2M, karras: true),
        preset("lms", LMSDiscreteScheduler.self, "LMS", karras: false),
        preset("lms-karras", LMSDiscreteScheduler.self, "LMS", karras: true),
    ]

    /// A1111 (1.9 on) samplers whose "Automatic" schedule type means Karras sigmas.
    static let automaticIsKarras: Set<String> = ["DPM++ 2M"]

    /// The A1111 schedule types the lookup understands.
    public static let scheduleTypes = ["Automatic", "Karras", "Uniform"]

    private static let dpmPlusPlus2M: [String: JSONValue] = ["algorithm_type": .string("dpmsolver++"), "solver_order": .number(2)]

    private static func preset<S: ConfigurableScheduler>(_ alias: String, _ type: S.Type, _ a1111: String,
                                                         _ overrides: [String: JSONValue] = [:],
                                                         karras: Bool? = nil) -> SchedulerPreset {
        var all = overrides
        if let karras { all["use_karras_sigmas"] = .bool(karras) }
        return SchedulerPreset(alias: alias, className: S.className, overrides: all, a1111Sampler: a1111)
    }

    /// diffusers' defaults of the keys the presets set, for telling which preset a model's own config is.
    private static let overrideDefaults: [String: JSONValue] = [
        "skip_prk_steps": .bool(PNDMScheduler.Config().skipPrkSteps),
        "algorithm_type": .string(DPMSolverMultistepScheduler.Config().algorithmType.rawValue),
        "solver_order": .number(Double(DPMSolverMultistepScheduler.Config().solverOrder)),
        "use_karras_sigmas": .bool(false),
    ]

    /// Every name `lookup` accepts without a schedule type: aliases, A1111 names, diffusers class names.
    public static var acceptedNames: [String] {
        var names: [String] = []
        for name in presets.map(\.alias) + presets.map(\.a1111Name) + supportedSchedulers
        where !names.contains(where: { $0.lowercased() == name.lowercased() }) {
            names.append(name)
        }
        return names
    }

    /// The scheduler a name stands for. `name` is one of our aliases, an A1111 sampler name ("DPM++ 2M
    /// Karras", any case) or a diffusers class name; with `scheduleType` (A1111 1.9's split form) `name` is
    /// A1111's sampler ("DPM++ 2M") and `scheduleType` one of `scheduleTypes`, where "Automatic" means
    /// the sampler's own default. An unknown name throws `SchedulerError.unknownScheduler` listing the
    /// accepted ones.
    public static func lookup(_ name: String, scheduleType: String? = nil) throws -> SchedulerSelection {
        let key = name.trimmingCharacters(in: .whitespaces).lowercased()
        if let scheduleType { return try lookup(sampler: key, scheduleType: scheduleType, name: name) }
        if let p = presets.first(where: { $0.alias == key || $0.a1111Name.lowercased() == key }) {
            return SchedulerSelection(className: p.className, overrides: p.overrides, preset: p)
        }
        if let cls = supportedSchedulers.first(where: { $0.lowercased() == key }) {
            return SchedulerSelection(className: cls, overrides: [:], preset: nil)
        }
        throw SchedulerError.unknownScheduler(name: name, supported: acceptedNames)
    }

    private static func lookup(sampler key: String, scheduleType: String, name: String) throws -> SchedulerSelection {
        // A1111 lets a " Karras" suffix on the sampler name win over the schedule type; so do we.
        if let p = presets.first(where: { $0.a1111Name.lowercased() == key && $0.usesKarrasSigmas }) {
            return SchedulerSelection(className: p.className, overrides: p.overrides, preset: p)
        }
        let candidates = presets.filter { $0.a1111Sampler.lowercased() == key }
        guard let sampler = candidates.first?.a1111Sampler else {
            let samplers = presets.map(\.a1111Sampler).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            throw SchedulerError.unknownScheduler(name: name, supported: samplers)
        }
        let karras: Bool
        switch scheduleType.trimmingCharacters(in: .whitespaces).lowercased() {
        case "karras": karras = true
        case "uniform": karras = false
        case "automatic", "": karras = automaticIsKarras.contains(sampler)
        default: throw SchedulerError.unknownScheduleType(scheduleType, sampler: sampler, supported: scheduleTypes)
        }
        guard let p = candidates.first(where: { $0.usesKarrasSigmas == karras }) else {
            let types = scheduleTypes.filter { $0 != (karras ? "Karras" : "Uniform") }
            throw SchedulerError.unknownScheduleType(scheduleType, sampler: sampler, supported: types)
        }
        return SchedulerSelection(className: p.className, overrides: p.overrides, preset: p)
    }

    /// The scheduler `name` selects (nil: the model's own), configured from the model's
    /// scheduler_config.json at `configURL` with the selection's overrides.
    public static func make(configURL: URL, name: String?, scheduleType: String? = nil) throws -> any Scheduler {
        guard let name else { return try makeScheduler(configURL: configURL) }
        let selection = try lookup(name, scheduleType: scheduleType)
        let config = try mergedConfig(configURL: configURL, selection: selection)
        return try makeScheduler(configData: Data(JSONValue.object(config).json5.utf8), path: configURL.path)
    }

    /// The preset that `make(configURL:name:scheduleType:)` amounts to: the named one, or for the model's
    /// own scheduler (`name` nil) or a bare class name, the preset of that class whose overrides the
    /// config already has (its Karras flag, and for PLMS and DPM++ 2M their solver settings); nil when
    /// none matches (e.g. UnCLIPScheduler, or DPM-Solver of order 3).
    public static func preset(configURL: URL, name: String?, scheduleType: String? = nil) throws -> SchedulerPreset? {
        let selection = try name.map { try lookup($0, scheduleType: scheduleType) }
        if let preset = selection?.preset { return preset }
        let config = try mergedConfig(configURL: configURL, selection: selection)
        guard case let .string(className)? = config["_class_name"] else { return nil }
        return presets.first { p in
            p.className == className && p.overrides.allSatisfy { key, value in (config[key] ?? overrideDefaults[key]) == value }
        }
    }

    /// A1111's name ("DPM++ 2M Karras") for what `make(configURL:name:scheduleType:)` builds, or nil where
    /// A1111 has no such sampler (see `preset(configURL:name:scheduleType:)`).
    public static func a1111Name(configURL: URL, name: String?, scheduleType: String? = nil) throws -> String? {
        try preset(configURL: configURL, name: name, scheduleType: scheduleType)?.a1111Name
    }

    /// The model's config with the selection's class and overrides.
    private static func mergedConfig(configURL: URL, selection: SchedulerSelection?) throws -> [String: JSONValue] {
        let data = try readSchedulerConfig(configURL)
        try requireUTF8Text(data, path: configURL.path)
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true   // diffusers writes -Infinity into some scheduler configs
        guard case var .object(config) = try? decoder.decode(JSONValue.self, from: data) else {
            throw WeightError.badConfig(path: configURL.path, reason: "not a JSON object")
        }
        if let selection {
            for (k, v) in selection.overrides { config[k] = v }
            config["_class_name"] = .string(selection.className)
        }
        return config
    }
}

/// A JSON value that keeps non-finite numbers (written back as JSON5's Infinity/NaN).
public enum JSONValue: Decodable, Sendable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// The value as JSON5 text.
    public var json5: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .number(d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
            return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
        case let .string(s):
            let data = try! JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])
            return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
        case let .array(a): return "[" + a.map(\.json5).joined(separator: ",") + "]"
        case let .object(o): return "{" + o.map { JSONValue.string($0.key).json5 + ":" + $0.value.json5 }.joined(separator: ",") + "}"
        }
    }
}
