import CPNG
import Foundation

/// EXIF orientation as `PIL.ImageOps.exif_transpose` finds and applies it.
///
/// Where PIL looks (and so where this looks), per format:
/// - JPEG: APP1 "Exif\0\0" segments before the first SOS (later ones appended to the first,
///   as PIL does); XMP from the APP1 "http://ns.adobe.com/xap/1.0/" segment (the last one).
/// - PNG: the eXIf chunk or a tEXt chunk keyed "exif" (the last one), else a text chunk
///   "Raw profile type exif" (ImageMagick's hex dump); XMP from the "XML:com.adobe.xmp" text.
/// - WebP: the first EXIF and "XMP " chunks of the RIFF container.
/// The Orientation tag (0x0112) is read from IFD0 of the TIFF structure; only when EXIF has none
/// does PIL fall back to the first `tiff:Orientation="N"` or `<tiff:Orientation>N` in the XMP.
/// Malformed metadata is ignored (orientation 1) rather than failing the whole image; PIL would
/// raise for some malformed EXIF headers, which is the one place this is more lenient.
enum ImageOrientation {
    /// PIL's largest accepted decompressed text chunk (PngImagePlugin.MAX_TEXT_CHUNK).
    static let maxTextChunk = 1 << 20

    /// The orientation (1...8; 1 = as stored) declared by the file's metadata.
    static func read(from bytes: UnsafeBufferPointer<UInt8>, format: ImageFormat) -> Int {
        let found: (exif: [UInt8]?, xmp: [UInt8]?)
        switch format {
        case .jpeg: found = jpegMetadata(bytes)
        case .png: found = pngMetadata(bytes)
        case .webp: found = webpMetadata(bytes)
        }
        if let exif = found.exif, let value = exifOrientation(exif) { return value }
        if let xmp = found.xmp, let value = xmpOrientation(xmp) { return value }
        return 1
    }

    // MARK: - containers

    private static func be16(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }
    private static func be32(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
    }
    private static func le32(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        Int(b[i]) | Int(b[i + 1]) << 8 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 24
    }
    private static func starts(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, with ascii: String) -> Bool {
        let sig = Array(ascii.utf8)
        return range.count >= sig.count && b[range.lowerBound..<range.lowerBound + sig.count].elementsEqual(sig)
    }

    private static func jpegMetadata(_ b: UnsafeBufferPointer<UInt8>) -> (exif: [UInt8]?, xmp: [UInt8]?) {
        var exif: [UInt8]?, xmp: [UInt8]?
        var i = 2  // after SOI
        while i + 1 < b.count {
            guard b[i] == 0xFF else { i += 1; continue }  // PIL skips stray bytes between segments too
            let marker = b[i + 1]
            if marker == 0xFF { i += 1; continue }        // fill bytes
            if marker == 0xDA || marker == 0xD9 { break }  // SOS / EOI: metadata ends (PIL stops here)
            if marker == 0x01 || (0xD0...0xD8).contains(marker) { i += 2; continue }  // no length field
            guard i + 4 <= b.count else { break }
            let length = be16(b, i + 2)
            guard length >= 2, i + 2 + length <= b.count else { break }
            let payload = (i + 4)..<(i + 2 + length)
            if marker == 0xE1 {
                if starts(b, payload, with: "Exif\0\0") {
                    if exif == nil { exif = Array(b[payload]) } else { exif! += b[(payload.lowerBound + 6)..<payload.upperBound] }
                } else if starts(b, payload, with: "http://ns.adobe.com/xap/1.0/\0") {
                    xmp = Array(b[(payload.lowerBound + 29)..<payload.upperBound])
                }
            }
            i = payload.upperBound
        }
        return (exif, xmp)
    }

    private static func pngMetadata(_ b: UnsafeBufferPointer<UInt8>) -> (exif: [UInt8]?, xmp: [UInt8]?) {
        var exif: [UInt8]?, rawProfile: [UInt8]?, xmp: [UInt8]?
        var i = 8
        while i + 8 <= b.count {
            let length = be32(b, i)
            let type = String(decoding: b[(i + 4)..<(i + 8)], as: UTF8.self)
            let start = i + 8
            guard length <= b.count - start else { break }
            let data = b[start..<(start + length)]
            if type == "IEND" { break }
            switch type {
            case "eXIf":
                exif = Array("Exif\0\0".utf8) + data
            case "tEXt", "zTXt", "iTXt":
                if let (key, value) = textChunk(type, Array(data)) {
                    if key == "exif" && type == "tEXt" { exif = value }
                    if key == "Raw profile type exif" { rawProfile = value }
                    if key == "XML:com.adobe.xmp" { xmp = value }
                }
            default: break
            }
            i = start + length + 4  // data + CRC
        }
        if exif == nil, let rawProfile { exif = decodeRawProfile(rawProfile) }
        return (exif, xmp)
    }

    /// Key and (decompressed) value bytes of a tEXt / zTXt / iTXt chunk, as PIL's chunk handlers
    /// split them; nil when malformed or when decompression fails or exceeds maxTextChunk.
    private static func textChunk(_ type: String, _ data: [UInt8]) -> (String, [UInt8])? {
        guard let nul = data.firstIndex(of: 0), nul > 0 else { return nil }
        let key = String(decoding: data[..<nul], as: UTF8.self)
        var rest = Array(data[(nul + 1)...])
        switch type {
        case "tEXt":
            return (key, rest)
        case "zTXt":
            guard let method = rest.first, method == 0 else { return nil }
            guard let value = inflate(Array(rest.dropFirst())) else { return nil }
            return (key, value)
        default:  // iTXt: flag, method, language\0, translated keyword\0, text
            guard rest.count >= 2 else { return nil }
            let compressed = rest[0] != 0, method = rest[1]
            rest = Array(rest.dropFirst(2))
            guard let lang = rest.firstIndex(of: 0) else { return nil }
            rest = Array(rest[(lang + 1)...])
            guard let translated = rest.firstIndex(of: 0) else { return nil }
            rest = Array(rest[(translated + 1)...])
            if compressed {
                guard method == 0, let value = inflate(rest) else { return nil }
                return (key, value)
            }
            return (key, rest)
        }
    }

    private static func inflate(_ compressed: [UInt8]) -> [UInt8]? {
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        let ok = compressed.withUnsafeBufferPointer { src in
            unclip_png_inflate(src.baseAddress, src.count, maxTextChunk, &out, &length)
        }
        guard ok == 1, let out else { return nil }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: length))
    }

    /// ImageMagick's "Raw profile type exif": "\nexif\n<length>\n<hex, wrapped>"; PIL joins the
    /// lines from the fourth on and reads them as hex.
    private static func decodeRawProfile(_ text: [UInt8]) -> [UInt8]? {
        let lines = text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count > 3 else { return nil }
        var bytes: [UInt8] = []
        var high: UInt8?
        for line in lines[3...] {
            for c in line {
                let nibble: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = c - UInt8(ascii: "A") + 10
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"): continue
                default: return nil
                }
                if let h = high { bytes.append(h << 4 | nibble); high = nil } else { high = nibble }
            }
        }
        return high == nil ? bytes : nil
    }

    private static func webpMetadata(_ b: UnsafeBufferPointer<UInt8>) -> (exif: [UInt8]?, xmp: [UInt8]?) {
        var exif: [UInt8]?, xmp: [UInt8]?
        var i = 12
        while i + 8 <= b.count {
            let size = le32(b, i + 4)
            let start = i + 8
            guard size <= b.count - start else { break }
            let fourcc = String(decoding: b[i..<(i + 4)], as: UTF8.self)
            if fourcc == "EXIF", exif == nil { exif = Array(b[start..<(start + size)]) }
            if fourcc == "XMP ", xmp == nil { xmp = Array(b[start..<(start + size)]) }
            i = start + size + (size & 1)  // chunks are padded to an even size
        }
        return (exif, xmp)
    }

    // MARK: - EXIF / XMP

    /// The Orientation value in IFD0 of an EXIF blob (leading "Exif\0\0" stripped up to twice, as
    /// PIL does), or nil when absent or unreadable.
    static func exifOrientation(_ blob: [UInt8]) -> Int? {
        var start = 0
        let header = Array("Exif\0\0".utf8)
        for _ in 0..<2 where blob.count - start >= 6 && Array(blob[start..<start + 6]) == header { start += 6 }
        let t = Array(blob[start...])
        guard t.count >= 8 else { return nil }
        let little: Bool
        if t[0] == 0x49, t[1] == 0x49, t[2] == 0x2A, t[3] == 0 { little = true }
        else if t[0] == 0x4D, t[1] == 0x4D, t[2] == 0, t[3] == 0x2A { little = false }
        else { return nil }
        func u16(_ i: Int) -> Int? {
            guard i >= 0, i + 2 <= t.count else { return nil }
            return little ? Int(t[i]) | Int(t[i + 1]) << 8 : Int(t[i]) << 8 | Int(t[i + 1])
        }
        func u32(_ i: Int) -> Int? {
            guard let a = u16(i), let b = u16(i + 2) else { return nil }
            return little ? a | b << 16 : a << 16 | b
        }
        guard let ifd = u32(4), let count = u16(ifd) else { return nil }
        for entry in 0..<count {
            let e = ifd + 2 + entry * 12
            guard let tag = u16(e), let type = u16(e + 2), let n = u32(e + 4) else { return nil }
            guard tag == 0x0112, n >= 1 else { continue }
            switch type {
            case 3: return u16(e + 8)                                  // SHORT (the standard type)
            case 4: return u32(e + 8)                                  // LONG
            case 1: return e + 8 < t.count ? Int(t[e + 8]) : nil      // BYTE
            default: return nil
            }
        }
        return nil
    }

    /// PIL's fallback: the first match of `tiff:Orientation(="|>)([0-9])` in the XMP packet.
    static func xmpOrientation(_ xmp: [UInt8]) -> Int? {
        let needle = Array("tiff:Orientation".utf8)
        guard xmp.count > needle.count + 1 else { return nil }
        var i = 0
        while i + needle.count + 2 <= xmp.count {
            if xmp[i] == needle[0], xmp[i..<(i + needle.count)].elementsEqual(needle) {
                var j = i + needle.count
                if xmp[j] == UInt8(ascii: "="), j + 1 < xmp.count, xmp[j + 1] == UInt8(ascii: "\"") {
                    j += 2
                } else if xmp[j] == UInt8(ascii: ">") {
                    j += 1
                } else {
                    i += 1
                    continue
                }
                if j < xmp.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(xmp[j]) {
                    return Int(xmp[j] - UInt8(ascii: "0"))
                }
            }
            i += 1
        }
        return nil
    }
}

extension RGBImage {
    /// The image as PIL's exif_transpose shows it for EXIF orientation `orientation`
    /// (values other than 2...8 leave it unchanged).
    ///
    /// 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270 (90° clockwise),
    /// 7 TRANSVERSE, 8 ROTATE_90 (90° counter-clockwise).
    func oriented(_ orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return self }
        let w = width, h = height
        let ow = orientation >= 5 ? h : w, oh = orientation >= 5 ? w : h
        // Each orientation maps output (x, y) to source (sx, sy) affinely:
        // sx = x0 + x*xdx + y*xdy, sy = y0 + x*ydx + y*ydy.
        let (x0, xdx, xdy, y0, ydx, ydy): (Int, Int, Int, Int, Int, Int)
        switch orientation {
        case 2: (x0, xdx, xdy, y0, ydx, ydy) = (w - 1, -1, 0, 0, 0, 1)
        case 3: (x0, xdx, xdy, y0, ydx, ydy) = (w - 1, -1, 0, h - 1, 0, -1)
        case 4: (x0, xdx, xdy, y0, ydx, ydy) = (0, 1, 0, h - 1, 0, -1)
        case 5: (x0, xdx, xdy, y0, ydx, ydy) = (0, 0, 1, 0, 1, 0)
        case 6: (x0, xdx, xdy, y0, ydx, ydy) = (0, 0, 1, h - 1, -1, 0)
        case 7: (x0, xdx, xdy, y0, ydx, ydy) = (w - 1, 0, -1, h - 1, -1, 0)
        default: (x0, xdx, xdy, y0, ydx, ydy) = (w - 1, 0, -1, 0, 1, 0)  // 8
        }
        // In bytes of the source buffer: where output (0, 0) comes from, and the steps per x and y.
        let base = (y0 * w + x0) * 3, stepX = (ydx * w + xdx) * 3, stepY = (ydy * w + xdy) * 3
        // Square tiles: for the quarter turns consecutive output pixels are a source row apart, so a
        // plain row-by-row walk would touch a new cache line per pixel (3x slower at 12 Mpixel).
        let tile = 32
        let out = pixels.withUnsafeBufferPointer { src in
            [UInt8](unsafeUninitializedCapacity: ow * oh * 3) { dst, count in
                for ty in stride(from: 0, to: oh, by: tile) {
                    for tx in stride(from: 0, to: ow, by: tile) {
                        for y in ty..<min(ty + tile, oh) {
                            var s = base + y * stepY + tx * stepX
                            var d = (y * ow + tx) * 3
                            for _ in tx..<min(tx + tile, ow) {
                                dst[d] = src[s]
                                dst[d + 1] = src[s + 1]
                                dst[d + 2] = src[s + 2]
                                d += 3
                                s += stepX
                            }
                        }
                    }
                }
                count = ow * oh * 3
            }
        }
        return RGBImage(unchecked: ow, oh, out)
    }
}
