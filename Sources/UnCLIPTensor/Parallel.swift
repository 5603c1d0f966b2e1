import Foundation
import CKernels

/// Hands freed memory back to the system: the cached large buffers (buffers.h) and glibc's heap, which keeps
/// freed mid-sized blocks otherwise.
public func returnFreedMemory() {
    uc_buffer_cache_flush()
    uc_trim_heap()
}

/// Cores this process may use, read once: Foundation re-reads it from /proc and cgroups on every call.
/// `OPENBLAS_NUM_THREADS`, when set, caps it: all matrix work is split by us (GEMM.swift), so that variable
/// keeps the meaning it has for any BLAS-backed tool.
public let availableCores: Int = coreCount(environment: ProcessInfo.processInfo.environment)

func coreCount(environment: [String: String]) -> Int {
    // The affinity mask first, so a run pinned with `taskset` splits its work only over the cores it has.
    let pinned = Int(uc_affinity_cpus())
    let active = max(1, ProcessInfo.processInfo.activeProcessorCount)
    let cores = pinned > 0 ? min(pinned, active) : active
    if let cap = environment["OPENBLAS_NUM_THREADS"].flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }), cap > 0 {
        return min(cores, cap)
    }
    return cores
}

/// How many cores the work started on this thread may spread over. A task-local value, not a setting of the
/// process: an engine runs each request inside `ComputeThreads.$limit.withValue(n) { … }`, so two engines in one
/// process can use different counts. Dispatch's worker threads do not inherit it, so it is read on the thread
/// that splits the work (every split in this module reads it before fanning out).
public enum ComputeThreads {
    @TaskLocal public static var limit: Int?

    /// The workers a split may use now: the cores the process may use, capped by `limit`.
    public static var workers: Int { max(1, min(availableCores, limit ?? availableCores)) }
}

/// Splits `count` items into contiguous chunks run on all cores; small jobs stay on the caller's thread.
@inline(__always)
public func parallelChunks(_ count: Int, minimumPerChunk: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
    let workers = ComputeThreads.workers
    let chunks = min(workers, max(1, count / max(minimumPerChunk, 1)))
    if chunks <= 1 { body(0..<count); return }
    let per = (count + chunks - 1) / chunks
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = c * per
        let hi = min(count, lo + per)
        if lo < hi { body(lo..<hi) }
    }
}
