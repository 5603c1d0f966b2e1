import Foundation

/// Errors raised while loading a CLIP tokenizer folder; each names the file and what is wrong.
public enum CLIPTokenizerError: Error, CustomStringConvertible, Equatable {
    /// The folder lacks the files needed (`what` lists them).
    case missingFile(directory: String, what: String)
    /// A file could not be read or parsed as JSON / merges.
    case unreadableFile(path: String, reason: String)
    /// A file parses but its content is not a valid CLIP tokenizer description.
    case invalidContent(path: String, reason: String)
    /// A configuration option this implementation does not support (rather than silently ignoring it).
    case unsupported(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missingFile(directory, what):
            return "CLIP tokenizer: \(what) not found in \(directory)"
        case let .unreadableFile(path, reason):
            return "CLIP tokenizer: cannot read \(path): \(reason)"
        case let .invalidContent(path, reason):
            return "CLIP tokenizer: invalid \(path): \(reason)"
        case let .unsupported(path, reason):
            return "CLIP tokenizer: unsupported setting in \(path): \(reason)"
        }
    }
}
