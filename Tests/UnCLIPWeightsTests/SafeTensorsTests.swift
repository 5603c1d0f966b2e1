import Foundation
import XCTest
@testable import UnCLIPTensor
@testable import UnCLIPWeights
import UnCLIPTestSupport

final class SafeTensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try makeTemporaryDirectory(for: self, prefix: "unclip-st")
    }

    /// A safetensors file from a raw JSON header and data bytes, for malformed cases.
    func raw(_ header: String, data: [UInt8] = [], lengthOverride: UInt64? = nil, name: String = "t.safetensors") -> String {
        var out = Data()
        let h = Data(header.utf8)
        withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(h)
        out.append(contentsOf: data)
        let url = dir.appendingPathComponent(name)
        try! out.write(to: url)
        return url.path
    }

    /// Opening `path` fails with a message that says what is wrong (`needle`) and names the file.
    func assertHeaderError(_ path: String, contains needle: String, file: StaticString = #filePath, line: UInt = #line) {
        assertThrows(try SafeTensorsFile(path: path), mentioning: [needle, path], file: file, line: line)
    }

    func testWriteReadRoundTrip() throws {
        let t = Tensor(shape: [2, 3], data: [1, -2, 3.5, 0, 1e-8, -7])
        let url = dir.appendingPathComponent("rt.safetensors")
        try SafeTensorsWriter.write([("a", .float32(t)), ("ids", .int64([1, 49407, -3], shape: [3]))], metadata: ["format": "pt"], to: url)
        let f = try SafeTensorsFile(path: url.path)
        XCTAssertEqual(try f.tensor("a").scalars, t.scalars)
        XCTAssertEqual(try f.tensor("a").shape, [2, 3])
        XCTAssertEqual(try f.integers("ids"), [1, 49407, -3])
        XCTAssertEqual(f.metadata["format"], "pt")
        // No temp file is left beside the result.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["rt.safetensors"])
    }

    /// The streaming writer gives the same file as the in-memory one; a tensor of the wrong shape leaves nothing.
    func testStreamingWriter() throws {
        let a = Tensor(shape: [2, 3], data: [1, -2, 3.5, 0, 1e-8, -7]), b = Tensor(shape: [1], data: [9])
        let streamed = dir.appendingPathComponent("s.safetensors"), whole = dir.appendingPathComponent("w.safetensors")
        try SafeTensorsWriter.writeStreaming(names: ["a", "b"], shapes: [[2, 3], [1]], to: streamed) { [a, b][$0] }
        try SafeTensorsWriter.write([("a", .float32(a)), ("b", .float32(b))], to: whole)
        XCTAssertEqual(try Data(contentsOf: streamed), try Data(contentsOf: whole))
        let bad = dir.appendingPathComponent("bad.safetensors")
        assertThrows(try SafeTensorsWriter.writeStreaming(names: ["a", "b"], shapes: [[2, 3], [2]], to: bad) { [a, b][$0] },
                     mentioning: ["'b'", "[2]", "[1]"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["s.safetensors", "w.safetensors"])
    }

    func testTruncatedFile() {
        let p = raw(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [0, 0, 0, 0])
        assertHeaderError(p, contains: "runs past the end of the data section")
        assertHeaderError(raw("", name: "empty-header.safetensors"), contains: "not a JSON object")
        let tiny = dir.appendingPathComponent("tiny.safetensors")
        try! Data([1, 2, 3]).write(to: tiny)
        assertHeaderError(tiny.path, contains: "shorter than the 8-byte header")
    }

    func testHeaderLengthPastEnd() {
        assertHeaderError(raw(#"{}"#, lengthOverride: 1 << 40), contains: "header length")
    }

    /// Resource limits (issue 20): a shape whose byte size overflows Int, a header over the reference implementation's
    /// 100 MB cap and one listing more tensors than any checkpoint are refused with a message, before any allocation.
    func testShapeWhoseSizeOverflowsIsRefusedNotTrapped() {
        let huge = #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#
        assertHeaderError(raw(huge), contains: "too large for any file")
    }

    func testHeaderOverTheSizeLimit() throws {
        // A sparse file: the length says one byte over the cap, and the file is long enough to hold it.
        let url = dir.appendingPathComponent("big-header.safetensors")
        let length = withUnsafeBytes(of: UInt64(SafeTensorsHeader.maxHeaderBytes + 1).littleEndian) { Data($0) }
        FileManager.default.createFile(atPath: url.path, contents: length)
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: UInt64(SafeTensorsHeader.maxHeaderBytes) + 16)
        try handle.close()
        assertHeaderError(url.path, contains: "over the \(SafeTensorsHeader.maxHeaderBytes)-byte limit")
    }

    func testTooManyTensors() {
        let entries = (0...SafeTensorsHeader.maxTensors).map { #""t\#($0)":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}"# }
        assertHeaderError(raw("{" + entries.joined(separator: ",") + "}"), contains: "lists \(SafeTensorsHeader.maxTensors + 1) tensors; at most \(SafeTensorsHeader.maxTensors) are accepted")
    }

    /// Float data read as integers: NaN, infinity and values past Int's range are an error naming the tensor, not a
    /// trap (found by the safetensors fuzz target; its input is fuzz/corpus/safetensors/nan-as-integers).
    func testIntegersOfNonFiniteFloatsAreAnError() throws {
        for (bad, shown) in [(Float.nan, "nan"), (.infinity, "inf"), (1e30, "1e+30")] {
            let url = dir.appendingPathComponent("ints-\(shown).safetensors")
            try SafeTensorsWriter.write([("ids", .float32(Tensor(shape: [3], data: [1, bad, 2])))], to: url)
            assertThrows(try SafeTensorsFile(path: url.path).integers("ids"), mentioning: ["'ids'", "index 1", shown, url.path])
        }
        let fine = dir.appendingPathComponent("ints.safetensors")
        try SafeTensorsWriter.write([("ids", .float32(Tensor(shape: [3], data: [1, -2.7, 49407])))], to: fine)
        XCTAssertEqual(try SafeTensorsFile(path: fine.path).integers("ids"), [1, -2, 49407])
    }

    /// A shard index naming a file outside the model folder is refused (it would map any file on the machine).
    func testShardIndexNamesStayInsideTheFolder() throws {
        for name in ["../secret.safetensors", "/etc/passwd", "..", "a/b.safetensors", ""] {
            let index = Data(#"{"weight_map":{"w":"\#(name)"}}"#.utf8)
            assertThrows(try ShardIndex.shardNames(index, path: "unet/x.index.json"), mentioning: ["unet/x.index.json", "not a file name"])
        }
        XCTAssertEqual(try ShardIndex.shardNames(Data(#"{"weight_map":{"a":"m-2.safetensors","b":"m-1.safetensors","c":"m-2.safetensors"}}"#.utf8),
                                                 path: "i.json"), ["m-1.safetensors", "m-2.safetensors"])
    }

    /// Config files are read only up to `maxConfigFileBytes`: a larger one is refused by its size, naming it.
    func testOversizedConfigIsRefusedBeforeDecoding() throws {
        let url = dir.appendingPathComponent("config.json")
        let handle = try { FileManager.default.createFile(atPath: url.path, contents: Data("{}".utf8)); return try FileHandle(forWritingTo: url) }()
        try handle.truncate(atOffset: UInt64(maxConfigFileBytes) + 1)
        try handle.close()
        struct Empty: Decodable {}
        assertThrows(try loadJSONConfig(Empty.self, from: url), mentioning: [url.path, "at most \(maxConfigFileBytes) bytes"])
    }

    func testUnknownDType() {
        assertHeaderError(raw(#"{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,2]}}"#, data: [0, 0]), contains: "unknown dtype 'F12'")
    }

    func testOverlappingOffsets() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertHeaderError(raw(header, data: [UInt8](repeating: 0, count: 12)), contains: "overlap")
    }

    func testByteLengthMustMatchShape() {
        assertHeaderError(raw(#"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)),
                          contains: "needs 6")
    }

    func testNotJSON() {
        assertHeaderError(raw("this is not json", data: []), contains: "not a JSON object")
    }

    func testMissingTensorAndWrongShape() throws {
        let url = dir.appendingPathComponent("m.safetensors")
        try SafeTensorsWriter.write([("layer.weight", .float32(Tensor(zeros: [4, 2])))], to: url)
        let w = try WeightMap(paths: [url.path])
        XCTAssertThrowsError(try w.tensor("layer.bias", shape: [4])) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("layer.bias") && m.contains(url.path) && m.contains("[4]"), m)
        }
        XCTAssertThrowsError(try w.tensor("layer.weight", shape: [2, 4])) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("[4, 2]") && m.contains("[2, 4]") && m.contains("layer.weight"), m)
        }
        XCTAssertNoThrow(try w.tensor("layer.weight", shape: [4, 2]))
    }

    func testPrefixAliases() throws {
        let url = dir.appendingPathComponent("p.safetensors")
        try SafeTensorsWriter.write([("embeddings.w", .float32(Tensor(repeating: 2, shape: [3])))], to: url)
        let w = try WeightMap(paths: [url.path])
        XCTAssertThrowsError(try w.tensor("text_model.embeddings.w", shape: [3]))
        w.prefixAliases = [("text_model.", "")]
        XCTAssertEqual(try w.tensor("text_model.embeddings.w", shape: [3]).scalars, [2, 2, 2])
    }

    func testFolderErrors() throws {
        XCTAssertThrowsError(try ModelFolder(dir.appendingPathComponent("nope"))) { XCTAssertTrue("\($0)".contains("nope")) }
        let folder = try ModelFolder(dir)
        try Data("x".utf8).write(to: dir.appendingPathComponent("weights.ckpt"))
        XCTAssertThrowsError(try folder.weightFiles()) { e in
            XCTAssertTrue("\(e)".contains("weights.ckpt"), "\(e)")
        }
        // A .bin pickle is read now (through the restricted reader): a damaged one says so, naming the file.
        try Data("x".utf8).write(to: dir.appendingPathComponent("pytorch_model.bin"))
        XCTAssertThrowsError(try folder.weights()) { e in
            XCTAssertTrue("\(e)".contains("pytorch_model.bin"), "\(e)")
        }
        try Data("{\"hidden_size\": ".utf8).write(to: dir.appendingPathComponent("config.json"))
        struct C: Decodable { let hidden_size: Int }
        XCTAssertThrowsError(try folder.config(C.self)) { e in
            XCTAssertTrue("\(e)".contains("config.json") && "\(e)".contains("not valid JSON"), "\(e)")
        }
    }

    /// fp16 and bf16 (normal, subnormal, ±0, max, ±inf) load to exactly what torch's `.float()` gives.
    func testHalfPrecisionMatchesTorch() throws {
        let src = try Fixture.file("weights/dtypes.safetensors")
        let ref = try Fixture.file("weights/dtypes.expected.safetensors")
        XCTAssertFalse(src.tensors.isEmpty)
        for (name, info) in src.tensors where info.dtype == .F16 || info.dtype == .BF16 {
            let got = try src.tensor(name), want = try ref.tensor(name)
            XCTAssertEqual(got.shape, want.shape, name)
            for (a, b) in zip(got.scalars, want.scalars) {
                if b.isNaN { XCTAssertTrue(a.isNaN, name) } else { XCTAssertEqual(a.bitPattern, b.bitPattern, "\(name): \(a) vs \(b)") }
            }
        }
    }
}
