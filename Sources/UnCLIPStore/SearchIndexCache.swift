import Foundation
import UnCLIPTensor

/// Search indexes kept in memory between queries, as a server keeps them: a store of a million generations takes
/// seconds to read, a query over the loaded half-precision matrix milliseconds.
///
/// Kept current without notifications, so it works the same for every backend and for writers in other
/// processes or on other machines: each query first reads the generations recorded since the last one (an
/// indexed id range) into a small extra index. Ids are given out before commit, so a transaction may commit after
/// one with a larger id; the catch-up re-reads a margin of ids below the last one seen and skips those already in.
/// Removed generations drop out when the query re-scores its candidates from the store. When the extra indexes
/// grow past a tenth of the base, the whole index is read again.
public final class SearchIndexCache: @unchecked Sendable {
    struct Key: Hashable {
        let dim: Int
        let ranking: SearchRanking
        let kinds: [GenerationKind]?
        let modelID: Int64?
    }

    final class Entry {
        var parts: [SearchIndex]
        var ids: Set<Int64>
        var lastID: Int64
        var baseCount: Int
        init(_ base: SearchIndex) {
            parts = [base]; ids = Set(base.ids); lastID = base.ids.max() ?? 0; baseCount = base.count
        }
    }

    /// Ids below the highest seen that a catch-up reads again (transactions that committed out of id order).
    let reorderMargin: Int64 = 256
    private let lock = NSLock()
    private var entries: [Key: Entry] = [:]

    public init() {}

    /// The indexes that together cover every generation matching `filter` (its `dim` set) now. Filters the cache
    /// does not keep (by date, parent, star or id range) are read afresh.
    public func indexes(for filter: GenerationFilter, ranking: SearchRanking, in source: any EmbeddingSource) throws -> [SearchIndex] {
        guard let dim = filter.dim, filter.since == nil, filter.parent == nil, filter.starred == nil, filter.beforeID == nil,
              filter.afterID == nil else {
            return [try SearchIndex.load(from: source, filter: filter, ranking: ranking)]
        }
        let key = Key(dim: dim, ranking: ranking, kinds: filter.kinds?.sorted { $0.rawValue < $1.rawValue }, modelID: filter.modelID)
        return try lock.withLock {
            guard let entry = entries[key] else {
                let entry = Entry(try SearchIndex.load(from: source, filter: filter, ranking: ranking))
                entries[key] = entry
                return entry.parts
            }
            var since = filter
            since.afterID = max(0, entry.lastID - reorderMargin)
            let delta = try SearchIndex.load(from: source, filter: since, ranking: ranking)
            let fresh = delta.ids.filter { !entry.ids.contains($0) }
            if !fresh.isEmpty {
                entry.parts.append(delta)  // rows already held score the same twice; hits are merged by id
                entry.ids.formUnion(fresh)
                entry.lastID = max(entry.lastID, fresh.max()!)
            }
            if entry.parts.count > 64 || entry.ids.count - entry.baseCount > max(1000, entry.baseCount / 10) {
                entries[key] = Entry(try SearchIndex.load(from: source, filter: filter, ranking: ranking))
            }
            return entries[key]!.parts
        }
    }

    /// Forgets every index (the next query reads the store again).
    public func removeAll() { lock.withLock { entries.removeAll() } }
}
