import Foundation

/// Everything that can be wrong with a weight file, a model folder or a config, said with where.
public enum WeightError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case badHeader(path: String, reason: String)
    case missingTensor(name: String, files: [String], expectedShape: [Int])
    case shapeMismatch(name: String, file: String, expected: [Int], found: [Int])
    case unsupportedDType(name: String, file: String, dtype: String)
    case missingFile(path: String, what: String)
    case badConfig(path: String, reason: String)
    /// A torch checkpoint (zip + pickle) that is damaged or holds what a tensor state dict cannot.
    case badCheckpoint(path: String, reason: String)
    /// A pickle that asks for something the restricted unpickler will not do (an unknown global, an opcode
    /// outside the allowed set). Nothing in it was run.
    case refusedPickle(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "cannot open \(path): \(reason)"
        case let .badHeader(path, reason): return "invalid safetensors file \(path): \(reason)"
        case let .missingTensor(name, files, shape):
            return "missing weight '\(name)' (expected shape \(shape)) in \(files.joined(separator: ", "))"
        case let .shapeMismatch(name, file, expected, found):
            return "weight '\(name)' in \(file) has shape \(found), expected \(expected)"
        case let .unsupportedDType(name, file, dtype):
            return "weight '\(name)' in \(file) has dtype \(dtype), which cannot be used as a float tensor"
        case let .missingFile(path, what): return "missing \(what): \(path)"
        case let .badConfig(path, reason): return "invalid config \(path): \(reason)"
        case let .badCheckpoint(path, reason): return "invalid checkpoint \(path): \(reason)"
        case let .refusedPickle(path, reason):
            return "refused to load \(path): \(reason) (only tensor state dicts are read; nothing in the file was run)"
        }
    }
}
