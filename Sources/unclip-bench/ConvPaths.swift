// `unclip-bench --conv-paths [--threads N] [--runs N]`: GFLOP/s of every fp32 convolution path this CPU runs
// (ConvPath: im2col + OpenBLAS sgemm, the implicit-im2col kernel in AVX2 + FMA and in AVX-512) on Stable
// Diffusion UNet/VAE layer shapes, so the kernels for each instruction set can be compared on one machine.
//
// Needs only UnCLIPTensor: bench/conv-paths.sh builds this file with the tensor modules alone (minutes, where the
// whole unclip-bench builds the model stack too). The machine may be shared, so each round runs every path once,
// interleaved, and the table keeps each path's best (fastest) round: noise from other work only ever slows a run.
// With one thread all the work runs on the calling thread (no split, OpenBLAS single-threaded), so each cell also
// gives GFLOP/s over that thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which excludes the time other processes
// held the core; wall-clock GFLOP/s follow after the slash.
// OpenBLAS picks its own kernels by CPUID (its core name is printed); OPENBLAS_CORETYPE=Haswell makes its sgemm
// the AVX2 one, as on an AVX2-only CPU.
//
// Self-contained (no helpers from the other files of unclip-bench), so that build needs this file only.
import CBLAS
import Foundation
import UnCLIPTensor

func runConvPathBenchmarks(threads: Int, runs: Int) {
    let paths = ConvPath.allCases.filter(\.isSupported)
    let skipped = ConvPath.allCases.filter { !$0.isSupported }.map(\.rawValue)
    openblas_set_num_threads(Int32(threads))
    let core = openblas_get_corename().map { String(cString: $0) } ?? "?"
    print("unclip-bench --conv-paths: \(threads) thread(s) (Swift workers and OpenBLAS), best of \(runs) interleaved rounds; "
          + "OpenBLAS core \(core)" + (skipped.isEmpty ? "" : "; not on this CPU: \(skipped.joined(separator: ", "))"))
    func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
    let cpuTime = threads == 1
    print("cells: " + (cpuTime ? "GFLOP/s over the thread's CPU time / over wall time (best round of each)" : "GFLOP/s over wall time (best round)"))
    print(pad("layer", 34) + paths.map { pad($0.rawValue, 26) }.joined())
    // (name, input channels, outputs, kernel, padding, side): SD 2.x UNet at 512² (64×64 latents) and the SD VAE decoder.
    let layers: [(String, Int, Int, Int, Int, Int)] = [
        ("UNet 3x3 320→320 @ 64x64", 320, 320, 3, 1, 64),
        ("VAE 3x3 512→512 @ 64x64", 512, 512, 3, 1, 64),
        ("VAE 3x3 128→128 @ 256x256", 128, 128, 3, 1, 256),
        ("UNet 1x1 640→320 @ 32x32", 640, 320, 1, 0, 32),
    ]
    func threadSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
    for (name, c, o, k, padding, side) in layers {
        let x = uniformTensor([1, c, side, side]), w = uniformTensor([o, c, k, k]), b = uniformTensor([o])
        let flops = 2 * Double(o * c * k * k * side * side)
        var bestWall = [Double](repeating: .infinity, count: paths.count), bestCPU = bestWall
        ComputeThreads.$limit.withValue(threads) {
            for path in paths { _ = conv2d(x, weight: w, bias: b, padding: (padding, padding), path: path) } // warm-up
            for _ in 0..<runs {
                for (i, path) in paths.enumerated() {
                    let s = DispatchTime.now().uptimeNanoseconds, cpu = threadSeconds()
                    _ = conv2d(x, weight: w, bias: b, padding: (padding, padding), path: path)
                    bestCPU[i] = min(bestCPU[i], threadSeconds() - cpu)
                    bestWall[i] = min(bestWall[i], Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
                }
            }
        }
        let cells = paths.indices.map { i in
            cpuTime ? String(format: "%6.1f / %6.1f", flops / bestCPU[i] / 1e9, flops / bestWall[i] / 1e9)
                    : String(format: "%6.1f", flops / bestWall[i] / 1e9)
        }
        print(pad(name, 34) + cells.map { pad($0, 26) }.joined())
    }
}

/// Values in [-1, 1) from a xorshift stream (timings do not depend on the values; kept here, not Kernels.swift's
/// randomTensor, so bench/conv-paths.sh can build this file alone).
private func uniformTensor(_ shape: [Int]) -> Tensor {
    let t = Tensor(uninitialized: shape)
    var state: UInt64 = 0x2545F4914F6CDD1D &+ UInt64(shape.reduce(1, *))
    for i in 0..<t.count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        t.pointer[i] = Float(state >> 40) / Float(1 << 23) - 1
    }
    return t
}
