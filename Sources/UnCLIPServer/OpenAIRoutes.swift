import Foundation
import Hummingbird
import UnCLIPImage
import UnCLIPService
import UnCLIPStore

/// OpenAI's images API as DALL·E 2 serves it: generations, edits (inpainting: the mask's fully transparent
/// part is repainted) and variations (an unCLIP variation of the uploaded picture's CLIP embedding, which is
/// what DALL·E 2's variations are). Errors in OpenAI's shape; unknown
/// fields refused, as OpenAI does. `url` responses point at our own image route.
struct OpenAIRoutes {
    let server: UnCLIPServer

    struct GenerationBody: Decodable {
        let prompt: String
        let n: Int?
        let size: String?
        let response_format: String?
        let user: String?
        let model: String?
        let quality: String?
        let style: String?
        static let fields: Set<String> = ["prompt", "n", "size", "response_format", "user", "model", "quality", "style"]
    }

    func add(to group: RouterGroup<ServerContext>) {
        group.post("images/generations") { request, context in
            var request = request
            let data = try await request.data(limit: server.limits.maxBodyBytes)
            let (body, _) = try JSONBody.decode(GenerationBody.self, from: data, allowed: GenerationBody.fields)
            var spec = JobSpec(kind: .textToImage)
            spec.prompt = body.prompt
            guard !body.prompt.isEmpty else { throw APIError.badRequest("prompt: must not be empty", field: "prompt") }
            try configure(&spec, n: body.n, size: body.size, model: body.model)
            let format = try responseFormat(body.response_format)
            return try await run(spec, owner: context.owner, format: format, request: request)
        }
        group.post("images/variations") { request, context in
            var request = request
            let data = try await request.data(limit: server.limits.maxBodyBytes)
            let form = try MultipartForm(data, contentType: request.headers[.contentType] ?? "")
            let known: Set<String> = ["image", "n", "size", "response_format", "user", "model"]
            for p in form.parts where !known.contains(p.name) {
                throw APIError.badRequest("Unrecognized request argument supplied: \(p.name)", field: p.name)
            }
            guard let image = form["image"], !image.data.isEmpty else {
                throw APIError.badRequest("image: required (a PNG, JPEG or WebP file)", field: "image")
            }
            var spec = JobSpec(kind: .variation)
            spec.image = image.data.base64EncodedString()
            let n = try form.text("n").map { text -> Int in
                guard let v = Int(text) else { throw APIError.badRequest("n: must be an integer (got '\(text.prefix(20))')", field: "n") }
                return v
            }
            try configure(&spec, n: n, size: form.text("size"), model: form.text("model"))
            return try await run(spec, owner: context.owner, format: try responseFormat(form.text("response_format")), request: request)
        }
        group.post("images/edits") { request, context in
            var request = request
            let data = try await request.data(limit: server.limits.maxBodyBytes)
            let form = try MultipartForm(data, contentType: request.headers[.contentType] ?? "")
            let known: Set<String> = ["image", "mask", "prompt", "n", "size", "response_format", "user", "model"]
            for p in form.parts where !known.contains(p.name) {
                throw APIError.badRequest("Unrecognized request argument supplied: \(p.name)", field: p.name)
            }
            guard let image = form["image"], !image.data.isEmpty else {
                throw APIError.badRequest("image: required (a PNG; its transparent part is edited when no mask is given)", field: "image")
            }
            guard let prompt = form.text("prompt"), !prompt.isEmpty else {
                throw APIError.badRequest("prompt: required", field: "prompt")
            }
            let picture = try server.decodeUpload(image.data, field: "image")
            // OpenAI edits where the mask (else the image itself) is fully transparent; our masks are white
            // where repainted, so the alpha channel is converted here, before the job is queued.
            let maskField = form["mask"] == nil ? "image" : "mask"
            let maskBytes = form["mask"]?.data ?? image.data
            let mask = try Self.repaintMask(fromAlphaOf: maskBytes, field: maskField, limits: server.limits)
            guard mask.width == picture.width, mask.height == picture.height else {
                throw APIError.badRequest("mask: is \(mask.width)×\(mask.height) but the image is \(picture.width)×\(picture.height); they must be the same size", field: "mask")
            }
            guard mask.pixels.contains(255) else {
                throw APIError.badRequest("\(maskField): has no fully transparent pixels, so there is nothing to edit (the transparent part of the mask is what is repainted)", field: maskField)
            }
            var spec = JobSpec(kind: .edit)
            spec.prompt = prompt
            spec.image = image.data.base64EncodedString()
            spec.mask = try pngData(mask, parameters: nil).base64EncodedString()
            spec.strength = 1  // diffusers' inpainting default: the masked part starts from noise
            let n = try form.text("n").map { text -> Int in
                guard let v = Int(text) else { throw APIError.badRequest("n: must be an integer (got '\(text.prefix(20))')", field: "n") }
                return v
            }
            // An edit keeps the picture's size; OpenAI's size must then be that size.
            try configure(&spec, n: n, size: form.text("size"), model: form.text("model"))
            if let w = spec.width, let h = spec.height {
                guard w == picture.width, h == picture.height else {
                    throw APIError.badRequest("size: edits keep the image's size, \(picture.width)x\(picture.height) (got \(w)x\(h))", field: "size")
                }
                (spec.width, spec.height) = (nil, nil)
            }
            return try await run(spec, owner: context.owner, format: try responseFormat(form.text("response_format")), request: request)
        }
        group.get("models") { _, _ in
            try Reply.json(["object": .string("list"), "data": .list(server.models.models.map { ["id": $0.name, "object": "model", "owned_by": "unclip"] })] as OpenAIList)
        }
    }

    typealias OpenAIList = [String: ListValue]
    enum ListValue: Encodable, ExpressibleByStringLiteral, ExpressibleByArrayLiteral {
        case string(String), list([[String: String]])
        init(stringLiteral value: String) { self = .string(value) }
        init(arrayLiteral elements: [String: String]...) { self = .list(elements) }
        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self { case let .string(s): try c.encode(s); case let .list(l): try c.encode(l) }
        }
    }

    /// Our mask (white = repaint, black = keep) from a PNG's alpha channel: OpenAI repaints where alpha is 0.
    static func repaintMask(fromAlphaOf data: Data, field: String, limits: ServerLimits) throws -> RGBImage {
        let l = ImageLimits(maxSide: limits.maxUploadSide, maxPixels: limits.maxUploadPixels, maxFileBytes: limits.maxBodyBytes)
        let a: (width: Int, height: Int, alpha: [UInt8])
        do { a = try ImageFile.pngAlpha(data, source: "'\(field)'", limits: l) } catch let e as ImageFileError {
            var api = APIError.from(e)
            api.field = field
            throw api
        }
        return try RGBImage(width: a.width, height: a.height, pixels: a.alpha.flatMap { $0 == 0 ? [255, 255, 255] : [0, 0, 0] as [UInt8] })
    }

    /// n, size and model as OpenAI words them; "dall-e-2" (and no model) mean the server's default model.
    private func configure(_ spec: inout JobSpec, n: Int?, size: String?, model: String?) throws {
        let n = n ?? 1
        guard (1...server.limits.maxImages).contains(n) else {
            throw APIError.badRequest("n: must be 1…\(server.limits.maxImages) on this server (got \(n))", field: "n")
        }
        spec.count = n
        if let size {
            let parts = size.lowercased().split(separator: "x")
            guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]) else {
                throw APIError.badRequest("size: must be WIDTHxHEIGHT, e.g. 256x256, 512x512 or 1024x1024 (got '\(size.prefix(20))')", field: "size")
            }
            spec.width = w
            spec.height = h
        }
        if let model, !["dall-e-2", "dall-e-3", "gpt-image-1"].contains(model) { spec.model = model }
    }

    private func responseFormat(_ f: String?) throws -> String {
        let f = f ?? "url"
        guard f == "url" || f == "b64_json" else {
            throw APIError.badRequest("response_format: must be url or b64_json (got '\(f.prefix(20))')", field: "response_format")
        }
        return f
    }

    private func run(_ spec: JobSpec, owner: String, format: String, request: Request) async throws -> Response {
        let job: JobRecord
        do { job = try server.submit(spec, owner: owner, present: spec.presentFields) } catch var e as APIError {
            e.field = e.field.map { ["width": "size", "height": "size", "count": "n"][$0] ?? $0 }
            throw e
        }
        let ended = try await server.wait(for: job.id)
        guard ended.status == .done else {
            throw APIError(.internalServerError, ended.error ?? "the request was \(ended.status.rawValue)", type: "server_error")
        }
        let host = request.head.authority ?? "\(server.configuration.host):\(server.configuration.port)"
        var items: [[String: String]] = []
        for id in ended.generations {
            if format == "b64_json" {
                items.append(["b64_json": try server.store.imageData(id).base64EncodedString()])
            } else {
                items.append(["url": "http://\(host)/api/generations/\(id)/image"])
            }
        }
        struct Body: Encodable { let created: Int; let data: [[String: String]] }
        var headers = HTTPFields()
        headers[.jobID] = "\(job.id)"
        return try Reply.json(Body(created: Int(Date().timeIntervalSince1970), data: items), headers: headers)
    }
}
