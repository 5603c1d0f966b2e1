import Foundation

/// A preprocessed image: float32 values in CHW order, as transformers' `pixel_values[0]`.
public struct PixelValues: Equatable, Sendable {
    /// Number of channels (3).
    public let channels: Int
    /// Height in pixels.
    public let height: Int
    /// Width in pixels.
    public let width: Int
    /// channels * height * width values, channel-major.
    public let data: [Float]
}

/// transformers' `CLIPImageProcessor` as loaded from a `preprocessor_config.json`.
///
/// In transformers 5.x `CLIPImageProcessor` is the torchvision backend, but without torchvision
/// installed `CLIPImageProcessor.from_pretrained` returns `CLIPImageProcessorPil` (PIL resize on
/// uint8); this reproduces that PIL backend: resize (Pillow's convolution filters, bit-exact),
/// center crop (zero padding when the crop is larger), rescale (in double, then float32), and
/// normalize (float32). Missing or null keys take CLIPImageProcessor's class defaults.
public struct CLIPImageProcessor: Decodable, Equatable, Sendable {
    /// Target size of the resize step (transformers' `size` dictionary).
    public enum Size: Equatable, Sendable {
        /// Shorter side becomes this, aspect ratio kept (longer side truncated), as `{"shortest_edge": n}`.
        case shortestEdge(Int)
        /// As `{"shortest_edge": s, "longest_edge": l}`: shorter side s unless the longer would exceed l.
        case shortestLongestEdge(shortest: Int, longest: Int)
        /// Exact output size, as `{"height": h, "width": w}`.
        case exact(height: Int, width: Int)
    }

    /// Whether to resize.
    public var doResize: Bool = true
    /// Resize target.
    public var size: Size = .shortestEdge(224)
    /// Resize filter (PIL numbering; CLIP uses 3 = bicubic).
    public var resample: ResampleFilter = .bicubic
    /// Whether to center crop.
    public var doCenterCrop: Bool = true
    /// Crop height.
    public var cropHeight: Int = 224
    /// Crop width.
    public var cropWidth: Int = 224
    /// Whether to multiply by `rescaleFactor`.
    public var doRescale: Bool = true
    /// Rescale factor (1/255).
    public var rescaleFactor: Double = 1.0 / 255.0
    /// Whether to normalize with `imageMean` / `imageStd`.
    public var doNormalize: Bool = true
    /// Per-channel mean (OpenAI CLIP's by default).
    public var imageMean: [Double] = [0.48145466, 0.4578275, 0.40821073]
    /// Per-channel standard deviation (OpenAI CLIP's by default).
    public var imageStd: [Double] = [0.26862954, 0.26130258, 0.27577711]
    /// Whether inputs are converted to RGB (always true in effect: `RGBImage` already is RGB).
    public var doConvertRGB: Bool = true

    private enum Keys: String, CodingKey {
        case doResize = "do_resize", size, resample, doCenterCrop = "do_center_crop", cropSize = "crop_size"
        case doRescale = "do_rescale", rescaleFactor = "rescale_factor", doNormalize = "do_normalize"
        case imageMean = "image_mean", imageStd = "image_std", doConvertRGB = "do_convert_rgb"
    }

    /// Loads `preprocessor_config.json`, from a file or from a folder containing one.
    public init(contentsOf url: URL) throws {
        var isDirectory: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? url.appendingPathComponent("preprocessor_config.json") : url
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw ImageError.invalidProcessorConfig(path: file.path, reason: "cannot read file (\(error.localizedDescription))")
        }
        do {
            self = try JSONDecoder().decode(CLIPImageProcessor.self, from: data)
        } catch let error as DecodingError {
            throw ImageError.invalidProcessorConfig(path: file.path, reason: Self.describe(error))
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        func value<T: Decodable>(_ key: Keys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        doResize = try value(.doResize, doResize)
        doCenterCrop = try value(.doCenterCrop, doCenterCrop)
        doRescale = try value(.doRescale, doRescale)
        rescaleFactor = try value(.rescaleFactor, rescaleFactor)
        doNormalize = try value(.doNormalize, doNormalize)
        doConvertRGB = try value(.doConvertRGB, doConvertRGB)
        imageMean = try Self.perChannel(c, .imageMean) ?? imageMean
        imageStd = try Self.perChannel(c, .imageStd) ?? imageStd
        if doNormalize, imageStd.contains(0) {
            throw DecodingError.dataCorruptedError(forKey: .imageStd, in: c, debugDescription: "image_std must not contain 0")
        }
        if let code = try c.decodeIfPresent(Int.self, forKey: .resample) {
            guard let filter = ResampleFilter(rawValue: code) else {
                let why = code == 0 ? "0 (NEAREST) is not supported" : "\(code) is not a PIL resampling filter"
                throw DecodingError.dataCorruptedError(
                    forKey: .resample, in: c,
                    debugDescription: "resample \(why); supported: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING")
            }
            resample = filter
        }
        if let sizeDict = try Self.sizeDictionary(c, .size, intMeansSquare: false) {
            switch Set(sizeDict.keys) {
            case ["shortest_edge"]: size = .shortestEdge(sizeDict["shortest_edge"]!)
            case ["shortest_edge", "longest_edge"]:
                size = .shortestLongestEdge(shortest: sizeDict["shortest_edge"]!, longest: sizeDict["longest_edge"]!)
            case ["height", "width"]: size = .exact(height: sizeDict["height"]!, width: sizeDict["width"]!)
            default:
                throw DecodingError.dataCorruptedError(
                    forKey: .size, in: c,
                    debugDescription: "size keys \(sizeDict.keys.sorted()) are not supported; use shortest_edge, shortest_edge+longest_edge, or height+width")
            }
        }
        if let cropDict = try Self.sizeDictionary(c, .cropSize, intMeansSquare: true) {
            guard Set(cropDict.keys) == ["height", "width"] else {
                throw DecodingError.dataCorruptedError(
                    forKey: .cropSize, in: c, debugDescription: "crop_size must have keys height and width, got \(cropDict.keys.sorted())")
            }
            cropHeight = cropDict["height"]!
            cropWidth = cropDict["width"]!
        }
    }

    /// Resizes, crops, rescales and normalizes an image into CHW float32 values.
    public func preprocess(_ image: RGBImage) -> PixelValues {
        var current = image
        if doResize {
            let (height, width) = outputSize(height: image.height, width: image.width)
            current = PILResampler.resize(image, width: width, height: height, filter: resample)
        }
        let (outH, outW, top, left) = doCenterCrop
            ? Self.cropWindow(height: current.height, width: current.width, cropHeight: cropHeight, cropWidth: cropWidth)
            : (current.height, current.width, 0, 0)
        let lookup = levelTable()
        let plane = outH * outW
        let data = [Float](unsafeUninitializedCapacity: 3 * plane) { out, initialized in
            current.pixels.withUnsafeBufferPointer { px in
                lookup.withUnsafeBufferPointer { lut in
                    for y in 0..<outH {
                        let sy = y + top
                        for x in 0..<outW {
                            let sx = x + left
                            let o = y * outW + x
                            if sy >= 0, sy < current.height, sx >= 0, sx < current.width {
                                let p = (sy * current.width + sx) * 3
                                out[o] = lut[Int(px[p])]
                                out[plane + o] = lut[256 + Int(px[p + 1])]
                                out[2 * plane + o] = lut[512 + Int(px[p + 2])]
                            } else {  // transformers pads with zeros (level 0) before rescaling
                                out[o] = lut[0]
                                out[plane + o] = lut[256]
                                out[2 * plane + o] = lut[512]
                            }
                        }
                    }
                }
            }
            initialized = 3 * plane
        }
        return PixelValues(channels: 3, height: outH, width: outW, data: data)
    }

    /// (height, width) after the resize step, with transformers' integer truncation.
    func outputSize(height: Int, width: Int) -> (Int, Int) {
        switch size {
        case let .exact(h, w):
            return (h, w)
        case let .shortestEdge(s):
            // get_resize_output_image_size(default_to_square=False): int(s * long / short).
            let (short, long) = width <= height ? (width, height) : (height, width)
            let newLong = Int(Double(s * long) / Double(short))
            return width <= height ? (newLong, s) : (s, newLong)
        case let .shortestLongestEdge(shortest, longest):
            // get_size_with_aspect_ratio, operation for operation.
            var target = shortest
            var raw: Double? = nil
            let minSide = Double(min(height, width)), maxSide = Double(max(height, width))
            if maxSide / minSide * Double(target) > Double(longest) {
                raw = Double(longest) * minSide / maxSide
                target = Int(raw!.rounded(.toNearestOrEven))
            }
            if (height <= width && height == target) || (width <= height && width == target) {
                return (height, width)
            } else if width < height {
                let h = raw.map { Int($0 * Double(height) / Double(width)) } ?? Int(Double(target * height) / Double(width))
                return (h, target)
            } else {
                let w = raw.map { Int($0 * Double(width) / Double(height)) } ?? Int(Double(target * width) / Double(height))
                return (target, w)
            }
        }
    }

    /// transformers' center_crop: output size and the source offset of its top-left pixel
    /// (negative where zero padding is added: top = floor((H - h) / 2) - ceil(max(h - H, 0) / 2) ...).
    static func cropWindow(height: Int, width: Int, cropHeight: Int, cropWidth: Int) -> (Int, Int, Int, Int) {
        func floorDiv2(_ v: Int) -> Int { v >= 0 ? v / 2 : -((-v + 1) / 2) }
        var top = floorDiv2(height - cropHeight)
        var left = floorDiv2(width - cropWidth)
        if top >= 0, left >= 0 { return (cropHeight, cropWidth, top, left) }
        // Padded path: the image is placed in a zero canvas of max(crop, image) size, then cropped.
        let newHeight = max(cropHeight, height), newWidth = max(cropWidth, width)
        let topPad = (newHeight - height + 1) / 2, leftPad = (newWidth - width + 1) / 2
        top += topPad
        left += leftPad
        let y0 = max(0, top), y1 = min(newHeight, top + cropHeight)
        let x0 = max(0, left), x1 = min(newWidth, left + cropWidth)
        return (y1 - y0, x1 - x0, y0 - topPad, x0 - leftPad)
    }

    /// Output value of each channel's uint8 level: float32(level * rescale in double), then
    /// float32 (x - mean) / std, exactly as transformers' numpy rescale + normalize.
    private func levelTable() -> [Float] {
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            let mean = Float(imageMean.count == 1 ? imageMean[0] : imageMean[c])
            let std = Float(imageStd.count == 1 ? imageStd[0] : imageStd[c])
            for level in 0..<256 {
                var v = doRescale ? Float(Double(level) * rescaleFactor) : Float(level)
                if doNormalize { v = (v - mean) / std }
                table[c * 256 + level] = v
            }
        }
        return table
    }

    // MARK: - decoding helpers

    /// A mean/std value: a number (all channels) or a list of 3.
    private static func perChannel(_ c: KeyedDecodingContainer<Keys>, _ key: Keys) throws -> [Double]? {
        if (try? c.decodeNil(forKey: key)) ?? true { return nil }
        if let single = try? c.decode(Double.self, forKey: key) { return [single] }
        let list = try c.decode([Double].self, forKey: key)
        guard list.count == 3 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(key.stringValue) must have 3 values, got \(list.count)")
        }
        return list
    }

    /// transformers' get_size_dict: an int (square, or shortest_edge for `size`), a [h, w] list, or a dict.
    private static func sizeDictionary(_ c: KeyedDecodingContainer<Keys>, _ key: Keys, intMeansSquare: Bool) throws -> [String: Int]? {
        if (try? c.decodeNil(forKey: key)) ?? true { return nil }
        let dict: [String: Int]
        if let n = try? c.decode(Int.self, forKey: key) {
            dict = intMeansSquare ? ["height": n, "width": n] : ["shortest_edge": n]
        } else if let list = try? c.decode([Int].self, forKey: key) {
            guard list.count == 2 else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(key.stringValue) list must be [height, width]")
            }
            dict = ["height": list[0], "width": list[1]]
        } else {
            dict = try c.decode([String: Int].self, forKey: key)
        }
        guard dict.values.allSatisfy({ $0 > 0 }) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(key.stringValue) values must be positive, got \(dict)")
        }
        return dict
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [CodingKey]) -> String {
            codingPath.isEmpty ? "top level" : "\"" + codingPath.map(\.stringValue).joined(separator: ".") + "\""
        }
        switch error {
        case let .dataCorrupted(context):
            return context.codingPath.isEmpty ? "not valid JSON (\(context.debugDescription))"
                : "\(path(context.codingPath)): \(context.debugDescription)"
        case let .typeMismatch(type, context):
            return "\(path(context.codingPath)): expected \(type)"
        case let .valueNotFound(type, context):
            return "\(path(context.codingPath)): missing \(type)"
        case let .keyNotFound(key, context):
            return "\(path(context.codingPath + [key])): missing key"
        @unknown default:
            return "\(error)"
        }
    }
}
