import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPTensor

/// Which pixels inpainting repaints, binarised as diffusers' mask processor does
/// (`VaeImageProcessor(do_normalize=False, do_binarize=True, do_convert_grayscale=True)`): the picture turned
/// grey with PIL's `convert("L")`, divided by 255, and cells at 0.5 or above repainted. White means repaint,
/// as in diffusers and AUTOMATIC1111; other conventions (OpenAI's transparent areas) are converted by the caller.
public struct InpaintMask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// Row-major, one per pixel: true = repaint.
    public let repaint: [Bool]

    public init(width: Int, height: Int, repaint: [Bool]) throws {
        guard width > 0, height > 0, repaint.count == width * height else {
            throw ModelError.invalidInput("a \(width)×\(height) mask needs \(max(0, width * height)) values, got \(repaint.count)")
        }
        self.width = width
        self.height = height
        self.repaint = repaint
    }

    /// From a picture: PIL's ITU-R 601-2 luma in its integer form, (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16,
    /// then `luma / 255 >= 0.5`, i.e. luma ≥ 128. A greyscale PNG decodes to equal R, G, B, whose luma is
    /// the grey itself. (Alpha is already dropped by decoding, as diffusers' `load_image` drops it.)
    public init(picture: RGBImage) throws {
        let n = picture.width * picture.height
        var r = [Bool](repeating: false, count: n)
        picture.pixels.withUnsafeBufferPointer { p in
            for i in 0..<n {
                let luma = (19595 * Int(p[3 * i]) + 38470 * Int(p[3 * i + 1]) + 7471 * Int(p[3 * i + 2]) + 32768) >> 16
                r[i] = Float(luma) / 255 >= 0.5
            }
        }
        try self.init(width: picture.width, height: picture.height, repaint: r)
    }

    /// From a picture of any size, made `width` × `height` first as diffusers' mask processor does when the
    /// sizes differ: PIL's Lanczos resize of the RGB picture, then the grey conversion and the 0.5 threshold.
    public init(picture: RGBImage, width: Int, height: Int) throws {
        guard picture.width != width || picture.height != height else { try self.init(picture: picture); return }
        try self.init(picture: picture.resized(width: width, height: height, filter: .lanczos))
    }

    /// The fraction of pixels repainted (0 = the mask keeps everything).
    public var coverage: Double { Double(repaint.lazy.filter { $0 }.count) / Double(repaint.count) }

    /// The mask at pixel size as 0/1 floats [1, 1, H, W].
    public var pixelTensor: Tensor {
        Tensor(shape: [1, 1, height, width], data: repaint.map { $0 ? 1 : 0 })
    }

    /// The mask at latent size [1, 1, h, w], as `torch.nn.functional.interpolate(mask, size=(h, w))` (mode
    /// "nearest": source index floor(dst · in/out), clamped) resizes it.
    public func latentTensor(height h: Int, width w: Int) -> Tensor {
        let sy = Float(height) / Float(h), sx = Float(width) / Float(w)
        var out = [Float](repeating: 0, count: h * w)
        for y in 0..<h {
            let iy = min(Int((Float(y) * sy).rounded(.down)), height - 1)
            for x in 0..<w {
                let ix = min(Int((Float(x) * sx).rounded(.down)), width - 1)
                out[y * w + x] = repaint[iy * width + ix] ? 1 : 0
            }
        }
        return Tensor(shape: [1, 1, h, w], data: out)
    }
}
