import UnCLIPTensor
import UnCLIPWeights

/// One pre-LayerNorm transformer block of CLIP (`encoder.layers.N`).
struct CLIPEncoderLayer: Sendable {
    let qProj, kProj, vProj, outProj, fc1, fc2: Linear
    let layerNorm1, layerNorm2: LayerNorm
    let heads: Int
    let act: Activation

    init(_ w: WeightMap, _ p: String, hidden: Int, intermediate: Int, heads: Int, act: Activation, eps: Float) throws {
        qProj = try Linear(w, p + ".self_attn.q_proj", in: hidden, out: hidden)
        kProj = try Linear(w, p + ".self_attn.k_proj", in: hidden, out: hidden)
        vProj = try Linear(w, p + ".self_attn.v_proj", in: hidden, out: hidden)
        outProj = try Linear(w, p + ".self_attn.out_proj", in: hidden, out: hidden)
        layerNorm1 = try LayerNorm(w, p + ".layer_norm1", dim: hidden, eps: eps)
        layerNorm2 = try LayerNorm(w, p + ".layer_norm2", dim: hidden, eps: eps)
        fc1 = try Linear(w, p + ".mlp.fc1", in: hidden, out: intermediate)
        fc2 = try Linear(w, p + ".mlp.fc2", in: intermediate, out: hidden)
        self.heads = heads
        self.act = act
    }

    func callAsFunction(_ x: Tensor, causal: Bool, keyMask: [Int]?) -> Tensor {
        let h = layerNorm1(x)
        let a = attention(query: qProj(h), key: kProj(h), value: vProj(h), heads: heads, causal: causal, keyMask: keyMask)
        let x1 = add(x, outProj(a))
        return add(x1, fc2(act(fc1(layerNorm2(x1)))))
    }
}

/// The stack of encoder layers; returns every hidden state (input first), as transformers' `hidden_states`.
struct CLIPEncoder: Sendable {
    let layers: [CLIPEncoderLayer]

    init(_ w: WeightMap, _ prefix: String, config c: some CLIPTransformerConfig) throws {
        layers = try (0..<c.numHiddenLayers).map {
            try CLIPEncoderLayer(w, "\(prefix).layers.\($0)", hidden: c.hiddenSize, intermediate: c.intermediateSize,
                                 heads: c.numAttentionHeads, act: c.hiddenAct, eps: c.layerNormEps)
        }
    }

    func callAsFunction(_ x: Tensor, causal: Bool, keyMask: [Int]?, upTo last: Int? = nil) -> [Tensor] {
        var states = [x]
        for layer in layers.prefix(last ?? layers.count) { states.append(layer(states.last!, causal: causal, keyMask: keyMask)) }
        return states
    }
}
