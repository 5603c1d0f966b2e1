import Foundation
import UnCLIPImage
import UnCLIPStore
import UnCLIPStoreSQLite
import XCTest

/// The faults a new user hit with the CLI (issue 15, items 1–11), each run as that user ran it, on the shipped
/// model unless the fault needs another. Every test here failed on the build before the engine/request layer.
final class NewUserFaultTests: CLITestCase {
    var storeURL: URL { tmp.appendingPathComponent("store.sqlite") }
    let bundle = "Tests/Fixtures/bundles/tiny-unclip"

    func storedCount() throws -> Int {
        guard FileManager.default.fileExists(atPath: storeURL.path) else { return 0 }
        return try SQLiteStore(url: storeURL, access: .readOnly).count()
    }

    func jsonLines(_ text: String) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// 1. A size that cannot fit is refused at once with the estimate and the memory available (it used to be
    /// killed by the kernel's OOM killer, exit 137); a size far from the model's native one warns.
    func testImpossibleSizeIsRefusedBeforeAnyWork() throws {
        let start = Date()
        try assertFails(["generate", "a red circle", "--width", "100000", "--height", "100000"],
                        mentioning: ["GiB of memory", "available", "100000×100000"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 30, "refused before loading or computing")
        XCTAssertEqual(try storedCount(), 0)
        let r = try run(["generate", "a red circle", "--width", "128", "--height", "128", "--seed", "1", "--steps", "2", "--prior-steps", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "far from this model's native 32×32").count - 1, 1, "said once: \(r.stderr)")
    }

    /// 2. DPM++ 2M Karras runs to the end at the step counts that failed after all the work.
    func testDPMSolverKarrasRunsAtEveryStepCount() throws {
        for steps in [4, 20] {
            let r = try run(["generate", "a red circle", "--sampler", "dpm++2m-karras", "--steps", "\(steps)", "--seed", "1", "--prior-steps", "2"])
            XCTAssertEqual(r.status, 0, "steps \(steps): \(r.stderr)")
        }
    }

    /// 3. vary, interpolate and nudge take the model's recommended guidance (unclip.json: 2), as generate does.
    func testEveryCommandUsesTheModelsGuidanceDefault() throws {
        let made = jsonLines(try run(["generate", "a red circle", "--seed", "1", "--prior-steps", "2", "--steps", "2", "--json"]).stdout)
        let id = (made.first?["id"] as? NSNumber)?.int64Value ?? -1
        XCTAssertEqual(try run(["vary", "\(id)", "--seed", "2", "--steps", "2"]).status, 0)
        XCTAssertEqual(try run(["interpolate", "\(id)", "\(id)", "--frames", "2", "--seed", "3", "--steps", "2"]).status, 0)
        XCTAssertEqual(try run(["nudge", "\(id)", "--toward", "a blue circle", "--seed", "4", "--steps", "2"]).status, 0)
        let store = try SQLiteStore(url: storeURL, access: .readOnly)
        let all = try store.generations()
        XCTAssertEqual(all.count, 5)
        for g in all { XCTAssertEqual(g.settings.guidance, 2, "\(g.kind) generation \(g.id)") }
    }

    /// 4. --json lines reach a pipe as each image is stored, and Ctrl-C keeps every finished image's line.
    func testJSONStreamsThroughAPipeAndSurvivesCtrlC() throws {
        let p = Process()
        p.executableURL = binary
        p.arguments = ["generate", "a red circle", "--count", "50", "--seed", "1", "--json"]
        p.currentDirectoryURL = tmp
        p.environment = ProcessInfo.processInfo.environment.merging(["UNCLIP_STORE": storeURL.path], uniquingKeysWith: { $1 })
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        var received = Data()
        let deadline = Date().addingTimeInterval(60)
        while !received.contains(UInt8(ascii: "\n")) && Date() < deadline && p.isRunning {
            received.append(out.fileHandleForReading.availableData)
        }
        XCTAssertTrue(p.isRunning, "still making the other images")
        XCTAssertEqual(jsonLines(String(decoding: received, as: UTF8.self)).count, 1, "the first image's line arrived while the run goes on")
        kill(p.processIdentifier, SIGINT)
        received.append(out.fileHandleForReading.readDataToEndOfFile())
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130)
        let lines = jsonLines(String(decoding: received, as: UTF8.self))
        XCTAssertGreaterThan(lines.count, 0)
        XCTAssertLessThan(lines.count, 50)
        XCTAssertEqual(lines.count, try storedCount(), "one line for every stored image, no partial record")
        XCTAssertTrue(try SQLiteStore(url: storeURL, access: .readOnly).check(verify: true).isClean)
    }

    /// 5. Non-finite and absurd numbers are refused naming the option; nothing is stored.
    func testNonFiniteAndOutOfRangeNumbersAreRefused() throws {
        try assertFails(["generate", "x", "--guidance", "nan"], mentioning: ["--guidance", "finite"])
        try assertFails(["generate", "x", "--prior-guidance", "nan"], mentioning: ["--prior-guidance", "finite"])
        try assertFails(["generate", "x", "--guidance", "1e30"], mentioning: ["--guidance", "0.0…100.0"])
        try assertFails(["generate", "x", "--cfg-scale", "-inf"], mentioning: ["--guidance", "finite"])
        XCTAssertEqual(try storedCount(), 0)
    }

    /// 6. An output path that cannot be written is refused before anything is generated or stored.
    func testUnwritableOutputIsRefusedBeforeWork() throws {
        let file = tmp.appendingPathComponent("afile")
        try Data("x".utf8).write(to: file)
        try assertFails(["generate", "x", "--output", tmp.appendingPathComponent("missing/dir/out.png").path], mentioning: ["does not exist"])
        try assertFails(["generate", "x", "-o", tmp.path], mentioning: ["is a folder"])
        try assertFails(["generate", "x", "--output", file.appendingPathComponent("out.png").path], mentioning: ["is a file, not a folder"])
        XCTAssertEqual(try storedCount(), 0)
    }

    /// 7. The defaults help states are the defaults: unclip-SEED.png in the working folder, edit strength 0.8.
    func testDefaultsDoWhatHelpSays() throws {
        let r = try run(["generate", "a red circle", "--seed", "7", "--steps", "2", "--prior-steps", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("unclip-7.png").path))
        XCTAssertTrue(r.stdout.contains("unclip-7.png") && r.stdout.contains("seed 7"), r.stdout)
        let help = try run(["help", "generate"]).stdout
        XCTAssertTrue(help.contains("unclip-SEED.png"), help)
        let e = try run(["edit", "--image", tmp.appendingPathComponent("unclip-7.png").path, "a blue circle", "--seed", "1", "--steps", "4",
                         "--prior-steps", "2", "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let id = (jsonLines(e.stdout).first?["id"] as? NSNumber)?.int64Value ?? -1
        XCTAssertEqual(try SQLiteStore(url: storeURL, access: .readOnly).generation(id).settings.strength, 0.8)
        XCTAssertTrue(try run(["help", "edit"]).stdout.contains("--strength"))
    }

    /// 8. Options that do not apply are refused, not ignored.
    func testOptionsThatDoNotApplyAreRefused() throws {
        try assertFails(["vary", "1", "--strength", "0.5"], mentioning: ["--strength"])
        try assertFails(["edit", "--image", "x.png", "p", "--width", "64"], mentioning: ["--width"])
        try assertFails(["generate", "x", "--variant", "bogus"], mentioning: ["bogus"])
        XCTAssertEqual(try storedCount(), 0)
    }

    /// 9. Missing models, single-file checkpoints and wrong encoder folders say what they are.
    func testModelPathErrorsNameWhatIsWrong() throws {
        try assertFails(["generate", "x", "--model", tmp.appendingPathComponent("nope").path], mentioning: ["no model at", "nope"])
        let single = tmp.appendingPathComponent("sd21-unclip-h.safetensors")
        try Data("x".utf8).write(to: single)
        try assertFails(["generate", "x", "--model", single.path], mentioning: ["single-file checkpoint", "sd21-unclip-h.safetensors"])
        let ckpt = tmp.appendingPathComponent("model.ckpt")
        try Data("x".utf8).write(to: ckpt)
        try assertFails(["generate", "x", "--model", ckpt.path], mentioning: ["single-file checkpoint"])
        try assertFails(["embed-image", "a.png", "--image-encoder", "/nope"], mentioning: ["/nope"])
    }

    /// 10. Text search encodes the query with the model that made the stored generations (here the tiny bundle's
    /// 16-d CLIP), not with the default model (the shipped model's other space).
    func testTextSearchUsesTheModelsThatMadeTheStore() throws {
        let made = try run(["generate", "a red lighthouse", "--model", bundle, "--width", "32", "--height", "32", "--steps", "2",
                            "--prior-steps", "2", "--seed", "1", "--json"])
        XCTAssertEqual(made.status, 0, made.stderr)
        let r = try run(["search", "a red lighthouse", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let hits = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]] ?? []
        XCTAssertEqual(hits.count, 1, r.stdout)
    }

    /// 11. The smaller faults.
    func testSmallerFaults() throws {
        try assertFails(["generate", "x", "--steps", "-5"], mentioning: ["--steps", "1…1000", "-5"])
        let long = Array(repeating: "word", count: 100).joined(separator: " ")
        let w = try run(["generate", long, "--seed", "1", "--steps", "2", "--prior-steps", "2"])
        XCTAssertEqual(w.status, 0, w.stderr)
        XCTAssertEqual(w.stderr.components(separatedBy: "tokens; CLIP reads").count - 1, 1, "the truncation warning once: \(w.stderr)")
        try assertFails(["generate", "x", "--seed", "\(UInt64.max)", "--count", "3"], mentioning: ["--seed", "2^64"])
        // An interpolation from a generation to itself is one child, listed once.
        let id = 1
        XCTAssertEqual(try run(["interpolate", "\(id)", "\(id)", "--frames", "2", "--seed", "1", "--steps", "2"]).status, 0)
        let shown = try run(["show", "\(id)"]).stdout
        XCTAssertTrue(shown.contains("children: 2, 3\n"), shown)
        let children = try SQLiteStore(url: storeURL, access: .readOnly).children(of: 1)
        XCTAssertEqual(children, Array(Set(children)).sorted(), "each child once")
        let empty = try run(["list", "--store", tmp.appendingPathComponent("empty.sqlite").path])
        XCTAssertEqual(empty.status, 0)
        XCTAssertTrue(empty.stdout.contains("no generations yet"), empty.stdout)
        let help = try run(["help", "nonexistent"])
        XCTAssertNotEqual(help.status, 0)
        XCTAssertTrue(help.stderr.contains("nonexistent"))
        let version = try run(["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertFalse(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
    }

    /// 11 (last part). JPEG and WebP pictures are read wherever a picture is, as diffusers' load_image reads them.
    func testJPEGAndWebPPicturesAreAccepted() throws {
        let jpeg = "Tests/Fixtures/image_formats/exif6.jpg", webp = "Tests/Fixtures/image_formats/lossy.webp"
        let v = try run(["vary", "--image", jpeg, "--seed", "1", "--steps", "2", "--json"])
        XCTAssertEqual(v.status, 0, v.stderr)
        XCTAssertTrue(v.stderr.contains("recorded as generation 1"), v.stderr)
        let store = try SQLiteStore(url: storeURL, access: .readOnly)
        let source = try store.generation(1)
        XCTAssertEqual(source.kind, .source)
        XCTAssertEqual([source.width, source.height], [45, 67], "EXIF orientation 6 turns the 67×45 picture upright")
        XCTAssertEqual(try ImageFile.format(of: store.imageData(1)), .png, "the store keeps a PNG of it")
        let s = try run(["search", "--image", webp, "--json"])
        XCTAssertEqual(s.status, 0, s.stderr)
        try assertFails(["vary", "--image", "Tests/Fixtures/image_formats/manifest.json"], mentioning: ["manifest.json", "PNG, JPEG or WebP"])
    }

    /// 5 and the A1111 vocabulary: the PNG's parameters chunk uses A1111's sampler names and a model hash.
    func testParametersChunkSpeaksA1111() throws {
        let r = try run(["generate", "a red circle", "--negative-prompt", "blurry", "--cfg-scale", "3", "--sampler", "Euler a",
                         "--batch-count", "1", "-s", "5", "--steps", "2", "--prior-steps", "2", "-o", "out.png"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let (_, text) = try PNG.readWithText(tmp.appendingPathComponent("out.png"))
        let parameters = text.first { $0.key == "parameters" }?.value ?? ""
        let lines = parameters.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "a red circle")
        XCTAssertEqual(lines.dropFirst().first, "Negative prompt: blurry")
        let fields = lines.last ?? ""
        for needle in ["Steps: 2", "Sampler: Euler a", "CFG scale: 3.0", "Seed: 5", "Size: 32x32", "Model hash: ", "Model: shapes"] {
            XCTAssertTrue(fields.contains(needle), "'\(needle)' missing from: \(fields)")
        }
    }
}
