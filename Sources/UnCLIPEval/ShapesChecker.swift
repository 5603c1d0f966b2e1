import Foundation

/// What the pixel checker reads off an image of the shapes world.
public struct ShapesAnalysis: Sendable, Equatable {
    public var shape: String
    public var colour: String
    public var size: String
    public var position: String
    public var background: String
    /// Pixels of the object's largest connected component (on the 32×32 grid).
    public var objectPixels: Int

    public subscript(attribute: String) -> String {
        switch attribute {
        case "shape": return shape
        case "colour": return colour
        case "size": return size
        case "position": return position
        default: return background
        }
    }
}

/// Reads the five attributes from pixels alone (no model): background from the border, the object as the
/// largest connected region that differs from it, colour by nearest palette entry, size from the bounding box,
/// position from the box centre, shape by best overlap with circle/square/triangle templates of that box.
public enum ShapesChecker {
    /// Colour distance (RGB, Euclidean) above which a pixel is not background.
    static let threshold = 60.0

    public static func analyze(pixels: [UInt8], width: Int, height: Int) throws -> ShapesAnalysis {
        guard width > 2, height > 2, pixels.count == width * height * 3 else {
            throw EvalError.badImage("\(width)×\(height) with \(pixels.count) bytes")
        }
        // Resample to the world's 32×32 grid (nearest), so any output size can be checked.
        let n = ShapesWorld.size
        var grid = [Double](repeating: 0, count: n * n * 3)
        for y in 0..<n { for x in 0..<n {
            let sx = min(width - 1, (2 * x + 1) * width / (2 * n)), sy = min(height - 1, (2 * y + 1) * height / (2 * n))
            for c in 0..<3 { grid[(y * n + x) * 3 + c] = Double(pixels[(sy * width + sx) * 3 + c]) }
        } }
        func rgb(_ i: Int) -> (Double, Double, Double) { (grid[i * 3], grid[i * 3 + 1], grid[i * 3 + 2]) }
        func dist(_ a: (Double, Double, Double), _ b: (Int, Int, Int)) -> Double {
            let d0 = a.0 - Double(b.0), d1 = a.1 - Double(b.1), d2 = a.2 - Double(b.2)
            return (d0 * d0 + d1 * d1 + d2 * d2).squareRoot()
        }

        // Background: mean of the one-pixel border, which the world never draws on.
        var border: [Int] = []
        for i in 0..<n { border += [i, (n - 1) * n + i, i * n, i * n + n - 1] }
        var bg = (0.0, 0.0, 0.0)
        for i in border { let p = rgb(i); bg.0 += p.0; bg.1 += p.1; bg.2 += p.2 }
        bg = (bg.0 / Double(border.count), bg.1 / Double(border.count), bg.2 / Double(border.count))
        let background = ShapesWorld.backgrounds.min { dist(bg, $0.1) < dist(bg, $1.1) }!.0
        let bgInt = (Int(bg.0.rounded()), Int(bg.1.rounded()), Int(bg.2.rounded()))

        // Object: largest 4-connected component of non-background pixels.
        var mask = (0..<(n * n)).map { dist(rgb($0), bgInt) > threshold }
        var best: [Int] = []
        var seen = [Bool](repeating: false, count: n * n)
        for start in 0..<(n * n) where mask[start] && !seen[start] {
            var stack = [start], comp: [Int] = []
            seen[start] = true
            while let i = stack.popLast() {
                comp.append(i)
                let x = i % n, y = i / n
                for (nx, ny) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] where nx >= 0 && ny >= 0 && nx < n && ny < n {
                    let j = ny * n + nx
                    if mask[j] && !seen[j] { seen[j] = true; stack.append(j) }
                }
            }
            if comp.count > best.count { best = comp }
        }
        guard best.count >= 4 else {
            return ShapesAnalysis(shape: "none", colour: "none", size: "none", position: "none", background: background, objectPixels: best.count)
        }
        mask = [Bool](repeating: false, count: n * n)
        for i in best { mask[i] = true }

        var mean = (0.0, 0.0, 0.0)
        for i in best { let p = rgb(i); mean.0 += p.0; mean.1 += p.1; mean.2 += p.2 }
        mean = (mean.0 / Double(best.count), mean.1 / Double(best.count), mean.2 / Double(best.count))
        let colour = ShapesWorld.colours.min { dist(mean, $0.1) < dist(mean, $1.1) }!.0

        let xs = best.map { $0 % n }, ys = best.map { $0 / n }
        let (minX, maxX, minY, maxY) = (xs.min()!, xs.max()!, ys.min()!, ys.max()!)
        let extent = max(maxX - minX + 1, maxY - minY + 1)
        let size = extent < 12 ? "small" : "large"
        let cx = Double(minX + maxX + 1) / 2, cy = Double(minY + maxY + 1) / 2
        let position = ShapesWorld.positions.min { a, b in
            let da = (cx - Double(a.1.0)) * (cx - Double(a.1.0)) + (cy - Double(a.1.1)) * (cy - Double(a.1.1))
            let db = (cx - Double(b.1.0)) * (cx - Double(b.1.0)) + (cy - Double(b.1.1)) * (cy - Double(b.1.1))
            return da < db
        }!.0

        // Shape: intersection over union with each template, fitted to the object: the box's extent ±1 pixel and
        // its centre moved by up to a pixel, so a one-pixel bump or notch on one side (common in decoded images)
        // cannot swap a square for a circle. Every shape gets the same fit; the best IoU wins.
        func iou(_ shape: String, s: Double, cx: Double, cy: Double) -> Double {
            let x0 = cx - s / 2, y0 = cy - s / 2
            var inter = 0, union = 0
            for y in 0..<n { for x in 0..<n {
                let px = Double(x) + 0.5, py = Double(y) + 0.5
                let b: Bool
                switch shape {
                case "square": b = px >= x0 && px <= x0 + s && py >= y0 && py <= y0 + s
                case "circle": b = (px - cx) * (px - cx) + (py - cy) * (py - cy) <= s * s / 4
                default: b = py >= y0 && py <= y0 + s && abs(px - cx) <= (py - y0) / 2
                }
                let a = mask[y * n + x]
                if a && b { inter += 1 }
                if a || b { union += 1 }
            } }
            return Double(inter) / Double(max(union, 1))
        }
        var bestShape = "square", bestIoU = -1.0
        for shape in ShapesWorld.shapes {
            for ds in [-1.0, 0, 1] where Double(extent) + ds >= 2 {
                for dy in [-1.0, -0.5, 0, 0.5, 1] { for dx in [-1.0, -0.5, 0, 0.5, 1] {
                    let v = iou(shape, s: Double(extent) + ds, cx: cx + dx, cy: cy + dy)
                    if v > bestIoU { bestIoU = v; bestShape = shape }
                } }
            }
        }
        return ShapesAnalysis(shape: bestShape, colour: colour, size: size, position: position, background: background, objectPixels: best.count)
    }
}
