import Foundation

/// One entry of a zip archive whose bytes can be read in place (stored, not compressed).
public struct ZipEntry: Sendable, Equatable {
    public let name: String
    /// Compression method: 0 stored, 8 deflate; only stored entries can be read.
    public let method: UInt16
    /// Byte range of the entry's data inside the archive file (validated to lie inside it).
    public let dataRange: Range<Int>
    public let uncompressedSize: Int
}

/// The central directory of a memory-mapped zip archive, as torch.save (1.6+) writes it: entries STORED and
/// 64-byte aligned, ZIP64 records past 4 GiB. Entries are never decompressed; a deflated entry is reported, and
/// refused when read, since torch never writes one (a re-zipped checkpoint would need an inflater here).
final class ZipArchive: @unchecked Sendable {
    let path: String
    let file: MappedFile
    let entries: [String: ZipEntry]
    /// Entry names in directory order (the archive's folder name is the first component of each).
    let names: [String]

    /// More entries than any checkpoint has: a directory claiming more is damaged or hostile.
    static let maxEntries = 1_000_000

    init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let reader = ByteReader(base: file.base, count: file.size, path: path)
        let (count, directory) = try ZipArchive.centralDirectory(reader)
        var entries: [String: ZipEntry] = [:]
        var names: [String] = []
        var at = directory.lowerBound
        for index in 0..<count {
            let where_ = "central directory entry \(index)"
            guard try reader.u32(at, where_) == 0x0201_4b50 else { throw reader.error("\(where_) at byte \(at) has a bad signature") }
            let flags = try reader.u16(at + 8, where_), method = try reader.u16(at + 10, where_)
            var compressed = Int(try reader.u32(at + 20, where_)), uncompressed = Int(try reader.u32(at + 24, where_))
            let nameLength = Int(try reader.u16(at + 28, where_)), extraLength = Int(try reader.u16(at + 30, where_))
            let commentLength = Int(try reader.u16(at + 32, where_))
            var local = Int(try reader.u32(at + 42, where_))
            let nameBytes = try reader.bytes(at + 46, nameLength, where_)
            guard let name = copiedUTF8(nameBytes) else { throw reader.error("\(where_) has a name that is not UTF-8") }
            // ZIP64: sizes and offsets that do not fit 32 bits are 0xFFFFFFFF here and 64-bit in extra field 1.
            var extra = at + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = try reader.u16(extra, where_), size = Int(try reader.u16(extra + 2, where_))
                if id == 1 {
                    var field = extra + 4
                    for slot in [0, 1, 2] {
                        let wide = slot == 0 ? uncompressed : slot == 1 ? compressed : local
                        guard wide == 0xFFFF_FFFF else { continue }
                        guard field + 8 <= extra + 4 + size else { throw reader.error("\(where_) ('\(name)') has a short ZIP64 field") }
                        let value = try reader.u64(field, where_)
                        guard value < UInt64(Int.max / 2) else { throw reader.error("\(where_) ('\(name)') has an absurd ZIP64 value \(value)") }
                        if slot == 0 { uncompressed = Int(value) } else if slot == 1 { compressed = Int(value) } else { local = Int(value) }
                        field += 8
                    }
                }
                extra += 4 + size
            }
            guard flags & 1 == 0 else { throw reader.error("entry '\(name)' is encrypted") }
            // The local header repeats the name and has its own extra field (torch's alignment padding).
            let localWhere = "local header of '\(name)'"
            guard try reader.u32(local, localWhere) == 0x0403_4b50 else {
                throw reader.error("\(localWhere) at byte \(local) has a bad signature")
            }
            let start = local + 30 + Int(try reader.u16(local + 26, localWhere)) + Int(try reader.u16(local + 28, localWhere))
            guard compressed >= 0, start <= file.size, compressed <= file.size - start else {
                throw reader.error("entry '\(name)' claims \(compressed) bytes at byte \(start), past the end of the file (\(file.size) bytes); the file may be truncated")
            }
            guard method != 0 || compressed == uncompressed else {
                throw reader.error("stored entry '\(name)' has compressed size \(compressed) but uncompressed size \(uncompressed)")
            }
            if entries[name] == nil { names.append(name) }
            entries[name] = ZipEntry(name: name, method: method, dataRange: start..<(start + compressed), uncompressedSize: uncompressed)
            at += 46 + nameLength + extraLength + commentLength
        }
        self.entries = entries
        self.names = names
    }

    /// The entry's bytes, in place. Throws for a missing or compressed entry.
    func data(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let entry = entries[name] else { throw WeightError.badCheckpoint(path: path, reason: "no entry '\(name)' in the archive") }
        guard entry.method == 0 else {
            throw WeightError.badCheckpoint(path: path, reason: "entry '\(name)' is compressed (zip method \(entry.method)); only stored entries are read. torch.save writes them stored: re-save the checkpoint with torch.save rather than re-zipping it")
        }
        return UnsafeRawBufferPointer(start: file.base + entry.dataRange.lowerBound, count: entry.dataRange.count)
    }

    /// The entry count and byte range of the central directory, from the end records (ZIP64 when present).
    private static func centralDirectory(_ r: ByteReader) throws -> (Int, Range<Int>) {
        guard r.count >= 22 else { throw r.error("file is \(r.count) bytes, too short for a zip archive") }
        // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
        var eocd = -1
        var at = r.count - 22
        while at >= max(0, r.count - 22 - 65535) {
            if try r.u32(at, "end record") == 0x0605_4b50 { eocd = at; break }
            at -= 1
        }
        guard eocd >= 0 else { throw r.error("no zip end-of-directory record (not a zip archive, or truncated)") }
        var count = Int(try r.u16(eocd + 10, "end record"))
        var size = Int(try r.u32(eocd + 12, "end record")), offset = Int(try r.u32(eocd + 16, "end record"))
        if eocd >= 20, try r.u32(eocd - 20, "ZIP64 locator") == 0x0706_4b50 {
            let record = try r.u64(eocd - 20 + 8, "ZIP64 locator")
            guard record < UInt64(r.count) else { throw r.error("ZIP64 end record offset \(record) is past the end of the file") }
            let z = Int(record)
            guard try r.u32(z, "ZIP64 end record") == 0x0606_4b50 else { throw r.error("ZIP64 end record at byte \(z) has a bad signature") }
            let c = try r.u64(z + 32, "ZIP64 end record"), s = try r.u64(z + 40, "ZIP64 end record"), o = try r.u64(z + 48, "ZIP64 end record")
            guard c <= UInt64(maxEntries), s < UInt64(r.count), o < UInt64(r.count) else {
                throw r.error("ZIP64 end record claims \(c) entries, \(s) bytes at \(o): past the file's \(r.count) bytes")
            }
            (count, size, offset) = (Int(c), Int(s), Int(o))
        }
        guard count <= maxEntries else { throw r.error("the directory claims \(count) entries (at most \(maxEntries) are read)") }
        guard offset <= r.count, size <= r.count - offset else {
            throw r.error("the central directory (\(size) bytes at byte \(offset)) runs past the end of the file (\(r.count) bytes); the file may be truncated")
        }
        return (count, offset..<(offset + size))
    }
}

/// Bounds-checked little-endian reads from a mapping; every read past the end is an error naming what was read.
struct ByteReader {
    let base: UnsafeRawPointer
    let count: Int
    let path: String

    func error(_ reason: String) -> WeightError { .badCheckpoint(path: path, reason: reason) }

    private func check(_ at: Int, _ n: Int, _ what: String) throws {
        guard at >= 0, n >= 0, at <= count, n <= count - at else {
            throw error("\(what): \(n) bytes at byte \(at) run past the end of the file (\(count) bytes); the file may be truncated")
        }
    }

    func u16(_ at: Int, _ what: String) throws -> UInt16 {
        try check(at, 2, what); return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }

    func u32(_ at: Int, _ what: String) throws -> UInt32 {
        try check(at, 4, what); return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }

    func u64(_ at: Int, _ what: String) throws -> UInt64 {
        try check(at, 8, what); return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }

    func bytes(_ at: Int, _ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        try check(at, n, what); return UnsafeRawBufferPointer(start: base + at, count: n)
    }
}

/// The bytes as a String that owns a copy, or nil when they are not UTF-8. (Foundation's `String(bytes:encoding:)`
/// may keep pointing at the bytes, which here are a mapping that can be unmapped before the string dies.)
func copiedUTF8(_ bytes: UnsafeRawBufferPointer) -> String? {
    String(validating: Array(bytes), as: UTF8.self)
}
