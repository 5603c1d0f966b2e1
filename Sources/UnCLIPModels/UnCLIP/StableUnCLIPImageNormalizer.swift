import UnCLIPTensor
import UnCLIPWeights

/// diffusers' StableUnCLIPImageNormalizer: the CLIP image-embedding statistics used around noise augmentation.
public struct StableUnCLIPImageNormalizer: Sendable {
    public struct Config: Decodable, Sendable {
        public var embeddingDim = 768
        enum CodingKeys: String, CodingKey { case embeddingDim = "embedding_dim" }
    }

    public let config: Config
    let mean, std: Tensor

    public init(folder: ModelFolder, variant: String? = nil) throws {
        let c = try folder.config(Config.self)
        let w = try folder.weights(variant: variant)
        config = c
        mean = try w.tensor("mean", shape: [1, c.embeddingDim]).reshaped([c.embeddingDim])
        std = try w.tensor("std", shape: [1, c.embeddingDim]).reshaped([c.embeddingDim])
    }

    /// (x − mean) / std, in diffusers' operation order.
    public func scale(_ x: Tensor) -> Tensor {
        let d = config.embeddingDim
        let y = Tensor(uninitialized: x.shape)
        for i in 0..<x.count { y.pointer[i] = (x.pointer[i] - mean.pointer[i % d]) / std.pointer[i % d] }
        return y
    }

    /// x · std + mean.
    public func unscale(_ x: Tensor) -> Tensor { add(mul(x, std), mean) }
}
