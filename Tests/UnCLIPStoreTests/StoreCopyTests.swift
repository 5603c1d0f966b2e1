import Foundation
import XCTest
import UnCLIPStore
import UnCLIPStorePostgres
import UnCLIPStoreSQLite
import UnCLIPTestSupport

/// `store copy`: a 1,000-generation SQLite store through PostgreSQL and back, with every record, lineage link (to
/// removed parents too), star, job link, cache entry, embedding bit and image byte kept.
final class StoreCopyTests: XCTestCase {
    func testAThousandGenerationsRoundTripThroughPostgresAndBack() throws {
        let tmp = try makeTemporaryDirectory(for: self)
        let pg = try PostgresTestServer()
        defer { pg.stop() }
        let source = try SQLiteStore(url: tmp.appendingPathComponent("a.sqlite"))
        let m = try source.registerModel(fingerprint: "f1", path: "/models/one", priorPath: "/models/prior")
        try source.saveTextEncoding(CachedTextEncoding(tokens: 2, width: 3, hiddenStates: [1, 2, 3, 4, 5, 6], textEmbeds: [0.5], mask: [1, 0]),
                                    modelID: m.id, prompt: "a cat", encoder: .prior)
        let run = try source.savePriorRun(PriorRunKey(modelID: m.id, prompt: "a cat", seed: .max, steps: 25, guidance: 4, candidates: 2,
                                                      scheduler: "UnCLIPScheduler"),
                                          dim: 2, candidates: [1, 2, 3, 4], scores: [0.1, 0.9], chosenIndex: 1, draws: [2, 2], seconds: 0.5)
        var rng = SystemRandomNumberGenerator()
        var ids: [Int64] = []
        for i in 0..<1000 {
            var s = RecordedSettings()
            s.steps = i % 50; s.guidance = Float(i) / 7; s.negativePrompt = i % 3 == 0 ? "blurry" : nil
            var g = NewGeneration(kind: i % 4 == 0 ? .variation : .textToImage, modelID: i % 2 == 0 ? m.id : nil, prompt: "prompt \(i % 17)",
                                  settings: s, seed: UInt64.random(in: 0...UInt64.max, using: &rng), priorRunID: i == 5 ? run : nil,
                                  embedding: (0..<8).map { _ in Float.random(in: -1...1, using: &rng) },
                                  pictureEmbedding: i % 5 == 0 ? (0..<8).map { _ in Float.random(in: -1...1) } : nil,
                                  parents: i > 0 && i % 4 == 0 ? [ParentLink(role: "source", id: ids[i - 1])] : [],
                                  width: 8, height: 8, seconds: Double(i) / 100)
            if i % 10 == 0 { g.job = JobLink(job: Int64(i / 10 + 1), index: 0) }
            ids.append(try source.record(g, png: Data((0..<(64 + i % 9)).map { _ in UInt8.random(in: 0...255, using: &rng) })).id)
        }
        try source.setStarred(ids[7], true)
        try source.remove(ids[3])  // generation 4 (a variation of 3) keeps a link to a parent that no longer exists

        let middle = try PostgresStore(try PostgresLocation(url: try pg.createDatabase()))
        let there = try StoreCopier.copy(from: source, to: middle)
        XCTAssertEqual(there.generations, 999)
        XCTAssertEqual(there.textEncodings, 1)
        XCTAssertEqual(there.priorRuns, 1)
        let back = try SQLiteStore(url: tmp.appendingPathComponent("b.sqlite"))
        let again = try StoreCopier.copy(from: middle, to: back)
        XCTAssertEqual(again.digest, there.digest)

        // Independently of the digest: records and image hashes as read back.
        for id in ids where id != ids[3] {
            let a = try source.generation(id), b = try back.generation(id), c = try middle.generation(id)
            XCTAssertEqual(a.embedding, b.embedding)
            XCTAssertEqual(a.pictureEmbedding, c.pictureEmbedding)
            XCTAssertEqual(a.settings, c.settings)
            XCTAssertEqual(a.parents, b.parents)
            XCTAssertEqual(a.createdAt, c.createdAt)
            XCTAssertEqual(a.seed, c.seed)
            XCTAssertEqual(a.starred, b.starred)
            XCTAssertEqual(a.job, c.job)
            XCTAssertEqual(SHA256.hex(try back.imageData(id)), a.sha256)
        }
        XCTAssertEqual(try back.generation(ids[4]).parents, [ParentLink(role: "source", id: ids[3], exists: false)])
        XCTAssertEqual(try middle.generation(ids[5]).priorRunID.flatMap { try middle.priorRun(id: $0)?.scores }, [0.1, 0.9])
        // New generations continue above the copied ids.
        let next = try middle.record(NewGeneration(kind: .textToImage, modelID: nil, prompt: "new", settings: RecordedSettings(), seed: 1,
                                                   embedding: [1], width: 8, height: 8, seconds: 0), png: Data("new".utf8))
        XCTAssertGreaterThan(next.id, ids.last!)
        // A copy into a store that has generations is refused before anything is written.
        XCTAssertThrowsError(try StoreCopier.copy(from: source, to: middle)) { XCTAssertTrue("\($0)".contains("empty store"), "\($0)") }
    }
}
