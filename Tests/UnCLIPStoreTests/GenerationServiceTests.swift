import Foundation
import XCTest
import UnCLIPImage
import UnCLIPPipelines
@testable import UnCLIPStore
@testable import UnCLIPStoreSQLite
import UnCLIPEngine
import UnCLIPService

/// Store-backed generation on the tiny diffusers bundle (16-d CLIP embeddings, 32×32 images).
final class GenerationServiceTests: StoreTestCase {
    static let bundle = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/bundles/tiny-unclip")

    var decoder: DecoderSettings {
        var d = DecoderSettings()
        d.steps = 2; d.width = 32; d.height = 32; d.noiseLevel = 10
        return d
    }
    let prior = PriorSettings(steps: 2, guidanceScale: 4, candidates: 2)

    func studio(_ store: SQLiteStore, cache: Bool = true) throws -> GenerationService {
        let model = try ModelResolver.resolve(model: Self.bundle)
        return GenerationService(store: store, engine: try EngineRegistry.standard.load(model, options: LoadOptions()), useCache: cache)
    }

    func testCachedStagesGiveTheSameImageAsTheDiffusersPath() throws {
        let store = try SQLiteStore(url: storeURL)
        let s = try studio(store)
        let first = try s.generate(prompt: "a tiny robot", priorSettings: prior, settings: decoder, seed: 42)
        XCTAssertEqual(first.cache?.text, .miss)
        XCTAssertEqual(first.cache?.prior, .miss)
        let second = try s.generate(prompt: "a tiny robot", priorSettings: prior, settings: decoder, seed: 42)
        XCTAssertEqual(second.cache?.text, .hit)
        XCTAssertEqual(second.cache?.prior, .hit)
        let fresh = try studio(store, cache: false).generate(prompt: "a tiny robot", priorSettings: prior, settings: decoder, seed: 42)
        XCTAssertEqual(fresh.cache?.prior, .off)
        XCTAssertEqual(first.generation.sha256, second.generation.sha256, "a cached prior replays its random draws")
        XCTAssertEqual(first.generation.sha256, fresh.generation.sha256)
        // The stored image is the plain pipeline's image (the path checked against diffusers), pixel for pixel.
        let direct = try (s.engine as! StableUnCLIPEngine).pipeline.textToImage(prompt: "a tiny robot", priorSettings: prior, settings: decoder, seed: 42)
        XCTAssertEqual(try PNG.read(second.generation.imageURL).pixels, direct.image.pixels)
        XCTAssertEqual(second.generation.embedding, direct.imageEmbeds.scalars)
        // The prior run is stored once, with both candidates.
        XCTAssertEqual(try store.db.scalarInt("SELECT count(*) FROM prior_runs"), 1)
        let run = try XCTUnwrap(store.priorRun(id: XCTUnwrap(second.generation.priorRunID)))
        XCTAssertEqual(run.scores, direct.prior!.scores)
        XCTAssertEqual(run.candidates, direct.prior!.candidates.scalars)
        // A different seed misses the prior cache but hits the text cache.
        let other = try s.generate(prompt: "a tiny robot", priorSettings: prior, settings: decoder, seed: 43)
        XCTAssertEqual(other.cache?.text, .hit)
        XCTAssertEqual(other.cache?.prior, .miss)
    }

    func testVaryInterpolateNudgeRegenerateAndRemove() throws {
        let store = try SQLiteStore(url: storeURL)
        let s = try studio(store)
        let a = try s.generate(prompt: "a red lighthouse", priorSettings: prior, settings: decoder, seed: 1).generation
        let b = try s.generate(prompt: "a blue car", priorSettings: prior, settings: decoder, seed: 2).generation

        let v = try s.vary(a.id, prompt: "", settings: decoder, seed: 5).generation
        XCTAssertEqual(v.embedding, a.embedding)
        XCTAssertEqual(v.parents, [ParentLink(role: "source", id: a.id)])

        let frames = try s.interpolate(from: a.id, to: b.id, frames: 5, prompt: "", settings: decoder, seed: 9).map(\.generation)
        XCTAssertEqual(frames.count, 5)
        XCTAssertEqual(frames.first!.embedding, a.embedding)
        XCTAssertEqual(frames.last!.embedding, b.embedding)
        let mid = frames[2].embedding!
        let omega = EmbeddingMath.angle(a.embedding!, b.embedding!)
        XCTAssertEqual(EmbeddingMath.angle(a.embedding!, mid), omega / 2, accuracy: 1e-5)
        XCTAssertEqual(EmbeddingMath.norm(mid), (EmbeddingMath.norm(a.embedding!) + EmbeddingMath.norm(b.embedding!)) / 2, accuracy: 1e-4)
        XCTAssertEqual(frames.map(\.seed), Array(repeating: 9, count: 5), "one seed: fixed decoder noise across frames")
        XCTAssertEqual(frames[2].settings.t, 0.5)

        let same = try s.nudge(a.id, toward: "a green lighthouse", from: nil, amount: 0, prompt: "", settings: decoder, seed: 3).generation
        XCTAssertEqual(same.embedding!, a.embedding!, "θ = 0 keeps the embedding")
        XCTAssertEqual(same.settings.from, "a red lighthouse", "--from defaults to the generation's prompt")
        let nudged = try s.nudge(a.id, toward: "a green lighthouse", from: nil, amount: 0.4, prompt: "", settings: decoder, seed: 3).generation
        let d = zip(try s.textEmbedding("a green lighthouse"), try s.textEmbedding("a red lighthouse")).map { $0 - $1 }
        XCTAssertEqual(EmbeddingMath.angle(a.embedding!, nudged.embedding!), 0.4 * EmbeddingMath.angle(a.embedding!, d), accuracy: 1e-5)
        XCTAssertEqual(nudged.kind, .textDiff)

        for g in [a, v, frames[2], nudged] {
            let r = try s.regenerate(g.id)
            XCTAssertTrue(r.matches, "generation \(g.id) (\(g.kind)) regenerates byte for byte")
            XCTAssertFalse(r.restored)
        }
        // A missing file is put back by regenerate.
        try FileManager.default.removeItem(at: v.imageURL)
        XCTAssertEqual(try store.check(verify: false).missingImages, [v.id])
        XCTAssertTrue(try s.regenerate(v.id).restored)
        XCTAssertTrue(try store.check(verify: true).isClean)

        // Removing the parent leaves its children working from their own embeddings.
        try store.remove(a.id)
        XCTAssertTrue(try s.regenerate(v.id).matches)
        XCTAssertTrue(try s.regenerate(nudged.id).matches)
        let grandchild = try s.vary(nudged.id, prompt: "", settings: decoder, seed: 4).generation
        XCTAssertEqual(grandchild.embedding, nudged.embedding)
        XCTAssertEqual(try store.generation(frames[1].id).parents.first, ParentLink(role: "from", id: a.id, exists: false))
        XCTAssertThrowsError(try s.vary(a.id, prompt: "", settings: decoder, seed: 1)) { XCTAssertTrue("\($0)".contains("no generation \(a.id)")) }
    }

    func testImportedImagesAreSourcesAndSearchFindsThem() throws {
        let store = try SQLiteStore(url: storeURL)
        let s = try studio(store)
        let g = try s.generate(prompt: "a red lighthouse", priorSettings: prior, settings: decoder, seed: 1).generation
        let png = tmp.appendingPathComponent("outside.png")
        try FileManager.default.copyItem(at: g.imageURL, to: png)
        let source = try s.importPicture(.file(png))
        XCTAssertEqual(source.kind, .source)
        XCTAssertEqual(source.embedding, try (s.engine as! StableUnCLIPEngine).pipeline.embed(image: PNG.read(png)).scalars)
        XCTAssertEqual(source.sha256, g.sha256, "the store keeps the file as it was")
        XCTAssertEqual(try s.importPicture(.file(png)).id, source.id, "importing the same file again reuses it")
        XCTAssertThrowsError(try s.regenerate(source.id)) { XCTAssertTrue("\($0)".contains("imported")) }

        // The generation's own picture embedding is the same picture's: both rank first, with cosine 1.
        XCTAssertEqual(g.pictureEmbedding, source.embedding)
        let index = try SearchIndex.load(from: store, filter: GenerationFilter(dim: 16))
        for query in [source.embedding!, try s.imageEmbedding(.file(png))] {
            let hits = try index.search(query, limit: 2)
            XCTAssertEqual(Set(hits.map(\.id)), [g.id, source.id])
            for h in hits { XCTAssertEqual(h.score, 1, accuracy: 1e-5) }
        }
        // Text queries go through the prior's text encoder projection, and are cached like prompts.
        let text = try s.textEmbedding("a red lighthouse")
        XCTAssertEqual(text.count, 16)
        XCTAssertNotNil(try store.textEncoding(modelID: s.modelRecord().id, prompt: "a red lighthouse", encoder: .prior))
        XCTAssertEqual(try index.search(text, limit: 5).count, 2)
    }

    func testExportWritesImageEmbeddingAndRecord() throws {
        let store = try SQLiteStore(url: storeURL)
        let g = try studio(store).generate(prompt: "a red lighthouse", priorSettings: prior, settings: decoder, seed: 1).generation
        let files = try GenerationExport.export(g.id, from: store, to: tmp.appendingPathComponent("out"))
        XCTAssertEqual(files.map(\.lastPathComponent), ["\(g.id).png", "\(g.id).safetensors", "\(g.id).json"])
        XCTAssertEqual(SHA256.hex(try Data(contentsOf: files[0])), g.sha256)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: files[2])) as! [String: Any]
        XCTAssertEqual(json["seed"] as? Int, 1)
        XCTAssertEqual((json["prior"] as? [String: Any])?["candidates"] as? Int, 2)
    }
}

/// The tests' shorthand for one-image requests with pipeline settings.
extension GenerationService {
    static func parameters(_ d: DecoderSettings) -> DecoderParameters {
        var p = DecoderParameters()
        p.steps = d.steps; p.guidanceScale = d.guidanceScale; p.noiseLevel = d.noiseLevel; p.negativePrompt = d.negativePrompt
        p.width = d.width; p.height = d.height; p.scheduler = d.scheduler
        return p
    }

    func generate(prompt: String, priorSettings: PriorSettings, settings: DecoderSettings, seed: UInt64) throws -> MadeImage {
        var r = TextToImageRequest(prompt: prompt)
        r.prior.steps = priorSettings.steps; r.prior.guidanceScale = priorSettings.guidanceScale; r.prior.candidates = priorSettings.candidates
        r.decoder = Self.parameters(settings)
        r.seeds = SeedPlan(first: seed)
        return try generate(r)[0]
    }

    func vary(_ id: Int64, prompt: String, settings: DecoderSettings, seed: UInt64) throws -> MadeImage {
        var r = VariationRequest(source: .generation(id))
        r.prompt = prompt; r.decoder = Self.parameters(settings); r.seeds = SeedPlan(first: seed)
        return try vary(r)[0]
    }

    func interpolate(from a: Int64, to b: Int64, frames: Int, prompt: String, settings: DecoderSettings, seed: UInt64) throws -> [MadeImage] {
        var r = InterpolationRequest(from: a, to: b)
        r.frames = frames; r.prompt = prompt; r.decoder = Self.parameters(settings); r.seed = seed
        return try interpolate(r)
    }

    func nudge(_ id: Int64, toward: String, from: String?, amount: Float, prompt: String, settings: DecoderSettings, seed: UInt64) throws -> MadeImage {
        var r = NudgeRequest(id: id, toward: toward)
        r.from = from; r.amount = amount; r.prompt = prompt; r.decoder = Self.parameters(settings); r.seeds = SeedPlan(first: seed)
        return try nudge(r)[0]
    }
}

/// A second front end beside the CLI: requests from concurrent tasks on one engine and one store, one of them
/// cancelled mid-run through its observer.
final class ConcurrentServiceTests: StoreTestCase {
    func testTwoConcurrentRequestsFinishAndACancelledThirdLeavesNothing() throws {
        let store = try SQLiteStore(url: storeURL)
        let model = try ModelResolver.resolve(model: GenerationServiceTests.bundle)
        let engine = try EngineRegistry.standard.load(model, options: LoadOptions())
        let service = GenerationService(store: store, engine: engine)
        func request(_ prompt: String, seed: UInt64) -> TextToImageRequest {
            var r = TextToImageRequest(prompt: prompt)
            r.prior.steps = 2
            r.decoder.steps = 6
            r.decoder.width = 32
            r.decoder.height = 32
            r.seeds = SeedPlan(first: seed)
            return r
        }
        let lock = NSLock()
        var made: [Int: StoredGeneration] = [:]
        var cancelled: Error?
        var stepsSeen = 0
        DispatchQueue.concurrentPerform(iterations: 3) { i in
            do {
                if i < 2 {
                    let g = try service.generate(request("a robot number \(i)", seed: UInt64(10 + i)))[0].generation
                    lock.withLock { made[i] = g }
                } else {
                    // Stops at the third denoising step: the run ends within one step and records nothing.
                    let observer = ClosureObserver(progress: { e in
                        guard e.stage == "denoise" else { return .proceed }
                        lock.withLock { stepsSeen = e.step }
                        return e.step >= 3 ? .stop : .proceed
                    })
                    _ = try service.generate(request("a cancelled robot", seed: 99), observer: observer)
                }
            } catch {
                lock.withLock { if i == 2 { cancelled = error } else { XCTFail("request \(i): \(error)") } }
            }
        }
        XCTAssertEqual(cancelled as? EngineError, .cancelled)
        XCTAssertEqual(stepsSeen, 3, "no step ran after the stop")
        XCTAssertEqual(try store.count(), 2, "the cancelled request left no record")
        XCTAssertTrue(try store.check(verify: true).isClean)
        // Concurrency changes nothing: each image equals the same request run alone.
        let alone = GenerationService(store: try SQLiteStore(url: tmp.appendingPathComponent("alone.sqlite")), engine: engine)
        for i in 0..<2 {
            let g = try alone.generate(request("a robot number \(i)", seed: UInt64(10 + i)))[0].generation
            XCTAssertEqual(made[i]?.sha256, g.sha256)
        }
    }

    func testRequestsAreCheckedBeforeWork() throws {
        let store = try SQLiteStore(url: storeURL)
        let engine = try EngineRegistry.standard.load(try ModelResolver.resolve(model: GenerationServiceTests.bundle), options: LoadOptions())
        let service = GenerationService(store: store, engine: engine)
        var r = TextToImageRequest(prompt: "x")
        r.decoder.guidanceScale = .nan
        XCTAssertThrowsError(try service.generate(r)) { XCTAssertEqual($0 as? EngineError, .invalidParameter(name: "guidance_scale", reason: "must be a finite number (got nan)")) }
        r.decoder.guidanceScale = nil
        r.seeds = SeedPlan(first: .max, count: 2)
        XCTAssertThrowsError(try service.generate(r)) { XCTAssertTrue("\($0)".hasPrefix("seed:"), "\($0)") }
        r.seeds = SeedPlan(first: 1)
        r.decoder.width = 100_000
        r.decoder.height = 100_000
        XCTAssertThrowsError(try service.generate(r)) {
            guard case .insufficientMemory = $0 as? EngineError else { return XCTFail("\($0)") }
        }
        var v = VariationRequest(source: .embedding([1, 2, 3], origin: "test"))
        v.seeds = SeedPlan(first: 1)
        XCTAssertThrowsError(try service.vary(v)) { XCTAssertTrue("\($0)".contains("3 values"), "\($0)") }
        XCTAssertEqual(try store.count(), 0)
        // No message of the library names a command-line flag.
        for e in [EngineError.invalidParameter(name: "guidance_scale", reason: "x"), .noSuchModel(path: "/x"), .singleFileCheckpoint(path: "/x.ckpt", reason: "r")] {
            XCTAssertFalse(e.description.contains("--"), e.description)
        }
    }
}
