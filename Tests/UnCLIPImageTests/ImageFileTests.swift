import Foundation
import XCTest
import UnCLIPImage
import UnCLIPTestSupport

/// Tests/Fixtures/image_formats, written by notebooks-export/fixtures_image_formats.py:
/// the pixels diffusers' load_image (PIL open → exif_transpose → convert("RGB")) gives.
private enum FormatFixtures {
    static let root = Fixture.url("image_formats")

    struct Manifest: Decodable {
        struct Case: Decodable {
            let name: String
            let file: String
            let format: String
            let pil_mode: String
            let stored_width: Int
            let stored_height: Int
            let width: Int
            let height: Int
            let orientation: Int?
            let expected: String
            let tolerance: Int
            let note: String
        }
        let pillow: String
        let libjpeg_turbo: String?
        let libwebp: String?
        let cases: [Case]
    }

    static func manifest() throws -> Manifest {
        try Fixture.decode(Manifest.self, "image_formats/manifest.json")
    }

    static func url(_ name: String) -> URL { root.appendingPathComponent(name) }
    static func data(_ name: String) throws -> Data { try Data(contentsOf: url(name)) }
}

final class ImageFileTests: XCTestCase {
    // MARK: - pixels equal PIL's

    func testDecodedPixelsMatchLoadImage() throws {
        let manifest = try FormatFixtures.manifest()
        XCTAssertGreaterThanOrEqual(manifest.cases.count, 27)
        print("[formats] references: Pillow \(manifest.pillow), libjpeg-turbo \(manifest.libjpeg_turbo ?? "?"), libwebp \(manifest.libwebp ?? "?")")
        var seen = Set<String>()
        for c in manifest.cases {
            let url = FormatFixtures.url(c.file)
            let image = try ImageFile.read(url)
            XCTAssertEqual(image.width, c.width, c.name)
            XCTAssertEqual(image.height, c.height, c.name)
            let expected = [UInt8](try FormatFixtures.data(c.expected))
            XCTAssertEqual(expected.count, image.pixels.count, c.name)
            guard expected.count == image.pixels.count else { continue }
            var maxDiff = 0, differing = 0
            for (a, b) in zip(expected, image.pixels) where a != b {
                differing += 1
                maxDiff = max(maxDiff, abs(Int(a) - Int(b)))
            }
            XCTAssertLessThanOrEqual(maxDiff, c.tolerance, "\(c.name): max difference \(maxDiff), \(differing) bytes differ")
            XCTAssertEqual(ImageFile.format(of: try FormatFixtures.data(c.file))?.rawValue.lowercased(), c.format, c.name)
            print("[formats] \(c.name): \(c.pil_mode) \(c.stored_width)x\(c.stored_height) -> \(image.width)x\(image.height), max diff \(maxDiff)")
            seen.insert(c.name)
        }
        // The cases the decoders must cover (a shortened manifest must not pass silently).
        for required in ["jpeg_baseline_420", "jpeg_baseline_422", "jpeg_baseline_444", "jpeg_progressive_420", "jpeg_gray",
                         "jpeg_cmyk", "jpeg_ycck", "jpeg_exif6", "jpeg_exif3", "webp_lossy", "webp_lossless",
                         "webp_lossy_alpha", "webp_animated", "png_rgba", "png_exif8"] {
            XCTAssertTrue(seen.contains(required), "fixture case \(required) missing")
        }
    }

    func testDecodeFromMemoryEqualsRead() throws {
        for c in try FormatFixtures.manifest().cases {
            let data = try FormatFixtures.data(c.file)
            XCTAssertEqual(try ImageFile.decode(data, source: "upload \(c.file)"), try ImageFile.read(FormatFixtures.url(c.file)), c.name)
        }
    }

    /// The content decides, not the name: a JPEG called .png, a WebP called .jpg, a PNG called .webp.
    func testWrongExtensionStillDecodes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for (file, expected, name) in [("baseline_420.jpg", "jpeg_baseline_420.rgb", "photo.png"),
                                       ("lossy.webp", "webp_lossy.rgb", "photo.jpg"),
                                       ("rgba.png", "png_rgba.rgb", "photo.webp"),
                                       ("exif6.jpg", "jpeg_exif6.rgb", "no-extension")] {
            let url = dir.appendingPathComponent(name)
            try FormatFixtures.data(file).write(to: url)
            XCTAssertEqual(try ImageFile.read(url).pixels, [UInt8](try FormatFixtures.data(expected)), "\(file) as \(name)")
        }
    }

    /// load_image drops alpha (convert("RGB")); PNG.read composites onto white (convert_to_rgb).
    /// Both stay as they are; this pins the difference so a change to either is noticed.
    func testPNGAlphaIsDroppedNotComposited() throws {
        let url = FormatFixtures.url("rgba.png")
        let dropped = try ImageFile.read(url)
        let composited = try PNG.read(url)
        XCTAssertEqual(dropped.pixels, [UInt8](try FormatFixtures.data("png_rgba.rgb")))
        XCTAssertNotEqual(dropped.pixels, composited.pixels)
        // The left columns are fully transparent: white after compositing, the stored colour here.
        XCTAssertEqual(Array(composited.pixels[0..<3]), [255, 255, 255])
        XCTAssertNotEqual(Array(dropped.pixels[0..<3]), [255, 255, 255])
    }

    /// OpenAI's masks are transparency: pngAlpha reads the alpha channel that decoding drops.
    func testPNGAlphaChannel() throws {
        let data = try Data(contentsOf: Fixture.url("inpaint/openai-mask-32.png"))
        let a = try ImageFile.pngAlpha(data, source: "mask")
        XCTAssertEqual([a.width, a.height], [32, 32])
        XCTAssertEqual(Array(a.alpha[0..<32]), [UInt8](repeating: 0, count: 16) + [1] + [UInt8](repeating: 255, count: 15))
        // Without transparency every pixel is opaque.
        let opaque = try ImageFile.pngAlpha(try Data(contentsOf: Fixture.url("sd/sd-init.png")), source: "init")
        XCTAssertEqual(Set(opaque.alpha), [255])
        XCTAssertThrowsError(try ImageFile.pngAlpha(Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), source: "photo.jpg")) {
            XCTAssertTrue("\($0)".contains("PNG"), "\($0)")
        }
    }

    func testFormatSniffing() throws {
        XCTAssertEqual(ImageFile.format(of: try FormatFixtures.data("rgba.png")), .png)
        XCTAssertEqual(ImageFile.format(of: try FormatFixtures.data("gray.jpg")), .jpeg)
        XCTAssertEqual(ImageFile.format(of: try FormatFixtures.data("lossless.webp")), .webp)
        XCTAssertNil(ImageFile.format(of: Data("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8)))
        XCTAssertNil(ImageFile.format(of: Data("RIFF\0\0\0\0WAVEfmt ".utf8)))
        XCTAssertNil(ImageFile.format(of: Data()))
        XCTAssertEqual(ImageFile.acceptedFormats, [.png, .jpeg, .webp])
    }

    // MARK: - bad input

    func testTruncatedFilesAreReportedAsTruncated() throws {
        // Every cut of a JPEG, progressive JPEG, WebP (lossy, lossless, animated) and PNG.
        for (file, format) in [("baseline_420.jpg", ImageFormat.jpeg), ("progressive_420.jpg", .jpeg), ("lossy.webp", .webp),
                               ("lossless_alpha.webp", .webp), ("animated.webp", .webp), ("rgba.png", .png)] {
            let data = try FormatFixtures.data(file)
            var wrong: [String] = []
            let step = max(1, data.count / 400)  // ≤ ~400 cuts per file keeps this fast
            for cut in stride(from: 1, to: data.count, by: step) {
                do {
                    _ = try ImageFile.decode(data.prefix(cut), source: file)
                    wrong.append("\(cut): decoded")
                } catch let error as ImageFileError {
                    if error.reason != .truncated(format) { wrong.append("\(cut): \(error)") }
                }
            }
            XCTAssertEqual(wrong, [], "\(file): cuts not reported as truncated")
        }
        let half = try FormatFixtures.data("baseline_420.jpg")
        XCTAssertThrowsError(try ImageFile.decode(half.prefix(half.count / 2), source: "half.jpg")) { error in
            XCTAssertEqual("\(error)", "cannot read image half.jpg: the JPEG data is truncated (the file ends before the image does)")
        }
    }

    func testGarbageEmptyAndUnknownFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var generator = SplitMix(seed: 7)
        let garbage = Data((0..<4096).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        let cases: [(String, Data, ImageFileError.Reason)] = [
            ("empty.png", Data(), .empty),
            ("garbage.jpg", garbage, .unknownFormat(looksLike: nil)),
            ("anim.gif", Data("GIF89a".utf8) + garbage.prefix(100), .unknownFormat(looksLike: "GIF")),
            ("photo.heic", Data([0, 0, 0, 0x18]) + Data("ftypheic".utf8) + garbage.prefix(64), .unknownFormat(looksLike: "HEIF/HEIC")),
            ("page.html", Data("<!DOCTYPE html><html>".utf8), .unknownFormat(looksLike: "HTML")),
        ]
        for (name, data, reason) in cases {
            let url = dir.appendingPathComponent(name)
            try data.write(to: url)
            XCTAssertThrowsError(try ImageFile.read(url), name) { error in
                guard let error = error as? ImageFileError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(error.reason, reason, name)
                XCTAssertEqual(error.source, url.path)
                XCTAssertTrue("\(error)".contains(url.path), "\(error)")
                XCTAssertTrue("\(error)".contains("PNG, JPEG or WebP"), "\(error)")
                print("[error] \(error)")
            }
        }
        // Garbage behind each format's magic bytes: an error, never a crash.
        let prefixes: [(Data, ImageFormat)] = [
            (Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), .png),
            (Data([0xFF, 0xD8, 0xFF]), .jpeg),
            (Data("RIFF".utf8) + Data([0xF0, 0x0F, 0, 0]) + Data("WEBP".utf8), .webp),
        ]
        for (magic, format) in prefixes {
            XCTAssertThrowsError(try ImageFile.decode(magic + garbage, source: "x")) { error in
                guard let error = error as? ImageFileError else { return XCTFail("\(error)") }
                switch error.reason {
                case .corrupt(format, _), .truncated(format), .unsupported(format, _): break
                default: XCTFail("\(format): \(error)")
                }
                print("[error] \(error)")
            }
        }
        // Missing files and directories name the file and the system's reason.
        let missing = dir.appendingPathComponent("missing.webp")
        XCTAssertThrowsError(try ImageFile.read(missing)) { error in
            XCTAssertEqual((error as? ImageFileError)?.reason, .cannotOpen("No such file or directory"))
            XCTAssertTrue("\(error)".contains("missing.webp"), "\(error)")
        }
        XCTAssertThrowsError(try ImageFile.read(dir)) { error in
            XCTAssertEqual((error as? ImageFileError)?.reason, .cannotOpen("it is a directory"))
        }
    }

    /// Headers that claim huge images are refused from the header alone: these files hold no pixel
    /// data at all, so any attempt to decode would end as "truncated", not "too large".
    func testHugeHeadersAreRefusedBeforeDecoding() throws {
        let limits = ImageLimits.default
        let huge: [(String, Data, Int, Int)] = [
            ("huge.png", pngHeader(width: 100_000, height: 100_000), 100_000, 100_000),
            ("huge.webp", webpVP8XHeader(width: 100_000, height: 100_000), 100_000, 100_000),
            ("huge.jpg", jpegHeader(width: 65_000, height: 65_000), 65_000, 65_000),
            ("wide.png", pngHeader(width: 16_385, height: 1), 16_385, 1),
            ("many.webp", webpVP8XHeader(width: 12_000, height: 9_000), 12_000, 9_000),  // each side fits, the area does not
            ("many.jpg", jpegHeader(width: 10_001, height: 10_000), 10_001, 10_000),
        ]
        for (name, data, width, height) in huge {
            XCTAssertNotNil(ImageFile.format(of: data), name)
            XCTAssertThrowsError(try ImageFile.decode(data, source: name)) { error in
                XCTAssertEqual((error as? ImageFileError)?.reason, .tooLarge(width: width, height: height, limits: limits), name)
                print("[error] \(error)")
            }
        }
        XCTAssertThrowsError(try ImageFile.decode(pngHeader(width: 100_000, height: 100_000), source: "huge.png")) { error in
            XCTAssertEqual("\(error)", "image huge.png is 100000x100000 pixels, over the limit of 16384 pixels a side")
        }
        XCTAssertThrowsError(try ImageFile.decode(webpVP8XHeader(width: 12_000, height: 9_000), source: "many.webp")) { error in
            XCTAssertEqual("\(error)", "image many.webp is 12000x9000 pixels (108,000,000 in all), over the limit of 100,000,000 pixels")
        }
        // The same headers are only "truncated" under limits that allow them.
        let roomy = ImageLimits(maxSide: 100_000, maxPixels: Int.max)
        XCTAssertThrowsError(try ImageFile.decode(pngHeader(width: 100_000, height: 100_000), source: "huge.png", limits: roomy)) { error in
            XCTAssertEqual((error as? ImageFileError)?.reason, .truncated(.png))
        }
    }

    func testLimitsAreConfigurablePerCall() throws {
        let url = FormatFixtures.url("baseline_420.jpg")  // 67x45 = 3015 pixels, 1640 bytes
        XCTAssertNoThrow(try ImageFile.read(url, limits: ImageLimits(maxSide: 67, maxPixels: 3015, maxFileBytes: 1640)))
        let refusals: [(ImageLimits, ImageFileError.Reason)] = [
            (ImageLimits(maxSide: 66), .tooLarge(width: 67, height: 45, limits: ImageLimits(maxSide: 66))),
            (ImageLimits(maxPixels: 3014), .tooLarge(width: 67, height: 45, limits: ImageLimits(maxPixels: 3014))),
            (ImageLimits(maxFileBytes: 1639), .fileTooLarge(bytes: 1640, limit: 1639)),
        ]
        for (limits, reason) in refusals {
            XCTAssertThrowsError(try ImageFile.read(url, limits: limits)) { error in
                XCTAssertEqual((error as? ImageFileError)?.reason, reason)
            }
        }
        for file in ["lossless.webp", "rgba.png"] {  // 67x45 too
            XCTAssertThrowsError(try ImageFile.read(FormatFixtures.url(file), limits: ImageLimits(maxSide: 50))) { error in
                XCTAssertEqual((error as? ImageFileError)?.reason, .tooLarge(width: 67, height: 45, limits: ImageLimits(maxSide: 50)))
            }
        }
    }

    /// A 12-bit JPEG is valid but PIL refuses it too ("cannot handle 12-bit layers").
    func testTwelveBitJPEGIsUnsupported() throws {
        var data = [UInt8](try FormatFixtures.data("baseline_444.jpg"))
        let sof = try XCTUnwrap((2..<data.count - 1).first { data[$0] == 0xFF && data[$0 + 1] == 0xC0 })
        data[sof + 4] = 12  // sample precision
        XCTAssertThrowsError(try ImageFile.decode(Data(data), source: "deep.jpg")) { error in
            guard case .unsupported(.jpeg, _)? = (error as? ImageFileError)?.reason else { return XCTFail("\(error)") }
            print("[error] \(error)")
        }
    }

    /// Random byte changes in every fixture: each result is an image or an ImageFileError.
    func testCorruptedFixturesNeverCrash() throws {
        var generator = SplitMix(seed: 2026)
        var outcomes = [String: Int]()
        for c in try FormatFixtures.manifest().cases {
            let original = [UInt8](try FormatFixtures.data(c.file))
            for _ in 0..<60 {
                var bytes = original
                for _ in 0..<(1 + Int(generator.next() % 4)) {
                    bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
                do {
                    let image = try ImageFile.decode(Data(bytes), source: c.file)
                    XCTAssertEqual(image.pixels.count, image.width * image.height * 3)
                    outcomes["decoded", default: 0] += 1
                } catch let error as ImageFileError {
                    XCTAssertFalse(namesAFlag("\(error)"), "\(error)")
                    outcomes[String("\(error.reason)".prefix(while: { $0 != "(" })), default: 0] += 1
                }
            }
        }
        print("[fuzz] \(outcomes.sorted { $0.key < $1.key })")
        XCTAssertGreaterThan(outcomes["decoded"] ?? 0, 0)
        XCTAssertGreaterThan(outcomes["corrupt"] ?? 0, 0)
    }

    func testErrorMessagesNameNoFlags() {
        let reasons: [ImageFileError.Reason] = [
            .cannotOpen("No such file or directory"), .empty, .unknownFormat(looksLike: "GIF"), .unknownFormat(looksLike: nil),
            .fileTooLarge(bytes: 10, limit: 5), .tooLarge(width: 20000, height: 10, limits: .default),
            .tooLarge(width: 12000, height: 9000, limits: .default), .truncated(.webp), .corrupt(.png, "IDAT: CRC error"),
            .unsupported(.jpeg, "Unsupported JPEG data precision 12"), .outOfMemory(.jpeg, "x"),
        ]
        for reason in reasons {
            let text = "\(ImageFileError(source: "/tmp/a b.jpg", reason: reason))"
            XCTAssertTrue(text.contains("/tmp/a b.jpg"), text)
            XCTAssertFalse(namesAFlag(text), text)
        }
    }

    // MARK: - helpers

    /// "--name" or " -x" style command-line options (zlib's "invalid code -- missing ..." is not one).
    private func namesAFlag(_ text: String) -> Bool {
        text.range(of: #"(^|\s)--?[A-Za-z]"#, options: .regularExpression) != nil
    }

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-imgfmt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Signature + a valid IHDR chunk (CRC included) and nothing else.
    private func pngHeader(width: UInt32, height: UInt32) -> Data {
        var ihdr = Array("IHDR".utf8)
        ihdr += bigEndian(width) + bigEndian(height) + [8, 2, 0, 0, 0]
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + bigEndian(13) + ihdr + bigEndian(crc32(ihdr)))
    }

    /// RIFF/WEBP with only a VP8X chunk declaring the canvas.
    private func webpVP8XHeader(width: UInt32, height: UInt32) -> Data {
        func le24(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF)] }
        let vp8x = Array("VP8X".utf8) + [10, 0, 0, 0] + [0, 0, 0, 0] + le24(width - 1) + le24(height - 1)
        let body = Array("WEBP".utf8) + vp8x
        let size = UInt32(body.count)
        return Data(Array("RIFF".utf8) + [UInt8(size & 0xFF), UInt8(size >> 8 & 0xFF), 0, 0] + body)
    }

    /// SOI, a quantisation table and a baseline SOF0 for 3 components; no scan data.
    private func jpegHeader(width: UInt16, height: UInt16) -> Data {
        var bytes: [UInt8] = [0xFF, 0xD8]
        bytes += [0xFF, 0xDB, 0x00, 0x43, 0x00] + [UInt8](repeating: 1, count: 64)
        bytes += [0xFF, 0xC0, 0x00, 0x11, 8, UInt8(height >> 8), UInt8(height & 0xFF), UInt8(width >> 8), UInt8(width & 0xFF), 3,
                  1, 0x22, 0, 2, 0x11, 0, 3, 0x11, 0]
        return Data(bytes)
    }

    private func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    private func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}

/// Deterministic random numbers for the garbage and fuzz inputs.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
