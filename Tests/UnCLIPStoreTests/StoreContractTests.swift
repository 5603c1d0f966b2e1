import Foundation
import XCTest
import UnCLIPStore
import UnCLIPTensor
import UnCLIPStorePostgres
import UnCLIPStoreSQLite
import UnCLIPTestSupport

/// The store protocol's behaviour, written once against `any GenerationStore` and run on every backend: SQLite
/// (a file per test) and PostgreSQL (a real server started by the harness, a database per test). Backend-specific
/// matters (files, pragmas, server errors) have their own test classes.
final class StoreContractTests: XCTestCase {
    nonisolated(unsafe) static var server: PostgresTestServer?
    var folder: URL!

    override class func setUp() {
        super.setUp()
        do { server = try PostgresTestServer() } catch { XCTFail("cannot start PostgreSQL for the tests: \(error)") }
    }
    override class func tearDown() { server?.stop(); server = nil; super.tearDown() }
    override func setUpWithError() throws { folder = try makeTemporaryDirectory(for: self) }

    /// A fresh store of each backend, and how to open it again (another process's view).
    struct Backend {
        let name: String
        let open: () throws -> any GenerationStore
    }

    func backends() throws -> [Backend] {
        let file = folder.appendingPathComponent("store-\(UUID().uuidString).sqlite")
        let url = try XCTUnwrap(Self.server, "PostgreSQL did not start").createDatabase()
        return [Backend(name: "sqlite") { try SQLiteStore(url: file) },
                Backend(name: "postgres") { try PostgresStore(try PostgresLocation(url: url)) }]
    }

    /// Runs `body` once per backend, each on a new store; failures name the backend.
    func onEachBackend(_ body: (any GenerationStore, Backend) throws -> Void) throws {
        for b in try backends() {
            do { try body(try b.open(), b) } catch { XCTFail("\(b.name): \(error)") }
        }
    }

    @discardableResult
    func add(_ store: any GenerationStore, kind: GenerationKind = .textToImage, prompt: String? = "p", embedding: [Float]?,
             picture: [Float]? = nil, parents: [ParentLink] = [], bytes: String = UUID().uuidString, job: JobLink? = nil) throws -> StoredGeneration {
        var s = RecordedSettings()
        s.steps = 2
        var g = NewGeneration(kind: kind, modelID: nil, prompt: prompt, settings: s, seed: 7, embedding: embedding,
                              pictureEmbedding: picture, parents: parents, width: 8, height: 8, seconds: 0.5)
        g.job = job
        return try store.record(g, png: Data(bytes.utf8))
    }

    func testRecordKeepsEverythingExactly() throws {
        try onEachBackend { store, backend in
            var s = RecordedSettings()
            s.steps = 20; s.guidance = 7.5; s.noiseLevel = 100; s.negativePrompt = "blurry"; s.width = 64; s.height = 48
            let embedding: [Float] = [0.1, -2.5, .ulpOfOne, 3e-38, 1e30]
            let g = try store.record(NewGeneration(kind: .textToImage, modelID: nil, prompt: "a red lighthouse", settings: s,
                                                   seed: UInt64.max - 1, embedding: embedding, pictureEmbedding: [0.5, 0.25],
                                                   width: 64, height: 48, seconds: 1.25), png: Data("abc".utf8))
            // sha256("abc") from FIPS 180-2, appendix B.1.
            XCTAssertEqual(g.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
            XCTAssertEqual(g.fileBytes, 3)
            XCTAssertEqual(try store.imageData(g.id), Data("abc".utf8))
            XCTAssertTrue(try store.hasImage(g.id))
            let back = try store.generation(g.id)
            XCTAssertEqual(back.embedding, embedding, "float32 round-trips exactly")
            XCTAssertEqual(back.pictureEmbedding, [0.5, 0.25])
            XCTAssertEqual(back.settings, s)
            XCTAssertEqual(back.seed, UInt64.max - 1)
            XCTAssertEqual(back.noiseLevel, 100)
            XCTAssertEqual(back.prompt, "a red lighthouse")
            XCTAssertEqual(back.seconds, 1.25)
            XCTAssertEqual(back.width, 64)
            XCTAssertEqual(try store.generationID(sha256: g.sha256), g.id)
            XCTAssertEqual(try store.generationID(kind: .variation, sha256: g.sha256, modelID: 1), nil)
        }
    }

    func testLineageAndRemoval() throws {
        try onEachBackend { store, backend in
            let a = try add(store, embedding: [1, 0])
            let b = try add(store, kind: .variation, embedding: [0, 1], parents: [ParentLink(role: "source", id: a.id)])
            let c = try add(store, kind: .interpolation, embedding: [1, 1],
                            parents: [ParentLink(role: "to", id: b.id), ParentLink(role: "from", id: a.id)])
            XCTAssertEqual(try store.children(of: a.id), [b.id, c.id])
            XCTAssertEqual(try store.generation(c.id).parents.map(\.role), ["from", "to"], "reading order")
            try store.remove(a.id)
            XCTAssertFalse(try store.contains(a.id))
            XCTAssertEqual(try store.generation(b.id).parents, [ParentLink(role: "source", id: a.id, exists: false)])
            XCTAssertEqual(try store.generation(b.id).embedding, [0, 1])
            let d = try add(store, embedding: [1, 1])
            XCTAssertGreaterThan(d.id, c.id, "ids are not reused")
            XCTAssertThrowsError(try store.remove(999)) { XCTAssertTrue("\($0)".contains("no generation 999")) }
            XCTAssertThrowsError(try store.generation(999)) { XCTAssertTrue("\($0)".contains("no generation 999")) }
            XCTAssertThrowsError(try store.imageData(a.id))
        }
    }

    func testFiltersStarsAndCounts() throws {
        try onEachBackend { store, backend in
            let a = try add(store, embedding: [1, 0])
            let b = try add(store, kind: .variation, embedding: [0, 1], parents: [ParentLink(role: "source", id: a.id)])
            let c = try add(store, kind: .variation, embedding: [0, 1, 0])
            XCTAssertEqual(try store.generations().map(\.id), [c.id, b.id, a.id])
            XCTAssertEqual(try store.generations(GenerationFilter(kinds: [.variation])).map(\.id), [c.id, b.id])
            XCTAssertEqual(try store.generations(GenerationFilter(kinds: [.variation], dim: 2)).map(\.id), [b.id])
            XCTAssertEqual(try store.generations(GenerationFilter(), limit: 1).map(\.id), [c.id])
            XCTAssertEqual(try store.generations(GenerationFilter(parent: a.id)).map(\.id), [b.id])
            XCTAssertEqual(try store.generations(GenerationFilter(beforeID: c.id), limit: 1).map(\.id), [b.id])
            XCTAssertEqual(try store.count(GenerationFilter(since: "2000-01-01T00:00:00.000Z")), 3)
            XCTAssertEqual(try store.count(GenerationFilter(since: "2999-01-01T00:00:00.000Z")), 0)
            try store.setStarred(b.id, true)
            XCTAssertEqual(try store.generations(GenerationFilter(starred: true)).map(\.id), [b.id])
            XCTAssertTrue(try store.generation(b.id).starred)
            XCTAssertThrowsError(try store.setStarred(4242, true)) { XCTAssertTrue("\($0)".contains("no generation 4242")) }
        }
    }

    func testCachesAreKeyedExactly() throws {
        try onEachBackend { store, backend in
            let m1 = try store.registerModel(fingerprint: "aaa", path: "/models/one")
            let m2 = try store.registerModel(fingerprint: "bbb", path: "/models/two", priorPath: "/models/prior")
            XCTAssertEqual(try store.registerModel(fingerprint: "aaa", path: "/moved/one").id, m1.id)
            XCTAssertEqual(try store.model(id: m1.id)?.path, "/moved/one")
            XCTAssertEqual(try store.model(fingerprint: "bbb")?.priorPath, "/models/prior")
            let e = CachedTextEncoding(tokens: 3, width: 2, hiddenStates: [1, 2, 3, 4, 5, 6], textEmbeds: [0.5, -0.5], mask: [1, 1, 0])
            let long = String(repeating: "a very long prompt ", count: 2000)
            for prompt in ["a cat", long] {
                try store.saveTextEncoding(e, modelID: m1.id, prompt: prompt, encoder: .prior)
                let back = try XCTUnwrap(store.textEncoding(modelID: m1.id, prompt: prompt, encoder: .prior))
                XCTAssertEqual(back.hiddenStates, e.hiddenStates)
                XCTAssertEqual(back.textEmbeds, e.textEmbeds)
                XCTAssertEqual(back.mask, e.mask)
            }
            XCTAssertNil(try store.textEncoding(modelID: m2.id, prompt: "a cat", encoder: .prior))
            XCTAssertNil(try store.textEncoding(modelID: m1.id, prompt: "a cat ", encoder: .prior))
            XCTAssertNil(try store.textEncoding(modelID: m1.id, prompt: "a cat", encoder: .decoder))
            XCTAssertNil(try store.textEncoding(modelID: m1.id, prompt: "a cat", encoder: .prior, clipSkip: 2))
            try store.saveTextEncoding(CachedTextEncoding(tokens: 3, width: 2, hiddenStates: [9, 9, 9, 9, 9, 9]), modelID: m1.id,
                                       prompt: "a cat", encoder: .prior)
            XCTAssertEqual(try store.textEncoding(modelID: m1.id, prompt: "a cat", encoder: .prior)?.hiddenStates, e.hiddenStates, "first entry kept")

            let key = PriorRunKey(modelID: m1.id, prompt: "a dog", seed: UInt64.max, steps: 25, guidance: 4, candidates: 2, scheduler: "UnCLIPScheduler")
            let id = try store.savePriorRun(key, dim: 3, candidates: [1, 2, 3, 4, 5, 6], scores: [0.25, 0.75], chosenIndex: 1,
                                            draws: [6, 6, 6], seconds: 0.1)
            let run = try XCTUnwrap(store.priorRun(key))
            XCTAssertEqual(run.id, id)
            XCTAssertEqual(run.candidates, [1, 2, 3, 4, 5, 6])
            XCTAssertEqual(run.scores, [0.25, 0.75])
            XCTAssertEqual(run.chosenIndex, 1)
            XCTAssertEqual(run.draws, [6, 6, 6])
            XCTAssertEqual(try store.priorRun(id: id)?.candidates, run.candidates)
            var other = key
            other.guidance = 4.5
            XCTAssertNil(try store.priorRun(other))
            XCTAssertEqual(try store.savePriorRun(key, dim: 3, candidates: [0, 0, 0, 0, 0, 0], scores: [0, 0], chosenIndex: 0, draws: [],
                                                  seconds: nil), id, "an existing run is kept")
            XCTAssertThrowsError(try store.savePriorRun(key, dim: 3, candidates: [1], scores: [0.25, 0.75], chosenIndex: 1, draws: [], seconds: nil))
        }
    }

    func testSearchReadsEveryMatchingVector() throws {
        try onEachBackend { store, backend in
            let a = try add(store, embedding: [1, 0])
            let b = try add(store, embedding: [0, 1], picture: [0.6, 0.8])
            _ = try add(store, embedding: [1, 0, 0])
            var rows: [(Int64, [Float]?)] = []
            var reserved = -1
            try store.forEachSearchVector(filter: GenerationFilter(dim: 2), ranking: .picture, reserve: { reserved = $0 }) { rows.append(($0, $1)) }
            XCTAssertEqual(reserved, 2)
            XCTAssertEqual(rows.map(\.0), [a.id, b.id])
            XCTAssertEqual(rows[1].1, [0.6, 0.8])
            XCTAssertEqual(try store.searchVector(id: b.id, ranking: .picture, dim: 2), [0.6, 0.8])
            XCTAssertNil(try store.searchVector(id: 999, ranking: .picture, dim: 2))
            let index = try SearchIndex.load(from: store, filter: GenerationFilter(dim: 2))
            XCTAssertEqual(index.count, 2)
        }
    }

    func testJobsTakeTurnsCancelAndFinish() throws {
        try onEachBackend { store, backend in
            func job(_ owner: String) -> NewJob { NewJob(kind: "text-to-image", owner: owner, model: nil, payload: "{}") }
            let a1 = try store.enqueue(job("a"), limit: nil).id, a2 = try store.enqueue(job("a"), limit: nil).id
            let b1 = try store.enqueue(job("b"), limit: nil).id
            XCTAssertEqual(try store.queuedInClaimOrder().map(\.id), [a1, b1, a2])
            let first = try XCTUnwrap(store.claimNextJob())
            XCTAssertEqual(first.id, a1)
            XCTAssertEqual(first.status, .running)
            XCTAssertEqual(first.attempts, 1)
            XCTAssertEqual(try store.queuedInClaimOrder().map(\.id), [b1, a2], "a was served: b goes first")
            XCTAssertEqual(try store.renewLease(a1), false)
            XCTAssertTrue(try store.cancelJob(a1).cancelRequested)
            XCTAssertEqual(try store.renewLease(a1), true, "the runner learns of the cancel")
            XCTAssertEqual(try store.cancelJob(a2).status, .cancelled)
            try store.finishJob(a1, status: .cancelled, error: nil)
            XCTAssertEqual(try store.job(a1).status, .cancelled)
            XCTAssertThrowsError(try store.finishJob(b1, status: .queued, error: nil))
            XCTAssertEqual(try store.claimNextJob()?.id, b1)
            let g = try add(store, embedding: [1, 0], job: JobLink(job: b1, index: 0))
            // A second record of the same job image never makes a second generation.
            _ = try? add(store, embedding: [1, 0], job: JobLink(job: b1, index: 0))
            XCTAssertEqual(try store.count(), 1)
            try store.finishJob(b1, status: .done, error: nil)
            XCTAssertEqual(try store.job(b1).generations, [g.id])
            XCTAssertNil(try store.claimNextJob())
            XCTAssertEqual(try store.jobs(statuses: [.done], limit: nil).map(\.id), [b1])
            XCTAssertThrowsError(try store.cancelJob(999)) { XCTAssertTrue("\($0)".contains("no job 999")) }
            _ = try store.enqueue(job("c"), limit: 2)
            XCTAssertThrowsError(try store.enqueue(job("c"), limit: 1)) { XCTAssertTrue("\($0)".contains("full")) }
        }
    }

    func testClaimsAreFilteredByModel() throws {
        try onEachBackend { store, backend in
            let x = try store.enqueue(NewJob(kind: "k", owner: "o", model: "x", payload: "{}"), limit: nil).id
            let y = try store.enqueue(NewJob(kind: "k", owner: "o", model: "y", payload: "{}"), limit: nil).id
            XCTAssertEqual(try store.claimNextJob(models: ["y"])?.id, y)
            XCTAssertNil(try store.claimNextJob(models: ["z"]))
            XCTAssertEqual(try store.claimNextJob(models: nil)?.id, x)
        }
    }

    func testSchemaVersionAndReopen() throws {
        try onEachBackend { store, backend in
            try add(store, embedding: [1])
            XCTAssertEqual(try store.storedSchemaVersion(), 3)
            let again = try backend.open()
            XCTAssertEqual(try again.count(), 1)
            let report = try again.check(verify: true)
            XCTAssertTrue(report.isClean, "\(report)")
        }
    }

    func testSearchCacheCatchesUpWithNewAndRemovedGenerations() throws {
        try onEachBackend { store, _ in
            let cache = SearchIndexCache()
            let f = GenerationFilter(dim: 2)
            let a = try add(store, embedding: [1, 0]), b = try add(store, embedding: [0, 1])
            XCTAssertEqual(Set(try cache.indexes(for: f, ranking: .picture, in: store).flatMap(\.ids)), [a.id, b.id])
            let c = try add(store, embedding: [0.6, 0.8])
            func best() throws -> Int64? {
                try cache.indexes(for: f, ranking: .picture, in: store).flatMap { try $0.search([0.6, 0.8], limit: 1) }
                    .max { $0.score < $1.score }?.id
            }
            XCTAssertEqual(try best(), c.id, "a generation recorded after the index was read is found")
            try store.remove(c.id)
            XCTAssertEqual(try best(), b.id, "a removed one drops out")
            XCTAssertEqual(try cache.indexes(for: f, ranking: .picture, in: store).count, 2, "base + one catch-up")
        }
    }
}
