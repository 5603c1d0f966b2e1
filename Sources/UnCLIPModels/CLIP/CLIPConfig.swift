import Foundation
import UnCLIPWeights

/// The transformer settings transformers' CLIPTextConfig and CLIPVisionConfig share: the same keys (with
/// different defaults), read and checked in one place, and all a `CLIPEncoder` needs.
protocol CLIPTransformerConfig {
    var hiddenSize: Int { get set }
    var intermediateSize: Int { get set }
    var projectionDim: Int { get set }
    var numHiddenLayers: Int { get set }
    var numAttentionHeads: Int { get set }
    var hiddenAct: Activation { get set }
    var layerNormEps: Float { get set }
}

extension CLIPTransformerConfig {
    /// Reads the shared keys (a missing one keeps the default) and checks that the heads divide the width.
    mutating func readTransformerKeys(_ r: ConfigReader) throws {
        hiddenSize = try r("hidden_size", hiddenSize)
        intermediateSize = try r("intermediate_size", intermediateSize)
        projectionDim = try r("projection_dim", projectionDim)
        numHiddenLayers = try r("num_hidden_layers", numHiddenLayers)
        numAttentionHeads = try r("num_attention_heads", numAttentionHeads)
        hiddenAct = try r("hidden_act", hiddenAct)
        layerNormEps = try r("layer_norm_eps", layerNormEps)
        guard numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 else {
            throw ConfigValueError(key: "num_attention_heads", value: "\(numAttentionHeads)",
                                   allowed: ["a divisor of hidden_size \(hiddenSize)"])
        }
    }
}

/// transformers' CLIPTextConfig (the keys of a text_encoder/config.json). Missing keys take transformers' defaults.
public struct CLIPTextConfig: CLIPTransformerConfig, Decodable, Sendable {
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

    public init() {}

    public init(from decoder: Decoder) throws {
        let r = try ConfigReader(decoder)
        try readTransformerKeys(r)
        vocabSize = try r("vocab_size", vocabSize)
        maxPositionEmbeddings = try r("max_position_embeddings", maxPositionEmbeddings)
        padTokenId = try r("pad_token_id", padTokenId)
        bosTokenId = try r("bos_token_id", bosTokenId)
        eosTokenId = try r("eos_token_id", eosTokenId)
        architectures = try r("architectures", architectures)
    }
}

/// transformers' CLIPVisionConfig (image_encoder/config.json).
public struct CLIPVisionConfig: CLIPTransformerConfig, Decodable, Sendable {
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

    public init() {}

    public init(from decoder: Decoder) throws {
        let r = try ConfigReader(decoder)
        try readTransformerKeys(r)
        numChannels = try r("num_channels", numChannels)
        imageSize = try r("image_size", imageSize)
        patchSize = try r("patch_size", patchSize)
        guard patchSize > 0, imageSize % patchSize == 0 else {
            throw ConfigValueError(key: "patch_size", value: "\(patchSize)", allowed: ["a divisor of image_size \(imageSize)"])
        }
    }
}
