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

    /// `configuration.workers` runners (at least one) over `models`.
    public init(configuration: ServerConfiguration, store: any GenerationStore, models: [ServedModel], logger: Logger) throws {
        guard configuration.workers >= 1 else { throw ServerError.configuration("a worker needs at least one runner") }
        let pool = try ModelPool(models)
        let hub = JobHub(), metrics = ServerMetrics()
        runners = (0..<configuration.workers).map { _ in
            JobRunner(store: store, models: pool, hub: hub, metrics: metrics, configuration: configuration, logger: logger)
        }
        self.logger = logger
    }

    /// Runs until SIGTERM or SIGINT (or `stopOnSignals: false` and the task is cancelled).
    public func run(stopOnSignals: Bool = true) async throws {
        try await ServiceGroup(configuration: .init(services: runners as [any Service],
                                                    gracefulShutdownSignals: stopOnSignals ? [.sigterm, .sigint] : [], logger: logger)).run()
    }
}
