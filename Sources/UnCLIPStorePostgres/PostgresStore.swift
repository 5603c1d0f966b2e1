import Foundation
import Logging
import NIOCore
import PostgresNIO
import UnCLIPStore
import UnCLIPTensor

/// The store in a PostgreSQL database, shared by every machine that connects to it: rows, embeddings, images
/// (content-addressed, in the database: no shared disk needed) and the job queue its workers claim from.
///
/// Each write that belongs together is one transaction, as in the SQLite backend; a generation's row, its
/// parents and its image bytes commit together or not at all, so there is nothing to clean up after a crash
/// and `check` only verifies.
public final class PostgresStore: GenerationStore, @unchecked Sendable {
    let session: PostgresSession
    /// Names this process as a worker in job leases ("host:pid:random").
    public let workerID: String
    /// How long a claimed job stays this worker's without a heartbeat.
    public let leaseSeconds: Double
    /// How many claims a job gets before it fails (each lost lease — a worker that died — counts one).
    public let maxAttempts: Int
    public let isWritable = true
    public private(set) var startupReport = ConsistencyReport()

    public var location: String { session.path }

    /// Connects, refuses databases that are not unclip stores or that have a newer schema, and runs the missing
    /// migrations (under an advisory lock, so two processes opening a new database do not both create it).
    public init(_ location: PostgresLocation, leaseSeconds: Double = 30, maxAttempts: Int = 3, reconnectWindow: TimeInterval = 60,
                role: String = "unclip", logger: Logger = Logger(label: "unclip.postgres")) throws {
        guard leaseSeconds > 0, maxAttempts >= 1 else {
            throw StoreError.invalid("leaseSeconds must be > 0 and maxAttempts ≥ 1 (got \(leaseSeconds), \(maxAttempts))")
        }
        let id = "\(ProcessInfo.processInfo.hostName):\(getpid()):\(UInt32.random(in: 0...UInt32.max))"
        session = try PostgresSession(location, applicationName: "\(role) \(id)", reconnectWindow: reconnectWindow, logger: logger)
        self.leaseSeconds = leaseSeconds
        self.maxAttempts = maxAttempts
        workerID = id
        try migrate()
        vectorIndex = try PostgresVectorIndex.open(session, location: session.path, logger: logger)
    }

    /// pgvector's HNSW search where the database has the extension (`PostgresVectorIndex`); nil: the in-memory index.
    private(set) var vectorIndex: PostgresVectorIndex?
    /// "pgvector 0.8.6 (HNSW)" or "in-memory": what a search runs on (logs and the benchmark).
    public var searchMethod: String { vectorIndex.map { "pgvector \($0.version) (HNSW)" } ?? "in-memory" }

    /// The schema version this build writes.
    public static var schemaVersion: Int { PostgresSchema.currentVersion }

    private func migrate() throws {
        let target = PostgresSchema.currentVersion
        try session.transaction {
            try session.query("SELECT pg_advisory_xact_lock($1)", [.int(PostgresSchema.migrationLock)])
            let hasMeta = try session.scalarInt("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'unclip_meta'") ?? 0
            var version = 0
            if hasMeta > 0 {
                let app = try session.scalarText("SELECT value FROM unclip_meta WHERE key = 'application'")
                guard app == PostgresSchema.application else {
                    throw StoreError.foreignDatabase(path: location, reason: "its unclip_meta table names '\(app ?? "nothing")'")
                }
                version = Int(try session.scalarText("SELECT value FROM unclip_meta WHERE key = 'schema_version'") ?? "0") ?? 0
                if version > target { throw StoreError.newerSchema(path: location, found: version, supported: target) }
            } else {
                let tables = try session.scalarInt("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()") ?? 0
                if tables > 0 {
                    throw StoreError.foreignDatabase(path: location, reason: "it has \(tables) tables and no unclip marker; use an empty database")
                }
            }
            guard version < target else { return }
            for m in PostgresSchema.migrations.sorted(by: { $0.version < $1.version }) where m.version > version {
                // The simple-query protocol takes several statements at once; the extended one (with binds) does not.
                for statement in m.sql.components(separatedBy: ";\n") where !statement.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                    try session.query(statement)
                }
            }
            try session.query("""
                INSERT INTO unclip_meta(key, value) VALUES('application', $1), ('schema_version', $2)
                ON CONFLICT(key) DO UPDATE SET value = excluded.value
                """, [.text(PostgresSchema.application), .text(String(target))])
        }
    }

    public func storedSchemaVersion() throws -> Int {
        Int(try session.scalarText("SELECT value FROM unclip_meta WHERE key = 'schema_version'") ?? "0") ?? 0
    }

    /// Closes the connection now and opens a new one at the next call: lets a test cut the link mid-run.
    @_spi(Tools) public func dropConnection() { session.dropConnection() }
    /// Fills the store with rows of synthetic embeddings in bulk (the search benchmark): `variation`s sharing one
    /// empty image, seeds numbered from `firstSeed`. Not part of the store protocol.
    @_spi(Tools) public func insertSyntheticEmbeddings(_ rows: [[Float]], firstSeed: Int64) throws {
        guard let dim = rows.first?.count else { return }
        try session.transaction {
            try session.query("INSERT INTO images(sha256, data) VALUES('synthetic', '') ON CONFLICT DO NOTHING")
            try session.query("""
                INSERT INTO generations(created_at, kind, settings, seed, dim, embedding, sha256, width, height, file_bytes)
                SELECT $1, 'variation', '{}', s, $2, e, 'synthetic', 0, 0, 0 FROM unnest($3::bigint[], $4::bytea[]) AS t(s, e)
                """, [.text(StoreTime.now()), .int(Int64(dim)), .ints((0..<Int64(rows.count)).map { firstSeed + $0 }),
                      .byteArrays(rows.map(FloatBytes.encode))])
        }
    }

    /// How many times the connection was replaced after it dropped.
    public var reconnects: Int { session.reconnects }

    // MARK: - Models and prompts

    public func registerModel(fingerprint: String, path: String, priorPath: String?) throws -> ModelRecord {
        try session.transaction {
            try session.query("""
                INSERT INTO models(fingerprint, path, prior_path, created_at) VALUES($1, $2, $3, $4)
                ON CONFLICT(fingerprint) DO UPDATE SET path = excluded.path, prior_path = excluded.prior_path
                """, [.text(fingerprint), .text(path), .optional(priorPath, PGValue.text), .text(StoreTime.now())])
            guard let m = try model(fingerprint: fingerprint) else {
                throw StoreError.invalid("store \(location): the model row for \(fingerprint) vanished after insertion")
            }
            return m
        }
    }

    public func model(fingerprint: String) throws -> ModelRecord? { try readModel("fingerprint = $1", [.text(fingerprint)]) }
    public func model(id: Int64) throws -> ModelRecord? { try readModel("id = $1", [.int(id)]) }

    public func latestModel() throws -> ModelRecord? {
        try readModel("id = (SELECT model_id FROM generations WHERE model_id IS NOT NULL ORDER BY id DESC LIMIT 1)", [])
    }

    public func modelsInUse() throws -> [ModelRecord] {
        try session.query("""
            SELECT m.id, m.fingerprint, m.path, m.prior_path FROM models m
            JOIN (SELECT model_id, max(id) AS newest FROM generations WHERE model_id IS NOT NULL GROUP BY model_id) g
              ON g.model_id = m.id ORDER BY g.newest DESC
            """).map(Self.modelRecord)
    }

    private func readModel(_ condition: String, _ values: [PGValue]) throws -> ModelRecord? {
        try session.query("SELECT id, fingerprint, path, prior_path FROM models WHERE \(condition)", values).first.map(Self.modelRecord)
    }

    private static func modelRecord(_ r: PostgresRandomAccessRow) throws -> ModelRecord {
        ModelRecord(id: try r.int(0), fingerprint: try r.text(1) ?? "", path: try r.text(2) ?? "", priorPath: try r.text(3))
    }

    /// The prompt's row id, inserting it (inside a transaction).
    private func promptID(_ text: String) throws -> Int64 {
        let digest = SHA256.hex(Data(text.utf8))
        try session.query("INSERT INTO prompts(sha256, text) VALUES($1, $2) ON CONFLICT(sha256) DO NOTHING", [.text(digest), .text(text)])
        guard let id = try session.scalarInt("SELECT id FROM prompts WHERE sha256 = $1", [.text(digest)]) else {
            throw StoreError.invalid("store \(location): prompt row missing after insertion")
        }
        return id
    }

    // MARK: - Caches

    public func textEncoding(modelID: Int64, prompt: String, encoder: TextEncoderRole, clipSkip: Int) throws -> CachedTextEncoding? {
        guard let r = try session.query("""
            SELECT t.tokens, t.width, t.hidden_states, t.proj_dim, t.text_embeds, t.mask
            FROM text_encodings t JOIN prompts p ON p.id = t.prompt_id
            WHERE t.model_id = $1 AND p.sha256 = $2 AND t.encoder = $3 AND t.clip_skip = $4
            """, [.int(modelID), .text(SHA256.hex(Data(prompt.utf8))), .text(encoder.rawValue), .int(Int64(clipSkip))]).first else { return nil }
        let tokens = Int(try r[0].decode(Int32.self)), width = Int(try r[1].decode(Int32.self))
        let what = "the cached \(encoder.rawValue) text encoding of \"\(prompt.prefix(40))\""
        var e = CachedTextEncoding(tokens: tokens, width: width,
                                   hiddenStates: try r.floats(2, count: tokens * width, path: location, what: what) ?? [])
        e.textEmbeds = try r.floats(4, count: try r[3].decode(Int32?.self).map(Int.init), path: location, what: what)
        if let mask = try r.bytes(5) {
            guard mask.readableBytes == tokens else {
                throw StoreError.badEmbedding(path: location, what: what, reason: "mask has \(mask.readableBytes) entries for \(tokens) tokens")
            }
            e.mask = mask.readableBytesView.map(Int.init)
        }
        return e
    }

    public func saveTextEncoding(_ e: CachedTextEncoding, modelID: Int64, prompt: String, encoder: TextEncoderRole, clipSkip: Int) throws {
        guard e.hiddenStates.count == e.tokens * e.width else {
            throw StoreError.invalid("text encoding of \(e.hiddenStates.count) values is not \(e.tokens) × \(e.width)")
        }
        try session.transaction {
            let pid = try promptID(prompt)
            try session.query("""
                INSERT INTO text_encodings(model_id, prompt_id, encoder, clip_skip, tokens, width, hidden_states, proj_dim,
                                           text_embeds, mask, created_at)
                VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT(model_id, prompt_id, encoder, clip_skip) DO NOTHING
                """, [.int(modelID), .int(pid), .text(encoder.rawValue), .int(Int64(clipSkip)), .int(Int64(e.tokens)),
                      .int(Int64(e.width)), .floats(e.hiddenStates), .optional(e.textEmbeds) { .int(Int64($0.count)) },
                      .optional(e.textEmbeds, PGValue.floats),
                      .optional(e.mask) { m in .bytes(ByteBuffer(bytes: m.map { UInt8(clamping: $0) })) }, .text(StoreTime.now())])
        }
    }

    private static let priorColumns = "r.id, r.dim, r.candidates, r.embeddings, r.scores, r.chosen, r.draws"

    public func priorRun(_ key: PriorRunKey) throws -> CachedPriorRun? {
        try session.query("""
            SELECT \(Self.priorColumns) FROM prior_runs r JOIN prompts p ON p.id = r.prompt_id
            WHERE r.model_id = $1 AND p.sha256 = $2 AND r.seed = $3 AND r.steps = $4 AND r.guidance = $5
              AND r.candidates = $6 AND r.scheduler = $7
            """, priorKeyValues(key, prompt: .text(SHA256.hex(Data(key.prompt.utf8))))).first.map(readPriorRun)
    }

    public func priorRun(id: Int64) throws -> CachedPriorRun? {
        try session.query("SELECT \(Self.priorColumns) FROM prior_runs r WHERE r.id = $1", [.int(id)]).first.map(readPriorRun)
    }

    private func priorKeyValues(_ k: PriorRunKey, prompt: PGValue) -> [PGValue] {
        [.int(k.modelID), prompt, .int(Int64(bitPattern: k.seed)), .int(Int64(k.steps)), .double(Double(k.guidance)),
         .int(Int64(k.candidates)), .text(k.scheduler)]
    }

    private func readPriorRun(_ r: PostgresRandomAccessRow) throws -> CachedPriorRun {
        let id = try r.int(0), dim = Int(try r[1].decode(Int32.self)), n = Int(try r[2].decode(Int32.self))
        let what = "prior run \(id)"
        let draws = (try? JSONDecoder().decode([Int].self, from: Data((try r.text(6) ?? "").utf8))) ?? []
        return CachedPriorRun(id: id, dim: dim, candidates: try r.floats(3, count: n * dim, path: location, what: what) ?? [],
                              scores: try r.floats(4, count: n, path: location, what: what) ?? [],
                              chosenIndex: Int(try r[5].decode(Int32.self)), draws: draws)
    }

    @discardableResult
    public func savePriorRun(_ key: PriorRunKey, dim: Int, candidates: [Float], scores: [Float], chosenIndex: Int,
                             draws: [Int], seconds: Double?) throws -> Int64 {
        try key.check(dim: dim, candidates: candidates, scores: scores, chosenIndex: chosenIndex)
        let drawsJSON = String(decoding: try JSONEncoder().encode(draws), as: UTF8.self)
        return try session.transaction {
            let pid = try promptID(key.prompt)
            let keyValues = priorKeyValues(key, prompt: .int(pid))
            try session.query("""
                INSERT INTO prior_runs(model_id, prompt_id, seed, steps, guidance, candidates, scheduler, dim, embeddings,
                                       scores, chosen, draws, seconds, created_at)
                VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                ON CONFLICT(model_id, prompt_id, seed, steps, guidance, candidates, scheduler) DO NOTHING
                """, keyValues + [.int(Int64(dim)), .floats(candidates), .floats(scores), .int(Int64(chosenIndex)), .text(drawsJSON),
                                  .optional(seconds, PGValue.double), .text(StoreTime.now())])
            guard let id = try session.scalarInt("""
                SELECT id FROM prior_runs WHERE model_id = $1 AND prompt_id = $2 AND seed = $3 AND steps = $4 AND guidance = $5
                  AND candidates = $6 AND scheduler = $7
                """, keyValues) else {
                throw StoreError.invalid("store \(location): prior run missing after insertion")
            }
            return id
        }
    }

    // MARK: - Generations

    public func record(_ g: NewGeneration, png: Data) throws -> StoredGeneration {
        try record(g, png: png, id: nil, createdAt: nil, starred: false, seconds: g.seconds)
    }

    /// Records a generation with its image bytes in one transaction. A generation of a job is recorded only while
    /// this worker holds the job's lease (`StoreError.leaseLost` otherwise), and at most once per job image: a job
    /// image already recorded (by an earlier claim of the job) is returned instead of recorded twice.
    func record(_ g: NewGeneration, png: Data, id fixedID: Int64?, createdAt: String?, starred: Bool, seconds: Double?) throws -> StoredGeneration {
        if g.embedding?.isEmpty == true || g.pictureEmbedding?.isEmpty == true {
            throw StoreError.invalid("an image embedding cannot be empty (record none instead)")
        }
        let digest = SHA256.hex(png)
        let id: Int64 = try session.transaction {
            if let link = g.job, fixedID == nil {
                try requireLease(link.job)
                if let existing = try generationID(job: link) { return existing }
            }
            try session.query("INSERT INTO images(sha256, data) VALUES($1, $2) ON CONFLICT(sha256) DO NOTHING",
                              [.text(digest), .bytes(ByteBuffer(data: png))])
            let pid = try g.prompt.map { try promptID($0) }
            let values: [PGValue] = [
                .text(createdAt ?? StoreTime.now()), .text(g.kind.rawValue), .optional(g.modelID, PGValue.int), .optional(pid, PGValue.int),
                .optional(g.settings.negativePrompt, PGValue.text), .text(try g.settings.json()),
                .optional(g.seed) { .int(Int64(bitPattern: $0)) }, .optional(g.priorRunID, PGValue.int),
                .optional(g.settings.noiseLevel) { .int(Int64($0)) }, .optional(g.embedding) { .int(Int64($0.count)) },
                .optional(g.embedding, PGValue.floats), .text(digest), .int(Int64(g.width)), .int(Int64(g.height)),
                .int(Int64(png.count)), .optional(seconds, PGValue.double), .optional(g.pictureEmbedding) { .int(Int64($0.count)) },
                .optional(g.pictureEmbedding, PGValue.floats), .optional(g.job?.job, PGValue.int),
                .optional(g.job?.index) { .int(Int64($0)) }, .bool(starred),
            ]
            let columns = """
                created_at, kind, model_id, prompt_id, negative_prompt, settings, seed, prior_run_id, noise_level, dim,
                embedding, sha256, width, height, file_bytes, seconds, picture_dim, picture_embedding, job_id, job_index, starred
                """
            let placeholders = (1...values.count).map { "$\($0)" }.joined(separator: ", ")
            let newID: Int64
            if let fixedID {
                try session.query("INSERT INTO generations(id, \(columns)) VALUES($\(values.count + 1), \(placeholders))",
                                  values + [.int(fixedID)])
                newID = fixedID
            } else {
                guard let made = try session.scalarInt("INSERT INTO generations(\(columns)) VALUES(\(placeholders)) RETURNING id", values) else {
                    throw StoreError.invalid("store \(location): the new generation has no id")
                }
                newID = made
            }
            for p in g.parents {
                try session.query("""
                    INSERT INTO generation_parents(child_id, role, parent_id, parent_ref)
                    VALUES($1, $2, (SELECT id FROM generations WHERE id = $3), $3)
                    """, [.int(newID), .text(p.role), .int(p.id)])
            }
            return newID
        }
        return try generation(id)
    }

    private static let generationColumns = """
        g.id, g.created_at, g.kind, g.model_id, p.text, g.settings, g.seed, g.prior_run_id, g.noise_level, g.dim,
        g.embedding, g.sha256, g.width, g.height, g.file_bytes, g.seconds, g.picture_dim, g.picture_embedding,
        g.starred, g.job_id, g.job_index
        """

    /// Where a generation's image is, for messages: the database, then the image's hash.
    func imageURL(sha256: String) -> URL {
        URL(string: "\(location)/images/\(sha256).png") ?? URL(fileURLWithPath: "/\(sha256).png")
    }

    private func readGeneration(_ r: PostgresRandomAccessRow, parents: [ParentLink]) throws -> StoredGeneration {
        let id = try r.int(0)
        let kindText = try r.text(2) ?? ""
        guard let kind = GenerationKind(rawValue: kindText) else {
            throw StoreError.badEmbedding(path: location, what: "generation \(id)", reason: "unknown kind '\(kindText)'")
        }
        func int32(_ i: Int) throws -> Int? { try r[i].decode(Int32?.self).map(Int.init) }
        let sha = try r.text(11) ?? ""
        var g = StoredGeneration(
            id: id, createdAt: try r.text(1) ?? "", kind: kind, modelID: try r.optionalInt(3), prompt: try r.text(4),
            settings: try RecordedSettings.decode(try r.text(5) ?? "", path: location, id: id),
            seed: try r.optionalInt(6).map { UInt64(bitPattern: $0) }, priorRunID: try r.optionalInt(7), noiseLevel: try int32(8),
            embedding: try r.floats(10, count: try int32(9), path: location, what: "the image embedding of generation \(id)"),
            imageURL: imageURL(sha256: sha), sha256: sha, width: try int32(12) ?? 0, height: try int32(13) ?? 0,
            fileBytes: try int32(14) ?? 0, seconds: try r.double(15), parents: parents)
        g.pictureEmbedding = try r.floats(17, count: try int32(16), path: location, what: "the picture embedding of generation \(id)")
        g.starred = try r.bool(18)
        if let job = try r.optionalInt(19) { g.job = JobLink(job: job, index: try int32(20) ?? 0) }
        return g
    }

    public func generation(_ id: Int64) throws -> StoredGeneration {
        try session.transaction {
            guard let r = try session.query("""
                SELECT \(Self.generationColumns) FROM generations g LEFT JOIN prompts p ON p.id = g.prompt_id WHERE g.id = $1
                """, [.int(id)]).first else { throw StoreError.noSuchGeneration(id: id, path: location) }
            return try readGeneration(r, parents: try parents(of: [id])[id] ?? [])
        }
    }

    private func parents(of ids: [Int64]) throws -> [Int64: [ParentLink]] {
        guard !ids.isEmpty else { return [:] }
        var out: [Int64: [ParentLink]] = [:]
        for r in try session.query("""
            SELECT child_id, role, parent_ref, parent_id IS NOT NULL FROM generation_parents WHERE child_id = ANY($1)
            """, [.ints(ids)]) {
            out[try r.int(0), default: []].append(ParentLink(role: try r.text(1) ?? "", id: try r.int(2), exists: try r.bool(3)))
        }
        let order = ["source": 0, "init": 0, "from": 1, "to": 2]
        return out.mapValues { $0.sorted { (order[$0.role] ?? 3) < (order[$1.role] ?? 3) } }
    }

    public func generationID(kind: GenerationKind, sha256: String, modelID: Int64) throws -> Int64? {
        try session.scalarInt("SELECT id FROM generations WHERE kind = $1 AND sha256 = $2 AND model_id = $3 ORDER BY id LIMIT 1",
                              [.text(kind.rawValue), .text(sha256), .int(modelID)])
    }

    public func generationID(sha256: String) throws -> Int64? {
        try session.scalarInt("SELECT id FROM generations WHERE sha256 = $1 ORDER BY id LIMIT 1", [.text(sha256)])
    }

    public func contains(_ id: Int64) throws -> Bool {
        try session.scalarInt("SELECT 1 FROM generations WHERE id = $1", [.int(id)]) != nil
    }

    public func children(of id: Int64) throws -> [Int64] {
        try session.query("SELECT DISTINCT child_id FROM generation_parents WHERE parent_id = $1 ORDER BY child_id", [.int(id)])
            .map { try $0.int(0) }
    }

    /// The filter as SQL conditions over `generations` (aliased `prefix`), numbering parameters from `first`.
    private func conditions(_ f: GenerationFilter, prefix: String = "g.", dimColumn: String = "g.dim") -> (String, [PGValue]) {
        var parts: [String] = [], values: [PGValue] = []
        func add(_ sql: (String) -> String, _ v: PGValue) { values.append(v); parts.append(sql("$\(values.count)")) }
        if let kinds = f.kinds, !kinds.isEmpty { add({ "\(prefix)kind = ANY(\($0))" }, .texts(kinds.map(\.rawValue))) }
        if let since = f.since { add({ "\(prefix)created_at >= \($0)" }, .text(since)) }
        if let dim = f.dim { add({ "\(dimColumn) = \($0)" }, .int(Int64(dim))) }
        if let m = f.modelID { add({ "\(prefix)model_id = \($0)" }, .int(m)) }
        if let starred = f.starred { add({ "\(prefix)starred = \($0)" }, .bool(starred)) }
        if let p = f.parent { add({ "\(prefix)id IN (SELECT child_id FROM generation_parents WHERE parent_id = \($0))" }, .int(p)) }
        if let b = f.beforeID { add({ "\(prefix)id < \($0)" }, .int(b)) }
        if let a = f.afterID { add({ "\(prefix)id > \($0)" }, .int(a)) }
        return (parts.isEmpty ? "" : "WHERE " + parts.joined(separator: " AND "), values)
    }

    public func generations(_ filter: GenerationFilter, limit: Int?) throws -> [StoredGeneration] {
        try session.transaction {
            let (clause, values) = conditions(filter)
            var rows = try session.query("""
                SELECT \(Self.generationColumns) FROM generations g LEFT JOIN prompts p ON p.id = g.prompt_id
                \(clause) ORDER BY g.id DESC \(limit.map { "LIMIT \(max(0, $0))" } ?? "")
                """, values).map { try readGeneration($0, parents: []) }
            let links = try parents(of: rows.map(\.id))
            for i in rows.indices { rows[i].parents = links[rows[i].id] ?? [] }
            return rows
        }
    }

    public func count(_ filter: GenerationFilter) throws -> Int {
        let (clause, values) = conditions(filter)
        return Int(try session.scalarInt("SELECT count(*) FROM generations g \(clause)", values) ?? 0)
    }

    public func generationID(job: JobLink) throws -> Int64? {
        try session.scalarInt("SELECT id FROM generations WHERE job_id = $1 AND job_index = $2", [.int(job.job), .int(Int64(job.index))])
    }

    public func setStarred(_ id: Int64, _ starred: Bool) throws {
        guard try session.execute("UPDATE generations SET starred = $1 WHERE id = $2", [.bool(starred), .int(id)]) > 0 else {
            throw StoreError.noSuchGeneration(id: id, path: location)
        }
    }

    /// Removes a generation, and its image bytes when no other generation shows the same picture.
    @discardableResult
    public func remove(_ id: Int64) throws -> String {
        try session.transaction {
            guard let sha = try session.scalarText("DELETE FROM generations WHERE id = $1 RETURNING sha256", [.int(id)]) else {
                throw StoreError.noSuchGeneration(id: id, path: location)
            }
            try session.query("DELETE FROM images WHERE sha256 = $1 AND NOT EXISTS (SELECT 1 FROM generations WHERE sha256 = $1)", [.text(sha)])
            return imageURL(sha256: sha).absoluteString
        }
    }

    // MARK: - Images

    public func imageData(_ id: Int64) throws -> Data {
        guard let r = try session.query("""
            SELECT g.sha256, i.data FROM generations g LEFT JOIN images i ON i.sha256 = g.sha256 WHERE g.id = $1
            """, [.int(id)]).first else { throw StoreError.noSuchGeneration(id: id, path: location) }
        guard let bytes = try r.bytes(1) else {
            throw StoreError.imageFile(path: imageURL(sha256: try r.text(0) ?? "").absoluteString,
                                       reason: "generation \(id)'s image is missing; regenerating it puts it back")
        }
        return Data(bytes.readableBytesView)
    }

    public func hasImage(_ id: Int64) throws -> Bool {
        try session.scalarInt("SELECT 1 FROM generations g JOIN images i ON i.sha256 = g.sha256 WHERE g.id = $1", [.int(id)]) != nil
    }

    public func restoreImage(_ id: Int64, png: Data) throws {
        let g = try generation(id)
        guard SHA256.hex(png) == g.sha256 else {
            throw StoreError.imageFile(path: g.imageURL.absoluteString, reason: "the bytes do not have generation \(id)'s recorded sha256 \(g.sha256)")
        }
        try session.query("INSERT INTO images(sha256, data) VALUES($1, $2) ON CONFLICT(sha256) DO NOTHING",
                          [.text(g.sha256), .bytes(ByteBuffer(data: png))])
    }

    // MARK: - Search

    public func forEachSearchVector(filter: GenerationFilter, ranking: SearchRanking, reserve: (Int) -> Void,
                                    row: (Int64, [Float]?) throws -> Void) throws {
        guard filter.dim != nil else { throw StoreError.invalid("a search needs the embedding width (filter.dim)") }
        let (clause, values) = conditions(filter, prefix: "", dimColumn: "coalesce(picture_dim, dim)")
        // One snapshot for the count and the rows (REPEATABLE READ), read in pages so a million rows never sit in
        // one result buffer.
        try session.transaction {
            try session.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            let n = Int(try session.scalarInt("SELECT count(*) FROM generations \(clause)", values) ?? 0)
            reserve(n)
            var after: Int64 = .min, seen = 0
            let page = 20_000
            while seen < n {
                let more = clause.isEmpty ? "WHERE id > $\(values.count + 1)" : "\(clause) AND id > $\(values.count + 1)"
                let rows = try session.query("""
                    SELECT id, picture_dim, picture_embedding, dim, embedding FROM generations \(more) ORDER BY id LIMIT \(page)
                    """, values + [.int(after)])
                if rows.isEmpty { break }
                for r in rows where seen < n {
                    let id = try r.int(0)
                    try row(id, try searchVector(r, id: id, ranking: ranking))
                    after = id
                    seen += 1
                }
            }
        }
    }

    public func searchVector(id: Int64, ranking: SearchRanking, dim: Int) throws -> [Float]? {
        guard let r = try session.query("SELECT id, picture_dim, picture_embedding, dim, embedding FROM generations WHERE id = $1",
                                        [.int(id)]).first else { return nil }
        return try searchVector(r, id: id, ranking: ranking) ?? [Float](repeating: 0, count: dim)
    }

    public func indexedSearch(_ query: [Float], filter: GenerationFilter, ranking: SearchRanking, limit: Int) throws -> [SearchIndex.Hit]? {
        guard let vectorIndex else { return nil }
        return try vectorIndex.search(query, filter: filter, ranking: ranking, limit: limit,
                                      conditions: { self.conditions($0) }, exact: { ids in
            var out: [Int64: [Float]] = [:]
            for r in try session.query("SELECT id, picture_dim, picture_embedding, dim, embedding FROM generations WHERE id = ANY($1)", [.ints(ids)]) {
                let id = try r.int(0)
                out[id] = try searchVector(r, id: id, ranking: ranking)
            }
            return out
        })
    }

    private func searchVector(_ r: PostgresRandomAccessRow, id: Int64, ranking: SearchRanking) throws -> [Float]? {
        let e = try r.embeddingPair(id: id, path: location)
        return ranking.vector(picture: e.picture, decoder: e.decoder)
    }

    // MARK: - Consistency

    /// Rows and images commit together, so there is nothing to clean up: the check reports rows whose image is
    /// missing and, with `verify`, images whose bytes no longer hash to their key; `clean` removes images no row uses.
    public func check(verify: Bool, clean: Bool) throws -> ConsistencyReport {
        var report = ConsistencyReport()
        report.missingImages = try session.query("""
            SELECT g.id FROM generations g WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.sha256 = g.sha256) ORDER BY g.id
            """).map { try $0.int(0) }
        report.orphanFiles = try session.query("""
            SELECT i.sha256 FROM images i WHERE NOT EXISTS (SELECT 1 FROM generations g WHERE g.sha256 = i.sha256) ORDER BY 1
            """).map { try $0.text(0) ?? "" }
        if clean { try session.query("DELETE FROM images i WHERE NOT EXISTS (SELECT 1 FROM generations g WHERE g.sha256 = i.sha256)") }
        if verify {
            var after = ""
            while true {
                let rows = try session.query("SELECT sha256, data FROM images WHERE sha256 > $1 ORDER BY sha256 LIMIT 200", [.text(after)])
                if rows.isEmpty { break }
                for r in rows {
                    let sha = try r.text(0) ?? ""
                    after = sha
                    if let b = try r.bytes(1), SHA256.hex(Data(b.readableBytesView)) != sha {
                        report.changedImages += try session.query("SELECT id FROM generations WHERE sha256 = $1 ORDER BY id", [.text(sha)])
                            .map { try $0.int(0) }
                    }
                }
            }
        }
        return report
    }
}
