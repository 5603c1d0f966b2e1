import UnCLIPTensor

/// Rows of `width` values of a flat integer tensor (token ids, masks).
public func rows(_ flat: [Int], width: Int) -> [[Int]] {
    stride(from: 0, to: flat.count, by: width).map { Array(flat[$0..<min($0 + width, flat.count)]) }
}

extension Tensor {
    /// Deterministic pseudo-random values in [-1, 1) from a 64-bit LCG: varied inputs for checks against a
    /// definition, the same on every machine.
    public static func pseudoRandom(_ shape: [Int], seed: UInt64 = 1) -> Tensor {
        var s = seed &* 6364136223846793005 &+ 1442695040888963407
        let data = (0..<shape.reduce(1, *)).map { _ -> Float in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2_000_000) / 1_000_000 - 1
        }
        return Tensor(shape: shape, data: data)
    }
}
