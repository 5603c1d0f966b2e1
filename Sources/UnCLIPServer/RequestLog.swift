import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Prometheus
import UnCLIPStore

/// The server's Prometheus metrics, in a registry of its own (no process-wide metrics system).
final class ServerMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    let accepted: Counter
    let images: Counter
    let queued: Gauge
    private let statuses: [JobStatus: Counter]
    private let lock = NSLock()
    private var requestCounters: [String: Counter] = [:]
    let latency: DurationHistogram

    init() {
        accepted = registry.makeCounter(name: "unclip_jobs_accepted_total", help: "Jobs accepted into the queue.")
        images = registry.makeCounter(name: "unclip_images_total", help: "Images made by jobs.")
        queued = registry.makeGauge(name: "unclip_jobs_queued", help: "Jobs waiting in the queue.")
        var s: [JobStatus: Counter] = [:]
        for status in JobStatus.allCases where status.isFinal {
            s[status] = registry.makeCounter(name: "unclip_jobs_finished_total", labels: [("status", status.rawValue)],
                                             help: "Jobs that ended, by status.")
        }
        statuses = s
        latency = registry.makeDurationHistogram(
            name: "unclip_http_request_duration_seconds",
            buckets: [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30)],
            help: "HTTP request latency.")
    }

    func jobs(_ status: JobStatus) -> Counter { statuses[status]! }

    func request(status: Int) -> Counter {
        let key = "\(status / 100)xx"
        return lock.withLock {
            if let c = requestCounters[key] { return c }
            let c = registry.makeCounter(name: "unclip_http_requests_total", labels: [("status", key)], help: "HTTP requests, by status class.")
            requestCounters[key] = c
            return c
        }
    }

    func text() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

/// A log line per request (method, path, status, milliseconds, and the job it queued or read) and the metrics.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let logger: Logger
    let metrics: ServerMetrics

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response: Response
        do { response = try await next(request, context) } catch {
            let status = (error as? HTTPResponseError)?.status.code ?? 500
            log(request, status: status, start: start, job: nil)
            throw error
        }
        log(request, status: response.status.code, start: start, job: response.headers[.jobID])
        return response
    }

    private func log(_ request: Request, status: Int, start: ContinuousClock.Instant, job: String?) {
        let elapsed = ContinuousClock.now - start
        metrics.latency.record(elapsed)
        metrics.request(status: status).increment()
        let ms = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        logger.info("\(request.method) \(request.uri.path) \(status) \(String(format: "%.1f", ms)) ms\(job.map { " job \($0)" } ?? "")")
    }
}

extension HTTPField.Name {
    /// The job a response concerns, for the request log and for clients.
    static let jobID = HTTPField.Name("X-Unclip-Job")!
}
