import Foundation
import UnCLIPImage
import UnCLIPTestSupport

/// Tests/Fixtures/image, written by notebooks-export/fixtures_image.py (PIL + transformers).
enum ImageFixtures {
    static let root = Fixture.url("image")

    struct Manifest: Decodable {
        struct Image: Decodable {
            let name: String
            let file: String
            let kind: String
            let width: Int
            let height: Int
            let has_alpha: Bool
            let pil_matches: Bool
            let decoded_fnv1a64: String
            let decoded_file: String?
            let note: String?
        }
        struct Config: Decodable {
            let name: String
            let dir: String
            let lut: String
            let processor_class: String
            let std: [Double]
        }
        struct Processed: Decodable {
            let image: String
            let config: String
            let shape: [Int]
            let levels_png: String
            let levels_fnv1a64: String
        }
        struct Sweep: Decodable {
            struct Case: Decodable {
                let resample: Int
                let width: Int
                let height: Int
                let offset: Int
            }
            let source: String
            let width: Int
            let height: Int
            let outputs: String
            let cases: [Case]
        }
        let images: [Image]
        let bad_files: [String: String]
        let configs: [Config]
        let processed: [Processed]
        let sweep: Sweep
    }

    static func manifest() throws -> Manifest {
        try Fixture.decode(Manifest.self, "image/manifest.json")
    }

    static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    static func bytes(_ relative: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(relative))) }

    static func floats(_ relative: String) throws -> [Float] {
        let data = try Data(contentsOf: url(relative))
        return data.withUnsafeBytes { raw in
            (0..<data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    /// FNV-1a 64-bit, as the fixture script's fnv1a64, in lowercase hex.
    static func fnv1a64(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01B3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
