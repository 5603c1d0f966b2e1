import Foundation
import Logging
import ServiceLifecycle
import UnCLIPStore

/// Ends the event streams and waiting requests of jobs that other processes run: a front end without runners
/// (`--workers 0`), or one whose store is shared with `unclip worker`s. Every `interval` it reads the jobs somebody
/// here is waiting on and announces those that ended (or started) elsewhere. Jobs this process runs are announced
/// by its runner as they happen; the watcher skips them.
///
/// It also closes every stream and waiter when the server stops, which the runner does too when there is one.
final class JobWatcher: Service, @unchecked Sendable {
    let store: any GenerationStore
    let hub: JobHub
    let interval: Double
    let logger: Logger
    private var announcedRunning = Set<Int64>()

    init(store: any GenerationStore, hub: JobHub, interval: Double = 0.25, logger: Logger) {
        self.store = store; self.hub = hub; self.interval = interval; self.logger = logger
    }

    /// Pokes the local runners when work is queued elsewhere (nil: no runners here).
    var onQueued: (@Sendable () -> Void)?

    func run() async throws {
        // Events of jobs that workers on other machines run, as they happen (a shared store's notifications);
        // the polling below still catches ends, and everything for stores without notifications.
        var listener: (any QueueListener)?
        do {
            listener = try (store as? QueueSignals)?.listen(queued: { [onQueued] in onQueued?() }, event: { [hub] id, name, json in
                let event = JobEvent(name: name, json: json)
                if ["done", "failed", "cancelled"].contains(name) { hub.finished(id, event) } else { hub.publish(id, event) }
            })
        } catch {
            logger.warning("cannot listen to the store's notifications (\(error)); job events from other processes arrive by polling")
        }
        defer { listener?.stop() }
        while !Task.isCancelledOrShuttingDown {
            try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            let ids = hub.watchedJobs()
            guard !ids.isEmpty else { continue }
            // Off the cooperative pool: a store call may wait on the network.
            let jobs: [JobRecord] = await withCheckedContinuation { c in
                DispatchQueue.global().async { [store] in c.resume(returning: ids.compactMap { try? store.job($0) }) }
            }
            for job in jobs {
                if job.status.isFinal {
                    announcedRunning.remove(job.id)
                    hub.finished(job.id, .make(job.status.rawValue, JobView(job, position: nil)))
                } else if job.status == .running, hub.progress?.job != job.id, announcedRunning.insert(job.id).inserted {
                    hub.publish(job.id, .make("running", ["attempt": job.attempts]))
                }
            }
        }
        hub.shutdown(.make("shutdown", ["message": "the server is stopping; queued and running jobs run again when it restarts"]))
    }
}

extension Task where Success == Never, Failure == Never {
    /// The service group asked this service to stop (or its task was cancelled).
    static var isCancelledOrShuttingDown: Bool { Task.isCancelled || Task.isShuttingDownGracefully }
}
