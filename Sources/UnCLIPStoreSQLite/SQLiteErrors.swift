import CSQLite
import Foundation
import UnCLIPStore

extension StoreError {
    /// Maps a SQLite result code to the error a user can act on.
    static func fromSQLite(_ code: Int32, message: String, path: String, sql: String?) -> StoreError {
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
