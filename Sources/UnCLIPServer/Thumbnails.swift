import Foundation
import UnCLIPImage
import UnCLIPService
import UnCLIPStore

/// Thumbnails made on first request and kept in memory (least recently used out first): a gallery asks for
/// the same ones again and again, and resizing a 768² PNG costs far more than serving bytes.
final class ThumbnailCache: @unchecked Sendable {
    private struct Key: Hashable { let id: Int64; let size: Int }
    private let lock = NSLock()
    private var entries: [Key: (data: Data, used: UInt64)] = [:]
    private var clock: UInt64 = 0
    private var bytes = 0
    let maxBytes: Int

    init(maxBytes: Int = 64 << 20) { self.maxBytes = maxBytes }

    /// A PNG whose longer side is at most `size` (the image itself when it is already that small).
    func thumbnail(of g: StoredGeneration, size: Int, store: any GenerationStore) throws -> Data {
        if max(g.width, g.height) <= size { return try store.imageData(g.id) }
        let key = Key(id: g.id, size: size)
        if let hit = lock.withLock({ () -> Data? in
            clock += 1
            entries[key]?.used = clock
            return entries[key]?.data
        }) { return hit }
        let image = try ImageFile.decode(try store.imageData(g.id), source: "generation \(g.id)")
        let scale = Double(size) / Double(max(image.width, image.height))
        let w = max(1, Int((Double(image.width) * scale).rounded())), h = max(1, Int((Double(image.height) * scale).rounded()))
        let data = try pngData(image.resized(width: w, height: h, filter: .bicubic), parameters: nil)
        lock.withLock {
            clock += 1
            if entries.updateValue((data, clock), forKey: key) == nil { bytes += data.count }
            while bytes > maxBytes, let oldest = entries.min(by: { $0.value.used < $1.value.used }) {
                bytes -= oldest.value.data.count
                entries.removeValue(forKey: oldest.key)
            }
        }
        return data
    }

    func forget(_ id: Int64) {
        lock.withLock {
            for key in entries.keys where key.id == id { bytes -= entries.removeValue(forKey: key)?.data.count ?? 0 }
        }
    }
}
