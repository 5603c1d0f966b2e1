import CPNG
import Foundation

/// PNG reading and writing through libpng.
public enum PNG {
    /// A text chunk: key (1-79 Latin-1 characters) and value.
    public typealias TextChunk = (key: String, value: String)

    /// Decodes a PNG file to 8-bit RGB as PIL + transformers' `convert_to_rgb` would (see `readWithText`).
    public static func read(_ url: URL) throws -> RGBImage {
        try readWithText(url).image
    }

    /// Decodes a PNG file to 8-bit RGB and returns its text chunks (tEXt, zTXt, iTXt) in file order.
    ///
    /// Matches PIL's `Image.open(path)` followed by transformers' `convert_to_rgb`: all colour types
    /// and bit depths, palettes and Adam7 interlacing; 16-bit samples keep their high byte (as PIL
    /// does for RGB/RGBA/LA); gAMA/iCCP are ignored (as PIL); transparency (alpha channel or tRNS)
    /// is composited onto white with PIL's rounding. Two deliberate differences from PIL, which
    /// mishandles these: 16-bit grayscale is scaled by its high byte (PIL clamps it to 255), and
    /// 16-bit tRNS keys are compared at 16 bits as the PNG specification says.
    public static func readWithText(_ url: URL) throws -> (image: RGBImage, text: [TextChunk]) {
        let path = url.path
        var decoded = unclip_png_decoded()
        guard unclip_png_read_file(path, &decoded) == 1 else {
            throw ImageError.unreadablePNG(path: path, reason: message(decoded.error))
        }
        defer { unclip_png_decoded_free(&decoded) }
        let width = Int(decoded.width), height = Int(decoded.height)
        guard width > 0, height > 0, let rgba = decoded.rgba else {
            throw ImageError.unreadablePNG(path: path, reason: "empty image")
        }
        let pixels = [UInt8](unsafeUninitializedCapacity: width * height * 3) { out, count in
            compositeOnWhite(rgba: rgba, pixelCount: width * height, into: out.baseAddress!)
            count = width * height * 3
        }
        var text: [TextChunk] = []
        for i in 0..<Int(decoded.text_count) {
            let chunk = decoded.texts[i]
            let key = latin1(UnsafeRawBufferPointer(start: chunk.key, count: strlen(chunk.key)))
            let bytes = UnsafeRawBufferPointer(start: chunk.text, count: chunk.text_length)
            text.append((key, chunk.is_utf8 != 0 ? String(decoding: bytes, as: UTF8.self) : latin1(bytes)))
        }
        return (RGBImage(unchecked: width, height, pixels), text)
    }

    /// Writes an 8-bit RGB PNG with the given text chunks, atomically (temporary file + rename).
    ///
    /// Values that are pure Latin-1 go into tEXt chunks, others into uncompressed UTF-8 iTXt
    /// chunks (what PIL's PngInfo.add_text does). Keys must be 1-79 printable Latin-1 characters
    /// without leading/trailing spaces; neither keys nor values may contain NUL.
    public static func write(_ image: RGBImage, to url: URL, textChunks: [TextChunk] = []) throws {
        let path = url.path
        let chunks = try textChunks.map { try encodeText($0, path: path) }
        let directory = url.deletingLastPathComponent().path
        let tempPath = directory + "/." + url.lastPathComponent + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"

        var cTexts = [unclip_png_text]()
        defer { for t in cTexts { t.key.deallocate(); t.text.deallocate() } }
        for chunk in chunks {
            cTexts.append(unclip_png_text(key: dupBytes(chunk.key), text: dupBytes(chunk.value),
                                          text_length: chunk.value.count, is_utf8: chunk.utf8 ? 1 : 0))
        }
        var error = unclip_png_error()
        let ok = image.pixels.withUnsafeBufferPointer { px in
            cTexts.withUnsafeBufferPointer { texts in
                unclip_png_write_file(tempPath, px.baseAddress, UInt32(image.width), UInt32(image.height),
                                      texts.baseAddress, Int32(texts.count), &error)
            }
        }
        guard ok == 1 else {
            unlink(tempPath)
            throw ImageError.unwritablePNG(path: path, reason: message(error))
        }
        guard rename(tempPath, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tempPath)
            throw ImageError.unwritablePNG(path: path, reason: "cannot move the finished file into place (\(reason))")
        }
    }

    // MARK: - helpers

    /// out = src over opaque white, rounded to nearest: (c*a + 255*(255-a) + 127) / 255.
    /// Equals PIL's `alpha_composite` onto white for all 65536 (c, a) pairs (checked in Python).
    private static func compositeOnWhite(rgba: UnsafePointer<UInt8>, pixelCount: Int, into out: UnsafeMutablePointer<UInt8>) {
        for p in 0..<pixelCount {
            let a = UInt32(rgba[p * 4 + 3])
            if a == 255 {
                out[p * 3] = rgba[p * 4]
                out[p * 3 + 1] = rgba[p * 4 + 1]
                out[p * 3 + 2] = rgba[p * 4 + 2]
            } else {
                let background = 255 * (255 - a) + 127
                out[p * 3] = UInt8((UInt32(rgba[p * 4]) * a + background) / 255)
                out[p * 3 + 1] = UInt8((UInt32(rgba[p * 4 + 1]) * a + background) / 255)
                out[p * 3 + 2] = UInt8((UInt32(rgba[p * 4 + 2]) * a + background) / 255)
            }
        }
    }

    private static func message(_ error: unclip_png_error) -> String {
        withUnsafeBytes(of: error.message) { raw in
            let bytes = raw.prefix(while: { $0 != 0 })
            return bytes.isEmpty ? "unknown libpng error" : String(decoding: bytes, as: UTF8.self)
        }
    }

    private static func latin1(_ bytes: UnsafeRawBufferPointer) -> String {
        String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
    }

    /// Key and value as the bytes libpng will store, plus whether the value needs iTXt.
    private static func encodeText(_ chunk: TextChunk, path: String) throws -> (key: [UInt8], value: [UInt8], utf8: Bool) {
        let keyScalars = chunk.key.unicodeScalars
        let keyOK = (1...79).contains(keyScalars.count)
            && keyScalars.allSatisfy { (0x20...0x7E).contains($0.value) || (0xA1...0xFF).contains($0.value) }
            && keyScalars.first != " " && keyScalars.last != " "
        guard keyOK else {
            throw ImageError.unwritablePNG(path: path, reason: "text chunk key \"\(chunk.key)\" must be 1-79 printable Latin-1 characters without leading or trailing spaces")
        }
        guard !chunk.value.unicodeScalars.contains("\0") else {
            throw ImageError.unwritablePNG(path: path, reason: "text chunk \"\(chunk.key)\" value contains a NUL character")
        }
        let key = keyScalars.map { UInt8($0.value) }
        if chunk.value.unicodeScalars.allSatisfy({ $0.value <= 0xFF }) {
            return (key, chunk.value.unicodeScalars.map { UInt8($0.value) }, false)
        }
        return (key, Array(chunk.value.utf8), true)
    }

    /// A NUL-terminated copy (libpng reads C strings); the caller deallocates it.
    private static func dupBytes(_ bytes: [UInt8]) -> UnsafeMutablePointer<CChar> {
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
        for (i, byte) in bytes.enumerated() { buffer[i] = CChar(bitPattern: byte) }
        buffer[bytes.count] = 0
        return buffer
    }
}
