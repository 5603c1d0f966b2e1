import CSQLite
import Foundation
import UnCLIPStore
import UnCLIPStoreSQLite
import XCTest

/// The store through the `unclip` binary, on the tiny diffusers bundle: recording, caches, the commands on
/// stored generations, and the failure cases (killed processes, concurrent writers, bad store files).
final class StoreCLITests: CLITestCase {
    let bundle = "Tests/Fixtures/bundles/tiny-unclip"
    var fast: [String] { ["--model", bundle, "--width", "32", "--height", "32", "--steps", "2", "--json"] }
    var storeURL: URL { tmp.appendingPathComponent("store.sqlite") }

    /// The JSON objects a command printed, one per line (or one array).
    func objects(_ r: Result, file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        let text = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("[") { return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]] ?? [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func generate(_ prompt: String, seed: Int, _ extra: [String] = []) throws -> [String: Any] {
        let made = objects(try run(["generate", prompt, "--seed", "\(seed)", "--prior-steps", "2"] + fast + extra))
        XCTAssertEqual(made.count, 1)
        return made.first ?? [:]
    }

    func id(_ o: [String: Any]) -> Int64 { (o["id"] as? NSNumber)?.int64Value ?? -1 }

    func openStore() throws -> SQLiteStore { try SQLiteStore(url: storeURL, access: .readOnly) }

    func testGenerateRecordsTheImageAndARepeatHitsBothCaches() throws {
        let out = tmp.appendingPathComponent("copy.png")
        let first = try generate("a red lighthouse", seed: 1, ["--output", out.path])
        XCTAssertEqual(first["cache"] as? [String: String], ["text": "miss", "prior": "miss"])
        let image = URL(fileURLWithPath: first["image"] as! String)
        XCTAssertEqual(image.deletingLastPathComponent().path, tmp.appendingPathComponent("store-images").path)
        let bytes = try Data(contentsOf: image)
        XCTAssertEqual(SHA256.hex(bytes), first["sha256"] as? String)
        XCTAssertEqual(try Data(contentsOf: out), bytes, "--output is one more copy of the same file")
        do {
            let store = try openStore()
            let g = try store.generation(id(first))
            XCTAssertEqual(g.kind, .textToImage)
            XCTAssertEqual(g.prompt, "a red lighthouse")
            XCTAssertEqual(g.seed, 1)
            XCTAssertEqual(g.sha256, first["sha256"] as? String)
            XCTAssertEqual(g.dim, 16)
            XCTAssertEqual(try store.priorRun(id: XCTUnwrap(g.priorRunID))?.scores.count, 2, "both candidates kept")
        }
        let second = try run(["generate", "a red lighthouse", "--seed", "1", "--prior-steps", "2"] + fast)
        let o = objects(second).first ?? [:]
        XCTAssertEqual(o["cache"] as? [String: String], ["text": "hit", "prior": "hit"])
        XCTAssertTrue(second.stderr.contains("cache: text encodings hit, prior hit"), second.stderr)
        XCTAssertFalse(second.stderr.contains("prior:"), "the prior stage did not run: \(second.stderr)")
        XCTAssertEqual(o["sha256"] as? String, first["sha256"] as? String, "a cache hit makes the same image")
        XCTAssertEqual(id(o), id(first) + 1)
        let uncached = try generate("a red lighthouse", seed: 1, ["--no-cache"])
        XCTAssertEqual(uncached["cache"] as? [String: String], ["text": "off", "prior": "off"])
        XCTAssertEqual(uncached["sha256"] as? String, first["sha256"] as? String)
    }

    func testCommandsOnStoredGenerations() throws {
        let a = try generate("a red lighthouse", seed: 1), b = try generate("a blue car", seed: 2)
        let ida = id(a), idb = id(b)
        let variation = objects(try run(["vary", "\(ida)", "--seed", "5"] + fast)).first ?? [:]
        XCTAssertEqual((variation["parents"] as? [[String: Any]])?.first?["role"] as? String, "source")

        let frames = objects(try run(["interpolate", "\(ida)", "\(idb)", "--frames", "3", "--seed", "9"] + fast))
        XCTAssertEqual(frames.count, 3)
        let nudged = objects(try run(["nudge", "\(ida)", "--toward", "a green lighthouse", "--amount", "0", "--seed", "3"] + fast)).first ?? [:]
        do {
            let store = try openStore()
            let ea = try store.generation(ida).requireEmbedding(), eb = try store.generation(idb).requireEmbedding()
            let f = try frames.map { try store.generation(id($0)).requireEmbedding() }
            XCTAssertEqual(f[0], ea, "frame 0 is the first endpoint's embedding")
            XCTAssertEqual(f[2], eb, "the last frame is the second endpoint's embedding")
            let omega = EmbeddingMath.angle(ea, eb)
            XCTAssertEqual(EmbeddingMath.angle(ea, f[1]), omega / 2, accuracy: 1e-5, "slerp: the middle frame halves the angle")
            XCTAssertEqual(EmbeddingMath.norm(f[1]), (EmbeddingMath.norm(ea) + EmbeddingMath.norm(eb)) / 2, accuracy: 1e-4)
            XCTAssertEqual(try store.generation(id(nudged)).embedding, ea, "nudge with θ = 0 keeps the embedding")
            XCTAssertEqual(try store.generation(id(nudged)).settings.from, "a red lighthouse")
        }

        let like = objects(try run(["search", "--like", "\(idb)", "--json"]))
        XCTAssertEqual(like.first.map(id), idb, "a generation is most like itself")
        XCTAssertEqual((like.first?["score"] as? Double) ?? 0, 1, accuracy: 1e-6)
        let byText = objects(try run(["search", "a red lighthouse", "--model", bundle, "--limit", "3", "--json"]))
        XCTAssertEqual(byText.count, 3)
        XCTAssertNotNil(byText.first?["image"] as? String)
        let human = try run(["search", "--like", "\(idb)", "--limit", "2"])
        XCTAssertTrue(human.stdout.contains("\"a blue car\""), human.stdout)

        let copy = tmp.appendingPathComponent("again.png")
        let again = objects(try run(["regenerate", "\(ida)", "--output", copy.path, "--json"])).first ?? [:]
        XCTAssertEqual(again["identical"] as? Bool, true, "\(again)")
        XCTAssertEqual(SHA256.hex(try Data(contentsOf: copy)), a["sha256"] as? String)
        XCTAssertEqual(objects(try run(["regenerate", "\(id(frames[1]))", "--no-cache", "--json"])).first?["identical"] as? Bool, true)

        let shown = objects(try run(["show", "\(ida)", "--json"])).first ?? [:]
        XCTAssertEqual((shown["prior"] as? [String: Any])?["scores"] as? [Double] != nil, true)
        XCTAssertEqual(((shown["prior"] as? [String: Any])?["scores"] as? [Double])?.count, 2)
        XCTAssertEqual(Set((shown["children"] as? [NSNumber])?.map(\.int64Value) ?? []),
                       Set([id(variation), id(nudged)] + frames.map(id)))
        let exported = objects(try run(["export", "\(id(variation))", "--to", tmp.appendingPathComponent("exp").path, "--json"])).first ?? [:]
        XCTAssertEqual((exported["files"] as? [String])?.count, 3)

        // rm: the row and the file go; children keep working from their own embeddings.
        let removed = try run(["rm", "\(ida)"])
        XCTAssertEqual(removed.status, 0, removed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: a["image"] as! String))
        let child = objects(try run(["show", "\(id(variation))", "--json"])).first ?? [:]
        XCTAssertEqual((child["parents"] as? [[String: Any]])?.first?["exists"] as? Bool, false)
        XCTAssertEqual(objects(try run(["vary", "\(id(variation))", "--seed", "6"] + fast)).count, 1)
        XCTAssertEqual(objects(try run(["regenerate", "\(id(nudged))", "--json"])).first?["identical"] as? Bool, true)
        XCTAssertEqual(objects(try run(["list", "--json", "--limit", "0"])).count, 7)
        XCTAssertEqual(objects(try run(["list", "--kind", "interpolation", "--json"])).count, 3)
        XCTAssertEqual(try run(["check"]).status, 0)
    }

    /// Issue 8: plain Stable Diffusion generations and edits are recorded like any generation — without an
    /// embedding, or with the --clip vision encoder's embedding of the finished image — and can be regenerated.
    func testPlainStableDiffusionAndEditsAreRecorded() throws {
        let sd = "Tests/Fixtures/sd/tiny-sd-v"
        let small = ["--width", "32", "--height", "32", "--steps", "2", "--json"]
        let plain = objects(try run(["generate", "a red square", "--model", sd, "--seed", "3"] + small)).first ?? [:]
        let clipped = objects(try run(["generate", "a red square", "--model", sd, "--seed", "4", "--clip", bundle] + small)).first ?? [:]
        let initPNG = "Tests/Fixtures/sd/sd-init.png"
        let edit = objects(try run(["edit", "--image", initPNG, "a house", "--model", sd, "--strength", "0.5", "--seed", "5", "--steps", "4", "--json"])).first ?? [:]
        // An edit of a stored picture links to it.
        let unclipped = objects(try run(["generate", "a robot", "--seed", "6", "--prior-steps", "2"] + fast)).first ?? [:]
        let storedPNG = try openStore().generation(id(unclipped)).imageURL.path
        let unclipEdit = objects(try run(["edit", "--image", storedPNG, "a red robot", "--strength", "0.6", "--seed", "7", "--prior-steps", "2",
                                          "--model", bundle, "--steps", "3", "--json"])).first ?? [:]
        do {
            let store = try openStore()
            let p = try store.generation(id(plain))
            XCTAssertEqual(p.kind, .textToImage)
            XCTAssertNil(p.embedding, "no CLIP vision encoder: recorded without an embedding")
            XCTAssertNil(p.priorRunID)
            XCTAssertNil(p.settings.priorSteps)
            let c = try store.generation(id(clipped))
            XCTAssertEqual(c.settings.clipModel.map { URL(fileURLWithPath: $0).lastPathComponent }, "image_encoder")
            XCTAssertNil(c.embedding, "plain Stable Diffusion has no decoder embedding")
            XCTAssertEqual(c.pictureEmbedding?.count, 16, "--clip embeds the finished picture")
            XCTAssertNil(p.pictureEmbedding)
            let t2i = try store.generation(id(unclipped))
            XCTAssertEqual(t2i.pictureEmbedding?.count, 16, "a Stable unCLIP folder with an image encoder embeds its pictures")
            XCTAssertNotEqual(t2i.pictureEmbedding, t2i.embedding)
            let e = try store.generation(id(edit))
            XCTAssertEqual(e.kind, .edit)
            XCTAssertEqual(e.settings.strength, 0.5)
            XCTAssertEqual(e.settings.initSHA256, SHA256.hex(try Data(contentsOf: URL(fileURLWithPath: initPNG))))
            XCTAssertEqual(e.parents, [], "the init picture is not a stored generation")
            let u = try store.generation(id(unclipEdit))
            XCTAssertEqual(u.kind, .edit)
            XCTAssertEqual(u.parents, [ParentLink(role: "init", id: id(unclipped))])
            XCTAssertEqual(u.dim, 16, "a Stable unCLIP edit keeps the prior's image embedding")
            XCTAssertNotNil(u.priorRunID)
            // The --clip embedding is the vision encoder's embedding of the finished picture.
            let embedded = try run(["embed-image", c.imageURL.path, "--image-encoder", "\(bundle)/image_encoder"])
            XCTAssertEqual(embedded.status, 0, embedded.stderr)
            let norms = (try JSONSerialization.jsonObject(with: Data(embedded.stdout.utf8)) as? [String: Any])?["norms"] as? [Double]
            let stored = try c.requireEmbedding()
            XCTAssertEqual(stored.count, 16)
            XCTAssertEqual(norms?.first ?? 0, Double(EmbeddingMath.norm(stored)), accuracy: 1e-5)
        }
        // Search covers the embedded one and skips the one without.
        let hits = objects(try run(["search", "--like", "\(id(clipped))", "--limit", "50", "--json", "--model", bundle]))
        XCTAssertEqual(hits.first.map(id), id(clipped))
        XCTAssertFalse(hits.map(id).contains(id(plain)))
        let listed = objects(try run(["list", "--json", "--limit", "0"]))
        XCTAssertEqual(listed.count, 5)
        XCTAssertTrue(listed.contains { id($0) == id(plain) && $0["dim"] is NSNull })
        // Each kind regenerates to the same bytes.
        for g in [plain, edit, unclipEdit] {
            let r = try run(["regenerate", "\(id(g))"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("matches") || r.stdout.contains("\"matches\":true") || r.stdout.contains("identical"), r.stdout)
        }
        // What has no embedding says so, and what to do instead.
        try assertFails(["vary", "\(id(plain))", "--model", bundle], mentioning: ["no image embedding", "vary --image"])
        try assertFails(["search", "--like", "\(id(plain))", "--model", bundle], mentioning: ["no image embedding"])
        try assertFails(["generate", "x", "--model", sd, "--strength", "0.5"], mentioning: ["unclip edit"])
    }

    /// Issue 19: `edit --mask` inpaints (default strength 1, as diffusers), records the mask's path and sha256,
    /// and regenerates to the same bytes; a mask of another size is refused naming --mask.
    func testInpaintingEditsAreRecordedAndRegenerate() throws {
        let sd = "Tests/Fixtures/sd/tiny-sd-eps", initPNG = "Tests/Fixtures/sd/sd-init.png"
        let mask = "Tests/Fixtures/inpaint/mask-rect.png"
        let made = objects(try run(["edit", "--image", initPNG, "--mask", mask, "a house", "--model", sd, "--seed", "5", "--steps", "3", "--json"]))
        XCTAssertEqual(made.count, 1)
        let e = try openStore().generation(id(made.first ?? [:]))
        XCTAssertEqual(e.kind, .edit)
        XCTAssertEqual(e.settings.strength, 1)
        XCTAssertEqual(e.settings.maskImage.map { URL(fileURLWithPath: $0).lastPathComponent }, "mask-rect.png")
        XCTAssertEqual(e.settings.maskSHA256, SHA256.hex(try Data(contentsOf: URL(fileURLWithPath: mask))))
        let r = try run(["regenerate", "\(e.id)"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("matches") || r.stdout.contains("\"matches\":true") || r.stdout.contains("identical"), r.stdout)
        // The same edit without the mask is a different picture.
        let whole = objects(try run(["edit", "--image", initPNG, "--strength", "1", "a house", "--model", sd, "--seed", "5", "--steps", "3", "--json"]))
        XCTAssertNotEqual(try openStore().generation(id(whole.first ?? [:])).sha256, e.sha256)
        // A mask of the picture's shape but another size is resized, as diffusers does; another shape is refused.
        let resized = try run(["edit", "--image", initPNG, "--mask", "Tests/Fixtures/inpaint/mask-24.png", "x", "--model", sd, "--steps", "2", "--json"])
        XCTAssertEqual(resized.status, 0, resized.stderr)
        try assertFails(["edit", "--image", initPNG, "--mask", "Tests/Fixtures/image/png/gray1.png", "x", "--model", sd],
                        mentioning: ["--mask", "37×29", "shape"])
        let help = try run(["help", "edit"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(help.contains("WHITE part is repainted"), help)
    }

    /// A folder whose UNet takes mask channels (9 inputs) only inpaints: text-to-image and plain edits are
    /// refused before any work, naming what it can do.
    func testInpaintingModelsOnlyInpaint() throws {
        let folder = tmp.appendingPathComponent("tiny-sd-inpaint")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let base = URL(fileURLWithPath: "Tests/Fixtures/sd/tiny-sd-eps").standardizedFileURL
        for part in ["tokenizer", "text_encoder", "vae", "scheduler", "model_index.json"] {
            try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(part), withDestinationURL: base.appendingPathComponent(part))
        }
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("unet"),
                                                   withDestinationURL: URL(fileURLWithPath: "Tests/Fixtures/inpaint/unet9").standardizedFileURL)
        let initPNG = "Tests/Fixtures/sd/sd-init.png"
        let made = objects(try run(["edit", "--image", initPNG, "--mask", "Tests/Fixtures/inpaint/mask-colour.png", "a house",
                                    "--model", folder.path, "--seed", "1", "--steps", "2", "--json"]))
        XCTAssertEqual(made.count, 1)
        try assertFails(["generate", "a house", "--model", folder.path, "--steps", "2"], mentioning: ["inpaint"])
        try assertFails(["edit", "--image", initPNG, "a house", "--model", folder.path, "--steps", "2"], mentioning: ["inpaint"])
    }

    func testVaryingAnOutsideImageRecordsItAsASource() throws {
        let made = try generate("a red lighthouse", seed: 1)
        let png = tmp.appendingPathComponent("photo.png")
        try FileManager.default.copyItem(atPath: made["image"] as! String, toPath: png.path)
        let r = try run(["vary", "--image", png.path, "--seed", "2", "--count", "2"] + fast)
        let lines = objects(r)
        XCTAssertEqual(lines.count, 2)
        let source = (lines[0]["parents"] as? [[String: Any]])?.first?["id"] as? NSNumber
        XCTAssertTrue(r.stderr.contains("recorded as generation \(source?.int64Value ?? -1)"), r.stderr)
        let shown = objects(try run(["show", "\(source?.int64Value ?? -1)", "--json"])).first ?? [:]
        XCTAssertEqual(shown["kind"] as? String, "source")
        XCTAssertEqual(shown["sha256"] as? String, made["sha256"] as? String)
        // The source and the generation it was copied from are the same picture: both rank first.
        let found = objects(try run(["search", "--image", png.path, "--model", bundle, "--limit", "2", "--json"]))
        XCTAssertEqual(Set(found.map(id)), [source?.int64Value ?? -1, id(made)])
    }

    /// The test kills `unclip` at the two moments where a row and a file could part, then at random moments.
    func testKilledProcessLeavesAConsistentStore() throws {
        _ = try generate("warm up", seed: 1)
        let images = tmp.appendingPathComponent("store-images")
        for point in ["before-rename", "after-rename"] {
            let r = try run(["generate", "a red lighthouse", "--seed", "2", "--prior-steps", "2"] + fast, environment: ["UNCLIP_STORE_CRASH": point])
            XCTAssertEqual(r.status, SIGKILL, "killed at \(point): \(r.stderr)")
            let leftovers = (try FileManager.default.contentsOfDirectory(atPath: images.appendingPathComponent(".tmp").path)).count
                + (try FileManager.default.contentsOfDirectory(atPath: images.path)).filter { $0.hasSuffix(".png") }.count - 1
            XCTAssertEqual(leftovers, 1, "the crash left a temporary file or an uncommitted image (\(point))")
            let next = try run(["check", "--verify", "--json"])
            XCTAssertEqual(next.status, 0, next.stdout + next.stderr)
            XCTAssertTrue(next.stderr.contains("store: removed"), next.stderr)
            XCTAssertEqual(objects(next).first?["clean"] as? Bool, true)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: images.appendingPathComponent(".tmp").path), [])
            XCTAssertEqual(try openStore().count(), 1, "no row was committed")
        }
        // Kills at arbitrary moments of a longer run (4 images of 30 steps each).
        for delay in [0.15, 0.4, 0.7, 1.1, 1.6] {
            let p = try start(["generate", "a blue car", "--seed", "10", "--count", "4", "--prior-steps", "2", "--model", bundle,
                               "--width", "32", "--height", "32", "--steps", "30"])
            Thread.sleep(forTimeInterval: delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let check = try run(["check", "--verify", "--json"])
            XCTAssertEqual(check.status, 0, "after a kill at \(delay) s: " + check.stdout + check.stderr)
            let store = try openStore()
            let names = try FileManager.default.contentsOfDirectory(atPath: images.path).filter { $0.hasSuffix(".png") }
            XCTAssertEqual(names.count, try store.count(), "one file per row")
            for g in try store.generations() { XCTAssertEqual(SHA256.hex(try Data(contentsOf: g.imageURL)), g.sha256) }
        }
    }

    func testTwoProcessesGeneratingIntoOneNewStoreBothSucceed() throws {
        XCTAssertFalse(FileManager.default.fileExists(atPath: storeURL.path))
        let outputs = (0..<2).map { tmp.appendingPathComponent("out\($0).txt") }
        let processes = try (0..<2).map { i in
            try start(["generate", i == 0 ? "a red lighthouse" : "a blue car", "--seed", "\(1 + 100 * i)", "--count", "3",
                       "--prior-steps", "2"] + fast, stdout: outputs[i])
        }
        for p in processes { p.waitUntilExit() }
        for (i, p) in processes.enumerated() {
            XCTAssertEqual(p.terminationStatus, 0, "writer \(i) failed")
            XCTAssertEqual(try String(contentsOf: outputs[i], encoding: .utf8).split(separator: "\n").count, 3)
        }
        let store = try openStore()
        XCTAssertEqual(try store.count(), 6)
        XCTAssertEqual(Set(try store.generations().map(\.id)).count, 6)
        XCTAssertEqual(try run(["check", "--verify"]).status, 0)
    }

    func testBadStoreFilesFailClearlyAndAreLeftAlone() throws {
        let base = ["generate", "x", "--seed", "1", "--prior-steps", "1"] + fast
        // Not a database at all.
        let garbage = Data((0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
        try garbage.write(to: storeURL)
        try assertFails(base, mentioning: [storeURL.path, "not a SQLite database"])
        try assertFails(["list"], mentioning: ["not a SQLite database"])
        XCTAssertEqual(try Data(contentsOf: storeURL), garbage)
        // Another application's SQLite database.
        let foreign = tmp.appendingPathComponent("foreign.sqlite")
        var db: OpaquePointer?
        sqlite3_open(foreign.path, &db)
        sqlite3_exec(db, "CREATE TABLE contacts(name TEXT); INSERT INTO contacts VALUES('Ada');", nil, nil, nil)
        sqlite3_close(db)
        try assertFails(base + ["--store", foreign.path], mentioning: [foreign.path, "not an unclip store"])
        // A store from a newer unclip.
        let future = tmp.appendingPathComponent("future.sqlite")
        XCTAssertEqual(try run(["list", "--store", future.path]).status, 0)
        sqlite3_open(future.path, &db)
        sqlite3_exec(db, "PRAGMA user_version = 99", nil, nil, nil)
        sqlite3_close(db)
        let before = try Data(contentsOf: future)
        try assertFails(base + ["--store", future.path], mentioning: ["newer unclip", "99"])
        try assertFails(["search", "--like", "1", "--store", future.path], mentioning: ["newer unclip"])
        XCTAssertEqual(try Data(contentsOf: future), before)
        // A folder given as the store.
        try assertFails(base + ["--store", tmp.path], mentioning: ["folder"])
    }

    /// A store whose file and folder cannot be written: reading commands work, writing ones fail clearly.
    /// Root ignores permissions, so as root the commands run as `nobody` (through runuser).
    func testReadOnlyStore() throws {
        let runuser = "/usr/sbin/runuser"
        let asRoot = getuid() == 0
        try XCTSkipIf(asRoot && !FileManager.default.isExecutableFile(atPath: runuser), "root ignores file permissions and runuser is missing")
        _ = try generate("a red lighthouse", seed: 1)
        let folder = tmp.appendingPathComponent("ro")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let store = folder.appendingPathComponent("store.sqlite")
        try FileManager.default.copyItem(at: storeURL, to: store)
        try FileManager.default.copyItem(at: tmp.appendingPathComponent("store-images"), to: folder.appendingPathComponent("store-images"))
        chmod(tmp.path, 0o755)
        chmod(store.path, 0o444)
        chmod(folder.path, 0o555)
        defer { chmod(folder.path, 0o755); chmod(store.path, 0o644) }
        func runReadOnly(_ args: [String]) throws -> Result {
            let p = Process()
            p.executableURL = asRoot ? URL(fileURLWithPath: runuser) : binary
            p.arguments = (asRoot ? ["-u", "nobody", "--", binary.path] : []) + args + ["--store", store.path]
            p.currentDirectoryURL = Self.root
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
        }
        if asRoot {
            // `nobody` must reach the built binary and the checkout: a clone under a private folder (mode 700)
            // makes every run fail with "Permission denied", which says nothing about the store.
            let probe = Process()
            probe.executableURL = URL(fileURLWithPath: runuser)
            probe.arguments = ["-u", "nobody", "--", "test", "-x", binary.path, "-a", "-r", Self.root.appendingPathComponent("Package.swift").path]
            try probe.run()
            probe.waitUntilExit()
            if probe.terminationStatus != 0 {
                throw XCTSkip("user nobody cannot reach \(binary.path) (a parent folder of the checkout is private); move the checkout under a folder others may enter")
            }
        }
        // The copy goes to a folder `nobody` may write, so that the store is what is refused.
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-ro-\(UUID().uuidString).png").path
        let generateRun = try runReadOnly(["generate", "x", "--seed", "1", "--prior-steps", "2", "--output", copy] + fast)
        XCTAssertNotEqual(generateRun.status, 0)
        XCTAssertTrue(generateRun.stderr.contains("read-only") && generateRun.stderr.contains(store.path), generateRun.stderr)
        let rm = try runReadOnly(["rm", "1"])
        XCTAssertTrue(rm.status != 0 && rm.stderr.contains("read-only"), rm.stderr)
        XCTAssertEqual(objects(try runReadOnly(["list", "--json"])).count, 1)
        XCTAssertEqual(objects(try runReadOnly(["search", "--like", "1", "--json"])).first.map(id), 1)
        XCTAssertEqual(objects(try runReadOnly(["regenerate", "1", "--json"])).first?["identical"] as? Bool, true)
    }

    /// A full disk: the store lives on a 1 MiB tmpfs filled up to a few KiB; each run either records its image
    /// or fails saying the disk is full, and the store stays consistent. Needs the right to mount (skipped otherwise).
    func testFullDiskFailsClearlyAndLosesNothing() throws {
        let disk = tmp.appendingPathComponent("disk")
        try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: true)
        let mount = try runTool("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", disk.path])
        try XCTSkipIf(mount != 0, "cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
        defer { _ = try? runTool("/bin/umount", [disk.path]) }
        let store = disk.appendingPathComponent("store.sqlite")
        XCTAssertEqual(objects(try run(["generate", "first", "--seed", "1", "--prior-steps", "2", "--store", store.path] + fast)).count, 1)
        var failures = 0, successes = 1
        for left in stride(from: 4, through: 196, by: 24) {
            var stats = statvfs()
            statvfs(disk.path, &stats)
            let free = Int(stats.f_bavail) * Int(stats.f_frsize)
            let filler = disk.appendingPathComponent("filler")
            FileManager.default.createFile(atPath: filler.path, contents: Data(count: max(0, free - left * 1024)))
            let r = try run(["generate", "prompt \(left)", "--seed", "\(left)", "--prior-steps", "2", "--store", store.path] + fast)
            if r.status == 0 { successes += 1 } else {
                failures += 1
                XCTAssertTrue(r.stderr.contains("no space left"), r.stderr)
                XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
            }
            try FileManager.default.removeItem(at: filler)
            let check = try run(["check", "--verify", "--json", "--store", store.path])
            XCTAssertEqual(check.status, 0, "with \(left) KiB left: " + check.stdout + check.stderr)
            XCTAssertEqual(objects(try run(["list", "--json", "--limit", "0", "--store", store.path])).count, successes)
        }
        XCTAssertGreaterThan(failures, 0, "the disk never filled up")
    }

    func runTool(_ path: String, _ args: [String]) throws -> Int32 {
        guard FileManager.default.isExecutableFile(atPath: path) else { return -1 }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    func testBadIdsAndArgumentsFailClearly() throws {
        _ = try generate("a red lighthouse", seed: 1)
        try assertFails(["vary", "999"] + fast, mentioning: ["no generation 999"])
        try assertFails(["show", "abc"], mentioning: ["not a generation id"])
        try assertFails(["interpolate", "1", "999"] + fast, mentioning: ["no generation 999"])
        try assertFails(["interpolate", "1", "1", "--frames", "1"] + fast, mentioning: ["--frames"])
        try assertFails(["search"], mentioning: ["TEXT", "--image", "--like"])
        try assertFails(["nudge", "1", "--toward", "x", "--amount", "2"] + fast, mentioning: ["--amount", "0"])
        try assertFails(["vary", "1", "--image", "x.png"] + fast, mentioning: ["exactly one"])
        try assertFails(["list", "--kind", "painting"], mentioning: ["painting", "text-to-image"])
        try assertFails(["list", "--since", "yesterday-ish"], mentioning: ["yesterday-ish", "YYYY-MM-DD"])
    }

    /// Starts the binary without waiting (stdout to a file if given).
    func start(_ args: [String], stdout: URL? = nil) throws -> Process {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        p.currentDirectoryURL = Self.root
        p.environment = ProcessInfo.processInfo.environment.merging(["UNCLIP_STORE": storeURL.path], uniquingKeysWith: { $1 })
        if let stdout {
            FileManager.default.createFile(atPath: stdout.path, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: stdout)
        } else {
            p.standardOutput = FileHandle.nullDevice
        }
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }
}
