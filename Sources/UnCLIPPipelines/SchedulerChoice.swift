import Foundation
import UnCLIPSchedulers
import UnCLIPWeights

/// A decoder scheduler chosen by diffusers class name or by a short alias, applied to the model's
/// scheduler_config.json as diffusers' `OtherScheduler.from_config(config, **overrides)` does.
public enum SchedulerChoice {
    /// Aliases → (diffusers class, config overrides). "karras" selects Karras sigmas, as A1111's names do.
    public static let aliases: [(String, String, [String: Any])] = [
        ("ddim", "DDIMScheduler", [:]),
        ("pndm", "PNDMScheduler", ["skip_prk_steps": true]),
        ("ddpm", "DDPMScheduler", [:]),
        ("euler", "EulerDiscreteScheduler", [:]),
        ("euler-karras", "EulerDiscreteScheduler", ["use_karras_sigmas": true]),
        ("euler-a", "EulerAncestralDiscreteScheduler", [:]),
        ("dpm++2m", "DPMSolverMultistepScheduler", ["algorithm_type": "dpmsolver++", "solver_order": 2]),
        ("dpm++2m-karras", "DPMSolverMultistepScheduler", ["algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": true]),
        ("lms", "LMSDiscreteScheduler", [:]),
        ("lms-karras", "LMSDiscreteScheduler", ["use_karras_sigmas": true]),
    ]

    /// Every accepted name, for help texts and errors.
    public static var names: [String] { aliases.map(\.0) + supportedSchedulers }

    /// The scheduler for `name` (nil: the folder's own), configured from `configURL`.
    public static func make(configURL: URL, name: String?) throws -> any Scheduler {
        guard let name else { return try makeScheduler(configURL: configURL) }
        guard let alias = aliases.first(where: { $0.0 == name.lowercased() }) else {
            guard supportedSchedulers.contains(name) else {
                throw SchedulerError.unknownScheduler(name: name, supported: names)
            }
            return try makeScheduler(configURL: configURL, override: name)
        }
        guard let data = FileManager.default.contents(atPath: configURL.path) else {
            throw WeightError.missingFile(path: configURL.path, what: "scheduler config")
        }
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true   // diffusers writes -Infinity into some scheduler configs
        guard case var .object(config) = try? decoder.decode(JSONValue.self, from: data) else {
            throw WeightError.badConfig(path: configURL.path, reason: "not a JSON object")
        }
        for (k, v) in alias.2 { config[k] = JSONValue(v) }
        config["_class_name"] = .string(alias.1)
        return try makeScheduler(configData: Data(JSONValue.object(config).json5.utf8), path: configURL.path)
    }
}

/// A JSON value that keeps non-finite numbers (written back as JSON5's Infinity/NaN).
enum JSONValue: Decodable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    init(_ any: Any) {
        switch any {
        case let b as Bool: self = .bool(b)
        case let i as Int: self = .number(Double(i))
        case let d as Double: self = .number(d)
        case let s as String: self = .string(s)
        default: self = .null
        }
    }

    var json5: String {
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
