import Foundation

/// Everything that can go wrong with a store, each saying what and where.
public enum StoreError: Error, CustomStringConvertible, Equatable, Sendable {
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
    /// A generation without an image embedding (plain Stable Diffusion without a CLIP vision encoder).
    case noEmbedding(id: Int64)
    /// Arguments that cannot work together (e.g. embeddings of different widths).
    case invalid(String)
    /// No job with that id.
    case noSuchJob(id: Int64, path: String)
    /// The job queue already holds `limit` queued jobs.
    case queueFull(limit: Int)
    /// A database server's error (PostgreSQL: its SQLSTATE code and message).
    case database(path: String, code: String, message: String, sql: String?)
    /// The connection to a database server went away and did not come back in time; the call's transaction was
    /// rolled back by the server, so nothing of it was stored.
    case connectionLost(path: String, detail: String)
    /// This worker no longer holds the job: its lease ran out and the queue gave the job to another worker.
    case leaseLost(job: Int64, path: String)

    public var description: String {
        switch self {
        case let .notADatabase(path):
            return "\(path) is not an unclip store: the file is not a SQLite database (corrupt, or another kind of file). Move it away or open another store."
        case let .foreignDatabase(path, reason):
            return "\(path) is a SQLite database but not an unclip store (\(reason)); refusing to touch it. Open another store."
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
            return "no generation \(id) in the store \(path)"
        case let .imageFile(path, reason):
            return "image file \(path): \(reason)"
        case let .noEmbedding(id):
            return "generation \(id) has no image embedding (a plain Stable Diffusion model made it without a CLIP vision encoder); make variations of its picture instead"
        case let .invalid(message):
            return message
        case let .noSuchJob(id, path):
            return "no job \(id) in the store \(path)"
        case let .queueFull(limit):
            return "the job queue is full (\(limit) jobs waiting); try again when some have run"
        case let .database(path, code, message, sql):
            let statement = sql.map { " in: \($0.split(separator: "\n").first.map(String.init) ?? $0)" } ?? ""
            return "store \(path): the database refused (\(code.isEmpty ? "" : "SQLSTATE \(code): ")\(message))\(statement)"
        case let .connectionLost(path, detail):
            return "store \(path): the connection to the database was lost (\(detail)); the interrupted change was not stored"
        case let .leaseLost(job, path):
            return "store \(path): job \(job) was handed to another worker (this one's lease ran out); its result here is dropped"
        }
    }
}
