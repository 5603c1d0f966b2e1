import UnCLIPRandom
import UnCLIPTensor

// Element-wise kernels for the scheduler updates. Each one rounds to float32 after every operation in
// the order torch evaluates the diffusers expression it stands for, so results match to the last bit
// where the scalar coefficients do. Latents are small (a few 10k values), so plain loops suffice.

/// Σ c_k · t_k, summed left to right, each product rounded to float32: torch's `c0*t0 + c1*t1 + ...`
/// (a subtraction `- c*t` is the term `(-c, t)`, which rounds identically).
func linearCombination(_ terms: [(Float, Tensor)]) -> Tensor {
    precondition(!terms.isEmpty)
    let n = terms[0].1.count
    let out = Tensor(uninitialized: terms[0].1.shape)
    let o = out.pointer
    let (c0, t0) = terms[0]
    let p0 = t0.pointer
    // A coefficient of exactly 1 is torch's bare `t` (no multiply); 1 * x == x, so no special case.
    for i in 0..<n { o[i] = c0 * p0[i] }
    for (c, t) in terms.dropFirst() {
        let p = t.pointer
        for i in 0..<n { o[i] = o[i] + c * p[i] }
    }
    return out
}

/// (x - c·y) / d
func subtractScaledDivide(_ x: Tensor, _ c: Float, _ y: Tensor, _ d: Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let o = out.pointer, px = x.pointer, py = y.pointer
    for i in 0..<x.count { o[i] = (px[i] - c * py[i]) / d }
    return out
}

/// x / d
func divide(_ x: Tensor, _ d: Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let o = out.pointer, px = x.pointer
    for i in 0..<x.count { o[i] = px[i] / d }
    return out
}

/// c · x
func scaled(_ x: Tensor, _ c: Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let o = out.pointer, px = x.pointer
    for i in 0..<x.count { o[i] = c * px[i] }
    return out
}

/// y · c + x / d: the v-prediction x0 of the sigma schedulers, `model_output * c + sample / d`.
func scaledPlusDivided(_ y: Tensor, _ c: Float, _ x: Tensor, _ d: Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let o = out.pointer, px = x.pointer, py = y.pointer
    for i in 0..<x.count { o[i] = py[i] * c + px[i] / d }
    return out
}

/// The Euler update `x + ((x - x0) / sigma) * dt`, and the derivative it uses.
func eulerUpdate(sample x: Tensor, denoised: Tensor, sigma: Float, dt: Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let o = out.pointer, px = x.pointer, pd = denoised.pointer
    for i in 0..<x.count {
        let derivative = (px[i] - pd[i]) / sigma
        o[i] = px[i] + derivative * dt
    }
    return out
}

/// (x - x0) / sigma, the derivative the LMS scheduler keeps.
func derivative(sample x: Tensor, denoised: Tensor, sigma: Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let o = out.pointer, px = x.pointer, pd = denoised.pointer
    for i in 0..<x.count { o[i] = (px[i] - pd[i]) / sigma }
    return out
}

/// x.clamp(lo, hi)
func clamped(_ x: Tensor, _ lo: Float, _ hi: Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let o = out.pointer, px = x.pointer
    // torch.clamp propagates NaN; min/max would drop it.
    for i in 0..<x.count { let v = px[i]; o[i] = v.isNaN ? v : (v < lo ? lo : (v > hi ? hi : v)) }
    return out
}

/// Splits `[B, 2C, ...]` along dim 1 into two `[B, C, ...]` tensors (torch.split(t, C, dim=1)).
func splitChannels(_ t: Tensor, first channels: Int) -> (Tensor, Tensor) {
    let batch = t.shape[0], total = t.shape[1]
    let inner = t.shape.dropFirst(2).reduce(1, *)
    var shapeA = t.shape, shapeB = t.shape
    shapeA[1] = channels
    shapeB[1] = total - channels
    let a = Tensor(uninitialized: shapeA), b = Tensor(uninitialized: shapeB)
    for n in 0..<batch {
        let src = t.pointer + n * total * inner
        (a.pointer + n * channels * inner).update(from: src, count: channels * inner)
        (b.pointer + n * (total - channels) * inner).update(from: src + channels * inner,
                                                             count: (total - channels) * inner)
    }
    return (a, b)
}

/// Dynamic thresholding (Imagen): per batch item, s = clamp(quantile(|x|, ratio), 1, maxValue),
/// then clamp(x, -s, s) / s. The quantile is torch.quantile's linear interpolation in float32.
func dynamicThreshold(_ x: Tensor, ratio: Double, maxValue: Double) -> Tensor {
    let batch = x.shape[0]
    let per = x.count / max(batch, 1)
    let out = Tensor(uninitialized: x.shape)
    var sorted = [Float](repeating: 0, count: per)
    let rank = Float(ratio) * Float(per - 1)
    let below = Int(rank), above = Int(rank.rounded(.up))
    let weight = rank - Float(below)
    for n in 0..<batch {
        let src = x.pointer + n * per, dst = out.pointer + n * per
        for i in 0..<per { sorted[i] = abs(src[i]) }
        sorted.sort()
        let lo = sorted[below], hi = sorted[above]
        // at::lerp: start + w * (end - start) for |w| < 0.5, else end - (end - start) * (1 - w).
        var s = weight < 0.5 ? lo + weight * (hi - lo) : hi - (hi - lo) * (1 - weight)
        s = min(max(s, 1), Float(maxValue))
        for i in 0..<per {
            let v = src[i]
            dst[i] = (v < -s ? -s : (v > s ? s : v)) / s
        }
    }
    return out
}

/// One standard-normal tensor of `shape`, drawn like diffusers' randn_tensor (one torch.randn call).
func drawNoise(_ generator: RandomSource?, shape: [Int], scheduler: String) throws -> Tensor {
    guard let generator else { throw SchedulerError.generatorRequired(scheduler: scheduler) }
    let count = shape.reduce(1, *)
    let values = try generator.randn(count: count)
    guard values.count == count else {
        throw SchedulerError.invalidState(scheduler: scheduler,
                                          reason: "generator returned \(values.count) values, expected \(count)")
    }
    return Tensor(shape: shape, data: values)
}
