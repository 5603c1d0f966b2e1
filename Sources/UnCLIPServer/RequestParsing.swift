import Foundation
import UnCLIPImage

/// What the routes do with a request body before any model or the store is consulted, callable without a running
/// server. The fuzz targets (`UnCLIPFuzz`) and the corpus-replay test call these, so both drive the routes' own
/// code: each function is the route's first step, not a copy of it.
public enum RequestParsing {
    /// POST /api/jobs: the strict JSON body as a `JobSpec`, checked as `submit` checks it before the model is looked up,
    /// and its picture's base64 decoded.
    @discardableResult
    public static func nativeJob(_ body: Data, limits: ServerLimits = ServerLimits()) throws -> JobSpec {
        let (spec, present) = try JSONBody.decode(JobSpec.self, from: body, allowed: JobSpec.fields)
        try spec.check(limits: limits, present: present)
        if let image = spec.image { _ = try Base64Image.decode(image, field: "image") }
        return spec
    }

    /// POST /sdapi/v1/txt2img and img2img: A1111's body as the job it becomes, checked like a native one.
    @discardableResult
    public static func a1111Generation(_ body: Data, img2img: Bool, limits: ServerLimits = ServerLimits()) throws -> JobSpec {
        let (decoded, _) = try JSONBody.decode(A1111Routes.GenerationBody.self, from: body, allowed: nil)
        let spec = try A1111Routes.jobSpec(decoded, img2img: img2img, limits: limits)
        try spec.check(limits: limits, present: spec.presentFields)
        if img2img, let first = decoded.init_images?.first { _ = try Base64Image.decode(first, field: "init_images[0]") }
        return spec
    }

    /// POST /api/search and /v1/images/generations: their strict JSON bodies decoded.
    public static func searchAndOpenAIBodies(_ body: Data) {
        _ = try? JSONBody.decode(NativeRoutes.SearchBody.self, from: body, allowed: NativeRoutes.SearchBody.fields)
        _ = try? JSONBody.decode(OpenAIRoutes.GenerationBody.self, from: body, allowed: OpenAIRoutes.GenerationBody.fields)
    }

    /// POST /v1/images/variations: the multipart/form-data body, as (name, file name, byte count) per part.
    public static func multipart(_ body: Data, contentType: String) throws -> [(name: String, filename: String?, bytes: Int)] {
        try MultipartForm(body, contentType: contentType).parts.map { ($0.name, $0.filename, $0.data.count) }
    }

    /// POST /sdapi/v1/png-info: a picture's text chunks, its `parameters` text parsed into A1111's fields.
    public static func pngInfo(_ picture: Data, limits: ServerLimits = ServerLimits()) throws -> (info: String, parameters: [String: String]) {
        let info = try A1111Routes.pngInfo(picture, limits: limits)
        return (info.info, info.parameters)
    }

    /// A1111's `parameters` text read back into its fields, as png-info does.
    public static func parameters(_ text: String) -> [String: String] { ParametersText.parse(text) }
}
