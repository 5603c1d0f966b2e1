import Foundation

/// Where a job stands. A job is accepted `queued`, claimed `running`, and ends `done`, `failed` or `cancelled`.
public enum JobStatus: String, CaseIterable, Codable, Sendable {
    case queued, running, done, failed, cancelled
    /// Ended: nothing more will happen to it.
    public var isFinal: Bool { self == .done || self == .failed || self == .cancelled }
}

/// Which image of which job a generation is: recorded with the generation in one transaction, so a job that
/// re-runs after a crash finds the images it already made and makes each exactly once.
public struct JobLink: Codable, Sendable, Equatable, Hashable {
    public var job: Int64
    /// The image's index within the job (0-based).
    public var index: Int
    public init(job: Int64, index: Int) { self.job = job; self.index = index }
}

/// A job about to be queued. The store keeps its payload as opaque text: front ends define what it says
/// (the server stores the request as JSON, with its seeds already drawn so a re-run makes the same images).
public struct NewJob: Codable, Sendable, Equatable {
    /// What it computes ("text-to-image", "variation", …), for listings.
    public var kind: String
    /// Who asked (a digest of the API key, or "local"): the queue takes turns between owners.
    public var owner: String
    /// The served model's name, nil = the default one.
    public var model: String?
    public var payload: String
    public init(kind: String, owner: String, model: String?, payload: String) {
        self.kind = kind; self.owner = owner; self.model = model; self.payload = payload
    }
}

/// A queued, running or finished job.
public struct JobRecord: Codable, Sendable, Equatable {
    public var id: Int64
    public var createdAt: String
    public var kind: String
    public var owner: String
    public var model: String?
    public var payload: String
    public var status: JobStatus
    /// Why it failed (failed jobs only).
    public var error: String?
    /// A cancel was asked for while it ran; the runner stops it at the next step.
    public var cancelRequested: Bool
    public var startedAt: String?
    public var finishedAt: String?
    /// How many times a runner claimed it (more than 1: it was running when a server stopped).
    public var attempts: Int
    /// Generations it has recorded so far, in image order.
    public var generations: [Int64]

    public init(id: Int64, createdAt: String, kind: String, owner: String, model: String?, payload: String, status: JobStatus,
                error: String?, cancelRequested: Bool, startedAt: String?, finishedAt: String?, attempts: Int, generations: [Int64]) {
        self.id = id; self.createdAt = createdAt; self.kind = kind; self.owner = owner; self.model = model; self.payload = payload
        self.status = status; self.error = error; self.cancelRequested = cancelRequested; self.startedAt = startedAt
        self.finishedAt = finishedAt; self.attempts = attempts; self.generations = generations
    }
}

/// The persistent job queue every store keeps beside its generations, so accepted work survives a restart and
/// several front ends (or workers) can share one queue.
///
/// Order: FIFO within an owner; between owners the queue takes turns — the next job is the oldest queued job
/// of the owner whose last claim is the longest ago (owners never served first), so one client's hundred jobs
/// cannot starve another's one.
public protocol JobQueue: AnyObject, Sendable {
    /// Queues a job; `StoreError.queueFull` when `limit` jobs are already queued (nothing is stored then).
    func enqueue(_ job: NewJob, limit: Int?) throws -> JobRecord
    /// One job; `StoreError.noSuchJob` when there is none.
    func job(_ id: Int64) throws -> JobRecord
    /// Jobs with these statuses (all when empty), newest first.
    func jobs(statuses: [JobStatus], limit: Int?) throws -> [JobRecord]
    /// The queued jobs in the order they will be claimed.
    func queuedInClaimOrder() throws -> [JobRecord]
    /// Marks the next job `running` and returns it (nil when none is queued). Atomic: two runners never claim one job.
    /// `models`: the served model names this runner has loaded (nil: any); jobs for other models are left to others.
    func claimNextJob(models: [String]?) throws -> JobRecord?
    /// Keeps a running job claimed by this store's runner (stores shared by several machines lease their jobs, and
    /// take a job back whose lease runs out). Returns whether a cancel was asked for; throws
    /// `StoreError.leaseLost` when the job is no longer this runner's.
    func renewLease(_ id: Int64) throws -> Bool
    /// Ends a running job; `error` for failures; `result` names generations it produced without recording
    /// them under its link (a regenerated image).
    func finishJob(_ id: Int64, status: JobStatus, error: String?, result: [Int64]) throws
    /// Gives a running job back to the queue at once (a worker stopping gracefully: the job runs again from its seed,
    /// keeping the images it recorded; `attempts` still counts the claim). Does nothing to a job that is not running.
    func releaseJob(_ id: Int64) throws
    /// A queued job is cancelled at once; a running one is marked so its runner stops it; a finished one is
    /// left as it is. Returns the job as it now stands.
    @discardableResult
    func cancelJob(_ id: Int64) throws -> JobRecord
    /// Puts jobs left `running` by a runner that is gone back in the queue (their next run skips the images
    /// they recorded); returns their ids. Call at startup, when no runner of this store is alive.
    func requeueInterruptedJobs() throws -> [Int64]
}

extension JobQueue {
    public func claimNextJob() throws -> JobRecord? { try claimNextJob(models: nil) }

    public func finishJob(_ id: Int64, status: JobStatus, error: String?) throws {
        try finishJob(id, status: status, error: error, result: [])
    }
}

/// The order claims follow: owners take turns, the one served longest ago (or never) first; FIFO within an owner.
/// Both backends simulate it over their queued jobs, so the position a queue reports is the order claims follow.
public enum JobClaimOrder {
    /// `queued` in id order; `lastClaim`: each owner's most recent claim number (larger = later).
    public static func order(queued: [JobRecord], lastClaim: [String: Int64]) -> [JobRecord] {
        var byOwner: [String: [JobRecord]] = [:]
        var owners: [String] = []
        for j in queued {
            if byOwner[j.owner] == nil { owners.append(j.owner) }
            byOwner[j.owner, default: []].append(j)
        }
        // Rounds: in each, every owner with work left gives its oldest job, owners ordered by their last claim
        // (never = first), ties by their oldest job.
        owners.sort { (lastClaim[$0] ?? -1, byOwner[$0]![0].id) < (lastClaim[$1] ?? -1, byOwner[$1]![0].id) }
        var out: [JobRecord] = []
        var round = 0
        while out.count < queued.count {
            for o in owners where round < byOwner[o]!.count { out.append(byOwner[o]![round]) }
            round += 1
        }
        return out
    }
}

/// Live news of a queue shared between processes on several machines (PostgreSQL's LISTEN/NOTIFY): idle workers
/// wake when work is queued instead of at their next poll, and front ends relay the progress of jobs that workers
/// elsewhere run. Stores that only one machine shares (SQLite) do without: their runners poll.
public protocol QueueSignals: AnyObject, Sendable {
    /// Calls `queued` whenever a job is queued or given back, and `event` with (job, event name, JSON) for every
    /// event a process announces; until the returned listener is stopped. A dropped connection is re-made, and
    /// `queued` called once after, since news may have been missed meanwhile.
    func listen(queued: @escaping @Sendable () -> Void, event: @escaping @Sendable (Int64, String, String) -> Void) throws -> any QueueListener
    /// Tells every listener about an event of a job (best effort: an event too large for a notification is dropped).
    func announce(job: Int64, event: String, json: String)
}

public protocol QueueListener: AnyObject, Sendable {
    func stop()
}
