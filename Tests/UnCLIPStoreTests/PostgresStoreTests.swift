import Foundation
import XCTest
import UnCLIPStore
import UnCLIPStorePostgres
import UnCLIPTensor
import UnCLIPTestSupport

/// What only the PostgreSQL backend can get wrong: reaching the server, who may write, schemas it does not know,
/// and connections that drop. Each failure is a `StoreError` that says what and where, and nothing is half-written.
final class PostgresStoreTests: StoreTestCase {
    nonisolated(unsafe) static var server: PostgresTestServer?

    override class func setUp() {
        super.setUp()
        do { server = try PostgresTestServer() } catch { XCTFail("cannot start PostgreSQL for the tests: \(error)") }
    }
    override class func tearDown() { server?.stop(); server = nil; super.tearDown() }

    private var pg: PostgresTestServer { get throws { try XCTUnwrap(Self.server, "PostgreSQL did not start") } }

    private func record(_ store: PostgresStore) throws -> StoredGeneration {
        try store.record(NewGeneration(kind: .textToImage, modelID: nil, prompt: "p", settings: RecordedSettings(), seed: 1,
                                       embedding: [1, 2], width: 8, height: 8, seconds: 0.1), png: Data(UUID().uuidString.utf8))
    }

    func testURLsAreCheckedAndPasswordsNeverShown() throws {
        let loc = try PostgresLocation(url: "postgres://me:s3cret@db.example:6543/gallery")
        XCTAssertEqual(loc.user, "me"); XCTAssertEqual(loc.password, "s3cret"); XCTAssertEqual(loc.port, 6543)
        XCTAssertEqual(loc.database, "gallery")
        XCTAssertFalse(loc.description.contains("s3cret"))
        XCTAssertEqual(try PostgresLocation(url: "postgresql://h/db", defaultUser: "u", password: "pw").password, "pw")
        assertStoreError(try PostgresLocation(url: "postgres://u:pw@h/"), mentioning: ["database name"])
        assertStoreError(try PostgresLocation(url: "postgres://u:pw@h/db?sslmode=require"), mentioning: ["sslmode", "not supported"])
        assertStoreError(try PostgresLocation(url: "postgres://u:topsecret@h:99999/db"), mentioning: ["port"])
        do { _ = try PostgresLocation(url: "postgres://u:topsecret@h/a/b") } catch { XCTAssertFalse("\(error)".contains("topsecret")) }
    }

    func testUnreachableServerWrongPasswordAndMissingDatabase() throws {
        let pg = try pg
        let port = PostgresTestServer.freePort()
        assertStoreError(try PostgresStore(try PostgresLocation(url: "postgres://unclip:x@127.0.0.1:\(port)/db"), reconnectWindow: 1),
                         mentioning: ["cannot reach the server at 127.0.0.1:\(port)"])
        assertStoreError(try PostgresStore(try PostgresLocation(url: pg.url(database: "postgres", password: "wrong"))),
                         mentioning: ["refused user 'unclip'", "password"])
        assertStoreError(try PostgresStore(try PostgresLocation(url: pg.url(database: "nosuchdb"))),
                         mentioning: ["no database 'nosuchdb'", "createdb"])
    }

    func testADatabaseOwnedBySomeoneElseAForeignOneAndAFutureSchemaAreRefused() throws {
        let pg = try pg
        try pg.psql("CREATE ROLE visitor LOGIN PASSWORD 'visitorpw'")
        let owned = try pg.createDatabase("owned")
        // PostgreSQL 15: only the owner may create tables in the public schema.
        assertStoreError(try PostgresStore(try PostgresLocation(url: pg.url(database: "owned", user: "visitor", password: "visitorpw"))),
                         mentioning: ["permission denied"])
        XCTAssertEqual(try pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database: "owned").trimmingCharacters(in: .whitespacesAndNewlines), "0",
                       "nothing half-created")
        _ = owned

        _ = try pg.createDatabase("alien")
        try pg.psql("CREATE TABLE invoices(id int)", database: "alien")
        assertStoreError(try PostgresStore(try PostgresLocation(url: pg.url(database: "alien"))), mentioning: ["no unclip marker", "1 tables"])

        let future = try pg.createDatabase("future")
        do { _ = try record(try PostgresStore(try PostgresLocation(url: future))) }
        try pg.psql("UPDATE unclip_meta SET value = '99' WHERE key = 'schema_version'", database: "future")
        assertStoreError(try PostgresStore(try PostgresLocation(url: future)), mentioning: ["newer unclip", "version 99", "up to 3"])
    }

    func testConcurrentClaimsNeverShareAJob() throws {
        let url = try pg.createDatabase()
        let stores = try (0..<4).map { _ in try PostgresStore(try PostgresLocation(url: url)) }
        for i in 0..<40 { _ = try stores[0].enqueue(NewJob(kind: "k", owner: "o\(i % 3)", model: nil, payload: "{}"), limit: nil) }
        let lock = NSLock()
        var claimed: [Int64] = []
        DispatchQueue.concurrentPerform(iterations: 4) { w in
            while let j = try? stores[w].claimNextJob() {
                lock.withLock { claimed.append(j.id) }
                try? stores[w].finishJob(j.id, status: .done, error: nil)
            }
        }
        XCTAssertEqual(claimed.count, 40)
        XCTAssertEqual(Set(claimed).count, 40, "no job claimed twice")
        XCTAssertEqual(try stores[1].jobs(statuses: [.done], limit: nil).count, 40)
    }

    func testExpiredLeasesRequeueThenFailAndAStaleWorkerCannotWrite() throws {
        let url = try pg.createDatabase()
        let a = try PostgresStore(try PostgresLocation(url: url), leaseSeconds: 0.2, maxAttempts: 2)
        let b = try PostgresStore(try PostgresLocation(url: url), leaseSeconds: 0.2, maxAttempts: 2)
        let id = try a.enqueue(NewJob(kind: "k", owner: "o", model: nil, payload: "{}"), limit: nil).id
        XCTAssertEqual(try a.claimNextJob()?.id, id)
        XCTAssertNil(try b.claimNextJob(), "held by a")
        Thread.sleep(forTimeInterval: 0.4)
        // a's lease ran out: b gets the job, and a can no longer record for it or end it.
        let again = try XCTUnwrap(b.claimNextJob())
        XCTAssertEqual(again.id, id)
        XCTAssertEqual(again.attempts, 2)
        var g = NewGeneration(kind: .textToImage, modelID: nil, prompt: "p", settings: RecordedSettings(), seed: 1, embedding: [1],
                              width: 8, height: 8, seconds: 0.1)
        g.job = JobLink(job: id, index: 0)
        assertStoreError(try a.record(g, png: Data("x".utf8)), mentioning: ["job \(id)", "another worker"])
        assertStoreError(try a.renewLease(id), mentioning: ["another worker"])
        assertStoreError(try a.finishJob(id, status: .done, error: nil), mentioning: ["another worker"])
        XCTAssertEqual(try a.count(), 0, "the stale worker wrote nothing")
        // b dies too: after its lease runs out the job has had its 2 attempts and fails with the reason.
        Thread.sleep(forTimeInterval: 0.4)
        XCTAssertNil(try a.claimNextJob())
        let failed = try a.job(id)
        XCTAssertEqual(failed.status, .failed)
        XCTAssertTrue(failed.error?.contains("2 attempts") == true, failed.error ?? "")
    }

    func testADroppedConnectionIsReplacedAndAStoppedServerIsAClearErrorWithNothingHalfWritten() throws {
        let own = try PostgresTestServer()
        defer { own.stop() }
        let store = try PostgresStore(try PostgresLocation(url: try own.createDatabase("d")), reconnectWindow: 2)
        _ = try record(store)
        // The server cuts the connection (as a network failure or an administrator would): the next call reconnects.
        try own.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'unclip %'", database: "d")
        _ = try record(store)
        XCTAssertEqual(store.reconnects, 1)
        try own.pause()
        assertStoreError(try record(store), mentioning: ["connection to the database was lost", "not stored"])
        try own.start()
        XCTAssertEqual(try store.count(), 2, "the interrupted record left nothing")
        XCTAssertTrue(try store.check(verify: true).isClean)
    }

    /// Where the server has pgvector, search runs on its HNSW index (`PostgresVectorIndex`): the ids it finds
    /// must be the true nearest (recall@10 against a brute-force scan done here in Double), their scores the exact
    /// cosines (dot products for text ranking) from the float32 embeddings, filters honoured, and generations
    /// recorded or removed after the index was built found or dropped. Skipped where pgvector is not installed
    /// (Debian's postgresql-15 carries none: CI runs the in-memory path only).
    func testPgvectorSearchFindsTheTrueNearestWithExactScores() throws {
        let store = try PostgresStore(try PostgresLocation(url: try pg.createDatabase()))
        guard store.searchMethod != "in-memory" else {
            throw XCTSkip("pgvector is not installed on this PostgreSQL: the HNSW search path did not run (the in-memory index serves search)")
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random() -> Float {  // xorshift: the same vectors every run
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Float(Double(state % 2_000_001) / 1_000_000 - 1)
        }
        let dim = 32
        var stored: [Int64: (kind: GenerationKind, picture: [Float]?, decoder: [Float])] = [:]
        func add(_ i: Int) throws -> Int64 {
            let decoder = (0..<dim).map { _ in random() }
            let picture: [Float]? = i % 2 == 0 ? (0..<dim).map { _ in random() } : nil
            let kind: GenerationKind = i % 3 == 0 ? .variation : .textToImage
            let g = try store.record(NewGeneration(kind: kind, modelID: nil, prompt: "p\(i)", settings: RecordedSettings(), seed: UInt64(i),
                                                   embedding: decoder, pictureEmbedding: picture, width: 8, height: 8, seconds: 0.1),
                                     png: Data("image \(i)".utf8))
            stored[g.id] = (kind, picture, decoder)
            return g.id
        }
        for i in 0..<600 { _ = try add(i) }
        _ = try store.record(NewGeneration(kind: .textToImage, modelID: nil, prompt: "other width", settings: RecordedSettings(), seed: 1,
                                           embedding: [1, 2, 3], width: 8, height: 8, seconds: 0.1), png: Data("w".utf8))
        func truth(_ q: [Float], _ ranking: SearchRanking, kinds: [GenerationKind]?, limit: Int) -> [(Int64, Double)] {
            let norm = q.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            return stored.compactMap { id, g -> (Int64, Double)? in
                if let kinds, !kinds.contains(g.kind) { return nil }
                guard let v = ranking.vector(picture: g.picture, decoder: g.decoder) else { return nil }
                return (id, zip(v, q).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } / norm)
            }.sorted { $0.1 > $1.1 }.prefix(limit).map { $0 }
        }
        var found = 0, wanted = 0
        func check(_ q: [Float], _ ranking: SearchRanking, kinds: [GenerationKind]? = nil) throws {
            let hits = try XCTUnwrap(try store.indexedSearch(q, filter: GenerationFilter(kinds: kinds, dim: dim), ranking: ranking, limit: 10))
            let expected = truth(q, ranking, kinds: kinds, limit: 10)
            let exact = Dictionary(uniqueKeysWithValues: truth(q, ranking, kinds: kinds, limit: stored.count))
            XCTAssertEqual(hits.count, 10)
            for h in hits {
                let e = try XCTUnwrap(exact[h.id], "hit \(h.id) is not a stored generation matching the filter")
                XCTAssertEqual(Double(h.score), e, accuracy: 1e-6, "the score is the exact one, not the half-precision index's")
            }
            XCTAssertEqual(hits.map(\.score), hits.map(\.score).sorted(by: >))
            found += Set(hits.map(\.id)).intersection(expected.map(\.0)).count
            wanted += expected.count
        }
        for _ in 0..<15 {
            let q = (0..<dim).map { _ in random() }
            try check(q, .picture)
            try check(q, .pictureAndDecoder)
            try check(q, .picture, kinds: [.variation])
        }
        let recall = Double(found) / Double(wanted)
        XCTAssertGreaterThanOrEqual(recall, 0.95, "recall@10 over 45 queries on 600 rows")
        // Recorded after the index was built: found (each search first syncs); removed: gone.
        let probe = (0..<dim).map { _ in random() }
        let newer = try store.record(NewGeneration(kind: .textToImage, modelID: nil, prompt: "late", settings: RecordedSettings(), seed: 9,
                                                   embedding: probe, width: 8, height: 8, seconds: 0.1), png: Data("late".utf8))
        XCTAssertEqual(try store.indexedSearch(probe, filter: GenerationFilter(dim: dim), ranking: .picture, limit: 1)?.first?.id, newer.id)
        try store.remove(newer.id)
        XCTAssertNotEqual(try store.indexedSearch(probe, filter: GenerationFilter(dim: dim), ranking: .picture, limit: 1)?.first?.id, newer.id)
    }
}
