#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The float32 Box–Muller block torch uses for randn of 16 or more contiguous floats.
//
// On x86 torch runs NormalFill16<float> from ATen/native/cpu/DistributionTemplates.h in its AVX2
// kernel (normal_stub is deliberately not dispatched to AVX512, so AVX512 machines use it too).
// That kernel calls log256_ps and sincos256_ps from ATen/native/cpu/avx_mathfun.h: Cephes
// polynomials, not libm. GCC builds that file with -mfma and its default -ffp-contract=fast, so
// every multiply whose only use is an add/sub became one fused multiply-add. The lane code below
// repeats those operations in the same order with the same fusions (`addingProduct`); Swift never
// contracts on its own. Without the fusions about 1% of outputs differ from torch by 1 ulp.

/// Cephes single-precision natural log, lane-for-lane as avx_mathfun's log256_ps under GCC's FMA contraction.
@inline(__always)
func cephesLog(_ input: Float) -> Float {
    if !(input > 0) { return .nan }  // log256_ps ORs an all-ones mask into lanes <= 0
    // Clamp denormals to the smallest normal, then split x = m * 2^e with m in [0.5, 1).
    var x = max(input, Float(bitPattern: 0x0080_0000))
    let exponent = Int32(bitPattern: x.bitPattern >> 23) - 0x7f
    x = Float(bitPattern: (x.bitPattern & ~UInt32(0x7f80_0000)) | Float(0.5).bitPattern)
    var e = Float(exponent) + 1
    // if x < sqrt(1/2): e -= 1, x = x + x - 1, else x = x - 1 (done branch-free as in the original).
    let below = x < Float(0.707106781186547524)
    let tmp: Float = below ? x : 0
    x = x - 1
    e = e - (below ? 1 : 0)
    x = x + tmp

    let z = x * x
    var y = Float(7.0376836292E-2)
    y = Float(-1.1514610310E-1).addingProduct(y, x)
    y = Float(1.1676998740E-1).addingProduct(y, x)
    y = Float(-1.2420140846E-1).addingProduct(y, x)
    y = Float(1.4249322787E-1).addingProduct(y, x)
    y = Float(-1.6668057665E-1).addingProduct(y, x)
    y = Float(2.0000714765E-1).addingProduct(y, x)
    y = Float(-2.4999993993E-1).addingProduct(y, x)
    y = Float(3.3333331174E-1).addingProduct(y, x)
    y = y * x
    // y*z + e*q1: GCC fused the first multiply in program order (y*z) and kept e*q1 separate.
    y = (e * Float(-2.12194440e-4)).addingProduct(y, z)
    y = y.addingProduct(-z, 0.5)
    x = x + y
    x = x.addingProduct(e, 0.693359375)
    return x
}

/// cvttps2dq semantics: truncate toward zero, out-of-range and NaN give Int32.min.
@inline(__always)
private func truncatingToInt32(_ value: Float) -> Int32 {
    value.magnitude < 2_147_483_648 ? Int32(value) : Int32.min
}

/// Cephes single-precision sine and cosine, lane-for-lane as avx_mathfun's sincos256_ps under GCC's FMA contraction.
@inline(__always)
func cephesSinCos(_ input: Float) -> (sin: Float, cos: Float) {
    var signSin = input.bitPattern & 0x8000_0000
    var x = input.magnitude
    // Octant j = (trunc(x * 4/pi) + 1) & ~1 selects the polynomial and the signs.
    var j = truncatingToInt32(x * Float(1.27323954473516))
    j = (j &+ 1) & ~1
    let y = Float(j)
    let swapSignSin = UInt32(bitPattern: (j & 4) << 29)
    let useSinPolyForSin = (j & 2) == 0
    let signCos = UInt32(bitPattern: (~(j &- 2) & 4) << 29)
    signSin ^= swapSignSin

    // Extended-precision reduction x = ((x - y*DP1) - y*DP2) - y*DP3.
    x = x.addingProduct(y, -0.78515625)
    x = x.addingProduct(y, -2.4187564849853515625e-4)
    x = x.addingProduct(y, -3.77489497744594108e-8)

    let z = x * x
    var c = Float(2.443315711809948E-005)
    c = Float(-1.388731625493765E-003).addingProduct(c, z)
    c = Float(4.166664568298827E-002).addingProduct(c, z)
    c = c * z
    // c*z - z*0.5: the c*z multiply is the one fused.
    c = (-(z * 0.5)).addingProduct(c, z)
    c = c + 1

    var s = Float(-1.9515295891E-4)
    s = Float(8.3321608736E-3).addingProduct(s, z)
    s = Float(-1.6666654611E-1).addingProduct(s, z)
    s = s * z
    s = x.addingProduct(s, x)

    let sinValue = useSinPolyForSin ? s : c
    let cosValue = useSinPolyForSin ? c : s
    return (Float(bitPattern: sinValue.bitPattern ^ signSin), Float(bitPattern: cosValue.bitPattern ^ signCos))
}

/// torch's NormalFill16<float> (AVX2) for mean 0, std 1: 16 uniforms in [0, 1) become 16 normals in place.
/// Lanes 0..<8 feed the radius, lanes 8..<16 the angle; cosines land in 0..<8, sines in 8..<16.
@inline(__always)
func boxMuller16(_ data: UnsafeMutablePointer<Float>) {
    let twoPi = Float(2.0 * Double.pi)
    for j in 0..<8 {
        let u1 = 1 - data[j]  // [0, 1) -> (0, 1] so the log is finite
        let u2 = data[j + 8]
        let radius = (-2 * cephesLog(u1)).squareRoot()
        let (sinTheta, cosTheta) = cephesSinCos(twoPi * u2)
        // torch ends with fmadd(n, std, mean); with std 1 and mean 0 that is n itself (up to -0 -> +0).
        data[j] = radius * cosTheta + 0
        data[j + 8] = radius * sinTheta + 0
    }
}

/// torch's scalar NormalFill16<double> for mean 0, std 1 (libm log/cos/sin in double).
@inline(__always)
func boxMuller16(_ data: UnsafeMutablePointer<Double>) {
    for j in 0..<8 {
        let u1 = 1 - data[j]
        let u2 = data[j + 8]
        let radius = (-2 * log(u1)).squareRoot()
        let theta = 2.0 * Double.pi * u2
        data[j] = radius * cos(theta) + 0
        data[j + 8] = radius * sin(theta) + 0
    }
}
