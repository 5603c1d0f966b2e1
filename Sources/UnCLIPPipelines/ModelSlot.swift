import Foundation
import UnCLIPTensor
import UnCLIPWeights

/// How pipelines hold their models: all resident (the default), or each loaded when its stage starts and
/// dropped when it ends (`--low-memory`), so peak memory is the largest stage instead of the sum of all.
public enum ModelResidency {
    nonisolated(unsafe) private static var lowMemoryValue = false
    private static let lock = NSLock()

    /// Applies to pipelines created after it is set (the CLI sets it from `--low-memory`).
    public static var lowMemory: Bool {
        get { lock.withLock { lowMemoryValue } }
        set { lock.withLock { lowMemoryValue = newValue } }
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
    public init(onDemand: Bool = ModelResidency.lowMemory, _ loader: @escaping () throws -> Model) throws {
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
