#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Invalid sizes or ranges passed to a random generator.
public enum RandomError: Error, Equatable, CustomStringConvertible {
    /// An element count below zero.
    case negativeCount(operation: String, count: Int)
    /// A shape with a negative dimension, or whose element count overflows Int.
    case invalidShape(operation: String, shape: [Int])
    /// randint with `low >= high` (the range is half-open, so it would be empty).
    case emptyRange(low: Int64, high: Int64)

    public var description: String {
        switch self {
        case let .negativeCount(operation, count):
            return "\(operation): element count must be >= 0, got \(count)"
        case let .invalidShape(operation, shape):
            return "\(operation): invalid shape \(shape) (negative dimension or element count overflows Int)"
        case let .emptyRange(low, high):
            return "randint: expects low < high, got low=\(low) high=\(high)"
        }
    }
}

/// A source of float32 standard-normal noise, so pipelines can take any generator.
public protocol RandomSource: AnyObject {
    /// `count` samples of N(0, 1), in the order torch.randn lays out a tensor of that many elements.
    func randn(count: Int) throws -> [Float]
}

/// torch's CPU generator: after `torch.Generator().manual_seed(seed)`, torch.randn / rand / randint
/// (float32, float64 randn, int64 randint) give exactly these values, call after call.
///
/// What torch does, and this class repeats (torch 2.13, ATen/native/cpu/DistributionTemplates.h):
/// - randn of n >= 16 elements: n uniforms (24-bit floats), Box–Muller on each block of 16 in float32
///   with Cephes log/sincos; if n % 16 != 0 the last 16 outputs are redrawn from 16 fresh uniforms.
/// - randn of n < 16 elements: one value at a time from a double-precision Box–Muller (53-bit
///   uniforms, libm log1p/sin/cos) whose second output is cached in the generator for the next call.
///   The n >= 16 path neither reads nor clears that cache.
/// - rand: 24-bit uniforms; randint: `word % (high - low) + low` with a 32-bit word when
///   `high - low < 2^28`, else a 64-bit word.
public final class TorchGenerator: RandomSource {
    private let engine: MT19937
    /// The cached sine output of the scalar normal path (torch's next_double_normal_sample).
    private var cachedNormal: Double?

    /// The seed last given to `init` or `manualSeed` (all 64 bits, though only the low 32 seed the engine).
    public private(set) var initialSeed: UInt64

    /// Equivalent to `torch.Generator().manual_seed(seed)`.
    public init(seed: UInt64) {
        engine = MT19937(seed: seed)
        initialSeed = seed
    }

    /// Reseeds in place like `generator.manual_seed(seed)`, dropping any cached normal sample.
    public func manualSeed(_ seed: UInt64) {
        engine.reseed(seed)
        cachedNormal = nil
        initialSeed = seed
    }

    // MARK: randn

    /// `torch.randn(count, generator=g)` as float32 (protocol form).
    public func randn(count: Int) throws -> [Float] {
        try randn(count)
    }

    /// `torch.randn(count, generator=g)` as float32.
    public func randn(_ count: Int) throws -> [Float] {
        try Self.filled(count, operation: "randn") { randn(into: $0) }
    }

    /// `torch.randn(shape, generator=g)` as float32, flattened in row-major order.
    public func randn(shape: [Int]) throws -> [Float] {
        try randn(Self.elementCount(shape, operation: "randn"))
    }

    /// Fills `buffer` exactly as `torch.randn(buffer.count, generator=g)` would (float32).
    public func randn(into buffer: UnsafeMutableBufferPointer<Float>) {
        normalFill(buffer, scalar: { Float($0) }, uniforms: { self.fillUniform($0, count: $1) }, boxMuller: boxMuller16)
    }

    /// `torch.randn(count, generator=g, dtype=torch.float64)`.
    public func randnDouble(_ count: Int) throws -> [Double] {
        try Self.filled(count, operation: "randnDouble") { randnDouble(into: $0) }
    }

    /// Fills `buffer` exactly as `torch.randn(buffer.count, generator=g, dtype=torch.float64)` would.
    public func randnDouble(into buffer: UnsafeMutableBufferPointer<Double>) {
        normalFill(buffer, scalar: { $0 }, uniforms: { data, count in for i in 0..<count { data[i] = self.nextUniformDouble() } },
                   boxMuller: boxMuller16)
    }

    // MARK: rand

    /// `torch.rand(count, generator=g)` as float32, values in [0, 1).
    public func rand(_ count: Int) throws -> [Float] {
        try Self.filled(count, operation: "rand") { rand(into: $0) }
    }

    /// `torch.rand(shape, generator=g)` as float32, flattened in row-major order.
    public func rand(shape: [Int]) throws -> [Float] {
        try rand(Self.elementCount(shape, operation: "rand"))
    }

    /// Fills `buffer` exactly as `torch.rand(buffer.count, generator=g)` would (float32).
    public func rand(into buffer: UnsafeMutableBufferPointer<Float>) {
        guard let data = buffer.baseAddress else { return }
        // uniform_(0, 1) computes x * (1 - 0) + 0, which is x; its clamp of x == 1 never fires for 24-bit x.
        fillUniform(data, count: buffer.count)
    }

    // MARK: randint

    /// `torch.randint(low, high, (count,), generator=g)` (int64, high exclusive).
    public func randint(low: Int64, high: Int64, count: Int) throws -> [Int64] {
        try Self.filled(count, operation: "randint") { try randint(low: low, high: high, into: $0) }
    }

    /// `torch.randint(low, high, shape, generator=g)` (int64), flattened in row-major order.
    public func randint(low: Int64, high: Int64, shape: [Int]) throws -> [Int64] {
        try randint(low: low, high: high, count: Self.elementCount(shape, operation: "randint"))
    }

    /// Fills `buffer` exactly as `torch.randint(low, high, (buffer.count,), generator=g)` would.
    public func randint(low: Int64, high: Int64, into buffer: UnsafeMutableBufferPointer<Int64>) throws {
        guard low < high else { throw RandomError.emptyRange(low: low, high: high) }
        guard let data = buffer.baseAddress else { return }
        // Two's-complement arithmetic as torch's uint64 casts: range fits in UInt64 even for
        // low = Int64.min, and adding `base` wraps back into [low, high).
        let range = UInt64(bitPattern: high) &- UInt64(bitPattern: low)
        let base = UInt64(bitPattern: low)
        if range >= 1 << 28 {
            for i in 0..<buffer.count { data[i] = Int64(bitPattern: engine.next64() % range &+ base) }
        } else {
            for i in 0..<buffer.count { data[i] = Int64(bitPattern: UInt64(engine.next()) % range &+ base) }
        }
    }

    // MARK: internals

    /// torch's normal fill, the same for float32 and float64 (only the uniforms and the Box–Muller block differ):
    /// below 16 values the scalar double path one at a time; else uniforms for every value, Box–Muller on each
    /// block of 16, and a short tail redone on the last (overlapping) 16 from fresh uniforms, as torch does
    /// instead of handling a short block.
    @inline(__always)
    private func normalFill<T>(_ buffer: UnsafeMutableBufferPointer<T>, scalar: (Double) -> T,
                               uniforms: (UnsafeMutablePointer<T>, Int) -> Void,
                               boxMuller: (UnsafeMutablePointer<T>) -> Void) {
        guard let data = buffer.baseAddress else { return }
        let count = buffer.count
        if count < 16 {
            for i in 0..<count { data[i] = scalar(nextScalarNormal()) }
            return
        }
        uniforms(data, count)
        var start = 0
        while start + 16 <= count {
            boxMuller(data + start)
            start += 16
        }
        if count % 16 != 0 {
            let tail = data + (count - 16)
            uniforms(tail, 16)
            boxMuller(tail)
        }
    }

    /// A new array of `count` values written by `fill`, refusing a negative count.
    private static func filled<T>(_ count: Int, operation: String,
                                  _ fill: (UnsafeMutableBufferPointer<T>) throws -> Void) throws -> [T] {
        guard count >= 0 else { throw RandomError.negativeCount(operation: operation, count: count) }
        return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            try fill(buffer)
            initialized = count
        }
    }

    /// float32 uniforms in [0, 1): the low 24 bits of one word times 2^-24, as uniform_real<float>.
    private func fillUniform(_ data: UnsafeMutablePointer<Float>, count: Int) {
        // Draw the raw words straight into the output memory, then convert each in place
        // (reading a word back through Float.bitPattern keeps the memory typed as Float).
        data.withMemoryRebound(to: UInt32.self, capacity: count) { words in
            engine.fill(UnsafeMutableBufferPointer(start: words, count: count))
        }
        for i in 0..<count {
            data[i] = Float(data[i].bitPattern & 0x00ff_ffff) * 0x1p-24
        }
    }

    /// A float64 uniform in [0, 1): the low 53 bits of random64() times 2^-53, as uniform_real<double>.
    @inline(__always)
    private func nextUniformDouble() -> Double {
        Double(engine.next64() & ((1 << 53) - 1)) * 0x1p-53
    }

    /// torch's normal_distribution<double>: one output per call, the pair's second output cached.
    private func nextScalarNormal() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached
        }
        let u1 = nextUniformDouble()
        let u2 = nextUniformDouble()
        let radius = (-2.0 * log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        cachedNormal = radius * sin(theta)
        return radius * cos(theta)
    }

    /// Number of elements of `shape`, rejecting negative dimensions and overflow.
    private static func elementCount(_ shape: [Int], operation: String) throws -> Int {
        var count = 1
        for dim in shape {
            guard dim >= 0 else { throw RandomError.invalidShape(operation: operation, shape: shape) }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw RandomError.invalidShape(operation: operation, shape: shape) }
            count = product
        }
        return count
    }
}
