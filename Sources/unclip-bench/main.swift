// unclip-bench: model benchmarks (issue 7) on the published Stable unCLIP architectures with seeded random
// weights, next to notebooks-export/bench_peer.py (the same items in diffusers). Not a test.
//
//   venv/bin/python notebooks-export/bench_peer.py prepare [--quick]     # weights + inputs + manifest
//   swift build -c release --product unclip-bench
//   .build/release/unclip-bench [--work DIR] [--quick] [--threads 1|2] [--items a,b] [--runs N] [--warmup N] [--json OUT]
//   .build/release/unclip-bench --kernels [--threads N] [--quick]               # kernel micro-benchmarks
//   .build/release/unclip-bench --conv-paths [--threads N] [--runs N]           # every fp32 conv path (ConvPaths.swift)
//
// Each item runs in its own child process (this executable with --child ITEM), so the peak RSS reported
// is that item's alone (the child's VmHWM). With --threads N below the core count the child is pinned to
// cores 0..N-1 with taskset (the Swift worker count follows the affinity mask) and OpenBLAS gets N threads.
// GFLOP/s use the analytic FLOP count bench_peer.py wrote into the manifest (convolutions, linears,
// attention products; see its docstring); the share of peak refers to the sgemm item of the same run.
import CBLAS
import Foundation

struct Options {
    var work = "/tmp/unclip-bench"
    var quick = false
    var threads = 2
    var items = allItems
    var runs = 3
    var warmup = 1
    var json: String?
    var child: String?
    var kernels = false
    /// Times every fp32 convolution path this CPU runs (ConvPaths.swift).
    var convPaths = false
    /// fp32 or bf16 (the UNet, prior and VAE GEMMs; CLIP and attention stay fp32, as with `unclip --precision`).
    var precision = "fp32"
    /// Pipeline items: load each model per stage and free it after (`unclip --low-memory`).
    var lowMemory = false
    /// Pipeline items: weight variant to prefer (fp16 copies from `bench_peer.py prepare-fp16`).
    var variant: String?

    static let usage = """
    usage: unclip-bench [--work DIR] [--quick] [--threads N] [--precision fp32|bf16] [--low-memory] [--variant fp16] [--items LIST] [--runs N] [--warmup N] [--json OUT]
           unclip-bench --kernels [--threads N] [--quick]
           unclip-bench --conv-paths [--threads N] [--runs N]
    items: \(allItems.joined(separator: ","))
    """

    init(_ args: [String]) throws {
        var i = 0
        func value(_ flag: String) throws -> String {
            i += 1
            guard i < args.count else { throw BenchError("\(flag) needs a value\n\(Options.usage)") }
            return args[i]
        }
        func int(_ flag: String, min: Int) throws -> Int {
            let s = try value(flag)
            guard let v = Int(s), v >= min else { throw BenchError("\(flag) expects an integer ≥ \(min), got '\(s)'") }
            return v
        }
        while i < args.count {
            switch args[i] {
            case "--work": work = try value("--work")
            case "--quick": quick = true
            case "--threads": threads = try int("--threads", min: 1)
            case "--items":
                items = try value("--items").split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
                if let bad = items.first(where: { !allItems.contains($0) }) {
                    throw BenchError("unknown item '\(bad)'; known: \(allItems.joined(separator: ", "))")
                }
            case "--runs": runs = try int("--runs", min: 1)
            case "--warmup": warmup = try int("--warmup", min: 0)
            case "--json": json = try value("--json")
            case "--child": child = try value("--child")
            case "--kernels": kernels = true
            case "--conv-paths": convPaths = true
            case "--low-memory": lowMemory = true
            case "--variant": variant = try value("--variant")
            case "--precision":
                precision = try value("--precision")
                guard ["fp32", "bf16"].contains(precision) else { throw BenchError("--precision is fp32 or bf16, got '\(precision)'") }
            case "-h", "--help": print(Options.usage); exit(0)
            default: throw BenchError("unknown argument '\(args[i])'\n\(Options.usage)")
            }
            i += 1
        }
    }

    var base: URL { URL(fileURLWithPath: work).appendingPathComponent(quick ? "quick" : "full") }
}

/// Runs one item in a child process (pinned with taskset when using fewer threads than cores); returns its JSON.
func spawnChild(_ item: String, _ o: Options, runs: Int, warmup: Int) throws -> [String: Any] {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
    var args = [exe, "--child", item, "--work", o.work, "--threads", "\(o.threads)", "--runs", "\(runs)", "--warmup", "\(warmup)",
                "--precision", o.precision]
    if o.lowMemory { args.append("--low-memory") }
    if let v = o.variant { args += ["--variant", v] }
    if o.quick { args.append("--quick") }
    if o.threads < ProcessInfo.processInfo.processorCount { args = ["taskset", "-c", "0-\(o.threads - 1)"] + args }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    env["OPENBLAS_NUM_THREADS"] = "\(o.threads)"
    env["OMP_NUM_THREADS"] = "\(o.threads)"
    p.environment = env
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()  // before waiting: a full pipe would block the child
    p.waitUntilExit()
    let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
    guard p.terminationStatus == 0, let line = lines.last(where: { $0.hasPrefix("{") }),
          let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw BenchError("child for \(item) failed (status \(p.terminationStatus)); its error is printed above")
    }
    return obj
}

/// `s` left-aligned in `width` columns (Foundation's %-N@ does not pad on Linux).
func padded(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }

func runSuite(_ o: Options) throws {
    let manifest = try loadManifest(base: o.base, quick: o.quick)
    var items = o.items
    if !items.contains("sgemm") { items.insert("sgemm", at: 0) }  // the share-of-peak column needs it
    items.sort { allItems.firstIndex(of: $0)! < allItems.firstIndex(of: $1)! }
    if let missing = items.first(where: { manifest[$0] == nil }) {
        throw BenchError("item \(missing) is not prepared in \(o.base.path): run bench_peer.py prepare\(o.quick ? " --quick" : "") --items \(missing)")
    }
    print("unclip-bench: \(o.quick ? "QUICK (tiny architectures, not a benchmark)" : "full size"), threads \(o.threads), "
          + "runs \(o.runs) (median), warm-up \(o.warmup), cores \(ProcessInfo.processInfo.processorCount), work \(o.base.path)")
    var rows: [[String: Any]] = []
    var peak: Double?
    for name in items {
        let isPeak = name == "sgemm"
        var r: [String: Any]
        do {
            r = try spawnChild(name, o, runs: isPeak ? 3 : o.runs, warmup: isPeak ? 1 : o.warmup)
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            rows.append(["item": name, "side": "ours", "precision": o.precision, "threads": o.threads, "error": "\(error)"])
            continue
        }
        let flops = manifest[name]!.flops, seconds = (r["seconds"] as? Double) ?? .nan
        let gflops = flops / seconds / 1e9
        r["flops"] = flops
        r["gflops"] = gflops
        if isPeak { peak = gflops } else if let peak { r["peak_share"] = gflops / peak }
        rows.append(r)
        let share = (r["peak_share"] as? Double).map { String(format: "%5.1f%% of sgemm", 100 * $0) } ?? ""
        let rss = Double((r["peak_rss_bytes"] as? Int) ?? 0) / 1048576
        print(padded(name, 13) + String(format: " %10.4f s %8.1f GFLOP/s ", seconds, gflops) + padded(share, 16)
              + String(format: " peak RSS %7.0f MiB  (load %.1f s)", rss, (r["load_seconds"] as? Double) ?? 0))
    }
    if let path = o.json {
        let out: [String: Any] = ["side": "ours", "mode": o.quick ? "quick" : "full", "threads": o.threads, "runs": o.runs,
                                  "warmup": o.warmup, "peak_gflops": ["fp32": peak ?? 0], "rows": rows]
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys]).write(to: url)
        print("results: \(path)")
    }
}

do {
    let o = try Options(Array(CommandLine.arguments.dropFirst()))
    if o.kernels {
        openblas_set_num_threads(Int32(o.threads))
        runKernelBenchmarks(quick: o.quick)
    } else if o.convPaths {
        runConvPathBenchmarks(threads: o.threads, runs: o.runs)
    } else if let item = o.child {
        try runChild(item, base: o.base, quick: o.quick, threads: o.threads, runs: o.runs, warmup: o.warmup, precision: o.precision,
                     lowMemory: o.lowMemory, variant: o.variant)
    } else {
        try runSuite(o)
    }
} catch {
    FileHandle.standardError.write(Data("unclip-bench: \(error)\n".utf8))
    exit(1)
}
