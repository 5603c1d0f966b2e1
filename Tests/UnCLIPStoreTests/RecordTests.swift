import Foundation
import XCTest
@testable import UnCLIPStore
@testable import UnCLIPStoreSQLite

final class RecordTests: StoreTestCase {
    func testRecordMovesTheFileAndKeepsEverything() throws {
        let store = try SQLiteStore(url: storeURL)
        let temp = try store.temporaryImageURL()
        try Data("abc".utf8).write(to: temp)
        var s = RecordedSettings()
        s.steps = 20; s.guidance = 7.5; s.noiseLevel = 100; s.negativePrompt = "blurry"; s.width = 64; s.height = 48
        let embedding: [Float] = [0.1, -2.5, .ulpOfOne, 3e-38, 1e30]
        let g = try store.record(NewGeneration(kind: .textToImage, modelID: nil, prompt: "a red lighthouse", settings: s,
                                               seed: UInt64.max - 1, embedding: embedding, width: 64, height: 48, seconds: 1.25),
                                 temporaryImage: temp)
        XCTAssertFalse(FileManager.default.fileExists(atPath: temp.path), "the temporary file was moved")
        XCTAssertEqual(g.imageURL.lastPathComponent, "\(g.id).png")
        XCTAssertEqual(try Data(contentsOf: g.imageURL), Data("abc".utf8))
        // sha256("abc") from FIPS 180-2, appendix B.1.
        XCTAssertEqual(g.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(g.fileBytes, 3)
        let back = try store.generation(g.id)
        XCTAssertEqual(back.embedding, embedding, "float32 blobs round-trip exactly")
        XCTAssertEqual(back.settings, s)
        XCTAssertEqual(back.seed, UInt64.max - 1)
        XCTAssertEqual(back.noiseLevel, 100)
        XCTAssertEqual(back.prompt, "a red lighthouse")
        XCTAssertEqual(back.kind, .textToImage)
        XCTAssertEqual(back.seconds, 1.25)
        // Little-endian float32 on disk.
        let blob = try store.db.prepare("SELECT embedding FROM generations WHERE id = ?")
        try blob.bind([.int(g.id)])
        XCTAssertTrue(try blob.step())
        XCTAssertEqual(Array(blob.blob(0).prefix(4)), [0xCD, 0xCC, 0xCC, 0x3D])  // 0.1f = 0x3DCCCCCD
    }

    func testIdsAreNeverReusedAndRemoveKeepsChildrenUsable() throws {
        let store = try SQLiteStore(url: storeURL)
        let a = try add(store, embedding: [1, 0])
        let b = try add(store, kind: .variation, embedding: [0, 1], parents: [ParentLink(role: "source", id: a.id)])
        XCTAssertEqual(try store.children(of: a.id), [b.id])
        let removed = try store.remove(a.id)
        XCTAssertFalse(FileManager.default.fileExists(atPath: removed))
        XCTAssertEqual(try store.db.scalarInt("SELECT count(*) FROM removed_files"), 0)
        let child = try store.generation(b.id)
        XCTAssertEqual(child.parents, [ParentLink(role: "source", id: a.id, exists: false)])
        XCTAssertEqual(child.embedding, [0, 1])
        let c = try add(store, embedding: [1, 1])
        XCTAssertEqual(c.id, b.id + 1)
        try store.remove(c.id)
        XCTAssertEqual(try add(store, embedding: [1, 1]).id, c.id + 1, "AUTOINCREMENT: a removed id is not given out again")
        assertStoreError(try store.remove(999), mentioning: ["no generation 999"])
        assertStoreError(try store.generation(999), mentioning: ["no generation 999", storeURL.path])
    }

    func testEmbeddingBlobOfTheWrongSizeIsAnError() throws {
        let store = try SQLiteStore(url: storeURL)
        let g = try add(store, embedding: [1, 2, 3, 4])
        // The CHECK constraint refuses this; bypass it to simulate a damaged row.
        try store.db.execute("PRAGMA ignore_check_constraints = ON")
        try store.db.run("UPDATE generations SET embedding = zeroblob(12) WHERE id = ?", [.int(g.id)])
        assertStoreError(try store.generation(g.id), mentioning: ["generation \(g.id)", "12 bytes", "4 float32 values need 16"])
        assertStoreError(try SearchIndex.load(from: store, filter: GenerationFilter(dim: 4)), mentioning: ["12 bytes"])
    }

    func testListFiltersByKindDateAndDim() throws {
        let store = try SQLiteStore(url: storeURL)
        try add(store, embedding: [1, 0])
        try add(store, kind: .variation, embedding: [0, 1])
        try add(store, kind: .variation, embedding: [0, 1, 0])
        XCTAssertEqual(try store.generations().map(\.id), [3, 2, 1])
        XCTAssertEqual(try store.generations(GenerationFilter(kinds: [.variation])).map(\.id), [3, 2])
        XCTAssertEqual(try store.generations(GenerationFilter(kinds: [.variation], dim: 2)).map(\.id), [2])
        XCTAssertEqual(try store.generations(GenerationFilter(), limit: 1).map(\.id), [3])
        try store.db.run("UPDATE generations SET created_at = '2020-01-01T00:00:00.000Z' WHERE id = 1")
        XCTAssertEqual(try store.generations(GenerationFilter(since: "2021-01-01T00:00:00.000Z")).map(\.id), [3, 2])
        XCTAssertEqual(try store.count(GenerationFilter(since: "2021-01-01T00:00:00.000Z")), 2)
    }
}

final class CacheTests: StoreTestCase {
    func testTextEncodingsAreKeyedByModelPromptEncoderAndClipSkip() throws {
        let store = try SQLiteStore(url: storeURL)
        let m1 = try store.registerModel(fingerprint: "aaa", path: "/models/one")
        let m2 = try store.registerModel(fingerprint: "bbb", path: "/models/two", priorPath: "/models/prior")
        XCTAssertEqual(try store.registerModel(fingerprint: "aaa", path: "/moved/one").id, m1.id)
        XCTAssertEqual(try store.model(id: m1.id)?.path, "/moved/one")
        XCTAssertEqual(try store.model(id: m2.id)?.priorPath, "/models/prior")
        let e = CachedTextEncoding(tokens: 3, width: 2, hiddenStates: [1, 2, 3, 4, 5, 6], textEmbeds: [0.5, -0.5], mask: [1, 1, 0])
        try store.saveTextEncoding(e, modelID: m1.id, prompt: "a cat", encoder: .prior)
        let back = try XCTUnwrap(store.textEncoding(modelID: m1.id, prompt: "a cat", encoder: .prior))
        XCTAssertEqual(back.hiddenStates, e.hiddenStates)
        XCTAssertEqual(back.textEmbeds, e.textEmbeds)
        XCTAssertEqual(back.mask, e.mask)
        XCTAssertNil(try store.textEncoding(modelID: m2.id, prompt: "a cat", encoder: .prior))
        XCTAssertNil(try store.textEncoding(modelID: m1.id, prompt: "a cat ", encoder: .prior), "exact text only")
        XCTAssertNil(try store.textEncoding(modelID: m1.id, prompt: "a cat", encoder: .decoder))
        XCTAssertNil(try store.textEncoding(modelID: m1.id, prompt: "a cat", encoder: .prior, clipSkip: 2))
        // A second save of the same key keeps the first entry.
        try store.saveTextEncoding(CachedTextEncoding(tokens: 3, width: 2, hiddenStates: [9, 9, 9, 9, 9, 9], textEmbeds: [0, 0], mask: [1, 1, 1]),
                                   modelID: m1.id, prompt: "a cat", encoder: .prior)
        XCTAssertEqual(try store.textEncoding(modelID: m1.id, prompt: "a cat", encoder: .prior)?.hiddenStates, e.hiddenStates)
    }

    func testPriorRunsAreKeyedByEverythingThatDeterminesThem() throws {
        let store = try SQLiteStore(url: storeURL)
        let m = try store.registerModel(fingerprint: "aaa", path: "/m")
        let key = PriorRunKey(modelID: m.id, prompt: "a dog", seed: 42, steps: 25, guidance: 4, candidates: 2, scheduler: "UnCLIPScheduler")
        let id = try store.savePriorRun(key, dim: 3, candidates: [1, 2, 3, 4, 5, 6], scores: [0.25, 0.75], chosenIndex: 1,
                                        draws: [6, 6, 6], seconds: 0.1)
        let run = try XCTUnwrap(store.priorRun(key))
        XCTAssertEqual(run.id, id)
        XCTAssertEqual(run.candidates, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(run.scores, [0.25, 0.75])
        XCTAssertEqual(run.chosenIndex, 1)
        XCTAssertEqual(run.draws, [6, 6, 6])
        var other = key
        for change in [{ other.seed = 43 }, { other.steps = 24 }, { other.guidance = 4.5 }, { other.scheduler = "DDPMScheduler" },
                       { other.prompt = "a dog." }, { other.modelID = 99 }] {
            other = key
            change()
            XCTAssertNil(try store.priorRun(other), "\(other)")
        }
        XCTAssertEqual(try store.savePriorRun(key, dim: 3, candidates: [0, 0, 0, 0, 0, 0], scores: [0, 0], chosenIndex: 0, draws: [], seconds: nil), id)
        XCTAssertThrowsError(try store.savePriorRun(key, dim: 3, candidates: [1, 2], scores: [0.5], chosenIndex: 0, draws: [], seconds: nil))
    }
}

final class ConsistencyTests: StoreTestCase {
    /// A pid that no process has.
    func deadPID() -> pid_t {
        var pid: pid_t = 4_000_000
        while kill(pid, 0) == 0 || errno != ESRCH { pid -= 1 }
        return pid
    }

    func testStartupCheckRemovesLeftoversOfInterruptedRuns() throws {
        var images: URL
        var tmpFolder: URL
        do {
            let store = try SQLiteStore(url: storeURL)
            try add(store, embedding: [1, 0])
            let gone = try add(store, embedding: [0, 1])
            try store.remove(gone.id)
            images = store.imagesURL
            tmpFolder = store.temporaryFolderURL
            // 1. a half-written file of a process that died, and one of a live process (this one);
            // 2. the file of an uncommitted insert: id 3 (one above the sequence);
            // 3. rm committed but the unlink did not happen.
            try Data("half".utf8).write(to: tmpFolder.appendingPathComponent("\(deadPID())-123.png"))
            try Data("mine".utf8).write(to: tmpFolder.appendingPathComponent("\(getpid())-456.png"))
            try Data("orphan".utf8).write(to: images.appendingPathComponent("3.png"))
            try Data("removed".utf8).write(to: images.appendingPathComponent("2.png"))
            try store.db.run("INSERT INTO removed_files(file) VALUES('2.png')")
        }
        let store = try SQLiteStore(url: storeURL)
        let r = store.startupReport
        XCTAssertEqual(r.staleTemporaryFiles.count, 1)
        XCTAssertEqual(Set(r.orphanFiles), ["3.png", "2.png"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmpFolder.path), ["\(getpid())-456.png"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: images.path).filter { !$0.hasPrefix(".") }, ["1.png"])
        XCTAssertEqual(try store.db.scalarInt("SELECT count(*) FROM removed_files"), 0)
        XCTAssertTrue(try store.check(verify: true).isClean)
    }

    func testFullCheckFindsWhatTheStartupCheckDoesNotLookFor() throws {
        let store = try SQLiteStore(url: storeURL)
        let a = try add(store, embedding: [1, 0])
        let b = try add(store, embedding: [0, 1])
        try add(store, embedding: [1, 1])
        try Data("stray".utf8).write(to: store.imagesURL.appendingPathComponent("1000.png"))  // not seq + 1
        try Data("notes".utf8).write(to: store.imagesURL.appendingPathComponent("notes.txt"))  // not ours: left alone
        try FileManager.default.removeItem(at: a.imageURL)
        try Data("changed".utf8).write(to: b.imageURL)
        var r = try store.check(verify: true)
        XCTAssertEqual(r.orphanFiles, ["1000.png"])
        XCTAssertEqual(r.missingImages, [a.id])
        XCTAssertEqual(r.changedImages, [b.id])
        XCTAssertFalse(r.isClean)
        r = try store.check(verify: false, clean: true)
        XCTAssertEqual(r.changedImages, [], "only with verify")
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.imagesURL.appendingPathComponent("1000.png").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: store.imagesURL.appendingPathComponent("notes.txt").path))
        XCTAssertEqual(try store.count(), 3, "rows are never removed by a check")
    }

    func testRecordFailureLeavesNeitherRowNorFile() throws {
        let store = try SQLiteStore(url: storeURL)
        let temp = try store.temporaryImageURL()
        try Data("x".utf8).write(to: temp)
        // A parent that does not exist violates the foreign key: the insert fails inside the transaction.
        XCTAssertThrowsError(try store.record(NewGeneration(kind: .variation, modelID: nil, prompt: nil, settings: RecordedSettings(), seed: 1,
                                                            embedding: [1], parents: [ParentLink(role: "source", id: 77)],
                                                            width: 1, height: 1, seconds: 0), temporaryImage: temp))
        XCTAssertEqual(try store.count(), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: temp.path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: store.imagesURL.path).filter { !$0.hasPrefix(".") }, [])
        XCTAssertTrue(try store.check(verify: true).isClean)
    }
}
