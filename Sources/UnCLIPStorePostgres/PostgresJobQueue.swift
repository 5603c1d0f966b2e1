import Foundation
import PostgresNIO
import UnCLIPStore

/// The job queue in PostgreSQL, shared by every worker that connects.
///
/// A claim is `SELECT … FOR UPDATE SKIP LOCKED` (as AI Horde hands out work): concurrent workers each lock a
/// different queued row without waiting on one another. A claimed job carries a lease (`lease_until`) that the
/// worker's heartbeat renews; a job whose lease runs out (its worker was killed, or lost its network) goes back to
/// the queue at the next claim, and fails with the reason once it has been claimed `maxAttempts` times.
///
/// Exactly once: every write a worker makes for a job (each image, and the job's end) checks in the same
/// transaction that the worker still holds the lease, and an image already recorded for a job is never recorded
/// again; so however often a job is claimed, its images and its end are stored once.
extension PostgresStore {
    private static let jobColumns = """
        id, created_at, kind, owner, model, payload, status, error, cancel_requested, started_at, finished_at, attempts, result
        """

    private func readJob(_ r: PostgresRandomAccessRow) throws -> JobRecord {
        let id = try r.int(0)
        let statusText = try r.text(6) ?? ""
        guard let status = JobStatus(rawValue: statusText) else {
            throw StoreError.badEmbedding(path: location, what: "job \(id)", reason: "unknown status '\(statusText)'")
        }
        return JobRecord(id: id, createdAt: try r.text(1) ?? "", kind: try r.text(2) ?? "", owner: try r.text(3) ?? "",
                         model: try r.text(4), payload: try r.text(5) ?? "", status: status, error: try r.text(7),
                         cancelRequested: try r.bool(8), startedAt: try r.text(9), finishedAt: try r.text(10),
                         attempts: Int(try r[11].decode(Int32.self)),
                         generations: try r.text(12).flatMap { try? JSONDecoder().decode([Int64].self, from: Data($0.utf8)) } ?? [])
    }

    /// Jobs with the generations they recorded under their link (in image order) filled in.
    private func withGenerations(_ jobs: [JobRecord]) throws -> [JobRecord] {
        guard !jobs.isEmpty else { return jobs }
        var linked: [Int64: [Int64]] = [:]
        for r in try session.query("SELECT job_id, id FROM generations WHERE job_id = ANY($1) ORDER BY job_id, job_index",
                                   [.ints(jobs.map(\.id))]) {
            linked[try r.int(0), default: []].append(try r.int(1))
        }
        return jobs.map { j in
            var j = j
            if let ids = linked[j.id], !ids.isEmpty { j.generations = ids }
            return j
        }
    }

    public func enqueue(_ job: NewJob, limit: Int?) throws -> JobRecord {
        let id: Int64 = try session.transaction {
            if let limit {
                // One enqueuer at a time counts and inserts, so concurrent front ends cannot overfill the queue.
                try session.query("SELECT pg_advisory_xact_lock($1)", [.int(PostgresSchema.migrationLock + 1)])
                let queued = try session.scalarInt("SELECT count(*) FROM jobs WHERE status = 'queued'") ?? 0
                guard queued < limit else { throw StoreError.queueFull(limit: limit) }
            }
            guard let id = try session.scalarInt("""
                INSERT INTO jobs(created_at, kind, owner, model, payload, status) VALUES($1, $2, $3, $4, $5, 'queued') RETURNING id
                """, [.text(StoreTime.now()), .text(job.kind), .text(job.owner), .optional(job.model, PGValue.text), .text(job.payload)])
            else { throw StoreError.invalid("store \(location): the new job has no id") }
            // Delivered at commit: idle workers wake at once instead of at their next poll.
            try session.query("SELECT pg_notify('unclip_jobs', $1)", [.text(String(id))])
            return id
        }
        return try self.job(id)
    }

    public func job(_ id: Int64) throws -> JobRecord {
        guard let r = try session.query("SELECT \(Self.jobColumns) FROM jobs WHERE id = $1", [.int(id)]).first else {
            throw StoreError.noSuchJob(id: id, path: location)
        }
        return try withGenerations([try readJob(r)])[0]
    }

    public func jobs(statuses: [JobStatus], limit: Int?) throws -> [JobRecord] {
        let clause = statuses.isEmpty ? "" : "WHERE status = ANY($1)"
        let rows = try session.query("SELECT \(Self.jobColumns) FROM jobs \(clause) ORDER BY id DESC \(limit.map { "LIMIT \(max(0, $0))" } ?? "")",
                                     statuses.isEmpty ? [] : [.texts(statuses.map(\.rawValue))])
        return try withGenerations(rows.map(readJob))
    }

    public func queuedInClaimOrder() throws -> [JobRecord] {
        try session.transaction {
            var lastClaim: [String: Int64] = [:]
            for r in try session.query("SELECT owner, last_claim FROM job_owners") { lastClaim[try r.text(0) ?? ""] = try r.int(1) }
            let queued = try session.query("SELECT \(Self.jobColumns) FROM jobs WHERE status = 'queued' ORDER BY id").map(readJob)
            return JobClaimOrder.order(queued: queued, lastClaim: lastClaim)
        }
    }

    /// Jobs whose lease ran out go back to the queue, or fail once they have had `maxAttempts` claims; a job whose
    /// cancel was asked for is cancelled instead. Returns the ids put back.
    @discardableResult
    private func reclaimExpiredLeases() throws -> [Int64] {
        let now = StoreTime.now()
        try session.query("""
            UPDATE jobs SET status = 'cancelled', finished_at = $1, worker = NULL, lease_until = NULL
            WHERE status = 'running' AND lease_until < now() AND cancel_requested
            """, [.text(now)])
        try session.query("""
            UPDATE jobs SET status = 'failed', finished_at = $1,
                error = 'its worker stopped answering during each of ' || attempts || ' attempts (last: ' || coalesce(worker, '?') || ')',
                worker = NULL, lease_until = NULL
            WHERE status = 'running' AND lease_until < now() AND attempts >= $2
            """, [.text(now), .int(Int64(maxAttempts))])
        return try session.query("""
            UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL
            WHERE status = 'running' AND lease_until < now() RETURNING id
            """).map { try $0.int(0) }
    }

    public func claimNextJob(models: [String]?) throws -> JobRecord? {
        let claimed: Int64? = try session.transaction {
            try reclaimExpiredLeases()
            var values: [PGValue] = []
            var modelCondition = ""
            if let models { values.append(.texts(models)); modelCondition = "AND (j.model IS NULL OR j.model = ANY($1))" }
            // Owners take turns: the owner whose last claim is oldest (or who was never served) first.
            guard let r = try session.query("""
                SELECT j.id, j.owner FROM jobs j LEFT JOIN job_owners o ON o.owner = j.owner
                WHERE j.status = 'queued' \(modelCondition)
                ORDER BY o.last_claim NULLS FIRST, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED
                """, values).first else { return nil }
            let id = try r.int(0)
            try session.query("""
                UPDATE jobs SET status = 'running', worker = $1, lease_until = now() + make_interval(secs => $2),
                    started_at = $3, attempts = attempts + 1 WHERE id = $4
                """, [.text(workerID), .double(leaseSeconds), .text(StoreTime.now()), .int(id)])
            try session.query("""
                INSERT INTO job_owners(owner, last_claim) VALUES($1, nextval('job_claims'))
                ON CONFLICT(owner) DO UPDATE SET last_claim = excluded.last_claim
                """, [.text(try r.text(1) ?? "")])
            return id
        }
        return try claimed.map { try job($0) }
    }

    /// Throws `leaseLost` unless this worker holds the running job (inside the caller's transaction, with the row
    /// locked until it commits, so the lease cannot change hands half-way through the write).
    func requireLease(_ id: Int64) throws {
        guard let r = try session.query("SELECT status, worker FROM jobs WHERE id = $1 FOR UPDATE", [.int(id)]).first else {
            throw StoreError.noSuchJob(id: id, path: location)
        }
        guard try r.text(0) == JobStatus.running.rawValue, try r.text(1) == workerID else {
            throw StoreError.leaseLost(job: id, path: location)
        }
    }

    public func renewLease(_ id: Int64) throws -> Bool {
        guard let r = try session.query("""
            UPDATE jobs SET lease_until = now() + make_interval(secs => $1)
            WHERE id = $2 AND status = 'running' AND worker = $3 RETURNING cancel_requested
            """, [.double(leaseSeconds), .int(id), .text(workerID)]).first else {
            throw StoreError.leaseLost(job: id, path: location)
        }
        return try r.bool(0)
    }

    public func finishJob(_ id: Int64, status: JobStatus, error: String?, result: [Int64]) throws {
        guard status.isFinal else { throw StoreError.invalid("a job can only finish as done, failed or cancelled, not \(status.rawValue)") }
        try session.transaction {
            guard let r = try session.query("SELECT status, worker FROM jobs WHERE id = $1 FOR UPDATE", [.int(id)]).first else {
                throw StoreError.noSuchJob(id: id, path: location)
            }
            let current = try r.text(0)
            // A retry of a finish whose commit went through before the connection dropped finds it done: nothing to do.
            if current == status.rawValue { return }
            guard current == JobStatus.running.rawValue, try r.text(1) == workerID else { throw StoreError.leaseLost(job: id, path: location) }
            let ids: PGValue = result.isEmpty ? .null : .text("[\(result.map(String.init).joined(separator: ","))]")
            try session.query("""
                UPDATE jobs SET status = $1, error = $2, finished_at = $3, result = $4, worker = NULL, lease_until = NULL WHERE id = $5
                """, [.text(status.rawValue), .optional(error, PGValue.text), .text(StoreTime.now()), ids, .int(id)])
        }
    }

    public func releaseJob(_ id: Int64) throws {
        try session.query("""
            UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL
            WHERE id = $1 AND status = 'running' AND worker = $2
            """, [.int(id), .text(workerID)])
        try session.query("SELECT pg_notify('unclip_jobs', $1)", [.text(String(id))])
    }

    @discardableResult
    public func cancelJob(_ id: Int64) throws -> JobRecord {
        try session.transaction {
            guard let status = try session.scalarText("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", [.int(id)]) else {
                throw StoreError.noSuchJob(id: id, path: location)
            }
            if status == JobStatus.queued.rawValue {
                try session.query("UPDATE jobs SET status = 'cancelled', finished_at = $1 WHERE id = $2", [.text(StoreTime.now()), .int(id)])
            } else if status == JobStatus.running.rawValue {
                // The worker learns it at its next heartbeat.
                try session.query("UPDATE jobs SET cancel_requested = true WHERE id = $1", [.int(id)])
            }
        }
        return try job(id)
    }

    /// Many workers share this queue, so only jobs whose lease ran out are interrupted; running jobs of live
    /// workers are left alone.
    public func requeueInterruptedJobs() throws -> [Int64] {
        try session.transaction { try reclaimExpiredLeases() }
    }
}
