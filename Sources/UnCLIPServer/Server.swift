import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnCLIPEngine
import UnCLIPImage
import UnCLIPService
import UnCLIPStore

/// Per-request state: who is asking (set by the auth middleware), for the queue's turns between clients.
public struct ServerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// A digest of the caller's API key, or "local" on a server without keys.
    public var owner = "local"
    public init(source: ApplicationRequestContextSource) { coreContext = .init(source: source) }
}

/// `unclip serve`: warm models, the store and its job queue behind three HTTP APIs — AUTOMATIC1111's
/// `/sdapi/v1`, OpenAI's `/v1/images` (DALL·E 2) and our own `/api` — over one library API (the generation
/// service), as the CLI uses it.
public final class UnCLIPServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    public let store: any GenerationStore
    public let models: ModelPool
    let hub = JobHub()
    let metrics = ServerMetrics()
    /// The job runners of this process (none for a front end whose workers run elsewhere).
    let runners: [JobRunner]
    let watcher: JobWatcher
    let thumbnails = ThumbnailCache()
    /// Search indexes kept between queries, caught up with new generations at each one.
    let searchCache = SearchIndexCache()
    let modelNames: ModelNames
    let logger: Logger
    let started = Date()

    public init(configuration: ServerConfiguration, store: any GenerationStore, models: [ServedModel], logger: Logger) throws {
        try configuration.validate()
        self.configuration = configuration
        self.store = store
        self.models = try ModelPool(models)
        self.logger = logger
        modelNames = ModelNames(store: store)
        runners = (0..<configuration.workers).map { [hub, metrics, models = self.models] _ in
            JobRunner(store: store, models: models, hub: hub, metrics: metrics, configuration: configuration, logger: logger)
        }
        watcher = JobWatcher(store: store, hub: hub, logger: logger)
        watcher.onQueued = { [runners] in for r in runners { r.poke() } }
    }

    var limits: ServerLimits { configuration.limits }

    /// The router with every route and middleware.
    func router() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: RequestLogMiddleware(logger: logger, metrics: metrics))
        // The page itself is open (it holds no data; it asks for the key before calling the API).
        router.add(middleware: AuthMiddleware(keys: configuration.apiKeys, open: ["/healthz", "/", "/app.js", "/style.css"]))
        SystemRoutes(server: self).add(to: router)
        WebRoutes(server: self).add(to: router)
        NativeRoutes(server: self).add(to: router.group("api").add(middleware: ErrorShapeMiddleware(shape: .native)))
        A1111Routes(server: self).add(to: router.group("sdapi/v1").add(middleware: ErrorShapeMiddleware(shape: .a1111)))
        OpenAIRoutes(server: self).add(to: router.group("v1").add(middleware: ErrorShapeMiddleware(shape: .openai)))
        return router
    }

    /// The application, for `run` and for tests that drive it on a free port. `onRunning` gets the bound port.
    public func application(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(router: router(),
                    configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "unclip"),
                    onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
                    logger: logger)
    }

    /// The application, the watcher and the job runners as one group. A group stops its services in reverse order,
    /// so the runners stop first (each ends its job at the next step and gives it back to the queue), then the
    /// watcher closes every event stream and waiting request, which the HTTP server then no longer waits for.
    func services(onRunning: @escaping @Sendable (Int) async -> Void, stopOnSignals: Bool) -> ServiceGroup {
        ServiceGroup(configuration: .init(services: [application(onRunning: onRunning), watcher] + runners as [any Service],
                                          gracefulShutdownSignals: stopOnSignals ? [.sigterm, .sigint] : [], logger: logger))
    }

    /// Serves until SIGINT or SIGTERM: then stops accepting, stops the running job at its next step (it runs
    /// again at the next start) and returns.
    public func run(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await services(onRunning: onRunning, stopOnSignals: true).run()
    }

    /// Starts serving in the background and returns once the server listens (tests, programs that embed it);
    /// `stop` shuts it down as SIGTERM would.
    public func start() async throws -> RunningServer {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let group = services(onRunning: { continuation.yield($0) }, stopOnSignals: false)
        let task = Task { try await group.run() }
        for await port in ports { return RunningServer(port: port, group: group, task: task) }
        try await task.value
        throw ServerError.configuration("the server stopped before it listened")
    }

    // MARK: - The queue, for every API

    /// Checks a job against the limits, the model and the store, then queues it (nothing is stored when any
    /// check fails).
    func submit(_ spec: JobSpec, owner: String, present: Set<String>) throws -> JobRecord {
        try spec.check(limits: limits, present: present)
        let model = try models.model(spec.model)
        var spec = spec
        spec.model = model.name
        spec.drawSeed()
        try preflight(spec, on: model)
        let payload = String(decoding: try JSONCoding.encode(spec), as: UTF8.self)
        let job = try store.enqueue(NewJob(kind: spec.kind.rawValue, owner: owner, model: model.name, payload: payload),
                                    limit: limits.maxQueued)
        metrics.accepted.increment()
        for r in runners { r.poke() }
        return job
    }

    /// What the model and store can tell before the job is queued: capabilities, parameter ranges, the scheduler,
    /// memory for the size, ids that exist, an upload that decodes within the limits.
    private func preflight(_ spec: JobSpec, on model: ServedModel) throws {
        let engine = model.engine
        switch spec.kind {
        case .textToImage: try engine.require(.textToImage, for: "make images from text")
        case .edit:
            if spec.mask == nil { try engine.require(.imageToImage, for: "edit pictures") } else { try engine.require(.inpaint, for: "inpaint pictures") }
        case .variation:
            try engine.require(.decodeEmbedding, for: "make variations")
            if spec.image != nil { try engine.require(.embedImage, for: "make variations of an uploaded picture") }
        case .interpolate: try engine.require(.decodeEmbedding, for: "interpolate")
        case .nudge: try engine.require([.decodeEmbedding, .prior], for: "nudge toward a text")
        case .regenerate: break
        }
        if spec.kind == .textToImage || spec.kind == .edit { try RequestCheck.check(spec.prior) }
        if spec.kind != .regenerate {
            try model.service.check(spec.decoder, strength: spec.kind == .edit ? (spec.strength ?? 0.8) : nil)
            try RequestCheck.prompt("prompt", spec.prompt ?? "")
        }
        if let a = spec.amount { try RequestCheck.finite("amount", a, -1...1) }
        // A text diff turns away from the generation's own prompt unless `from` names a text: say so now, not
        // when the job runs.
        if spec.kind == .nudge, spec.from == nil, let id = spec.id, try store.contains(id),
           (try store.generation(id).prompt ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
            throw APIError.badRequest("from: generation \(id) has no prompt to turn away from; give the text as from", field: "from")
        }
        for (field, id) in [("id", spec.id), ("to", spec.to)] {
            if let id, !(try store.contains(id)) { throw APIError.notFound("no generation \(id)", field: field) }
        }
        if case let .id(from)? = spec.from, !(try store.contains(from)) { throw APIError.notFound("no generation \(from)", field: "from") }
        let picture = try spec.image.map { try decodeUpload(Base64Image.decode($0, field: "image"), field: "image") }
        if let mask = spec.mask {
            let m = try decodeUpload(Base64Image.decode(mask, field: "mask"), field: "mask")
            if let picture, let problem = maskShapeProblem(mask: (m.width, m.height), picture: (picture.width, picture.height)) {
                throw APIError.badRequest("mask: \(problem)", field: "mask")
            }
        }
    }

    /// Decodes an uploaded picture, its size checked from the header before any pixel is decoded.
    func decodeUpload(_ data: Data, field: String) throws -> RGBImage {
        try Self.decodeUpload(data, field: field, limits: limits)
    }

    static func decodeUpload(_ data: Data, field: String, limits: ServerLimits) throws -> RGBImage {
        let l = ImageLimits(maxSide: limits.maxUploadSide, maxPixels: limits.maxUploadPixels, maxFileBytes: limits.maxBodyBytes)
        do { return try ImageFile.decode(data, source: "'\(field)'", limits: l) } catch let e as ImageFileError {
            var api = APIError.from(e)
            api.field = field
            throw api
        }
    }

    /// A job as the APIs show it, with its queue position when queued.
    func view(_ job: JobRecord) throws -> JobView {
        var position: Int?
        if job.status == .queued { position = (try store.queuedInClaimOrder().firstIndex { $0.id == job.id }).map { $0 + 1 } }
        var v = JobView(job, position: position)
        if job.status == .running, let p = hub.progress, p.job == job.id { v.progress = p.progress; v.eta = p.eta }
        if job.status == .done { v.progress = 1 }
        return v
    }

    /// Cancels a job: a queued one at once, a running one within one step.
    func cancel(_ id: Int64) throws -> JobRecord {
        let job = try store.cancelJob(id)
        if job.status == .running { hub.requestCancel(id) }
        if job.status == .cancelled && job.startedAt == nil {
            hub.finished(id, .make("cancelled", JobView(job, position: nil)))
            runners.first?.announcePositions()
        }
        return job
    }

    /// Waits for a job to end and returns it as it ended.
    func wait(for id: Int64) async throws -> JobRecord {
        let store = self.store
        await hub.waitUntilFinished(id) { (try? store.job(id).status.isFinal) ?? true }
        let job = try store.job(id)
        guard job.status.isFinal else {
            throw APIError(.serviceUnavailable, "the server is stopping; job \(id) stays in the queue and runs when it restarts",
                           type: "server_error", retryAfter: 10)
        }
        return job
    }
}

/// A job as every API shows it.
public struct JobView: Codable, Sendable {
    public var id: Int64
    public var kind: String
    public var model: String?
    public var status: JobStatus
    /// 1-based place in the queue (queued jobs only).
    public var position: Int?
    /// Done fraction of the whole job (0…1).
    public var progress: Double
    /// Seconds left in the current stage of the current image, when known.
    public var eta: Double?
    public var generations: [Int64]
    public var error: String?
    public var createdAt: String
    public var startedAt: String?
    public var finishedAt: String?
    public var attempts: Int

    enum CodingKeys: String, CodingKey {
        case id, kind, model, status, position, progress, eta, generations, error, createdAt = "created_at",
             startedAt = "started_at", finishedAt = "finished_at", attempts
    }

    init(_ j: JobRecord, position: Int?) {
        id = j.id; kind = j.kind; model = j.model; status = j.status; self.position = position
        progress = j.status == .done ? 1 : 0; eta = nil; generations = j.generations; error = j.error
        createdAt = j.createdAt; startedAt = j.startedAt; finishedAt = j.finishedAt; attempts = j.attempts
    }

    // Absent values as null, so every job object has the same keys.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(kind, forKey: .kind); try c.encode(model, forKey: .model)
        try c.encode(status, forKey: .status); try c.encode(position, forKey: .position); try c.encode(progress, forKey: .progress)
        try c.encode(eta, forKey: .eta); try c.encode(generations, forKey: .generations); try c.encode(error, forKey: .error)
        try c.encode(createdAt, forKey: .createdAt); try c.encode(startedAt, forKey: .startedAt)
        try c.encode(finishedAt, forKey: .finishedAt); try c.encode(attempts, forKey: .attempts)
    }
}

/// A server started by `UnCLIPServer.start`.
public final class RunningServer: Sendable {
    public let port: Int
    let group: ServiceGroup
    let task: Task<Void, Error>
    init(port: Int, group: ServiceGroup, task: Task<Void, Error>) { self.port = port; self.group = group; self.task = task }

    /// Stops accepting, stops the running job at its next step, and returns when everything has ended.
    public func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}
