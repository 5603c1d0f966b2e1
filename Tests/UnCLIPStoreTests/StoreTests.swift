import CSQLite
import Foundation
import XCTest
import UnCLIPTensor
@testable import UnCLIPStore
@testable import UnCLIPStoreSQLite

/// A fresh folder per test, removed afterwards.
class StoreTestCase: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(at: tmp) }

    var storeURL: URL { tmp.appendingPathComponent("store.sqlite") }

    /// Records a generation with a small fake PNG payload (the store does not decode images).
    @discardableResult
    func add(_ store: SQLiteStore, kind: GenerationKind = .textToImage, prompt: String? = "p", embedding: [Float]?,
             picture: [Float]? = nil, parents: [ParentLink] = [], bytes: String = UUID().uuidString) throws -> StoredGeneration {
        let temp = try store.temporaryImageURL()
        try Data(bytes.utf8).write(to: temp)
        var s = RecordedSettings()
        s.steps = 2
        return try store.record(NewGeneration(kind: kind, modelID: nil, prompt: prompt, settings: s, seed: 7, embedding: embedding,
                                              pictureEmbedding: picture, parents: parents, width: 8, height: 8, seconds: 0.5),
                                temporaryImage: temp)
    }

    func assertStoreError(_ body: @autoclosure () throws -> Any, mentioning needles: [String],
                          file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected an error mentioning \(needles)", file: file, line: line)
        } catch {
            let text = "\(error)"
            XCTAssertTrue(error is StoreError, "not a StoreError: \(text)", file: file, line: line)
            for n in needles { XCTAssertTrue(text.contains(n), "'\(text)' lacks '\(n)'", file: file, line: line) }
        }
    }
}

final class StoreOpenTests: StoreTestCase {
    func testFreshStoreSettings() throws {
        let store = try SQLiteStore(url: storeURL)
        XCTAssertEqual(try store.db.prepare("PRAGMA journal_mode").stepText(), "wal")
        XCTAssertEqual(try store.db.scalarInt("PRAGMA foreign_keys"), 1)
        XCTAssertEqual(try store.db.scalarInt("PRAGMA busy_timeout"), 30_000)
        XCTAssertEqual(try store.db.scalarInt("PRAGMA application_id"), Int64(Schema.applicationID))
        XCTAssertEqual(try store.storedSchemaVersion(), SQLiteStore.schemaVersion)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("store-images").path))
        // Foreign keys are enforced: a parent link to a generation that does not exist is refused.
        let g = try add(store, embedding: [1, 2])
        XCTAssertThrowsError(try store.db.run("INSERT INTO generation_parents(child_id, role, parent_id, parent_ref) VALUES(?, 'x', 999, 999)", [.int(g.id)]))
    }

    func testMigrationsRunForwardAndNewerSchemaIsRefused() throws {
        let v1 = Schema.migrations
        let v2 = v1 + [Migration(version: v1.last!.version + 1, sql: "ALTER TABLE generations ADD COLUMN rating INTEGER; CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT);")]
        do {
            let store = try SQLiteStore(url: storeURL, access: .readWrite, migrations: v1)
            try add(store, embedding: [1, 0, 0])
        }
        do {
            let store = try SQLiteStore(url: storeURL, access: .readWrite, migrations: v2)
            XCTAssertEqual(try store.storedSchemaVersion(), v1.last!.version + 1)
            XCTAssertEqual(try store.count(), 1, "data survives the migration")
            XCTAssertEqual(try store.db.scalarInt("SELECT count(*) FROM pragma_table_info('generations') WHERE name = 'rating'"), 1)
            XCTAssertEqual(try store.generation(1).embedding, [1, 0, 0])
        }
        let before = try Data(contentsOf: storeURL)
        let n = v1.last!.version
        assertStoreError(try SQLiteStore(url: storeURL, access: .readWrite, migrations: v1), mentioning: ["newer unclip", "version \(n + 1)", "up to \(n)"])
        assertStoreError(try SQLiteStore(url: storeURL, access: .read, migrations: v1), mentioning: ["newer unclip"])
        XCTAssertEqual(try Data(contentsOf: storeURL), before, "a refused store is not modified")
    }

    /// Version 2 rebuilds the generations table (embeddings may be absent, kind 'edit'): rows, parent links,
    /// foreign keys and the never-reuse-an-id sequence must all survive.
    func testVersion1StoreUpgradesKeepingRowsLinksAndIDs() throws {
        let v1 = Array(Schema.migrations.prefix(1))
        do {
            // Rows as a version-1 build wrote them (this build's INSERT names version-2 columns).
            let store = try SQLiteStore(url: storeURL, access: .readWrite, migrations: v1)
            func insert(_ id: Int64, _ embedding: [Float]?) throws {
                try store.db.run("""
                    INSERT INTO generations(id, created_at, kind, settings, seed, dim, embedding, image_file, sha256, width, height, file_bytes)
                    VALUES(?, 't', 'text-to-image', '{}', 7, ?, ?, ?, 's', 8, 8, 1)
                    """, [.int(id), embedding.map { .int(Int64($0.count)) } ?? .null, embedding.map { .floats($0) } ?? .null, .text("\(id).png")])
            }
            try insert(1, [1, 0])
            try insert(2, [0, 1])
            try store.db.run("INSERT INTO generation_parents(child_id, role, parent_id, parent_ref) VALUES(2, 'source', 1, 1)")
            try insert(3, [1, 1])
            try store.db.run("DELETE FROM generations WHERE id = 3")  // the sequence (3) is now above max(id) (2)
            XCTAssertThrowsError(try insert(4, nil), "version 1 requires an embedding")
        }
        let store = try SQLiteStore(url: storeURL)
        XCTAssertEqual(try store.storedSchemaVersion(), SQLiteStore.schemaVersion, "upgraded through every migration")
        XCTAssertEqual(try store.db.scalarInt("PRAGMA foreign_keys"), 1, "foreign keys are back on after the rebuild")
        XCTAssertFalse(try store.generation(1).starred, "version 3's columns have their defaults on old rows")
        XCTAssertNil(try store.generation(1).job)
        XCTAssertEqual(try store.db.scalarInt("SELECT count(*) FROM pragma_foreign_key_check"), 0)
        XCTAssertEqual(try store.count(), 2)
        XCTAssertEqual(try store.generation(1).embedding, [1, 0])
        XCTAssertEqual(try store.generation(2).parents, [ParentLink(role: "source", id: 1)])
        XCTAssertEqual(try store.children(of: 1), [2])
        let plain = try add(store, embedding: nil)
        XCTAssertEqual(plain.id, 4, "id 3 was used once and is never reused")
        XCTAssertNil(plain.embedding)
        XCTAssertNil(plain.dim)
        XCTAssertThrowsError(try plain.requireEmbedding()) { XCTAssertTrue("\($0)".contains("no image embedding")) }
        // A picture embedding alone (plain Stable Diffusion with --clip) is what variations and search use.
        let temp = try store.temporaryImageURL()
        try Data("clip".utf8).write(to: temp)
        let clipped = try store.record(NewGeneration(kind: .textToImage, modelID: nil, prompt: "q", settings: RecordedSettings(), seed: 1,
                                                     embedding: nil, pictureEmbedding: [2, -1], width: 8, height: 8, seconds: 0),
                                       temporaryImage: temp)
        XCTAssertEqual(try store.generation(clipped.id).pictureEmbedding, [2, -1])
        XCTAssertEqual(try clipped.requireEmbedding(), [2, -1])
        XCTAssertEqual(clipped.searchEmbedding, [2, -1])
        let edit = try add(store, kind: .edit, embedding: [0.5, 0.5], parents: [ParentLink(role: "init", id: 2)])
        XCTAssertEqual(try store.generation(edit.id).kind, .edit)
        // Search sees only generations with an embedding of the asked width.
        XCTAssertEqual(try SearchIndex.load(from: store, filter: GenerationFilter(dim: 2)).count, 4)
        XCTAssertEqual(try SearchIndex.load(from: store, filter: GenerationFilter(dim: 2)).search([2, -1], limit: 1).first?.id, clipped.id,
                       "the picture embedding is what search ranks")
        // Removing a parent still sets links to NULL (the foreign key actions survived the rebuild).
        _ = try store.remove(1)
        XCTAssertEqual(try store.generation(2).parents, [ParentLink(role: "source", id: 1, exists: false)])
        XCTAssertThrowsError(try store.db.run("INSERT INTO generations(created_at, kind, settings, dim, embedding, image_file, sha256, width, height, file_bytes) VALUES('t', 'edit', '{}', 2, NULL, 'x.png', 's', 1, 1, 1)"),
                             "a width without an embedding is refused")
        XCTAssertThrowsError(try store.db.run("INSERT INTO generations(created_at, kind, settings, dim, embedding, image_file, sha256, width, height, file_bytes) VALUES('t', 'edit', '{}', NULL, x'00000000', 'y.png', 's', 1, 1, 1)"),
                             "an embedding without a width is refused")
    }

    func testFutureVersionWrittenBySQLiteIsRefused() throws {
        do { _ = try SQLiteStore(url: storeURL) }
        do {
            let db = try Database(path: storeURL.path, readOnly: false)
            try db.execute("PRAGMA user_version = 99")
        }
        assertStoreError(try SQLiteStore(url: storeURL), mentioning: [storeURL.path, "schema version 99", "Upgrade unclip"])
    }

    func testGarbageFileIsNotADatabase() throws {
        let garbage = Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: storeURL)
        assertStoreError(try SQLiteStore(url: storeURL), mentioning: [storeURL.path, "not a SQLite database"])
        assertStoreError(try SQLiteStore(url: storeURL, access: .read), mentioning: ["not a SQLite database"])
        XCTAssertEqual(try Data(contentsOf: storeURL), garbage, "the file is left as it was")
    }

    func testForeignDatabaseIsRefused() throws {
        do {
            let db = try Database(path: storeURL.path, readOnly: false)
            try db.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES(1, 9.5);")
        }
        assertStoreError(try SQLiteStore(url: storeURL), mentioning: [storeURL.path, "not an unclip store"])
        let db = try Database(path: storeURL.path, readOnly: true)
        XCTAssertEqual(try db.scalarInt("SELECT count(*) FROM invoices"), 1)
        XCTAssertEqual(try db.scalarInt("SELECT count(*) FROM sqlite_master WHERE name = 'generations'"), 0)
        // Another application's id.
        let other = tmp.appendingPathComponent("other.sqlite")
        do { try Database(path: other.path, readOnly: false).execute("PRAGMA application_id = 1234") }
        assertStoreError(try SQLiteStore(url: other), mentioning: ["application id 0x000004D2"])
    }

    func testDamagedPagesAreReported() throws {
        do {
            let store = try SQLiteStore(url: storeURL)
            for i in 0..<300 { try add(store, embedding: (0..<256).map { Float($0 + i) }) }
        }
        // Overwrite the middle of the file (b-tree pages of the generations table) with garbage.
        var data = try Data(contentsOf: storeURL)
        XCTAssertGreaterThan(data.count, 64 * 4096)
        for i in (data.count / 3)..<(data.count / 3 + 16 * 4096) { data[i] = UInt8(truncatingIfNeeded: i &* 131) }
        try data.write(to: storeURL)
        do {
            let store = try SQLiteStore(url: storeURL, access: .read)
            _ = try store.generations()
            _ = try SearchIndex.load(from: store, filter: GenerationFilter(dim: 256))
            XCTFail("damage went unnoticed")
        } catch let e as StoreError {
            XCTAssertTrue("\(e)".contains("damaged") || "\(e)".contains("malformed"), "\(e)")
        }
    }

    func testStorePathThatIsAFolder() throws {
        assertStoreError(try SQLiteStore(url: tmp), mentioning: ["folder", "database file", "store.sqlite"])
    }

    func testReadOnlyStoreRefusesWrites() throws {
        do { try add(try SQLiteStore(url: storeURL), embedding: [1, 2]) }
        let store = try SQLiteStore(url: storeURL, access: .readOnly)
        XCTAssertFalse(store.isWritable)
        XCTAssertEqual(try store.count(), 1)
        let temp = tmp.appendingPathComponent("x.png")
        try Data("x".utf8).write(to: temp)
        assertStoreError(try store.record(NewGeneration(kind: .variation, modelID: nil, prompt: nil, settings: RecordedSettings(), seed: 1,
                                                        embedding: [1, 2], width: 1, height: 1, seconds: 0), temporaryImage: temp),
                         mentioning: ["read-only", storeURL.path])
        assertStoreError(try store.remove(1), mentioning: ["read-only"])
        assertStoreError(try store.registerModel(fingerprint: "f", path: "/m"), mentioning: ["read-only"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: try store.generation(1).imageURL.path))
    }

    func testWriteProtectedFileIsAClearError() throws {
        try XCTSkipIf(getuid() == 0, "root ignores file permissions")
        do { try add(try SQLiteStore(url: storeURL), embedding: [1, 2]) }
        chmod(storeURL.path, 0o444)
        defer { chmod(storeURL.path, 0o644) }
        assertStoreError(try SQLiteStore(url: storeURL), mentioning: ["read-only", "write-protected"])
        XCTAssertEqual(try SQLiteStore(url: storeURL, access: .read).count(), 1)
    }

    func testDefaultLocation() {
        XCTAssertEqual(SQLiteStore.defaultURL(environment: ["UNCLIP_STORE": "/a/b.sqlite", "XDG_DATA_HOME": "/x"]).path, "/a/b.sqlite")
        XCTAssertEqual(SQLiteStore.defaultURL(environment: ["XDG_DATA_HOME": "/x", "HOME": "/h"]).path, "/x/unclip/store.sqlite")
        XCTAssertEqual(SQLiteStore.defaultURL(environment: ["HOME": "/h"]).path, "/h/.local/share/unclip/store.sqlite")
    }

    func testTimestamps() throws {
        XCTAssertEqual(try StoreTime.timestamp(parsing: "2025-03-04T05:06:07Z"), "2025-03-04T05:06:07.000Z")
        XCTAssertEqual(try StoreTime.timestamp(parsing: "2025-03-04T05:06:07+02:00"), "2025-03-04T03:06:07.000Z")
        let local = try StoreTime.timestamp(parsing: "2025-03-04")
        let offset = TimeZone.current.secondsFromGMT(for: ISO8601DateFormatter().date(from: "2025-03-04T00:00:00Z")!)
        let expected = ISO8601DateFormatter().date(from: "2025-03-04T00:00:00Z")!.addingTimeInterval(TimeInterval(-offset))
        let f = ISO8601DateFormatter(); f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        XCTAssertEqual(local, f.string(from: expected))
        XCTAssertThrowsError(try StoreTime.timestamp(parsing: "last tuesday")) { XCTAssertTrue("\($0)".contains("YYYY-MM-DD")) }
    }
}

extension Statement {
    func stepText() throws -> String? { try step() ? text(0) : nil }
}

/// The soak (bench/soak/soak.sh) found searches and job writes sharing a transaction on the store's connection.
final class StoreConcurrencyTests: StoreTestCase {
    /// A search scan on one thread while another writes: every write must succeed. Before the fix the scan ran
    /// without the connection's lock, and writes failed with "cannot start a transaction within a transaction".
    func testSearchScanAndWritesFromOtherThreadsDoNotShareATransaction() throws {
        let store = try SQLiteStore(url: storeURL)
        var ids: [Int64] = []
        for i in 0..<40 {
            let temp = try store.temporaryImageURL()
            try Data("image \(i)".utf8).write(to: temp)
            ids.append(try store.record(NewGeneration(kind: .textToImage, modelID: nil, prompt: "p\(i)", settings: RecordedSettings(), seed: 1,
                                                      embedding: [Float(i), 1], width: 8, height: 8, seconds: 0), temporaryImage: temp).id)
        }
        let failures = NSLock()
        nonisolated(unsafe) var errors: [String] = []
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            defer { done.signal() }
            for round in 0..<30 {
                do {
                    // A slow scan widens the window in which another thread's statements could land inside it.
                    try store.forEachSearchVector(filter: GenerationFilter(dim: 2), ranking: SearchRanking.pictureAndDecoder, reserve: { _ in },
                                                  row: { _, _ in usleep(200) })
                } catch { failures.withLock { errors.append("search \(round): \(error)") } }
            }
        }
        for round in 0..<300 {
            do { try store.setStarred(ids[round % ids.count], round % 2 == 0) } catch { failures.withLock { errors.append("star \(round): \(error)") } }
        }
        done.wait()
        XCTAssertEqual(failures.withLock { errors }, [])
    }
}
