import Foundation

/// One component folder of a diffusers/transformers checkpoint (`text_encoder/`, `unet/`, …):
/// a `config.json` plus safetensors weights, single-file, sharded, or as the `.fp16` variant.
public struct ModelFolder: Sendable {
    public let url: URL

    public init(_ url: URL) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw WeightError.missingFile(path: url.path, what: "model folder")
        }
        self.url = url
    }

    public var configURL: URL { url.appendingPathComponent("config.json") }

    /// Decodes `config.json` (or another file of the folder) into a config type.
    public func config<C: Decodable>(_ type: C.Type, file: String = "config.json") throws -> C {
        try loadJSONConfig(type, from: url.appendingPathComponent(file))
    }

    /// The weight files to load, preferring full-precision files, then the `variant` (default fp16); safetensors
    /// before torch's `.bin` pickles (read by the restricted reader, `TorchCheckpoint`, never executed).
    public func weightFiles(variant: String? = nil) throws -> [String] {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
        let stems = ["model", "diffusion_pytorch_model", "pytorch_model"]
        var candidates: [String?] = [nil, "fp16"]
        if let variant { candidates = [variant] + candidates.filter { $0 != variant } }
        for ext in ["safetensors", "bin"] {
            for v in candidates {
                let suffix = v.map { ".\($0).\(ext)" } ?? ".\(ext)"
                for stem in stems {
                    if names.contains(stem + suffix) { return [url.appendingPathComponent(stem + suffix).path] }
                    let indexName = stem + suffix + ".index.json"
                    if names.contains(indexName) { return try shardFiles(index: url.appendingPathComponent(indexName)) }
                }
            }
        }
        let others = names.filter { $0.hasSuffix(".ckpt") || $0.hasSuffix(".pt") || $0.hasSuffix(".bin") }
        let hint = others.isEmpty ? "" : " (found \(others.joined(separator: ", ")), not a name a diffusers folder uses)"
        throw WeightError.missingFile(path: url.appendingPathComponent("model.safetensors").path,
                                      what: "weights (model.safetensors, diffusion_pytorch_model.safetensors, their .bin pickles, a sharded index or an .fp16 variant)\(hint); weight file")
    }

    private func shardFiles(index: URL) throws -> [String] {
        let data = try readConfigBytes(index, what: "shard index")
        return try ShardIndex.shardNames(data, path: index.path).map { name in
            let path = url.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: path) else { throw WeightError.missingFile(path: path, what: "weight shard listed in \(index.lastPathComponent)") }
            return path
        }
    }

    /// All weights of the folder, memory-mapped.
    public func weights(variant: String? = nil) throws -> WeightMap {
        try WeightMap(paths: weightFiles(variant: variant))
    }
}

/// Refuses bytes that are not UTF-8 text before they reach Foundation's JSON5 scanner, which stops the process
/// (a fatal error, not a thrown one) on invalid UTF-8 where it expects an unquoted key.
public func requireUTF8Text(_ data: Data, path: String) throws {
    var parser = Unicode.UTF8.ForwardParser()
    var bytes = data.makeIterator()
    var offset = 0
    while true {
        switch parser.parseScalar(from: &bytes) {
        case let .valid(scalar): offset += scalar.count
        case .emptyInput: return
        case .error:
            throw WeightError.badConfig(path: path, reason: "not UTF-8 text (invalid byte at offset \(offset))")
        }
    }
}

/// A sharded checkpoint's `*.safetensors.index.json`.
public enum ShardIndex {
    /// The shard file names its `weight_map` lists, sorted, each once. A name must be a plain file name in the
    /// folder: an index naming `../x` or `/etc/x` would otherwise map files from anywhere on the machine.
    public static func shardNames(_ data: Data, path: String) throws -> [String] {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = json["weight_map"] as? [String: String] else {
            throw WeightError.badConfig(path: path, reason: "no weight_map object")
        }
        let names = Array(Set(map.values)).sorted()
        for name in names where name.isEmpty || name == "." || name == ".." || name.contains("/") || name.contains("\0") {
            throw WeightError.badConfig(path: path, reason: "weight_map names the shard '\(name)', which is not a file name in the model folder")
        }
        return names
    }
}

/// Config files (config.json, scheduler and preprocessor configs, shard indexes) are a few kilobytes; a larger one
/// is refused by its size before it is read. The largest real one, a sharded index of a big checkpoint, is ~200 KB.
public let maxConfigFileBytes = 16 << 20

/// The bytes of a config file, or an error naming it: missing, or over `maxConfigFileBytes`.
public func readConfigBytes(_ url: URL, what: String) throws -> Data {
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
          let data = FileManager.default.contents(atPath: url.path) else {
        throw WeightError.missingFile(path: url.path, what: what)
    }
    if let size = attributes[.size] as? Int, size > maxConfigFileBytes || data.count > maxConfigFileBytes {
        throw WeightError.badConfig(path: url.path, reason: "\(max(size, data.count)) bytes; a \(what) is at most \(maxConfigFileBytes) bytes")
    }
    return data
}

/// Reads a JSON config, turning decoding failures into a message that names the file and the key.
public func loadJSONConfig<C: Decodable>(_ type: C.Type, from url: URL) throws -> C {
    try decodeJSONConfig(type, from: readConfigBytes(url, what: "config file"), path: url.path)
}

/// Decodes config JSON already in memory (JSON5, as diffusers writes `-Infinity` and `NaN`); `path` names it in
/// errors, which name the key too.
public func decodeJSONConfig<C: Decodable>(_ type: C.Type, from data: Data, path: String) throws -> C {
    try requireUTF8Text(data, path: path)
    do {
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true  // diffusers writes -Infinity and NaN into some configs
        return try decoder.decode(type, from: data)
    } catch let e as WeightError {
        throw e
    } catch let DecodingError.keyNotFound(key, ctx) {
        throw WeightError.badConfig(path: path, reason: "missing key '\((ctx.codingPath + [key]).map(\.stringValue).joined(separator: "."))'")
    } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
        throw WeightError.badConfig(path: path, reason: "key '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))': \(ctx.debugDescription)")
    } catch let DecodingError.dataCorrupted(ctx) {
        let key = ctx.codingPath.map(\.stringValue).joined(separator: ".")
        throw WeightError.badConfig(path: path, reason: key.isEmpty ? "not valid JSON" : "key '\(key)': \(ctx.debugDescription)")
    } catch let e as ConfigValueError {
        throw WeightError.badConfig(path: path, reason: e.description)
    } catch {
        throw WeightError.badConfig(path: path, reason: "\(error)")
    }
}
