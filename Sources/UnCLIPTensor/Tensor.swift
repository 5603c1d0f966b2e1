import CKernels
import Foundation

/// Set once, before the first tensor is allocated (see uc_tune_heap).
private let heapTuned: Void = uc_tune_heap()

/// Memory behind a tensor: owned (64-byte aligned heap) or borrowed from a mapping kept alive by `owner`.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    private let owner: AnyObject?

    /// Fresh, uninitialised memory for `count` floats.
    public init(count: Int) {
        _ = heapTuned
        // 64-byte aligned (AVX-512 loads, BLAS packing); large ones come from the buffer cache (buffers.h).
        guard let raw = uc_buffer_alloc(max(count, 1) * MemoryLayout<Float>.stride) else {
            fatalError("out of memory: a tensor of \(count) floats (\(count * 4 >> 20) MiB) could not be allocated")
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        owner = nil
    }

    /// Borrowed memory (e.g. a memory-mapped weight); `owner` keeps it valid. Never written to.
    public init(borrowing pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = UnsafeMutablePointer(mutating: pointer)
        self.count = count
        self.owner = owner
    }

    deinit { if owner == nil { uc_buffer_free(pointer, max(count, 1) * MemoryLayout<Float>.stride) } }

    /// For memory borrowed from a read-only file mapping: drops its resident pages from this process (they are
    /// read back from the file if touched again), so weights converted once stop counting twice. No-op otherwise.
    public func releaseResidentPages() {
        guard owner != nil, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: pointer) + page - 1) / page * page
        let end = (Int(bitPattern: pointer) + count * MemoryLayout<Float>.stride) / page * page
        if end > start { madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) }
    }
}

/// A dense, row-major Float32 tensor. Operations return new tensors; storage is shared by reshapes.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let storage: TensorStorage
    /// Offset of element 0 inside `storage` (views such as batch slices share memory).
    public let offset: Int

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }

    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(offset + shape.reduce(1, *) <= storage.count, "tensor \(shape) overruns its storage")
        self.shape = shape
        self.storage = storage
        self.offset = offset
    }

    /// Uninitialised tensor; callers must write every element.
    public init(uninitialized shape: [Int]) {
        self.init(shape: shape, storage: TensorStorage(count: shape.reduce(1, *)))
    }

    public init(zeros shape: [Int]) {
        self.init(uninitialized: shape)
        pointer.initialize(repeating: 0, count: count)
    }

    public init(repeating value: Float, shape: [Int]) {
        self.init(uninitialized: shape)
        pointer.initialize(repeating: value, count: count)
    }

    public init(shape: [Int], data: [Float]) {
        precondition(data.count == shape.reduce(1, *), "\(data.count) values for shape \(shape)")
        self.init(uninitialized: shape)
        data.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: data.count) }
    }

    /// The elements as a Swift array (a copy).
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// See `TensorStorage.releaseResidentPages`.
    public func releaseResidentPages() { storage.releaseResidentPages() }

    public func dim(_ axis: Int) -> Int { shape[axis < 0 ? shape.count + axis : axis] }

    /// Same memory, new shape (one dimension may be -1).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            s[i] = known == 0 ? 0 : count / known
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: s, storage: storage, offset: offset)
    }

    /// View of item `i` along the first axis (no copy).
    public func item(_ i: Int) -> Tensor {
        let inner = Array(shape.dropFirst())
        return Tensor(shape: inner, storage: storage, offset: offset + i * inner.reduce(1, *))
    }

    /// A deep copy into fresh owned memory.
    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.pointer.update(from: pointer, count: count)
        return t
    }

    public subscript(flat index: Int) -> Float { pointer[index] }

    public var description: String { "Tensor\(shape)" }
}
