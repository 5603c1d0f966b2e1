import ArgumentParser
import Foundation
import Logging
import UnCLIPServer
import UnCLIPTensor

struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run jobs from a shared store's queue: the compute half of `unclip serve`, for more machines.",
        discussion: """
        Front ends (`unclip serve`, with --workers 0 or more) queue jobs in a PostgreSQL store; each worker claims \
        the next job for a model it has loaded (FOR UPDATE SKIP LOCKED: workers never wait on one another), makes \
        its images and records them with the job's end. A worker holds a lease on its job and renews it every few \
        seconds: if the worker dies or loses the network, the job goes back to the queue when the lease runs out \
        (30 s) and another worker makes it — the same images from the same seeds, none recorded twice. A job that \
        loses its worker 3 times fails with the reason.
        SIGTERM or Ctrl-C stops the running job at its next step and gives it back to the queue at once.
        Models are named by their folder's name, as the front end names them: give workers the same folders.
        Examples:
          unclip worker --store postgres://unclip@db:5432/unclip
          PGPASSWORD=… unclip worker --store postgres://unclip@db/unclip --model sd21-unclip-small --prior karlo --threads 8
        """)

    @OptionGroup var served: ServedModelOptions
    @Option(parsing: .unconditional, help: "How long a job stays this worker's without a heartbeat; after that the queue gives it to another worker.")
    var leaseSeconds = 30.0
    @Option(parsing: .unconditional, help: "How often the worker renews its job's lease and checks for a cancel (less than half the lease).")
    var heartbeatSeconds = 5.0
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        if leaseSeconds <= 0 || heartbeatSeconds <= 0 || heartbeatSeconds * 2 > leaseSeconds {
            throw ValidationError("--heartbeat-seconds must be positive and at most half of --lease-seconds (got \(heartbeatSeconds) and \(leaseSeconds))")
        }
        if storeOptions.json { throw ValidationError("--json does not apply to worker: it logs to stderr") }
    }

    func run() throws {
        if !storeOptions.isPostgres {
            warn("note: a worker on a SQLite store shares it only with processes on this machine; PostgreSQL (--store postgres://…) shares it between machines")
        }
        let store = try storeOptions.open(role: "unclip-worker", leaseSeconds: leaseSeconds)
        let models = try served.load(store: store, useCache: !cacheOptions.noCache)
        var logger = Logger(label: "unclip.worker")
        logger.logLevel = .info
        var config = ServerConfiguration()
        config.jobNice = 0  // nothing to yield to: a worker answers no requests
        config.heartbeatSeconds = heartbeatSeconds
        let worker = try UnCLIPWorker(configuration: config, store: store, models: models, logger: logger)
        warn("unclip worker: running jobs for \(models.map(\.name).joined(separator: ", ")) from \(store.location)")
        let done = DispatchSemaphore(value: 0)
        let outcome = Serve.Outcome()
        Task {
            do { try await worker.run() } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }
}
