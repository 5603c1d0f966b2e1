/// The store's schema as forward migrations. `PRAGMA user_version` holds the number of the last one applied;
/// opening a store runs the missing ones in one write transaction. Append new migrations; never edit old ones.
struct Migration {
    let version: Int
    let sql: String
    /// Rebuilds a table other tables reference (SQLite cannot change a column's constraints in place), so it
    /// runs with foreign keys off and checks them before committing, SQLite's documented procedure.
    var rebuildsTables = false
}

enum Schema {
    /// "UNCL": marks the file as an unclip store, so a foreign SQLite file is refused rather than altered.
    static let applicationID: Int32 = 0x554E_434C

    static let migrations: [Migration] = [
        Migration(version: 1, sql: """
        CREATE TABLE models(
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,   -- sha256 of configs, tokenizer files and weight headers + samples
            path TEXT NOT NULL,                 -- folder where it was last used
            prior_path TEXT,                    -- separate prior folder, if one was used
            created_at TEXT NOT NULL
        );
        CREATE TABLE prompts(
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL UNIQUE
        );
        -- Text encoder outputs keyed by model + exact prompt text (+ clip skip, 0 = last layer).
        CREATE TABLE text_encodings(
            id INTEGER PRIMARY KEY,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            encoder TEXT NOT NULL CHECK(encoder IN ('prior', 'decoder')),
            clip_skip INTEGER NOT NULL DEFAULT 0,
            tokens INTEGER NOT NULL,
            width INTEGER NOT NULL,
            hidden_states BLOB NOT NULL CHECK(length(hidden_states) = 4 * tokens * width),
            proj_dim INTEGER,
            text_embeds BLOB CHECK(text_embeds IS NULL OR length(text_embeds) = 4 * proj_dim),
            mask BLOB,                          -- one byte per token
            created_at TEXT NOT NULL,
            UNIQUE(model_id, prompt_id, encoder, clip_skip)
        );
        -- Prior runs keyed by everything that determines them, with every candidate and its CLIP score.
        CREATE TABLE prior_runs(
            id INTEGER PRIMARY KEY,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            seed INTEGER NOT NULL,              -- UInt64 bit pattern
            steps INTEGER NOT NULL,
            guidance REAL NOT NULL,
            candidates INTEGER NOT NULL CHECK(candidates >= 1),
            scheduler TEXT NOT NULL,
            dim INTEGER NOT NULL CHECK(dim > 0),
            embeddings BLOB NOT NULL CHECK(length(embeddings) = 4 * candidates * dim),
            scores BLOB NOT NULL CHECK(length(scores) = 4 * candidates),
            chosen INTEGER NOT NULL CHECK(chosen >= 0 AND chosen < candidates),
            draws TEXT NOT NULL,                -- JSON array: sizes of the prior's randn calls
            seconds REAL,
            created_at TEXT NOT NULL,
            UNIQUE(model_id, prompt_id, seed, steps, guidance, candidates, scheduler)
        );
        CREATE TABLE generations(
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so an id always names one image
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL CHECK(kind IN ('text-to-image', 'variation', 'interpolation', 'text-diff', 'source')),
            model_id INTEGER REFERENCES models(id),
            prompt_id INTEGER REFERENCES prompts(id),
            negative_prompt TEXT,
            settings TEXT NOT NULL,             -- RecordedSettings as JSON
            seed INTEGER,                       -- UInt64 bit pattern
            prior_run_id INTEGER REFERENCES prior_runs(id) ON DELETE SET NULL,
            noise_level INTEGER,
            dim INTEGER NOT NULL CHECK(dim > 0),
            embedding BLOB NOT NULL CHECK(length(embedding) = 4 * dim),
            image_file TEXT NOT NULL UNIQUE,    -- relative to the image folder
            sha256 TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            file_bytes INTEGER NOT NULL,
            seconds REAL
        );
        CREATE INDEX generations_created ON generations(created_at);
        CREATE INDEX generations_dim_kind ON generations(dim, kind);
        CREATE TABLE generation_parents(
            child_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
            role TEXT NOT NULL,                 -- 'source', 'from', 'to'
            parent_id INTEGER REFERENCES generations(id) ON DELETE SET NULL,
            parent_ref INTEGER NOT NULL,        -- the parent's id, kept after it is removed
            PRIMARY KEY(child_id, role)
        );
        CREATE INDEX generation_parents_parent ON generation_parents(parent_id);
        -- Image files of removed generations, until they are unlinked (rm commits first, then unlinks).
        CREATE TABLE removed_files(
            file TEXT PRIMARY KEY
        );
        """),
        // v2: generations without a decoder embedding (plain Stable Diffusion), the CLIP embedding of each finished
        // picture, and the 'edit' kind. The AUTOINCREMENT sequence is carried over so no id is reused.
        Migration(version: 2, sql: """
        CREATE TABLE generations_v2(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL CHECK(kind IN ('text-to-image', 'variation', 'interpolation', 'text-diff', 'source', 'edit')),
            model_id INTEGER REFERENCES models(id),
            prompt_id INTEGER REFERENCES prompts(id),
            negative_prompt TEXT,
            settings TEXT NOT NULL,
            seed INTEGER,
            prior_run_id INTEGER REFERENCES prior_runs(id) ON DELETE SET NULL,
            noise_level INTEGER,
            dim INTEGER CHECK(dim IS NULL OR dim > 0),  -- NULL: no image embedding
            -- Both present with matching sizes, or both NULL (a NULL comparison would pass a plain CHECK).
            embedding BLOB CHECK(coalesce(length(embedding) = 4 * dim, dim IS NULL AND embedding IS NULL)),
            image_file TEXT NOT NULL UNIQUE,
            sha256 TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            file_bytes INTEGER NOT NULL,
            seconds REAL,
            -- CLIP embedding of the finished picture (the model's image encoder, or --clip); what search ranks.
            picture_dim INTEGER CHECK(picture_dim IS NULL OR picture_dim > 0),
            picture_embedding BLOB CHECK(coalesce(length(picture_embedding) = 4 * picture_dim, picture_dim IS NULL AND picture_embedding IS NULL))
        );
        INSERT INTO generations_v2 SELECT *, NULL, NULL FROM generations;
        DELETE FROM sqlite_sequence WHERE name = 'generations_v2';
        INSERT INTO sqlite_sequence(name, seq) SELECT 'generations_v2', seq FROM sqlite_sequence WHERE name = 'generations';
        DROP TABLE generations;
        ALTER TABLE generations_v2 RENAME TO generations;
        CREATE INDEX generations_created ON generations(created_at);
        CREATE INDEX generations_dim_kind ON generations(dim, kind);
        CREATE INDEX generations_sha256 ON generations(sha256);
        """, rebuildsTables: true),
        // v3: the job queue (the server's, shared by its workers), stars, and which job image made a generation.
        // Added columns only: no rebuild.
        Migration(version: 3, sql: """
        ALTER TABLE generations ADD COLUMN starred INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE generations ADD COLUMN job_id INTEGER;
        ALTER TABLE generations ADD COLUMN job_index INTEGER;
        -- One generation per job image: a job re-run after a crash cannot record an image twice.
        CREATE UNIQUE INDEX generations_job ON generations(job_id, job_index) WHERE job_id IS NOT NULL;
        CREATE INDEX generations_starred ON generations(starred) WHERE starred = 1;
        CREATE INDEX generations_model ON generations(model_id);
        CREATE TABLE jobs(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            owner TEXT NOT NULL,                -- who asked (the queue takes turns between owners)
            model TEXT,                         -- served model name, NULL = the default
            payload TEXT NOT NULL,              -- the front end's request, as JSON
            status TEXT NOT NULL CHECK(status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            error TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            claim_seq INTEGER,                  -- order of claims, for taking turns between owners
            started_at TEXT,
            finished_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            result TEXT                         -- JSON ids of what a job produced without recording (regenerate)
        );
        CREATE INDEX jobs_status ON jobs(status, id);
        CREATE INDEX jobs_owner_claim ON jobs(owner, claim_seq);
        """),
    ]

    static var currentVersion: Int { migrations.map(\.version).max() ?? 0 }
}
