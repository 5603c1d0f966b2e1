import Foundation
import UnCLIPTensor
import UnCLIPWeights

/// How a pipeline loads its models. One value per pipeline (and so per engine): two engines in one process
/// may use different precisions or residencies.
public struct LoadOptions: Sendable, Hashable, Codable {
    /// Precision of the UNet, prior and VAE weight products (CLIP encoders stay fp32). bf16 needs a CPU with
    /// AVX512_BF16; elsewhere the layers run fp32 (`GemmPrecision.runnable`).
    public var precision: GemmPrecision
    /// Load each model when its stage starts and drop it when the stage ends, so peak memory is the largest
    /// stage instead of the sum of all (at the cost of loading again for every image).
    public var lowMemory: Bool
    /// Prefer this weight variant (e.g. "fp16") where a component has it.
    public var variant: String?
    /// Cores the engine's runs may use (nil: all the process may use).
    public var threads: Int?

    public init(precision: GemmPrecision = .fp32, lowMemory: Bool = false, variant: String? = nil, threads: Int? = nil) {
        self.precision = precision; self.lowMemory = lowMemory; self.variant = variant; self.threads = threads
    }
}

/// One model of a pipeline: loaded at once, or (low memory) on first use and released after each stage.
public final class ModelSlot<Model>: @unchecked Sendable {
    private let loader: () throws -> Model
    private var model: Model?
    private let lock = NSLock()
    /// True: loaded when needed and dropped by `release()`; false: loaded now and kept.
    public let onDemand: Bool

    /// `loader` runs now unless `onDemand`, so a missing or broken weight fails before any work.
    public init(onDemand: Bool, _ loader: @escaping () throws -> Model) throws {
        self.loader = loader
        self.onDemand = onDemand
        if !onDemand { model = try loader() }
    }

    /// Whether the model is in memory now.
    public var isLoaded: Bool { lock.withLock { model != nil } }

    /// The model, loading it if it was released.
    public func get() throws -> Model {
        try lock.withLock {
            if let model { return model }
            let loaded = try loader()
            model = loaded
            return loaded
        }
    }

    /// End of a stage: an on-demand model is dropped, which unmaps its weight files and frees converted copies.
    public func release() {
        guard onDemand else { return }
        let dropped: Bool = lock.withLock {
            defer { model = nil }
            return model != nil
        }
        // glibc keeps freed mid-sized blocks in its arenas; hand them back so the next stage can use the memory.
        if dropped { returnFreedMemory() }
    }
}
