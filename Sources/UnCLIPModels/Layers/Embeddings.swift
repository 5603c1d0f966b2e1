import Foundation
import UnCLIPTensor
import UnCLIPWeights

/// diffusers' `get_timestep_embedding`: sinusoidal features of (possibly fractional) timesteps, [N, dim].
/// Float32 products as torch computes them, so large timesteps round the same way.
public func timestepEmbedding(_ timesteps: [Float], dim: Int, flipSinToCos: Bool, downscaleFreqShift: Float,
                              scale: Float = 1, maxPeriod: Float = 10000) -> Tensor {
    let half = dim / 2
    let logMax = Float(log(Double(maxPeriod)))
    let freqs: [Float] = (0..<half).map { i in
        let exponent = -logMax * Float(i) / (Float(half) - downscaleFreqShift)
        return Float(exp(Double(exponent)))
    }
    let out = Tensor(zeros: [timesteps.count, dim])
    for (n, t) in timesteps.enumerated() {
        let row = out.pointer + n * dim
        for i in 0..<half {
            let arg = scale * (t * freqs[i])
            let s = Float(sin(Double(arg))), c = Float(cos(Double(arg)))
            row[flipSinToCos ? half + i : i] = s
            row[flipSinToCos ? i : half + i] = c
        }
    }
    return out
}

/// diffusers' `TimestepEmbedding`: linear_1 → activation → linear_2.
public struct TimestepEmbedding: Sendable {
    let linear1, linear2: Linear
    let act: Activation

    public init(_ w: WeightMap, _ prefix: String, in inDim: Int, timeEmbedDim: Int, out outDim: Int? = nil, act: Activation) throws {
        linear1 = try Linear(w, prefix + ".linear_1", in: inDim, out: timeEmbedDim)
        linear2 = try Linear(w, prefix + ".linear_2", in: timeEmbedDim, out: outDim ?? timeEmbedDim)
        self.act = act
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear2(act(linear1(x))) }
}
