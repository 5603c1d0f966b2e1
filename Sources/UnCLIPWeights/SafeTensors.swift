import CKernels
import Foundation
import UnCLIPTensor

/// Element types a safetensors header may declare.
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL
    case F8_E4M3, F8_E5M2

    public var byteSize: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .I8, .U8, .BOOL, .F8_E4M3, .F8_E5M2: return 1
        }
    }
}

/// One entry of a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range inside the data section (after the header).
    public let dataRange: Range<Int>
}

/// A read-only memory mapping, unmapped when the last tensor borrowing it goes away.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let size: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw WeightError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw WeightError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        size = Int(st.st_size)
        guard size > 0 else { throw WeightError.badHeader(path: path, reason: "file is empty") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw WeightError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }
}

/// A file of named tensors a `WeightMap` can look weights up in: safetensors, or a torch zip checkpoint.
public protocol WeightSource: AnyObject, Sendable {
    var path: String { get }
    var tensors: [String: TensorInfo] { get }
    /// The tensor `info` (one of `tensors`) as Float32.
    func load(_ info: TensorInfo) throws -> Tensor
}

/// `count` elements of `dtype` at `src` as a Float32 tensor of `shape`: f32 data is borrowed from the mapping
/// `owner` when aligned, f16/bf16/f64 are converted; integer types are refused, naming `name` in `path`.
func decodeFloats(_ src: UnsafeRawPointer, dtype: SafeTensorsDType, shape: [Int], owner: AnyObject, name: String, path: String) throws -> Tensor {
    let n = shape.reduce(1, *)
    switch dtype {
    case .F32:
        if Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
            return Tensor(shape: shape, storage: TensorStorage(borrowing: src.assumingMemoryBound(to: Float.self), count: n, owner: owner))
        }
        let t = Tensor(uninitialized: shape)
        UnsafeMutableRawPointer(t.pointer).copyMemory(from: src, byteCount: n * 4)
        return t
    case .F16, .BF16:
        let t = Tensor(uninitialized: shape)
        if Int(bitPattern: src) % 2 == 0 {
            let p = src.assumingMemoryBound(to: UInt16.self), dst = t.pointer, half = dtype == .F16
            // Large tensors convert on all cores (the page faults of the mapping dominate otherwise).
            parallelChunks(n, minimumPerChunk: 1 << 20) { r in
                half ? uc_f16_to_f32(p + r.lowerBound, dst + r.lowerBound, r.count)
                     : uc_bf16_to_f32(p + r.lowerBound, dst + r.lowerBound, r.count)
            }
        } else {
            let tmp = [UInt16](unsafeUninitializedCapacity: n) { buf, c in
                UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: src, byteCount: n * 2); c = n
            }
            dtype == .F16 ? uc_f16_to_f32(tmp, t.pointer, n) : uc_bf16_to_f32(tmp, t.pointer, n)
        }
        return t
    case .F64:
        let t = Tensor(uninitialized: shape)
        for i in 0..<n { t.pointer[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
        return t
    default:
        throw WeightError.unsupportedDType(name: name, file: path, dtype: dtype.rawValue)
    }
}

/// A validated safetensors header: the tensor table and metadata read from the first 8 + N bytes of a file.
///
/// Everything a header declares sizes something, so each is checked before it is used: the header length
/// (at most `maxHeaderBytes`, the reference implementation's cap), the number of entries (`maxTensors`),
/// each tensor's byte size (computed without overflow) and its range inside the data section.
public struct SafeTensorsHeader: Sendable {
    /// The reference implementation (safetensors' `MAX_HEADER_SIZE`) refuses headers over 100 MB.
    public static let maxHeaderBytes = 100_000_000
    /// Far above any real checkpoint file (an SDXL UNet has about 1,700 tensors); a header with more is refused
    /// before the tensor table is built.
    public static let maxTensors = 65_536

    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    /// Where the data section starts, from the start of the file.
    public let dataStart: Int

    /// Parses the header of `file` (the whole file's bytes); `path` names the file in errors.
    public init(file: UnsafeRawBufferPointer, path: String) throws {
        func bad(_ reason: String) -> WeightError { .badHeader(path: path, reason: reason) }
        guard file.count >= 8, let base = file.baseAddress else {
            throw bad("file is \(file.count) bytes, shorter than the 8-byte header length")
        }
        let headerLength = base.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(file.count - 8) else {
            throw bad("header length \(headerLength) runs past the end of the file (\(file.count) bytes)")
        }
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw bad("header length \(headerLength) is over the \(Self.maxHeaderBytes)-byte limit")
        }
        dataStart = 8 + Int(headerLength)
        let headerBytes = Data(bytes: base + 8, count: Int(headerLength))
        guard let json = try? JSONSerialization.jsonObject(with: headerBytes), let dict = json as? [String: Any] else {
            throw bad("header is not a JSON object")
        }
        let tensorCount = dict.count - (dict["__metadata__"] == nil ? 0 : 1)
        guard tensorCount <= Self.maxTensors else {
            throw bad("header lists \(tensorCount) tensors; at most \(Self.maxTensors) are accepted")
        }
        let dataSize = file.count - dataStart
        var infos: [String: TensorInfo] = [:]
        var meta: [String: String] = [:]
        for (name, value) in dict {
            if name == "__metadata__" {
                meta = (value as? [String: String]) ?? [:]
                continue
            }
            guard let entry = value as? [String: Any] else { throw bad("entry '\(name)' is not an object") }
            guard let dtypeName = entry["dtype"] as? String else { throw bad("tensor '\(name)' has no dtype") }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw bad("tensor '\(name)' has unknown dtype '\(dtypeName)'")
            }
            guard let shape = (entry["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  shape.count == (entry["shape"] as? [Any])?.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw bad("tensor '\(name)' has an invalid shape")
            }
            guard let offsets = (entry["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }), offsets.count == 2,
                  offsets[0] >= 0, offsets[0] <= offsets[1] else {
                throw bad("tensor '\(name)' has invalid data_offsets")
            }
            guard offsets[1] <= dataSize else {
                throw bad("tensor '\(name)' data [\(offsets[0]), \(offsets[1])) runs past the end of the data section (\(dataSize) bytes); the file may be truncated")
            }
            // The product of the dimensions can overflow Int for a hostile shape: such a tensor cannot fit in the
            // data section, so say so rather than trap.
            guard let expected = Self.byteCount(shape: shape, elementSize: dtype.byteSize) else {
                throw bad("tensor '\(name)' has shape \(shape), too large for any file")
            }
            guard offsets[1] - offsets[0] == expected else {
                throw bad("tensor '\(name)' holds \(offsets[1] - offsets[0]) bytes but shape \(shape) of \(dtypeName) needs \(expected)")
            }
            infos[name] = TensorInfo(name: name, dtype: dtype, shape: shape, dataRange: offsets[0]..<offsets[1])
        }
        let sorted = infos.values.filter { !$0.dataRange.isEmpty }.sorted { $0.dataRange.lowerBound < $1.dataRange.lowerBound }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.dataRange.lowerBound < a.dataRange.upperBound {
            throw bad("tensors '\(a.name)' and '\(b.name)' overlap")
        }
        tensors = infos
        metadata = meta
    }

    /// The product of `shape` times `elementSize`, or nil when it overflows Int.
    static func byteCount(shape: [Int], elementSize: Int) -> Int? {
        var total = elementSize
        for d in shape {
            let (product, overflow) = total.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            total = product
        }
        return total
    }
}

/// A memory-mapped `.safetensors` file with a validated header.
public final class SafeTensorsFile: WeightSource, @unchecked Sendable {
    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let file: MappedFile
    private let dataStart: Int

    public init(path: String) throws {
        file = try MappedFile(path: path)
        self.path = path
        let header = try SafeTensorsHeader(file: UnsafeRawBufferPointer(start: file.base, count: file.size), path: path)
        tensors = header.tensors
        metadata = header.metadata
        dataStart = header.dataStart
    }

    /// The tensor as Float32: f32 data is borrowed from the mapping when aligned, others are converted.
    public func tensor(_ name: String) throws -> Tensor {
        guard let info = tensors[name] else { throw WeightError.missingTensor(name: name, files: [path], expectedShape: []) }
        return try load(info)
    }

    public func load(_ info: TensorInfo) throws -> Tensor {
        try decodeFloats(file.base + dataStart + info.dataRange.lowerBound, dtype: info.dtype, shape: info.shape, owner: file,
                         name: info.name, path: path)
    }

    /// Integer tensors (token ids, masks) as Int.
    public func integers(_ name: String) throws -> [Int] {
        guard let info = tensors[name] else { throw WeightError.missingTensor(name: name, files: [path], expectedShape: []) }
        let src = file.base + dataStart + info.dataRange.lowerBound
        let n = info.shape.reduce(1, *)
        switch info.dtype {
        case .I64: return (0..<n).map { Int(src.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        case .I32: return (0..<n).map { Int(src.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        case .U8, .BOOL: return (0..<n).map { Int(src.load(fromByteOffset: $0, as: UInt8.self)) }
        default:
            // Float data where integers are expected, truncated as Int(x) does; but Int(x) stops the process on NaN,
            // infinity or a value past Int's range (found by fuzz/run.sh safetensors: fuzz/corpus/safetensors/nan-as-integers).
            return try tensor(name).scalars.enumerated().map { i, x in
                guard x.isFinite, let value = Int(exactly: x.rounded(.towardZero)) else {
                    throw WeightError.badHeader(path: path, reason: "tensor '\(name)' holds \(x) at index \(i) where an integer is expected")
                }
                return value
            }
        }
    }
}

/// Writes tensors as a safetensors file, atomically (temp file, then rename).
public enum SafeTensorsWriter {
    public enum Payload {
        case float32(Tensor)
        case int64([Int], shape: [Int])
    }

    public static func write(_ entries: [(String, Payload)], metadata: [String: String] = [:], to url: URL) throws {
        var blobs: [Data] = []
        var layout: [(String, String, [Int], Int)] = []
        for (name, payload) in entries {
            switch payload {
            case let .float32(t):
                blobs.append(Data(bytes: t.pointer, count: t.count * 4)); layout.append((name, "F32", t.shape, t.count * 4))
            case let .int64(values, s):
                blobs.append(values.map { Int64($0).littleEndian }.withUnsafeBytes { Data($0) }); layout.append((name, "I64", s, values.count * 8))
            }
        }
        var out = try header(layout, metadata: metadata)
        for b in blobs { out.append(b) }
        try AtomicFile.write(out, to: url)
    }

    /// Writes float32 tensors one at a time, for files larger than memory should hold twice: the header comes from
    /// `shapes`, then `tensor(i)` is asked for each in order, written, and let go. Atomic as `write`.
    public static func writeStreaming(names: [String], shapes: [[Int]], metadata: [String: String] = [:], to url: URL,
                                      tensor: (Int) throws -> Tensor) throws {
        let head = try header(zip(names, shapes).map { ($0, "F32", $1, $1.reduce(1, *) * 4) }, metadata: metadata)
        try AtomicFile.write(to: url) { handle in
            try handle.write(contentsOf: head)
            for i in names.indices {
                let t = try tensor(i)
                guard t.shape == shapes[i] else {
                    throw WeightError.shapeMismatch(name: names[i], file: url.path, expected: shapes[i], found: t.shape)
                }
                try handle.write(contentsOf: UnsafeRawBufferPointer(start: t.pointer, count: t.count * 4))
            }
        }
    }

    /// The 8-byte length and JSON header of (name, dtype, shape, byte count) entries laid out in order.
    static func header(_ entries: [(String, String, [Int], Int)], metadata: [String: String]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, dtype, shape, bytes) in entries {
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        return out
    }
}

/// Write-to-temp-then-rename, so readers never see a half-written file.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        let tmp = temporary(for: url)
        do { try data.write(to: tmp) } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw WeightError.cannotOpen(path: url.path, reason: error.localizedDescription)
        }
        try commit(tmp, to: url)
    }

    /// Writes through `body` into a temporary file beside `url`, then renames it into place (removed on error):
    /// for files written piece by piece.
    public static func write(to url: URL, _ body: (FileHandle) throws -> Void) throws {
        let tmp = temporary(for: url)
        do {
            guard FileManager.default.createFile(atPath: tmp.path, contents: nil), let handle = FileHandle(forWritingAtPath: tmp.path) else {
                throw WeightError.cannotOpen(path: tmp.path, reason: String(cString: strerror(errno)))
            }
            defer { try? handle.close() }
            try body(handle)
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw (error as? WeightError) ?? WeightError.cannotOpen(path: url.path, reason: error.localizedDescription)
        }
        try commit(tmp, to: url)
    }

    static func temporary(for url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    }

    static func commit(_ tmp: URL, to url: URL) throws {
        guard rename(tmp.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw WeightError.cannotOpen(path: url.path, reason: "rename failed: \(reason)")
        }
    }
}
