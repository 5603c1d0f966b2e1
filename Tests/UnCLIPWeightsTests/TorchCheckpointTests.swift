import Foundation
import XCTest
@testable import UnCLIPTensor
@testable import UnCLIPWeights
import UnCLIPTestSupport

/// `.ckpt` files saved by real torch (notebooks-export/fixtures_ckpt.py) against the values torch gave, and hostile
/// or damaged files refused by name with nothing run.
final class TorchCheckpointTests: XCTestCase {
    struct Manifest: Decodable {
        struct Entry: Decodable { let loads: Bool; let error: [String]?; let archive: String?; let global_step: Int? }
        let marker: String
        let files: [String: Entry]
    }

    func path(_ name: String) -> String { Fixture.url("ckpt/\(name)").path }

    /// Every tensor of the state dict equals torch's value, bit for bit (fp16/bf16 widen exactly).
    func assertMatchesTorch(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ckpt = try TorchCheckpoint(path: path("\(name).ckpt"))
        let want = try Fixture.file("ckpt/\(name).expected.safetensors")
        XCTAssertEqual(Set(ckpt.tensors.keys), Set(want.tensors.keys), "\(name): keys", file: file, line: line)
        for (key, info) in want.tensors {
            guard let got = ckpt.tensors[key] else { continue }
            XCTAssertEqual(got.shape, info.shape, "\(name) \(key): shape", file: file, line: line)
            if info.dtype == .I64 {
                assertThrows(try ckpt.load(got), mentioning: [key, "cannot be used as a float tensor"], file: file, line: line)
                continue
            }
            let t = try ckpt.load(got)
            XCTAssertEqual(t.scalars, try want.tensor(key).scalars, "\(name) \(key): values", file: file, line: line)
        }
    }

    func testFloat32MatchesTorchIncludingStridedViews() throws {
        try assertMatchesTorch("fp32")
        let ckpt = try TorchCheckpoint(path: path("fp32.ckpt"))
        XCTAssertEqual(ckpt.archiveName, "fp32")
        XCTAssertEqual(ckpt.tensors["transposed"]?.shape, [6, 4])
        XCTAssertEqual(ckpt.tensors["scalar"]?.shape, [])
        XCTAssertEqual(ckpt.tensors["empty"]?.shape, [0, 4])
    }

    func testHalfAndBFloat16MatchTorch() throws {
        try assertMatchesTorch("fp16")
        XCTAssertEqual(try TorchCheckpoint(path: path("fp16.ckpt")).archiveName, "archive")
        XCTAssertEqual(try TorchCheckpoint(path: path("fp16.ckpt")).tensors["bf16.weight"]?.dtype, .BF16)
    }

    /// The original SD layout: the `state_dict` entry (with its EMA copy) loads beside Lightning's callback class,
    /// a callback object and numpy scalars.
    func testNestedStateDictWithEMAAndLightningEntries() throws {
        try assertMatchesTorch("sd_nested")
        let ckpt = try TorchCheckpoint(path: path("sd_nested.ckpt"))
        XCTAssertEqual(ckpt.number("global_step"), 123)
        XCTAssertEqual(ckpt.number("epoch"), 4)
        XCTAssertNotNil(ckpt.tensors["model_ema.diffusion_modela.weight"])
        guard case .opaque("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint")? = ckpt.root.dict?["hparams"] else {
            return XCTFail("hparams: \(String(describing: ckpt.root.dict?["hparams"]))")
        }
    }

    /// A WeightMap opened on a .ckpt path reads it through the restricted reader, shape-checked like safetensors.
    func testWeightMapOpensCheckpointsByContent() throws {
        let map = try WeightMap(paths: [path("fp32.ckpt")])
        XCTAssertEqual(try map.tensor("layer.weight", shape: [3, 5]).shape, [3, 5])
        assertThrows(try map.tensor("layer.weight", shape: [5, 3]), mentioning: ["layer.weight", "[3, 5]"])
        XCTAssertTrue(try openWeightFile(Fixture.url("weights/dtypes.safetensors").path) is SafeTensorsFile)
        // A safetensors header of 0x280 bytes starts the file with 0x80 0x02, as a pickle does: still safetensors.
        var header = Data(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.utf8)
        header.append(contentsOf: [UInt8](repeating: 0x20, count: 0x280 - header.count))
        var file = Data()
        withUnsafeBytes(of: UInt64(0x280).littleEndian) { file.append(contentsOf: $0) }
        file.append(header)
        file.append(contentsOf: [0, 0, 0x80, 0x3F])
        let url = try makeTemporaryDirectory(for: self).appendingPathComponent("x.safetensors")
        try file.write(to: url)
        XCTAssertEqual(try WeightMap(paths: [url.path]).tensor("a", shape: [1]).scalars, [1])
    }

    /// A diffusers folder with only a torch.save'd .bin: the same weights as the safetensors it was made from.
    func testComponentFolderWithBinWeights() throws {
        let bin = try ModelFolder(Fixture.url("ckpt/vae-bin"))
        XCTAssertEqual(try bin.weightFiles().map { ($0 as NSString).lastPathComponent }, ["diffusion_pytorch_model.bin"])
        let got = try bin.weights(), want = try ModelFolder(Fixture.url("sd/tiny-sd-eps/vae")).weights()
        XCTAssertEqual(Set(got.keys), Set(want.keys))
        XCTAssertGreaterThan(want.keys.count, 50)
        for key in want.keys {
            let shape = want.files[0].tensors[key]!.shape
            XCTAssertEqual(try got.tensor(key, shape: shape).scalars, try want.tensor(key, shape: shape).scalars, key)
        }
    }

    /// Every refused fixture throws with the words the fixture script listed, and names the file.
    func testRefusedFilesNameWhatIsWrong() throws {
        let manifest = try Fixture.decode(Manifest.self, "ckpt/manifest.json")
        let refused = manifest.files.filter { !$0.value.loads }
        XCTAssertGreaterThanOrEqual(refused.count, 9)
        for (name, entry) in refused.sorted(by: { $0.key < $1.key }) {
            assertThrows(try TorchCheckpoint(path: path(name)), mentioning: (entry.error ?? []) + [name])
        }
        for (name, entry) in manifest.files where entry.loads {
            XCTAssertNoThrow(try TorchCheckpoint(path: path(name)), name)
        }
    }

    /// torch.load runs this file's os.system (the fixture script checks that); here it is refused by name and the
    /// marker file it would touch does not appear.
    func testSystemCallIsRefusedAndNeverRun() throws {
        let manifest = try Fixture.decode(Manifest.self, "ckpt/manifest.json")
        try? FileManager.default.removeItem(atPath: manifest.marker)
        assertThrows(try TorchCheckpoint(path: path("evil_system.ckpt")), mentioning: ["posix.system", "nothing in the file was run"])
        assertThrows(try WeightMap(paths: [path("evil_system.ckpt")]), mentioning: ["posix.system"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: manifest.marker))
    }

    /// Every cut of a valid checkpoint is refused with a message, never read past its end.
    func testTruncatedArchivesAreRefused() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let data = try Data(contentsOf: Fixture.url("ckpt/fp32.ckpt"))
        for cut in [0, 1, 21, 22, 100, data.count / 2, data.count - 23, data.count - 1] {
            let url = dir.appendingPathComponent("cut-\(cut).ckpt")
            try data.prefix(cut).write(to: url)
            XCTAssertThrowsError(try TorchCheckpoint(path: url.path), "cut at \(cut)") { e in
                XCTAssertTrue("\(e)".contains(url.path), "\(e)")
            }
        }
    }

    /// Storage data cut short inside the archive (the directory still intact): the tensor's bytes are checked.
    func testStorageEntryShorterThanItsTensorIsRefused() throws {
        let dir = try makeTemporaryDirectory(for: self)
        var data = try Data(contentsOf: Fixture.url("ckpt/fp32.ckpt"))
        // Shrink the declared size of data/0 in its central directory entry (stored: both sizes) to 4 bytes.
        let name = Array("fp32/data/0".utf8)
        let cd = data.indices.dropLast(46).first { i in
            data[i] == 0x50 && data[i + 1] == 0x4B && data[i + 2] == 1 && data[i + 3] == 2 && Array(data[(i + 46)..<(i + 46 + name.count)]) == name
        }
        let at = try XCTUnwrap(cd)
        for field in [20, 24] { data.replaceSubrange((at + field)..<(at + field + 4), with: [4, 0, 0, 0]) }
        let url = dir.appendingPathComponent("short.ckpt")
        try data.write(to: url)
        assertThrows(try TorchCheckpoint(path: url.path), mentioning: ["storage '0'", "holds 4 bytes", url.path])
    }

    func testLimitsAreEnforced() throws {
        var limits = Unpickler.Limits()
        limits.maxTensors = 3
        assertThrows(try TorchCheckpoint(path: path("fp32.ckpt"), limits: limits), mentioning: ["more than 3 tensors"])
        limits = Unpickler.Limits()
        limits.maxStringBytes = 4
        assertThrows(try TorchCheckpoint(path: path("fp32.ckpt"), limits: limits), mentioning: ["at most 4 are read"])
        limits = Unpickler.Limits()
        limits.maxMemo = 5
        assertThrows(try TorchCheckpoint(path: path("fp32.ckpt"), limits: limits), mentioning: ["memo grows past 5"])
        limits = Unpickler.Limits()
        limits.maxStack = 4
        assertThrows(try TorchCheckpoint(path: path("fp32.ckpt"), limits: limits), mentioning: ["past 4"])
    }

    /// Opcodes and globals outside the allowed set, in hand-written pickles.
    func testHandWrittenPicklesAreRefused() {
        func load(_ bytes: [UInt8]) throws -> PickleValue {
            var u = Unpickler(path: "mem.pkl")
            return try bytes.withUnsafeBytes { try u.load($0) }
        }
        let g = { (s: String) in Array(s.utf8) }
        // INST / OBJ (protocol 0/1 object creation) are not torch's.
        assertThrows(try load([0x80, 2] + g("ios\nsystem\n") + [0x2E]), mentioning: ["opcode 0x69"])
        assertThrows(try load([0x80, 2] + g("cbuiltins\ngetattr\n") + [0x2E]), mentioning: ["builtins.getattr"])
        // An allowed global applied to something it does not build.
        assertThrows(try load([0x80, 2] + g("ctorch\nFloatStorage\n)R.")), mentioning: ["REDUCE calls torch.FloatStorage"])
        assertThrows(try load([0x80, 2, 0x68, 7, 0x2E]), mentioning: ["memo entry 7"])
        assertThrows(try load([0x80, 2, 0x58, 0xFF, 0xFF, 0xFF, 0x7F]), mentioning: ["at most"])
        assertThrows(try load([0x80, 2, 0x58, 0xFF, 0xFF, 0, 0]), mentioning: ["pickle ends"])
        assertThrows(try load([0x80, 2, 0x4E, 0x4E, 0x2E]), mentioning: ["STOP with 2 values"])
        XCTAssertNoThrow(try load([0x80, 2, 0x8A, 2, 0xFF, 0x7F, 0x2E]))
        if case let .int(v)? = try? load([0x80, 2, 0x8A, 1, 0xFF, 0x2E]) { XCTAssertEqual(v, -1) } else { XCTFail("LONG1 -1") }
    }

    /// The committed fuzz corpus (fuzz/corpus/unpickler): each file loads or throws; the valid ones load.
    func testFuzzCorpusLoadsOrThrows() throws {
        let dir = Repository.url("fuzz/corpus/unpickler")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertGreaterThanOrEqual(names.count, 30)
        var loaded = 0, refused = 0
        for name in names {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            var u = Unpickler(path: name)
            do {
                _ = try data.withUnsafeBytes { try u.load($0) }
                loaded += 1
                XCTAssertFalse(name.hasPrefix("hostile-evil"), "\(name) loaded")
            } catch let e as WeightError {
                refused += 1
                XCTAssertFalse(name.hasPrefix("valid-"), "\(name): \(e)")
                XCTAssertTrue("\(e)".contains(name), "\(e)")
            }
        }
        XCTAssertGreaterThan(loaded, 10)
        XCTAssertGreaterThan(refused, 10)
    }
}

/// Pickles that would build structures deeper than their bookkeeping, or recursive ones, by changing containers
/// after they were placed (the stack-overflow-on-free attack), and zip damage at every byte of the directory.
final class UnpicklerStructureTests: XCTestCase {
    func load(_ bytes: [UInt8]) throws -> PickleValue {
        var u = Unpickler(path: "mem.pkl")
        return try bytes.withUnsafeBytes { try u.load($0) }
    }

    /// 200000 lists memoized empty, then each filled with the next one after it was placed: without sealing this
    /// nests 200000 deep while each step looks 2 deep.
    func testChainOfContainersFilledAfterUseIsRefused() {
        let n = 200_000
        var p: [UInt8] = [0x80, 2]
        func put(_ i: Int) -> [UInt8] { [0x72] + withUnsafeBytes(of: UInt32(i).littleEndian, Array.init) }
        func get(_ i: Int) -> [UInt8] { [0x6A] + withUnsafeBytes(of: UInt32(i).littleEndian, Array.init) }
        for i in 0..<n { p += [0x5D] + put(i) + [0x30] }  // EMPTY_LIST, LONG_BINPUT i, POP
        for i in 0..<(n - 1) { p += get(i) + get(i + 1) + [0x61, 0x30] }  // list i .append(list i+1)
        p += get(0) + [0x2E]
        assertThrows(try load(p), mentioning: ["changed after it was used"])
    }

    func testSelfContainingListIsRefused() {
        // EMPTY_LIST, BINPUT 0, BINGET 0, APPEND, STOP: the pickle of `l = []; l.append(l)`.
        assertThrows(try load([0x80, 2, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E]), mentioning: ["changed after it was used"])
        assertThrows(try load([0x80, 2, 0x7D, 0x71, 0, 0x4B, 1, 0x68, 0, 0x73, 0x2E]), mentioning: ["changed after it was used"])
    }

    /// Every byte of the archive's tail (central directory and end records) replaced by three other values: each
    /// file loads or throws.
    func testDamagedDirectoryLoadsOrThrows() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let data = try Data(contentsOf: Fixture.url("ckpt/fp32.ckpt"))
        let url = dir.appendingPathComponent("m.ckpt")
        var refused = 0, loaded = 0
        for at in max(0, data.count - 500)..<data.count {
            for value: UInt8 in [0x00, 0xFF, data[at] ^ 0x10] {
                var copy = data
                copy[at] = value
                try copy.write(to: url)
                do {
                    let c = try TorchCheckpoint(path: url.path)
                    for info in c.tensors.values { _ = try? c.load(info) }
                    loaded += 1
                } catch is WeightError { refused += 1 }
            }
        }
        XCTAssertGreaterThan(refused, 100)
        XCTAssertGreaterThan(loaded, 10)
    }
}
