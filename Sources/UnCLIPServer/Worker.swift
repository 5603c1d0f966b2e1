import Foundation
import Logging
import ServiceLifecycle
import UnCLIPStore

/// `unclip worker`: job runners without the HTTP server, drawing from a store that front ends fill (a PostgreSQL
/// store shared by several machines). It claims only jobs for the models it has loaded, renews each job's lease
/// while it runs, and on SIGTERM or SIGINT stops its job at the next step and gives it back to the queue.
public final class UnCLIPWorker: @unchecked Sendable {
    let runners: [JobRunner]
    let logger: Logger
    let store: any GenerationStore

    /// `configuration.workers` runners (at least one) over `models`.
    public init(configuration: ServerConfiguration, store: any GenerationStore, models: [ServedModel], logger: Logger) throws {
        guard configuration.workers >= 1 else { throw ServerError.configuration("a worker needs at least one runner") }
        let pool = try ModelPool(models)
        let hub = JobHub(relay: (store as? QueueSignals).map(Self.relay)), metrics = ServerMetrics()
        self.store = store
        runners = (0..<configuration.workers).map { _ in
            JobRunner(store: store, models: pool, hub: hub, metrics: metrics, configuration: configuration, logger: logger)
        }
        self.logger = logger
    }

    /// Announces the worker's job events to front ends elsewhere: progress at most 4 times a second per job, no
    /// previews (too large for a notification; front ends show progress without them).
    /// Sent from a queue of its own, in order: the job's thread never waits on the database for an event.
    static func relay(_ signals: any QueueSignals) -> @Sendable (Int64, JobEvent) -> Void {
        let last = ProgressClock()
        let queue = DispatchQueue(label: "unclip.relay")
        return { id, event in
            if event.name == "preview" { return }
            if event.name == "progress" {
                let now = Date()
                guard last.update(id, now, minimum: 0.25) else { return }
            }
            queue.async { signals.announce(job: id, event: event.name, json: event.json) }
        }
    }

    /// When each job last announced progress.
    final class ProgressClock: @unchecked Sendable {
        private let lock = NSLock()
        private var times: [Int64: Date] = [:]
        /// Records `now` for `id` and returns true if at least `minimum` seconds passed since the last one.
        func update(_ id: Int64, _ now: Date, minimum: Double) -> Bool {
            lock.withLock {
                if let t = times[id], now.timeIntervalSince(t) < minimum { return false }
                if times.count > 1000 { times.removeAll() }
                times[id] = now
                return true
            }
        }
    }

    /// Runs until SIGTERM or SIGINT (or `stopOnSignals: false` and the task is cancelled).
    public func run(stopOnSignals: Bool = true) async throws {
        // Woken at once when a job is queued anywhere (the runners also poll, so this only saves latency).
        var listener: (any QueueListener)?
        do { listener = try (store as? QueueSignals)?.listen(queued: { [runners] in for r in runners { r.poke() } }, event: { _, _, _ in }) } catch {
            logger.warning("cannot listen for queued jobs (\(error)); polling instead")
        }
        defer { listener?.stop() }
        try await ServiceGroup(configuration: .init(services: runners as [any Service],
                                                    gracefulShutdownSignals: stopOnSignals ? [.sigterm, .sigint] : [], logger: logger)).run()
    }
}
