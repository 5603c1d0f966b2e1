import Foundation
import UnCLIPService
import UnCLIPStore

/// One event of a job, as the events stream sends it (`event:` name and JSON `data:`).
public struct JobEvent: Sendable {
    public var name: String
    public var json: String
    public init(name: String, json: String) { self.name = name; self.json = json }

    /// The Server-Sent Events form.
    var sse: String { "event: \(name)\ndata: \(json)\n\n" }

    static func make<T: Encodable>(_ name: String, _ value: T) -> JobEvent {
        JobEvent(name: name, json: (try? String(decoding: JSONCoding.encode(value), as: UTF8.self)) ?? "{}")
    }
}

/// What a running job is doing now (A1111's progress route and the events stream read it).
public struct LiveProgress: Encodable, Sendable {
    public var job: Int64
    public var kind: String
    public var stage: String
    public var step: Int
    public var total: Int
    public var image: Int
    public var images: Int
    /// Seconds left in this image's current stage (nil until a step is done).
    public var eta: Double?
    /// Done fraction of the whole job.
    public var progress: Double
    public var startedAt: Date
    enum CodingKeys: String, CodingKey { case job, kind, stage, step, total, image, images, eta, progress }
}

/// The in-memory side of the job queue: live progress, the latest preview, cancel flags, event subscribers and
/// callers waiting for a job to end. The queue itself (what is accepted, its status, its results) is in the
/// store; this holds only what changes every step.
public final class JobHub: @unchecked Sendable {
    private let lock = NSLock()
    private var current: LiveProgress?
    private var preview: (job: Int64, step: Int, png: Data)?
    private var cancelled = Set<Int64>()
    private var subscribers: [Int64: [UUID: AsyncStream<JobEvent>.Continuation]] = [:]
    private var waiters: [Int64: [UUID: CheckedContinuation<Void, Never>]] = [:]
    private var ended = Set<Int64>()
    private var closed = false
    /// Where a worker's hub also sends each event, for front ends on other machines (nil: nowhere).
    private let relay: (@Sendable (Int64, JobEvent) -> Void)?

    public init(relay: (@Sendable (Int64, JobEvent) -> Void)? = nil) { self.relay = relay }

    public var progress: LiveProgress? { lock.withLock { current } }
    public var latestPreview: (job: Int64, step: Int, png: Data)? { lock.withLock { preview } }

    // MARK: Cancel flags

    func requestCancel(_ id: Int64) { lock.withLock { _ = cancelled.insert(id) } }
    func isCancelled(_ id: Int64) -> Bool { lock.withLock { cancelled.contains(id) } }

    // MARK: Publishing (the runner)

    func started(_ p: LiveProgress) { lock.withLock { current = p; preview = nil } }

    func update(_ p: LiveProgress) {
        lock.withLock { current = p }
        publish(p.job, .make("progress", p))
    }

    func setPreview(job: Int64, step: Int, png: Data) { lock.withLock { preview = (job, step, png) } }

    func publish(_ id: Int64, _ event: JobEvent) {
        let targets = lock.withLock { Array(subscribers[id]?.values ?? [:].values) }
        for t in targets { t.yield(event) }
        relay?(id, event)
    }

    /// The job has ended (whatever its status): sends `event` last, closes its streams and wakes its waiters.
    func finished(_ id: Int64, _ event: JobEvent) {
        let (streams, waiting) = lock.withLock { () -> ([AsyncStream<JobEvent>.Continuation], [CheckedContinuation<Void, Never>]) in
            if current?.job == id { current = nil }
            cancelled.remove(id)
            ended.insert(id)
            let s = Array((subscribers.removeValue(forKey: id) ?? [:]).values)
            let w = Array((waiters.removeValue(forKey: id) ?? [:]).values)
            return (s, w)
        }
        for s in streams { s.yield(event); s.finish() }
        for w in waiting { w.resume() }
        relay?(id, event)
    }

    /// The server is stopping: every event stream gets `event` and ends, every waiter wakes, and later
    /// subscriptions end at once. Open streams would otherwise hold the server's graceful shutdown forever
    /// (a stream of a queued job ends only when the job does, and no job runs while stopping).
    func shutdown(_ event: JobEvent) {
        let (streams, waiting) = lock.withLock { () -> ([AsyncStream<JobEvent>.Continuation], [CheckedContinuation<Void, Never>]) in
            closed = true
            let s = subscribers.values.flatMap(\.values)
            let w = waiters.values.flatMap(\.values)
            subscribers.removeAll()
            waiters.removeAll()
            return (s, w)
        }
        for s in streams { s.yield(event); s.finish() }
        for w in waiting { w.resume() }
    }

    /// Whether anyone here listens to any job's events.
    var hasListeners: Bool { lock.withLock { !subscribers.isEmpty } }

    /// Jobs someone here waits on or listens to that have not ended (what a `JobWatcher` reads from the store).
    func watchedJobs() -> [Int64] {
        lock.withLock { Array(Set(subscribers.keys).union(waiters.keys).subtracting(ended)).sorted() }
    }

    // MARK: Listening (routes)

    /// Events of a job from now on. The stream ends after the job's final event, or when the client goes.
    func subscribe(_ id: Int64) -> AsyncStream<JobEvent> {
        let key = UUID()
        return AsyncStream(bufferingPolicy: .bufferingNewest(256)) { continuation in
            let open = lock.withLock { () -> Bool in
                if !closed { subscribers[id, default: [:]][key] = continuation }
                return !closed
            }
            if !open { continuation.finish(); return }
            continuation.onTermination = { [weak self] _ in
                self?.lock.withLock { _ = self?.subscribers[id]?.removeValue(forKey: key) }
            }
        }
    }

    /// Returns when the job has ended, or when `isFinal` (read after registering, so no end is missed) says it
    /// already has.
    func waitUntilFinished(_ id: Int64, isFinal: @Sendable () -> Bool) async {
        let key = UUID()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let already = lock.withLock { () -> Bool in
                if ended.contains(id) || closed { return true }
                waiters[id, default: [:]][key] = c
                return false
            }
            if already || isFinal() {
                let stillWaiting = lock.withLock { waiters[id]?.removeValue(forKey: key) != nil }
                if already || stillWaiting { c.resume() }
            }
        }
    }
}
