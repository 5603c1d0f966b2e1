import ArgumentParser
import Foundation
import Logging
import UnCLIPEngine
import UnCLIPPipelines
import UnCLIPService
import UnCLIPServer
import UnCLIPStoreSQLite
import UnCLIPTensor

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the models over HTTP: AUTOMATIC1111's API, OpenAI's images API (DALL·E 2) and UnCLIP's own, with a job queue kept in the store.",
        discussion: """
        Models load once and stay warm; every request becomes a job in the store's queue, so accepted work survives \
        a restart (a job that was running runs again from its seed: the same images, none twice). \
        Routes: /sdapi/v1/txt2img, img2img, progress, interrupt, options, sd-models, samplers, schedulers, png-info \
        (AUTOMATIC1111); /v1/images/generations and /v1/images/variations (OpenAI); /api/... (described at \
        /openapi.json); /healthz; /metrics (Prometheus).
        The server listens on 127.0.0.1:7860 (A1111's port) by default. Listening on any other address needs an \
        API key (--api-key or $UNCLIP_API_KEY); clients then send "Authorization: Bearer KEY", or HTTP Basic \
        with the key as password (A1111 clients' --api-auth). Ctrl-C or SIGTERM stops it: the running job stops \
        at its next step and runs again at the next start.
        Examples:
          unclip serve
          unclip serve --model sd21-unclip-small --prior karlo --model weights/shapes
          UNCLIP_API_KEY=$(openssl rand -hex 16) unclip serve --host 0.0.0.0
          curl -s localhost:7860/sdapi/v1/txt2img -d '{"prompt": "a red circle", "seed": 1}'
        Several machines: one PostgreSQL store, a front end that only queues, and workers that compute:
          unclip serve --store postgres://unclip@db:5432/unclip --workers 0
          unclip worker --store postgres://unclip@db:5432/unclip --model weights/shapes
        """)

    @Option(help: "Address to listen on. Anything but loopback needs an API key.") var host = "127.0.0.1"
    @Option(help: "TCP port (7860 is AUTOMATIC1111's; 0 picks a free one).") var port = 7860
    @Option(name: .customLong("api-key"), help: "An API key clients must send (repeatable, one per client: the queue takes turns between keys). Default: $UNCLIP_API_KEY (comma-separated).")
    var apiKeys: [String] = []
    @OptionGroup var served: ServedModelOptions
    @Option(parsing: .unconditional, help: "Job runners in this process. 0: a front end only, for a PostgreSQL store whose jobs `unclip worker` processes run.")
    var workers = 1
    @Option(parsing: .unconditional, help: "Jobs that may wait in the queue; more are answered 429 with Retry-After.") var maxQueue = 1000
    @Option(parsing: .unconditional, help: "Images one request may ask for.") var maxImages = 10
    @Option(parsing: .unconditional, help: "Largest output in pixels per image (width × height).") var maxPixels = 1024 * 1024
    @Option(parsing: .unconditional, help: "Decode a step preview every N steps for progress and event streams (costs a VAE decode each; default: only when a job asks).")
    var previewEvery: Int?
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var cacheOptions: CacheOptions

    func validate() throws {
        if workers < 0 { throw ValidationError("--workers must be 0 or more (got \(workers))") }
        if workers == 0 && !storeOptions.isPostgres {
            throw ValidationError("--workers 0 leaves nothing to run the jobs: use it with a shared store (--store postgres://…) and `unclip worker` processes")
        }
        if maxQueue < 1 { throw ValidationError("--max-queue must be at least 1") }
        if maxImages < 1 { throw ValidationError("--max-images must be at least 1") }
        if let previewEvery, previewEvery < 1 { throw ValidationError("--preview-every must be at least 1") }
        if storeOptions.json { throw ValidationError("--json does not apply to serve: its routes answer JSON; the log goes to stderr") }
    }

    func run() throws {
        var config = ServerConfiguration()
        config.host = host
        config.port = port
        config.apiKeys = apiKeys.isEmpty
            ? (ProcessInfo.processInfo.environment["UNCLIP_API_KEY"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            : apiKeys
        config.limits.maxQueued = maxQueue
        config.limits.maxImages = maxImages
        config.limits.maxPixels = maxPixels
        config.previewEvery = previewEvery
        config.webDirectory = ProcessInfo.processInfo.environment["UNCLIP_WEB_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        do { try config.validate() } catch let e as ServerError {
            throw CLIError(e.description.replacingOccurrences(of: "(api key option or UNCLIP_API_KEY)", with: "(--api-key KEY or UNCLIP_API_KEY)"))
        }

        config.workers = workers
        let store = try storeOptions.open(role: "unclip-serve")
        let models = try served.load(store: store, useCache: !cacheOptions.noCache)
        var logger = Logger(label: "unclip.serve")
        logger.logLevel = .info
        let server = try UnCLIPServer(configuration: config, store: store, models: models, logger: logger)
        let names = models.map(\.name).joined(separator: ", ")
        let keyed = config.apiKeys.isEmpty ? "no API key" : "\(config.apiKeys.count) API key(s)"
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        Task {
            do {
                try await server.run { port in
                    warn("unclip serve: listening on http://\(host):\(port) (models: \(names); store: \(store.location); \(keyed))")
                }
            } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }

    final class Outcome: @unchecked Sendable { var error: Error? }
}
