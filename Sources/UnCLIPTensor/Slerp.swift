import Foundation

/// Spherical interpolation of two embeddings over the whole vector: the direction moves along the great
/// circle from `a`'s direction to `b`'s at constant angular speed (t · Ω) and the length goes linearly from
/// |a| to |b| (CLIP image embeddings are not unit vectors; every point keeps a length the decoder has seen).
/// t = 0 and 1 return `a` and `b` exactly. Computed in double precision.
public enum SphericalInterpolation {
    public enum Failure: Error, Equatable {
        case differentSizes(Int, Int)
        case zeroVector
        /// The vectors point in opposite directions: no unique great circle.
        case opposite
    }

    public static func slerp(_ a: [Float], _ b: [Float], t: Double) -> Result<[Float], Failure> {
        guard a.count == b.count else { return .failure(.differentSizes(a.count, b.count)) }
        if t == 0 { return .success(a) }
        if t == 1 { return .success(b) }
        var dot = 0.0, aa = 0.0, bb = 0.0
        for i in a.indices {
            let x = Double(a[i]), y = Double(b[i])
            dot += x * y; aa += x * x; bb += y * y
        }
        let na = aa.squareRoot(), nb = bb.squareRoot()
        guard na > 0, nb > 0 else { return .failure(.zeroVector) }
        let omega = acos(min(max(dot / (na * nb), -1), 1))
        guard Double.pi - omega > 1e-6 else { return .failure(.opposite) }
        let length = (1 - t) * na + t * nb
        if omega < 1e-7 { return .success(a.map { Float(Double($0) / na * length) }) }  // same direction
        let wa = sin((1 - t) * omega) / sin(omega) / na * length
        let wb = sin(t * omega) / sin(omega) / nb * length
        return .success(a.indices.map { Float(wa * Double(a[$0]) + wb * Double(b[$0])) })
    }
}
