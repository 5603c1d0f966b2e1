import Foundation
import UnCLIPStore

/// The job queue in the `jobs` table. Claims and state changes are write transactions (BEGIN IMMEDIATE), so
/// processes sharing the file never claim one job twice.
extension SQLiteStore {
    private static let jobColumns = """
        id, created_at, kind, owner, model, payload, status, error, cancel_requested, started_at, finished_at, attempts, result
        """

    private func readJob(_ s: Statement) throws -> JobRecord {
        let id = s.int(0)
        guard let status = JobStatus(rawValue: s.text(6) ?? "") else {
            throw StoreError.badEmbedding(path: url.path, what: "job \(id)", reason: "unknown status '\(s.text(6) ?? "")'")
        }
        return JobRecord(id: id, createdAt: s.text(1) ?? "", kind: s.text(2) ?? "", owner: s.text(3) ?? "", model: s.text(4),
                         payload: s.text(5) ?? "", status: status, error: s.text(7), cancelRequested: s.int(8) != 0,
                         startedAt: s.text(9), finishedAt: s.text(10), attempts: Int(s.int(11)),
                         generations: s.text(12).flatMap { try? JSONDecoder().decode([Int64].self, from: Data($0.utf8)) } ?? [])
    }

    private func jobGenerations(_ id: Int64, in db: Database) throws -> [Int64] {
        let s = try db.prepare("SELECT id FROM generations WHERE job_id = ? ORDER BY job_index")
        try s.bind([.int(id)])
        var out: [Int64] = []
        while try s.step() { out.append(s.int(0)) }
        return out
    }

    private func requireWritable() throws {
        guard isWritable else { throw StoreError.readOnly(path: url.path, detail: "opened for reading only") }
    }

    public func enqueue(_ job: NewJob, limit: Int?) throws -> JobRecord {
        try lock.withLock {
            try requireWritable()
            let id: Int64 = try db.writeTransaction {
                if let limit {
                    let queued = try db.scalarInt("SELECT count(*) FROM jobs WHERE status = 'queued'") ?? 0
                    guard queued < limit else { throw StoreError.queueFull(limit: limit) }
                }
                try db.run("INSERT INTO jobs(created_at, kind, owner, model, payload, status) VALUES(?, ?, ?, ?, ?, 'queued')",
                           [.text(StoreTime.now()), .text(job.kind), .text(job.owner), job.model.map { .text($0) } ?? .null,
                            .text(job.payload)])
                return db.lastInsertRowID
            }
            return try self.job(id)
        }
    }

    public func job(_ id: Int64) throws -> JobRecord {
        try read { db in
            do {
                let s = try db.prepare("SELECT \(Self.jobColumns) FROM jobs WHERE id = ?")
                try s.bind([.int(id)])
                guard try s.step() else { throw StoreError.noSuchJob(id: id, path: url.path) }
                var j = try readJob(s)
                let linked = try jobGenerations(id, in: db)
                if !linked.isEmpty { j.generations = linked }
                return j
            }
        }
    }

    public func jobs(statuses: [JobStatus], limit: Int?) throws -> [JobRecord] {
        try read { db in
            do {
                let clause = statuses.isEmpty ? "" : "WHERE status IN (\(statuses.map { _ in "?" }.joined(separator: ", ")))"
                let s = try db.prepare("SELECT \(Self.jobColumns) FROM jobs \(clause) ORDER BY id DESC \(limit.map { "LIMIT \($0)" } ?? "")")
                try s.bind(statuses.map { .text($0.rawValue) })
                var out: [JobRecord] = []
                while try s.step() { out.append(try readJob(s)) }
                for i in out.indices {
                    let linked = try jobGenerations(out[i].id, in: db)
                    if !linked.isEmpty { out[i].generations = linked }
                }
                return out
            }
        }
    }

    /// The claim order (`JobClaimOrder`) over the queued jobs.
    private func claimOrder(in db: Database) throws -> [JobRecord] {
        var lastClaim: [String: Int64] = [:]
        let c = try db.prepare("SELECT owner, max(claim_seq) FROM jobs WHERE claim_seq IS NOT NULL GROUP BY owner")
        while try c.step() { lastClaim[c.text(0) ?? ""] = c.int(1) }
        let s = try db.prepare("SELECT \(Self.jobColumns) FROM jobs WHERE status = 'queued' ORDER BY id")
        var queued: [JobRecord] = []
        while try s.step() { queued.append(try readJob(s)) }
        return JobClaimOrder.order(queued: queued, lastClaim: lastClaim)
    }

    public func queuedInClaimOrder() throws -> [JobRecord] {
        try read { db in try claimOrder(in: db) }
    }

    /// One machine, no leases: a job left running by a runner that died is queued again at the next start.
    public func renewLease(_ id: Int64) throws -> Bool {
        try read { db in
            guard let flag = try db.scalarInt("SELECT cancel_requested FROM jobs WHERE id = ?", [.int(id)]) else {
                throw StoreError.noSuchJob(id: id, path: url.path)
            }
            return flag != 0
        }
    }

    public func claimNextJob(models: [String]?) throws -> JobRecord? {
        try lock.withLock {
            try requireWritable()
            let id: Int64? = try db.writeTransaction {
                guard let next = try claimOrder(in: db).first(where: { j in models.map { j.model == nil || $0.contains(j.model!) } ?? true })
                else { return nil }
                let seq = (try db.scalarInt("SELECT max(claim_seq) FROM jobs") ?? 0) + 1
                try db.run("UPDATE jobs SET status = 'running', claim_seq = ?, started_at = ?, attempts = attempts + 1 WHERE id = ?",
                           [.int(seq), .text(StoreTime.now()), .int(next.id)])
                return next.id
            }
            return try id.map { try job($0) }
        }
    }

    public func finishJob(_ id: Int64, status: JobStatus, error: String?, result: [Int64]) throws {
        try lock.withLock {
            try requireWritable()
            guard status.isFinal else { throw StoreError.invalid("a job can only finish as done, failed or cancelled, not \(status.rawValue)") }
            try db.writeTransaction {
                let ids = result.isEmpty ? SQLValue.null : .text("[\(result.map(String.init).joined(separator: ","))]")
                try db.run("UPDATE jobs SET status = ?, error = ?, finished_at = ?, result = ? WHERE id = ?",
                           [.text(status.rawValue), error.map { .text($0) } ?? .null, .text(StoreTime.now()), ids, .int(id)])
                guard db.changes > 0 else { throw StoreError.noSuchJob(id: id, path: url.path) }
            }
        }
    }

    public func releaseJob(_ id: Int64) throws {
        try lock.withLock {
            try requireWritable()
            try db.writeTransaction {
                try db.run("UPDATE jobs SET status = 'queued' WHERE id = ? AND status = 'running'", [.int(id)])
            }
        }
    }

    @discardableResult
    public func cancelJob(_ id: Int64) throws -> JobRecord {
        try lock.withLock {
            try requireWritable()
            try db.writeTransaction {
                guard let status = try db.scalarText("SELECT status FROM jobs WHERE id = ?", [.int(id)]) else {
                    throw StoreError.noSuchJob(id: id, path: url.path)
                }
                if status == JobStatus.queued.rawValue {
                    try db.run("UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?", [.text(StoreTime.now()), .int(id)])
                } else if status == JobStatus.running.rawValue {
                    try db.run("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", [.int(id)])
                }
            }
            return try job(id)
        }
    }

    public func requeueInterruptedJobs() throws -> [Int64] {
        try lock.withLock {
            try requireWritable()
            return try db.writeTransaction {
                var ids: [Int64] = []
                let s = try db.prepare("SELECT id FROM jobs WHERE status = 'running' ORDER BY id")
                while try s.step() { ids.append(s.int(0)) }
                // A cancel asked for before the stop still holds; the rest run again.
                try db.run("UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE status = 'running' AND cancel_requested = 1",
                           [.text(StoreTime.now())])
                try db.run("UPDATE jobs SET status = 'queued' WHERE status = 'running'")
                return ids
            }
        }
    }
}
