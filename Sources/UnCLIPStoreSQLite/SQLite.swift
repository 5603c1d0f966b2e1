import CSQLite
import UnCLIPStore
import Foundation

/// Tells SQLite to copy a bound buffer before `bind` returns (Swift may move or free it afterwards).
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A value bound to a statement parameter.
public enum SQLValue {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
    /// Float32 values stored as a little-endian blob.
    case floats([Float])
}

/// One SQLite connection (the C API directly; see the note in Store.swift on why not GRDB).
/// Not thread-safe: each process or thread opens its own.
public final class Database {
    let handle: OpaquePointer
    /// The database file, for error messages.
    public let path: String

    /// Opens (and with `create`, creates) the file. SQLite opens lazily, so a foreign file is only
    /// noticed by the first statement; `Store` runs one at once.
    /// `immutable` reads a file that nothing can change (a store in a read-only folder, where SQLite cannot
    /// create the -shm file that reading a WAL database otherwise needs).
    public init(path: String, readOnly: Bool, create: Bool = true, immutable: Bool = false) throws {
        self.path = path
        var db: OpaquePointer?
        var flags = SQLITE_OPEN_NOMUTEX
        flags |= readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0))
        var name = path
        if immutable {
            flags |= SQLITE_OPEN_URI
            var allowed = CharacterSet.urlPathAllowed
            allowed.remove(charactersIn: "?#%")
            name = "file:\(path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path)?mode=ro&immutable=1"
        }
        let rc = sqlite3_open_v2(name, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            throw StoreError.fromSQLite(rc, message: message, path: path, sql: nil)
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { sqlite3_close_v2(handle) }

    /// True when SQLite could only open the file for reading (write-protected file or folder).
    public var isReadOnly: Bool { sqlite3_db_readonly(handle, "main") == 1 }

    /// Waits up to `milliseconds` for another process's lock before failing with SQLITE_BUSY.
    public func setBusyTimeout(milliseconds: Int32) { sqlite3_busy_timeout(handle, milliseconds) }

    /// Runs one or more statements without results.
    public func execute(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(error)
            throw StoreError.fromSQLite(rc, message: message, path: path, sql: sql)
        }
    }

    /// Compiles one statement.
    public func prepare(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql: sql) }
        return Statement(stmt, database: self, sql: sql)
    }

    /// Runs a statement with parameters and no result rows.
    public func run(_ sql: String, _ values: [SQLValue] = []) throws {
        let s = try prepare(sql)
        try s.bind(values)
        while try s.step() {}
    }

    /// The first column of the first row, or nil when there is no row.
    public func scalarInt(_ sql: String, _ values: [SQLValue] = []) throws -> Int64? {
        let s = try prepare(sql)
        try s.bind(values)
        guard try s.step(), !s.isNull(0) else { return nil }
        return s.int(0)
    }

    public func scalarText(_ sql: String, _ values: [SQLValue] = []) throws -> String? {
        let s = try prepare(sql)
        try s.bind(values)
        guard try s.step(), !s.isNull(0) else { return nil }
        return s.text(0)
    }

    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    /// Rows changed by the last INSERT, UPDATE or DELETE.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    /// Runs `body` inside BEGIN IMMEDIATE … COMMIT, rolling back if it throws.
    /// IMMEDIATE takes the write lock up front: a deferred transaction that later tries to write can fail
    /// with SQLITE_BUSY at once (its snapshot is stale) instead of waiting, which breaks concurrent writers.
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            // A failed COMMIT may already have rolled back; ignore the "no transaction" error then.
            if sqlite3_get_autocommit(handle) == 0 { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// A read transaction: one consistent snapshot for several queries.
    public func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN DEFERRED")
        defer { if sqlite3_get_autocommit(handle) == 0 { try? execute("COMMIT") } }
        return try body()
    }

    func error(_ rc: Int32, sql: String?) -> StoreError {
        StoreError.fromSQLite(rc, message: String(cString: sqlite3_errmsg(handle)), path: path, sql: sql)
    }
}

/// A prepared statement; finalized when released.
public final class Statement {
    let handle: OpaquePointer
    let database: Database
    let sql: String

    init(_ handle: OpaquePointer, database: Database, sql: String) {
        self.handle = handle; self.database = database; self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    /// Resets the statement and binds `values` to parameters 1…n.
    public func bind(_ values: [SQLValue]) throws {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        for (i, value) in values.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(handle, index)
            case let .int(v): rc = sqlite3_bind_int64(handle, index, v)
            case let .double(v): rc = sqlite3_bind_double(handle, index, v)
            case let .text(v): rc = sqlite3_bind_text(handle, index, v, -1, transient)
            case let .blob(v):
                rc = v.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), transient) }
            case let .floats(v):
                rc = v.withUnsafeBufferPointer { buffer in
                    #if _endian(big)
                    let le = buffer.map { $0.bitPattern.littleEndian }
                    return le.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), transient) }
                    #else
                    return sqlite3_bind_blob(handle, index, buffer.baseAddress, Int32(buffer.count * 4), transient)
                    #endif
                }
            }
            guard rc == SQLITE_OK else { throw database.error(rc, sql: sql) }
        }
    }

    /// Advances; true when a row is available.
    public func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            sqlite3_reset(handle)
            throw database.error(rc, sql: sql)
        }
    }

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    public func int(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    public func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    public func text(_ column: Int32) -> String? {
        guard let p = sqlite3_column_text(handle, column) else { return nil }
        return String(cString: p)
    }

    /// The blob's bytes, valid only until the next step (no copy).
    public func blob(_ column: Int32) -> UnsafeRawBufferPointer {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let p = sqlite3_column_blob(handle, column) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: p, count: count)
    }

    /// A little-endian float32 blob as floats, checked against the expected count; `what` names it in errors.
    public func floats(_ column: Int32, count: Int, what: @autoclosure () -> String) throws -> [Float] {
        let bytes = blob(column)
        guard bytes.count == count * 4 else {
            throw StoreError.badEmbedding(path: database.path, what: what(),
                                          reason: "the blob has \(bytes.count) bytes; \(count) float32 values need \(count * 4)")
        }
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            copyLittleEndianFloats(bytes, into: out.baseAddress!, count: count)
            initialized = count
        }
    }
}

/// Copies `count` little-endian float32 values (possibly unaligned) into `out`.
@inline(__always)
func copyLittleEndianFloats(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<Float>, count: Int) {
    #if _endian(big)
    for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
    #else
    UnsafeMutableRawPointer(out).copyMemory(from: bytes.baseAddress!, byteCount: count * 4)
    #endif
}
