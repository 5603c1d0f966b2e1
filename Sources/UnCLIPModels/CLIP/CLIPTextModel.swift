import Foundation
import UnCLIPTensor
import UnCLIPWeights

/// Outputs of the CLIP text transformer, named as transformers names them.
public struct CLIPTextOutput: Sendable {
    /// Final-LayerNormed output of the last layer [B, T, D].
    public let lastHiddenState: Tensor
    /// Embedding output then every layer's output [B, T, D] (before the final LayerNorm).
    public let hiddenStates: [Tensor]
    /// The EOS token's row of `lastHiddenState` [B, D].
    public let poolerOutput: Tensor
    /// `poolerOutput` through `text_projection` [B, P]; nil for a plain CLIPTextModel.
    public let textEmbeds: Tensor?
}

/// CLIPTextModel / CLIPTextModelWithProjection from a transformers folder.
public struct CLIPTextModel: Sendable {
    public let config: CLIPTextConfig
    let tokenEmbedding: Tensor
    let positionEmbedding: Tensor
    let encoder: CLIPEncoder
    let finalLayerNorm: LayerNorm
    let textProjection: Tensor?

    public init(folder: ModelFolder, variant: String? = nil) throws {
        let config = try folder.config(CLIPTextConfig.self)
        try self.init(config: config, weights: folder.weights(variant: variant))
    }

    public init(config c: CLIPTextConfig, weights w: WeightMap) throws {
        w.prefixAliases = [("text_model.", "")]
        config = c
        let d = c.hiddenSize
        tokenEmbedding = try w.tensor("text_model.embeddings.token_embedding.weight", shape: [c.vocabSize, d])
        positionEmbedding = try w.tensor("text_model.embeddings.position_embedding.weight", shape: [c.maxPositionEmbeddings, d])
        encoder = try CLIPEncoder(w, "text_model.encoder", config: c)
        finalLayerNorm = try LayerNorm(w, "text_model.final_layer_norm", dim: d, eps: c.layerNormEps)
        // The projection exists for CLIPTextModelWithProjection; a folder says so by its architecture or its weights.
        let wantsProjection = c.architectures.contains { $0.hasSuffix("WithProjection") }
        textProjection = wantsProjection ? try w.tensor("text_projection.weight", shape: [c.projectionDim, d])
                                         : try w.optionalTensor("text_projection.weight", shape: [c.projectionDim, d])
    }

    public var hasProjection: Bool { textProjection != nil }

    /// Runs the encoder on token ids [B][T]; `attentionMask` (1 = real token) hides padding keys as transformers does.
    public func callAsFunction(inputIds: [[Int]], attentionMask: [[Int]]? = nil) throws -> CLIPTextOutput {
        guard let t = inputIds.first?.count, t > 0, inputIds.allSatisfy({ $0.count == t }) else {
            throw ModelError.invalidInput("text encoder: token id rows must be non-empty and of equal length")
        }
        guard t <= config.maxPositionEmbeddings else {
            throw ModelError.invalidInput("text encoder: \(t) tokens exceed max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        let flat = inputIds.flatMap { $0 }
        if let bad = flat.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw ModelError.invalidInput("text encoder: token id \(bad) outside the vocabulary of \(config.vocabSize)")
        }
        if let attentionMask, attentionMask.count != inputIds.count || attentionMask.contains(where: { $0.count != t }) {
            throw ModelError.invalidInput("text encoder: attention mask shape does not match the token ids")
        }
        let b = inputIds.count, d = config.hiddenSize
        let tokens = embeddingLookup(tokenEmbedding, flat).reshaped([b, t, d])
        let positions = Tensor(shape: [t, d], storage: positionEmbedding.storage, offset: positionEmbedding.offset)
        let x = add(tokens, positions)
        let states = encoder(x, causal: true, keyMask: attentionMask?.flatMap { $0 })
        let last = finalLayerNorm(states.last!)

        // transformers: legacy configs (eos_token_id == 2) pool at argmax(ids), others at the first eos id.
        let pooled = gatherRows(last, positions: inputIds.map { row in
            config.eosTokenId == 2 ? row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }!
                                   : row.firstIndex(of: config.eosTokenId) ?? 0
        })
        let embeds = textProjection.map { linear(pooled, weight: $0) }
        return CLIPTextOutput(lastHiddenState: last, hiddenStates: states, poolerOutput: pooled, textEmbeds: embeds)
    }
}
