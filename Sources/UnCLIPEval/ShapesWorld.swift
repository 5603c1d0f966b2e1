import Foundation

/// The procedural "shapes" world of the shipped model (notebooks-export/shapes_world.py is the reference):
/// 32×32 images, one filled shape on a uniform background.
public enum ShapesWorld {
    public static let size = 32
    public static let shapes = ["circle", "square", "triangle"]
    public static let colours: [(String, (Int, Int, Int))] = [
        ("red", (230, 30, 30)), ("green", (30, 190, 40)), ("blue", (40, 90, 255)),
        ("yellow", (250, 225, 30)), ("purple", (160, 50, 200)), ("orange", (255, 140, 0)),
    ]
    public static let backgrounds: [(String, (Int, Int, Int))] = [
        ("black", (0, 0, 0)), ("gray", (128, 128, 128)), ("white", (255, 255, 255)), ("navy", (0, 0, 128)),
    ]
    public static let sizes: [(String, Int)] = [("small", 8), ("large", 16)]
    /// Bounding-box centres before jitter.
    public static let positions: [(String, (Int, Int))] = [
        ("left", (10, 16)), ("right", (22, 16)), ("top", (16, 10)), ("bottom", (16, 22)), ("center", (16, 16)),
    ]
    static let positionPhrases: [(String, String)] = [
        ("left", "on the left"), ("right", "on the right"), ("top", "at the top"), ("bottom", "at the bottom"), ("center", "in the center"),
    ]
    public static let attributeNames = ["shape", "colour", "size", "position", "background"]

    /// The attributes a caption states, e.g. "a large blue triangle at the top on a white background".
    public static func parse(_ caption: String) throws -> [String: String] {
        let words = caption.lowercased().split(separator: " ").map(String.init)
        guard words.first == "a" else { throw EvalError.badPrompt(caption, "must start with 'a'") }
        var i = 1
        var out: [String: String] = [:]
        if i < words.count, sizes.contains(where: { $0.0 == words[i] }) { out["size"] = words[i]; i += 1 }
        if i < words.count, colours.contains(where: { $0.0 == words[i] }) { out["colour"] = words[i]; i += 1 }
        guard i < words.count, shapes.contains(words[i]) else { throw EvalError.badPrompt(caption, "no shape") }
        out["shape"] = words[i]; i += 1
        var rest = words[i...].joined(separator: " ")
        for (name, phrase) in positionPhrases where rest.hasPrefix(phrase) {
            out["position"] = name
            rest = String(rest.dropFirst(phrase.count)).trimmingCharacters(in: .whitespaces)
            break
        }
        if !rest.isEmpty {
            let p = rest.split(separator: " ").map(String.init)
            guard p.count == 4, p[0] == "on", p[1] == "a", backgrounds.contains(where: { $0.0 == p[2] }), p[3] == "background" else {
                throw EvalError.badPrompt(caption, "cannot read '\(rest)'")
            }
            out["background"] = p[2]
        }
        return out
    }

    /// Renders attributes exactly as the reference generator does (dx, dy: jitter in −1...1).
    public static func render(shape: String, colour: String, size: String, position: String, background: String,
                              dx: Int = 0, dy: Int = 0) -> [UInt8] {
        let s = sizes.first { $0.0 == size }!.1
        let (cx, cy) = positions.first { $0.0 == position }!.1
        let x0 = cx - s / 2 + dx, y0 = cy - s / 2 + dy
        let bg = backgrounds.first { $0.0 == background }!.1, fg = colours.first { $0.0 == colour }!.1
        let ccx = Double(x0) + Double(s) / 2, ccy = Double(y0) + Double(s) / 2
        var px = [UInt8](repeating: 0, count: Self.size * Self.size * 3)
        for y in 0..<Self.size { for x in 0..<Self.size {
            let pxc = Double(x) + 0.5, pyc = Double(y) + 0.5
            let inside: Bool
            switch shape {
            case "square": inside = pxc >= Double(x0) && pxc <= Double(x0 + s) && pyc >= Double(y0) && pyc <= Double(y0 + s)
            case "circle": inside = (pxc - ccx) * (pxc - ccx) + (pyc - ccy) * (pyc - ccy) <= Double(s * s) / 4
            default: inside = pyc >= Double(y0) && pyc <= Double(y0 + s) && abs(pxc - ccx) <= (pyc - Double(y0)) / 2
            }
            let c = inside ? fg : bg
            let i = (y * Self.size + x) * 3
            px[i] = UInt8(c.0); px[i + 1] = UInt8(c.1); px[i + 2] = UInt8(c.2)
        } }
        return px
    }
}

public enum EvalError: Error, CustomStringConvertible {
    case badPrompt(String, String)
    case badImage(String)
    public var description: String {
        switch self {
        case let .badPrompt(p, why): return "not a shapes-world prompt (\(why)): \"\(p)\""
        case let .badImage(why): return "cannot analyse image: \(why)"
        }
    }
}
