import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights

/// A CLIP vision encoder with its preprocessing: picture → CLIP image embedding (`image_embeds`).
/// Stable unCLIP folders carry one (feature_extractor/ + image_encoder/) for variations from PNGs; for plain
/// Stable Diffusion, `--clip DIR` names one so that finished images get an embedding the store can search.
public final class CLIPImageEmbedder {
    public let processor: CLIPImageProcessor
    public let encoder: ModelSlot<CLIPVisionModel>
    /// The vision encoder's folder.
    public let folder: URL

    /// `folder` holds image_encoder/ and feature_extractor/ (a Stable unCLIP or Karlo-style folder), or is itself a
    /// CLIPVisionModelWithProjection folder with its preprocessor_config.json.
    public convenience init(folder: URL, variant: String? = nil) throws {
        try self.init(folder: folder, options: LoadOptions(variant: variant))
    }

    public init(folder: URL, options: LoadOptions) throws {
        let fm = FileManager.default
        let ie = folder.appendingPathComponent("image_encoder"), fx = folder.appendingPathComponent("feature_extractor")
        let encoderFolder: URL, processorURL: URL
        if fm.fileExists(atPath: ie.path) {
            guard fm.fileExists(atPath: fx.path) else {
                throw WeightError.missingFile(path: fx.path, what: "feature_extractor (the image encoder's preprocessing)")
            }
            encoderFolder = ie
            processorURL = fx
        } else if fm.fileExists(atPath: folder.appendingPathComponent("preprocessor_config.json").path) {
            encoderFolder = folder
            processorURL = folder
        } else {
            throw WeightError.missingFile(path: ie.path, what: "CLIP image encoder: a folder with image_encoder/ and feature_extractor/, or a CLIPVisionModelWithProjection folder with preprocessor_config.json")
        }
        processor = try CLIPImageProcessor(contentsOf: processorURL)
        encoder = try ModelSlot(onDemand: options.lowMemory) { try CLIPVisionModel(folder: ModelFolder(encoderFolder), variant: options.variant) }
        self.folder = encoderFolder
    }

    /// Whether `folder` has image_encoder/ and feature_extractor/.
    public static func isPresent(in folder: URL) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: folder.appendingPathComponent("image_encoder").path)
            && fm.fileExists(atPath: folder.appendingPathComponent("feature_extractor").path)
    }

    /// The projected image embedding [1, D].
    public func embed(_ image: RGBImage) throws -> Tensor {
        let px = processor.preprocess(image)
        defer { encoder.release() }
        let out = try encoder.get()(pixelValues: Tensor(shape: [1, px.channels, px.height, px.width], data: px.data))
        guard let e = out.imageEmbeds else {
            throw ModelError.invalidInput("\(folder.path): this vision encoder has no visual projection, so it gives no CLIP image embedding")
        }
        return e
    }
}
