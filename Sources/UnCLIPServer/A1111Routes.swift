import Foundation
import Hummingbird
import UnCLIPImage
import UnCLIPSchedulers
import UnCLIPService
import UnCLIPStore

/// AUTOMATIC1111's `/sdapi/v1` subset, with its field names and response shapes, so its client libraries and
/// the apps built on them (Open WebUI, SillyTavern) work unchanged. Requests go through the same job queue as
/// our own API; txt2img and img2img answer when their job ends, as A1111 does. Unknown fields are ignored, as
/// A1111's pydantic models do (clients send many options we have no use for).
struct A1111Routes {
    let server: UnCLIPServer

    /// A1111's generation request (txt2img and img2img share it; unknown fields ignored).
    struct GenerationBody: Decodable {
        var prompt: String?
        var negative_prompt: String?
        var seed: Int64?
        var steps: Int?
        var cfg_scale: Float?
        var width: Int?
        var height: Int?
        var sampler_name: String?
        var sampler_index: String?
        var scheduler: String?
        var batch_size: Int?
        var n_iter: Int?
        var denoising_strength: Float?
        var init_images: [String]?
        /// img2img inpainting: base64 picture, white = repaint (inverted with inpainting_mask_invert = 1).
        var mask: String?
        var inpainting_mask_invert: Int?
        var override_settings: [String: JSONAny]?
    }

    /// Any JSON value (override_settings holds mixed values; only the model name is read).
    enum JSONAny: Decodable {
        case string(String), other
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            self = (try? c.decode(String.self)).map { .string($0) } ?? .other
        }
    }

    func add(to group: RouterGroup<ServerContext>) {
        group.post("txt2img") { request, context in
            var request = request
            return try await generate(try await request.data(limit: server.limits.maxBodyBytes), img2img: false, owner: context.owner)
        }
        group.post("img2img") { request, context in
            var request = request
            return try await generate(try await request.data(limit: server.limits.maxBodyBytes), img2img: true, owner: context.owner)
        }
        group.get("progress") { request, _ in try progress(request) }
        group.post("interrupt") { _, _ in
            if let p = server.hub.progress { _ = try server.cancel(p.job) }
            return try Reply.json([String: String]())
        }
        group.post("skip") { _, _ in
            if let p = server.hub.progress { _ = try server.cancel(p.job) }
            return try Reply.json([String: String]())
        }
        group.get("options") { _, _ in try Reply.json(options()) }
        group.post("options") { request, _ in
            var request = request
            let data = try await request.data(limit: server.limits.maxBodyBytes)
            let (body, _) = try JSONBody.decode([String: JSONAny].self, from: data, allowed: nil)
            if case let .string(name)? = body["sd_model_checkpoint"] { try server.models.setDefault(name, field: "sd_model_checkpoint") }
            return Reply.raw(Data("null".utf8), type: "application/json")
        }
        group.get("sd-models") { _, _ in
            try Reply.json(server.models.models.map { m -> [String: String?] in
                let hash = (try? m.service.modelHash()) ?? ""
                return ["title": "\(m.name) [\(hash)]", "model_name": m.name, "hash": hash, "sha256": try? m.service.fingerprint(),
                        "filename": m.name, "config": nil]
            })
        }
        group.post("refresh-checkpoints") { _, _ in Reply.raw(Data("null".utf8), type: "application/json") }
        group.get("samplers") { _, _ in
            var seen: [String] = []
            for p in SchedulerRegistry.presets where !seen.contains(p.a1111Sampler) { seen.append(p.a1111Sampler) }
            return try Reply.json(seen.map { name in
                Sampler(name: name, aliases: SchedulerRegistry.presets.filter { $0.a1111Sampler == name }.map(\.alias), options: [:])
            })
        }
        group.get("schedulers") { _, _ in
            try Reply.json(SchedulerRegistry.scheduleTypes.map {
                ScheduleType(name: $0.lowercased(), label: $0, aliases: nil, default_rho: -1, need_inner_model: false)
            })
        }
        group.get("upscalers") { _, _ in
            // No upscaler yet: A1111 always lists "None".
            try Reply.json([["name": "None", "model_name": nil, "model_path": nil, "model_url": nil, "scale": nil] as [String: String?]])
        }
        group.get("latent-upscale-modes") { _, _ in try Reply.json([[String: String]]()) }
        group.get("sd-vae") { _, _ in try Reply.json([[String: String]]()) }
        group.get("loras") { _, _ in try Reply.json([[String: String]]()) }
        group.get("embeddings") { _, _ in try Reply.json(["loaded": [String: String](), "skipped": [:]]) }
        group.get("cmd-flags") { _, _ in try Reply.json([String: String]()) }
        // Clients probe for extensions here (webuiapi's check_extensions); we have none.
        group.get("scripts") { _, _ in try Reply.json(["txt2img": [String](), "img2img": [String]()]) }
        group.post("png-info") { request, _ in
            var request = request
            return try pngInfo(try await request.data(limit: server.limits.maxBodyBytes))
        }
    }

    struct Sampler: Encodable { let name: String; let aliases: [String]; let options: [String: String] }
    struct ScheduleType: Encodable { let name: String; let label: String; let aliases: [String]?; let default_rho: Double; let need_inner_model: Bool }

    // MARK: txt2img / img2img

    private func generate(_ data: Data, img2img: Bool, owner: String) async throws -> Response {
        let (body, _) = try JSONBody.decode(GenerationBody.self, from: data, allowed: nil)
        var spec = try Self.jobSpec(body, img2img: img2img, limits: server.limits)
        if img2img {
            guard let first = body.init_images?.first else {
                throw APIError.badRequest("init_images: img2img needs one picture (base64)", field: "init_images")
            }
            // A1111 resizes the init picture to width × height ("just resize", Lanczos); an edit keeps its picture's size.
            let picture = try server.decodeUpload(try Base64Image.decode(first, field: "init_images[0]"), field: "init_images[0]")
            let (w, h) = (body.width ?? picture.width, body.height ?? picture.height)
            if (w, h) != (picture.width, picture.height) {
                guard w >= 8, h >= 8, w <= server.limits.maxUploadSide, h <= server.limits.maxUploadSide else {
                    throw APIError.badRequest("width: \(w)×\(h) is not a size this server resizes to (8…\(server.limits.maxUploadSide))", field: "width")
                }
                spec.image = try pngData(picture.resized(width: w, height: h, filter: .lanczos), parameters: nil).base64EncodedString()
            } else {
                spec.image = first
            }
            if let maskText = body.mask {
                // The mask follows the picture: resized the same way, and inverted when asked (A1111's
                // mask_blur, inpainting_fill and full-resolution inpainting are not applied: diffusers' masking is).
                let mask = try server.decodeUpload(try Base64Image.decode(maskText, field: "mask"), field: "mask")
                let invert = body.inpainting_mask_invert ?? 0
                guard invert == 0 || invert == 1 else {
                    throw APIError.badRequest("inpainting_mask_invert: must be 0 or 1 (got \(invert))", field: "inpainting_mask_invert")
                }
                var m = mask
                if (mask.width, mask.height) != (w, h) { m = mask.resized(width: w, height: h, filter: .lanczos) }
                if invert == 1 { m = try RGBImage(width: m.width, height: m.height, pixels: m.pixels.map { 255 - $0 }) }
                spec.mask = m == mask ? maskText : try pngData(m, parameters: nil).base64EncodedString()
            }
            spec.width = nil
            spec.height = nil
            spec.strength = body.denoising_strength ?? 0.75
        }
        let job: JobRecord
        do { job = try server.submit(spec, owner: owner, present: spec.presentFields) } catch var e as APIError {
            e.field = e.field.map(a1111Field)
            throw e
        }
        let ended = try await server.wait(for: job.id)
        guard ended.status == .done else {
            if ended.status == .cancelled {
                // A1111 answers an interrupted request with what was finished.
                return try reply(ended, body: body, data: data)
            }
            throw APIError(.internalServerError, ended.error ?? "the job \(ended.status.rawValue)", type: "server_error")
        }
        return try reply(ended, body: body, data: data)
    }

    /// The job a txt2img / img2img body asks for, before its init picture is looked at (`generate` adds that).
    static func jobSpec(_ body: GenerationBody, img2img: Bool, limits: ServerLimits) throws -> JobSpec {
        var spec = JobSpec(kind: img2img ? .edit : .textToImage)
        spec.prompt = body.prompt ?? ""
        spec.negativePrompt = body.negative_prompt.flatMap { $0.isEmpty ? nil : $0 }
        spec.seed = body.seed
        spec.steps = body.steps
        spec.guidance = body.cfg_scale
        spec.width = body.width
        spec.height = body.height
        let batch = body.batch_size ?? 1, iterations = body.n_iter ?? 1
        guard batch >= 1, iterations >= 1 else {
            throw APIError.badRequest("\(batch < 1 ? "batch_size" : "n_iter"): must be at least 1", field: batch < 1 ? "batch_size" : "n_iter")
        }
        // batch_size × n_iter can overflow Int (2^62 × 4 would trap): such a product is over any limit.
        let (count, overflow) = batch.multipliedReportingOverflow(by: iterations)
        if overflow || count > limits.maxImages {
            throw APIError.badRequest("batch_size: batch_size × n_iter is \(overflow ? "over \(Int.max)" : "\(count)"); this server makes at most \(limits.maxImages) images per request", field: "batch_size")
        }
        spec.count = count
        if let sampler = body.sampler_name ?? body.sampler_index, !sampler.isEmpty {
            do {
                let selection = try SchedulerRegistry.lookup(sampler, scheduleType: body.scheduler)
                spec.scheduler = selection.preset?.alias ?? selection.className
            } catch {
                let field = body.scheduler != nil && "\(error)".contains("schedule type") ? "scheduler" : "sampler_name"
                throw APIError.badRequest("\(field): \(error)", field: field)
            }
        }
        if case let .string(name)? = body.override_settings?["sd_model_checkpoint"] { spec.model = name }
        return spec
    }

    /// Our field names back to A1111's, in messages.
    private func a1111Field(_ f: String) -> String {
        ["guidance": "cfg_scale", "count": "batch_size", "image": "init_images", "strength": "denoising_strength",
         "scheduler": "sampler_name", "model": "sd_model_checkpoint"][f] ?? f
    }

    private func reply(_ job: JobRecord, body: GenerationBody, data: Data) throws -> Response {
        let store = server.store
        var images: [String] = [], seeds: [UInt64] = [], infotexts: [String] = []
        var first: StoredGeneration?
        for id in job.generations {
            let g = try store.generation(id)
            first = first ?? g
            images.append(try store.imageData(id).base64EncodedString())
            seeds.append(g.seed ?? 0)
            infotexts.append(parametersText(kind: g.kind, prompt: g.prompt ?? "", settings: g.settings, seed: g.seed ?? 0, parents: g.parents))
        }
        let s = first?.settings
        let info: [String: Any] = [
            "prompt": body.prompt ?? "", "all_prompts": Array(repeating: body.prompt ?? "", count: seeds.count),
            "negative_prompt": body.negative_prompt ?? "", "all_negative_prompts": Array(repeating: body.negative_prompt ?? "", count: seeds.count),
            "seed": seeds.first ?? 0, "all_seeds": seeds, "subseed": -1, "all_subseeds": Array(repeating: -1, count: seeds.count),
            "subseed_strength": 0, "width": s?.width ?? 0, "height": s?.height ?? 0, "sampler_name": s?.samplerName ?? s?.schedulerName ?? "",
            "cfg_scale": s?.guidance ?? 0, "steps": s?.steps ?? 0, "batch_size": body.batch_size ?? 1, "restore_faces": false,
            "sd_model_name": job.model ?? "", "sd_model_hash": s?.modelHash ?? "", "seed_resize_from_w": -1, "seed_resize_from_h": -1,
            "denoising_strength": s?.strength ?? 0, "extra_generation_params": [String: String](), "index_of_first_image": 0,
            "infotexts": infotexts, "styles": [String](), "job_timestamp": job.startedAt ?? "", "clip_skip": 1,
            "is_using_inpainting_conditioning": false, "version": "unclip-\(ServerInfo.version)",
        ]
        let infoText = String(decoding: try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
        let parameters = (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        let out: [String: Any] = ["images": images, "parameters": parameters.filter { $0.key != "init_images" }, "info": infoText]
        var headers = HTTPFields()
        headers[.jobID] = "\(job.id)"
        return Reply.raw(try JSONSerialization.data(withJSONObject: out, options: [.withoutEscapingSlashes]), type: "application/json",
                         headers: headers)
    }

    // MARK: progress, options, png-info

    private func progress(_ request: Request) throws -> Response {
        let store = server.store
        let queued = try store.queuedInClaimOrder().count
        let p = server.hub.progress
        var state: [String: Any] = ["skipped": false, "interrupted": false, "stopping_generation": false, "job": p.map { "job \($0.job)" } ?? "",
                                    "job_count": queued + (p == nil ? 0 : 1), "job_timestamp": "0", "job_no": p?.image ?? 0,
                                    "sampling_step": p?.step ?? 0, "sampling_steps": p?.total ?? 0]
        if let p, p.stage == "prior" { state["job"] = "prior" }
        var eta = 0.0
        if let p, p.progress > 0 { eta = Date().timeIntervalSince(p.startedAt) / p.progress * (1 - p.progress) }
        var currentImage: Any = NSNull()
        let skipImage = request.query("skip_current_image").map { $0 == "true" } ?? false
        if !skipImage, let p, let preview = server.hub.latestPreview, preview.job == p.job { currentImage = preview.png.base64EncodedString() }
        let body: [String: Any] = ["progress": p?.progress ?? 0, "eta_relative": eta, "state": state, "current_image": currentImage,
                                   "textinfo": p.map { "\($0.stage) step \($0.step)/\($0.total), image \($0.image + 1)/\($0.images)" } as Any? ?? NSNull()]
        return Reply.raw(try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]), type: "application/json")
    }

    private func options() -> [String: String?] {
        let m = server.models.defaultModel
        let hash = (try? m.service.modelHash()) ?? ""
        return ["sd_model_checkpoint": "\(m.name) [\(hash)]", "sd_checkpoint_hash": try? m.service.fingerprint(),
                "samples_format": "png", "sd_vae": "Automatic", "CLIP_stop_at_last_layers": "1"]
    }

    struct PNGInfoBody: Decodable { let image: String }

    private func pngInfo(_ data: Data) throws -> Response {
        let (body, _) = try JSONBody.decode(PNGInfoBody.self, from: data, allowed: nil)
        let bytes = try Base64Image.decode(body.image, field: "image")
        return try Reply.json(Self.pngInfo(bytes, limits: server.limits))
    }

    /// What png-info answers for a picture's bytes: its size checked (and the picture decoded) within the upload
    /// limits first, then its text chunks, `parameters` parsed.
    static func pngInfo(_ bytes: Data, limits: ServerLimits) throws -> PNGInfo {
        _ = try UnCLIPServer.decodeUpload(bytes, field: "image", limits: limits)
        let chunks = (try? PNGText.chunks(bytes)) ?? []
        let info = chunks.first { $0.key == "parameters" }?.value ?? ""
        var items: [String: String] = [:]
        for c in chunks where c.key != "parameters" { items[c.key] = c.value }
        return PNGInfo(info: info, items: items, parameters: ParametersText.parse(info))
    }

    struct PNGInfo: Encodable { let info: String; let items: [String: String]; let parameters: [String: String] }
}

/// Text chunks of a PNG in memory.
enum PNGText {
    static func chunks(_ data: Data) throws -> [(key: String, value: String)] {
        guard data.starts(with: [0x89, 0x50, 0x4E, 0x47]) else { return [] }
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-pnginfo-\(UUID().uuidString).png")
        try data.write(to: temp)
        defer { unlink(temp.path) }
        return try PNG.readWithText(temp).text
    }
}

/// A1111's `parameters` text read back into its fields ("Steps: 20, Sampler: Euler a, …"), as its PNG Info does.
enum ParametersText {
    static func parse(_ text: String) -> [String: String] {
        guard !text.isEmpty else { return [:] }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var out: [String: String] = [:]
        let last = lines.last ?? ""
        if last.contains("Steps: ") {
            lines.removeLast()
            // "Key: value" pairs separated by ", ", values may be quoted.
            var rest = Substring(last)
            while let colon = rest.range(of: ": ") {
                let key = rest[..<colon.lowerBound].trimmingCharacters(in: .whitespaces)
                var after = rest[colon.upperBound...]
                var value: Substring
                if after.hasPrefix("\""), let close = after.dropFirst().firstIndex(of: "\"") {
                    value = after[after.index(after: after.startIndex)..<close]
                    after = after[after.index(after: close)...]
                } else if let comma = after.range(of: ", ") {
                    value = after[..<comma.lowerBound]
                    after = after[comma.lowerBound...]
                } else {
                    value = after
                    after = after[after.endIndex...]
                }
                out[key] = String(value)
                rest = after.hasPrefix(", ") ? after.dropFirst(2) : after
            }
        }
        var prompt: [String] = [], negative: [String] = [], inNegative = false
        for line in lines {
            if line.hasPrefix("Negative prompt: ") { inNegative = true; negative.append(String(line.dropFirst(17))); continue }
            if inNegative { negative.append(line) } else { prompt.append(line) }
        }
        out["Prompt"] = prompt.joined(separator: "\n")
        if !negative.isEmpty { out["Negative prompt"] = negative.joined(separator: "\n") }
        return out
    }
}
