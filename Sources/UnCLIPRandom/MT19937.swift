// Mersenne Twister MT19937, bit-identical to torch's at::mt19937 (ATen/core/MT19937RNGEngine.h),
// which is the standard MT19937 seeded with init_genrand(seed & 0xffffffff).

/// 32-bit Mersenne Twister (MT19937) with torch's seeding; refills its 624-word state in one pass.
public final class MT19937 {
    static let n = 624
    static let m = 397

    /// Twisted state words; `index` is the next word to temper (n means "twist first").
    private let state: UnsafeMutablePointer<UInt32>
    private var index: Int

    /// Seeds like torch: only the low 32 bits of `seed` enter the state.
    public init(seed: UInt64) {
        state = .allocate(capacity: Self.n)
        index = Self.n
        reseed(seed)
    }

    deinit { state.deallocate() }

    /// Restarts the stream from `seed` (low 32 bits), as torch's `mt19937(seed)`.
    public func reseed(_ seed: UInt64) {
        state[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1..<Self.n {
            let prev = state[j - 1]
            state[j] = 1_812_433_253 &* (prev ^ (prev >> 30)) &+ UInt32(j)
        }
        // torch starts with left_ = 1, so the very first draw twists the freshly seeded state.
        index = Self.n
    }

    /// The next 32-bit output.
    @inline(__always)
    public func next() -> UInt32 {
        if index == Self.n { twist() }
        let y = state[index]
        index += 1
        return Self.temper(y)
    }

    /// Two outputs joined as torch's `random64()`: the first word is the high half.
    @inline(__always)
    public func next64() -> UInt64 {
        let hi = UInt64(next())
        let lo = UInt64(next())
        return (hi << 32) | lo
    }

    /// Fills `out` with consecutive 32-bit outputs (the same words as calling `next()` repeatedly).
    public func fill(_ out: UnsafeMutableBufferPointer<UInt32>) {
        guard let base = out.baseAddress else { return }
        var done = 0
        while done < out.count {
            if index == Self.n { twist() }
            let run = min(Self.n - index, out.count - done)
            for k in 0..<run { base[done + k] = Self.temper(state[index + k]) }
            index += run
            done += run
        }
    }

    @inline(__always)
    private static func temper(_ word: UInt32) -> UInt32 {
        var y = word
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    @inline(__always)
    private static func mix(_ u: UInt32, _ v: UInt32) -> UInt32 {
        let bits = (u & 0x8000_0000) | (v & 0x7fff_ffff)
        return (bits >> 1) ^ ((v & 1) != 0 ? 0x9908_b0df : 0)
    }

    /// Regenerates all 624 state words (the three loops of torch's next_state()).
    private func twist() {
        let s = state
        let n = Self.n, m = Self.m
        for k in 0..<(n - m) { s[k] = s[k + m] ^ Self.mix(s[k], s[k + 1]) }
        for k in (n - m)..<(n - 1) { s[k] = s[k + m - n] ^ Self.mix(s[k], s[k + 1]) }
        s[n - 1] = s[m - 1] ^ Self.mix(s[n - 1], s[0])
        index = 0
    }
}
