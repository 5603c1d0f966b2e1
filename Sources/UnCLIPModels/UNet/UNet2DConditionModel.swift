import Foundation
import UnCLIPTensor
import UnCLIPWeights

/// A config value that diffusers accepts either as one value or as one per block.
public enum PerBlock<T: Decodable & Sendable>: Decodable, Sendable {
    case one(T)
    case list([T])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(T.self) { self = .one(v) } else { self = .list(try c.decode([T].self)) }
    }

    /// The per-block values for `count` blocks (a list must have exactly that many).
    func values(_ count: Int, key: String) throws -> [T] {
        switch self {
        case let .one(v): return Array(repeating: v, count: count)
        case let .list(l):
            guard l.count == count else { throw ConfigValueError(key: key, value: "\(l.count) values", allowed: ["\(count) values (one per block)"]) }
            return l
        }
    }
}

/// diffusers' UNet2DConditionModel config (unet/config.json): the subset Stable Diffusion 1/2 and Stable unCLIP use.
public struct UNet2DConditionConfig: Decodable, Sendable {
    public var sampleSize: Int? = nil
    public var inChannels = 4
    public var outChannels = 4
    public var centerInputSample = false
    public var flipSinToCos = true
    public var freqShift: Float = 0
    public var downBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    public var midBlockType: String? = "UNetMidBlock2DCrossAttn"
    public var upBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    public var onlyCrossAttention: PerBlock<Bool> = .one(false)
    public var blockOutChannels = [320, 640, 1280, 1280]
    public var layersPerBlock: PerBlock<Int> = .one(2)
    public var downsamplePadding = 1
    public var midBlockScaleFactor: Float = 1
    public var actFn = "silu"
    public var normNumGroups = 32
    public var normEps: Float = 1e-5
    public var crossAttentionDim: PerBlock<Int> = .one(1280)
    public var transformerLayersPerBlock: PerBlock<Int> = .one(1)
    public var attentionHeadDim: PerBlock<Int> = .one(8)
    public var numAttentionHeads: PerBlock<Int>? = nil
    public var useLinearProjection = false
    public var classEmbedType: String? = nil
    public var numClassEmbeds: Int? = nil
    public var upcastAttention = false
    public var projectionClassEmbeddingsInputDim: Int? = nil
    public var timeEmbeddingActFn: String? = nil

    public init() {}

    public init(from decoder: Decoder) throws {
        let r = try ConfigReader(decoder)
        sampleSize = try r.optional("sample_size")
        inChannels = try r("in_channels", inChannels)
        outChannels = try r("out_channels", outChannels)
        centerInputSample = try r("center_input_sample", centerInputSample)
        flipSinToCos = try r("flip_sin_to_cos", flipSinToCos)
        freqShift = try r("freq_shift", freqShift)
        downBlockTypes = try r("down_block_types", downBlockTypes)
        midBlockType = try r.nullable("mid_block_type", midBlockType)
        upBlockTypes = try r("up_block_types", upBlockTypes)
        onlyCrossAttention = try r("only_cross_attention", onlyCrossAttention)
        blockOutChannels = try r("block_out_channels", blockOutChannels)
        layersPerBlock = try r("layers_per_block", layersPerBlock)
        downsamplePadding = try r("downsample_padding", downsamplePadding)
        midBlockScaleFactor = try r("mid_block_scale_factor", midBlockScaleFactor)
        actFn = try r("act_fn", actFn)
        normNumGroups = try r("norm_num_groups", normNumGroups)
        normEps = try r("norm_eps", normEps)
        crossAttentionDim = try r("cross_attention_dim", crossAttentionDim)
        transformerLayersPerBlock = try r("transformer_layers_per_block", transformerLayersPerBlock)
        attentionHeadDim = try r("attention_head_dim", attentionHeadDim)
        numAttentionHeads = try r.optional("num_attention_heads")
        // diffusers 0.42.1 refuses num_attention_heads for this model (its heads come from attention_head_dim).
        if numAttentionHeads != nil {
            throw ConfigValueError(key: "num_attention_heads", value: "set", allowed: ["null (diffusers takes the head count from attention_head_dim)"])
        }
        useLinearProjection = try r("use_linear_projection", useLinearProjection)
        classEmbedType = try r.optional("class_embed_type")
        numClassEmbeds = try r.optional("num_class_embeds")
        upcastAttention = try r("upcast_attention", upcastAttention)
        projectionClassEmbeddingsInputDim = try r.optional("projection_class_embeddings_input_dim")
        timeEmbeddingActFn = try r.optional("time_embedding_act_fn")

        // Keys only checked: refuse what this implementation does not compute, rather than computing something else.
        try r.require("resnet_time_scale_shift", String.self, in: [nil, "default"])
        try r.require("time_embedding_type", String.self, in: [nil, "positional"])
        try r.require("addition_embed_type", String.self, in: [nil])
        try r.require("encoder_hid_dim", Int.self, in: [nil])
        try r.require("class_embeddings_concat", Bool.self, in: [nil, false])
        try r.require("dual_cross_attention", Bool.self, in: [nil, false])
        try r.require("conv_in_kernel", Int.self, in: [nil, 3])
        try r.require("conv_out_kernel", Int.self, in: [nil, 3])
        try r.require("time_cond_proj_dim", Int.self, in: [nil])
        try r.require("timestep_post_act", String.self, in: [nil])
        try r.require("attention_type", String.self, in: [nil, "default"])
        try r.require("resnet_skip_time_act", Bool.self, in: [nil, false])
        try r.require("resnet_out_scale_factor", Float.self, in: [nil, 1])
        try r.require("cross_attention_norm", String.self, in: [nil])
        try r.require("mid_block_only_cross_attention", Bool.self, in: [nil, false])
        guard actFn == "silu" || actFn == "swish" else { throw ConfigValueError(key: "act_fn", value: actFn, allowed: ["silu"]) }
        guard [nil, "silu", "swish"].contains(timeEmbeddingActFn) else {
            throw ConfigValueError(key: "time_embedding_act_fn", value: timeEmbeddingActFn ?? "null", allowed: ["null", "silu"])
        }
        guard [nil, "projection", "timestep"].contains(classEmbedType) else {
            throw ConfigValueError(key: "class_embed_type", value: classEmbedType ?? "null", allowed: ["null", "projection", "timestep"])
        }
        if classEmbedType == "projection" && projectionClassEmbeddingsInputDim == nil {
            throw ConfigValueError(key: "projection_class_embeddings_input_dim", value: "null", allowed: ["an integer (required by class_embed_type projection)"])
        }
        if numClassEmbeds != nil && classEmbedType == nil {
            throw ConfigValueError(key: "num_class_embeds", value: "\(numClassEmbeds!)", allowed: ["null"])
        }
        for t in downBlockTypes where !["CrossAttnDownBlock2D", "DownBlock2D"].contains(t) {
            throw ConfigValueError(key: "down_block_types", value: t, allowed: ["CrossAttnDownBlock2D", "DownBlock2D"])
        }
        for t in upBlockTypes where !["CrossAttnUpBlock2D", "UpBlock2D"].contains(t) {
            throw ConfigValueError(key: "up_block_types", value: t, allowed: ["CrossAttnUpBlock2D", "UpBlock2D"])
        }
        guard [nil, "UNetMidBlock2DCrossAttn"].contains(midBlockType) else {
            throw ConfigValueError(key: "mid_block_type", value: midBlockType ?? "null", allowed: ["UNetMidBlock2DCrossAttn", "null"])
        }
        guard downBlockTypes.count == blockOutChannels.count, upBlockTypes.count == blockOutChannels.count else {
            throw ConfigValueError(key: "block_out_channels", value: "\(blockOutChannels)", allowed: ["one entry per down and up block"])
        }
    }
}

/// One down block: resnets (+ transformers), then an optional stride-2 conv. Returns the skip states.
struct DownBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2D]
    let downsampler: Downsample2D?

    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor) -> (Tensor, [Tensor]) {
        var h = x
        var skips: [Tensor] = []
        for (i, resnet) in resnets.enumerated() {
            h = resnet(h, temb: temb)
            if i < attentions.count { h = attentions[i](h, context: context) }
            skips.append(h)
        }
        if let downsampler { h = downsampler(h); skips.append(h) }
        return (h, skips)
    }
}

/// One up block: (concat skip, resnet, transformer) per layer, then an optional upsampler.
struct UpBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2D]
    let upsampler: Upsample2D?

    func callAsFunction(_ x: Tensor, skips: [Tensor], temb: Tensor, context: Tensor, upsampleSize: (Int, Int)?) -> Tensor {
        var h = x
        var remaining = skips
        for (i, resnet) in resnets.enumerated() {
            h = resnet(concat([h, remaining.removeLast()], axis: 1), temb: temb)
            if i < attentions.count { h = attentions[i](h, context: context) }
        }
        if let upsampler { h = upsampler(h, size: upsampleSize) }
        return h
    }
}

/// diffusers' UNet2DConditionModel: the latent denoiser, conditioned on text by cross-attention and
/// (Stable unCLIP) on a noise-augmented image embedding through the class-embedding projection.
public struct UNet2DConditionModel: Sendable, DiffusersFolderModel {
    public let config: UNet2DConditionConfig
    let timeEmbedding: TimestepEmbedding
    let classEmbedding: TimestepEmbedding?
    let convIn, convOut: Conv2d
    let downBlocks: [DownBlock]
    let midResnets: [ResnetBlock2D]
    let midAttentions: [Transformer2D]
    let upBlocks: [UpBlock]
    let convNormOut: GroupNorm

    public init(config c: UNet2DConditionConfig, weights w: WeightMap) throws {
        config = c
        let n = c.blockOutChannels.count
        let ch = c.blockOutChannels
        let timeDim = ch[0] * 4
        // diffusers' naming quirk: without num_attention_heads, attention_head_dim holds the head count.
        let heads = try (c.numAttentionHeads ?? c.attentionHeadDim).values(n, key: "num_attention_heads")
        let layers = try c.layersPerBlock.values(n, key: "layers_per_block")
        let crossDims = try c.crossAttentionDim.values(n, key: "cross_attention_dim")
        let tLayers = try c.transformerLayersPerBlock.values(n, key: "transformer_layers_per_block")
        let onlyCross = try c.onlyCrossAttention.values(n, key: "only_cross_attention")
        let groups = c.normNumGroups, eps = c.normEps

        timeEmbedding = try TimestepEmbedding(w, "time_embedding", in: ch[0], timeEmbedDim: timeDim, act: .silu)
        switch c.classEmbedType {
        case "projection":
            classEmbedding = try TimestepEmbedding(w, "class_embedding", in: c.projectionClassEmbeddingsInputDim!, timeEmbedDim: timeDim, act: .silu)
        case "timestep":
            classEmbedding = try TimestepEmbedding(w, "class_embedding", in: ch[0], timeEmbedDim: timeDim, act: .silu)
        default:
            classEmbedding = nil
        }
        convIn = try Conv2d(w, "conv_in", in: c.inChannels, out: ch[0], kernel: 3, padding: 1)

        func transformer(_ p: String, channels: Int, block i: Int, heads h: Int, crossDim: Int, layers tl: Int,
                         onlyCrossAttention: Bool? = nil) throws -> Transformer2D {
            guard channels % h == 0 else {
                throw WeightError.badConfig(path: "unet config", reason: "\(channels) channels are not divisible into \(h) attention heads (block \(i))")
            }
            return try Transformer2D(w, p, channels: channels, heads: h, headDim: channels / h, layers: tl, contextDim: crossDim,
                                     groups: groups, useLinearProjection: c.useLinearProjection,
                                     onlyCrossAttention: onlyCrossAttention ?? onlyCross[i])
        }

        var down: [DownBlock] = []
        var outC = ch[0]
        for (i, type) in c.downBlockTypes.enumerated() {
            let inC = outC
            outC = ch[i]
            let p = "down_blocks.\(i)"
            let resnets = try ResnetBlock2D.chain(w, p, count: layers[i], in: inC, out: outC, tembChannels: timeDim, groups: groups, eps: eps)
            let attns = type == "CrossAttnDownBlock2D" ? try (0..<layers[i]).map {
                try transformer("\(p).attentions.\($0)", channels: outC, block: i, heads: heads[i], crossDim: crossDims[i], layers: tLayers[i])
            } : []
            let ds = i == n - 1 ? nil : try Downsample2D(w, "\(p).downsamplers.0", channels: outC, padding: c.downsamplePadding)
            down.append(DownBlock(resnets: resnets, attentions: attns, downsampler: ds))
        }
        downBlocks = down

        if c.midBlockType != nil {
            let mc = ch[n - 1]
            midResnets = try (0..<2).map {
                try ResnetBlock2D(w, "mid_block.resnets.\($0)", in: mc, out: mc, tembChannels: timeDim, groups: groups, eps: eps,
                                  outputScaleFactor: c.midBlockScaleFactor)
            }
            // diffusers' mid block ignores only_cross_attention: it always self-attends first.
            midAttentions = [try transformer("mid_block.attentions.0", channels: mc, block: n - 1, heads: heads[n - 1],
                                             crossDim: crossDims[n - 1], layers: tLayers[n - 1], onlyCrossAttention: false)]
        } else {
            midResnets = []; midAttentions = []
        }

        let rch = Array(ch.reversed()), rheads = Array(heads.reversed()), rlayers = Array(layers.reversed())
        let rcross = Array(crossDims.reversed()), rtl = Array(tLayers.reversed())
        var up: [UpBlock] = []
        var upOut = rch[0]
        for (i, type) in c.upBlockTypes.enumerated() {
            let prevOut = upOut
            upOut = rch[i]
            let inC = rch[min(i + 1, n - 1)]
            let p = "up_blocks.\(i)"
            let count = rlayers[i] + 1
            let resnets = try (0..<count).map { j -> ResnetBlock2D in
                let skip = j == count - 1 ? inC : upOut
                let resIn = j == 0 ? prevOut : upOut
                return try ResnetBlock2D(w, "\(p).resnets.\(j)", in: resIn + skip, out: upOut, tembChannels: timeDim, groups: groups, eps: eps)
            }
            let attns = type == "CrossAttnUpBlock2D" ? try (0..<count).map {
                try transformer("\(p).attentions.\($0)", channels: upOut, block: n - 1 - i, heads: rheads[i], crossDim: rcross[i], layers: rtl[i])
            } : []
            let us = i == n - 1 ? nil : try Upsample2D(w, "\(p).upsamplers.0", channels: upOut)
            up.append(UpBlock(resnets: resnets, attentions: attns, upsampler: us))
        }
        upBlocks = up
        convNormOut = try GroupNorm(w, "conv_norm_out", channels: ch[0], groups: groups, eps: eps)
        convOut = try Conv2d(w, "conv_out", in: ch[0], out: c.outChannels, kernel: 3, padding: 1)
    }

    /// One noise (or v) prediction.
    /// - sample: latents [B, in_channels, H, W]; timestep: one value for the batch (fractional for Euler-type schedulers).
    /// - encoderHiddenStates: text states [B, S, cross_attention_dim]; classLabels: [B, projection dim] for
    ///   class_embed_type "projection" (Stable unCLIP's noise-augmented image embedding), or timesteps for "timestep".
    public func callAsFunction(sample: Tensor, timestep: Float, encoderHiddenStates: Tensor, classLabels: Tensor? = nil) throws -> Tensor {
        let c = config, b = sample.shape[0]
        guard sample.rank == 4, sample.shape[1] == c.inChannels else {
            throw ModelError.invalidInput("unet: sample \(sample.shape), expected [B, \(c.inChannels), H, W]")
        }
        guard encoderHiddenStates.rank == 3, encoderHiddenStates.shape[0] == b else {
            throw ModelError.invalidInput("unet: encoder_hidden_states \(encoderHiddenStates.shape) for a batch of \(b)")
        }
        let ch0 = c.blockOutChannels[0]
        var emb = timeEmbedding(timestepEmbedding(Array(repeating: timestep, count: b), dim: ch0,
                                                  flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift))
        if let classEmbedding {
            guard let classLabels else { throw ModelError.invalidInput("unet: class_labels are required when class_embed_type is set") }
            let input: Tensor
            if c.classEmbedType == "timestep" {
                input = timestepEmbedding(classLabels.scalars, dim: ch0, flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift)
            } else {
                guard classLabels.shape == [b, c.projectionClassEmbeddingsInputDim!] else {
                    throw ModelError.invalidInput("unet: class_labels \(classLabels.shape), expected [\(b), \(c.projectionClassEmbeddingsInputDim!)] (the noise-augmented image embedding)")
                }
                input = classLabels
            }
            emb = add(emb, classEmbedding(input))
        }

        var h = sample
        if c.centerInputSample {
            h = Tensor(uninitialized: sample.shape)
            for i in 0..<sample.count { h.pointer[i] = 2 * sample.pointer[i] - 1 }
        }
        h = convIn(h)
        var skips = [h]
        for block in downBlocks {
            let (out, s) = block(h, temb: emb, context: encoderHiddenStates)
            h = out
            skips += s
        }
        if !midResnets.isEmpty {
            h = midResnets[0](h, temb: emb)
            h = midAttentions[0](h, context: encoderHiddenStates)
            h = midResnets[1](h, temb: emb)
        }
        for (i, block) in upBlocks.enumerated() {
            let count = block.resnets.count
            let mine = Array(skips.suffix(count))
            skips.removeLast(count)
            // Odd latent sizes: upsample to the next skip's size, as diffusers' forward_upsample_size does.
            let size = (i < upBlocks.count - 1 && !skips.isEmpty) ? (skips.last!.shape[2], skips.last!.shape[3]) : nil
            h = block(h, skips: mine, temb: emb, context: encoderHiddenStates, upsampleSize: size)
        }
        return convOut(convNormOut(h, silu: true))
    }
}
