import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPSchedulers
import UnCLIPServer
import UnCLIPStore
import UnCLIPStoreSQLite
import UnCLIPTokenizer
import UnCLIPWeights

/// One fuzz target: a name (its corpus is `fuzz/corpus/<name>/`) and the function both the libFuzzer driver
/// (`fuzz/Package.swift`) and the corpus-replay test call with each input.
///
/// An entry may throw any error for bad input: that is the expected outcome. What it must never do is trap,
/// touch memory it does not own, hang, or allocate without bound; the fuzzer reports those.
public struct FuzzTarget: Sendable {
    public let name: String
    /// What the input is, for `fuzz/run.sh` and the README's table.
    public let input: String
    public let run: @Sendable (Data) -> Void
}

public enum FuzzTargets {
    /// Every target, by corpus folder name.
    ///
    public static let all: [FuzzTarget] = [
        FuzzTarget(name: "safetensors", input: "a .safetensors file (header, then every tensor loaded)", run: safetensors),
        FuzzTarget(name: "shard-index", input: "a *.safetensors.index.json", run: shardIndex),
        FuzzTarget(name: "config", input: "first byte picks the config type; the rest is its JSON", run: config),
        FuzzTarget(name: "tokenizer", input: "a prompt (UTF-8, invalid bytes replaced)", run: tokenizer),
        FuzzTarget(name: "tokenizer-files", input: "a tokenizer folder: its files' bytes, NUL-separated", run: tokenizerFiles),
        FuzzTarget(name: "image", input: "a PNG, JPEG or WebP file", run: image),
        FuzzTarget(name: "parameters", input: "A1111 `parameters` text", run: parameters),
        FuzzTarget(name: "png-info", input: "a picture sent to png-info (size checks, text chunks, parameters)", run: pngInfo),
        FuzzTarget(name: "server-request", input: "first byte picks the route; the rest is its JSON body", run: serverRequest),
        FuzzTarget(name: "multipart", input: "first line: the Content-Type; the rest: the multipart body", run: multipart),
        FuzzTarget(name: "store", input: "a store's SQLite file (mutated real stores)", run: store),
        FuzzTarget(name: "unpickler", input: "a torch checkpoint's data.pkl (restricted unpickler: interprets, never executes)", run: unpickler),
    ]

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    // MARK: - formats

    @Sendable static func safetensors(_ data: Data) {
        let parsed = data.withUnsafeBytes { try? SafeTensorsHeader(file: $0, path: "input") }
        // Past the header: map it as a file and load every tensor, as a model load would (small inputs only;
        // the header check has already bounded every range by the input's size).
        guard let parsed, !parsed.tensors.isEmpty else { return }
        withScratchFile("input.safetensors", data) { url in
            guard let file = try? SafeTensorsFile(path: url.path) else { return }
            for name in file.tensors.keys.sorted() {
                _ = try? file.tensor(name)
                _ = try? file.integers(name)
            }
        }
    }

    @Sendable static func unpickler(_ data: Data) {
        var u = Unpickler(path: "input.pkl")
        _ = data.withUnsafeBytes { try? u.load($0) }
    }

    @Sendable static func shardIndex(_ data: Data) {
        _ = try? ShardIndex.shardNames(data, path: "input.index.json")
    }

    /// The config types a model folder's JSON files are decoded into, by family; the scheduler entry also builds
    /// the scheduler, as loading does.
    static let configDecoders: [@Sendable (Data) throws -> Void] = [
        { _ = try decodeJSONConfig(CLIPTextConfig.self, from: $0, path: "text_encoder/config.json") },
        { _ = try decodeJSONConfig(CLIPVisionConfig.self, from: $0, path: "image_encoder/config.json") },
        { _ = try decodeJSONConfig(PriorTransformerConfig.self, from: $0, path: "prior/config.json") },
        { _ = try decodeJSONConfig(UNet2DConditionConfig.self, from: $0, path: "unet/config.json") },
        { _ = try decodeJSONConfig(AutoencoderKLConfig.self, from: $0, path: "vae/config.json") },
        { _ = try decodeJSONConfig(StableUnCLIPImageNormalizer.Config.self, from: $0, path: "image_normalizer/config.json") },
        { _ = try decodeJSONConfig(CLIPImageProcessor.self, from: $0, path: "feature_extractor/preprocessor_config.json") },
        { _ = try makeScheduler(configData: $0, path: "scheduler/scheduler_config.json") },
    ]

    @Sendable static func config(_ data: Data) {
        guard let selector = data.first else { return }
        _ = try? configDecoders[Int(selector) % configDecoders.count](Data(data.dropFirst()))
    }

    /// The shipped model's tokenizer, loaded once (it is the same vocabulary every CLIP checkpoint uses).
    static let clipTokenizer: CLIPTokenizer? = try? CLIPTokenizer(directory: repositoryURL("weights/shapes/tokenizer"))

    @Sendable static func tokenizer(_ data: Data) {
        guard let clipTokenizer else { fatalError("fuzz target tokenizer: weights/shapes/tokenizer did not load") }
        let text = String(decoding: data, as: UTF8.self)
        let tokens = clipTokenizer(text)
        // The padded output is always exactly the context length, however long the prompt.
        precondition(tokens.ids.count == 77 && tokens.attentionMask.count == 77, "tokenizer output is not 77 ids")
        precondition(tokens.ids.allSatisfy { (0..<clipTokenizer.vocabularySize).contains($0) }, "token id outside the vocabulary")
    }

    /// The files of a tokenizer folder, in this order, separated by NUL bytes (an empty part leaves the file out).
    static let tokenizerFileNames = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"]

    /// A tokenizer folder loaded as a model load does, then a prompt through it.
    @Sendable static func tokenizerFiles(_ data: Data) {
        let parts = data.split(separator: 0, omittingEmptySubsequences: false)
        withScratchFile(".keep", Data()) { keep in
            let folder = keep.deletingLastPathComponent()
            for (name, part) in zip(tokenizerFileNames, parts) where !part.isEmpty {
                guard (try? Data(part).write(to: folder.appendingPathComponent(name))) != nil else { fatalError("fuzz: cannot write \(name)") }
            }
            guard let loaded = try? CLIPTokenizer(directory: folder) else { return }
            let tokens = loaded("a photo of a cat, <|endoftext|> 123 ünï")
            precondition(tokens.ids.count == 77, "tokenizer output is not 77 ids")
        }
    }

    @Sendable static func image(_ data: Data) {
        // The server's upload limits (4096 per side, 16.7 M pixels): what a request can make us decode.
        let limits = ImageLimits(maxSide: 4096, maxPixels: 4096 * 4096, maxFileBytes: 20 << 20)
        if let picture = try? ImageFile.decode(Data(data), source: "input", limits: limits) {
            precondition(picture.width > 0 && picture.height > 0 && picture.pixels.count == picture.width * picture.height * 3,
                         "decoded picture has inconsistent size")
        }
    }

    // MARK: - server

    @Sendable static func parameters(_ data: Data) {
        _ = RequestParsing.parameters(String(decoding: data, as: UTF8.self))
    }

    @Sendable static func pngInfo(_ data: Data) {
        _ = try? RequestParsing.pngInfo(Data(data))
    }

    @Sendable static func serverRequest(_ data: Data) {
        guard let selector = data.first else { return }
        let body = Data(data.dropFirst())
        switch selector % 4 {
        case 0: _ = try? RequestParsing.nativeJob(body)
        case 1: _ = try? RequestParsing.a1111Generation(body, img2img: false)
        case 2: _ = try? RequestParsing.a1111Generation(body, img2img: true)
        default: RequestParsing.searchAndOpenAIBodies(body)
        }
    }

    @Sendable static func multipart(_ data: Data) {
        let newline = data.firstIndex(of: 0x0A) ?? data.endIndex
        let contentType = String(decoding: data[..<newline], as: UTF8.self)
        let body = newline < data.endIndex ? Data(data[(newline + 1)...]) : Data()
        _ = try? RequestParsing.multipart(body, contentType: contentType)
    }

    // MARK: - store

    /// Opens the input as a store file (read-write: the startup check, migrations and clean-up run), then reads it
    /// as the server and `unclip check` do. Every error is fine; a crash or a hang is not.
    @Sendable static func store(_ data: Data) {
        withScratchFile("store.sqlite", data) { url in
            guard let store = try? SQLiteStore(url: url) else { return }
            _ = try? store.storedSchemaVersion()
            _ = try? store.generations(GenerationFilter(), limit: 20)
            _ = try? store.count(GenerationFilter())
            _ = try? store.queuedInClaimOrder()
            _ = try? store.latestModel()
            _ = try? store.check(verify: true, clean: false)
            if let first = try? store.generations(GenerationFilter(), limit: 1).first {
                _ = try? store.imageData(first.id)
                _ = try? store.children(of: first.id)
            }
        }
    }

    // MARK: - helpers

    /// The repository root, found from this file's path (Sources/UnCLIPFuzz/FuzzTargets.swift), as the tests find it.
    public static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func repositoryURL(_ relative: String) -> URL { repositoryRoot.appendingPathComponent(relative) }

    /// Runs `body` with `data` written to a file named `name` in a fresh folder, removed afterwards (with anything
    /// the code under test created beside it: SQLite's -wal and -shm files, a store's image folder).
    static func withScratchFile(_ name: String, _ data: Data, _ body: (URL) -> Void) {
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("unclip-fuzz-\(getpid())-\(UInt64.random(in: 0...UInt64.max))", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        guard (try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)) != nil else {
            fatalError("fuzz: cannot create the scratch folder \(folder.path)")
        }
        let url = folder.appendingPathComponent(name)
        guard (try? data.write(to: url)) != nil else { fatalError("fuzz: cannot write \(url.path)") }
        body(url)
    }
}
