import UnCLIPTensor
import UnCLIPWeights

/// diffusers' `BasicTransformerBlock` with cross-attention: self-attn, cross-attn on the text, GEGLU MLP.
struct CrossAttentionBlock: Sendable {
    let norm1, norm2, norm3: LayerNorm
    let attn1, attn2: DiffusersAttention
    let ff: FeedForward
    let onlyCrossAttention: Bool

    init(_ w: WeightMap, _ p: String, dim: Int, heads: Int, headDim: Int, contextDim: Int, onlyCrossAttention: Bool) throws {
        norm1 = try LayerNorm(w, p + ".norm1", dim: dim, eps: 1e-5)
        attn1 = try DiffusersAttention(w, p + ".attn1", queryDim: dim, contextDim: onlyCrossAttention ? contextDim : nil,
                                       heads: heads, headDim: headDim)
        norm2 = try LayerNorm(w, p + ".norm2", dim: dim, eps: 1e-5)
        attn2 = try DiffusersAttention(w, p + ".attn2", queryDim: dim, contextDim: contextDim, heads: heads, headDim: headDim)
        norm3 = try LayerNorm(w, p + ".norm3", dim: dim, eps: 1e-5)
        ff = try FeedForward(w, p + ".ff", dim: dim, kind: .geglu)
        self.onlyCrossAttention = onlyCrossAttention
    }

    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var h = add(x, attn1(norm1(x), context: onlyCrossAttention ? context : nil))
        h = add(h, attn2(norm2(h), context: context))
        return add(h, ff(norm3(h)))
    }
}

/// diffusers' `Transformer2DModel` on continuous inputs: GroupNorm, proj_in (1×1 conv or linear),
/// transformer blocks over the H·W tokens, proj_out, residual.
public struct Transformer2D: Sendable {
    let norm: GroupNorm
    let projInConv, projOutConv: Conv2d?
    let projInLinear, projOutLinear: Linear?
    let blocks: [CrossAttentionBlock]
    let inner: Int

    public init(_ w: WeightMap, _ p: String, channels: Int, heads: Int, headDim: Int, layers: Int, contextDim: Int,
                groups: Int, useLinearProjection: Bool, onlyCrossAttention: Bool) throws {
        inner = heads * headDim
        norm = try GroupNorm(w, p + ".norm", channels: channels, groups: groups, eps: 1e-6)
        if useLinearProjection {
            projInLinear = try Linear(w, p + ".proj_in", in: channels, out: inner)
            projOutLinear = try Linear(w, p + ".proj_out", in: inner, out: channels)
            projInConv = nil; projOutConv = nil
        } else {
            projInConv = try Conv2d(w, p + ".proj_in", in: channels, out: inner, kernel: 1)
            projOutConv = try Conv2d(w, p + ".proj_out", in: inner, out: channels, kernel: 1)
            projInLinear = nil; projOutLinear = nil
        }
        let dim = heads * headDim
        blocks = try (0..<layers).map {
            try CrossAttentionBlock(w, "\(p).transformer_blocks.\($0)", dim: dim, heads: heads, headDim: headDim,
                                    contextDim: contextDim, onlyCrossAttention: onlyCrossAttention)
        }
    }

    /// x [B, C, H, W]; context [B, S, cross_attention_dim].
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var t = norm(x)
        if let projInConv { t = projInConv(t) }
        let ch = t.shape[1]
        t = permute(t.reshaped([b, ch, h * w]), [0, 2, 1])     // [B, HW, C]
        if let projInLinear { t = projInLinear(t) }
        for block in blocks { t = block(t, context: context) }
        if let projOutLinear { t = projOutLinear(t) }
        let cOut = t.shape[2]
        t = permute(t, [0, 2, 1]).reshaped([b, cOut, h, w])
        if let projOutConv { t = projOutConv(t) }
        precondition(t.shape[1] == c)
        return add(t, x)
    }
}
