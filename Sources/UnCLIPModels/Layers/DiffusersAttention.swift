import UnCLIPTensor
import UnCLIPWeights

/// diffusers' `Attention` (to_q, to_k, to_v, to_out.0) with the default processor.
public struct DiffusersAttention: Sendable {
    let toQ, toK, toV, toOut: Linear
    let heads: Int

    public init(_ w: WeightMap, _ p: String, queryDim: Int, contextDim: Int? = nil, heads: Int, headDim: Int,
                bias: Bool = false, outBias: Bool = true) throws {
        let inner = heads * headDim
        toQ = try Linear(w, p + ".to_q", in: queryDim, out: inner, bias: bias)
        toK = try Linear(w, p + ".to_k", in: contextDim ?? queryDim, out: inner, bias: bias)
        toV = try Linear(w, p + ".to_v", in: contextDim ?? queryDim, out: inner, bias: bias)
        toOut = try Linear(w, p + ".to_out.0", in: inner, out: queryDim, bias: outBias)
        self.heads = heads
    }

    /// x [B, T, D]; context [B, S, C] for cross-attention (nil: self-attention).
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil, causal: Bool = false, keyMask: [Int]? = nil) -> Tensor {
        let c = context ?? x
        // Layers loaded for bf16 products take the bf16 attention kernel too.
        return toOut(attention(query: toQ(x), key: toK(c), value: toV(c), heads: heads, causal: causal, keyMask: keyMask,
                               precision: toQ.packed != nil ? .bf16 : .fp32))
    }
}

/// diffusers' `FeedForward` with "gelu" (Linear+GELU) or "geglu" (Linear to 2×inner, value · GELU(gate)).
public struct FeedForward: Sendable {
    public enum Kind: Sendable { case gelu, geglu }
    let proj, out: Linear
    let kind: Kind
    let inner: Int

    public init(_ w: WeightMap, _ p: String, dim: Int, inner: Int? = nil, kind: Kind) throws {
        let inner = inner ?? 4 * dim
        proj = try Linear(w, p + ".net.0.proj", in: dim, out: kind == .geglu ? 2 * inner : inner)
        out = try Linear(w, p + ".net.2", in: inner, out: dim)
        self.kind = kind
        self.inner = inner
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = proj(x)
        switch kind {
        case .gelu: return out(gelu(h))
        case .geglu: return out(geglu(h))
        }
    }
}
