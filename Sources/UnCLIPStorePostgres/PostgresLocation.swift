import Foundation
import UnCLIPStore

/// Where a PostgreSQL store lives, from a libpq-style URL: `postgres://user[:password]@host[:port]/database`.
///
/// The password may also come from the caller (the CLI reads `PGPASSWORD`, libpq's convention); messages show
/// the location without it.
public struct PostgresLocation: Sendable, Equatable {
    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String

    public init(user: String, password: String? = nil, host: String = "127.0.0.1", port: Int = 5432, database: String) {
        self.user = user; self.password = password; self.host = host; self.port = port; self.database = database
    }

    /// Whether `text` names a PostgreSQL store rather than a file.
    public static func isPostgresURL(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// Parses `postgres://…` (or `postgresql://…`). `defaultUser` fills a URL without a user name.
    public init(url text: String, defaultUser: String? = nil, password fallbackPassword: String? = nil) throws {
        func bad(_ why: String) -> StoreError {
            StoreError.cannotOpen(path: Self.redact(text), reason: "not a usable PostgreSQL URL: \(why) (expected postgres://user@host:port/database)")
        }
        guard Self.isPostgresURL(text), let c = URLComponents(string: text) else { throw bad("it does not parse as a URL") }
        guard let host = c.host, !host.isEmpty else { throw bad("no host") }
        let db = String(c.path.drop { $0 == "/" })
        guard !db.isEmpty, !db.contains("/") else { throw bad("the path must be one database name") }
        guard let user = c.user.flatMap({ $0.removingPercentEncoding }) ?? defaultUser, !user.isEmpty else { throw bad("no user name") }
        if let port = c.port, !(1...65535).contains(port) { throw bad("port \(port) is out of range") }
        if let q = c.queryItems, let unknown = q.first(where: { $0.name != "sslmode" || $0.value != "disable" }) {
            // TLS is not wired up: refusing beats silently connecting in the clear to a server that asked for TLS.
            throw bad("the option '\(unknown.name)' is not supported (only sslmode=disable; connections are not encrypted)")
        }
        self.init(user: user, password: c.password.flatMap { $0.removingPercentEncoding } ?? fallbackPassword,
                  host: host, port: c.port ?? 5432, database: db)
    }

    /// The URL without its password, for messages and records.
    public var description: String { "postgres://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)" }

    static func redact(_ text: String) -> String {
        guard var c = URLComponents(string: text), c.password != nil else { return text }
        c.password = nil
        return c.string ?? text
    }
}
