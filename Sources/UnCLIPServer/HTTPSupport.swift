import Foundation
import Hummingbird
import NIOCore
import UnCLIPService

extension Request {
    /// The body, refused with 413 past `limit` bytes (by Content-Length before reading, else while reading).
    mutating func data(limit: Int) async throws -> Data {
        if let length = headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.contentTooLarge, "the request body is \(length) bytes; this server accepts at most \(limit)")
        }
        do {
            let buffer = try await collectBody(upTo: limit)
            return Data(buffer: buffer)
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "the request body is over \(limit) bytes, the most this server accepts")
        }
    }

    /// A query parameter, or nil.
    func query(_ name: String) -> String? { uri.queryParameters[Substring(name)].map(String.init) }
}

/// JSON request bodies: an object, decoded with field paths in every error; `allowed` refuses unknown fields
/// where the real API does.
enum JSONBody {
    static func decode<T: Decodable>(_ type: T.Type, from data: Data, allowed: Set<String>?) throws -> (T, present: Set<String>) {
        guard !data.isEmpty else { throw APIError.badRequest("the request body is empty; send a JSON object", field: nil) }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
            throw APIError.badRequest("the request body is not valid JSON (\((error as NSError).userInfo[NSDebugDescriptionErrorKey] ?? error))", field: nil)
        }
        guard let dict = object as? [String: Any] else { throw APIError.badRequest("the request body must be a JSON object", field: nil) }
        if let allowed {
            for key in dict.keys.sorted() where !allowed.contains(key) {
                throw APIError.badRequest("\(key): unknown field (accepted: \(allowed.sorted().joined(separator: ", ")))", field: key)
            }
        }
        do {
            return (try JSONDecoder().decode(T.self, from: data), Set(dict.filter { !($0.value is NSNull) }.keys))
        } catch let e as DecodingError {
            throw APIError.decoding(e)
        }
    }
}

/// Responses.
enum Reply {
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(data: try JSONCoding.encode(value))))
    }

    static func raw(_ data: Data, type: String, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = type
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(data: data)))
    }

    static func png(_ data: Data, etag: String? = nil) -> Response {
        var h = HTTPFields()
        h[.cacheControl] = "private, max-age=31536000, immutable"
        if let etag { h[.eTag] = "\"\(etag)\"" }
        return raw(data, type: "image/png", headers: h)
    }
}

/// The error body shapes of the three APIs.
enum ErrorShape: Sendable {
    /// `{"error": {"message", "field", "status"}}`.
    case native
    /// FastAPI's `{"detail": …}` as AUTOMATIC1111 answers, plus `error` and `errors` as its API adds them.
    case a1111
    /// `{"error": {"message", "type", "param", "code"}}`.
    case openai

    func response(_ e: APIError) -> Response {
        var headers = HTTPFields()
        if let r = e.retryAfter { headers[.retryAfter] = "\(r)" }
        let body: [String: Any]
        switch self {
        case .native:
            body = ["error": ["message": e.message, "field": e.field as Any? ?? NSNull(), "status": Int(e.status.code)]]
        case .a1111:
            body = ["detail": e.message, "error": e.type, "errors": e.message, "body": NSNull()]
        case .openai:
            body = ["error": ["message": e.message, "type": e.type, "param": e.field as Any? ?? NSNull(), "code": NSNull()]]
        }
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Reply.raw(data, type: "application/json", status: e.status, headers: headers)
    }
}

/// Renders every error of a route group in its API's shape.
struct ErrorShapeMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let shape: ErrorShape
    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        do { return try await next(request, context) } catch let e as HTTPError {
            return shape.response(APIError(e.status, e.body ?? e.status.reasonPhrase))
        } catch {
            return shape.response(APIError.from(error))
        }
    }
}
