import Foundation

/// How a server listens, who may use it and how much one request may ask. A value per server: nothing here is
/// process-wide, so tests run several servers in one process.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// AUTOMATIC1111's default port, so its clients find the server without configuration. 0: any free port.
    public var port = 7860
    /// Accepted API keys (empty: no authentication, allowed on loopback only).
    public var apiKeys: [String] = []
    public var limits = ServerLimits()
    /// Decode a preview every N denoising steps for job events (nil: only when a job asks).
    public var previewEvery: Int?
    /// Serve the gallery's files from this folder instead of the copies compiled in (development).
    public var webDirectory: String?
    /// The nice value of the thread that runs jobs (0–19; higher yields more to request handling).
    public var jobNice: Int32 = 10
    /// Job runners in this process: 0 makes a front end only (workers elsewhere compute); more than one helps
    /// only with several models (each model computes one image at a time).
    public var workers = 1
    /// How often a runner renews the lease of the job it runs (well inside a shared store's lease, 30 s by default)
    /// and learns of cancels asked for through another front end.
    public var heartbeatSeconds = 5.0
    public init() {}

    /// Hosts that only this machine can reach.
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Refuses a configuration that would expose the server without a key.
    public func validate() throws {
        if !Self.isLoopback(host) && apiKeys.isEmpty {
            throw ServerError.configuration("listening on \(host) makes the server reachable from other machines; give it an API key (api key option or UNCLIP_API_KEY) or listen on 127.0.0.1")
        }
        if apiKeys.contains(where: { $0.count < 8 }) {
            throw ServerError.configuration("an API key must have at least 8 characters")
        }
        guard workers >= 0 else { throw ServerError.configuration("workers must be 0 or more (got \(workers))") }
        guard heartbeatSeconds > 0 else { throw ServerError.configuration("heartbeatSeconds must be positive") }
        guard (0...65535).contains(port) else { throw ServerError.configuration("port \(port) is not a TCP port (0–65535)") }
    }
}

/// What one request may ask, checked before anything is decoded, queued or computed.
public struct ServerLimits: Sendable {
    /// Request bodies larger than this get 413.
    public var maxBodyBytes = 20 * 1024 * 1024
    /// Jobs waiting in the queue; more gets 429 with Retry-After.
    public var maxQueued = 1000
    /// Output pixels per image (width × height).
    public var maxPixels = 1024 * 1024
    public var maxSteps = 150
    /// Images per request (A1111's batch_size × n_iter, OpenAI's n, a job's count).
    public var maxImages = 10
    public var maxFrames = 64
    /// Uploaded pictures: largest side and pixels, read from the header before decoding.
    public var maxUploadSide = 4096
    public var maxUploadPixels = 4096 * 4096
    public init() {}
}

/// Errors of starting or configuring a server.
public enum ServerError: Error, CustomStringConvertible, Equatable {
    case configuration(String)
    case noModels
    public var description: String {
        switch self {
        case let .configuration(m): return m
        case .noModels: return "a server needs at least one model"
        }
    }
}
