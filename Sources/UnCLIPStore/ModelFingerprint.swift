import Foundation

/// A model folder's identity for the caches: sha256 over every config/tokenizer file (.json, .txt) and,
/// for each .safetensors file, its header (names, dtypes, shapes, offsets), its size and 64 samples of
/// 4 KiB spread evenly over the tensor data. Headers alone would make two fine-tunes of one architecture
/// look the same; the samples tell them apart while reading about 256 KiB per file, not gigabytes.
public enum ModelFingerprint {
    static let samples = 64
    static let sampleBytes = 4096

    /// The fingerprint of one or more folders (e.g. a decoder and a separate prior), in order.
    public static func of(_ folders: [URL]) throws -> String {
        var h = SHA256()
        for folder in folders {
            h.update("folder\n")
            for relative in try files(in: folder) {
                let url = folder.appendingPathComponent(relative)
                h.update("file \(relative)\n")
                if relative.hasSuffix(".safetensors") {
                    try hashSafetensors(url, into: &h)
                } else {
                    guard let data = FileManager.default.contents(atPath: url.path) else {
                        throw StoreError.cannotOpen(path: url.path, reason: "cannot read this model file to fingerprint the model")
                    }
                    h.update(data)
                }
            }
        }
        return h.hexDigest()
    }

    /// Relevant files under `folder`, as sorted relative paths (hidden files and other formats skipped).
    static func files(in folder: URL) throws -> [String] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
            throw StoreError.cannotOpen(path: folder.path, reason: "no such model folder")
        }
        guard let walker = fm.enumerator(atPath: folder.path) else {
            throw StoreError.cannotOpen(path: folder.path, reason: "cannot list the model folder")
        }
        var out: [String] = []
        while let relative = walker.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            if name.hasPrefix(".") { continue }
            if name.hasSuffix(".json") || name.hasSuffix(".txt") || name.hasSuffix(".safetensors") { out.append(relative) }
        }
        return out.sorted()
    }

    private static func hashSafetensors(_ url: URL, into h: inout SHA256) throws {
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw StoreError.cannotOpen(path: url.path, reason: "cannot read this weight file to fingerprint the model")
        }
        defer { try? handle.close() }
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
        h.update("size \(size)\n")
        let prefix = try handle.read(upToCount: 8) ?? Data()
        guard prefix.count == 8 else { h.update(prefix); return }
        let headerLength = prefix.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard headerLength <= size - 8 else { h.update(prefix); return }  // the weight loader reports the damage
        h.update(prefix)
        h.update(try handle.read(upToCount: headerLength) ?? Data())
        let dataStart = 8 + headerLength, dataLength = size - dataStart
        guard dataLength > 0 else { return }
        if dataLength <= samples * sampleBytes {
            try handle.seek(toOffset: UInt64(dataStart))
            h.update(try handle.readToEnd() ?? Data())
            return
        }
        let stride = (dataLength - sampleBytes) / (samples - 1)
        for i in 0..<samples {
            try handle.seek(toOffset: UInt64(dataStart + i * stride))
            h.update(try handle.read(upToCount: sampleBytes) ?? Data())
        }
    }
}
