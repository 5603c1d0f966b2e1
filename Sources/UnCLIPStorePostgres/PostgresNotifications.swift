import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import UnCLIPStore

/// LISTEN/NOTIFY for the job queue. Listening needs a connection of its own (notifications arrive between
/// statements, and the store's connection is busy with them); it runs on a thread that re-makes the connection
/// whenever it drops.
final class PostgresListener: QueueListener, @unchecked Sendable {
    static let jobsChannel = "unclip_jobs"
    static let eventsChannel = "unclip_events"

    private let location: PostgresLocation
    private let queued: @Sendable () -> Void
    private let event: @Sendable (Int64, String, String) -> Void
    private let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let lock = NSLock()
    private var stopped = false
    private var connection: PostgresConnection?
    private let ready = DispatchSemaphore(value: 0)

    init(_ location: PostgresLocation, applicationName: String, logger: Logger, queued: @escaping @Sendable () -> Void,
         event: @escaping @Sendable (Int64, String, String) -> Void) throws {
        self.location = location; self.logger = logger; self.queued = queued; self.event = event
        var config = PostgresConnection.Configuration(host: location.host, port: location.port, username: location.user,
                                                      password: location.password, database: location.database, tls: .disable)
        config.options.additionalStartupParameters = [("application_name", String(applicationName.prefix(63)))]
        // The first connection is made here, so a caller learns at once if listening cannot work.
        try listen(config)
        let settled = config
        let thread = Thread { [self] in keepListening(settled) }
        thread.name = "unclip-listen"
        thread.start()
    }

    func stop() {
        let c = lock.withLock { () -> PostgresConnection? in stopped = true; return connection }
        let _: EventLoopFuture<Void>? = c?.close()
        ready.signal()
    }

    deinit { try? group.syncShutdownGracefully() }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func listen(_ config: PostgresConnection.Configuration) throws {
        let c = try PostgresConnection.connect(on: group.next(), configuration: config, id: 2, logger: logger).wait()
        c.addListener(channel: Self.jobsChannel) { [queued] _, _ in queued() }
        c.addListener(channel: Self.eventsChannel) { [event] _, n in
            // "ID NAME JSON"
            let parts = n.payload.split(separator: " ", maxSplits: 2).map(String.init)
            if parts.count == 3, let id = Int64(parts[0]) { event(id, parts[1], parts[2]) }
        }
        for channel in [Self.jobsChannel, Self.eventsChannel] {
            _ = try c.query(PostgresQuery(unsafeSQL: "LISTEN \(channel)"), logger: logger).wait()
        }
        lock.withLock { connection = c }
    }

    private func keepListening(_ config: PostgresConnection.Configuration) {
        while !isStopped {
            if let c = lock.withLock({ connection }) { try? c.closeFuture.wait() }
            lock.withLock { connection = nil }
            guard !isStopped else { break }
            // Dropped (a restart, a network cut): listen again, then look at the queue in case news was missed.
            _ = ready.wait(timeout: .now() + 1)
            do {
                try listen(config)
                logger.info("listening to \(location.description) again")
                queued()
            } catch {
                logger.debug("cannot listen to \(location.description) yet: \(error)")
            }
        }
    }
}

extension PostgresStore: QueueSignals {
    public func listen(queued: @escaping @Sendable () -> Void, event: @escaping @Sendable (Int64, String, String) -> Void) throws -> any QueueListener {
        try PostgresListener(session.location, applicationName: "\(session.applicationName) (listen)", logger: session.logger,
                             queued: queued, event: event)
    }

    public func announce(job: Int64, event: String, json: String) {
        let payload = "\(job) \(event) \(json)"
        // NOTIFY payloads must be shorter than 8,000 bytes.
        guard payload.utf8.count < 7_900 else { return }
        _ = try? session.query("SELECT pg_notify($1, $2)", [.text(PostgresListener.eventsChannel), .text(payload)])
    }
}
