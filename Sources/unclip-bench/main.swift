// Kernel and model benchmarks (not tests): GFLOP/s on Stable Diffusion–sized shapes, as a share of the
// sgemm peak measured in the same run, and the CLIP ViT-L/14 text encoder with random weights.
// Usage: swift run -c release unclip-bench [--threads N] [--quick]
import CBLAS
import Foundation
import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights

let args = CommandLine.arguments
let quick = args.contains("--quick")
if let i = args.firstIndex(of: "--threads"), i + 1 < args.count, let n = Int32(args[i + 1]) { openblas_set_num_threads(n) }
let threads = openblas_get_num_threads()

/// Median wall time of `body` over `runs` runs, after one warm-up.
func time(runs: Int = quick ? 3 : 5, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var t: [Double] = []
    for _ in 0..<runs {
        let s = DispatchTime.now().uptimeNanoseconds
        try body()
        t.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
    }
    return t.sorted()[t.count / 2]
}

var state: UInt64 = 0x9E3779B97F4A7C15
func randomTensor(_ shape: [Int], scale: Float = 1) -> Tensor {
    let t = Tensor(uninitialized: shape)
    for i in 0..<t.count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        t.pointer[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
    return t
}

print("unclip-bench: OpenBLAS threads \(threads), cores \(ProcessInfo.processInfo.activeProcessorCount)")
let n = 2048
let pa = randomTensor([n, n]), pb = randomTensor([n, n])
let peakT = time { _ = matmul(pa, pb) }
let peak = 2 * Double(n * n * n) / peakT / 1e9
print(String(format: "%-44@ %8.2f ms %8.1f GFLOP/s (reference peak)", "sgemm 2048³" as NSString, peakT * 1e3, peak))

func report(_ name: String, flops: Double, seconds: Double) {
    let g = flops / seconds / 1e9
    print(String(format: "%-44@ %8.2f ms %8.1f GFLOP/s %5.0f%% of peak", name as NSString, seconds * 1e3, g, 100 * g / peak))
}

/// The bf16 kernel on the same product, as GFLOP/s and as a multiple of the fp32 time just measured.
func reportBF16(_ name: String, flops: Double, seconds: Double, fp32Seconds: Double) {
    let g = flops / seconds / 1e9
    print(String(format: "%-44@ %8.2f ms %8.1f GFLOP/s %5.2f× the fp32 line above", name as NSString, seconds * 1e3, g, fp32Seconds / seconds))
}
let bf16 = ComputePrecision.bf16Supported
if !bf16 { print("(no AVX512_BF16 on this CPU: bf16 lines skipped)") }

for (m, nn, k) in [(4096, 320, 320), (4096, 1280, 320), (4096, 320, 1280), (4096, 640, 640), (4096, 1280, 1280), (1024, 1024, 1024)] {
    let x = randomTensor([m, k]), w = randomTensor([nn, k])
    let flops = 2 * Double(m * nn * k)
    let t32 = time { _ = linear(x, weight: w) }
    report("linear M=\(m) N=\(nn) K=\(k)", flops: flops, seconds: t32)
    if bf16 {
        let packed = BF16Weight(w, layout: .lanes)
        reportBF16("  bf16", flops: flops, seconds: time { _ = linear(x, packed: packed) }, fp32Seconds: t32)
    }
}
for (c, o, size) in [(320, 320, 64), (640, 640, 32), (1280, 1280, 16)] {
    let x = randomTensor([1, c, size, size]), w = randomTensor([o, c, 3, 3]), b = randomTensor([o])
    let flops = 2 * Double(o * c * 9 * size * size)
    let t32 = time { _ = conv2d(x, weight: w, bias: b, padding: (1, 1)) }
    report("conv2d 3x3 \(c)→\(o) @ \(size)x\(size)", flops: flops, seconds: t32)
    if bf16 {
        let packed = BF16Weight(w, layout: .rows)
        reportBF16("  bf16", flops: flops, seconds: time { _ = conv2d(x, weight: w, bias: b, padding: (1, 1), packed: packed) }, fp32Seconds: t32)
    }
}
do {
    let t = 4096, heads = 5, d = 64
    let q = randomTensor([1, t, heads * d]), k = randomTensor([1, t, heads * d]), v = randomTensor([1, t, heads * d])
    report("attention T=4096, 5 heads × 64", flops: 4 * Double(t * t * d * heads),
           seconds: time(runs: 3) { _ = attention(query: q, key: k, value: v, heads: heads) })
}
do {
    let x = randomTensor([2, 320, 64, 64])
    let w = randomTensor([320]), b = randomTensor([320])
    let s = time { _ = groupNorm(x, groups: 32, weight: w, bias: b, eps: 1e-5, fusedSiLU: true) }
    print(String(format: "%-44@ %8.2f ms %8.1f GB/s", "groupnorm+silu [2,320,64,64]" as NSString, s * 1e3, Double(x.count * 8) / s / 1e9))
}

// CLIP ViT-L/14 text encoder (12 layers, width 768, 12 heads), random weights written to a temp file.
do {
    var c = CLIPTextConfig()
    c.hiddenSize = 768; c.intermediateSize = 3072; c.numHiddenLayers = 12; c.numAttentionHeads = 12
    c.projectionDim = 768; c.eosTokenId = 2; c.architectures = ["CLIPTextModelWithProjection"]
    var entries: [(String, SafeTensorsWriter.Payload)] = []
    func add(_ name: String, _ shape: [Int], scale: Float = 0.02) { entries.append((name, .float32(randomTensor(shape, scale: scale)))) }
    add("text_model.embeddings.token_embedding.weight", [c.vocabSize, 768])
    add("text_model.embeddings.position_embedding.weight", [77, 768])
    for l in 0..<12 {
        let p = "text_model.encoder.layers.\(l)"
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] { add("\(p).self_attn.\(proj).weight", [768, 768]); add("\(p).self_attn.\(proj).bias", [768]) }
        for ln in ["layer_norm1", "layer_norm2"] { add("\(p).\(ln).weight", [768], scale: 1); add("\(p).\(ln).bias", [768]) }
        add("\(p).mlp.fc1.weight", [3072, 768]); add("\(p).mlp.fc1.bias", [3072])
        add("\(p).mlp.fc2.weight", [768, 3072]); add("\(p).mlp.fc2.bias", [768])
    }
    add("text_model.final_layer_norm.weight", [768], scale: 1); add("text_model.final_layer_norm.bias", [768])
    add("text_projection.weight", [768, 768])
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-bench-clip-\(getpid()).safetensors")
    try SafeTensorsWriter.write(entries, to: url)
    defer { try? FileManager.default.removeItem(at: url) }
    entries = []
    let model = try CLIPTextModel(config: c, weights: WeightMap(paths: [url.path]))
    // FLOPs per token per layer: 4 projections (8·D²) + MLP (16·D²) + attention (4·T·D).
    let layerFlops = Double(24 * 768 * 768 * 77 + 4 * 77 * 77 * 768)
    for batch in [1, 2] {
        let ids = (0..<batch).map { _ in [49406] + (0..<75).map { 320 + $0 } + [49407] }
        let s = try time { _ = try model(inputIds: ids) }
        report("CLIP ViT-L/14 text, batch \(batch)", flops: Double(batch) * 12 * layerFlops, seconds: s)
    }
}
