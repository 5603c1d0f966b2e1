import UnCLIPTensor
import UnCLIPWeights

/// diffusers' `ResnetBlock2D` ("default" time embedding): GN-SiLU-conv, + time projection, GN-SiLU-conv, + shortcut.
public struct ResnetBlock2D: Sendable {
    let norm1, norm2: GroupNorm
    let conv1, conv2: Conv2d
    let timeEmbProj: Linear?
    let convShortcut: Conv2d?
    let outputScaleFactor: Float

    public init(_ w: WeightMap, _ p: String, in inC: Int, out outC: Int, tembChannels: Int?, groups: Int, eps: Float,
                outputScaleFactor: Float = 1) throws {
        norm1 = try GroupNorm(w, p + ".norm1", channels: inC, groups: groups, eps: eps)
        conv1 = try Conv2d(w, p + ".conv1", in: inC, out: outC, kernel: 3, padding: 1)
        timeEmbProj = try tembChannels.map { try Linear(w, p + ".time_emb_proj", in: $0, out: outC) }
        norm2 = try GroupNorm(w, p + ".norm2", channels: outC, groups: groups, eps: eps)
        conv2 = try Conv2d(w, p + ".conv2", in: outC, out: outC, kernel: 3, padding: 1)
        convShortcut = inC == outC ? nil : try Conv2d(w, p + ".conv_shortcut", in: inC, out: outC, kernel: 1)
        self.outputScaleFactor = outputScaleFactor
    }

    /// The `count` resnets of a diffusers down block (or VAE decoder up block) at `prefix`.resnets.N: the first
    /// maps `inC` to `outC` channels, the others keep `outC`.
    static func chain(_ w: WeightMap, _ prefix: String, count: Int, in inC: Int, out outC: Int, tembChannels: Int?,
                      groups: Int, eps: Float) throws -> [ResnetBlock2D] {
        try (0..<count).map {
            try ResnetBlock2D(w, "\(prefix).resnets.\($0)", in: $0 == 0 ? inC : outC, out: outC, tembChannels: tembChannels,
                              groups: groups, eps: eps)
        }
    }

    /// x [B, C, H, W]; temb [B, T] (already the UNet's embedding, before SiLU).
    public func callAsFunction(_ x: Tensor, temb: Tensor?) -> Tensor {
        var h = conv1(norm1(x, silu: true))
        if let timeEmbProj, let temb {
            let t = timeEmbProj(silu(temb))     // [B, out]
            h = addPerSampleChannel(h, t)
        }
        h = conv2(norm2(h, silu: true))
        let skip = convShortcut.map { $0(x) } ?? x
        let y = add(skip, h)
        return outputScaleFactor == 1 ? y : scale(y, 1 / outputScaleFactor)
    }
}

/// x [B, C, H, W] + v[b, c] broadcast over H, W.
func addPerSampleChannel(_ x: Tensor, _ v: Tensor) -> Tensor {
    let (b, c) = (x.shape[0], x.shape[1]), spatial = x.count / (b * c)
    let y = Tensor(uninitialized: x.shape)
    let px = x.pointer, py = y.pointer, pv = v.pointer
    parallelChunks(b * c, minimumPerChunk: max(1, (1 << 15) / max(spatial, 1))) { r in
        for bc in r {
            let add = pv[bc], base = bc * spatial
            for i in 0..<spatial { py[base + i] = px[base + i] + add }
        }
    }
    return y
}

/// diffusers' `Downsample2D` with a convolution (stride 2). padding 0 pads right/bottom by one first, as diffusers does.
public struct Downsample2D: Sendable {
    let conv: Conv2d
    let padding: Int

    public init(_ w: WeightMap, _ p: String, channels: Int, out: Int? = nil, padding: Int) throws {
        conv = try Conv2d(w, p + ".conv", in: channels, out: out ?? channels, kernel: 3, stride: 2, padding: padding)
        self.padding = padding
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        conv(padding == 0 ? pad2d(x, top: 0, bottom: 1, left: 0, right: 1) : x)
    }
}

/// diffusers' `Upsample2D` with a convolution: nearest ×2 (or to an explicit size), then 3×3 conv.
public struct Upsample2D: Sendable {
    let conv: Conv2d

    public init(_ w: WeightMap, _ p: String, channels: Int, out: Int? = nil) throws {
        conv = try Conv2d(w, p + ".conv", in: channels, out: out ?? channels, kernel: 3, padding: 1)
    }

    public func callAsFunction(_ x: Tensor, size: (Int, Int)? = nil) -> Tensor {
        let (h, w) = size ?? (2 * x.shape[2], 2 * x.shape[3])
        return conv(upsampleNearest(x, height: h, width: w))
    }
}
