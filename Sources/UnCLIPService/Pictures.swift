import Foundation
import UnCLIPEngine
import UnCLIPImage
import UnCLIPStore

/// Picture file formats, told apart by their first bytes (never by the file name).
enum PictureFormat {
    case png, jpeg, webp

    static func of(_ data: Data) -> PictureFormat? {
        let b = [UInt8](data.prefix(12))
        if b.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return .png }
        if b.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if b.count >= 12, b[0..<4] == [0x52, 0x49, 0x46, 0x46], b[8..<12] == [0x57, 0x45, 0x42, 0x50] { return .webp }
        return nil
    }
}

/// The bytes of a picture source.
func pictureBytes(_ source: PictureSource) throws -> Data {
    switch source {
    case let .data(data, _): return data
    case let .file(url):
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw StoreError.imageFile(path: url.path, reason: "cannot read the picture (missing or unreadable)")
        }
        return data
    }
}

/// A picture decoded, with the sha256 of its bytes (which ties an edit to its init picture).
func readPicture(_ source: PictureSource) throws -> (image: RGBImage, sha256: String) {
    let data = try pictureBytes(source)
    return (try decodePicture(data, name: source.name), SHA256.hex(data))
}

/// Decodes PNG, JPEG or WebP bytes, checking the size in the header before allocating.
func decodePicture(_ data: Data, name: String) throws -> RGBImage {
    guard PictureFormat.of(data) == .png else {
        throw StoreError.imageFile(path: name, reason: "not a PNG picture")
    }
    let temp = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).png")
    defer { unlink(temp.path) }
    try data.write(to: temp)
    return try PNG.read(temp)
}

/// A PNG of `image` with an optional A1111 `parameters` text chunk.
func pngData(_ image: RGBImage, parameters: String?) throws -> Data {
    let temp = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).png")
    defer { unlink(temp.path) }
    try PNG.write(image, to: temp, textChunks: parameters.map { [("parameters", $0)] } ?? [])
    guard let data = FileManager.default.contents(atPath: temp.path) else {
        throw StoreError.imageFile(path: temp.path, reason: "cannot read back the PNG just written")
    }
    return data
}
