import CSQLite
import Foundation

/// Everything that can go wrong with a store, each saying what and where.
public enum StoreError: Error, CustomStringConvertible, Equatable {
    /// The file exists but is not a SQLite database (garbage, or some other format).
    case notADatabase(path: String)
    /// A SQLite database written by something else (other tables, or another application id).
    case foreignDatabase(path: String, reason: String)
    /// The store was written by a newer unclip whose schema this build does not know.
    case newerSchema(path: String, found: Int, supported: Int)
    /// SQLite found damaged pages.
    case corrupt(path: String, detail: String)
    /// The database, its folder or the image folder cannot be written.
    case readOnly(path: String, detail: String)
    /// No space left on the device holding the store.
    case diskFull(path: String)
    /// Another process held the store's write lock for longer than the busy timeout.
    case busy(path: String)
    /// The file or its folder cannot be opened or created.
    case cannotOpen(path: String, reason: String)
    /// Any other SQLite failure.
    case sqlite(path: String, code: Int32, message: String, sql: String?)
    /// A stored float blob whose size does not match its recorded dimension.
    case badEmbedding(path: String, what: String, reason: String)
    /// No generation with that id.
    case noSuchGeneration(id: Int64, path: String)
    /// An image file of the store could not be written, moved or read.
    case imageFile(path: String, reason: String)
    /// Arguments that cannot work together (e.g. embeddings of different widths).
    case invalid(String)

    public var description: String {
        switch self {
        case let .notADatabase(path):
            return "\(path) is not an unclip store: the file is not a SQLite database (corrupt, or another kind of file). Move it away or pass another --store."
        case let .foreignDatabase(path, reason):
            return "\(path) is a SQLite database but not an unclip store (\(reason)); refusing to touch it. Pass another --store."
        case let .newerSchema(path, found, supported):
            return "\(path) was written by a newer unclip (store schema version \(found); this build reads up to \(supported)). Upgrade unclip; the store was not changed."
        case let .corrupt(path, detail):
            return "\(path) is damaged (\(detail)). Restore it from a backup, or move it away to start a new store."
        case let .readOnly(path, detail):
            return "the store \(path) is read-only (\(detail)); commands that add or remove generations need write access to the file and its folder."
        case let .diskFull(path):
            return "no space left on the device holding \(path); nothing was recorded. Free some space and try again."
        case let .busy(path):
            return "the store \(path) stayed locked by another unclip process; try again when it has finished."
        case let .cannotOpen(path, reason):
            return "cannot open the store \(path): \(reason)"
        case let .sqlite(path, code, message, sql):
            let statement = sql.map { " in: \($0.split(separator: "\n").first.map(String.init) ?? $0)" } ?? ""
            return "store \(path): SQLite error \(code) (\(message))\(statement)"
        case let .badEmbedding(path, what, reason):
            return "store \(path): \(what) is damaged: \(reason)"
        case let .noSuchGeneration(id, path):
            return "no generation \(id) in the store \(path) (see `unclip list`)"
        case let .imageFile(path, reason):
            return "image file \(path): \(reason)"
        case let .invalid(message):
            return message
        }
    }

    /// Maps a SQLite result code to the error a user can act on.
    static func from(code: Int32, message: String, path: String, sql: String?) -> StoreError {
        switch code & 0xFF {
        case SQLITE_NOTADB: return .notADatabase(path: path)
        case SQLITE_CORRUPT: return .corrupt(path: path, detail: message)
        case SQLITE_READONLY: return .readOnly(path: path, detail: message)
        case SQLITE_FULL: return .diskFull(path: path)
        case SQLITE_BUSY, SQLITE_LOCKED: return .busy(path: path)
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_AUTH:
            return .cannotOpen(path: path, reason: message)
        case SQLITE_IOERR where errno == ENOSPC: return .diskFull(path: path)
        default: return .sqlite(path: path, code: code, message: message, sql: sql)
        }
    }
}
