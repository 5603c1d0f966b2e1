import Foundation
import HTTPTypes
import UnCLIPEngine
import UnCLIPImage
import UnCLIPStore

/// An error a client caused or may retry, with the HTTP status, the request field it concerns and a message
/// that names it. Each API family writes it in its own shape (A1111's `detail`, OpenAI's `error` object, ours).
public struct APIError: Error, CustomStringConvertible, Sendable {
    public var status: HTTPResponse.Status
    public var message: String
    /// The request field at fault ("n", "init_images[0]", "seed"), when one is.
    public var field: String?
    /// OpenAI's error `type`.
    public var type: String
    /// Seconds after which a retry may succeed (429, 503).
    public var retryAfter: Int?

    public init(_ status: HTTPResponse.Status, _ message: String, field: String? = nil, type: String = "invalid_request_error",
                retryAfter: Int? = nil) {
        self.status = status; self.message = message; self.field = field; self.type = type; self.retryAfter = retryAfter
    }

    public var description: String { message }

    public static func badRequest(_ message: String, field: String?) -> APIError { APIError(.badRequest, message, field: field) }
    public static func notFound(_ message: String, field: String? = nil) -> APIError { APIError(.notFound, message, field: field, type: "not_found") }

    /// The client-facing form of any error a route can meet. Errors of the engine and store name their parameter
    /// (a request field) and never a path the client did not give; server-side failures are 500s whose message
    /// still says what failed.
    public static func from(_ error: Error) -> APIError {
        switch error {
        case let e as APIError:
            return e
        case let e as EngineError:
            switch e {
            case let .invalidParameter(name, reason):
                return APIError(.badRequest, "\(name): \(reason)", field: name)
            case .unsupported:
                return APIError(.badRequest, e.description, field: nil)
            case .insufficientMemory:
                return APIError(.init(code: 507, reasonPhrase: "Insufficient Storage"), e.description, type: "server_error")
            case .cancelled:
                return APIError(.init(code: 499, reasonPhrase: "Client Closed Request"), e.description, type: "cancelled")
            case .nonFinite:
                return APIError(.unprocessableContent, e.description, field: nil)
            default:
                return APIError(.internalServerError, e.description, type: "server_error")
            }
        case let e as StoreError:
            switch e {
            case .noSuchGeneration(let id, _):
                return APIError(.notFound, "no generation \(id)", field: "id", type: "not_found")
            case .noSuchJob(let id, _):
                return APIError(.notFound, "no job \(id)", field: "id", type: "not_found")
            case .noEmbedding:
                return APIError(.unprocessableContent, e.description, field: "id")
            case .queueFull:
                return APIError(.tooManyRequests, e.description, type: "rate_limit_exceeded", retryAfter: 30)
            case .busy, .connectionLost:
                return APIError(.serviceUnavailable, e.description, type: "server_error", retryAfter: 5)
            default:
                return APIError(.internalServerError, e.description, type: "server_error")
            }
        case let e as ImageFileError:
            switch e.reason {
            case .cannotOpen, .outOfMemory:
                return APIError(.internalServerError, e.description, type: "server_error")
            case .tooLarge, .fileTooLarge:
                return APIError(.contentTooLarge, e.description, field: e.source)
            default:
                return APIError(.badRequest, e.description, field: e.source)
            }
        case let e as DecodingError:
            return decoding(e)
        default:
            return APIError(.internalServerError, "\(error)", type: "server_error")
        }
    }

    /// A JSON body that did not decode: the path of the field and what was wrong with it.
    static func decoding(_ e: DecodingError) -> APIError {
        func path(_ keys: [CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop(while: { $0 == "." }).description
        }
        switch e {
        case let .typeMismatch(type, c):
            return .badRequest("\(path(c.codingPath)): expected \(typeName(type))", field: path(c.codingPath))
        case let .valueNotFound(type, c):
            return .badRequest("\(path(c.codingPath)): expected \(typeName(type)), got null", field: path(c.codingPath))
        case let .keyNotFound(key, c):
            let p = path(c.codingPath + [key])
            return .badRequest("\(p): required", field: p)
        case let .dataCorrupted(c):
            let p = path(c.codingPath)
            if p.isEmpty { return .badRequest("the body is not valid JSON (\(c.debugDescription))", field: nil) }
            return .badRequest("\(p): \(c.debugDescription)", field: p)
        @unknown default:
            return .badRequest("the body could not be read: \(e)", field: nil)
        }
    }

    private static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type, is UInt64.Type: return "an integer"
        case is Float.Type, is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default:
            let name = "\(t)"
            return name.hasPrefix("Array") ? "an array" : name.hasPrefix("Dictionary") ? "an object" : name
        }
    }
}
