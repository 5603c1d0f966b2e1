import Foundation
import UnCLIPTensor
import UnCLIPWeights

/// Outputs of the CLIP vision transformer, named as transformers names them.
public struct CLIPVisionOutput: Sendable {
    /// Encoder output [B, 1 + patches, D] (not post-LayerNormed, as in transformers).
    public let lastHiddenState: Tensor
    /// Pre-LayerNormed embeddings, then every layer's output.
    public let hiddenStates: [Tensor]
    /// post_layernorm of the class token [B, D].
    public let poolerOutput: Tensor
    /// `poolerOutput` through `visual_projection` [B, P]; nil without a projection.
    public let imageEmbeds: Tensor?
}

/// CLIPVisionModel / CLIPVisionModelWithProjection from a transformers folder.
public struct CLIPVisionModel: Sendable {
    public let config: CLIPVisionConfig
    let classEmbedding: Tensor
    let patchEmbedding: Conv2d
    let positionEmbedding: Tensor
    let preLayerNorm: LayerNorm
    let encoder: CLIPEncoder
    let postLayerNorm: LayerNorm
    let visualProjection: Tensor?

    public init(folder: ModelFolder, variant: String? = nil) throws {
        try self.init(config: folder.config(CLIPVisionConfig.self), weights: folder.weights(variant: variant))
    }

    public init(config c: CLIPVisionConfig, weights w: WeightMap) throws {
        w.prefixAliases = [("vision_model.", "")]
        config = c
        let d = c.hiddenSize, patches = (c.imageSize / c.patchSize) * (c.imageSize / c.patchSize)
        classEmbedding = try w.tensor("vision_model.embeddings.class_embedding", shape: [d])
        patchEmbedding = try Conv2d(w, "vision_model.embeddings.patch_embedding", in: c.numChannels, out: d,
                                    kernel: c.patchSize, stride: c.patchSize, bias: false)
        positionEmbedding = try w.tensor("vision_model.embeddings.position_embedding.weight", shape: [patches + 1, d])
        preLayerNorm = try LayerNorm(w, "vision_model.pre_layrnorm", dim: d, eps: c.layerNormEps)
        encoder = try CLIPEncoder(w, "vision_model.encoder", config: c)
        postLayerNorm = try LayerNorm(w, "vision_model.post_layernorm", dim: d, eps: c.layerNormEps)
        visualProjection = try w.optionalTensor("visual_projection.weight", shape: [c.projectionDim, d])
    }

    /// Runs the encoder on preprocessed pixels [B, C, S, S] (S = image_size).
    public func callAsFunction(pixelValues: Tensor) throws -> CLIPVisionOutput {
        let c = config
        guard pixelValues.rank == 4, pixelValues.shape[1] == c.numChannels,
              pixelValues.shape[2] == c.imageSize, pixelValues.shape[3] == c.imageSize else {
            throw ModelError.invalidInput("vision encoder: pixel values \(pixelValues.shape), expected [B, \(c.numChannels), \(c.imageSize), \(c.imageSize)]")
        }
        let b = pixelValues.shape[0], d = c.hiddenSize
        let grid = patchEmbedding(pixelValues)               // [B, D, g, g]
        let n = grid.shape[2] * grid.shape[3]
        let patches = permute(grid.reshaped([b, d, n]), [0, 2, 1])  // [B, n, D]
        let tokens = Tensor(uninitialized: [b, n + 1, d])
        for i in 0..<b {
            let dst = tokens.pointer + i * (n + 1) * d
            dst.update(from: classEmbedding.pointer, count: d)
            (dst + d).update(from: patches.pointer + i * n * d, count: n * d)
        }
        let x = preLayerNorm(add(tokens, positionEmbedding))
        let states = encoder(x, causal: false, keyMask: nil)
        let last = states.last!
        let pooled = postLayerNorm(gatherRows(last, positions: Array(repeating: 0, count: b)))  // the class token
        return CLIPVisionOutput(lastHiddenState: last, hiddenStates: states, poolerOutput: pooled,
                                imageEmbeds: visualProjection.map { linear(pooled, weight: $0) })
    }
}
