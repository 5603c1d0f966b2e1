import XCTest
@testable import UnCLIPEval

/// The pixel checker on images drawn by the world's rules (every attribute combination, with jitter),
/// and the caption parser on the grammar.
final class ShapesCheckerTests: XCTestCase {
    func testReadsEveryAttributeOfRenderedImages() throws {
        var checked = 0
        for shape in ShapesWorld.shapes { for (colour, _) in ShapesWorld.colours { for (size, _) in ShapesWorld.sizes {
            for (position, _) in ShapesWorld.positions { for (background, _) in ShapesWorld.backgrounds {
                let dx = (checked % 3) - 1, dy = ((checked / 3) % 3) - 1
                let px = ShapesWorld.render(shape: shape, colour: colour, size: size, position: position, background: background, dx: dx, dy: dy)
                let a = try ShapesChecker.analyze(pixels: px, width: 32, height: 32)
                XCTAssertEqual(a, ShapesAnalysis(shape: shape, colour: colour, size: size, position: position, background: background,
                                                 objectPixels: a.objectPixels), "\(size) \(colour) \(shape) \(position) on \(background)")
                checked += 1
            } }
        } } }
        XCTAssertEqual(checked, 3 * 6 * 2 * 5 * 4)
    }

    func testPixelCountsMatchTheReferenceGenerator() throws {
        // notebooks-export/shapes_world.py: small square 64, circle 52, triangle 32; large 256, 208, 128.
        let expected = [("square", "small", 64), ("circle", "small", 52), ("triangle", "small", 32),
                        ("square", "large", 256), ("circle", "large", 208), ("triangle", "large", 128)]
        for (shape, size, count) in expected {
            let px = ShapesWorld.render(shape: shape, colour: "red", size: size, position: "center", background: "black")
            XCTAssertEqual(try ShapesChecker.analyze(pixels: px, width: 32, height: 32).objectPixels, count, "\(size) \(shape)")
        }
    }

    /// A decoded square with three extra pixels on one side (seen in a shipped-model picture: the box grew to
    /// 17 columns and a box-sized template read it as a circle). Each shape, bumped the same way, keeps its name.
    func testOnePixelBumpsDoNotChangeTheShape() throws {
        for shape in ShapesWorld.shapes {
            var px = ShapesWorld.render(shape: shape, colour: "purple", size: "large", position: "right", background: "black")
            // The rightmost object column, continued one pixel further on three rows in the middle.
            let purple = ShapesWorld.colours.first { $0.0 == "purple" }!.1
            var right = 0
            for y in 0..<32 { for x in 0..<32 where px[(y * 32 + x) * 3] == UInt8(purple.0) { right = max(right, x) } }
            for y in 14..<17 where right + 1 < 31 {
                px[(y * 32 + right + 1) * 3] = UInt8(purple.0); px[(y * 32 + right + 1) * 3 + 1] = UInt8(purple.1)
                px[(y * 32 + right + 1) * 3 + 2] = UInt8(purple.2)
            }
            XCTAssertEqual(try ShapesChecker.analyze(pixels: px, width: 32, height: 32).shape, shape, "\(shape) with a bump")
        }
    }

    func testUpscaledImagesAreReadToo() throws {
        let px = ShapesWorld.render(shape: "triangle", colour: "purple", size: "large", position: "right", background: "gray")
        var big = [UInt8](repeating: 0, count: 64 * 64 * 3)
        for y in 0..<64 { for x in 0..<64 { for c in 0..<3 { big[(y * 64 + x) * 3 + c] = px[((y / 2) * 32 + x / 2) * 3 + c] } } }
        let a = try ShapesChecker.analyze(pixels: big, width: 64, height: 64)
        XCTAssertEqual([a.shape, a.colour, a.size, a.position, a.background], ["triangle", "purple", "large", "right", "gray"])
    }

    func testCaptionParser() throws {
        XCTAssertEqual(try ShapesWorld.parse("a large blue triangle at the top on a white background"),
                       ["size": "large", "colour": "blue", "shape": "triangle", "position": "top", "background": "white"])
        XCTAssertEqual(try ShapesWorld.parse("a red circle"), ["colour": "red", "shape": "circle"])
        XCTAssertEqual(try ShapesWorld.parse("a square on a navy background"), ["shape": "square", "background": "navy"])
        XCTAssertThrowsError(try ShapesWorld.parse("a red hexagon"))
        XCTAssertThrowsError(try ShapesWorld.parse("a red circle in the sky"))
    }
}
