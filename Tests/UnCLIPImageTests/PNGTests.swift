import Foundation
import XCTest
import UnCLIPImage

final class PNGTests: XCTestCase {
    /// Every fixture PNG decodes to exactly the bytes PIL + transformers' convert_to_rgb give
    /// (or, for the two documented PIL defects, the bytes the fixture script derives from the samples).
    func testDecodedPixelsMatchPIL() throws {
        let manifest = try ImageFixtures.manifest()
        XCTAssertGreaterThanOrEqual(manifest.images.count, 30)
        var compared = 0
        for entry in manifest.images {
            let image = try PNG.read(ImageFixtures.url(entry.file))
            XCTAssertEqual(image.width, entry.width, entry.name)
            XCTAssertEqual(image.height, entry.height, entry.name)
            if let raw = entry.decoded_file {
                let expected = try ImageFixtures.bytes(raw)
                XCTAssertEqual(expected.count, image.pixels.count, entry.name)
                let differing = zip(expected, image.pixels).filter { $0 != $1 }.count
                XCTAssertEqual(differing, 0, "\(entry.name): \(differing) bytes differ from PIL")
                compared += 1
            }
            XCTAssertEqual(ImageFixtures.fnv1a64(image.pixels), entry.decoded_fnv1a64, "\(entry.name): digest differs")
            if !entry.pil_matches { print("[decode] \(entry.name): PIL deviation by design: \(entry.note ?? "")") }
        }
        XCTAssertGreaterThanOrEqual(compared, 25)
    }

    func testWriteReadRoundTripWithText() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var pixels = [UInt8](repeating: 0, count: 37 * 23 * 3)
        var state: UInt32 = 12345
        for i in pixels.indices {
            state = state &* 1_664_525 &+ 1_013_904_223
            pixels[i] = UInt8(truncatingIfNeeded: state >> 24)
        }
        let image = try RGBImage(width: 37, height: 23, pixels: pixels)
        let text: [PNG.TextChunk] = [
            ("parameters", "a photo of a cat\nSteps: 20, Sampler: DDIM, Seed: 42"),
            ("Comment", "caf\u{E9} na\u{EF}ve \u{B5}"),   // Latin-1 only: tEXt
            ("prompt", "\u{732B} on a mat \u{1F408}"),     // needs UTF-8: iTXt
            ("empty", ""),
        ]
        let url = dir.appendingPathComponent("out.png")
        try PNG.write(image, to: url, textChunks: text)
        let (back, backText) = try PNG.readWithText(url)
        XCTAssertEqual(back, image)
        XCTAssertEqual(backText.map(\.key), text.map(\.key))
        XCTAssertEqual(backText.map(\.value), text.map(\.value))

        // Overwrite in place; no temporary files are left behind.
        let other = try RGBImage(width: 2, height: 1, pixels: [1, 2, 3, 4, 5, 6])
        try PNG.write(other, to: url)
        XCTAssertEqual(try PNG.read(url), other)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.png"])

        // The raw file really carries a tEXt chunk named "parameters" (and an iTXt for "prompt").
        try PNG.write(image, to: url, textChunks: text)
        let raw = try Data(contentsOf: url)
        XCTAssertNotNil(raw.range(of: Data("tEXtparameters\0a photo of a cat".utf8)))
        XCTAssertNotNil(raw.range(of: Data("iTXtprompt\0".utf8)))
    }

    func testBadFilesGiveClearErrors() throws {
        let manifest = try ImageFixtures.manifest()
        XCTAssertEqual(manifest.bad_files.count, 6)
        let expectedReason = [
            "corrupt_crc.png": "CRC", "corrupt_data.png": "IDAT", "corrupt_zlib.png": "IDAT", "truncated.png": "truncated",
            "not_a_png.jpg": "not a PNG", "empty.png": "not a PNG",
        ]
        for (name, _) in manifest.bad_files.sorted(by: { $0.key < $1.key }) {
            let url = ImageFixtures.url("bad/" + name)
            XCTAssertThrowsError(try PNG.read(url), name) { error in
                guard case let ImageError.unreadablePNG(path, reason) = error else {
                    return XCTFail("\(name): unexpected error \(error)")
                }
                XCTAssertEqual(path, url.path)
                XCTAssertTrue("\(error)".contains(name), "\(error)")
                XCTAssertTrue(reason.contains(expectedReason[name] ?? "?"), "\(name): \(reason)")
                print("[error] \(error)")
            }
        }
        let missing = ImageFixtures.url("bad/does_not_exist.png")
        XCTAssertThrowsError(try PNG.read(missing)) { error in
            XCTAssertTrue("\(error)".contains("does_not_exist.png") && "\(error)".contains("No such file"), "\(error)")
        }
    }

    func testWriteErrors() throws {
        let image = try RGBImage(width: 1, height: 1, pixels: [0, 0, 0])
        let nowhere = URL(fileURLWithPath: "/nonexistent-dir-\(getpid())/x.png")
        XCTAssertThrowsError(try PNG.write(image, to: nowhere)) { error in
            guard case let ImageError.unwritablePNG(path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, nowhere.path)
        }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("x.png")
        for bad in [("", "v"), (" lead", "v"), (String(repeating: "k", count: 80), "v"), ("ok", "nul\0inside")] {
            XCTAssertThrowsError(try PNG.write(image, to: url, textChunks: [bad])) { error in
                XCTAssertTrue("\(error)".contains("x.png"), "\(error)")
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
        XCTAssertThrowsError(try RGBImage(width: 2, height: 2, pixels: [0, 0, 0]))
    }

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-png-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}
