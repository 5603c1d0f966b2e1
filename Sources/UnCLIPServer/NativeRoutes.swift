import Foundation
import Hummingbird
import NIOCore
import UnCLIPEngine
import UnCLIPService
import UnCLIPStore

/// A generation as the native API lists it: no file paths, URLs of our own routes instead.
struct GenerationItem: Encodable {
    let id: Int64
    let createdAt: String
    let kind: GenerationKind
    let prompt: String?
    let negativePrompt: String?
    let seed: UInt64?
    let width: Int
    let height: Int
    let sha256: String
    let model: String?
    let starred: Bool
    let parents: [ParentLink]
    let job: Int64?
    let image: String
    let thumbnail: String

    enum CodingKeys: String, CodingKey {
        case id, createdAt = "created_at", kind, prompt, negativePrompt = "negative_prompt", seed, width, height, sha256, model,
             starred, parents, job, image, thumbnail
    }

    init(_ g: StoredGeneration, modelName: String?) {
        id = g.id; createdAt = g.createdAt; kind = g.kind; prompt = g.prompt; negativePrompt = g.settings.negativePrompt
        seed = g.seed; width = g.width; height = g.height; sha256 = g.sha256; model = modelName; starred = g.starred
        parents = g.parents; job = g.job?.job
        image = "/api/generations/\(g.id)/image"; thumbnail = "/api/generations/\(g.id)/thumbnail"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(createdAt, forKey: .createdAt); try c.encode(kind, forKey: .kind)
        try c.encode(prompt, forKey: .prompt); try c.encode(negativePrompt, forKey: .negativePrompt); try c.encode(seed, forKey: .seed)
        try c.encode(width, forKey: .width); try c.encode(height, forKey: .height); try c.encode(sha256, forKey: .sha256)
        try c.encode(model, forKey: .model); try c.encode(starred, forKey: .starred); try c.encode(parents, forKey: .parents)
        try c.encode(job, forKey: .job); try c.encode(image, forKey: .image); try c.encode(thumbnail, forKey: .thumbnail)
    }
}

/// Everything about one generation.
struct GenerationDetailView: Encodable {
    struct Prior: Encodable { let scores: [Float]; let chosen: Int; let candidates: Int }
    let generation: GenerationItem
    let settings: RecordedSettings
    let seconds: Double?
    let children: [Int64]
    let prior: Prior?
    let parameters: String

    func encode(to encoder: Encoder) throws {
        try generation.encode(to: encoder)
        enum K: String, CodingKey { case settings, seconds, children, prior, parameters }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(settings, forKey: .settings); try c.encode(seconds, forKey: .seconds); try c.encode(children, forKey: .children)
        try c.encode(prior, forKey: .prior); try c.encode(parameters, forKey: .parameters)
    }
}

/// `/api`: generations, search, stars and the job queue, as documented in `/openapi.json`.
struct NativeRoutes {
    let server: UnCLIPServer
    var store: any GenerationStore { server.store }

    func add(to group: RouterGroup<ServerContext>) {
        group.get("generations") { request, _ in try list(request) }
        group.get("generations/:id") { _, context in try detail(try pathID(context)) }
        group.get("generations/:id/image") { _, context in
            let id = try pathID(context)
            let g = try store.generation(id)
            return Reply.png(try store.imageData(id), etag: g.sha256)
        }
        group.get("generations/:id/thumbnail") { request, context in
            let id = try pathID(context)
            let size = try request.query("size").map { try intParameter("size", $0, 16...1024) } ?? 256
            let g = try store.generation(id)
            return Reply.png(try server.thumbnails.thumbnail(of: g, size: size, store: store), etag: "\(g.sha256)-\(size)")
        }
        group.put("generations/:id/star") { _, context in try star(try pathID(context), true) }
        group.delete("generations/:id/star") { _, context in try star(try pathID(context), false) }
        group.delete("generations/:id") { _, context in
            let id = try pathID(context)
            let g = try store.generation(id)
            if g.starred { throw APIError(.conflict, "generation \(id) is starred; unstar it before removing it", field: "id") }
            try store.remove(id)
            server.thumbnails.forget(id)
            return Response(status: .noContent)
        }
        group.post("search") { request, _ in
            var request = request
            return try await search(try await request.data(limit: server.limits.maxBodyBytes))
        }
        group.post("jobs") { request, context in
            var request = request
            let data = try await request.data(limit: server.limits.maxBodyBytes)
            let (spec, present) = try JSONBody.decode(JobSpec.self, from: data, allowed: JobSpec.fields)
            let job = try server.submit(spec, owner: context.owner, present: present)
            var headers = HTTPFields()
            headers[.location] = "/api/jobs/\(job.id)"
            headers[.jobID] = "\(job.id)"
            return try Reply.json(try server.view(job), status: .accepted, headers: headers)
        }
        group.get("jobs/:id") { _, context in
            let id = try pathID(context)
            return try Reply.json(try server.view(try store.job(id)), headers: [.jobID: "\(id)"])
        }
        group.delete("jobs/:id") { _, context in
            let id = try pathID(context)
            return try Reply.json(try server.view(try server.cancel(id)), headers: [.jobID: "\(id)"])
        }
        group.get("jobs/:id/events") { _, context in try events(try pathID(context)) }
        group.get("queue") { _, _ in
            let running = try store.jobs(statuses: [.running], limit: nil).map { try server.view($0) }
            let queued = try store.queuedInClaimOrder().enumerated().map { i, j in JobView(j, position: i + 1) }
            return try Reply.json(["running": running, "queued": queued])
        }
        group.get("models") { _, _ in try Reply.json(server.models.models.map { ModelView($0, isDefault: $0.name == server.models.defaultModel.name) }) }
    }

    // MARK: Generations

    private func list(_ request: Request) throws -> Response {
        var filter = GenerationFilter()
        if let kinds = request.query("kind") {
            filter.kinds = try kinds.split(separator: ",").map { k in
                guard let kind = GenerationKind(rawValue: String(k)) else {
                    throw APIError.badRequest("kind: unknown kind '\(k)' (kinds: \(GenerationKind.allCases.map(\.rawValue).joined(separator: ", ")))", field: "kind")
                }
                return kind
            }
        }
        if let m = request.query("model") {
            let name = try server.models.model(m).name
            guard let record = try store.modelsInUse().first(where: { URL(fileURLWithPath: $0.path).lastPathComponent == name }) else {
                return try Reply.json(Page(generations: [], nextCursor: nil))
            }
            filter.modelID = record.id
        }
        if let since = request.query("since") {
            guard let t = try? StoreTime.timestamp(parsing: since) else {
                throw APIError.badRequest("since: not a date (use 2026-12-03 or 2026-12-03T10:00:00Z)", field: "since")
            }
            filter.since = t
        }
        if let starred = request.query("starred") { filter.starred = try boolParameter("starred", starred) }
        if let parent = request.query("parent") { filter.parent = try idParameter("parent", parent) }
        if let cursor = request.query("cursor") { filter.beforeID = try idParameter("cursor", cursor) }
        let limit = try request.query("limit").map { try intParameter("limit", $0, 1...500) } ?? 50
        let rows = try store.generations(filter, limit: limit + 1)
        let names = try modelNames()
        let page = rows.prefix(limit).map { GenerationItem($0, modelName: $0.modelID.flatMap { names[$0] }) }
        return try Reply.json(Page(generations: Array(page), nextCursor: rows.count > limit ? page.last?.id : nil))
    }

    struct Page: Encodable {
        let generations: [GenerationItem]
        let nextCursor: Int64?
        enum CodingKeys: String, CodingKey { case generations, nextCursor = "next_cursor" }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(generations, forKey: .generations); try c.encode(nextCursor, forKey: .nextCursor)
        }
    }

    /// Model ids → the names clients use (folder names), through the server's cache.
    func modelNames() throws -> ModelNames { server.modelNames }

    private func detail(_ id: Int64) throws -> Response {
        let g = try store.generation(id)
        let prior = try g.priorRunID.flatMap { try store.priorRun(id: $0) }
        let name = g.modelID.flatMap { server.modelNames[$0] }
        let view = GenerationDetailView(
            generation: GenerationItem(g, modelName: name), settings: g.settings, seconds: g.seconds, children: try store.children(of: id),
            prior: prior.map { .init(scores: $0.scores, chosen: $0.chosenIndex, candidates: $0.count) },
            parameters: parametersText(kind: g.kind, prompt: g.prompt ?? "", settings: g.settings, seed: g.seed ?? 0, parents: g.parents))
        return try Reply.json(view)
    }

    private func star(_ id: Int64, _ on: Bool) throws -> Response {
        try store.setStarred(id, on)
        return try Reply.json(["id": id, "starred": on ? 1 : 0].mapValues { $0 })
    }

    // MARK: Search

    struct SearchBody: Decodable {
        let text: String?
        let image: String?
        let like: Int64?
        let limit: Int?
        let kind: [GenerationKind]?
        static let fields: Set<String> = ["text", "image", "like", "limit", "kind"]
    }

    struct SearchResult: Encodable {
        let score: Float
        let generation: GenerationItem
        func encode(to encoder: Encoder) throws {
            try generation.encode(to: encoder)
            enum K: String, CodingKey { case score }
            var c = encoder.container(keyedBy: K.self)
            try c.encode(score, forKey: .score)
        }
    }

    private func search(_ data: Data) async throws -> Response {
        let (body, _) = try JSONBody.decode(SearchBody.self, from: data, allowed: SearchBody.fields)
        let given = [body.text != nil, body.image != nil, body.like != nil].filter { $0 }.count
        guard given == 1 else { throw APIError.badRequest("text: give exactly one of text, image (base64) or like (a generation id)", field: "text") }
        let query: SearchQuery
        if let text = body.text { query = .text(text) } else if let image = body.image {
            let bytes = try Base64Image.decode(image, field: "image")
            _ = try server.decodeUpload(bytes, field: "image")
            query = .picture(.data(bytes, name: "image"))
        } else {
            let id = body.like!
            guard try store.contains(id) else { throw APIError.notFound("no generation \(id)", field: "like") }
            query = .like(id)
        }
        let limit = body.limit ?? 50
        try JobSpec.limit("limit", limit, 1...500)
        let store = self.store, services = server.models.services
        // Embedding the query runs a model (and may wait for a running job's engine): off the cooperative pool.
        let hits = try await Offload.run {
            try GenerationSearch.search(query, in: store, services: services, filter: GenerationFilter(kinds: body.kind), limit: limit,
                                       cache: server.searchCache)
        }
        let names = try modelNames()
        let results = try hits.map { h -> SearchResult in
            let g = try store.generation(h.id)
            return SearchResult(score: h.score, generation: GenerationItem(g, modelName: g.modelID.flatMap { names[$0] }))
        }
        return try Reply.json(["results": results])
    }

    // MARK: Job events

    /// Server-Sent Events: the job's state now, then each change (queued position, progress with ETA, previews,
    /// images, and the final done / failed / cancelled with the generation ids or the error).
    private func events(_ id: Int64) throws -> Response {
        let job = try store.job(id)
        let hub = server.hub
        let stream = hub.subscribe(id)
        let first = try server.view(job)
        let store = self.store
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[.jobID] = "\(id)"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await writer.write(ByteBuffer(string: JobEvent.make("state", first).sse))
            // The job may have ended between reading it and subscribing: then its final event was missed.
            let now = try store.job(id)
            if now.status.isFinal {
                try await writer.write(ByteBuffer(string: JobEvent.make(now.status.rawValue, JobView(now, position: nil)).sse))
                try await writer.finish(nil)
                return
            }
            for await event in stream {
                try await writer.write(ByteBuffer(string: event.sse))
            }
            try await writer.finish(nil)
        })
    }
}

/// A served model as `/api/models` lists it.
struct ModelView: Encodable {
    let name: String
    let family: String
    let capabilities: [String]
    let nativeSize: Int
    let isDefault: Bool
    let guidance: Float?
    enum CodingKeys: String, CodingKey { case name, family, capabilities, nativeSize = "native_size", isDefault = "default", guidance }
    init(_ m: ServedModel, isDefault: Bool) {
        name = m.name; family = type(of: m.engine).familyName; capabilities = m.engine.capabilities.names
        nativeSize = m.engine.nativeSize; self.isDefault = isDefault; guidance = m.engine.model.defaults.guidanceScale
    }
}

// MARK: - Parameters

func pathID(_ context: ServerContext) throws -> Int64 {
    try idParameter("id", context.parameters.get("id") ?? "")
}

/// Ids are positive integers: anything else ("../x", "1.png") is refused by name, never used as a path.
func idParameter(_ name: String, _ text: String) throws -> Int64 {
    guard let v = Int64(text), v > 0 else { throw APIError.badRequest("\(name): not a generation or job id ('\(text.prefix(40))')", field: name) }
    return v
}

func intParameter(_ name: String, _ text: String, _ range: ClosedRange<Int>) throws -> Int {
    guard let v = Int(text), range.contains(v) else {
        throw APIError.badRequest("\(name): must be an integer in \(range.lowerBound)…\(range.upperBound) (got '\(text.prefix(40))')", field: name)
    }
    return v
}

func boolParameter(_ name: String, _ text: String) throws -> Bool {
    switch text.lowercased() {
    case "true", "1", "yes": return true
    case "false", "0", "no": return false
    default: throw APIError.badRequest("\(name): must be true or false (got '\(text.prefix(40))')", field: name)
    }
}

/// Blocking work (model runs, image coding) on Dispatch's threads, not on Swift concurrency's cooperative pool.
enum Offload {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global(qos: .userInitiated).async { c.resume(with: Result { try body() }) }
        }
    }
}

/// Model ids → folder names. Model rows never change id, so a listing looks each up once per server, not once
/// per request.
final class ModelNames: @unchecked Sendable {
    private let store: any GenerationStore
    private let lock = NSLock()
    private var names: [Int64: String] = [:]
    init(store: any GenerationStore) { self.store = store }

    subscript(_ id: Int64) -> String? {
        if let n = lock.withLock({ names[id] }) { return n }
        guard let m = try? store.model(id: id) else { return nil }
        let n = URL(fileURLWithPath: m.path).lastPathComponent
        lock.withLock { names[id] = n }
        return n
    }
}
