import Foundation
import UnCLIPWeights

/// transformers' CLIPTextConfig (the keys of a text_encoder/config.json). Missing keys take transformers' defaults.
public struct CLIPTextConfig: Decodable, Sendable {
    public var vocabSize = 49408
    public var hiddenSize = 512
    public var intermediateSize = 2048
    public var projectionDim = 512
    public var numHiddenLayers = 12
    public var numAttentionHeads = 8
    public var maxPositionEmbeddings = 77
    public var hiddenAct: Activation = .quickGelu
    public var layerNormEps: Float = 1e-5
    public var padTokenId = 1
    public var bosTokenId = 49406
    public var eosTokenId = 49407
    /// The checkpoint class, e.g. "CLIPTextModelWithProjection" (decides whether a projection exists).
    public var architectures: [String] = []

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case projectionDim = "projection_dim", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", maxPositionEmbeddings = "max_position_embeddings"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps", padTokenId = "pad_token_id"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", architectures
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
        vocabSize = try get(.vocabSize, vocabSize)
        hiddenSize = try get(.hiddenSize, hiddenSize)
        intermediateSize = try get(.intermediateSize, intermediateSize)
        projectionDim = try get(.projectionDim, projectionDim)
        numHiddenLayers = try get(.numHiddenLayers, numHiddenLayers)
        numAttentionHeads = try get(.numAttentionHeads, numAttentionHeads)
        maxPositionEmbeddings = try get(.maxPositionEmbeddings, maxPositionEmbeddings)
        hiddenAct = try get(.hiddenAct, hiddenAct)
        layerNormEps = try get(.layerNormEps, layerNormEps)
        padTokenId = try get(.padTokenId, padTokenId)
        bosTokenId = try get(.bosTokenId, bosTokenId)
        eosTokenId = try get(.eosTokenId, eosTokenId)
        architectures = try get(.architectures, architectures)
        try validate(hidden: hiddenSize, heads: numAttentionHeads)
    }
}

/// transformers' CLIPVisionConfig (image_encoder/config.json).
public struct CLIPVisionConfig: Decodable, Sendable {
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var projectionDim = 512
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var numChannels = 3
    public var imageSize = 224
    public var patchSize = 32
    public var hiddenAct: Activation = .quickGelu
    public var layerNormEps: Float = 1e-5

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", projectionDim = "projection_dim"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numChannels = "num_channels", imageSize = "image_size", patchSize = "patch_size"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
        hiddenSize = try get(.hiddenSize, hiddenSize)
        intermediateSize = try get(.intermediateSize, intermediateSize)
        projectionDim = try get(.projectionDim, projectionDim)
        numHiddenLayers = try get(.numHiddenLayers, numHiddenLayers)
        numAttentionHeads = try get(.numAttentionHeads, numAttentionHeads)
        numChannels = try get(.numChannels, numChannels)
        imageSize = try get(.imageSize, imageSize)
        patchSize = try get(.patchSize, patchSize)
        hiddenAct = try get(.hiddenAct, hiddenAct)
        layerNormEps = try get(.layerNormEps, layerNormEps)
        try validate(hidden: hiddenSize, heads: numAttentionHeads)
        guard patchSize > 0, imageSize % patchSize == 0 else {
            throw ConfigValueError(key: "patch_size", value: "\(patchSize)", allowed: ["a divisor of image_size \(imageSize)"])
        }
    }
}

private func validate(hidden: Int, heads: Int) throws {
    guard heads > 0, hidden % heads == 0 else {
        throw ConfigValueError(key: "num_attention_heads", value: "\(heads)", allowed: ["a divisor of hidden_size \(hidden)"])
    }
}
