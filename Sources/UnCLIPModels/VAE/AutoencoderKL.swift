import Foundation
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' AutoencoderKL config (vae/config.json).
public struct AutoencoderKLConfig: Decodable, Sendable {
    public var inChannels = 3
    public var outChannels = 3
    public var downBlockTypes = ["DownEncoderBlock2D"]
    public var upBlockTypes = ["UpDecoderBlock2D"]
    public var blockOutChannels = [64]
    public var layersPerBlock = 1
    public var actFn = "silu"
    public var latentChannels = 4
    public var normNumGroups = 32
    public var sampleSize: Int? = nil
    public var scalingFactor: Float = 0.18215
    public var shiftFactor: Float? = nil
    public var forceUpcast = true
    public var useQuantConv = true
    public var usePostQuantConv = true
    public var midBlockAddAttention = true

    public init() {}

    public init(from decoder: Decoder) throws {
        let r = try ConfigReader(decoder)
        inChannels = try r("in_channels", inChannels)
        outChannels = try r("out_channels", outChannels)
        downBlockTypes = try r("down_block_types", downBlockTypes)
        upBlockTypes = try r("up_block_types", upBlockTypes)
        blockOutChannels = try r("block_out_channels", blockOutChannels)
        layersPerBlock = try r("layers_per_block", layersPerBlock)
        actFn = try r("act_fn", actFn)
        latentChannels = try r("latent_channels", latentChannels)
        normNumGroups = try r("norm_num_groups", normNumGroups)
        sampleSize = try r.optional("sample_size")
        scalingFactor = try r("scaling_factor", scalingFactor)
        shiftFactor = try r.optional("shift_factor")
        forceUpcast = try r("force_upcast", forceUpcast)
        useQuantConv = try r("use_quant_conv", useQuantConv)
        usePostQuantConv = try r("use_post_quant_conv", usePostQuantConv)
        midBlockAddAttention = try r("mid_block_add_attention", midBlockAddAttention)
        guard actFn == "silu" || actFn == "swish" else { throw ConfigValueError(key: "act_fn", value: actFn, allowed: ["silu"]) }
        for t in downBlockTypes where t != "DownEncoderBlock2D" {
            throw ConfigValueError(key: "down_block_types", value: t, allowed: ["DownEncoderBlock2D"])
        }
        for t in upBlockTypes where t != "UpDecoderBlock2D" {
            throw ConfigValueError(key: "up_block_types", value: t, allowed: ["UpDecoderBlock2D"])
        }
        guard downBlockTypes.count == blockOutChannels.count, upBlockTypes.count == blockOutChannels.count else {
            throw ConfigValueError(key: "block_out_channels", value: "\(blockOutChannels)", allowed: ["one entry per block"])
        }
    }
}

/// The VAE mid-block's single-head spatial self-attention (GroupNorm, q/k/v over H·W tokens, residual).
struct VAEAttention: Sendable {
    let groupNorm: GroupNorm
    let toQ, toK, toV, toOut: Linear

    init(_ w: WeightMap, _ p: String, channels: Int, groups: Int) throws {
        groupNorm = try GroupNorm(w, p + ".group_norm", channels: channels, groups: groups, eps: 1e-6)
        toQ = try Linear(w, p + ".to_q", in: channels, out: channels)
        toK = try Linear(w, p + ".to_k", in: channels, out: channels)
        toV = try Linear(w, p + ".to_v", in: channels, out: channels)
        toOut = try Linear(w, p + ".to_out.0", in: channels, out: channels)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let t = permute(groupNorm(x).reshaped([b, c, h * w]), [0, 2, 1])
        let a = toOut(attention(query: toQ(t), key: toK(t), value: toV(t), heads: 1, precision: toQ.packed != nil ? .bf16 : .fp32))
        return add(permute(a, [0, 2, 1]).reshaped([b, c, h, w]), x)
    }
}

/// UNetMidBlock2D without time embedding: resnet, attention, resnet.
struct VAEMidBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attention: VAEAttention?

    init(_ w: WeightMap, _ p: String, channels: Int, groups: Int, addAttention: Bool) throws {
        resnets = try (0..<2).map { try ResnetBlock2D(w, "\(p).resnets.\($0)", in: channels, out: channels, tembChannels: nil, groups: groups, eps: 1e-6) }
        attention = addAttention ? try VAEAttention(w, p + ".attentions.0", channels: channels, groups: groups) : nil
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = resnets[0](x, temb: nil)
        if let attention { h = attention(h) }
        return resnets[1](h, temb: nil)
    }
}

/// diffusers' AutoencoderKL: the encoder to the latent mean, and the decoder back to pixels in [-1, 1].
public struct AutoencoderKL: Sendable, DiffusersFolderModel {
    public let config: AutoencoderKLConfig
    // Encoder
    let encConvIn, encConvOut: Conv2d
    let encDown: [(resnets: [ResnetBlock2D], down: Downsample2D?)]
    let encMid: VAEMidBlock
    let encNormOut: GroupNorm
    let quantConv: Conv2d?
    // Decoder
    let postQuantConv: Conv2d?
    let decConvIn, decConvOut: Conv2d
    let decMid: VAEMidBlock
    let decUp: [(resnets: [ResnetBlock2D], up: Upsample2D?)]
    let decNormOut: GroupNorm

    public init(config c: AutoencoderKLConfig, weights w: WeightMap) throws {
        config = c
        // Older checkpoints name the mid-block attention query/key/value/proj_attn.
        w.infixAliases = [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")]
        let ch = c.blockOutChannels, n = ch.count, g = c.normNumGroups, lat = c.latentChannels

        encConvIn = try Conv2d(w, "encoder.conv_in", in: c.inChannels, out: ch[0], kernel: 3, padding: 1)
        var down: [(resnets: [ResnetBlock2D], down: Downsample2D?)] = []
        var outC = ch[0]
        for i in 0..<n {
            let inC = outC
            outC = ch[i]
            let p = "encoder.down_blocks.\(i)"
            let resnets = try ResnetBlock2D.chain(w, p, count: c.layersPerBlock, in: inC, out: outC, tembChannels: nil, groups: g, eps: 1e-6)
            down.append((resnets, i == n - 1 ? nil : try Downsample2D(w, "\(p).downsamplers.0", channels: outC, padding: 0)))
        }
        encDown = down
        encMid = try VAEMidBlock(w, "encoder.mid_block", channels: ch[n - 1], groups: g, addAttention: c.midBlockAddAttention)
        encNormOut = try GroupNorm(w, "encoder.conv_norm_out", channels: ch[n - 1], groups: g, eps: 1e-6)
        encConvOut = try Conv2d(w, "encoder.conv_out", in: ch[n - 1], out: 2 * lat, kernel: 3, padding: 1)
        quantConv = c.useQuantConv ? try Conv2d(w, "quant_conv", in: 2 * lat, out: 2 * lat, kernel: 1) : nil

        postQuantConv = c.usePostQuantConv ? try Conv2d(w, "post_quant_conv", in: lat, out: lat, kernel: 1) : nil
        decConvIn = try Conv2d(w, "decoder.conv_in", in: lat, out: ch[n - 1], kernel: 3, padding: 1)
        decMid = try VAEMidBlock(w, "decoder.mid_block", channels: ch[n - 1], groups: g, addAttention: c.midBlockAddAttention)
        let rch = Array(ch.reversed())
        var up: [(resnets: [ResnetBlock2D], up: Upsample2D?)] = []
        var upOut = rch[0]
        for i in 0..<n {
            let prev = upOut
            upOut = rch[i]
            let p = "decoder.up_blocks.\(i)"
            let resnets = try ResnetBlock2D.chain(w, p, count: c.layersPerBlock + 1, in: prev, out: upOut, tembChannels: nil,
                                                  groups: g, eps: 1e-6)
            up.append((resnets, i == n - 1 ? nil : try Upsample2D(w, "\(p).upsamplers.0", channels: upOut)))
        }
        decUp = up
        decNormOut = try GroupNorm(w, "decoder.conv_norm_out", channels: ch[0], groups: g, eps: 1e-6)
        decConvOut = try Conv2d(w, "decoder.conv_out", in: ch[0], out: c.outChannels, kernel: 3, padding: 1)
    }

    /// Images [B, 3, H, W] in [-1, 1] → the latent distribution's mean [B, latent, H/f, W/f] (unscaled).
    public func encodeMean(_ x: Tensor) throws -> Tensor {
        try encodeDistribution(x).mean
    }

    /// The diagonal Gaussian the encoder predicts: mean and log-variance (clamped to [-30, 20] as diffusers does).
    public func encodeDistribution(_ x: Tensor) throws -> (mean: Tensor, logvar: Tensor) {
        guard x.rank == 4, x.shape[1] == config.inChannels else {
            throw ModelError.invalidInput("vae: image \(x.shape), expected [B, \(config.inChannels), H, W]")
        }
        var h = encConvIn(x)
        for block in encDown {
            for r in block.resnets { h = r(h, temb: nil) }
            if let d = block.down { h = d(h) }
        }
        h = encConvOut(encNormOut(encMid(h), silu: true))
        if let quantConv { h = quantConv(h) }
        let lat = config.latentChannels
        let logvar = slice(h, axis: 1, lat..<(2 * lat))
        for i in 0..<logvar.count { logvar.pointer[i] = min(max(logvar.pointer[i], -30), 20) }
        return (slice(h, axis: 1, 0..<lat), logvar)
    }

    /// Latents [B, latent, h, w] (already divided by scaling_factor) → images [B, 3, H, W], about [-1, 1].
    public func decode(_ z: Tensor) throws -> Tensor {
        guard z.rank == 4, z.shape[1] == config.latentChannels else {
            throw ModelError.invalidInput("vae: latents \(z.shape), expected [B, \(config.latentChannels), h, w]")
        }
        var h = decConvIn(postQuantConv.map { $0(z) } ?? z)
        h = decMid(h)
        for block in decUp {
            for r in block.resnets { h = r(h, temb: nil) }
            if let u = block.up { h = u(h) }
        }
        return decConvOut(decNormOut(h, silu: true))
    }
}
