import Foundation
import Logging
import NIOCore
import NIOConcurrencyHelpers
import NIOPosix
import PostgresNIO
import UnCLIPStore

/// A value bound to a statement parameter ($1, $2, …).
enum PGValue {
    case int(Int64)
    case text(String)
    case double(Double)
    case bytes(ByteBuffer)
    case bool(Bool)
    case texts([String])
    case ints([Int64])
    case byteArrays([ByteBuffer])
    /// A float4[] (binary, 4 bytes a value): pgvector casts it to `halfvec` server-side.
    case reals([Float])
    case null

    static func floats(_ v: [Float]) -> PGValue { .bytes(FloatBytes.encode(v)) }
    static func optional<T>(_ v: T?, _ wrap: (T) -> PGValue) -> PGValue { v.map(wrap) ?? .null }
}

/// One connection to PostgreSQL, used synchronously: the store protocol is synchronous (its callers run
/// models on threads of their own), so each call waits on an `EventLoopFuture` of postgres-nio's future API.
/// Never on an event-loop thread and never through Swift concurrency: a blocked cooperative thread (two on a
/// 2-core machine) waiting for a task that needs one would deadlock.
///
/// Calls are serialised on the connection, as the SQLite backend does, so a transaction begun by one caller
/// never takes in another's statements. A connection that drops (a server restart, a network cut) is replaced
/// on the next call: statements outside a transaction and whole transactions are retried on the new one
/// within `reconnectWindow`; a transaction that failed midway was rolled back by the server, so a retry never
/// half-applies anything.
final class PostgresSession: @unchecked Sendable {
    let location: PostgresLocation
    let logger: Logger
    /// How long calls keep trying to reach a server that went away (a restart takes a few seconds).
    let reconnectWindow: TimeInterval
    private let group: MultiThreadedEventLoopGroup
    private let lock = NSRecursiveLock()
    private var connection: PostgresConnection?
    private var transactionDepth = 0
    /// How many times the connection was replaced (logs and tests).
    private(set) var reconnects = 0

    /// Shown in the server's `pg_stat_activity`, so an operator (or a test) can tell the connections apart.
    let applicationName: String

    init(_ location: PostgresLocation, applicationName: String, reconnectWindow: TimeInterval = 60,
         logger: Logger = Logger(label: "unclip.postgres")) throws {
        self.location = location
        self.applicationName = applicationName
        self.reconnectWindow = reconnectWindow
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do { connection = try connect() } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    deinit {
        try? connection?.close().wait()
        try? group.syncShutdownGracefully()
    }

    var path: String { location.description }

    private func connect() throws -> PostgresConnection {
        var config = PostgresConnection.Configuration(host: location.host, port: location.port, username: location.user,
                                                      password: location.password, database: location.database, tls: .disable)
        config.options.connectTimeout = .seconds(10)
        config.options.additionalStartupParameters = [("application_name", String(applicationName.prefix(63)))]
        do {
            return try PostgresConnection.connect(on: group.next(), configuration: config, id: 1, logger: logger).wait()
        } catch {
            throw Self.openError(error, location: location)
        }
    }

    /// Closes the connection (the next call opens a new one): what a test does to simulate a dropped link.
    func dropConnection() {
        lock.withLock {
            Self.discard(connection)
            connection = nil
        }
    }

    // MARK: Statements

    /// Runs one statement and returns its rows.
    @discardableResult
    func query(_ sql: String, _ values: [PGValue] = []) throws -> [PostgresRandomAccessRow] {
        try lock.withLock {
            if transactionDepth > 0 { return try run(sql, values) }
            return try retrying { try run(sql, values) }
        }
    }

    /// The number of rows a statement changed.
    func execute(_ sql: String, _ values: [PGValue] = []) throws -> Int {
        try lock.withLock {
            if transactionDepth > 0 { return try runCounting(sql, values) }
            return try retrying { try runCounting(sql, values) }
        }
    }

    func scalarInt(_ sql: String, _ values: [PGValue] = []) throws -> Int64? {
        guard let row = try query(sql, values).first else { return nil }
        return try row[0].decode(Int64?.self)
    }

    func scalarText(_ sql: String, _ values: [PGValue] = []) throws -> String? {
        guard let row = try query(sql, values).first else { return nil }
        return try row[0].decode(String?.self)
    }

    /// Runs `body` in one transaction (nested calls join the outer one). A lost connection or a serialization
    /// failure re-runs the whole body on a fresh transaction; any other error rolls back and is rethrown.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try lock.withLock {
            if transactionDepth > 0 { return try body() }
            return try retrying {
                _ = try runCounting("BEGIN", [])
                transactionDepth = 1
                defer { transactionDepth = 0 }
                do {
                    let value = try body()
                    _ = try runCounting("COMMIT", [])
                    return value
                } catch {
                    if connection != nil { _ = try? runCounting("ROLLBACK", []) }
                    throw error
                }
            }
        }
    }

    private func run(_ sql: String, _ values: [PGValue]) throws -> [PostgresRandomAccessRow] {
        let result = try send(sql, values)
        return result.rows.map { $0.makeRandomAccess() }
    }

    private func runCounting(_ sql: String, _ values: [PGValue]) throws -> Int {
        try send(sql, values).metadata.rows ?? 0
    }

    private func send(_ sql: String, _ values: [PGValue]) throws -> PostgresQueryResult {
        guard let c = connection, !c.isClosed else {
            connection = nil
            throw PostgresSession.Lost(detail: "the server closed the connection")
        }
        var binds = PostgresBindings(capacity: values.count)
        for v in values {
            switch v {
            case .int(let i): binds.append(i)
            case .text(let s): binds.append(s)
            case .double(let d): binds.append(d)
            case .bytes(let b): binds.append(b)
            case .bool(let b): binds.append(b)
            case .texts(let a): binds.append(a)
            case .ints(let a): binds.append(a)
            case .byteArrays(let a): binds.append(a)
            case .reals(let a): binds.append(a)
            case .null: binds.appendNull()
            }
        }
        do {
            return try Self.answer(c.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger), unless: c.closeFuture,
                                   within: statementTimeout)
        } catch let e as PSQLError where Self.isConnectionLoss(e) {
            Self.discard(c)
            connection = nil
            throw Lost(detail: String(describing: e.code))
        } catch let e as PSQLError {
            throw Self.serverError(e, path: path, sql: sql)
        } catch let e as ChannelError {
            connection = nil
            throw Lost(detail: "\(e)")
        }
    }

    /// Closes a connection without waiting (it may be half-closed already; the answer does not matter).
    private static func discard(_ c: PostgresConnection?) {
        let _: EventLoopFuture<Void>? = c?.close()
    }

    /// The connection went away under a statement.
    struct Lost: Error { let detail: String }

    /// The longest a statement may go unanswered before the connection is taken for dead (a network cut sends
    /// nothing back).
    private var statementTimeout: TimeInterval = 120

    /// Runs `body` waiting up to `seconds` for each answer: for statements that rightly run for minutes (building an
    /// HNSW index over a large table), which the usual limit would take for a dead connection.
    func allowingLongStatements<T>(_ seconds: TimeInterval, _ body: () throws -> T) throws -> T {
        try lock.withLock {
            let usual = statementTimeout
            statementTimeout = max(usual, seconds)
            defer { statementTimeout = usual }
            return try body()
        }
    }

    /// The query's result, or `Lost` if the connection closes first or nothing comes within `seconds`. (A query
    /// sent on a connection the server is closing may otherwise never be answered: postgres-nio drops the write on
    /// a closed channel without failing the query.)
    private static func answer<T>(_ future: EventLoopFuture<T>, unless closed: EventLoopFuture<Void>, within seconds: TimeInterval) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = NIOLockedValueBox<Result<T, Error>?>(nil)
        future.whenComplete { r in box.withLockedValue { $0 = r }; done.signal() }
        closed.whenComplete { _ in done.signal() }
        if done.wait(timeout: .now() + seconds) == .timedOut { throw Lost(detail: "no answer for \(Int(seconds)) s") }
        if let r = box.withLockedValue({ $0 }) { return try r.get() }
        // Closed first: the answer may still be on its way (closing runs after the last message is read).
        if done.wait(timeout: .now() + 1) == .success, let r = box.withLockedValue({ $0 }) { return try r.get() }
        throw Lost(detail: "the server closed the connection")
    }

    /// Runs `work`, reconnecting and running it again while the server is unreachable (up to `reconnectWindow`);
    /// serialization failures and deadlocks are retried too, as PostgreSQL's documentation asks of clients.
    private func retrying<T>(_ work: () throws -> T) throws -> T {
        let deadline = Date().addingTimeInterval(reconnectWindow)
        var delay = 0.05
        while true {
            do {
                if connection == nil {
                    connection = try connect()
                    reconnects += 1
                    logger.info("reconnected to \(path)")
                }
                return try work()
            } catch let lost as Lost {
                Self.discard(connection)
                connection = nil
                guard Date() < deadline else {
                    throw StoreError.connectionLost(path: path, detail: "\(lost.detail); no answer for \(Int(reconnectWindow)) s")
                }
            } catch StoreError.cannotOpen(_, let reason) where connection == nil {
                guard Date() < deadline else {
                    throw StoreError.connectionLost(path: path, detail: "\(reason); gave up after \(Int(reconnectWindow)) s")
                }
                logger.debug("waiting for \(path): \(reason)")
            } catch StoreError.database(_, let code, _, _) where (code == "40001" || code == "40P01") && Date() < deadline {
                // serialization_failure, deadlock_detected: the transaction was rolled back; run it again.
            } catch StoreError.database(_, let code, _, _) where Self.isShutdownCode(code) && Date() < deadline {
                // The server is shutting down or starting (57P01 admin_shutdown, 57P03 cannot_connect_now…).
                Self.discard(connection)
                connection = nil
            }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 1)
        }
    }

    private static func isShutdownCode(_ code: String) -> Bool { code.hasPrefix("57P") || code == "08006" || code == "08003" }

    private static func isConnectionLoss(_ e: PSQLError) -> Bool {
        switch e.code {
        case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown: return true
        case .server: return isShutdownCode(e.serverInfo?[.sqlState] ?? "")
        default: return false
        }
    }

    // MARK: Errors

    static func serverError(_ e: PSQLError, path: String, sql: String?) -> StoreError {
        let code = e.serverInfo?[.sqlState] ?? ""
        let message = e.serverInfo?[.message] ?? String(describing: e.code)
        let detail = e.serverInfo?[.detail].map { " (\($0))" } ?? ""
        if code == "42501" { return .readOnly(path: path, detail: "the database refused: \(message)") }
        if code == "53100" { return .diskFull(path: path) }
        return .database(path: path, code: code, message: message + detail, sql: sql)
    }

    /// What connecting failed on, in words a person can act on.
    static func openError(_ error: Error, location: PostgresLocation) -> StoreError {
        let path = location.description
        if let e = error as? PSQLError {
            let code = e.serverInfo?[.sqlState] ?? ""
            let message = e.serverInfo?[.message] ?? ""
            switch code {
            case "28P01", "28000":
                return .cannotOpen(path: path, reason: "the server refused user '\(location.user)': \(message)")
            case "3D000":
                return .cannotOpen(path: path, reason: "there is no database '\(location.database)' on the server (create it with: createdb \(location.database))")
            case let c where c.hasPrefix("57P"):
                return .cannotOpen(path: path, reason: "the server is not accepting connections now: \(message)")
            case "":
                if e.code == .authMechanismRequiresPassword {
                    return .cannotOpen(path: path, reason: "the server asks for a password; put it in the URL or in PGPASSWORD")
                }
                return .cannotOpen(path: path, reason: "cannot reach the server at \(location.host):\(location.port) (\(e.underlying.map { "\($0)" } ?? "\(e.code)"))")
            default:
                return .cannotOpen(path: path, reason: "\(message) [\(code)]")
            }
        }
        return .cannotOpen(path: path, reason: "cannot reach the server at \(location.host):\(location.port) (\(error))")
    }
}

/// Embeddings travel and rest as `bytea` of little-endian float32: the same bytes the SQLite backend stores, so a
/// copy between backends moves them verbatim, and decoding is one memcpy (a `real[]` carries a 4-byte length
/// per element and must be parsed value by value).
enum FloatBytes {
    static func encode(_ v: [Float]) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: v.count * 4)
        v.withUnsafeBytes { _ = b.writeBytes($0) }
        return b
    }

    static func decode(_ b: ByteBuffer, count: Int, path: String, what: String) throws -> [Float] {
        guard b.readableBytes == count * 4 else {
            throw StoreError.badEmbedding(path: path, what: what, reason: "\(b.readableBytes) bytes for \(count) float32 values")
        }
        return b.withUnsafeReadableBytes { raw in
            [Float](unsafeUninitializedCapacity: count) { dst, n in
                if count > 0 { memcpy(dst.baseAddress!, raw.baseAddress!, count * 4) }
                n = count
            }
        }
    }
}

extension PostgresRandomAccessRow {
    func int(_ i: Int) throws -> Int64 { try self[i].decode(Int64.self) }
    func optionalInt(_ i: Int) throws -> Int64? { try self[i].decode(Int64?.self) }
    func text(_ i: Int) throws -> String? { try self[i].decode(String?.self) }
    func double(_ i: Int) throws -> Double? { try self[i].decode(Double?.self) }
    func bool(_ i: Int) throws -> Bool { try self[i].decode(Bool.self) }
    func bytes(_ i: Int) throws -> ByteBuffer? { try self[i].decode(ByteBuffer?.self) }
    func floats(_ i: Int, count: Int?, path: String, what: String) throws -> [Float]? {
        guard let count, let b = try bytes(i) else { return nil }
        return try FloatBytes.decode(b, count: count, path: path, what: what)
    }

    /// The picture and decoder embeddings of a row selected as (id, picture_dim, picture_embedding, dim, embedding).
    func embeddingPair(id: Int64, path: String) throws -> (picture: [Float]?, decoder: [Float]?) {
        func read(_ dimColumn: Int, _ what: String) throws -> [Float]? {
            try floats(dimColumn + 1, count: try self[dimColumn].decode(Int32?.self).map(Int.init), path: path,
                       what: "the \(what) of generation \(id)")
        }
        return (try read(1, "picture embedding"), try read(3, "image embedding"))
    }
}
