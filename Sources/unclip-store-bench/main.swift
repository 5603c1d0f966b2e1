// Search benchmark (not a test): fills stores with random embeddings, then measures how long loading the
// search matrix takes and how long one brute-force query (sgemv + top-k) takes.
// Usage: swift run -c release unclip-store-bench [--sizes 100000,1000000] [--dim 768] [--queries 50] [--dir DIR] [--keep] [--reuse]
//        [--postgres postgres://user@host:port/db]   (fills that empty database instead of SQLite files; with
//        pgvector installed there, its HNSW search is measured too: build time, latency, recall@10)
//        [--clusters N]   (embeddings bunched around N centres, as real ones bunch by subject)
import CBLAS
import Foundation
import UnCLIPStore
@_spi(Tools) import UnCLIPStoreSQLite
@_spi(Tools) import UnCLIPStorePostgres

let args = CommandLine.arguments
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
let sizes = (option("--sizes") ?? "100000,1000000").split(separator: ",").compactMap { Int($0) }
let dim = Int(option("--dim") ?? "768") ?? 768
let queries = Int(option("--queries") ?? "50") ?? 50
let keep = args.contains("--keep")
/// Reuse stores left by an earlier --keep run instead of filling new ones.
let reuse = args.contains("--reuse")
let folder = URL(fileURLWithPath: option("--dir") ?? FileManager.default.temporaryDirectory.appendingPathComponent("unclip-store-bench-\(getpid())").path)
try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)

func seconds(_ start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

var state: UInt64 = 0x9E37_79B9_7F4A_7C15
/// Roughly Gaussian values (sum of uniforms), so cosine scores spread as for real embeddings.
func randomVector(_ n: Int) -> [Float] {
    (0..<n).map { _ in
        var s: Float = 0
        for _ in 0..<4 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            s += Float(state >> 40) / Float(1 << 24) - 0.5
        }
        return s
    }
}

/// `--clusters N`: rows and queries drawn around N random centres (each a centre plus noise of half its size), the
/// way real CLIP embeddings bunch by subject; without it every row is independent noise, the worst case for a
/// graph index (a query's ten nearest are barely nearer than the rest).
let clusters = Int(option("--clusters") ?? "0") ?? 0
let centres = (0..<clusters).map { _ in randomVector(dim) }
func sampleVector(_ n: Int) -> [Float] {
    guard !centres.isEmpty else { return randomVector(n) }
    state ^= state << 13; state ^= state >> 7; state ^= state << 17
    let c = centres[Int(state % UInt64(centres.count))]
    return zip(c, randomVector(n)).map { $0 + 0.5 * $1 }
}

if let url = option("--postgres") {
    // The server's view: the index read from PostgreSQL into memory once, then queried.
    print("unclip-store-bench: PostgreSQL \(url), dim \(dim), \(queries) queries per size, cores \(ProcessInfo.processInfo.activeProcessorCount), \(clusters > 0 ? "\(clusters) clusters" : "unclustered")")
    var filled = 0
    for n in sizes {
        let store = try PostgresStore(try PostgresLocation(url: url))
        var start = DispatchTime.now().uptimeNanoseconds
        while filled < n {
            let batch = min(5_000, n - filled)
            try store.insertSyntheticEmbeddings((0..<batch).map { _ in sampleVector(dim) }, firstSeed: Int64(filled))
            filled += batch
        }
        let insertSeconds = seconds(start)
        start = DispatchTime.now().uptimeNanoseconds
        let cache = SearchIndexCache()
        let parts = try cache.indexes(for: GenerationFilter(dim: dim), ranking: .picture, in: store)
        let loadSeconds = seconds(start)
        precondition(parts.count == 1 && parts[0].count == n, "loaded \(parts.map(\.count)) of \(n) rows")
        var times: [Double] = []
        _ = try parts[0].search(sampleVector(dim), limit: 10)
        for _ in 0..<queries {
            let q = sampleVector(dim)
            let s = DispatchTime.now().uptimeNanoseconds
            // What a server query does: catch up with new rows (none here), then search.
            for index in try cache.indexes(for: GenerationFilter(dim: dim), ranking: .picture, in: store) { _ = try index.search(q, limit: 10) }
            times.append(seconds(s))
        }
        times.sort()
        print(String(format: "%8d rows: insert %.1f s | index load %.2f s (%.0f MB/s of float32) | query incl. catch-up: median %.2f ms, p95 %.2f ms",
                     n, insertSeconds, loadSeconds, Double(n * dim * 4) / 1e6 / loadSeconds, times[times.count / 2] * 1000,
                     times[min(times.count - 1, times.count * 95 / 100)] * 1000))
        // pgvector, where the database has it: the first search fills `search_vectors` and builds the HNSW index;
        // then each query's hits against the exact top 10 of the in-memory index (recall@10).
        guard store.searchMethod != "in-memory" else { continue }
        start = DispatchTime.now().uptimeNanoseconds
        _ = try store.indexedSearch(sampleVector(dim), filter: GenerationFilter(dim: dim), ranking: .picture, limit: 10)
        let buildSeconds = seconds(start)
        var pgTimes: [Double] = []
        var found = 0
        for _ in 0..<queries {
            let q = sampleVector(dim)
            let s = DispatchTime.now().uptimeNanoseconds
            let hits = try store.indexedSearch(q, filter: GenerationFilter(dim: dim), ranking: .picture, limit: 10) ?? []
            pgTimes.append(seconds(s))
            found += Set(hits.map(\.id)).intersection(try parts[0].search(q, limit: 10).map(\.id)).count
        }
        pgTimes.sort()
        print(String(format: "%8d rows: %@: fill + HNSW build %.1f s | query incl. sync and exact re-score: median %.2f ms, p95 %.2f ms | recall@10 %.3f",
                     n, store.searchMethod, buildSeconds, pgTimes[pgTimes.count / 2] * 1000,
                     pgTimes[min(pgTimes.count - 1, pgTimes.count * 95 / 100)] * 1000, Double(found) / Double(10 * queries)))
    }
    exit(0)
}

print("unclip-store-bench: dim \(dim), \(queries) queries per size, OpenBLAS threads \(openblas_get_num_threads()), cores \(ProcessInfo.processInfo.activeProcessorCount)")
for n in sizes {
    let url = folder.appendingPathComponent("bench-\(n).sqlite")
    var insertSeconds = 0.0
    if !(reuse && FileManager.default.fileExists(atPath: url.path)) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: url.path + suffix) }
        // Insert through the real schema (rows as `variation`s without image files: only the embeddings matter here).
        let start = DispatchTime.now().uptimeNanoseconds
        let store = try SQLiteStore(url: url)
        let insert = try store.connection.prepare("""
            INSERT INTO generations(created_at, kind, settings, seed, dim, embedding, image_file, sha256, width, height, file_bytes)
            VALUES(?, 'variation', '{}', ?, ?, ?, ?, '', 0, 0, 0)
            """)
        let now = StoreTime.now()
        var row = 0
        while row < n {
            try store.connection.writeTransaction {
                for _ in 0..<min(10_000, n - row) {
                    row += 1
                    try insert.bind([.text(now), .int(Int64(row)), .int(Int64(dim)), .floats(randomVector(dim)), .text("bench-\(row).png")])
                    while try insert.step() {}
                }
            }
        }
        insertSeconds = seconds(start)
    }
    let bytes = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0

    // Load: open the store as a search command does, then read every embedding into the matrix.
    var start = DispatchTime.now().uptimeNanoseconds
    let store = try SQLiteStore(url: url, access: .read)
    let openSeconds = seconds(start)
    start = DispatchTime.now().uptimeNanoseconds
    let index = try SearchIndex.load(from: store, filter: GenerationFilter(dim: dim))
    let loadSeconds = seconds(start)
    precondition(index.count == n, "loaded \(index.count) of \(n) rows")

    var times: [Double] = []
    var checksum: Float = 0
    _ = try index.search(randomVector(dim), limit: 10)  // warm-up
    for _ in 0..<queries {
        let q = randomVector(dim)
        let s = DispatchTime.now().uptimeNanoseconds
        let hits = try index.search(q, limit: 10)
        times.append(seconds(s))
        checksum += hits.first?.score ?? 0
    }
    times.sort()

    // Baseline: the same scan as one cblas_sgemv over a float32 matrix (twice the bytes), no re-scoring.
    let matrix = UnsafeMutablePointer<Float>.allocate(capacity: n * dim)
    defer { matrix.deallocate() }
    let rows = try store.connection.prepare("SELECT embedding FROM generations WHERE +dim = ? ORDER BY id")
    try rows.bind([.int(Int64(dim))])
    var r = 0
    while try rows.step(), r < n {
        let e = try rows.floats(0, count: dim, what: "row")
        let norm = cblas_snrm2(Int32(dim), e, 1)
        for i in 0..<dim { matrix[r * dim + i] = e[i] / norm }
        r += 1
    }
    var scores = [Float](repeating: 0, count: n)
    var sgemvTimes: [Double] = []
    for _ in 0..<queries {
        let q = randomVector(dim)
        let s = DispatchTime.now().uptimeNanoseconds
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(dim), 1, matrix, Int32(dim), q, 1, 0, &scores, 1)
        sgemvTimes.append(seconds(s))
    }
    sgemvTimes.sort()

    let median = times[times.count / 2] * 1000, p95 = times[min(times.count - 1, times.count * 95 / 100)] * 1000
    print(String(format: "%8d rows: insert %.1f s, file %.0f MB | open %.3f s, load %.3f s (%.0f MB/s of float32) | query median %.2f ms, p95 %.2f ms, min %.2f ms | float32 sgemv alone: median %.2f ms, min %.2f ms  [checksum %.3f]",
                 n, insertSeconds, Double(bytes) / 1e6, openSeconds, loadSeconds, Double(n * dim * 4) / 1e6 / loadSeconds,
                 median, p95, times[0] * 1000, sgemvTimes[sgemvTimes.count / 2] * 1000, sgemvTimes[0] * 1000, checksum))
    if !keep { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: url.path + suffix) } }
}
if !keep { try? FileManager.default.removeItem(at: folder) }
