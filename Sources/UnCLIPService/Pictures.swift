import Foundation
import UnCLIPEngine
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPStore

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

/// An inpainting mask read from a picture, resized to `picture`'s size as diffusers does when they differ, with
/// the sha256 of its bytes for the record. Only a mask whose aspect ratio differs from the picture's is refused:
/// stretched, it would no longer mark what it was drawn over.
func readMask(_ source: PictureSource, for picture: RGBImage) throws -> (mask: InpaintMask, sha256: String) {
    let (image, digest) = try readPicture(source)
    if let problem = maskShapeProblem(mask: (image.width, image.height), picture: (picture.width, picture.height)) {
        throw EngineError.invalidParameter(name: "mask", reason: problem)
    }
    return (try InpaintMask(picture: image, width: picture.width, height: picture.height), digest)
}

/// Why a mask of this size cannot go with this picture (nil: it can, resized if need be). Front ends that
/// check uploads before queueing them use the same rule.
public func maskShapeProblem(mask: (width: Int, height: Int), picture: (width: Int, height: Int)) -> String? {
    // Same shape within a pixel of rounding: w_m / h_m = w / h, compared as products.
    let slack = max(mask.width, mask.height, picture.width, picture.height)
    if abs(mask.width * picture.height - mask.height * picture.width) < slack { return nil }
    return "is \(mask.width)×\(mask.height) but the picture is \(picture.width)×\(picture.height); a mask must have the picture's shape (it is resized to the picture's size)"
}

/// Decodes PNG, JPEG or WebP bytes as diffusers' `load_image` does (EXIF orientation applied, alpha dropped),
/// checking the size in the header before allocating.
func decodePicture(_ data: Data, name: String) throws -> RGBImage {
    try ImageFile.decode(data, source: name)
}

/// A PNG of `image` with an optional A1111 `parameters` text chunk.
public func pngData(_ image: RGBImage, parameters: String?) throws -> Data {
    let temp = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).png")
    defer { unlink(temp.path) }
    try PNG.write(image, to: temp, textChunks: parameters.map { [("parameters", $0)] } ?? [])
    guard let data = FileManager.default.contents(atPath: temp.path) else {
        throw StoreError.imageFile(path: temp.path, reason: "cannot read back the PNG just written")
    }
    return data
}
