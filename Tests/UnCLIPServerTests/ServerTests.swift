import Foundation
import UnCLIPImage
import UnCLIPServer
import UnCLIPStore
import UnCLIPTestSupport
import XCTest

/// `unclip serve` driven over real HTTP on a loopback port, with the shipped model: every route of the three
/// APIs, auth, the event stream, cancellation, the limits and bad input.
final class ServerTests: XCTestCase {
    var tmp: URL!
    var s: TestServer!

    override func setUp() async throws {
        tmp = try makeTemporaryDirectory(for: self, prefix: "unclip-server")
        s = try await TestServer.start(folder: tmp)
    }

    override func tearDown() async throws {
        try await s?.stop()
        s = nil
    }

    private func decodePNG(_ base64: String) throws -> RGBImage {
        try ImageFile.decode(try XCTUnwrap(Data(base64Encoded: base64)), source: "reply")
    }

    // MARK: AUTOMATIC1111

    func testA1111Txt2ImgAnswersImagesInfoAndParameters() async throws {
        let r = try await s.call("POST", "/sdapi/v1/txt2img", json: [
            "prompt": "a red circle", "negative_prompt": "blue", "seed": 11, "steps": 8, "cfg_scale": 2.5, "batch_size": 2,
            "n_iter": 1, "sampler_name": "DPM++ 2M", "scheduler": "Karras", "width": 32, "height": 32,
            // Options real clients send that we have no use for are ignored, as A1111 does.
            "restore_faces": false, "enable_hr": false, "alwayson_scripts": [:], "send_images": true,
        ])
        XCTAssertEqual(r.status, 200, r.text)
        let images = try XCTUnwrap(r.object["images"] as? [String])
        XCTAssertEqual(images.count, 2)
        let first = try decodePNG(images[0])
        XCTAssertEqual([first.width, first.height], [32, 32])
        // `info` is a JSON string, as A1111 sends it.
        let infoText = try XCTUnwrap(r.object["info"] as? String)
        let info = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(infoText.utf8)) as? [String: Any])
        XCTAssertEqual(info["seed"] as? Int, 11)
        XCTAssertEqual(info["all_seeds"] as? [Int], [11, 12])
        let infotexts = try XCTUnwrap(info["infotexts"] as? [String])
        XCTAssertEqual(infotexts.count, 2)
        XCTAssertTrue(infotexts[0].contains("Steps: 8, Sampler: DPM++ 2M Karras, CFG scale: 2.5, Seed: 11, Size: 32x32"), infotexts[0])
        XCTAssertTrue(infotexts[0].contains("Negative prompt: blue"), infotexts[0])
        XCTAssertEqual((r.object["parameters"] as? [String: Any])?["prompt"] as? String, "a red circle")
        // The same request again gives the same pixels (the seed is the whole story).
        let again = try await s.call("POST", "/sdapi/v1/txt2img", json: ["prompt": "a red circle", "negative_prompt": "blue", "seed": 12,
                                                                           "steps": 8, "cfg_scale": 2.5, "sampler_name": "DPM++ 2M Karras",
                                                                           "width": 32, "height": 32])
        let second = try decodePNG(images[1])
        XCTAssertEqual(try decodePNG(try XCTUnwrap((again.object["images"] as? [String])?.first)).pixels, second.pixels)
        XCTAssertEqual(try s.store.count(), 3)
    }

    func testA1111Img2ImgPngInfoAndTheSmallRoutes() async throws {
        let made = try await s.call("POST", "/sdapi/v1/txt2img", json: ["prompt": "a green square", "seed": 3, "steps": 6])
        let png = try XCTUnwrap((made.object["images"] as? [String])?.first)
        let edit = try await s.call("POST", "/sdapi/v1/img2img", json: ["prompt": "a blue square", "init_images": ["data:image/png;base64," + png],
                                                                          "denoising_strength": 0.6, "seed": 5, "steps": 6])
        XCTAssertEqual(edit.status, 200, edit.text)
        let editInfo = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((edit.object["info"] as? String ?? "").utf8)) as? [String: Any])
        XCTAssertEqual(editInfo["denoising_strength"] as? Double ?? 0, 0.6, accuracy: 1e-6)
        XCTAssertEqual(try s.store.generations().first?.kind, .edit)
        XCTAssertEqual(try s.store.generations().first?.settings.strength, 0.6)
        // A1111 resizes the init picture to width × height (clients always send them).
        let resized = try await s.call("POST", "/sdapi/v1/img2img", json: ["prompt": "a blue square", "init_images": [png], "width": 16,
                                                                             "height": 16, "steps": 4, "seed": 1])
        XCTAssertEqual(try decodePNG(try XCTUnwrap((resized.object["images"] as? [String])?.first)).width, 16, resized.text)
        // Our own edit job keeps the picture's size and says so.
        let sized = try await s.call("POST", "/api/jobs", json: ["kind": "edit", "prompt": "x", "image": png, "width": 16])
        XCTAssertEqual(sized.status, 400)
        XCTAssertTrue(sized.text.contains("width: not a parameter of a edit job") || sized.text.contains("width"), sized.text)

        let info = try await s.call("POST", "/sdapi/v1/png-info", json: ["image": png])
        XCTAssertEqual(info.status, 200, info.text)
        XCTAssertTrue((info.object["info"] as? String ?? "").hasPrefix("a green square\nSteps: 6, Sampler: "), info.text)
        let fields = try XCTUnwrap(info.object["parameters"] as? [String: String])
        XCTAssertEqual(fields["Seed"], "3")
        XCTAssertEqual(fields["Steps"], "6")
        XCTAssertEqual(fields["Prompt"], "a green square")

        let samplers = try await s.call("GET", "/sdapi/v1/samplers").array.compactMap { $0["name"] as? String }
        XCTAssertTrue(Set(["Euler a", "Euler", "DPM++ 2M", "DDIM", "LMS", "PLMS"]).isSubset(of: samplers), "\(samplers)")
        let schedulers = try await s.call("GET", "/sdapi/v1/schedulers").array.compactMap { $0["label"] as? String }
        XCTAssertEqual(schedulers, ["Automatic", "Karras", "Uniform"])
        let models = try await s.call("GET", "/sdapi/v1/sd-models").array
        XCTAssertEqual(models.first?["model_name"] as? String, "shapes")
        let title = try XCTUnwrap(models.first?["title"] as? String)
        do { let v = try await s.call("GET", "/sdapi/v1/options").object["sd_model_checkpoint"] as? String; XCTAssertEqual(v, title) }
        do { let v = try await s.call("POST", "/sdapi/v1/options", json: ["sd_model_checkpoint": title]).status; XCTAssertEqual(v, 200) }
        let wrong = try await s.call("POST", "/sdapi/v1/options", json: ["sd_model_checkpoint": "sd-xl"])
        XCTAssertEqual(wrong.status, 400)
        XCTAssertTrue((wrong.object["detail"] as? String ?? "").contains("sd_model_checkpoint") || (wrong.object["detail"] as? String ?? "").contains("sd-xl"), wrong.text)
        do { let v = try await s.call("GET", "/sdapi/v1/upscalers").array.first?["name"] as? String; XCTAssertEqual(v, "None") }
        do { let v = try await s.call("GET", "/sdapi/v1/sd-vae").status; XCTAssertEqual(v, 200) }
        let idle = try await s.call("GET", "/sdapi/v1/progress").object
        XCTAssertEqual(idle["progress"] as? Double, 0)
        XCTAssertEqual((idle["state"] as? [String: Any])?["job_count"] as? Int, 0)
        do { let v = try await s.call("POST", "/sdapi/v1/interrupt").status; XCTAssertEqual(v, 200) }
    }

    func testA1111ProgressAndInterruptDuringARun() async throws {
        let long = Task { try await s.call("POST", "/sdapi/v1/txt2img", json: ["prompt": "a red circle", "seed": 1, "steps": 150, "batch_size": 10]) }
        var seen: [String: Any] = [:]
        for _ in 0..<500 {
            seen = try await s.call("GET", "/sdapi/v1/progress").object
            if (seen["progress"] as? Double ?? 0) > 0.05 { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTAssertGreaterThan(seen["progress"] as? Double ?? 0, 0.05, "\(seen)")
        XCTAssertGreaterThan(seen["eta_relative"] as? Double ?? 0, 0)
        XCTAssertEqual((seen["state"] as? [String: Any])?["job_count"] as? Int, 1)
        XCTAssertNotNil(seen["textinfo"] as? String)
        do { let v = try await s.call("POST", "/sdapi/v1/interrupt").status; XCTAssertEqual(v, 200) }
        let r = try await long.value
        // Interrupted: A1111 answers with what was finished (here, nothing).
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertEqual((r.object["images"] as? [String])?.count, 0)
        XCTAssertEqual(try s.store.count(), 0)
    }

    /// Several served models: A1111's sd_model_checkpoint option switches the default; a request may name one.
    func testServedModelsAreSwitchedByOptionOrNamedPerRequest() async throws {
        try await s.stop()
        s = try await TestServer.start(folder: tmp, modelNames: ["shapes", "shapes-b"])
        let titles = try await s.call("GET", "/sdapi/v1/sd-models").array.compactMap { $0["title"] as? String }
        XCTAssertEqual(titles.count, 2)
        let before = try await s.call("GET", "/sdapi/v1/options").object["sd_model_checkpoint"] as? String
        XCTAssertTrue(before?.hasPrefix("shapes [") == true, "\(before ?? "nil")")
        let set = try await s.call("POST", "/sdapi/v1/options", json: ["sd_model_checkpoint": titles[1]])
        XCTAssertEqual(set.status, 200, set.text)
        let after = try await s.call("GET", "/sdapi/v1/options").object["sd_model_checkpoint"] as? String
        XCTAssertEqual(after, titles[1])
        let made = try await s.call("POST", "/sdapi/v1/txt2img", json: ["prompt": "x", "steps": 2, "seed": 1])
        let info = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((made.object["info"] as? String ?? "").utf8)) as? [String: Any])
        XCTAssertEqual(info["sd_model_name"] as? String, "shapes-b")
        let named = try await s.call("POST", "/sdapi/v1/txt2img", json: ["prompt": "x", "steps": 2, "seed": 1,
                                                                         "override_settings": ["sd_model_checkpoint": "shapes"]])
        let namedInfo = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((named.object["info"] as? String ?? "").utf8)) as? [String: Any])
        XCTAssertEqual(namedInfo["sd_model_name"] as? String, "shapes")
        let models = try await s.call("GET", "/api/models").array
        XCTAssertEqual(models.filter { $0["default"] as? Bool == true }.compactMap { $0["name"] as? String }, ["shapes-b"])
    }

    // MARK: OpenAI

    func testOpenAIGenerationsAndVariations() async throws {
        let r = try await s.call("POST", "/v1/images/generations", json: ["prompt": "a yellow triangle", "n": 2, "size": "32x32",
                                                                          "response_format": "b64_json", "model": "dall-e-2", "user": "u1"])
        XCTAssertEqual(r.status, 200, r.text)
        let data = try XCTUnwrap(r.object["data"] as? [[String: Any]])
        XCTAssertEqual(data.count, 2)
        let png = try XCTUnwrap(data[0]["b64_json"] as? String)
        XCTAssertEqual(try decodePNG(png).width, 32)
        XCTAssertNotNil(r.object["created"] as? Int)

        let urls = try await s.call("POST", "/v1/images/generations", json: ["prompt": "a yellow triangle"])
        let url = try XCTUnwrap(((urls.object["data"] as? [[String: Any]])?.first?["url"] as? String))
        XCTAssertTrue(url.hasPrefix("http://127.0.0.1:\(s.running.port)/api/generations/"), url)
        let fetched = try await s.call("GET", String(url.drop(while: { $0 != "/" }).dropFirst(2).drop(while: { $0 != "/" })))
        XCTAssertEqual(fetched.status, 200)
        XCTAssertEqual(fetched.header("Content-Type"), "image/png")

        let (body, type) = multipart([("image", "in.png", try XCTUnwrap(Data(base64Encoded: png))), ("n", nil, Data("2".utf8)),
                                      ("response_format", nil, Data("b64_json".utf8)), ("size", nil, Data("32x32".utf8))])
        let v = try await s.call("POST", "/v1/images/variations", body: body, contentType: type)
        XCTAssertEqual(v.status, 200, v.text)
        XCTAssertEqual((v.object["data"] as? [[String: Any]])?.count, 2)
        let variations = try s.store.generations(GenerationFilter(kinds: [.variation]))
        XCTAssertEqual(variations.count, 2)
        // The upload was embedded (a source generation) and each variation names it as its parent.
        let source = try XCTUnwrap(try s.store.generations(GenerationFilter(kinds: [.source])).first)
        XCTAssertEqual(Set(variations.flatMap(\.parents).map(\.id)), [source.id])

        // An edit without a mask takes the image's own transparency as the mask; this image has none.
        let (noMask, noMaskType) = multipart([("image", "in.png", try XCTUnwrap(Data(base64Encoded: png))), ("prompt", nil, Data("x".utf8))])
        let edits = try await s.call("POST", "/v1/images/edits", body: noMask, contentType: noMaskType)
        XCTAssertEqual(edits.status, 400)
        XCTAssertEqual(((edits.object["error"] as? [String: Any])?["param"] as? String), "image")
        XCTAssertTrue(edits.text.contains("transparent"), edits.text)
    }

    /// OpenAI's edits inpaint where the mask is fully transparent (converted to our white-is-repaint mask);
    /// A1111's img2img takes a white-is-repaint mask. Both are recorded with the mask's sha256.
    func testOpenAIEditsAndA1111MasksInpaint() async throws {
        let made = try await s.call("POST", "/v1/images/generations", json: ["prompt": "a red circle", "size": "32x32",
                                                                             "response_format": "b64_json"])
        let png = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap((made.object["data"] as? [[String: Any]])?.first?["b64_json"] as? String)))
        let alphaMask = try Data(contentsOf: Fixture.url("inpaint/openai-mask-32.png"))
        func edit(_ mask: Data?, size: String = "32x32") async throws -> TestServer.Reply {
            var fields: [(name: String, filename: String?, data: Data)] = [("image", "in.png", png), ("prompt", nil, Data("a blue square".utf8)),
                                                                          ("size", nil, Data(size.utf8)), ("response_format", nil, Data("b64_json".utf8))]
            if let mask { fields.append(("mask", "mask.png", mask)) }
            let (body, type) = multipart(fields)
            return try await s.call("POST", "/v1/images/edits", body: body, contentType: type)
        }
        let r = try await edit(alphaMask)
        XCTAssertEqual(r.status, 200, r.text)
        let out = try decodePNG(try XCTUnwrap((r.object["data"] as? [[String: Any]])?.first?["b64_json"] as? String))
        XCTAssertEqual([out.width, out.height], [32, 32])
        let stored = try XCTUnwrap(try s.store.generations(GenerationFilter(kinds: [.edit])).first)
        XCTAssertEqual(stored.settings.strength, 1)
        XCTAssertEqual(stored.settings.maskImage, "mask")
        XCTAssertEqual(stored.settings.maskSHA256?.count, 64)
        // The mask given to the job is ours: white exactly where the upload's alpha is 0 (columns 0-15; column
        // 16 has alpha 1, so it is kept). Its colours (white on the left) must not decide it.
        let job = try XCTUnwrap(try s.store.jobs(statuses: [.done], limit: nil).first { $0.kind == "edit" })
        let spec = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(job.payload.utf8)) as? [String: Any])
        let maskBase64 = try XCTUnwrap(spec["mask"] as? String, job.payload)
        let ours = try ImageFile.decode(try XCTUnwrap(Data(base64Encoded: maskBase64)), source: "mask")
        for x in 0..<32 { XCTAssertEqual(ours.pixels[(5 * 32 + x) * 3], x < 16 ? 255 : 0, "column \(x)") }

        let wrongSize = try await edit(alphaMask, size: "64x64")
        XCTAssertEqual(wrongSize.status, 400)
        XCTAssertEqual((wrongSize.object["error"] as? [String: Any])?["param"] as? String, "size")

        let a1111 = try await s.call("POST", "/sdapi/v1/img2img", json: ["prompt": "a blue square", "init_images": [png.base64EncodedString()],
                                                                           "mask": maskBase64, "denoising_strength": 1,
                                                                           "seed": 5, "steps": 4])
        XCTAssertEqual(a1111.status, 200, a1111.text)
        let edits = try s.store.generations(GenerationFilter(kinds: [.edit]))
        XCTAssertEqual(edits.count, 2)
        XCTAssertTrue(edits.allSatisfy { $0.settings.maskSHA256 != nil })
        let tiny = try await s.call("POST", "/sdapi/v1/img2img", json: ["prompt": "x", "init_images": [png.base64EncodedString()],
                                                                         "mask": maskBase64, "inpainting_mask_invert": 2])
        XCTAssertEqual(tiny.status, 400)
        XCTAssertTrue(tiny.text.contains("inpainting_mask_invert"), tiny.text)
    }

    /// Bad input of every kind: a 4xx whose message names the field, in each API's shape; nothing stored or queued.
    func testBadInputIsRefusedByFieldAndNothingIsQueued() async throws {
        func expect(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil, type: String? = nil,
                    status: Int, field: String?, _ needle: String, line: UInt = #line) async throws {
            let r = try await s.call(method, path, json: json, body: body, contentType: type)
            XCTAssertEqual(r.status, status, "\(path): \(r.text)", line: line)
            XCTAssertTrue(r.text.contains(needle), "\(path): '\(r.text)' lacks '\(needle)'", line: line)
            if let field {
                let e = r.object["error"] as? [String: Any]
                let named = (e?["field"] as? String) ?? (e?["param"] as? String) ?? (r.object["detail"] as? String).map { $0.hasPrefix(field) ? field : $0 }
                XCTAssertEqual(named, field, "\(path): \(r.text)", line: line)
            }
        }
        try await expect("POST", "/api/jobs", body: Data("{\"kind\": ".utf8), type: "application/json", status: 400, field: nil, "not valid JSON")
        try await expect("POST", "/api/jobs", json: [1, 2], status: 400, field: nil, "JSON object")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "stepz": 3], status: 400, field: "stepz", "unknown field")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "steps": "many"], status: 400, field: "steps", "integer")
        try await expect("POST", "/api/jobs", json: ["kind": "paint", "prompt": "x"], status: 400, field: "kind", "kind")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image"], status: 400, field: "prompt", "required")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "count": 11], status: 400, field: "count", "1…10")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "width": 4096, "height": 4096], status: 400, field: "width", "pixels")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "width": 33], status: 400, field: "width", "multiple of 8")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "guidance": 1e30], status: 400, field: "guidance_scale", "guidance_scale")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "scheduler": "bogus"], status: 400, field: "scheduler", "bogus")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "model": "sd-xl"], status: 400, field: "model", "sd-xl")
        try await expect("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "strength": 0.5], status: 400, field: "strength", "not a parameter")
        try await expect("POST", "/api/jobs", json: ["kind": "variation", "id": 404], status: 404, field: "id", "no generation 404")
        try await expect("POST", "/api/jobs", json: ["kind": "interpolate", "from": 1, "to": 2], status: 404, field: "to", "no generation")
        try await expect("POST", "/api/jobs", json: ["kind": "edit", "prompt": "x", "image": "bm90IGFuIGltYWdl"], status: 400, field: "image", "PNG, JPEG or WebP")
        try await expect("POST", "/api/jobs", json: ["kind": "edit", "prompt": "x", "image": "%%%"], status: 400, field: "image", "base64")
        try await expect("POST", "/api/jobs", body: Data(count: 21 << 20), type: "application/json", status: 413, field: nil, "at most")
        try await expect("GET", "/api/generations/..%2F..%2Fetc%2Fpasswd", status: 400, field: "id", "not a generation or job id")
        try await expect("GET", "/api/generations/1.png", status: 400, field: "id", "not a generation or job id")
        try await expect("GET", "/api/generations/77", status: 404, field: "id", "no generation 77")
        try await expect("GET", "/api/jobs/77", status: 404, field: "id", "no job 77")
        try await expect("GET", "/api/generations?limit=0", status: 400, field: "limit", "1…500")
        try await expect("GET", "/api/generations?kind=paintings", status: 400, field: "kind", "paintings")
        try await expect("GET", "/api/generations?since=yesterday", status: 400, field: "since", "date")
        try await expect("POST", "/api/search", json: ["text": "x", "like": 1], status: 400, field: "text", "exactly one")
        try await expect("POST", "/sdapi/v1/txt2img", json: ["prompt": "x", "sampler_name": "Heun++"], status: 400, field: "sampler_name", "Heun++")
        try await expect("POST", "/sdapi/v1/txt2img", json: ["prompt": "x", "batch_size": 5, "n_iter": 3], status: 400, field: "batch_size", "at most 10")
        try await expect("POST", "/sdapi/v1/txt2img", json: ["prompt": "x", "steps": 0], status: 400, field: "steps", "steps")
        try await expect("POST", "/sdapi/v1/img2img", json: ["prompt": "x"], status: 400, field: "init_images", "init_images")
        try await expect("POST", "/v1/images/generations", json: ["prompt": "x", "n": 50], status: 400, field: "n", "n:")
        try await expect("POST", "/v1/images/generations", json: ["prompt": "x", "size": "huge"], status: 400, field: "size", "WIDTHxHEIGHT")
        try await expect("POST", "/v1/images/generations", json: ["prompt": "x", "size": "4096x4096"], status: 400, field: "size", "pixels")
        try await expect("POST", "/v1/images/generations", json: ["prompt": "x", "response_format": "gif"], status: 400, field: "response_format", "url or b64_json")
        try await expect("POST", "/v1/images/generations", json: ["prompt": "x", "style": "vivid", "seed": 3], status: 400, field: "seed", "unknown field")
        let (text, type) = multipart([("image", "a.png", Data("hello".utf8))])
        try await expect("POST", "/v1/images/variations", body: text, type: type, status: 400, field: "image", "PNG, JPEG or WebP")
        try await expect("POST", "/v1/images/variations", body: Data("image=1".utf8), type: "application/x-www-form-urlencoded", status: 400, field: "image", "multipart")
        // A 50 MB body is refused before it is read.
        try await expect("POST", "/v1/images/variations", body: Data(count: 50 << 20), type: "multipart/form-data; boundary=x", status: 413, field: nil, "at most")
        // A picture whose header claims a huge size is refused before decoding.
        var header = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52])
        header.append(contentsOf: [0, 1, 0, 0, 0, 1, 0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0])
        try await expect("POST", "/api/jobs", json: ["kind": "variation", "image": header.base64EncodedString()], status: 413, field: "image", "65536")
        XCTAssertEqual(try s.store.jobs(statuses: [], limit: nil).count, 0, "nothing was queued")
        XCTAssertEqual(try s.store.count(), 0, "nothing was stored")
    }

    // MARK: Native API

    func testNativeJobsOfEveryKindAndTheGenerationRoutes() async throws {
        func run(_ body: [String: Any], line: UInt = #line) async throws -> [Int64] {
            let r = try await s.call("POST", "/api/jobs", json: body)
            XCTAssertEqual(r.status, 202, r.text, line: line)
            XCTAssertEqual(r.header("Location"), "/api/jobs/\(r.object["id"] as? Int ?? 0)", line: line)
            let job = try await s.waitForJob(Int64(r.object["id"] as? Int ?? 0))
            XCTAssertEqual(job["status"] as? String, "done", "\(job)", line: line)
            return (job["generations"] as? [Int] ?? []).map(Int64.init)
        }
        let made = try await run(["kind": "text-to-image", "prompt": "a red circle", "count": 2, "seed": 4, "steps": 6])
        XCTAssertEqual(made.count, 2)
        let varied = try await run(["kind": "variation", "id": made[0], "count": 1, "seed": 1, "steps": 6])
        let frames = try await run(["kind": "interpolate", "from": made[0], "to": made[1], "frames": 3, "steps": 6])
        XCTAssertEqual(frames.count, 3)
        let nudged = try await run(["kind": "nudge", "id": made[0], "toward": "a blue circle", "amount": 0.4, "steps": 6])
        let png = try await s.call("GET", "/api/generations/\(made[0])/image").data
        let edited = try await run(["kind": "edit", "prompt": "a green circle", "image": png.base64EncodedString(), "strength": 0.5, "steps": 6])
        do { let v = try await run(["kind": "regenerate", "id": made[1]]); XCTAssertEqual(v, [made[1]]) }
        XCTAssertEqual(try s.store.count(), 8)

        // Listing: newest first, cursor pagination, filters.
        let page1 = try await s.call("GET", "/api/generations?limit=3").object
        let ids1 = (page1["generations"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int }
        XCTAssertEqual(ids1.count, 3)
        XCTAssertEqual(ids1, ids1.sorted(by: >))
        let cursor = try XCTUnwrap(page1["next_cursor"] as? Int)
        let page2 = try await s.call("GET", "/api/generations?limit=10&cursor=\(cursor)").object
        let ids2 = (page2["generations"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int }
        XCTAssertEqual(ids1.count + ids2.count, 8)
        XCTAssertTrue(page2["next_cursor"] is NSNull)
        XCTAssertEqual(Set(ids1 + ids2).count, 8)
        let kinds = try await s.call("GET", "/api/generations?kind=interpolation,text-diff").object["generations"] as? [[String: Any]]
        XCTAssertEqual(Set((kinds ?? []).compactMap { $0["id"] as? Int }.map(Int64.init)), Set(frames + nudged))
        let children = try await s.call("GET", "/api/generations?parent=\(made[0])").object["generations"] as? [[String: Any]]
        // The edit started from made[0]'s own picture, so it is a child too (role "init").
        XCTAssertEqual(Set((children ?? []).compactMap { $0["id"] as? Int }.map(Int64.init)), Set(varied + frames + nudged + edited))
        do { let v = try await s.call("GET", "/api/generations?model=shapes&limit=500").object["generations"].map { ($0 as? [Any])?.count }; XCTAssertEqual(v, 8) }
        do { let v = try await s.call("GET", "/api/generations?since=2000-01-01").status; XCTAssertEqual(v, 200) }

        // Detail: settings, prior candidates with their scores, lineage, A1111 parameters.
        let detail = try await s.call("GET", "/api/generations/\(made[0])").object
        XCTAssertEqual(detail["prompt"] as? String, "a red circle")
        let prior = try XCTUnwrap(detail["prior"] as? [String: Any])
        XCTAssertEqual((prior["scores"] as? [Double])?.count, 2)
        XCTAssertEqual(Set((detail["children"] as? [Int] ?? []).map(Int64.init)), Set(varied + frames + nudged + edited))
        XCTAssertTrue((detail["parameters"] as? String ?? "").contains("Seed: 4"))
        let editDetail = try await s.call("GET", "/api/generations/\(edited[0])").object
        XCTAssertEqual(editDetail["kind"] as? String, "edit")

        // Image and thumbnail.
        let image = try await s.call("GET", "/api/generations/\(made[0])/image")
        XCTAssertEqual(image.header("Content-Type"), "image/png")
        XCTAssertEqual(SHA256.hex(image.data), detail["sha256"] as? String)
        let thumb = try await s.call("GET", "/api/generations/\(made[0])/thumbnail?size=16")
        let small = try ImageFile.decode(thumb.data, source: "thumbnail")
        XCTAssertEqual([small.width, small.height], [16, 16])

        // Search: text, like, uploaded image.
        let text = try await s.call("POST", "/api/search", json: ["text": "a red circle", "limit": 3]).object["results"] as? [[String: Any]]
        XCTAssertEqual(text?.count, 3)
        XCTAssertNotNil(text?.first?["score"] as? Double)
        let like = try await s.call("POST", "/api/search", json: ["like": made[0], "limit": 2]).object["results"] as? [[String: Any]]
        XCTAssertEqual(like?.first?["id"] as? Int, Int(made[0]))
        XCTAssertEqual(like?.first?["score"] as? Double ?? 0, 1, accuracy: 1e-4)
        let byImage = try await s.call("POST", "/api/search", json: ["image": png.base64EncodedString(), "limit": 1]).object["results"] as? [[String: Any]]
        XCTAssertEqual(byImage?.first?["id"] as? Int, Int(made[0]), "a picture finds itself first")

        // Stars protect from removal; removal works once unstarred.
        do { let v = try await s.call("PUT", "/api/generations/\(made[1])/star").status; XCTAssertEqual(v, 200) }
        let starred = try await s.call("GET", "/api/generations?starred=true").object["generations"] as? [[String: Any]]
        XCTAssertEqual(starred?.compactMap { $0["id"] as? Int }, [Int(made[1])])
        do { let v = try await s.call("DELETE", "/api/generations/\(made[1])").status; XCTAssertEqual(v, 409) }
        do { let v = try await s.call("DELETE", "/api/generations/\(made[1])/star").status; XCTAssertEqual(v, 200) }
        do { let v = try await s.call("DELETE", "/api/generations/\(made[1])").status; XCTAssertEqual(v, 204) }
        do { let v = try await s.call("GET", "/api/generations/\(made[1])").status; XCTAssertEqual(v, 404) }

        let models = try await s.call("GET", "/api/models").array
        XCTAssertEqual(models.first?["name"] as? String, "shapes")
        XCTAssertEqual(models.first?["default"] as? Bool, true)
        XCTAssertTrue((models.first?["capabilities"] as? [String] ?? []).contains("text-to-image"))
    }

    func testEventStreamReportsProgressAndCancelStopsWithinAStep() async throws {
        let r = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "a red circle", "seed": 2, "steps": 10,
                                                              "preview_every": 5])
        let id = try XCTUnwrap(r.object["id"] as? Int)
        let stream = try await s.call("GET", "/api/jobs/\(id)/events")
        XCTAssertEqual(stream.header("Content-Type"), "text/event-stream")
        let events = TestServer.events(stream.text)
        let names = events.map(\.0)
        XCTAssertEqual(names.first, "state")
        XCTAssertEqual(names.last, "done", stream.text)
        let progress = events.filter { $0.0 == "progress" }.map(\.1)
        XCTAssertTrue(progress.contains { $0["stage"] as? String == "denoise" && $0["step"] as? Int == 10 && $0["total"] as? Int == 10 })
        XCTAssertTrue(progress.contains { $0["eta"] is Double })
        let fractions = progress.compactMap { $0["progress"] as? Double }
        XCTAssertEqual(fractions, fractions.sorted(), "progress only grows")
        XCTAssertEqual(events.filter { $0.0 == "preview" }.count, 2, "steps 5 and 10")
        XCTAssertNotNil(try ImageFile.decode(try XCTUnwrap(Data(base64Encoded: events.first { $0.0 == "preview" }?.1["png"] as? String ?? "")),
                                             source: "preview"))
        XCTAssertEqual((events.last?.1["generations"] as? [Int])?.count, 1)
        XCTAssertTrue(names.contains("image"))

        // A long job: listen, cancel once it runs; it stops within a step and records nothing.
        let long = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "steps": 150, "count": 10])
        let longID = try XCTUnwrap(long.object["id"] as? Int)
        let listening = Task { try await s.call("GET", "/api/jobs/\(longID)/events") }
        for _ in 0..<500 where try await s.call("GET", "/api/jobs/\(longID)").object["status"] as? String != "running" {
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        let asked = Date()
        let cancel = try await s.call("DELETE", "/api/jobs/\(longID)")
        XCTAssertEqual(cancel.status, 200)
        let ended = try await s.waitForJob(Int64(longID))
        XCTAssertLessThan(Date().timeIntervalSince(asked), 2, "a step of the shipped model takes milliseconds")
        XCTAssertEqual(ended["status"] as? String, "cancelled")
        // Finished images are kept; the one in progress leaves nothing.
        let kept = ended["generations"] as? [Int] ?? []
        XCTAssertLessThan(kept.count, 10)
        XCTAssertEqual(try s.store.count(), 1 + kept.count)
        let longText = try await listening.value.text
        let longEvents = TestServer.events(longText).map(\.0)
        XCTAssertEqual(longEvents.last, "cancelled")
        XCTAssertTrue(longEvents.contains("progress"))

        // Cancelling a queued job ends it at once; its stream says so.
        let blocker = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "steps": 150, "count": 10])
        let queued = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "y"])
        let queuedID = try XCTUnwrap(queued.object["id"] as? Int)
        XCTAssertEqual(queued.object["position"] as? Int, 1)
        let queue = try await s.call("GET", "/api/queue").object
        XCTAssertEqual((queue["queued"] as? [[String: Any]])?.first?["id"] as? Int, queuedID)
        do { let v = try await s.call("DELETE", "/api/jobs/\(queuedID)").object["status"] as? String; XCTAssertEqual(v, "cancelled") }
        let queuedEvents = try await s.call("GET", "/api/jobs/\(queuedID)/events").text
        XCTAssertEqual(TestServer.events(queuedEvents).map(\.0), ["state", "cancelled"])
        _ = try await s.call("DELETE", "/api/jobs/\(blocker.object["id"] as? Int ?? 0)")
    }

    /// Stopping with event streams open and a client waiting on a queued job: the streams end with a `shutdown`
    /// event, the waiting request gets 503, and the stop completes (open streams would otherwise hold it forever).
    func testStoppingEndsOpenStreamsAndWaitingRequests() async throws {
        _ = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "steps": 150, "count": 10])
        let queued = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "y"])
        let id = try XCTUnwrap(queued.object["id"] as? Int)
        let stream = Task { try await s.call("GET", "/api/jobs/\(id)/events") }
        let waiting = Task { try await s.call("POST", "/sdapi/v1/txt2img", json: ["prompt": "z"]) }
        try await Task.sleep(nanoseconds: 300_000_000)
        let asked = Date()
        try await s.stop()
        s = nil
        XCTAssertLessThan(Date().timeIntervalSince(asked), 5)
        let events = TestServer.events(try await stream.value.text).map(\.0)
        XCTAssertEqual(events.last, "shutdown", "\(events)")
        let reply = try await waiting.value
        XCTAssertEqual(reply.status, 503, reply.text)
        XCTAssertNotNil(reply.header("Retry-After"))
    }

    func testQueueLimitAnswers429WithRetryAfter() async throws {
        try await s.stop()
        s = try await TestServer.start(folder: tmp) { $0.limits.maxQueued = 2 }
        let blocker = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "steps": 150, "count": 10])
        for _ in 0..<500 where try await s.call("GET", "/api/queue").object["running"].map({ ($0 as? [Any])?.count }) != 1 {
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        do { let v = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "a"]).status; XCTAssertEqual(v, 202) }
        do { let v = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "b"]).status; XCTAssertEqual(v, 202) }
        let full = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "c"])
        XCTAssertEqual(full.status, 429, full.text)
        XCTAssertNotNil(full.header("Retry-After"))
        let openai = try await s.call("POST", "/v1/images/generations", json: ["prompt": "d"])
        XCTAssertEqual(openai.status, 429)
        XCTAssertEqual((openai.object["error"] as? [String: Any])?["type"] as? String, "rate_limit_exceeded")
        XCTAssertEqual(try s.store.jobs(statuses: [.queued], limit: nil).count, 2)
        _ = try await s.call("DELETE", "/api/jobs/\(blocker.object["id"] as? Int ?? 0)")
    }

    // MARK: Auth

    func testAuthBearerBasicAndRefusals() async throws {
        try await s.stop()
        s = try await TestServer.start(folder: tmp) { $0.apiKeys = ["key-for-alice-123", "key-for-bob-4567"] }
        do { let v = try await s.call("GET", "/healthz").status; XCTAssertEqual(v, 200, "health checks need no key") }
        let none = try await s.call("GET", "/api/generations")
        XCTAssertEqual(none.status, 401)
        XCTAssertNotNil(none.header("WWW-Authenticate"))
        do { let v = try await s.call("GET", "/sdapi/v1/options").status; XCTAssertEqual(v, 401) }
        do { let v = try await s.call("GET", "/api/generations", headers: ["Authorization": "Bearer key-for-alice-12"]).status; XCTAssertEqual(v, 401) }
        do { let v = try await s.call("GET", "/api/generations", headers: ["Authorization": "Bearer key-for-alice-1234"]).status; XCTAssertEqual(v, 401) }
        do { let v = try await s.call("GET", "/api/generations", headers: ["Authorization": "Bearer key-for-alice-123"]).status; XCTAssertEqual(v, 200) }
        do { let v = try await s.call("GET", "/api/generations", headers: ["Authorization": "Bearer key-for-bob-4567"]).status; XCTAssertEqual(v, 200) }
        let basic = "Basic " + Data("anyone:key-for-bob-4567".utf8).base64EncodedString()
        do { let v = try await s.call("GET", "/sdapi/v1/options", headers: ["Authorization": basic]).status; XCTAssertEqual(v, 200) }
        let wrongBasic = "Basic " + Data("bob:nope".utf8).base64EncodedString()
        do { let v = try await s.call("GET", "/sdapi/v1/options", headers: ["Authorization": wrongBasic]).status; XCTAssertEqual(v, 401) }
        // Each key is its own owner in the queue.
        s.authorization = "Bearer key-for-alice-123"
        let job = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "steps": 2])
        XCTAssertEqual(job.status, 202)
        _ = try await s.waitForJob(Int64(job.object["id"] as? Int ?? 0))
        XCTAssertTrue(try s.store.job(Int64(job.object["id"] as? Int ?? 0)).owner.hasPrefix("key-"))

        var open = ServerConfiguration()
        open.host = "0.0.0.0"
        XCTAssertThrowsError(try open.validate()) { XCTAssertTrue("\($0)".contains("API key"), "\($0)") }
        open.apiKeys = ["short"]
        XCTAssertThrowsError(try open.validate()) { XCTAssertTrue("\($0)".contains("8 characters"), "\($0)") }
        open.apiKeys = ["long-enough-key"]
        XCTAssertNoThrow(try open.validate())
    }

    // MARK: System routes and the OpenAPI document

    func testOpenAPIDocumentDescribesRealResponses() async throws {
        let docReply = try await s.call("GET", "/openapi.json")
        let doc = try XCTUnwrap(docReply.json as? [String: Any])
        XCTAssertEqual(doc["openapi"] as? String, "3.1.0")
        let check = SchemaCheck(document: doc)
        func schema(_ name: String) -> [String: Any] { ["$ref": "#/components/schemas/\(name)"] }
        func assertMatches(_ value: Any?, _ name: String, line: UInt = #line) {
            let errors = check.errors(value ?? NSNull(), schema(name))
            XCTAssertEqual(errors, [], "\(name)", line: line)
        }
        let job = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "a red circle", "count": 2, "steps": 4])
        assertMatches(job.json, "Job")
        let id = Int64(job.object["id"] as? Int ?? 0)
        _ = try await s.waitForJob(id)
        assertMatches(try await s.call("GET", "/api/jobs/\(id)").json, "Job")
        let page = try await s.call("GET", "/api/generations")
        assertMatches(page.json, "GenerationPage")
        let gid = ((page.object["generations"] as? [[String: Any]])?.first?["id"] as? Int) ?? 0
        assertMatches(try await s.call("GET", "/api/generations/\(gid)").json, "GenerationDetail")
        assertMatches(try await s.call("PUT", "/api/generations/\(gid)/star").json, "Star")
        assertMatches(try await s.call("POST", "/api/search", json: ["text": "circle"]).json, "SearchResults")
        assertMatches(try await s.call("GET", "/api/queue").json, "Queue")
        let modelList = try await s.call("GET", "/api/models").array
        for m in modelList { assertMatches(m, "Model") }
        assertMatches(try await s.call("GET", "/healthz").json, "Health")
        assertMatches(try await s.call("GET", "/api/generations/999").json, "Error")
        assertMatches(try await s.call("POST", "/api/jobs", json: ["kind": "x"]).json, "Error")
        // The checker itself must be able to fail.
        XCTAssertFalse(check.errors(["id": "1"], schema("Star")).isEmpty)
        XCTAssertFalse(check.errors(["id": 1, "starred": 1, "extra": true], schema("JobRequest")).isEmpty)
        // Every documented path is routed (a 404 from the router would be an undocumented gap).
        for (path, item) in doc["paths"] as? [String: [String: Any]] ?? [:] {
            for method in item.keys where ["get", "post", "put", "delete"].contains(method) {
                // Ids that do not exist: each route answers, in its own words, without changing anything.
                let concrete = path.replacingOccurrences(of: "{id}", with: "987654")
                let r = try await s.call(method.uppercased(), concrete, body: Data("{}".utf8), contentType: "application/json")
                XCTAssertFalse(r.status == 404 && !r.text.contains("987654"), "\(method) \(path) is documented but not routed: \(r.status) \(r.text)")
            }
        }

        let metrics = try await s.call("GET", "/metrics").text
        XCTAssertTrue(metrics.contains("unclip_jobs_accepted_total 1"), metrics)
        XCTAssertTrue(metrics.contains("unclip_images_total 2"), metrics)
        XCTAssertTrue(metrics.contains("unclip_http_request_duration_seconds_bucket"), metrics)
    }
}
