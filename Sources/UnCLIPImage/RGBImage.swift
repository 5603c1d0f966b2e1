/// Errors from PNG input/output and image preprocessing; each names the file or value at fault.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be read or decoded as PNG.
    case unreadablePNG(path: String, reason: String)
    /// The PNG could not be written.
    case unwritablePNG(path: String, reason: String)
    /// preprocessor_config.json is missing, malformed or asks for something unsupported.
    case invalidProcessorConfig(path: String, reason: String)
    /// An in-memory image has inconsistent dimensions or data.
    case invalidImage(String)

    public var description: String {
        switch self {
        case let .unreadablePNG(path, reason): return "cannot read PNG \(path): \(reason)"
        case let .unwritablePNG(path, reason): return "cannot write PNG \(path): \(reason)"
        case let .invalidProcessorConfig(path, reason): return "invalid image processor config \(path): \(reason)"
        case let .invalidImage(reason): return "invalid image: \(reason)"
        }
    }
}

/// An 8-bit RGB image, row-major, channels interleaved (R, G, B per pixel).
public struct RGBImage: Equatable, Sendable {
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// width * height * 3 bytes, rows top to bottom.
    public let pixels: [UInt8]

    /// Wraps interleaved RGB bytes; throws if the byte count does not match the size.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw ImageError.invalidImage("size \(width)x\(height) must be positive")
        }
        let (perRow, overflow1) = width.multipliedReportingOverflow(by: 3)
        let (count, overflow2) = perRow.multipliedReportingOverflow(by: height)
        guard !overflow1, !overflow2, pixels.count == count else {
            throw ImageError.invalidImage("\(width)x\(height) RGB needs width*height*3 bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// For buffers whose size is correct by construction.
    init(unchecked width: Int, _ height: Int, _ pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}
