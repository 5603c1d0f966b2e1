import Foundation
import UnCLIPTensor

/// A torch zip checkpoint (`torch.save` since 1.6: `.ckpt`, `.pt`, `.pth`, transformers' `pytorch_model.bin`),
/// read without executing anything: the archive's `data.pkl` goes through `Unpickler`, which accepts only what
/// a tensor state dict needs, and each tensor is a checked view of a stored `data/<key>` entry, memory-mapped.
///
/// `tensors` holds the state dict: the top-level `state_dict` entry when it is a dict (Lightning / original
/// Stable Diffusion checkpoints: `{"state_dict": …, "global_step": …}`), else the top-level dict itself.
/// Entries that are not tensors (step counts, callbacks) are kept in `root` only.
public final class TorchCheckpoint: WeightSource, @unchecked Sendable {
    /// The first pickle of a pre-1.6 torch file: PROTO 2, then torch's magic number 0x1950a86a20f9469cfc6c as LONG1.
    static let legacyMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
    static let zipMagic: [UInt8] = [0x50, 0x4B, 0x03, 0x04]

    public let path: String
    public let tensors: [String: TensorInfo]
    /// The whole unpickled object, for the non-tensor entries (`global_step`, `epoch`).
    public let root: PickleValue
    /// The archive's folder name (`archive` for torch ≥ 1.6 by default; the file's stem in older versions).
    public let archiveName: String
    private let layouts: [String: PickleTensor]
    private let archive: ZipArchive

    public init(path: String, limits: Unpickler.Limits = Unpickler.Limits()) throws {
        self.path = path
        // Before 1.6, torch.save wrote pickles back to back, not a zip: say so rather than "not a zip".
        if fileStarts(path, with: TorchCheckpoint.legacyMagic) {
            throw WeightError.badCheckpoint(path: path, reason: "a legacy (pre-1.6, not zip) torch file; load and re-save it with torch ≥ 1.6, or convert it to safetensors")
        }
        archive = try ZipArchive(path: path)
        // The pickle is `<folder>/data.pkl`; the folder's name is whatever the writer chose.
        let pickles = archive.names.filter { $0.hasSuffix("/data.pkl") && $0.split(separator: "/").count == 2 }
        guard pickles.count == 1, let pickleName = pickles.first else {
            throw WeightError.badCheckpoint(path: path, reason: pickles.isEmpty
                ? "no <folder>/data.pkl entry: not a torch.save checkpoint"
                : "several data.pkl entries (\(pickles.joined(separator: ", ")))")
        }
        let prefix = String(pickleName.dropLast("/data.pkl".count))
        archiveName = prefix
        if archive.entries["\(prefix)/byteorder"] != nil {
            let order = String(decoding: try archive.data("\(prefix)/byteorder"), as: UTF8.self)
            guard order == "little" else { throw WeightError.badCheckpoint(path: path, reason: "byte order '\(order)' (only little-endian is read)") }
        }
        var unpickler = Unpickler(path: path, limits: limits)
        root = try unpickler.load(try archive.data(pickleName))

        guard let top = root.dict else { throw WeightError.badCheckpoint(path: path, reason: "the pickle holds \(root), not a dict of tensors") }
        let stateDict = top["state_dict"]?.dict ?? top
        var infos: [String: TensorInfo] = [:], layouts: [String: PickleTensor] = [:]
        for (key, value) in stateDict.entries {
            guard case let .string(name) = key, case let .tensor(t) = value else { continue }
            let entryName = "\(prefix)/data/\(t.storage.key)"
            guard let entry = archive.entries[entryName] else {
                throw WeightError.badCheckpoint(path: path, reason: "tensor '\(name)' uses storage '\(t.storage.key)', but the archive has no \(entryName)")
            }
            let itemSize = t.storage.dtype.byteSize
            let (needed, overflow) = t.storage.count.multipliedReportingOverflow(by: itemSize)
            guard !overflow, needed <= entry.dataRange.count else {
                throw WeightError.badCheckpoint(path: path, reason: "storage '\(t.storage.key)' of tensor '\(name)' claims \(t.storage.count) elements of \(itemSize) bytes but \(entryName) holds \(entry.dataRange.count) bytes")
            }
            // Unpickler checked the view lies inside the storage's count; the count was just checked against the entry.
            let span = t.count == 0 ? 0 : zip(t.shape, t.strides).reduce(1) { $0 + ($1.0 - 1) * $1.1 }
            let start = entry.dataRange.lowerBound + t.offset * itemSize
            infos[name] = TensorInfo(name: name, dtype: t.storage.dtype, shape: t.shape, dataRange: start..<(start + span * itemSize))
            layouts[name] = t
        }
        tensors = infos
        self.layouts = layouts
    }

    /// The integer (or float) value of a top-level entry such as `global_step`, when it is a plain number.
    public func number(_ key: String) -> Double? {
        switch root.dict?[key] {
        case let .int(i)?: return Double(i)
        case let .float(f)?: return f
        default: return nil
        }
    }

    public func load(_ info: TensorInfo) throws -> Tensor {
        guard let layout = layouts[info.name] else { throw WeightError.missingTensor(name: info.name, files: [path], expectedShape: info.shape) }
        let src = archive.file.base + info.dataRange.lowerBound
        if layout.isContiguous {
            return try decodeFloats(src, dtype: info.dtype, shape: info.shape, owner: archive.file, name: info.name, path: path)
        }
        // A strided view (a transposed or sliced weight): decode the span it touches, then gather.
        let span = try decodeFloats(src, dtype: info.dtype, shape: [info.dataRange.count / info.dtype.byteSize], owner: archive.file,
                                    name: info.name, path: path)
        let out = Tensor(uninitialized: info.shape)
        var index = [Int](repeating: 0, count: info.shape.count)
        for i in 0..<out.count {
            var at = 0
            for d in 0..<index.count { at += index[d] * layout.strides[d] }
            out.pointer[i] = span.pointer[at]
            var d = index.count - 1
            while d >= 0 { index[d] += 1; if index[d] < info.shape[d] { break }; index[d] = 0; d -= 1 }
        }
        return out
    }
}

/// Opens a weight file by its first bytes: a zip (`PK\u{3}\u{4}`) or a legacy torch pickle is a torch checkpoint, anything else is read as
/// safetensors (whose own checks then word the error). Legacy torch pickles (before 1.6) are refused by `TorchCheckpoint`.
public func openWeightFile(_ path: String) throws -> any WeightSource {
    if fileStarts(path, with: TorchCheckpoint.zipMagic) || fileStarts(path, with: TorchCheckpoint.legacyMagic) {
        return try TorchCheckpoint(path: path)
    }
    return try SafeTensorsFile(path: path)
}

/// Whether the file's first bytes are `magic` (false when it cannot be read: the reader that opens it says why).
func fileStarts(_ path: String, with magic: [UInt8]) -> Bool {
    guard let handle = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? handle.close() }
    return [UInt8]((try? handle.read(upToCount: magic.count)) ?? Data()) == magic
}
