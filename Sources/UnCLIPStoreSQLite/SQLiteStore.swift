import CSQLite
import Foundation
import UnCLIPStore
import UnCLIPTensor

/// The embedding store: one SQLite database plus a folder of PNGs beside it (`<name>-images/`).
///
/// Why the C API and not GRDB: the store needs about twenty statements, BEGIN IMMEDIATE transactions,
/// the busy timeout, extended result codes (to tell a foreign file from a damaged or read-only one) and
/// zero-copy blob reads for loading the search matrix — all one call each in the C API — while GRDB
/// would add a large package to compile in debug and release on every 2-core CI run.
///
/// Crash safety: an image is written to a temporary file in `<images>/.tmp/`, then moved to `<id>.png` inside
/// the write transaction that inserts its row. A crash before the move leaves a temporary file; a crash between
/// the move and the commit leaves `<id>.png` without a row, where id is one above the highest id ever committed
/// (AUTOINCREMENT's sequence, which the rollback did not advance). `remove` commits the row's deletion together
/// with a note in `removed_files`, then unlinks. Opening a store for writing cleans up all three cases without
/// listing the image folder, holding the write lock so that no other process is half-way at that moment.
public final class SQLiteStore: GenerationStore, @unchecked Sendable {
    public enum Access {
        /// Must be writable (commands that record or remove); runs migrations and the startup check.
        case readWrite
        /// Writable if possible, else read-only (list, show, search).
        case read
        /// Never writes, even if it could (inspection; no migrations, no startup check).
        case readOnly
    }

    /// The database file.
    public let url: URL
    /// The folder holding the store's own copy of every image.
    public let imagesURL: URL
    /// The connection. Every public method holds `lock` while it uses it: one connection, one caller at a
    /// time, so a transaction begun by one task never takes in another task's statements.
    let db: Database
    let lock = NSRecursiveLock()
    /// Read-only connections for the hot read paths (a server's listings and images): in WAL mode they read a
    /// consistent snapshot while the writer commits, so a request never waits for another's fsync.
    private let readerLock = NSLock()
    private var idleReaders: [Database] = []
    private static let maxIdleReaders = 4

    // Readers close before the main connection, so that the writer is the last to close and checkpoints the
    // WAL into the database file (a read-only connection cannot): the file is then complete on its own.
    deinit { readerLock.withLock { idleReaders.removeAll() } }

    /// Runs `body` in a read transaction on a reader connection (the main connection for stores that are not
    /// writable, whose files SQLite may not share).
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        guard isWritable else { return try lock.withLock { try db.readTransaction { try body(db) } } }
        let reader = try readerLock.withLock { idleReaders.popLast() } ?? {
            let r = try Database(path: url.path, readOnly: true, create: false)
            r.setBusyTimeout(milliseconds: 30_000)
            return r
        }()
        defer { readerLock.withLock { if idleReaders.count < Self.maxIdleReaders { idleReaders.append(reader) } } }
        return try reader.readTransaction { try body(reader) }
    }

    /// The raw connection, for tools that fill a store with synthetic rows in bulk (the search benchmark).
    /// Not part of the store protocol: callers of the library never see SQL.
    @_spi(Tools) public var connection: Database { db }
    /// The database file's path (the store's location in messages).
    public var location: String { url.path }
    /// False when the store could only be opened for reading.
    public let isWritable: Bool
    /// What the startup check cleaned up (write access only).
    public private(set) var startupReport = ConsistencyReport()

    /// The schema version this build writes.
    public static var schemaVersion: Int { Schema.currentVersion }

    /// Opens or creates the store at `url`. `.read` also accepts a write-protected store; `.readWrite` reports it.
    public convenience init(url: URL, access: Access = .readWrite) throws {
        try self.init(url: url, access: access, migrations: Schema.migrations)
    }

    init(url: URL, access: Access, migrations: [Migration]) throws {
        self.url = url
        let base = url.deletingPathExtension().lastPathComponent
        imagesURL = url.deletingLastPathComponent().appendingPathComponent("\(base)-images", isDirectory: true)
        let fm = FileManager.default
        let folder = url.deletingLastPathComponent()
        if !fm.fileExists(atPath: folder.path) {
            do { try fm.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
                throw StoreError.cannotOpen(path: url.path, reason: "cannot create the folder \(folder.path) (\(Self.reason(error)))")
            }
        }
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            throw StoreError.cannotOpen(path: url.path, reason: "it is a folder; a SQLite store is a database file, e.g. \(url.appendingPathComponent("store.sqlite").path)")
        }
        let exists = fm.fileExists(atPath: url.path)
        if !exists && access == .readOnly { throw StoreError.cannotOpen(path: url.path, reason: "no such file") }
        let folderWritable = access != .readOnly && access_(folder.path, W_OK) == 0
        let fileWritable = access != .readOnly && (!exists || access_(url.path, W_OK) == 0)
        if !exists && !folderWritable {
            throw StoreError.readOnly(path: url.path, detail: "cannot create it: the folder \(folder.path) is not writable")
        }
        let folderReadOnly = access_(folder.path, W_OK) != 0
        db = try Database(path: url.path, readOnly: !(folderWritable && fileWritable), immutable: exists && folderReadOnly)
        isWritable = folderWritable && fileWritable && !db.isReadOnly
        if access == .readWrite && !isWritable {
            throw StoreError.readOnly(path: url.path, detail: folderWritable ? "the file is write-protected" : "its folder \(folder.path) is not writable")
        }
        // Another process may hold the write lock while it records an image: wait for it rather than fail.
        db.setBusyTimeout(milliseconds: 30_000)
        try db.execute("PRAGMA foreign_keys = ON")
        try checkIdentity(migrations: migrations)
        if isWritable {
            try enableWAL()
            try db.execute("PRAGMA synchronous = FULL")
            try migrate(migrations)
            try? fm.createDirectory(at: imagesURL, withIntermediateDirectories: true)
            startupReport = try cleanUp()
        }
    }

    private static func reason(_ error: Error) -> String {
        (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
    }

    /// Refuses files that are not unclip stores, and stores from a newer schema, before anything is written.
    private func checkIdentity(migrations: [Migration]) throws {
        // The first read of the header: garbage gives SQLITE_NOTADB here.
        let tables = try db.scalarInt("SELECT count(*) FROM sqlite_master") ?? 0
        let appID = Int32(truncatingIfNeeded: try db.scalarInt("PRAGMA application_id") ?? 0)
        let version = Int(try db.scalarInt("PRAGMA user_version") ?? 0)
        let supported = migrations.map(\.version).max() ?? 0
        if appID == Schema.applicationID {
            if version > supported { throw StoreError.newerSchema(path: url.path, found: version, supported: supported) }
            if version < supported && !isWritable {
                throw StoreError.readOnly(path: url.path, detail: "it has schema version \(version) and needs upgrading to \(supported), which needs write access")
            }
        } else if appID != 0 {
            throw StoreError.foreignDatabase(path: url.path, reason: String(format: "application id 0x%08X", UInt32(bitPattern: appID)))
        } else if tables > 0 || version != 0 {
            throw StoreError.foreignDatabase(path: url.path, reason: "it has \(tables) schema objects and no unclip marker")
        } else if !isWritable {
            throw StoreError.readOnly(path: url.path, detail: "the store is empty and cannot be initialised without write access")
        }
    }

    /// WAL lets readers (search, list) run while another process writes, and makes commits cheap.
    private func enableWAL() throws {
        for attempt in 0..<50 {
            do {
                let s = try db.prepare("PRAGMA journal_mode = WAL")
                guard try s.step(), s.text(0) == "wal" else {
                    throw StoreError.cannotOpen(path: url.path, reason: "SQLite could not switch it to write-ahead logging")
                }
                return
            } catch StoreError.busy where attempt < 49 {
                usleep(100_000)  // another process is creating the same store; the busy timeout does not cover this pragma
            }
        }
    }

    /// Runs the migrations above the stored version, in one transaction, re-reading the version under the lock
    /// (two processes opening a new store at once must not both create it).
    private func migrate(_ migrations: [Migration]) throws {
        let target = migrations.map(\.version).max() ?? 0
        let stored = Int(try db.scalarInt("PRAGMA user_version") ?? 0)
        guard stored < target else { return }
        // PRAGMA foreign_keys is a no-op inside a transaction, so it is switched off before BEGIN.
        let rebuilds = migrations.contains { $0.version > stored && $0.rebuildsTables }
        if rebuilds { try db.execute("PRAGMA foreign_keys = OFF") }
        defer { if rebuilds { try? db.execute("PRAGMA foreign_keys = ON") } }
        try db.writeTransaction {
            let version = Int(try db.scalarInt("PRAGMA user_version") ?? 0)
            if version > target { throw StoreError.newerSchema(path: url.path, found: version, supported: target) }
            for m in migrations.sorted(by: { $0.version < $1.version }) where m.version > version {
                try db.execute(m.sql)
            }
            if rebuilds, let bad = try db.scalarInt("SELECT count(*) FROM pragma_foreign_key_check"), bad > 0 {
                throw StoreError.invalid("\(url.path): upgrading the schema to version \(target) found \(bad) broken references; the store was left unchanged")
            }
            try db.execute("PRAGMA application_id = \(Schema.applicationID)")
            try db.execute("PRAGMA user_version = \(target)")
        }
    }

    /// The schema version stored in the file.
    public func storedSchemaVersion() throws -> Int { try lock.withLock { Int(try db.scalarInt("PRAGMA user_version") ?? 0) } }

    // MARK: - Default location

    /// `$UNCLIP_STORE`, else `$XDG_DATA_HOME/unclip/store.sqlite`, else `~/.local/share/unclip/store.sqlite`.
    public static func defaultURL(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let path = environment["UNCLIP_STORE"], !path.isEmpty { return URL(fileURLWithPath: path) }
        let data: URL
        if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty {
            data = URL(fileURLWithPath: xdg)
        } else {
            let home = environment["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
            data = home.appendingPathComponent(".local/share")
        }
        return data.appendingPathComponent("unclip/store.sqlite")
    }

    // MARK: - Models and prompts

    /// Records a model (or finds it by fingerprint), remembering the folders it was last used from.
    public func registerModel(fingerprint: String, path: String, priorPath: String?) throws -> ModelRecord {
        return try lock.withLock {
            try db.writeTransaction {
                try db.run("""
                    INSERT INTO models(fingerprint, path, prior_path, created_at) VALUES(?, ?, ?, ?)
                    ON CONFLICT(fingerprint) DO UPDATE SET path = excluded.path, prior_path = excluded.prior_path
                    """, [.text(fingerprint), .text(path), priorPath.map { .text($0) } ?? .null, .text(StoreTime.now())])
            }
            guard let m = try model(fingerprint: fingerprint) else {
                throw StoreError.invalid("store \(url.path): the model row for \(fingerprint) vanished after insertion")
            }
            return m
        }
    }

    public func model(fingerprint: String) throws -> ModelRecord? {
        return try lock.withLock {
            try readModel("fingerprint = ?", [.text(fingerprint)])
        }
    }

    public func model(id: Int64) throws -> ModelRecord? {
        return try lock.withLock {
            try readModel("id = ?", [.int(id)])
        }
    }

    /// The model of the newest generation (a default for commands that need some model of this store).
    public func latestModel() throws -> ModelRecord? {
        return try lock.withLock {
            try readModel("id = (SELECT model_id FROM generations WHERE model_id IS NOT NULL ORDER BY id DESC LIMIT 1)", [])
        }
    }

    public func modelsInUse() throws -> [ModelRecord] {
        return try lock.withLock {
            let s = try db.prepare("""
                SELECT m.id, m.fingerprint, m.path, m.prior_path FROM models m
                JOIN (SELECT model_id, max(id) AS newest FROM generations WHERE model_id IS NOT NULL GROUP BY model_id) g
                  ON g.model_id = m.id ORDER BY g.newest DESC
                """)
            var out: [ModelRecord] = []
            while try s.step() { out.append(ModelRecord(id: s.int(0), fingerprint: s.text(1) ?? "", path: s.text(2) ?? "", priorPath: s.text(3))) }
            return out
        }
    }

    private func readModel(_ condition: String, _ values: [SQLValue]) throws -> ModelRecord? {
        let s = try db.prepare("SELECT id, fingerprint, path, prior_path FROM models WHERE \(condition)")
        try s.bind(values)
        guard try s.step() else { return nil }
        return ModelRecord(id: s.int(0), fingerprint: s.text(1) ?? "", path: s.text(2) ?? "", priorPath: s.text(3))
    }

    /// The prompt's row id, inserting it (call inside a write transaction).
    private func promptID(_ text: String) throws -> Int64 {
        try db.run("INSERT INTO prompts(text) VALUES(?) ON CONFLICT(text) DO NOTHING", [.text(text)])
        guard let id = try db.scalarInt("SELECT id FROM prompts WHERE text = ?", [.text(text)]) else {
            throw StoreError.invalid("store \(url.path): prompt row missing after insertion")
        }
        return id
    }

    // MARK: - Text encoding cache

    /// The cached encoding of exactly this prompt text by this model's encoder, if any.
    public func textEncoding(modelID: Int64, prompt: String, encoder: TextEncoderRole, clipSkip: Int) throws -> CachedTextEncoding? {
        return try lock.withLock {
            let s = try db.prepare("""
                SELECT t.tokens, t.width, t.hidden_states, t.proj_dim, t.text_embeds, t.mask
                FROM text_encodings t JOIN prompts p ON p.id = t.prompt_id
                WHERE t.model_id = ? AND p.text = ? AND t.encoder = ? AND t.clip_skip = ?
                """)
            try s.bind([.int(modelID), .text(prompt), .text(encoder.rawValue), .int(Int64(clipSkip))])
            guard try s.step() else { return nil }
            let tokens = Int(s.int(0)), width = Int(s.int(1))
            let what = "the cached \(encoder.rawValue) text encoding of \"\(prompt.prefix(40))\""
            var e = CachedTextEncoding(tokens: tokens, width: width, hiddenStates: try s.floats(2, count: tokens * width, what: what))
            if !s.isNull(3) { e.textEmbeds = try s.floats(4, count: Int(s.int(3)), what: what) }
            if !s.isNull(5) {
                let bytes = s.blob(5)
                guard bytes.count == tokens else {
                    throw StoreError.badEmbedding(path: url.path, what: what, reason: "mask has \(bytes.count) entries for \(tokens) tokens")
                }
                e.mask = bytes.map(Int.init)
            }
            return e
        }
    }

    /// Caches an encoding; an existing entry for the same key is kept (the encoders are deterministic).
    public func saveTextEncoding(_ e: CachedTextEncoding, modelID: Int64, prompt: String, encoder: TextEncoderRole, clipSkip: Int) throws {
        try lock.withLock {
            guard e.hiddenStates.count == e.tokens * e.width else {
                throw StoreError.invalid("text encoding of \(e.hiddenStates.count) values is not \(e.tokens) × \(e.width)")
            }
            try db.writeTransaction {
                let pid = try promptID(prompt)
                try db.run("""
                    INSERT INTO text_encodings(model_id, prompt_id, encoder, clip_skip, tokens, width, hidden_states,
                                               proj_dim, text_embeds, mask, created_at)
                    VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(model_id, prompt_id, encoder, clip_skip) DO NOTHING
                    """, [.int(modelID), .int(pid), .text(encoder.rawValue), .int(Int64(clipSkip)), .int(Int64(e.tokens)),
                          .int(Int64(e.width)), .floats(e.hiddenStates), e.textEmbeds.map { .int(Int64($0.count)) } ?? .null,
                          e.textEmbeds.map { .floats($0) } ?? .null, e.mask.map { .blob($0.map { UInt8(clamping: $0) }) } ?? .null,
                          .text(StoreTime.now())])
            }
        }
    }

    // MARK: - Prior run cache

    public func priorRun(_ key: PriorRunKey) throws -> CachedPriorRun? {
        return try lock.withLock {
            let s = try db.prepare("""
                SELECT r.id, r.dim, r.candidates, r.embeddings, r.scores, r.chosen, r.draws
                FROM prior_runs r JOIN prompts p ON p.id = r.prompt_id
                WHERE r.model_id = ? AND p.text = ? AND r.seed = ? AND r.steps = ? AND r.guidance = ?
                  AND r.candidates = ? AND r.scheduler = ?
                """)
            try s.bind(Self.values(key))
            guard try s.step() else { return nil }
            return try readPriorRun(s)
        }
    }

    public func priorRun(id: Int64) throws -> CachedPriorRun? {
        return try lock.withLock {
            let s = try db.prepare("SELECT id, dim, candidates, embeddings, scores, chosen, draws FROM prior_runs WHERE id = ?")
            try s.bind([.int(id)])
            guard try s.step() else { return nil }
            return try readPriorRun(s)
        }
    }

    private func readPriorRun(_ s: Statement) throws -> CachedPriorRun {
        let id = s.int(0), dim = Int(s.int(1)), n = Int(s.int(2))
        let what = "prior run \(id)"
        let draws = (try? JSONDecoder().decode([Int].self, from: Data((s.text(6) ?? "").utf8))) ?? []
        return CachedPriorRun(id: id, dim: dim, candidates: try s.floats(3, count: n * dim, what: what),
                              scores: try s.floats(4, count: n, what: what), chosenIndex: Int(s.int(5)), draws: draws)
    }

    private static func values(_ k: PriorRunKey) -> [SQLValue] {
        [.int(k.modelID), .text(k.prompt), .int(Int64(bitPattern: k.seed)), .int(Int64(k.steps)), .double(Double(k.guidance)),
         .int(Int64(k.candidates)), .text(k.scheduler)]
    }

    /// Stores a prior run (keeping an existing one with the same key) and returns its id.
    @discardableResult
    public func savePriorRun(_ key: PriorRunKey, dim: Int, candidates: [Float], scores: [Float], chosenIndex: Int,
                             draws: [Int], seconds: Double?) throws -> Int64 {
        try lock.withLock { try savePriorRunLocked(key, dim: dim, candidates: candidates, scores: scores, chosenIndex: chosenIndex, draws: draws, seconds: seconds) }
    }

    private func savePriorRunLocked(_ key: PriorRunKey, dim: Int, candidates: [Float], scores: [Float], chosenIndex: Int,
                                    draws: [Int], seconds: Double?) throws -> Int64 {
        try key.check(dim: dim, candidates: candidates, scores: scores, chosenIndex: chosenIndex)
        let drawsJSON = String(decoding: try JSONEncoder().encode(draws), as: UTF8.self)
        return try db.writeTransaction {
            let pid = try promptID(key.prompt)
            try db.run("""
                INSERT INTO prior_runs(model_id, prompt_id, seed, steps, guidance, candidates, scheduler, dim, embeddings,
                                       scores, chosen, draws, seconds, created_at)
                VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(model_id, prompt_id, seed, steps, guidance, candidates, scheduler) DO NOTHING
                """, [.int(key.modelID), .int(pid), .int(Int64(bitPattern: key.seed)), .int(Int64(key.steps)),
                      .double(Double(key.guidance)), .int(Int64(key.candidates)), .text(key.scheduler), .int(Int64(dim)),
                      .floats(candidates), .floats(scores), .int(Int64(chosenIndex)), .text(drawsJSON),
                      seconds.map { .double($0) } ?? .null, .text(StoreTime.now())])
            guard let id = try db.scalarInt("""
                SELECT id FROM prior_runs WHERE model_id = ? AND prompt_id = ? AND seed = ? AND steps = ? AND guidance = ?
                  AND candidates = ? AND scheduler = ?
                """, [.int(key.modelID), .int(pid)] + Array(Self.values(key).dropFirst(2))) else {
                throw StoreError.invalid("store \(url.path): prior run missing after insertion")
            }
            return id
        }
    }

    // MARK: - Generations

    /// Where new images are written before `record` moves them into place.
    public var temporaryFolderURL: URL { imagesURL.appendingPathComponent(".tmp", isDirectory: true) }

    /// A fresh temporary path for a new image (on the image folder's file system, so the move is a rename;
    /// the startup check removes it if this process dies before `record` moves it).
    public func temporaryImageURL() throws -> URL {
        return try lock.withLock {
            do { try FileManager.default.createDirectory(at: temporaryFolderURL, withIntermediateDirectories: true) } catch {
                throw StoreError.imageFile(path: temporaryFolderURL.path, reason: "cannot create the store's image folder (\(Self.reason(error)))")
            }
            return temporaryFolderURL.appendingPathComponent("\(getpid())-\(UInt64.random(in: 0...UInt64.max)).png")
        }
    }

    /// Records a generation and its PNG: the bytes go to a temporary file in the image folder, then the row is
    /// inserted, the file moved to `<id>.png` and the transaction committed, in that order.
    public func record(_ g: NewGeneration, png: Data) throws -> StoredGeneration {
        return try lock.withLock {
            let temp = try temporaryImageURL()
            do { try png.write(to: temp) } catch {
                unlink(temp.path)
                throw StoreError.imageFile(path: temp.path, reason: "cannot write the new image into the store (\(Self.reason(error)))")
            }
            return try record(g, temporaryImage: temp)
        }
    }

    /// Records a generation whose PNG is at `temporaryImage` (in the image folder): inserts the row, moves
    /// the file to `<id>.png` and commits, in that order, inside one write transaction.
    public func record(_ g: NewGeneration, temporaryImage: URL) throws -> StoredGeneration {
        try record(g, temporaryImage: temporaryImage, imported: nil)
    }

    /// What a whole-store copy keeps of a generation that a new record would set afresh.
    struct ImportedRow {
        var id: Int64
        var createdAt: String
        var starred: Bool
        var seconds: Double?
    }

    func record(_ g: NewGeneration, temporaryImage: URL, imported: ImportedRow?) throws -> StoredGeneration {
        return try lock.withLock {
            guard isWritable else { throw StoreError.readOnly(path: url.path, detail: "opened for reading only") }
            if g.embedding?.isEmpty == true || g.pictureEmbedding?.isEmpty == true {
                throw StoreError.invalid("an image embedding cannot be empty (record none instead)")
            }
            let data: Data
            do { data = try Data(contentsOf: temporaryImage) } catch {
                throw StoreError.imageFile(path: temporaryImage.path, reason: "cannot read the new image (\(Self.reason(error)))")
            }
            let digest = SHA256.hex(data)
            var moved: URL?
            do {
                let id: Int64 = try db.writeTransaction {
                    // Under the write lock the next AUTOINCREMENT id is known, so the row is inserted complete.
                    let seq = try db.scalarInt("SELECT seq FROM sqlite_sequence WHERE name = 'generations'") ?? 0
                    let maxID = try db.scalarInt("SELECT max(id) FROM generations") ?? 0
                    let id = imported?.id ?? max(seq, maxID) + 1
                    if imported != nil, try db.scalarInt("SELECT 1 FROM generations WHERE id = ?", [.int(id)]) != nil {
                        throw StoreError.invalid("store \(url.path) already has a generation \(id)")
                    }
                    let file = "\(id).png"
                    let pid = try g.prompt.map { try promptID($0) }
                    try db.run("""
                        INSERT INTO generations(id, created_at, kind, model_id, prompt_id, negative_prompt, settings, seed,
                            prior_run_id, noise_level, dim, embedding, image_file, sha256, width, height, file_bytes, seconds,
                            picture_dim, picture_embedding, job_id, job_index, starred)
                        VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, [.int(id), .text(imported?.createdAt ?? StoreTime.now()), .text(g.kind.rawValue), g.modelID.map { .int($0) } ?? .null,
                              pid.map { .int($0) } ?? .null, g.settings.negativePrompt.map { .text($0) } ?? .null,
                              .text(try g.settings.json()), g.seed.map { .int(Int64(bitPattern: $0)) } ?? .null,
                              g.priorRunID.map { .int($0) } ?? .null, g.settings.noiseLevel.map { .int(Int64($0)) } ?? .null,
                              g.embedding.map { .int(Int64($0.count)) } ?? .null, g.embedding.map { .floats($0) } ?? .null, .text(file), .text(digest),
                              .int(Int64(g.width)), .int(Int64(g.height)), .int(Int64(data.count)),
                              imported.map { $0.seconds.map { .double($0) } ?? .null } ?? .double(g.seconds),
                              g.pictureEmbedding.map { .int(Int64($0.count)) } ?? .null, g.pictureEmbedding.map { .floats($0) } ?? .null,
                              g.job.map { .int($0.job) } ?? .null, g.job.map { .int(Int64($0.index)) } ?? .null,
                              .int(imported?.starred == true ? 1 : 0)])
                    for p in g.parents {
                        // A link to a parent removed since (kept by a copy) has no row to reference.
                        try db.run("INSERT INTO generation_parents(child_id, role, parent_id, parent_ref) VALUES(?, ?, ?, ?)",
                                   [.int(id), .text(p.role), p.exists ? .int(p.id) : .null, .int(p.id)])
                    }
                    crashPoint("before-rename")
                    let final = imagesURL.appendingPathComponent(file)
                    guard rename(temporaryImage.path, final.path) == 0 else {
                        let why = String(cString: strerror(errno))
                        if errno == ENOSPC { throw StoreError.diskFull(path: final.path) }
                        throw StoreError.imageFile(path: final.path, reason: "cannot move the new image into place (\(why))")
                    }
                    moved = final
                    crashPoint("after-rename")
                    return id
                }
                return try generation(id)
            } catch {
                // The row was rolled back: remove its file too, so neither outlives the other.
                if let moved { unlink(moved.path) }
                unlink(temporaryImage.path)
                throw error
            }
        }
    }

    /// Test hook for the crash-consistency tests: `UNCLIP_STORE_CRASH=<point>` kills the process there.
    private func crashPoint(_ name: String) {
        if ProcessInfo.processInfo.environment["UNCLIP_STORE_CRASH"] == name { kill(getpid(), SIGKILL) }
    }

    private static let generationColumns = """
        g.id, g.created_at, g.kind, g.model_id, p.text, g.settings, g.seed, g.prior_run_id, g.noise_level, g.dim,
        g.embedding, g.image_file, g.sha256, g.width, g.height, g.file_bytes, g.seconds, g.picture_dim, g.picture_embedding,
        g.starred, g.job_id, g.job_index
        """

    /// One generation, with its parents.
    public func generation(_ id: Int64) throws -> StoredGeneration {
        try read { db in
            let s = try db.prepare("SELECT \(Self.generationColumns) FROM generations g LEFT JOIN prompts p ON p.id = g.prompt_id WHERE g.id = ?")
            try s.bind([.int(id)])
            guard try s.step() else { throw StoreError.noSuchGeneration(id: id, path: url.path) }
            return try readGeneration(s, parents: parents(of: [id], in: db)[id] ?? [])
        }
    }

    /// The first generation of this kind whose image has this sha256 and model, if any.
    public func generationID(kind: GenerationKind, sha256: String, modelID: Int64) throws -> Int64? {
        return try lock.withLock {
            try db.scalarInt("SELECT id FROM generations WHERE kind = ? AND sha256 = ? AND model_id = ? ORDER BY id LIMIT 1",
                             [.text(kind.rawValue), .text(sha256), .int(modelID)])
        }
    }

    /// The first generation (of any kind) whose image has this sha256, if any.
    public func generationID(sha256: String) throws -> Int64? {
        return try lock.withLock {
            try db.scalarInt("SELECT id FROM generations WHERE sha256 = ? ORDER BY id LIMIT 1", [.text(sha256)])
        }
    }

    public func contains(_ id: Int64) throws -> Bool {
        return try lock.withLock {
            try db.scalarInt("SELECT 1 FROM generations WHERE id = ?", [.int(id)]) != nil
        }
    }

    /// The parent links of several generations in one query.
    private func parents(of ids: [Int64], in db: Database) throws -> [Int64: [ParentLink]] {
        guard !ids.isEmpty else { return [:] }
        let s = try db.prepare("""
            SELECT child_id, role, parent_ref, parent_id IS NOT NULL FROM generation_parents
            WHERE child_id IN (\(ids.map { _ in "?" }.joined(separator: ",")))
            """)
        try s.bind(ids.map { .int($0) })
        var out: [Int64: [ParentLink]] = [:]
        while try s.step() { out[s.int(0), default: []].append(ParentLink(role: s.text(1) ?? "", id: s.int(2), exists: s.int(3) != 0)) }
        // Reading order: "source" (or "init"), then "from", then "to".
        return out.mapValues { $0.sorted { order($0.role) < order($1.role) } }
    }

    private func order(_ role: String) -> Int { ["source": 0, "init": 0, "from": 1, "to": 2][role] ?? 3 }

    /// Ids of the generations made from this one.
    public func children(of id: Int64) throws -> [Int64] {
        try read { db in
            // DISTINCT: an interpolation from a generation to itself links to it twice (roles "from" and "to").
            let s = try db.prepare("SELECT DISTINCT child_id FROM generation_parents WHERE parent_id = ? ORDER BY child_id")
            try s.bind([.int(id)])
            var out: [Int64] = []
            while try s.step() { out.append(s.int(0)) }
            return out
        }
    }

    private func readGeneration(_ s: Statement, parents: [ParentLink]) throws -> StoredGeneration {
        let id = s.int(0)
        guard let kind = GenerationKind(rawValue: s.text(2) ?? "") else {
            throw StoreError.badEmbedding(path: url.path, what: "generation \(id)", reason: "unknown kind '\(s.text(2) ?? "")'")
        }
        let dim = s.isNull(9) ? nil : Int(s.int(9))
        let pictureDim = s.isNull(17) ? nil : Int(s.int(17))
        var g = StoredGeneration(
            id: id, createdAt: s.text(1) ?? "", kind: kind, modelID: s.isNull(3) ? nil : s.int(3), prompt: s.text(4),
            settings: try RecordedSettings.decode(s.text(5) ?? "", path: url.path, id: id),
            seed: s.isNull(6) ? nil : UInt64(bitPattern: s.int(6)), priorRunID: s.isNull(7) ? nil : s.int(7),
            noiseLevel: s.isNull(8) ? nil : Int(s.int(8)),
            embedding: try dim.map { try s.floats(10, count: $0, what: "the image embedding of generation \(id)") },
            imageURL: imagesURL.appendingPathComponent(s.text(11) ?? ""), sha256: s.text(12) ?? "",
            width: Int(s.int(13)), height: Int(s.int(14)), fileBytes: Int(s.int(15)), seconds: s.isNull(16) ? nil : s.double(16),
            parents: parents)
        g.pictureEmbedding = try pictureDim.map { try s.floats(18, count: $0, what: "the picture embedding of generation \(id)") }
        g.starred = s.int(19) != 0
        if !s.isNull(20) { g.job = JobLink(job: s.int(20), index: Int(s.int(21))) }
        return g
    }

    private func whereClause(_ f: GenerationFilter) -> (String, [SQLValue]) {
        var conditions: [String] = [], values: [SQLValue] = []
        if let kinds = f.kinds, !kinds.isEmpty {
            conditions.append("g.kind IN (\(kinds.map { _ in "?" }.joined(separator: ", ")))")
            values += kinds.map { .text($0.rawValue) }
        }
        if let since = f.since { conditions.append("g.created_at >= ?"); values.append(.text(since)) }
        if let dim = f.dim { conditions.append("g.dim = ?"); values.append(.int(Int64(dim))) }
        if let m = f.modelID { conditions.append("g.model_id = ?"); values.append(.int(m)) }
        if let starred = f.starred { conditions.append("g.starred = ?"); values.append(.int(starred ? 1 : 0)) }
        if let p = f.parent {
            conditions.append("g.id IN (SELECT child_id FROM generation_parents WHERE parent_id = ?)"); values.append(.int(p))
        }
        if let b = f.beforeID { conditions.append("g.id < ?"); values.append(.int(b)) }
        if let a = f.afterID { conditions.append("g.id > ?"); values.append(.int(a)) }
        return (conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "), values)
    }

    /// Generations matching the filter, newest first.
    public func generations(_ filter: GenerationFilter, limit: Int?) throws -> [StoredGeneration] {
        try read { db in
            let (clause, values) = whereClause(filter)
            let s = try db.prepare("""
                SELECT \(Self.generationColumns) FROM generations g LEFT JOIN prompts p ON p.id = g.prompt_id
                \(clause) ORDER BY g.id DESC \(limit.map { "LIMIT \($0)" } ?? "")
                """)
            try s.bind(values)
            var rows: [StoredGeneration] = []
            while try s.step() { rows.append(try readGeneration(s, parents: [])) }
            // Parents in batches (SQLite takes at most 32766 variables per statement).
            for start in stride(from: 0, to: rows.count, by: 500) {
                let batch = rows[start..<min(start + 500, rows.count)].map(\.id)
                let links = try parents(of: batch, in: db)
                for i in start..<min(start + 500, rows.count) { rows[i].parents = links[rows[i].id] ?? [] }
            }
            return rows
        }
    }

    public func count(_ filter: GenerationFilter) throws -> Int {
        return try lock.withLock {
            let (clause, values) = whereClause(filter)
            return Int(try db.scalarInt("SELECT count(*) FROM generations g \(clause)", values) ?? 0)
        }
    }

    public func generationID(job: JobLink) throws -> Int64? {
        return try lock.withLock {
            try db.scalarInt("SELECT id FROM generations WHERE job_id = ? AND job_index = ?", [.int(job.job), .int(Int64(job.index))])
        }
    }

    public func setStarred(_ id: Int64, _ starred: Bool) throws {
        try lock.withLock {
            guard isWritable else { throw StoreError.readOnly(path: url.path, detail: "opened for reading only") }
            try db.writeTransaction {
                try db.run("UPDATE generations SET starred = ? WHERE id = ?", [.int(starred ? 1 : 0), .int(id)])
                guard db.changes > 0 else { throw StoreError.noSuchGeneration(id: id, path: url.path) }
            }
        }
    }

    /// Removes a generation's row, then its file. Children keep their own embeddings; their parent link
    /// keeps the old id and is marked as removed.
    @discardableResult
    public func remove(_ id: Int64) throws -> String {
        return try lock.withLock {
            guard isWritable else { throw StoreError.readOnly(path: url.path, detail: "opened for reading only") }
            let name: String = try db.writeTransaction {
                let s = try db.prepare("SELECT image_file FROM generations WHERE id = ?")
                try s.bind([.int(id)])
                guard try s.step(), let name = s.text(0) else { throw StoreError.noSuchGeneration(id: id, path: url.path) }
                try db.run("DELETE FROM generations WHERE id = ?", [.int(id)])
                // Committed with the deletion: a crash before the unlink below leaves a note the next open acts on.
                try db.run("INSERT OR IGNORE INTO removed_files(file) VALUES(?)", [.text(name)])
                return name
            }
            let file = imagesURL.appendingPathComponent(name)
            if unlink(file.path) != 0 && errno != ENOENT {
                throw StoreError.imageFile(path: file.path, reason: "the generation is removed but its file could not be (\(String(cString: strerror(errno)))); the next run retries")
            }
            try db.writeTransaction { try db.run("DELETE FROM removed_files WHERE file = ?", [.text(name)]) }
            return file.path
        }
    }

    /// Puts back a generation's image file from a file whose bytes hash to the recorded sha256
    /// (what `regenerate` made); the temporary file is moved, not copied.
    public func restoreImage(_ id: Int64, png: Data) throws {
        try lock.withLock {
            let temp = try temporaryImageURL()
            defer { unlink(temp.path) }
            do { try png.write(to: temp) } catch {
                throw StoreError.imageFile(path: temp.path, reason: "cannot write the image into the store (\(Self.reason(error)))")
            }
            try restoreImage(id, from: temp)
        }
    }

    public func imageData(_ id: Int64) throws -> Data {
        let name = try read { db in
            guard let name = try db.scalarText("SELECT image_file FROM generations WHERE id = ?", [.int(id)]) else {
                throw StoreError.noSuchGeneration(id: id, path: url.path)
            }
            return name
        }
        let file = imagesURL.appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw StoreError.imageFile(path: file.path, reason: "generation \(id)'s image is missing; regenerating it puts it back")
        }
        return data
    }

    public func hasImage(_ id: Int64) throws -> Bool {
        return try lock.withLock {
            FileManager.default.fileExists(atPath: try generation(id).imageURL.path)
        }
    }

    /// Puts back a generation's image file from a file whose bytes hash to the recorded sha256; the file is moved.
    public func restoreImage(_ id: Int64, from temporaryImage: URL) throws {
        try lock.withLock {
            let g = try generation(id)
            guard let data = FileManager.default.contents(atPath: temporaryImage.path), SHA256.hex(data) == g.sha256 else {
                throw StoreError.imageFile(path: temporaryImage.path, reason: "does not have generation \(id)'s recorded sha256 \(g.sha256)")
            }
            try db.writeTransaction {
                // Under the write lock, so another process's startup check cannot see a half-done state.
                guard rename(temporaryImage.path, g.imageURL.path) == 0 else {
                    throw StoreError.imageFile(path: g.imageURL.path, reason: "cannot move the regenerated image into place (\(String(cString: strerror(errno))))")
                }
            }
        }
    }

    // MARK: - Search

    public func forEachSearchVector(filter: GenerationFilter, ranking: SearchRanking, reserve: (Int) -> Void,
                                    row: (Int64, [Float]?) throws -> Void) throws {
        guard let dim = filter.dim else { throw StoreError.invalid("a search needs the embedding width (filter.dim)") }
        // Rows whose picture or decoder embedding has the query's width (`SearchRanking` combines what is there).
        // (An expression, so SQLite reads the table in rowid order: a search reads most rows, and one pass
        // beats an index walk with a table lookup per row.)
        var conditions = ["coalesce(picture_dim, dim) = ?"], values: [SQLValue] = [.int(Int64(dim))]
        if let kinds = filter.kinds, !kinds.isEmpty {
            conditions.append("kind IN (\(kinds.map { _ in "?" }.joined(separator: ", ")))")
            values += kinds.map { .text($0.rawValue) }
        }
        if let since = filter.since { conditions.append("created_at >= ?"); values.append(.text(since)) }
        if let m = filter.modelID { conditions.append("model_id = ?"); values.append(.int(m)) }
        if let starred = filter.starred { conditions.append("starred = ?"); values.append(.int(starred ? 1 : 0)) }
        if let p = filter.parent {
            conditions.append("id IN (SELECT child_id FROM generation_parents WHERE parent_id = ?)"); values.append(.int(p))
        }
        if let b = filter.beforeID { conditions.append("id < ?"); values.append(.int(b)) }
        if let a = filter.afterID { conditions.append("id > ?"); values.append(.int(a)) }
        let clause = conditions.joined(separator: " AND ")
        // Under the connection's lock like every other method: without it, a search (run on Dispatch by the server)
        // held a read transaction on the connection while the job runner's BEGIN IMMEDIATE ran on it, which failed
        // with "cannot start a transaction within a transaction" and left jobs unrecorded (found by the soak,
        // bench/soak/soak.sh; testSearchScanAndWritesFromOtherThreadsDoNotShareATransaction).
        try lock.withLock {
            // Reading through a memory map skips a copy of every page into SQLite's cache.
            try db.execute("PRAGMA mmap_size = 68719476736")
            defer { try? db.execute("PRAGMA mmap_size = 0") }
            try db.readTransaction {
                let n = Int(try db.scalarInt("SELECT count(*) FROM generations WHERE \(clause)", values) ?? 0)
                reserve(n)
                let s = try db.prepare("SELECT id, \(Self.searchColumns) FROM generations WHERE \(clause) ORDER BY id")
                try s.bind(values)
                var seen = 0
                while seen < n, try s.step() {
                    try row(s.int(0), try Self.searchVector(s, id: s.int(0), ranking: ranking))
                    seen += 1
                }
            }
        }
    }

    public func searchVector(id: Int64, ranking: SearchRanking, dim: Int) throws -> [Float]? {
        return try lock.withLock {
            let s = try db.prepare("SELECT id, \(Self.searchColumns) FROM generations WHERE id = ?")
            try s.bind([.int(id)])
            guard try s.step() else { return nil }
            return try Self.searchVector(s, id: id, ranking: ranking) ?? [Float](repeating: 0, count: dim)
        }
    }

    /// Columns 1–4 of the statements `searchVector` reads.
    static let searchColumns = "picture_dim, picture_embedding, dim, embedding"

    /// The search vector of the row `s` stands on (columns as `searchColumns`, after the id).
    static func searchVector(_ s: Statement, id: Int64, ranking: SearchRanking) throws -> [Float]? {
        func read(_ dimColumn: Int32, _ blobColumn: Int32, _ what: String) throws -> [Float]? {
            guard s.isNull(dimColumn) == false else { return nil }
            return try s.floats(blobColumn, count: Int(s.int(dimColumn)), what: "the \(what) of generation \(id)")
        }
        return ranking.vector(picture: try read(1, 2, "picture embedding"), decoder: try read(3, 4, "image embedding"))
    }

    // MARK: - Consistency

    /// The startup check: removes what interrupted runs left (temporary files of processes that are gone,
    /// the one possible uncommitted `<id>.png`, files of removed generations not yet unlinked), under the
    /// write lock. Cost does not grow with the store: no folder listing.
    func cleanUp() throws -> ConsistencyReport {
        try db.writeTransaction {
            var report = ConsistencyReport()
            report.staleTemporaryFiles = staleTemporaryFiles(clean: true)
            let next = (try db.scalarInt("SELECT seq FROM sqlite_sequence WHERE name = 'generations'") ?? 0) + 1
            let candidate = "\(next).png"
            if FileManager.default.fileExists(atPath: imagesURL.appendingPathComponent(candidate).path),
               try db.scalarInt("SELECT 1 FROM generations WHERE image_file = ?", [.text(candidate)]) == nil {
                unlink(imagesURL.appendingPathComponent(candidate).path)
                report.orphanFiles.append(candidate)
            }
            let s = try db.prepare("SELECT file FROM removed_files")
            var pending: [String] = []
            while try s.step() { if let f = s.text(0) { pending.append(f) } }
            for name in pending {
                let path = imagesURL.appendingPathComponent(name).path
                if unlink(path) == 0 { report.orphanFiles.append(name) } else if errno != ENOENT { continue }
                try db.run("DELETE FROM removed_files WHERE file = ?", [.text(name)])
            }
            return report
        }
    }

    /// Temporary files whose process is gone (or that are a day old: the pid was reused).
    private func staleTemporaryFiles(clean: Bool) -> [String] {
        let fm = FileManager.default
        let now = Date()
        var stale: [String] = []
        for name in (try? fm.contentsOfDirectory(atPath: temporaryFolderURL.path)) ?? [] {
            let path = temporaryFolderURL.appendingPathComponent(name).path
            let age = now.timeIntervalSince((try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? now)
            let owner = Self.temporaryOwner(name)
            let alive = owner.map { $0 == getpid() || kill($0, 0) == 0 || errno == EPERM } ?? false
            if !alive || age > 86_400 {
                if clean { unlink(path) }
                stale.append(name)
            }
        }
        return stale.sorted()
    }

    /// The full check (`unclip check`): everything the startup check looks at, plus every image file without a
    /// row and every row without its file; `verify` re-hashes every image. With `clean`, removes the leftovers
    /// (never rows: a generation whose file is missing keeps its embedding, and `regenerate` restores the file).
    public func check(verify: Bool, clean: Bool) throws -> ConsistencyReport {
        return try lock.withLock {
            if clean {
                guard isWritable else { throw StoreError.readOnly(path: url.path, detail: "cleaning needs write access") }
                return try db.writeTransaction { try fullCheck(verify: verify, clean: true) }
            }
            return try db.readTransaction { try fullCheck(verify: verify, clean: false) }
        }
    }

    private func fullCheck(verify: Bool, clean: Bool) throws -> ConsistencyReport {
        var report = ConsistencyReport()
        report.staleTemporaryFiles = staleTemporaryFiles(clean: clean)
        let fm = FileManager.default
        var rows: [String: (Int64, String)] = [:]
        let s = try db.prepare("SELECT id, image_file, sha256 FROM generations ORDER BY id")
        while try s.step() { rows[s.text(1) ?? ""] = (s.int(0), s.text(2) ?? "") }
        let names = Set((try? fm.contentsOfDirectory(atPath: imagesURL.path)) ?? [])
        for name in names.sorted() where rows[name] == nil && Self.isStoreImageName(name) {
            if clean { unlink(imagesURL.appendingPathComponent(name).path) }
            report.orphanFiles.append(name)
        }
        if clean { try db.run("DELETE FROM removed_files") }
        for (name, (id, digest)) in rows.sorted(by: { $0.value.0 < $1.value.0 }) {
            guard names.contains(name) else { report.missingImages.append(id); continue }
            if verify, let data = fm.contents(atPath: imagesURL.appendingPathComponent(name).path), SHA256.hex(data) != digest {
                report.changedImages.append(id)
            }
        }
        return report
    }

    /// The pid in a temporary file's name ("PID-RANDOM.png", or the PNG writer's own ".PID-RANDOM.png.PID.N.tmp").
    static func temporaryOwner(_ name: String) -> pid_t? {
        pid_t(name.drop { $0 == "." }.prefix { $0.isNumber })
    }

    /// Names the store gives its images: "<id>.png".
    static func isStoreImageName(_ name: String) -> Bool {
        name.hasSuffix(".png") && !name.dropLast(4).isEmpty && name.dropLast(4).allSatisfy(\.isNumber)
    }
}

/// `access(2)` (named apart from Swift's access control keywords).
@inline(__always) private func access_(_ path: String, _ mode: Int32) -> Int32 { access(path, mode) }
