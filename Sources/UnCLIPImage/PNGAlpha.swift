import CPNG
import Foundation

extension ImageFile {
    /// The alpha channel of a PNG, one byte per pixel, row-major (255 everywhere for a file without
    /// transparency; a tRNS colour key gives 0 where it matches). Decoding drops alpha everywhere else (as
    /// diffusers' `load_image` does), but some APIs give masks as transparency: OpenAI's image edits repaint
    /// where the mask is fully transparent. Only PNG is read here, which is what OpenAI accepts for masks.
    public static func pngAlpha(_ data: Data, source: String, limits: ImageLimits = .default) throws -> (width: Int, height: Int, alpha: [UInt8]) {
        guard format(of: data) == .png else {
            throw ImageFileError(source: source, reason: .unsupported(format(of: data) ?? .png, "a transparency mask must be a PNG with an alpha channel"))
        }
        let maxSide = UInt32(clamping: max(0, limits.maxSide))
        let maxPixels = UInt64(clamping: max(0, limits.maxPixels))
        var d = unclip_png_decoded()
        let ok = data.withUnsafeBytes { raw in
            unclip_png_read_memory(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, maxSide, maxSide, maxPixels, &d)
        }
        guard ok == 1 else {
            let message = withUnsafeBytes(of: d.error.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            switch Int(d.status) {
            case UNCLIP_PNG_TOO_LARGE:
                throw ImageFileError(source: source, reason: .tooLarge(width: Int(d.width), height: Int(d.height), limits: limits))
            case UNCLIP_PNG_TRUNCATED: throw ImageFileError(source: source, reason: .truncated(.png))
            default: throw ImageFileError(source: source, reason: .corrupt(.png, message.isEmpty ? "unknown libpng error" : message))
            }
        }
        defer { unclip_png_decoded_free(&d) }
        let width = Int(d.width), height = Int(d.height)
        guard width > 0, height > 0, let rgba = d.rgba else { throw ImageFileError(source: source, reason: .corrupt(.png, "empty image")) }
        let alpha = (0..<(width * height)).map { rgba[$0 * 4 + 3] }
        return (width, height, alpha)
    }
}
