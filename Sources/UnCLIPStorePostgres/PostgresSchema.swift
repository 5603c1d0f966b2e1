/// The PostgreSQL store's schema as forward migrations, numbered like the SQLite backend's so `storedSchemaVersion`
/// means the same thing on both. Append new migrations; never edit old ones.
///
/// Differences from the SQLite schema, and why:
/// - images live in a table of their own, keyed by sha256: machines that share the database share no disk, and
///   two generations with the same picture store it once;
/// - prompts are unique by their sha256, not their text (a b-tree entry must fit in a third of a page, and
///   prompts may be long);
/// - jobs carry a lease (worker, lease_until) so a worker that vanishes gives its job back, and a claim order
///   kept per owner (job_owners) so the queue can take turns without scanning history.
enum PostgresSchema {
    /// Written into `unclip_meta` so a database used by something else is refused rather than altered.
    static let application = "unclip"

    static let migrations: [(version: Int, sql: String)] = [
        (3, """
        CREATE TABLE unclip_meta(key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE models(
            id bigserial PRIMARY KEY,
            fingerprint text NOT NULL UNIQUE,
            path text NOT NULL,
            prior_path text,
            created_at text NOT NULL
        );
        CREATE TABLE prompts(
            id bigserial PRIMARY KEY,
            sha256 text NOT NULL UNIQUE,
            text text NOT NULL
        );
        CREATE TABLE text_encodings(
            id bigserial PRIMARY KEY,
            model_id bigint NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            prompt_id bigint NOT NULL REFERENCES prompts(id),
            encoder text NOT NULL CHECK(encoder IN ('prior', 'decoder')),
            clip_skip integer NOT NULL DEFAULT 0,
            tokens integer NOT NULL,
            width integer NOT NULL,
            hidden_states bytea NOT NULL CHECK(length(hidden_states) = 4 * tokens * width),
            proj_dim integer,
            text_embeds bytea CHECK(text_embeds IS NULL OR length(text_embeds) = 4 * proj_dim),
            mask bytea,
            created_at text NOT NULL,
            UNIQUE(model_id, prompt_id, encoder, clip_skip)
        );
        CREATE TABLE prior_runs(
            id bigserial PRIMARY KEY,
            model_id bigint NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            prompt_id bigint NOT NULL REFERENCES prompts(id),
            seed bigint NOT NULL,
            steps integer NOT NULL,
            guidance double precision NOT NULL,
            candidates integer NOT NULL CHECK(candidates >= 1),
            scheduler text NOT NULL,
            dim integer NOT NULL CHECK(dim > 0),
            embeddings bytea NOT NULL CHECK(length(embeddings) = 4 * candidates * dim),
            scores bytea NOT NULL CHECK(length(scores) = 4 * candidates),
            chosen integer NOT NULL CHECK(chosen >= 0 AND chosen < candidates),
            draws text NOT NULL,
            seconds double precision,
            created_at text NOT NULL,
            UNIQUE(model_id, prompt_id, seed, steps, guidance, candidates, scheduler)
        );
        CREATE TABLE images(
            sha256 text PRIMARY KEY,
            data bytea NOT NULL
        );
        CREATE TABLE generations(
            id bigserial PRIMARY KEY,
            created_at text NOT NULL,
            kind text NOT NULL CHECK(kind IN ('text-to-image', 'variation', 'interpolation', 'text-diff', 'source', 'edit')),
            model_id bigint REFERENCES models(id),
            prompt_id bigint REFERENCES prompts(id),
            negative_prompt text,
            settings text NOT NULL,
            seed bigint,
            prior_run_id bigint REFERENCES prior_runs(id) ON DELETE SET NULL,
            noise_level integer,
            dim integer CHECK(dim IS NULL OR dim > 0),
            embedding bytea CHECK(coalesce(length(embedding) = 4 * dim, dim IS NULL AND embedding IS NULL)),
            sha256 text NOT NULL REFERENCES images(sha256),
            width integer NOT NULL,
            height integer NOT NULL,
            file_bytes integer NOT NULL,
            seconds double precision,
            picture_dim integer CHECK(picture_dim IS NULL OR picture_dim > 0),
            picture_embedding bytea CHECK(coalesce(length(picture_embedding) = 4 * picture_dim, picture_dim IS NULL AND picture_embedding IS NULL)),
            starred boolean NOT NULL DEFAULT false,
            job_id bigint,
            job_index integer
        );
        CREATE INDEX generations_created ON generations(created_at);
        CREATE INDEX generations_sha256 ON generations(sha256);
        CREATE INDEX generations_model ON generations(model_id);
        CREATE INDEX generations_starred ON generations(starred) WHERE starred;
        CREATE UNIQUE INDEX generations_job ON generations(job_id, job_index) WHERE job_id IS NOT NULL;
        CREATE TABLE generation_parents(
            child_id bigint NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
            role text NOT NULL,
            parent_id bigint REFERENCES generations(id) ON DELETE SET NULL,
            parent_ref bigint NOT NULL,
            PRIMARY KEY(child_id, role)
        );
        CREATE INDEX generation_parents_parent ON generation_parents(parent_id);
        CREATE TABLE jobs(
            id bigserial PRIMARY KEY,
            created_at text NOT NULL,
            kind text NOT NULL,
            owner text NOT NULL,
            model text,
            payload text NOT NULL,
            status text NOT NULL CHECK(status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            error text,
            cancel_requested boolean NOT NULL DEFAULT false,
            started_at text,
            finished_at text,
            attempts integer NOT NULL DEFAULT 0,
            result text,
            worker text,                        -- who holds it while running
            lease_until timestamptz             -- when the queue takes it back if no heartbeat renews it
        );
        CREATE INDEX jobs_queued ON jobs(id) WHERE status = 'queued';
        CREATE INDEX jobs_running ON jobs(lease_until) WHERE status = 'running';
        CREATE TABLE job_owners(
            owner text PRIMARY KEY,
            last_claim bigint NOT NULL
        );
        CREATE SEQUENCE job_claims;
        """),
    ]

    static var currentVersion: Int { migrations.map(\.version).max() ?? 0 }

    /// Serialises schema changes between processes opening the same database at once (any constant works;
    /// this one spells "UNCL").
    static let migrationLock: Int64 = 0x554E_434C
}
