import Foundation
import XCTest
import CStoreKernels
@testable import UnCLIPStore
@testable import UnCLIPStoreSQLite

final class SHA256Tests: XCTestCase {
    func hex(_ s: String) -> String { SHA256.hex(Data(s.utf8)) }

    /// FIPS 180-2 / NIST CAVP example digests.
    func testKnownDigests() {
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    func testMillionAsInUnevenChunks() {
        let data = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
        var h = SHA256()
        var offset = 0, step = 1
        while offset < data.count {
            let end = min(data.count, offset + step)
            h.update(data.subdata(in: offset..<end))
            offset = end
            step = step % 97 + 13
        }
        XCTAssertEqual(h.hexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Padding edge cases: messages of 55, 56, 63 and 64 bytes against digests from Python's hashlib.
    func testPaddingBoundaries() {
        XCTAssertEqual(hex(String(repeating: "a", count: 55)), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        XCTAssertEqual(hex(String(repeating: "a", count: 56)), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        XCTAssertEqual(hex(String(repeating: "a", count: 63)), "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34")
        XCTAssertEqual(hex(String(repeating: "a", count: 64)), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }
}

final class EmbeddingMathTests: XCTestCase {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2000) / 1000 - 1
        }
    }

    func testSlerpOfUnitVectorsIsTheGreatCircle() throws {
        // (1, 0) → (0, 1): the point at t is (cos(t·90°), sin(t·90°)).
        for t in [0.0, 1.0 / 3, 0.5, 0.9, 1.0] {
            let p = try EmbeddingMath.slerp([1, 0], [0, 1], t: t)
            XCTAssertEqual(Double(p[0]), cos(t * .pi / 2), accuracy: 1e-6)
            XCTAssertEqual(Double(p[1]), sin(t * .pi / 2), accuracy: 1e-6)
        }
    }

    func testSlerpEndpointsMidpointAndLength() throws {
        let a = random(768, seed: 1), b = random(768, seed: 2).map { $0 * 1.7 }
        XCTAssertEqual(try EmbeddingMath.slerp(a, b, t: 0), a, "frame 0 is the first embedding, bit for bit")
        XCTAssertEqual(try EmbeddingMath.slerp(a, b, t: 1), b, "the last frame is the second embedding, bit for bit")
        let omega = EmbeddingMath.angle(a, b)
        for t in [0.25, 0.5, 0.8] {
            let m = try EmbeddingMath.slerp(a, b, t: t)
            // On the great circle: angles t·Ω from a and (1 − t)·Ω from b (not what an element-wise lerp gives).
            XCTAssertEqual(EmbeddingMath.angle(a, m), t * omega, accuracy: 1e-5)
            XCTAssertEqual(EmbeddingMath.angle(m, b), (1 - t) * omega, accuracy: 1e-5)
            // Length goes linearly between the two lengths.
            XCTAssertEqual(EmbeddingMath.norm(m), (1 - t) * EmbeddingMath.norm(a) + t * EmbeddingMath.norm(b), accuracy: 1e-4)
        }
        // For unit vectors the midpoint stays on the unit sphere; a lerp would have norm cos(Ω/2) < 1.
        let ua = try EmbeddingMath.normalized(a), ub = try EmbeddingMath.normalized(b)
        XCTAssertEqual(EmbeddingMath.norm(try EmbeddingMath.slerp(ua, ub, t: 0.5)), 1, accuracy: 1e-6)
        XCTAssertLessThan(EmbeddingMath.norm(zip(ua, ub).map { ($0 + $1) / 2 }), 0.99)
    }

    func testSlerpRefusesWhatItCannotDo() {
        XCTAssertThrowsError(try EmbeddingMath.slerp([1, 0], [1, 0, 0], t: 0.5)) { XCTAssertTrue("\($0)".contains("2 and 3")) }
        XCTAssertThrowsError(try EmbeddingMath.slerp([1, 0], [-1, 0], t: 0.5)) { XCTAssertTrue("\($0)".contains("opposite")) }
        XCTAssertThrowsError(try EmbeddingMath.slerp([0, 0], [1, 0], t: 0.5))
        XCTAssertEqual(try EmbeddingMath.slerp([1, 1], [2, 2], t: 0.5), [1.5, 1.5], "same direction: only the length moves")
    }

    func testTextDiffRotatesTowardTheDirection() throws {
        let image = random(64, seed: 3).map { $0 * 10 }
        let toward = random(64, seed: 4), from = random(64, seed: 5)
        XCTAssertEqual(try EmbeddingMath.textDiff(image: image, toward: toward, from: from, amount: 0), image, "θ = 0 is the image itself")
        let d = zip(toward, from).map { $0 - $1 }
        let full = EmbeddingMath.angle(image, d)
        for theta in [0.25, 0.5, 1.0] {
            let e = try EmbeddingMath.textDiff(image: image, toward: toward, from: from, amount: theta)
            XCTAssertEqual(EmbeddingMath.angle(image, e), theta * full, accuracy: 1e-5, "turned θ of the way")
            XCTAssertEqual(EmbeddingMath.angle(e, d), (1 - theta) * full, accuracy: 1e-5, "toward the text direction")
            XCTAssertEqual(EmbeddingMath.norm(e), EmbeddingMath.norm(image), accuracy: 1e-3, "length kept")
        }
        XCTAssertThrowsError(try EmbeddingMath.textDiff(image: image, toward: toward, from: toward, amount: 0.3)) {
            XCTAssertTrue("\($0)".contains("same CLIP embedding"))
        }
        XCTAssertThrowsError(try EmbeddingMath.textDiff(image: [1, 2], toward: toward, from: from, amount: 0.3))
    }
}

final class SearchIndexTests: StoreTestCase {
    func testRankingMatchesExactCosineOrder() throws {
        let store = try SQLiteStore(url: storeURL)
        var vectors: [[Float]] = []
        var s: UInt64 = 99
        func next() -> Float { s = s &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: s >> 11) % 2000) / 1000 - 1 }
        for _ in 0..<300 {
            let v = (0..<32).map { _ in next() * Float.random(in: 0.5...3) }
            vectors.append(v)
            try add(store, embedding: v)
        }
        try add(store, embedding: [1, 2, 3])  // another CLIP width: never compared
        let index = try SearchIndex.load(from: store, filter: GenerationFilter(dim: 32))
        XCTAssertEqual(index.count, 300)
        let query = (0..<32).map { _ in next() }
        let hits = try index.search(query, limit: 10)
        // Expected order from double-precision cosines.
        let expected = vectors.indices.sorted { EmbeddingMath.cosine(vectors[$0], query) > EmbeddingMath.cosine(vectors[$1], query) }
        XCTAssertEqual(hits.map(\.id), expected.prefix(10).map { Int64($0 + 1) })
        for h in hits { XCTAssertEqual(Double(h.score), EmbeddingMath.cosine(vectors[Int(h.id) - 1], query), accuracy: 1e-5) }
        // A stored vector finds itself first with score 1.
        let like = try index.search(vectors[41], limit: 3)
        XCTAssertEqual(like.first?.id, 42)
        XCTAssertEqual(Double(like.first!.score), 1, accuracy: 1e-6)
        let without = try index.search(vectors[41], limit: 3, excluding: [42])
        XCTAssertEqual(without.map(\.id), try index.search(vectors[41], limit: 4).dropFirst().map(\.id))
        assertStoreError(try index.search([1, 2], limit: 3), mentioning: ["2 values", "32"])
    }

    /// Text queries (.pictureAndDecoder) score (p̂ + ½·d̂)/1.5 · q̂; image queries (.picture) the picture's cosine.
    func testTextRankingAddsTheDecoderEmbeddingAtHalfWeight() throws {
        let store = try SQLiteStore(url: storeURL)
        try add(store, embedding: [0, 1], picture: [1, 0])    // drew "x", meant "y"
        try add(store, embedding: [1, 0], picture: [3, 4])    // drew mostly "y", meant "x"
        try add(store, embedding: nil, picture: [0, 2])       // plain SD with --clip: picture only
        let text = try SearchIndex.load(from: store, filter: GenerationFilter(dim: 2), ranking: .pictureAndDecoder)
        let hits = try text.search([1, 0], limit: 3)
        // Scores with q = x: row 1 (1 + 0)/1.5, row 2 (0.6 + 0.5)/1.5, row 3 0.
        XCTAssertEqual(hits.map(\.id), [2, 1, 3])
        XCTAssertEqual(hits[0].score, 1.1 / 1.5, accuracy: 1e-6)
        XCTAssertEqual(hits[1].score, 1 / 1.5, accuracy: 1e-6)
        XCTAssertEqual(hits[2].score, 0, accuracy: 1e-6)
        let image = try SearchIndex.load(from: store, filter: GenerationFilter(dim: 2))
        let byPicture = try image.search([1, 0], limit: 3)
        XCTAssertEqual(byPicture.map(\.id), [1, 2, 3])
        for (hit, want) in zip(byPicture, [Float(1), 0.6, 0]) { XCTAssertEqual(hit.score, want, accuracy: 1e-6) }
    }

    func testTiesGoToTheLowerIdAndFiltersApply() throws {
        let store = try SQLiteStore(url: storeURL)
        try add(store, embedding: [1, 0])
        try add(store, kind: .variation, embedding: [2, 0])
        try add(store, kind: .variation, embedding: [0, 1])
        let index = try SearchIndex.load(from: store, filter: GenerationFilter(dim: 2))
        XCTAssertEqual(try index.search([1, 0], limit: 5).map(\.id), [1, 2, 3])
        let variations = try SearchIndex.load(from: store, filter: GenerationFilter(kinds: [.variation], dim: 2))
        XCTAssertEqual(try variations.search([1, 0], limit: 5).map(\.id), [2, 3])
        XCTAssertEqual(try SearchIndex.load(from: store, filter: GenerationFilter(since: "2999-01-01T00:00:00.000Z", dim: 2)).count, 0)
    }
}

final class FingerprintTests: StoreTestCase {
    func testFingerprintSeesConfigsAndWeightsButNotOtherFiles() throws {
        let folder = tmp.appendingPathComponent("model/unet")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let root = tmp.appendingPathComponent("model")
        try Data(#"{"a": 1}"#.utf8).write(to: folder.appendingPathComponent("config.json"))
        let header = Data(#"{"w":{"dtype":"F32","shape":[200000],"data_offsets":[0,800000]}}"#.utf8)
        var file = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(header)
        file.append(Data(count: 800_000))
        let weights = folder.appendingPathComponent("diffusion_pytorch_model.safetensors")
        try file.write(to: weights)
        let f0 = try ModelFingerprint.of([root])
        XCTAssertEqual(f0.count, 64)
        XCTAssertEqual(try ModelFingerprint.of([root]), f0, "stable")
        try Data("hello".utf8).write(to: root.appendingPathComponent("README.md"))
        XCTAssertEqual(try ModelFingerprint.of([root]), f0, "files the loaders do not read do not count")
        // A change in the first sampled block of the tensor data (a fine-tune with the same header) is seen.
        var tuned = file
        tuned[8 + header.count + 10] = 1
        try tuned.write(to: weights)
        let f1 = try ModelFingerprint.of([root])
        XCTAssertNotEqual(f1, f0)
        try Data(#"{"a": 2}"#.utf8).write(to: folder.appendingPathComponent("config.json"))
        XCTAssertNotEqual(try ModelFingerprint.of([root]), f1)
        XCTAssertThrowsError(try ModelFingerprint.of([tmp.appendingPathComponent("nope")])) { XCTAssertTrue("\($0)".contains("nope")) }
    }
}

final class HalfPrecisionTests: StoreTestCase {
    /// IEEE 754 binary16 encodings (round to nearest, ties to even), checked through both the 8-wide path and the tail.
    func testConversionToHalf() {
        let values: [Float] = [1, -2, 65504, 65520, 5.9604645e-8, 0.1, 1.0 / 3, 0, -0.0, 2.9802322e-8, 1.00048828125, .infinity, 6.1035156e-5, 3e-8]
        let expected: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x7C00, 0x0001, 0x2E66, 0x3555, 0x0000, 0x8000, 0x0000, 0x3C00, 0x7C00, 0x0400, 0x0001]
        var out = [UInt16](repeating: 0xFFFF, count: values.count)
        us_f32_to_f16(values, &out, values.count)
        XCTAssertEqual(out.map { String($0, radix: 16) }, expected.map { String($0, radix: 16) })
        // Each element alone goes through the scalar tail.
        for (v, e) in zip(values, expected) {
            var one: UInt16 = 0
            us_f32_to_f16([v], &one, 1)
            XCTAssertEqual(one, e, "\(v)")
        }
    }

    func testHalfDotProductsAreWithinTheBound() {
        let dim = 37, rows = 5
        var s: UInt64 = 5
        func next() -> Float { s = s &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: s >> 11) % 2000) / 1000 - 1 }
        let m = (0..<rows).map { _ in (0..<dim).map { _ in next() } }.map { try! EmbeddingMath.normalized($0) }
        let q = try! EmbeddingMath.normalized((0..<dim).map { _ in next() })
        var halves = [UInt16](repeating: 0, count: rows * dim)
        us_f32_to_f16(m.flatMap { $0 }, &halves, rows * dim)
        var out = [Float](repeating: 0, count: rows)
        us_dot_f16_rows(halves, rows, dim, q, &out)
        for r in 0..<rows {
            XCTAssertEqual(Double(out[r]), EmbeddingMath.cosine(m[r], q), accuracy: 1.0 / 2048 + Double(dim) / 16_777_216)
        }
    }

    /// Scores closer together than half precision can tell apart still come back in exact order.
    func testNearTiesAreRankedExactly() throws {
        let store = try SQLiteStore(url: storeURL)
        var base = [Float](repeating: 0, count: 64)
        base[0] = 1
        var vectors: [[Float]] = []
        for i in 0..<40 {
            var v = base
            v[1] = Float((i * 7919) % 40) * 5e-4  // cosines 1e-5 apart: below half precision (4.9e-4 near 1), above float32
            vectors.append(v)
            try add(store, embedding: v)
        }
        let index = try SearchIndex.load(from: store, filter: GenerationFilter(dim: 64))
        let hits = try index.search(base, limit: 10)
        let expected = vectors.indices.sorted {
            let a = EmbeddingMath.cosine(vectors[$0], base), b = EmbeddingMath.cosine(vectors[$1], base)
            return a > b || (a == b && $0 < $1)
        }
        XCTAssertEqual(hits.map(\.id), expected.prefix(10).map { Int64($0 + 1) })
    }
}
