import Foundation

/// A real PostgreSQL server for tests: `initdb` into a temporary folder and `pg_ctl start` on a free loopback
/// port, run as a non-root user when the tests run as root (PostgreSQL refuses to run as root). Nothing is
/// mocked. The superuser `unclip` (password `secret`) owns it; TCP connections need the password (so a wrong one
/// is refused as in production), the Unix socket in the data folder is trusted (for the harness's own commands).
public final class PostgresTestServer: @unchecked Sendable {
    public let folder: URL
    public let port: Int
    public let user = "unclip"
    public let password = "secret"
    let bin: URL
    /// Who runs the server's programs (nil: this user).
    let runAs: String?

    public enum Failure: Error, CustomStringConvertible {
        case missing(String)
        case command(String, Int32, String)
        public var description: String {
            switch self {
            case .missing(let what): return what
            case let .command(cmd, status, output): return "\(cmd) exited \(status): \(output)"
            }
        }
    }

    /// Starts a new server (each call its own cluster and port).
    public init() throws {
        guard let bin = Self.findBinaries() else {
            throw Failure.missing("PostgreSQL server programs not found (Debian: apt-get install postgresql-15); looked in /usr/lib/postgresql/*/bin")
        }
        self.bin = bin
        runAs = getuid() == 0 ? "postgres" : nil
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("data"), withIntermediateDirectories: true)
        let pw = folder.appendingPathComponent("pw")
        try Data(password.utf8).write(to: pw)
        if let runAs {
            _ = try Self.run(URL(fileURLWithPath: "/bin/chown"), ["-R", runAs, folder.path], runAs: nil)
            _ = try Self.run(URL(fileURLWithPath: "/bin/chmod"), ["755", folder.path], runAs: nil)
        }
        port = Self.freePort()
        _ = try Self.run(bin.appendingPathComponent("initdb"),
                         ["-D", dataPath, "-U", user, "--pwfile", pw.path, "--auth-local=trust", "--auth-host=scram-sha-256",
                          "-E", "UTF8", "--locale=C", "--no-sync"], runAs: runAs)
        try start()
    }

    deinit { stop() }

    var dataPath: String { folder.appendingPathComponent("data").path }
    var logPath: String { folder.appendingPathComponent("server.log").path }

    /// fsync off: the tests restart the server with `-m fast` (a clean shutdown), never pull the power.
    private var serverOptions: String { "-p \(port) -k \(folder.path) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" }

    public func start() throws {
        _ = try Self.run(bin.appendingPathComponent("pg_ctl"), ["-D", dataPath, "-l", logPath, "-o", serverOptions, "-w", "-t", "60", "start"],
                         runAs: runAs)
    }

    /// `pg_ctl restart -m fast`: every connection is cut; the server is back when this returns.
    public func restart() throws {
        _ = try Self.run(bin.appendingPathComponent("pg_ctl"), ["-D", dataPath, "-l", logPath, "-o", serverOptions, "-m", "fast", "-w", "-t", "60", "restart"],
                         runAs: runAs)
    }

    /// `pg_ctl stop -m fast`, keeping the data (start it again with `start`).
    public func pause() throws {
        _ = try Self.run(bin.appendingPathComponent("pg_ctl"), ["-D", dataPath, "-m", "fast", "-w", "stop"], runAs: runAs)
    }

    /// `pg_ctl stop -m fast`, then removes the folder.
    public func stop() {
        _ = try? Self.run(bin.appendingPathComponent("pg_ctl"), ["-D", dataPath, "-m", "fast", "-w", "stop"], runAs: runAs)
        try? FileManager.default.removeItem(at: folder)
    }

    /// Runs SQL through psql on the trusted socket (as `asUser`), returning its unaligned output.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres", asUser: String? = nil) throws -> String {
        try Self.run(bin.appendingPathComponent("psql"), ["-h", folder.path, "-p", String(port), "-U", asUser ?? user, "-d", database,
                                                          "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql], runAs: runAs)
    }

    /// A new empty database; returns its URL (with the password).
    public func createDatabase(_ name: String? = nil) throws -> String {
        let db = name ?? "t\(UInt32.random(in: 0...UInt32.max))"
        try psql("CREATE DATABASE \(db)")
        return url(database: db)
    }

    public func url(database: String, user: String? = nil, password: String? = nil) -> String {
        "postgres://\(user ?? self.user):\(password ?? self.password)@127.0.0.1:\(port)/\(database)"
    }

    static func findBinaries() -> URL? {
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).compactMap(Int.init).sorted(by: >)
        for v in versions {
            let bin = root.appendingPathComponent("\(v)/bin")
            if FileManager.default.isExecutableFile(atPath: bin.appendingPathComponent("pg_ctl").path) { return bin }
        }
        return nil
    }

    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Runs a program to completion with its output in a file. posix_spawn + waitpid rather than Foundation's
    /// Process: pg_ctl leaves a daemon behind, and Process's child watching then failed to see pg_ctl exit (the
    /// test hung on a zombie); a pipe would likewise stay open in the daemon and never reach its end.
    @discardableResult
    static func run(_ exe: URL, _ args: [String], runAs: String?) throws -> String {
        let argv = runAs.map { ["/usr/sbin/runuser", "-u", $0, "--", exe.path] + args } ?? [exe.path] + args
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-pg-out-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: out) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw Failure.command(argv.joined(separator: " "), rc, String(cString: strerror(rc))) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0, code = (status >> 8) & 0xff
        guard exited && code == 0 else { throw Failure.command(([exe.lastPathComponent] + args).joined(separator: " "), exited ? code : -1, text) }
        return text
    }
}
