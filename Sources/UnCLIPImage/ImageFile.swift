import CJPEG
import CPNG
import CWebP
import Foundation
#if canImport(Glibc)
import Glibc
private let systemRead = Glibc.read  // `read` alone would mean ImageFile.read inside the type
#else
import Darwin
private let systemRead = Darwin.read
#endif

/// The encoded image formats `ImageFile` reads, recognised by their magic bytes.
public enum ImageFormat: String, CaseIterable, Sendable, CustomStringConvertible {
    case png = "PNG"
    case jpeg = "JPEG"
    case webp = "WebP"

    public var description: String { rawValue }
}

/// Size limits checked against an image's header before any pixel memory is allocated, so that a
/// small hostile file cannot make the decoder ask for gigabytes.
public struct ImageLimits: Equatable, Sendable {
    /// Largest accepted width and largest accepted height, in pixels.
    public var maxSide: Int
    /// Largest accepted width × height.
    public var maxPixels: Int
    /// Largest accepted encoded size in bytes (checked before a file is read into memory).
    public var maxFileBytes: Int

    public init(maxSide: Int = 16384, maxPixels: Int = 100_000_000, maxFileBytes: Int = 1 << 30) {
        self.maxSide = maxSide
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
    }

    /// 16384 pixels a side, 100 million pixels, 1 GiB of encoded data.
    public static let `default` = ImageLimits()
}

/// Why an image could not be read. `source` is the file path (or the caller's name for in-memory
/// data); the description names it and, for unrecognised data, the accepted formats.
public struct ImageFileError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Reason: Equatable, Sendable {
        /// The file could not be opened or read (the system's reason).
        case cannotOpen(String)
        /// Zero bytes.
        case empty
        /// Not PNG, JPEG or WebP; `looksLike` names a recognised other format ("GIF", "HEIF", ...).
        case unknownFormat(looksLike: String?)
        /// The encoded data is bigger than `ImageLimits.maxFileBytes`.
        case fileTooLarge(bytes: Int, limit: Int)
        /// The header declares a size over the limits; nothing was decoded.
        case tooLarge(width: Int, height: Int, limits: ImageLimits)
        /// The data ends before the image does.
        case truncated(ImageFormat)
        /// The decoder rejected the data (its message).
        case corrupt(ImageFormat, String)
        /// A valid file of a kind that is not supported (e.g. 12-bit JPEG), as PIL also refuses.
        case unsupported(ImageFormat, String)
        /// The decoded image did not fit in memory.
        case outOfMemory(ImageFormat, String)
    }

    public let source: String
    public let reason: Reason

    public init(source: String, reason: Reason) {
        self.source = source
        self.reason = reason
    }

    public var description: String {
        let accepted = "PNG, JPEG or WebP"
        switch reason {
        case let .cannotOpen(why):
            return "cannot read image \(source): \(why)"
        case .empty:
            return "cannot read image \(source): the file is empty (expected a \(accepted) image)"
        case let .unknownFormat(looksLike):
            let hint = looksLike.map { " (it looks like a \($0) file)" } ?? ""
            return "cannot read image \(source): not a \(accepted) image\(hint)"
        case let .fileTooLarge(bytes, limit):
            return "cannot read image \(source): the file is \(bytes) bytes, over the limit of \(limit) bytes"
        case let .tooLarge(width, height, limits):
            if width > limits.maxSide || height > limits.maxSide {
                return "image \(source) is \(width)x\(height) pixels, over the limit of \(limits.maxSide) pixels a side"
            }
            return "image \(source) is \(width)x\(height) pixels (\(grouped(width * height)) in all), "
                + "over the limit of \(grouped(limits.maxPixels)) pixels"
        case let .truncated(format):
            return "cannot read image \(source): the \(format) data is truncated (the file ends before the image does)"
        case let .corrupt(format, detail):
            return "cannot read image \(source): corrupt \(format) data (\(detail))"
        case let .unsupported(format, detail):
            return "cannot read image \(source): unsupported kind of \(format) (\(detail))"
        case let .outOfMemory(format, detail):
            return "cannot read image \(source): out of memory decoding \(format) (\(detail))"
        }
    }

    /// 100000000 -> "100,000,000": pixel counts are unreadable without separators.
    private func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }
}

/// Reads PNG, JPEG and WebP pictures the way diffusers' `load_image` does:
/// `PIL.Image.open` → `ImageOps.exif_transpose` → `convert("RGB")`.
///
/// - The format comes from the magic bytes, never from the file name.
/// - EXIF orientation (JPEG APP1, PNG eXIf / "Raw profile type exif", WebP EXIF, or the XMP
///   `tiff:Orientation` PIL falls back to) is applied, so the result is upright.
/// - Alpha is dropped, not composited: PIL's `convert("RGB")` keeps the colour stored under
///   transparent pixels. (`PNG.read` differs on purpose: it reproduces transformers'
///   `convert_to_rgb`, which composites onto white, for a PIL image handed straight to a pipeline.)
/// - Pixels equal PIL's: JPEG through libjpeg-turbo with PIL's settings (ISLOW IDCT, fancy
///   upsampling, CMYK/YCCK through PIL's inverted-CMYK → RGB formula), WebP through libwebp's
///   WebPAnimDecoder (first frame of an animation), PNG through libpng with PIL's sample unpacking.
///   One deliberate difference is inherited from `PNG.read`: 16-bit grayscale PNG is scaled by its
///   high byte where PIL clamps it to 255.
/// - Sizes are checked against `ImageLimits` from the header before pixels are allocated; bad data
///   of every kind gives an `ImageFileError`, never a crash.
public enum ImageFile {
    /// The formats `read` and `decode` accept, in the order error messages list them.
    public static let acceptedFormats: [ImageFormat] = ImageFormat.allCases

    /// Reads and decodes the image at `url` (see the type's documentation).
    public static func read(_ url: URL, limits: ImageLimits = .default) throws -> RGBImage {
        let data = try readBytes(url.path, limit: limits.maxFileBytes)
        return try decode(data, source: url.path, limits: limits)
    }

    /// Decodes an encoded image held in memory. `source` names it in errors (a path, an upload's
    /// file name, ...).
    public static func decode(_ data: Data, source: String, limits: ImageLimits = .default) throws -> RGBImage {
        func fail(_ reason: ImageFileError.Reason) -> ImageFileError { ImageFileError(source: source, reason: reason) }
        guard !data.isEmpty else { throw fail(.empty) }
        guard data.count <= limits.maxFileBytes else { throw fail(.fileTooLarge(bytes: data.count, limit: limits.maxFileBytes)) }
        guard let format = format(of: data) else {
            if let partial = formatPrefix(of: data) { throw fail(.truncated(partial)) }
            throw fail(.unknownFormat(looksLike: otherFormat(of: data)))
        }
        // The C decoders take unsigned limits; clamp so that absurd values cannot wrap.
        let maxSide = UInt32(clamping: max(0, limits.maxSide))
        let maxPixels = UInt64(clamping: max(0, limits.maxPixels))
        let image: RGBImage = try data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            switch format {
            case .png: return try decodePNG(bytes, maxSide: maxSide, maxPixels: maxPixels, limits: limits, fail: fail)
            case .jpeg:
                var d = unclip_jpeg_decoded()
                let status = unclip_jpeg_decode(bytes.baseAddress, bytes.count, maxSide, maxSide, maxPixels, &d)
                return try finish(status, d, format: .jpeg, limits: limits, fail: fail)
            case .webp:
                var d = unclip_webp_decoded()
                return try finish(unclip_webp_decode(bytes.baseAddress, bytes.count, maxSide, maxSide, maxPixels, &d), d,
                                  format: .webp, limits: limits, fail: fail)
            }
        }
        let orientation = data.withUnsafeBytes { raw in
            ImageOrientation.read(from: raw.bindMemory(to: UInt8.self), format: format)
        }
        return image.oriented(orientation)
    }

    /// The format named by the data's magic bytes, or nil when it is none of the accepted ones.
    public static func format(of data: Data) -> ImageFormat? {
        let head = [UInt8](data.prefix(12))
        if head.starts(with: pngSignature) { return .png }
        if head.starts(with: jpegSignature) { return .jpeg }
        if head.count >= 12, head.starts(with: Array("RIFF".utf8)), Array(head[8..<12]) == Array("WEBP".utf8) { return .webp }
        return nil
    }

    // MARK: - per-format decoding

    private static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    private static let jpegSignature: [UInt8] = [0xFF, 0xD8, 0xFF]  // SOI and the next marker's 0xFF, as PIL checks

    private typealias Fail = (ImageFileError.Reason) -> ImageFileError

    private static func decodePNG(_ bytes: UnsafeBufferPointer<UInt8>, maxSide: UInt32, maxPixels: UInt64,
                                  limits: ImageLimits, fail: Fail) throws -> RGBImage {
        var d = unclip_png_decoded()
        guard unclip_png_read_memory(bytes.baseAddress, bytes.count, maxSide, maxSide, maxPixels, &d) == 1 else {
            let message = cString(d.error.message, fallback: "unknown libpng error")
            switch Int(d.status) {
            case UNCLIP_PNG_TOO_LARGE: throw fail(.tooLarge(width: Int(d.width), height: Int(d.height), limits: limits))
            case UNCLIP_PNG_TRUNCATED: throw fail(.truncated(.png))
            case UNCLIP_PNG_NO_MEMORY: throw fail(.outOfMemory(.png, message))
            default: throw fail(.corrupt(.png, message))
            }
        }
        defer { unclip_png_decoded_free(&d) }
        let width = Int(d.width), height = Int(d.height)
        guard width > 0, height > 0, let rgba = d.rgba else { throw fail(.corrupt(.png, "empty image")) }
        // convert("RGB") drops alpha: keep R, G, B of every pixel.
        let count = width * height
        let pixels = [UInt8](unsafeUninitializedCapacity: count * 3) { out, initialized in
            for p in 0..<count {
                out[p * 3] = rgba[p * 4]
                out[p * 3 + 1] = rgba[p * 4 + 1]
                out[p * 3 + 2] = rgba[p * 4 + 2]
            }
            initialized = count * 3
        }
        return RGBImage(unchecked: width, height, pixels)
    }

    /// The JPEG and WebP helpers share one status numbering (unclip_jpeg.h / unclip_webp.h): 0 decoded,
    /// 1 corrupt, 2 truncated, 3 too large (width and height set, nothing allocated), 4 unsupported, 5 out of memory.
    private static func finish<D: DecodedPicture>(_ status: Int32, _ d: D, format: ImageFormat, limits: ImageLimits,
                                                  fail: Fail) throws -> RGBImage {
        defer { free(d.rgb) }
        let width = Int(d.width), height = Int(d.height)
        let message = d.text.isEmpty ? "unknown \(format) decoder error" : d.text
        switch Int(status) {
        case 0: return try wrap(d.rgb, width: width, height: height, format: format, fail: fail)
        case 2: throw fail(.truncated(format))
        case 3: throw fail(.tooLarge(width: width, height: height, limits: limits))
        case 4: throw fail(.unsupported(format, message))
        case 5: throw fail(.outOfMemory(format, message))
        default: throw fail(.corrupt(format, message))
        }
    }

    /// Copies a decoder's malloc'd RGB buffer into an RGBImage (the caller frees the buffer).
    private static func wrap(_ rgb: UnsafeMutablePointer<UInt8>?, width: Int, height: Int, format: ImageFormat,
                             fail: Fail) throws -> RGBImage {
        guard let rgb, width > 0, height > 0 else { throw fail(.corrupt(format, "empty image")) }
        let pixels = [UInt8](UnsafeBufferPointer(start: rgb, count: width * height * 3))
        return RGBImage(unchecked: width, height, pixels)
    }

    // MARK: - helpers

    /// The C structs carry messages as fixed char arrays (imported as tuples).
    private static func cString<T>(_ tuple: T, fallback: String) -> String {
        withUnsafeBytes(of: tuple) { raw in
            let bytes = raw.prefix(while: { $0 != 0 })
            return bytes.isEmpty ? fallback : String(decoding: bytes, as: UTF8.self)
        }
    }

    /// A format whose signature the (short) data is a proper prefix of: a file cut very early.
    private static func formatPrefix(of data: Data) -> ImageFormat? {
        let head = [UInt8](data.prefix(12))
        if head.count < pngSignature.count, pngSignature.starts(with: head) { return .png }
        if head.count < jpegSignature.count, jpegSignature.starts(with: head) { return .jpeg }
        if head.count < 12 {
            let riff = Array("RIFF".utf8)
            let riffOK = head.count < 4 ? riff.starts(with: head) : head.starts(with: riff)
            if riffOK, head.count <= 8 || Array("WEBP".utf8).starts(with: head[8...]) { return .webp }
        }
        return nil
    }

    /// Names a few formats people commonly try, so the error can say what the file actually is.
    private static func otherFormat(of data: Data) -> String? {
        let head = [UInt8](data.prefix(32))
        func at(_ offset: Int, _ ascii: String) -> Bool {
            let sig = Array(ascii.utf8)
            return head.count >= offset + sig.count && Array(head[offset..<offset + sig.count]) == sig
        }
        if at(0, "GIF87a") || at(0, "GIF89a") { return "GIF" }
        if at(0, "BM") { return "BMP" }
        if head.starts(with: [0x49, 0x49, 0x2A, 0x00]) || head.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if at(4, "ftyp") {
            if at(8, "avif") || at(8, "avis") { return "AVIF" }
            if at(8, "heic") || at(8, "heix") || at(8, "mif1") || at(8, "msf1") || at(8, "hevc") { return "HEIF/HEIC" }
            return "MP4/QuickTime"
        }
        if head.starts(with: [0xFF, 0x0A]) || at(4, "JXL ") { return "JPEG XL" }
        if at(4, "jP  ") || head.starts(with: [0xFF, 0x4F, 0xFF, 0x51]) { return "JPEG 2000" }
        if at(0, "RIFF") { return "RIFF (not WebP)" }
        if at(0, "8BPS") { return "Photoshop" }
        if at(0, "%PDF") { return "PDF" }
        if at(0, "qoif") { return "QOI" }
        if head.starts(with: [0x00, 0x00, 0x01, 0x00]) { return "ICO" }
        let text = String(decoding: head, as: UTF8.self).lowercased()
        if text.contains("<svg") || (text.hasPrefix("<?xml") && data.prefix(4096).range(of: Data("<svg".utf8)) != nil) { return "SVG" }
        if text.hasPrefix("<!doctype html") || text.hasPrefix("<html") { return "HTML" }
        return nil
    }

    /// Reads a whole file with POSIX calls, refusing directories and files over `limit` bytes
    /// before reading them; errors carry the system's reason (e.g. "No such file or directory").
    private static func readBytes(_ path: String, limit: Int) throws -> Data {
        func fail(_ reason: ImageFileError.Reason) -> ImageFileError { ImageFileError(source: path, reason: reason) }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw fail(.cannotOpen(String(cString: strerror(errno)))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw fail(.cannotOpen(String(cString: strerror(errno)))) }
        if (info.st_mode & S_IFMT) == S_IFDIR { throw fail(.cannotOpen("it is a directory")) }
        let regular = (info.st_mode & S_IFMT) == S_IFREG
        if regular, Int(info.st_size) > limit { throw fail(.fileTooLarge(bytes: Int(info.st_size), limit: limit)) }
        // Pipes and devices report no size: read until end of file, still bounded by the limit.
        var data = Data(capacity: regular ? Int(info.st_size) : 1 << 16)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail(.cannotOpen(String(cString: strerror(errno))))
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<n])
            if data.count > limit { throw fail(.fileTooLarge(bytes: data.count, limit: limit)) }
        }
        return data
    }
}

/// What the C decoders hand back, for `ImageFile.finish`.
protocol DecodedPicture {
    var width: UInt32 { get }
    var height: UInt32 { get }
    var rgb: UnsafeMutablePointer<UInt8>! { get }
    /// The decoder's message (empty when it left none).
    var text: String { get }
}

extension unclip_jpeg_decoded: DecodedPicture {
    var text: String { withUnsafeBytes(of: message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
}

extension unclip_webp_decoded: DecodedPicture {
    var text: String { withUnsafeBytes(of: message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
}
