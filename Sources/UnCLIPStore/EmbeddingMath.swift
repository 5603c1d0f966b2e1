import Foundation
import UnCLIPTensor

/// Vector operations on CLIP embeddings (whole vectors, in double precision, returned as float32).
public enum EmbeddingMath {
    /// Euclidean norm.
    public static func norm(_ v: [Float]) -> Double {
        var s = 0.0
        for x in v { s += Double(x) * Double(x) }
        return s.squareRoot()
    }

    /// Cosine similarity; 0 when either vector is zero.
    public static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "cosine of vectors of \(a.count) and \(b.count) values")
        var dot = 0.0, na = 0.0, nb = 0.0
        for i in a.indices {
            let x = Double(a[i]), y = Double(b[i])
            dot += x * y; na += x * x; nb += y * y
        }
        return na == 0 || nb == 0 ? 0 : dot / (na * nb).squareRoot()
    }

    /// The angle between two vectors, in radians.
    public static func angle(_ a: [Float], _ b: [Float]) -> Double { acos(min(max(cosine(a, b), -1), 1)) }

    /// Spherical interpolation over the whole vector: the direction moves along the great circle from `a`'s
    /// direction to `b`'s at constant angular speed (`t` · Ω), and the length goes linearly from |a| to |b|.
    /// t = 0 and t = 1 return `a` and `b` exactly. CLIP image embeddings are not unit vectors; carrying the
    /// length separately keeps every frame at a length the decoder has seen (for unit inputs this is plain slerp).
    public static func slerp(_ a: [Float], _ b: [Float], t: Double) throws -> [Float] {
        switch SphericalInterpolation.slerp(a, b, t: t) {
        case let .success(v): return v
        case let .failure(.differentSizes(x, y)):
            throw StoreError.invalid("cannot interpolate embeddings of \(x) and \(y) values (different CLIP models)")
        case .failure(.zeroVector): throw StoreError.invalid("cannot interpolate a zero embedding")
        case .failure(.opposite):
            throw StoreError.invalid("the embeddings point in opposite directions; the great circle between them is not defined")
        }
    }

    /// `a` scaled to unit length.
    public static func normalized(_ a: [Float]) throws -> [Float] {
        let n = norm(a)
        guard n > 0 else { throw StoreError.invalid("cannot normalise a zero vector") }
        return a.map { Float(Double($0) / n) }
    }

    /// DALL·E 2's text diff: the direction d = normalize(toward − from) of two CLIP text embeddings, and the
    /// image embedding rotated toward it by `amount` (θ) with slerp. The image embedding's length is kept
    /// (d is scaled to it first), so θ only turns the embedding; θ = 0 returns the image embedding itself.
    public static func textDiff(image: [Float], toward: [Float], from: [Float], amount: Double) throws -> [Float] {
        guard image.count == toward.count, toward.count == from.count else {
            throw StoreError.invalid("the text embeddings have \(toward.count) values but the image embedding has \(image.count): the prior's text encoder and the decoder's image encoder are different CLIP models")
        }
        var diff = [Float](repeating: 0, count: toward.count)
        for i in diff.indices { diff[i] = toward[i] - from[i] }
        guard norm(diff) > 0 else { throw StoreError.invalid("the two texts have the same CLIP embedding; there is no direction to move in") }
        let d = try normalized(diff)
        let scale = norm(image)
        return try slerp(image, d.map { Float(Double($0) * scale) }, t: amount)
    }
}
