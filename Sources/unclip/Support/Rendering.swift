import Foundation
import UnCLIPEngine
import UnCLIPImage
import UnCLIPService
import UnCLIPStore
import UnCLIPStoreSQLite
import UnCLIPWeights

/// One made image as `--json` prints it (one object per line, as soon as the image is stored).
struct ImageLine: Codable {
    struct Parent: Codable { var role: String; var id: Int64 }
    var id: Int64
    var kind: GenerationKind
    /// The store's copy.
    var image: String
    var sha256: String
    /// The user's copy (nil when none was written).
    var output: String?
    var seed: UInt64?
    var seconds: Double
    var parents: [Parent]?
    var cache: CacheReport?
    var priorScores: [Float]?
    var priorChoice: Int?
    var t: Double?

    enum CodingKeys: String, CodingKey {
        case id, kind, image, sha256, output, seed, seconds, parents, cache, priorScores = "prior_scores", priorChoice = "prior_choice", t
    }

    init(_ made: MadeImage, output: URL?) {
        let g = made.generation
        id = g.id; kind = g.kind; image = g.imageLocation; sha256 = g.sha256; self.output = output?.path; seed = g.seed
        seconds = g.seconds ?? 0
        parents = g.parents.isEmpty ? nil : g.parents.map { Parent(role: $0.role, id: $0.id) }
        cache = made.cache
        if made.cache != nil { priorScores = made.priorScores; priorChoice = made.priorChoice }
        t = g.settings.t
    }
}

/// How image-making commands report each image: a human line, or an NDJSON object; either way written and
/// flushed the moment the image is stored, so a pipe or Ctrl-C loses nothing already made.
enum ImageRenderer {
    case human
    case json

    func render(_ made: MadeImage, output: URL?) throws {
        switch self {
        case .json:
            writeStdout(try JSONCoding.string(ImageLine(made, output: output)) + "\n")
        case .human:
            let g = made.generation
            var line = "#\(g.id)  \((output?.path ?? g.imageLocation))  seed \(g.seed.map(String.init) ?? "-")  "
                + String(format: "%.2f s", g.seconds ?? 0)
            if made.cache != nil, !made.priorScores.isEmpty {
                line += "  prior " + made.priorScores.enumerated().map {
                    String(format: "%.3f%@", $0.element, $0.offset == made.priorChoice ? "*" : "")
                }.joined(separator: "/")
            }
            writeStdout(line + "\n")
        }
    }
}

/// Stdout without the C library's buffer: when piped, `print` would hold lines back until exit.
func writeStdout(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// Prints an Encodable value as one JSON document.
func printJSON<T: Encodable>(_ value: T) throws {
    writeStdout(try JSONCoding.string(value) + "\n")
}

/// A message on stderr (warnings, progress), keeping stdout for results.
func warn(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// A prompt for one-line listings.
func quoted(_ text: String?) -> String {
    guard let text else { return "-" }
    return "\"" + (text.count > 60 ? text.prefix(57) + "…" : text) + "\""
}

/// Progress on stderr (a live bar on a terminal, a summary line per stage otherwise), warnings, step previews
/// written beside the output, and Ctrl-C: the first asks the run to stop at the next step.
final class TerminalObserver: GenerationObserver, @unchecked Sendable {
    let interactive = isatty(2) == 1
    let cancel: CancellationFlag
    /// Where previews of image i go (nil: none).
    let previewURL: ((Int, Int) -> URL)?

    init(cancel: CancellationFlag = Interrupts.flag, previewURL: ((Int, Int) -> URL)? = nil) {
        self.cancel = cancel
        self.previewURL = previewURL
    }

    func progress(_ e: ProgressEvent) -> RunDecision {
        if cancel.isRaised { return .stop }
        guard e.step > 0 else { return .proceed }
        let perStep = e.elapsed / Double(max(e.step, 1))
        let image = e.images > 1 ? " [\(e.image + 1)/\(e.images)]" : ""
        if interactive {
            let width = 24, filled = width * e.step / max(e.total, 1)
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            FileHandle.standardError.write(Data(String(format: "\r%@%@ %@ %d/%d  %.2f s/step  ETA %.0f s ", e.stage, image, bar, e.step, e.total,
                                                       perStep, e.eta ?? 0).utf8))
            if e.step == e.total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if e.step == e.total {
            warn(String(format: "%@%@: %d steps in %.1f s (%.2f s/step)", e.stage, image, e.total, e.elapsed, perStep))
        }
        return .proceed
    }

    func preview(image: Int, step: Int, picture: RGBImage) {
        guard let url = previewURL?(image, step) else { return }
        do { try PNG.write(picture, to: url) } catch { warn("warning: preview not written: \(error)") }
    }

    func warning(_ message: String) { warn("warning: \(message)") }
}

/// Ctrl-C: the first raises `flag` (runs stop at their next step, finished images are kept); a second one
/// exits at once.
enum Interrupts {
    static let flag = CancellationFlag()
    nonisolated(unsafe) private static var source: DispatchSourceSignal?

    static func install() {
        signal(SIGINT, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        s.setEventHandler {
            if flag.isRaised { exit(130) }
            flag.raise()
            warn("\nstopping after this step (Ctrl-C again to quit at once)")
        }
        s.resume()
        source = s
    }
}

/// The copies image-making commands write besides the store's own.
struct Deliverer {
    /// Also write the final latents beside each copy.
    let saveLatents: Bool
    let renderer: ImageRenderer
    let store: any GenerationStore
    /// The output path of image i of the request.
    let url: (Int, UInt64) -> URL

    func deliver(_ made: MadeImage) throws {
        if let cache = made.cache { warn("cache: text encodings \(cache.text.rawValue), prior \(cache.prior.rawValue)") }
        let target = url(made.index, made.generation.seed ?? 0)
        try AtomicFile.write(try store.imageData(made.generation.id), to: target)
        if saveLatents, let latents = made.latents {
            try SafeTensorsWriter.write([("latents", .float32(latents))], metadata: ["seed": "\(made.generation.seed ?? 0)"],
                                        to: target.deletingPathExtension().appendingPathExtension("latents.safetensors"))
        }
        try renderer.render(made, output: target)
    }
}

/// Checks, before any work, that each output path can be written: its folder exists and is a folder, and the
/// path is not a folder itself.
func checkWritable(_ urls: [URL]) throws {
    let fm = FileManager.default
    for url in urls {
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            throw CLIError("--output \(url.path) is a folder; give a file name (e.g. \(url.appendingPathComponent("image.png").path))")
        }
        let folder = url.deletingLastPathComponent()
        guard fm.fileExists(atPath: folder.path, isDirectory: &isDir) else {
            throw CLIError("--output \(url.path): the folder \(folder.path) does not exist")
        }
        guard isDir.boolValue else { throw CLIError("--output \(url.path): \(folder.path) is a file, not a folder") }
        guard access(folder.path, W_OK) == 0 else { throw CLIError("--output \(url.path): the folder \(folder.path) is not writable") }
    }
}

/// The seeds and output files of an image-making command, checked before any work, and the pieces that run
/// its request: the service, a Ctrl-C-aware observer writing previews beside the outputs, and the delivery of
/// each image as it is stored.
struct ImagePlan {
    let seeds: [UInt64]
    let outputs: OutputOptions

    init(_ seedOptions: SeedOptions, _ outputs: OutputOptions) throws {
        seeds = try RequestCheck.seeds(seedOptions.plan)
        self.outputs = outputs
        try checkWritable(seeds.enumerated().map { url($0.offset, $0.element) })
    }

    /// The seeds, fixed (a random first seed is chosen once, so the outputs named after it are the ones made).
    var seedPlan: SeedPlan { SeedPlan(first: seeds[0], count: seeds.count) }

    func url(_ index: Int, _ seed: UInt64) -> URL { outputs.url(seed: seed, count: seeds.count) }

    func run(store: any GenerationStore, engine: any ImageEngine, useCache: Bool = true, json: Bool,
             _ body: (GenerationService, GenerationObserver, @escaping (MadeImage) throws -> Void) throws -> Void) throws {
        let service = GenerationService(store: store, engine: engine, useCache: useCache)
        let deliver = Deliverer(saveLatents: outputs.saveLatents, renderer: json ? .json : .human, store: store, url: url)
        Interrupts.install()
        let observer = TerminalObserver { i, step in outputs.previewURL(for: url(i, seeds[i]), step: step) }
        try body(service, observer, deliver.deliver)
    }
}
