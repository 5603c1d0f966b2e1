import Foundation

/// What can go wrong above the models: choosing a model, checking a request, running it. Each case names the
/// parameter or path concerned, never a command-line flag (the CLI, the server and workers word their own).
public enum EngineError: Error, CustomStringConvertible, Equatable, Sendable {
    /// No file or folder at the model path.
    case noSuchModel(path: String)
    /// A single-file checkpoint (.safetensors, .ckpt) that cannot be used here: no place to convert it was given,
    /// or it holds a family this build does not convert (`reason` says which).
    case singleFileCheckpoint(path: String, reason: String)
    /// A folder that is not a diffusers pipeline folder this build can read.
    case notAModelFolder(path: String, reason: String)
    /// `model_index.json` names a pipeline class no engine serves.
    case unknownFamily(className: String, path: String, known: [String])
    /// A weight variant that no component of the model has.
    case variantNotFound(variant: String, path: String, available: [String])
    /// The model cannot do what the request asks (e.g. variations with plain Stable Diffusion).
    case unsupported(String)
    /// A request parameter out of range, non-finite, or not applicable.
    case invalidParameter(name: String, reason: String)
    /// The request would need more memory than the machine has free.
    case insufficientMemory(estimateBytes: Int64, availableBytes: Int64, detail: String)
    /// The run was stopped by its observer (a cancelled job, Ctrl-C); nothing was recorded.
    case cancelled
    /// The computation produced NaN or infinite values (a setting far outside what the model was trained on).
    case nonFinite(String)

    public var description: String {
        switch self {
        case let .noSuchModel(path):
            return "no model at \(path): the path does not exist (give a diffusers model folder)"
        case let .singleFileCheckpoint(path, reason):
            return "\(path) is a single-file checkpoint that cannot be used here: \(reason)"
        case let .notAModelFolder(path, reason):
            return "\(path) is not a model folder this build can read: \(reason)"
        case let .unknownFamily(className, path, known):
            return "\(path)/model_index.json names the pipeline class \(className), which this build cannot run (it runs: \(known.joined(separator: ", ")))"
        case let .variantNotFound(variant, path, available):
            let have = available.isEmpty ? "it has only plain weight files" : "variants there: \(available.joined(separator: ", "))"
            return "no component of \(path) has weights of the variant '\(variant)' (\(have))"
        case let .unsupported(message):
            return message
        case let .invalidParameter(name, reason):
            return "\(name): \(reason)"
        case let .insufficientMemory(estimate, available, detail):
            return String(format: "this request needs about %.1f GiB of memory (%@), but only %.1f GiB is available; use a smaller size or free memory",
                          Double(estimate) / 1_073_741_824, detail, Double(available) / 1_073_741_824)
        case .cancelled:
            return "cancelled; nothing was recorded for the image in progress"
        case let .nonFinite(what):
            return "the model produced non-finite values (\(what)); nothing was recorded. Lower the guidance scale or use settings nearer the model's defaults"
        }
    }
}
