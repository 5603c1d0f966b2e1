import UnCLIPTensor
import UnCLIPWeights

/// A diffusers model built from its folder's config.json and weights, with its Linear/Conv2d products in a
/// chosen precision (the prior, the UNet and the VAE; the CLIP encoders stay fp32 and load on their own).
public protocol DiffusersFolderModel {
    associatedtype Config: Decodable
    init(config: Config, weights: WeightMap) throws
}

extension DiffusersFolderModel {
    /// Loads a diffusers folder; Linear/Conv2d products run in `precision` (default fp32).
    public init(folder: ModelFolder, variant: String? = nil, precision: GemmPrecision = .fp32) throws {
        let weights = try folder.weights(variant: variant)
        weights.gemmPrecision = precision
        try self.init(config: folder.config(Config.self), weights: weights)
    }
}
