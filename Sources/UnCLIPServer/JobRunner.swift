import Foundation
import Logging
import ServiceLifecycle
import UnCLIPEngine
import UnCLIPImage
import UnCLIPService
import UnCLIPStore

/// Runs the store's job queue, one job at a time, on a thread of its own: the models' compute blocks for
/// seconds, and must not hold one of Swift concurrency's few cooperative threads (two, on a 2-core machine)
/// while requests wait to be answered.
///
/// At startup, jobs left `running` by a server that died are queued again; their images already recorded are
/// found by their job link and not made twice. On graceful shutdown the running job stops at its next step
/// (nothing half-written: the store records whole images only) and goes back to the queue to run again.
///
/// The same runner is `unclip worker`'s loop on a shared (PostgreSQL) store: it claims only jobs for the models it
/// has loaded, and a heartbeat thread renews the job's lease while it runs — a lease lost (this worker was cut off
/// long enough for the queue to hand the job to another) or a cancel asked for elsewhere stops the job.
public final class JobRunner: Service, @unchecked Sendable {
    let store: any GenerationStore
    let models: ModelPool
    let hub: JobHub
    let metrics: ServerMetrics
    let configuration: ServerConfiguration
    let logger: Logger
    private let wake = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var stopping = false
    private var running: Int64?
    /// Jobs whose lease this runner lost: stopped without recording their end (the new holder does).
    private var lostLeases = Set<Int64>()

    init(store: any GenerationStore, models: ModelPool, hub: JobHub, metrics: ServerMetrics, configuration: ServerConfiguration,
         logger: Logger) {
        self.store = store; self.models = models; self.hub = hub; self.metrics = metrics
        self.configuration = configuration; self.logger = logger
    }

    /// Work has been queued.
    func poke() { wake.signal() }

    public func run() async throws {
        let requeued = try store.requeueInterruptedJobs()
        if !requeued.isEmpty { logger.info("jobs interrupted by the last stop run again: \(requeued.map(String.init).joined(separator: ", "))") }
        let done = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            // Requests first: this thread (where small models do all their compute) yields the CPU to the
            // event loops, so listings and thumbnails stay fast while an image is being made. On Linux the nice
            // value is per thread: who = 0 is this thread, and threads it starts inherit it.
            if configuration.jobNice != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, configuration.jobNice) }
            loop()
            done.signal()
        }
        thread.name = "unclip-jobs"
        thread.stackSize = 8 << 20
        thread.start()
        try? await gracefulShutdown()
        // The observer sees `stopping` at the next step; the job is not cancelled (it runs again at the next start).
        lock.withLock { stopping = true }
        wake.signal()
        hub.shutdown(.make("shutdown", ["message": "the server is stopping; queued and running jobs run again when it restarts"]))
        // Wait for the thread off the cooperative pool.
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { done.wait(); c.resume() }
        }
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func loop() {
        while !isStopping {
            let job: JobRecord?
            do { job = try store.claimNextJob(models: models.models.map(\.name)) } catch {
                logger.error("cannot read the job queue: \(error)")
                _ = wake.wait(timeout: .now() + 1)
                continue
            }
            guard let job else {
                // Other processes sharing the store may queue work too: look again now and then.
                _ = wake.wait(timeout: .now() + 0.5)
                continue
            }
            lock.withLock { running = job.id }
            announcePositions()
            let heartbeat = startHeartbeat(job.id)
            execute(job)
            heartbeat.cancel()
            lock.withLock { running = nil; lostLeases.remove(job.id) }
        }
    }

    /// Renews the job's lease every `heartbeatSeconds` while it runs; a cancel asked for through another front end
    /// or a lost lease stops the job at its next step.
    private func startHeartbeat(_ id: Int64) -> DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "unclip.heartbeat"))
        timer.schedule(deadline: .now() + configuration.heartbeatSeconds, repeating: configuration.heartbeatSeconds)
        timer.setEventHandler { [self] in
            do {
                if try store.renewLease(id) { hub.requestCancel(id) }
            } catch StoreError.leaseLost {
                logger.warning("job \(id): lease lost (another worker has it now); stopping it here")
                lock.withLock { _ = lostLeases.insert(id) }
            } catch {
                logger.warning("job \(id): cannot renew its lease (\(error)); trying again")
            }
        }
        timer.resume()
        return timer
    }

    func leaseLost(_ id: Int64) -> Bool { lock.withLock { lostLeases.contains(id) } }

    private static func isLeaseLost(_ error: Error) -> Bool {
        if case StoreError.leaseLost? = error as? StoreError { return true }
        return false
    }

    /// Tells every queued job's listeners where it now stands (a worker's hub has none: nothing to read).
    func announcePositions() {
        guard hub.hasListeners else { return }
        guard let queued = try? store.queuedInClaimOrder() else { return }
        metrics.queued.set(to: Double(queued.count))
        for (i, j) in queued.enumerated() { hub.publish(j.id, .make("queued", ["position": i + 1])) }
    }

    private func execute(_ job: JobRecord) {
        let start = Date()
        let spec: JobSpec
        do { spec = try JSONDecoder().decode(JobSpec.self, from: Data(job.payload.utf8)) } catch {
            end(job, status: .failed, error: APIError(.internalServerError, "the stored job cannot be read: \(error)", type: "server_error"), start: start)
            return
        }
        let images = spec.imageCount
        hub.started(LiveProgress(job: job.id, kind: job.kind, stage: "start", step: 0, total: 0, image: 0, images: images, eta: nil,
                                 progress: 0, startedAt: start))
        hub.publish(job.id, .make("running", ["attempt": job.attempts]))
        do {
            let model = try models.model(spec.model)
            let observer = JobObserver(runner: self, job: job, images: images, started: start,
                                       hasPrior: (spec.kind == .textToImage || spec.kind == .edit) && model.engine.prior != nil)
            var spec = spec
            if spec.previewEvery == nil { spec.previewEvery = configuration.previewEvery }
            let ids = try spec.run(on: model.service, observer: observer, job: job.id) { [hub] made in
                hub.publish(job.id, .make("image", ["generation": made.generation.id, "index": Int64(made.index)]))
            }
            metrics.images.increment(by: Int64(ids.count))
            end(job, status: .done, generations: ids, start: start)
        } catch let e where leaseLost(job.id) || Self.isLeaseLost(e) {
            // Another worker holds the job now; it records the end.
            logger.warning("job \(job.id) dropped here: its lease was lost")
            hub.finished(job.id, .make("interrupted", ["message": "the job moved to another worker"]))
        } catch EngineError.cancelled where isStopping && !hub.isCancelled(job.id) {
            // Shutdown, not a client's cancel: the job goes back to the queue and runs again (here at the next start,
            // or on another worker now).
            do { try store.releaseJob(job.id) } catch { logger.error("job \(job.id): cannot give it back to the queue (\(error)); it runs again when its lease runs out") }
            logger.info("job \(job.id) stopped by shutdown; it runs again")
            hub.finished(job.id, .make("interrupted", ["message": "the server stopped; the job runs again when it restarts"]))
        } catch EngineError.cancelled {
            end(job, status: .cancelled, error: nil, start: start)
        } catch {
            end(job, status: .failed, error: APIError.from(error), start: start)
        }
    }

    private func end(_ job: JobRecord, status: JobStatus, error: APIError? = nil, generations: [Int64]? = nil, start: Date) {
        do { try store.finishJob(job.id, status: status, error: error?.message, result: generations ?? []) } catch {
            logger.error("job \(job.id): cannot record its end (\(error))")
        }
        let ms = Int(Date().timeIntervalSince(start) * 1000)
        logger.info("job \(job.id) \(job.kind) \(status.rawValue) in \(ms) ms\(error.map { ": \($0.message)" } ?? "")")
        metrics.jobs(status).increment()
        let final = (try? store.job(job.id)) ?? job
        var body = JobView(final, position: nil)
        if let generations { body.generations = generations }
        hub.finished(job.id, .make(status.rawValue, body))
    }

    /// Progress of one job to the hub, previews as PNG, and the cancel check at every step.
    final class JobObserver: GenerationObserver, @unchecked Sendable {
        let runner: JobRunner
        let job: JobRecord
        let images: Int
        let started: Date
        let hasPrior: Bool

        init(runner: JobRunner, job: JobRecord, images: Int, started: Date, hasPrior: Bool) {
            self.runner = runner; self.job = job; self.images = images; self.started = started; self.hasPrior = hasPrior
        }

        func progress(_ e: ProgressEvent) -> RunDecision {
            if runner.hub.isCancelled(job.id) || runner.isStopping || runner.leaseLost(job.id) { return .stop }
            // Jobs with a prior spend about half of each image in it (and half in the decoder): weigh the stages so
            // the fraction only grows.
            var within = e.total > 0 ? Double(e.step) / Double(e.total) : 0
            if hasPrior { within = e.stage == "prior" ? within / 2 : (e.stage == "denoise" ? 0.5 + within / 2 : 0) }
            let p = LiveProgress(job: job.id, kind: job.kind, stage: e.stage, step: e.step, total: e.total, image: e.image,
                                 images: images, eta: e.eta, progress: min(1, (Double(e.image) + within) / Double(max(images, 1))),
                                 startedAt: started)
            runner.hub.update(p)
            return .proceed
        }

        func preview(image: Int, step: Int, picture: RGBImage) {
            guard let png = try? pngData(picture, parameters: nil) else { return }
            runner.hub.setPreview(job: job.id, step: step, png: png)
            runner.hub.publish(job.id, .make("preview", PreviewEvent(image: image, step: step, png: png.base64EncodedString())))
        }

        func warning(_ message: String) { runner.hub.publish(job.id, .make("warning", ["message": message])) }
    }

    struct PreviewEvent: Encodable { let image: Int; let step: Int; let png: String }
}
