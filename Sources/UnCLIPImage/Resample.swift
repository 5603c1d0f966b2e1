import Foundation

/// Pillow's convolution resampling filters, numbered as `PIL.Image.Resampling` (the `resample`
/// value in preprocessor_config.json). NEAREST (0) is a different algorithm in Pillow and is not offered.
public enum ResampleFilter: Int, Sendable, CaseIterable {
    case lanczos = 1
    case bilinear = 2
    case bicubic = 3
    case box = 4
    case hamming = 5

    /// Half-width of the filter at scale 1 (Pillow's `support`).
    var support: Double {
        switch self {
        case .box: return 0.5
        case .bilinear, .hamming: return 1.0
        case .bicubic: return 2.0
        case .lanczos: return 3.0
        }
    }

    /// The filter kernel, written exactly as in Pillow's Resample.c so the double results agree bit for bit.
    @inline(__always)
    func weight(_ xIn: Double) -> Double {
        var x = xIn
        switch self {
        case .box:
            return x > -0.5 && x <= 0.5 ? 1.0 : 0.0
        case .bilinear:
            if x < 0.0 { x = -x }
            return x < 1.0 ? 1.0 - x : 0.0
        case .bicubic:
            // Keys cubic with a = -0.5: ((a + 2) x - (a + 3)) x^2 + 1 and (((x - 5) x + 8) x - 4) a.
            if x < 0.0 { x = -x }
            if x < 1.0 { return ((1.5 * x - 2.5) * x * x) + 1 }
            if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * -0.5 }
            return 0.0
        case .hamming:
            if x < 0.0 { x = -x }
            if x == 0.0 { return 1.0 }
            if x >= 1.0 { return 0.0 }
            x = x * Double.pi
            // Pillow writes 0.54f and 0.46f: float constants widened to double.
            return sin(x) / x * (Double(Float(0.54)) + Double(Float(0.46)) * cos(x))
        case .lanczos:
            guard -3.0 <= x && x < 3.0 else { return 0.0 }
            return Self.sinc(x) * Self.sinc(x / 3)
        }
    }

    private static func sinc(_ xIn: Double) -> Double {
        if xIn == 0.0 { return 1.0 }
        let x = xIn * Double.pi
        return sin(x) / x
    }
}

/// Pillow's `Image.resize` for 8-bit RGB (ImagingResample, 8 bits per channel): separable
/// convolution, support widened by the scale factor when downscaling (antialiasing), weights
/// normalised then rounded to 22-bit fixed point, and each pass rounded and clamped to uint8.
/// Integer accumulation makes the result bit-identical to Pillow 13, including its pass order
/// (vertical first when the height shrinks by more than twice as many pixels as the width;
/// Pillow 12 and older always went horizontal first, which can change results by a few levels).
enum PILResampler {
    /// Fixed-point fraction bits of the weights (Pillow: 32 - 8 - 2).
    static let precisionBits: Int32 = 22

    /// Per output index: first input index, tap count, and `kernelSize` fixed-point weights.
    struct Coefficients {
        let kernelSize: Int
        let starts: [Int]
        let counts: [Int]
        let weights: [Int32]
    }

    /// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full input range.
    static func coefficients(inSize: Int, outSize: Int, filter: ResampleFilter) -> Coefficients {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
        let kernelSize = Int(support.rounded(.up)) * 2 + 1
        let invFilterScale = 1.0 / filterScale
        var starts = [Int](repeating: 0, count: outSize)
        var counts = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * kernelSize)
        var k = [Double](repeating: 0, count: kernelSize)
        let one = Double(1 << precisionBits)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            // C casts truncate toward zero, as Swift's Int(Double) does.
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize) - xmin
            var sum = 0.0
            for x in 0..<xmax {
                let w = filter.weight((Double(x + xmin) - center + 0.5) * invFilterScale)
                k[x] = w
                sum += w
            }
            for x in 0..<xmax {
                let normalized = sum != 0.0 ? k[x] / sum : k[x]
                weights[xx * kernelSize + x] = normalized < 0
                    ? Int32(-0.5 + normalized * one) : Int32(0.5 + normalized * one)
            }
            starts[xx] = xmin
            counts[xx] = xmax
        }
        return Coefficients(kernelSize: kernelSize, starts: starts, counts: counts, weights: weights)
    }

    /// Pillow's clip8: round-down shift of the accumulator (which starts at half a unit), clamped to 0...255.
    @inline(__always)
    static func clip8(_ v: Int32) -> UInt8 {
        let shifted = v >> precisionBits
        return shifted <= 0 ? 0 : (shifted >= 255 ? 255 : UInt8(truncatingIfNeeded: shifted))
    }

    /// Resizes to width x height; returns the input unchanged when the size already matches (as PIL).
    static func resize(_ image: RGBImage, width outW: Int, height outH: Int, filter: ResampleFilter) -> RGBImage {
        let (inW, inH) = (image.width, image.height)
        if outW == inW && outH == inH { return image }
        let needHorizontal = outW != inW, needVertical = outH != inH
        // Pillow 13 ImagingResampleInner: go vertical first when that makes the horizontal pass cheaper.
        let horizontalFirst = !(inH - outH > 0 && inH - outH > (inW - outW) * 2)
        let vertical = coefficients(inSize: inH, outSize: outH, filter: filter)
        let horizontal = needHorizontal ? coefficients(inSize: inW, outSize: outW, filter: filter) : nil
        var pixels = image.pixels
        if horizontalFirst {
            var verticalStarts = vertical.starts
            if let horizontal {
                // Only the rows the vertical pass will read are resampled horizontally.
                let firstRow = vertical.starts[0]
                let endRow = vertical.starts[outH - 1] + vertical.counts[outH - 1]
                pixels = horizontalPass(pixels, width: inW, rows: firstRow..<endRow, coefficients: horizontal, outWidth: outW)
                for i in verticalStarts.indices { verticalStarts[i] -= firstRow }
            }
            if needVertical {
                pixels = verticalPass(pixels, width: outW, coefficients: vertical, starts: verticalStarts, outHeight: outH)
            }
        } else {
            if needVertical {
                pixels = verticalPass(pixels, width: inW, coefficients: vertical, starts: vertical.starts, outHeight: outH)
            }
            if let horizontal {
                pixels = horizontalPass(pixels, width: inW, rows: 0..<outH, coefficients: horizontal, outWidth: outW)
            }
        }
        return RGBImage(unchecked: outW, outH, pixels)
    }

    private static func horizontalPass(_ pixels: [UInt8], width: Int, rows: Range<Int>,
                                       coefficients c: Coefficients, outWidth: Int) -> [UInt8] {
        let half: Int32 = 1 << (precisionBits - 1)
        return [UInt8](unsafeUninitializedCapacity: rows.count * outWidth * 3) { out, initialized in
            pixels.withUnsafeBufferPointer { src in
                c.weights.withUnsafeBufferPointer { weights in
                    for (outRow, y) in rows.enumerated() {
                        let row = src.baseAddress! + y * width * 3
                        let dst = out.baseAddress! + outRow * outWidth * 3
                        for xx in 0..<outWidth {
                            let k = weights.baseAddress! + xx * c.kernelSize
                            var p = row + c.starts[xx] * 3
                            var s0 = half, s1 = half, s2 = half
                            for x in 0..<c.counts[xx] {
                                let w = k[x]
                                s0 &+= Int32(p[0]) &* w
                                s1 &+= Int32(p[1]) &* w
                                s2 &+= Int32(p[2]) &* w
                                p += 3
                            }
                            dst[xx * 3] = clip8(s0)
                            dst[xx * 3 + 1] = clip8(s1)
                            dst[xx * 3 + 2] = clip8(s2)
                        }
                    }
                }
            }
            initialized = rows.count * outWidth * 3
        }
    }

    private static func verticalPass(_ pixels: [UInt8], width: Int, coefficients c: Coefficients,
                                     starts: [Int], outHeight: Int) -> [UInt8] {
        let rowLength = width * 3
        let half: Int32 = 1 << (precisionBits - 1)
        var accumulator = [Int32](repeating: 0, count: rowLength)
        return [UInt8](unsafeUninitializedCapacity: outHeight * rowLength) { out, initialized in
            pixels.withUnsafeBufferPointer { src in
                accumulator.withUnsafeMutableBufferPointer { acc in
                    for yy in 0..<outHeight {
                        // Row-at-a-time accumulation (integer sums, so tap order does not change the result).
                        acc.update(repeating: half)
                        for y in 0..<c.counts[yy] {
                            let w = c.weights[yy * c.kernelSize + y]
                            let row = src.baseAddress! + (starts[yy] + y) * rowLength
                            for i in 0..<rowLength { acc[i] &+= Int32(row[i]) &* w }
                        }
                        let dst = out.baseAddress! + yy * rowLength
                        for i in 0..<rowLength { dst[i] = clip8(acc[i]) }
                    }
                }
            }
            initialized = outHeight * rowLength
        }
    }
}

extension RGBImage {
    /// Resized as PIL's `Image.resize` with `filter` (thumbnails, previews).
    public func resized(width: Int, height: Int, filter: ResampleFilter = .bicubic) -> RGBImage {
        PILResampler.resize(self, width: width, height: height, filter: filter)
    }
}
