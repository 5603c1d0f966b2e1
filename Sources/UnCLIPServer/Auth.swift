import Foundation
import Hummingbird
import UnCLIPStore

/// API keys: `Authorization: Bearer KEY` (OpenAI's clients) or HTTP Basic with the key as password (A1111's
/// clients send `--api-auth user:password`), compared in constant time. Without keys every request is let in
/// (the server then listens on loopback only). Each key's digest names the caller for the queue's turns.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let keys: [[UInt8]]
    let owners: [String]
    /// Paths open without a key (health checks).
    let open: Set<String>

    init(keys: [String], open: Set<String>) {
        self.keys = keys.map { Array($0.utf8) }
        owners = keys.map { "key-" + SHA256.hex(Data($0.utf8)).prefix(12) }
        self.open = open
    }

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        guard !keys.isEmpty else { return try await next(request, context) }
        if open.contains(request.uri.path) { return try await next(request, context) }
        guard let presented = Self.credential(request.headers[.authorization]), let index = match(presented) else {
            var headers = HTTPFields()
            headers[.wwwAuthenticate] = "Bearer realm=\"unclip\", Basic realm=\"unclip\""
            let body = #"{"error":{"message":"a valid API key is required: send Authorization: Bearer KEY, or HTTP Basic with the key as password","type":"invalid_api_key","param":null,"code":"invalid_api_key","status":401},"detail":"Not authenticated"}"#
            return Reply.raw(Data(body.utf8), type: "application/json", status: .unauthorized, headers: headers)
        }
        var context = context
        context.owner = owners[index]
        return try await next(request, context)
    }

    /// The key in a Bearer header, or the password of a Basic one.
    static func credential(_ header: String?) -> [UInt8]? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        switch parts[0].lowercased() {
        case "bearer": return Array(parts[1].trimmingCharacters(in: .whitespaces).utf8)
        case "basic":
            guard let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
                  let colon = data.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            return Array(data[data.index(after: colon)...])
        default: return nil
        }
    }

    /// The index of the matching key. Every key is compared over its whole length whatever matches, so the
    /// time taken does not tell how much of a guess was right.
    func match(_ presented: [UInt8]) -> Int? {
        var found: Int?
        for (i, key) in keys.enumerated() where Self.constantTimeEqual(key, presented) { found = found ?? i }
        return found
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        // Compare over the key's length whatever the guess's length, so length differences take no less time.
        for i in 0..<a.count { diff |= a[i] ^ (i < b.count ? b[i] : 0) }
        return diff == 0
    }
}
