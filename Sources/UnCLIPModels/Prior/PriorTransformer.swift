import Foundation
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' PriorTransformer config (prior/config.json).
public struct PriorTransformerConfig: Decodable, Sendable {
    public var numAttentionHeads = 32
    public var attentionHeadDim = 64
    public var numLayers = 20
    public var embeddingDim = 768
    public var numEmbeddings = 77
    public var additionalEmbeddings = 4
    public var timeEmbedActFn: Activation = .silu
    public var normInType: String?
    public var embeddingProjNormType: String?
    public var encoderHidProjType: String? = "linear"
    public var addedEmbType: String? = "prd"
    public var timeEmbedDim: Int?
    public var embeddingProjDim: Int?
    public var clipEmbedDim: Int?

    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// Width of the image embedding the prior produces.
    public var clipDim: Int { clipEmbedDim ?? embeddingDim }
    /// Width of the text embedding (`proj_embedding`) it is conditioned on.
    public var projDim: Int { embeddingProjDim ?? embeddingDim }

    public init() {}

    public init(from decoder: Decoder) throws {
        let r = try ConfigReader(decoder)
        numAttentionHeads = try r("num_attention_heads", numAttentionHeads)
        attentionHeadDim = try r("attention_head_dim", attentionHeadDim)
        numLayers = try r("num_layers", numLayers)
        embeddingDim = try r("embedding_dim", embeddingDim)
        numEmbeddings = try r("num_embeddings", numEmbeddings)
        additionalEmbeddings = try r("additional_embeddings", additionalEmbeddings)
        timeEmbedActFn = try r("time_embed_act_fn", timeEmbedActFn)
        // Optional strings: present-but-null means None, as in diffusers; absent means the default.
        normInType = try r.nullable("norm_in_type", normInType, allowed: ["layer"])
        embeddingProjNormType = try r.nullable("embedding_proj_norm_type", embeddingProjNormType, allowed: ["layer"])
        encoderHidProjType = try r.nullable("encoder_hid_proj_type", encoderHidProjType, allowed: ["linear"])
        addedEmbType = try r.nullable("added_emb_type", addedEmbType, allowed: ["prd"])
        timeEmbedDim = try r.optional("time_embed_dim")
        embeddingProjDim = try r.optional("embedding_proj_dim")
        clipEmbedDim = try r.optional("clip_embed_dim")
        // `dropout` is inactive at inference: left unread.
    }
}

/// diffusers' `BasicTransformerBlock` as the prior uses it: LayerNorm → self-attention, LayerNorm → GELU MLP.
struct PriorBlock: Sendable {
    let norm1, norm3: LayerNorm
    let attn1: DiffusersAttention
    let ff: FeedForward

    init(_ w: WeightMap, _ p: String, dim: Int, heads: Int, headDim: Int) throws {
        norm1 = try LayerNorm(w, p + ".norm1", dim: dim, eps: 1e-5)
        attn1 = try DiffusersAttention(w, p + ".attn1", queryDim: dim, heads: heads, headDim: headDim, bias: true)
        norm3 = try LayerNorm(w, p + ".norm3", dim: dim, eps: 1e-5)
        ff = try FeedForward(w, p + ".ff", dim: dim, kind: .gelu)
    }

    func callAsFunction(_ x: Tensor, keyMask: [Int]?) -> Tensor {
        // diffusers applies the causal mask only together with a text mask.
        let h = add(x, attn1(norm1(x), causal: keyMask != nil, keyMask: keyMask))
        return add(h, ff(norm3(h)))
    }
}

/// The unCLIP diffusion prior: predicts a CLIP image embedding from a noisy one and the text.
public struct PriorTransformer: Sendable, DiffusersFolderModel {
    public let config: PriorTransformerConfig
    let timeEmbedding: TimestepEmbedding
    let projIn, embeddingProj, projToClip: Linear
    let embeddingProjNorm, normIn: LayerNorm?
    let encoderHiddenStatesProj: Linear?
    let positionalEmbedding: Tensor
    let prdEmbedding: Tensor?
    let blocks: [PriorBlock]
    let normOut: LayerNorm
    /// Statistics that map the prior's normalised output back to CLIP's scale.
    public let clipMean, clipStd: Tensor

    public init(config c: PriorTransformerConfig, weights w: WeightMap) throws {
        config = c
        let inner = c.innerDim
        timeEmbedding = try TimestepEmbedding(w, "time_embedding", in: inner, timeEmbedDim: c.timeEmbedDim ?? inner, out: inner, act: c.timeEmbedActFn)
        projIn = try Linear(w, "proj_in", in: c.embeddingDim, out: inner)
        embeddingProjNorm = c.embeddingProjNormType == nil ? nil : try LayerNorm(w, "embedding_proj_norm", dim: c.projDim, eps: 1e-5)
        embeddingProj = try Linear(w, "embedding_proj", in: c.projDim, out: inner)
        encoderHiddenStatesProj = c.encoderHidProjType == nil ? nil : try Linear(w, "encoder_hidden_states_proj", in: c.embeddingDim, out: inner)
        positionalEmbedding = try w.tensor("positional_embedding", shape: [1, c.numEmbeddings + c.additionalEmbeddings, inner])
        prdEmbedding = c.addedEmbType == nil ? nil : try w.tensor("prd_embedding", shape: [1, 1, inner])
        blocks = try (0..<c.numLayers).map {
            try PriorBlock(w, "transformer_blocks.\($0)", dim: inner, heads: c.numAttentionHeads, headDim: c.attentionHeadDim)
        }
        normIn = c.normInType == nil ? nil : try LayerNorm(w, "norm_in", dim: inner, eps: 1e-5)
        normOut = try LayerNorm(w, "norm_out", dim: inner, eps: 1e-5)
        projToClip = try Linear(w, "proj_to_clip_embeddings", in: inner, out: c.clipDim)
        clipMean = try w.tensor("clip_mean", shape: [1, c.clipDim])
        clipStd = try w.tensor("clip_std", shape: [1, c.clipDim])
    }

    /// One denoising prediction.
    /// - hiddenStates: noisy image embeddings [B, embedding_dim]; timesteps: one per row (or one for all).
    /// - projEmbedding: text embeddings [B, proj_dim]; encoderHiddenStates: [B, T, embedding_dim];
    ///   attentionMask: [B][T] with 1 for real tokens (enables the causal mask, as diffusers does).
    public func callAsFunction(hiddenStates: Tensor, timesteps: [Float], projEmbedding: Tensor,
                               encoderHiddenStates: Tensor?, attentionMask: [[Int]]?) throws -> Tensor {
        let c = config, b = hiddenStates.shape[0], inner = c.innerDim
        guard hiddenStates.shape == [b, c.embeddingDim] else {
            throw ModelError.invalidInput("prior: hidden_states \(hiddenStates.shape), expected [B, \(c.embeddingDim)]")
        }
        guard projEmbedding.shape == [b, c.projDim] else {
            throw ModelError.invalidInput("prior: proj_embedding \(projEmbedding.shape), expected [\(b), \(c.projDim)]")
        }
        guard timesteps.count == 1 || timesteps.count == b else {
            throw ModelError.invalidInput("prior: \(timesteps.count) timesteps for a batch of \(b)")
        }
        let ts = timesteps.count == 1 ? Array(repeating: timesteps[0], count: b) : timesteps
        let time = timeEmbedding(timestepEmbedding(ts, dim: inner, flipSinToCos: true, downscaleFreqShift: 0))

        var parts: [Tensor] = []
        var tokens = 0
        if let encoderHiddenStates {
            guard encoderHiddenStates.rank == 3, encoderHiddenStates.shape[0] == b, encoderHiddenStates.shape[2] == c.embeddingDim else {
                throw ModelError.invalidInput("prior: encoder_hidden_states \(encoderHiddenStates.shape), expected [\(b), T, \(c.embeddingDim)]")
            }
            tokens = encoderHiddenStates.shape[1]
            parts.append(encoderHiddenStatesProj.map { $0(encoderHiddenStates) } ?? encoderHiddenStates)
        } else if encoderHiddenStatesProj != nil {
            throw ModelError.invalidInput("prior: encoder_hid_proj_type 'linear' needs encoder_hidden_states")
        }
        let proj = embeddingProj(embeddingProjNorm.map { $0(projEmbedding) } ?? projEmbedding)
        parts.append(proj.reshaped([b, 1, inner]))
        parts.append(time.reshaped([b, 1, inner]))
        parts.append(projIn(hiddenStates).reshaped([b, 1, inner]))
        if let prdEmbedding {
            parts.append(concat(Array(repeating: prdEmbedding, count: b), axis: 0))
        }
        var x = concat(parts, axis: 1)
        let seq = x.shape[1]

        // Positional embedding, zero-padded as diffusers does when the sequence is longer.
        var pos = positionalEmbedding
        if pos.shape[1] < seq {
            let lead = tokens + 2, trail = prdEmbedding == nil ? 0 : 1
            pos = concat([Tensor(zeros: [1, lead, inner]), pos, Tensor(zeros: [1, trail, inner])], axis: 1)
        }
        guard pos.shape[1] == seq else {
            throw ModelError.invalidInput("prior: sequence of \(seq) tokens does not fit the positional embedding of \(positionalEmbedding.shape[1])")
        }
        x = add(x, pos.reshaped([seq, inner]))

        var keyMask: [Int]?
        if let attentionMask {
            guard attentionMask.count == b, attentionMask.allSatisfy({ $0.count == tokens }) else {
                throw ModelError.invalidInput("prior: attention mask must be [\(b)][\(tokens)]")
            }
            guard seq == c.numEmbeddings + c.additionalEmbeddings else {
                throw ModelError.invalidInput("prior: a text mask needs \(c.numEmbeddings) text tokens, got \(tokens)")
            }
            // Text padding is masked; the added tokens after the text are always visible.
            keyMask = attentionMask.flatMap { $0 + Array(repeating: 1, count: seq - tokens) }
        }
        if let normIn { x = normIn(x) }
        for block in blocks { x = block(x, keyMask: keyMask) }
        x = normOut(x)

        // The prediction is the last token: the learned prd token, or without it the noisy-embedding position
        // (diffusers then returns every token after the text, and the image embedding is the last of them).
        return projToClip(gatherRows(x, positions: Array(repeating: seq - 1, count: b)))
    }

    /// Maps a normalised prior output to CLIP's scale: x · clip_std + clip_mean.
    public func postProcessLatents(_ x: Tensor) -> Tensor {
        add(mul(x, clipStd.reshaped([config.clipDim])), clipMean.reshaped([config.clipDim]))
    }
}
