import UnCLIPTensor
import UnCLIPWeights

/// The weight (shape [out, ...]) and optional bias of a Linear or Conv2d, as its products will read them: with bf16
/// products (the weight map's `gemmPrecision`, as this CPU can run it) only the packed copy stays, since holding
/// both would cost 1.5× the memory of fp32 alone; else the fp32 weight.
private func loadProductWeight(_ w: WeightMap, _ prefix: String, shape: [Int], bias hasBias: Bool,
                               layout: BF16Weight.Layout) throws -> (weight: Tensor?, bias: Tensor?, packed: BF16Weight?) {
    let full = try w.tensor(prefix + ".weight", shape: shape)
    let bias = hasBias ? try w.tensor(prefix + ".bias", shape: [shape[0]]) : nil
    guard w.gemmPrecision.runnable == .bf16 else { return (full, bias, nil) }
    let packed = BF16Weight(full, layout: layout)
    full.releaseResidentPages()
    return (nil, bias, packed)
}

/// torch.nn.Linear: weight [out, in], optional bias.
public struct Linear: Sendable {
    /// The fp32 weight; nil when only the bf16-packed copy is kept.
    public let weight: Tensor?
    public let bias: Tensor?
    /// The weight packed for the bf16 kernel, when the weight map asks for bf16 products.
    public let packed: BF16Weight?

    public init(_ w: WeightMap, _ prefix: String, in inF: Int, out outF: Int, bias hasBias: Bool = true) throws {
        (weight, bias, packed) = try loadProductWeight(w, prefix, shape: [outF, inF], bias: hasBias, layout: .lanes)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let packed { return linear(x, packed: packed, bias: bias) }
        return linear(x, weight: weight!, bias: bias)  // one of the two is always set (init)
    }
}

/// torch.nn.LayerNorm over the last axis.
public struct LayerNorm: Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ w: WeightMap, _ prefix: String, dim: Int, eps: Float) throws {
        weight = try w.tensor(prefix + ".weight", shape: [dim])
        bias = try w.tensor(prefix + ".bias", shape: [dim])
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// torch.nn.GroupNorm on [B, C, ...].
public struct GroupNorm: Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let groups: Int
    public let eps: Float

    public init(_ w: WeightMap, _ prefix: String, channels: Int, groups: Int, eps: Float) throws {
        weight = try w.tensor(prefix + ".weight", shape: [channels])
        bias = try w.tensor(prefix + ".bias", shape: [channels])
        self.groups = groups
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor, silu: Bool = false) -> Tensor {
        groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps, fusedSiLU: silu)
    }
}

/// torch.nn.Conv2d with square kernel, stride and padding.
public struct Conv2d: Sendable {
    /// The fp32 weight [out, in, k, k]; nil when only the bf16-packed copy is kept.
    public let weight: Tensor?
    public let bias: Tensor?
    public let outChannels: Int
    public let kernel: Int
    public let stride: Int
    public let padding: Int
    /// The weight packed for the bf16 kernel, when the weight map asks for bf16 products.
    public let packed: BF16Weight?

    public init(_ w: WeightMap, _ prefix: String, in inC: Int, out outC: Int, kernel: Int,
                stride: Int = 1, padding: Int = 0, bias hasBias: Bool = true) throws {
        outChannels = outC
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        // 3×3, stride 1, padding 1 (most of a UNet's and a VAE's convolutions): Winograd F(2×2, 3×3).
        let winograd = kernel == 3 && stride == 1 && padding == 1
        (weight, bias, packed) = try loadProductWeight(w, prefix, shape: [outC, inC, kernel, kernel], bias: hasBias,
                                                       layout: winograd ? .winograd3x3 : .rows)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let packed {
            return conv2d(x, packed: packed, outputs: outChannels, kernel: (kernel, kernel), bias: bias,
                          stride: (stride, stride), padding: (padding, padding))
        }
        return conv2d(x, weight: weight!, bias: bias, stride: (stride, stride), padding: (padding, padding))
    }
}

/// Activation functions named as in transformers/diffusers configs.
public enum Activation: String, Sendable, Decodable, CaseIterable {
    case quickGelu = "quick_gelu"
    case gelu
    case geluPytorchTanh = "gelu_pytorch_tanh"
    case geluNew = "gelu_new"
    case silu
    case swish

    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let value = Activation(rawValue: raw) else {
            throw ConfigValueError(key: "activation", value: raw, allowed: Activation.allCases.map(\.rawValue))
        }
        self = value
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .quickGelu: return UnCLIPTensor.quickGelu(x)
        case .gelu: return UnCLIPTensor.gelu(x)
        case .geluPytorchTanh, .geluNew: return geluTanh(x)
        case .silu, .swish: return UnCLIPTensor.silu(x)
        }
    }
}

/// Rows of an embedding table: table [V, D], ids → [ids.count, D].
public func embeddingLookup(_ table: Tensor, _ ids: [Int]) -> Tensor {
    let d = table.shape[1]
    let y = Tensor(uninitialized: [ids.count, d])
    for (i, id) in ids.enumerated() { (y.pointer + i * d).update(from: table.pointer + id * d, count: d) }
    return y
}
