import Foundation
import UnCLIPTensor

/// All tensors of one model component, possibly spread over shards, looked up by checkpoint key.
public final class WeightMap: @unchecked Sendable {
    public let files: [any WeightSource]
    private var index: [String: (any WeightSource, TensorInfo)] = [:]
    /// Prefix rewrites tried when a key is missing, e.g. ("text_model.", "") for checkpoints saved
    /// without the wrapper prefix. A short declarative list, as real checkpoints vary only this way.
    public var prefixAliases: [(String, String)] = []
    /// Infix renames tried when a key is missing: (our name's part, the checkpoint's part),
    /// e.g. (".to_q.", ".query.") for VAE checkpoints saved with the legacy attention names.
    public var infixAliases: [(String, String)] = []
    /// Precision of the products of Linear/Conv2d layers built from this map (bf16 packs their weights at load).
    /// On a CPU without AVX512_BF16, bf16 falls back to fp32 (`GemmPrecision.runnable`).
    public var gemmPrecision: GemmPrecision = .fp32

    public init(files: [any WeightSource]) {
        self.files = files
        for f in files { for (name, info) in f.tensors { index[name] = (f, info) } }
    }

    /// Opens each file by its kind: torch zip checkpoints (.ckpt, .pt, .pth, .bin) through the restricted
    /// reader, everything else as safetensors.
    public convenience init(paths: [String]) throws {
        try self.init(files: paths.map { try openWeightFile($0) })
    }

    public var keys: [String] { Array(index.keys) }

    public func contains(_ name: String) -> Bool { resolve(name) != nil }

    private func resolve(_ name: String) -> (any WeightSource, TensorInfo)? {
        if let hit = index[name] { return hit }
        for (from, to) in prefixAliases {
            if name.hasPrefix(from), let hit = index[to + name.dropFirst(from.count)] { return hit }
            if !to.isEmpty, name.hasPrefix(to), let hit = index[from + name.dropFirst(to.count)] { return hit }
            if to.isEmpty, let hit = index[from + name] { return hit }
        }
        for (ours, theirs) in infixAliases where name.contains(ours) {
            if let hit = index[name.replacingOccurrences(of: ours, with: theirs)] { return hit }
        }
        return nil
    }

    /// The tensor named `name`, checked against `shape`.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        guard let (file, info) = resolve(name) else {
            throw WeightError.missingTensor(name: name, files: files.map(\.path), expectedShape: shape)
        }
        // A 1-element difference in rank (e.g. [n] vs [1, n]) is still a mismatch: say so.
        guard info.shape == shape else {
            throw WeightError.shapeMismatch(name: name, file: file.path, expected: shape, found: info.shape)
        }
        return try file.load(info)
    }

    /// The tensor if present (for optional parameters such as biases).
    public func optionalTensor(_ name: String, shape: [Int]) throws -> Tensor? {
        resolve(name) == nil ? nil : try tensor(name, shape: shape)
    }
}
